//! The instant backend: the `instant` crate's fixed-reply generator behind the Backend trait.

use async_trait::async_trait;
use chrono::Utc;
use contract::{ChunkStream, ErrorKind};
pub use instant::InstantConfig;
use instant::InstantGenerator;

use super::{Backend, ModelDescriptor, ModelDetails, PullEvent, PullStream, RunningModel};

pub struct InstantBackend {
    generator: InstantGenerator,
}

impl InstantBackend {
    pub fn new(config: InstantConfig) -> Self {
        InstantBackend { generator: InstantGenerator::new(config) }
    }

    fn check(&self, model: &str) -> Result<(), contract::Error> {
        if self.generator.knows(model) {
            Ok(())
        } else {
            Err(contract::Error::new(
                ErrorKind::ModelNotFound,
                format!("model \"{model}\" not found, try pulling it first"),
            ))
        }
    }

    fn descriptor(&self, name: &str) -> ModelDescriptor {
        ModelDescriptor {
            name: name.to_owned(),
            size: 0,
            digest: format!("instant:{name}"),
            modified_at: Utc::now(),
            format: "none".into(),
            family: "instant".into(),
            parameter_size: "0".into(),
            quantization_level: "none".into(),
        }
    }
}

#[async_trait]
impl Backend for InstantBackend {
    async fn generate(
        &self,
        req: contract::GenerateRequest,
        _caller: &super::Caller,
    ) -> Result<ChunkStream, contract::Error> {
        self.generator.generate(req)
    }

    fn embeds(&self) -> bool {
        true
    }

    async fn embed(
        &self,
        req: contract::EmbedRequest,
        _caller: &super::Caller,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        self.check(&req.model)?;
        instant::embed::embed(&req)
    }

    async fn load(&self, model: &str) -> Result<(), contract::Error> {
        self.check(model)
    }

    async fn list_models(&self) -> Result<Vec<ModelDescriptor>, contract::Error> {
        Ok(self.generator.config().models.iter().map(|m| self.descriptor(m)).collect())
    }

    async fn show(&self, model: &str) -> Result<ModelDetails, contract::Error> {
        self.check(model)?;
        Ok(ModelDetails {
            descriptor: self.descriptor(model),
            template: String::new(),
            parameters: String::new(),
            model_info: serde_json::Map::new(),
            context_length: 0,
            // It answers tools with a call (to the named tool, or the first), and embeds.
            capabilities: vec!["completion", "tools", "embedding"],
        })
    }

    async fn running(&self) -> Result<Vec<RunningModel>, contract::Error> {
        Ok(self
            .generator
            .config()
            .models
            .iter()
            .map(|m| RunningModel {
                descriptor: self.descriptor(m),
                expires_at: Utc::now() + chrono::Duration::days(365),
                context_length: 0,
            })
            .collect())
    }

    async fn pull(&self, model: &str) -> Result<PullStream, contract::Error> {
        self.check(model)?;
        let events = ["pulling manifest", "success"].map(|s| {
            Ok(PullEvent { status: s.into(), digest: None, total: None, completed: None })
        });
        Ok(Box::pin(futures::stream::iter(events)))
    }
}
