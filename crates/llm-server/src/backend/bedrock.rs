//! The bedrock backend: Ollama and OpenAI clients straight to Amazon Bedrock (or the local
//! emulator) through the shared Bedrock client, without the AWS middle tier.

use async_trait::async_trait;
use chrono::Utc;
use contract::{ChunkStream, ErrorKind};

use super::{Backend, ModelDescriptor, ModelDetails, PullStream, RunningModel};

pub struct BedrockBackend {
    client: bedrock::BedrockClient,
}

impl BedrockBackend {
    pub fn new(client: bedrock::BedrockClient) -> Self {
        BedrockBackend { client }
    }

    fn descriptor(name: &str) -> ModelDescriptor {
        ModelDescriptor {
            name: name.to_owned(),
            size: 0,
            digest: format!("bedrock:{name}"),
            modified_at: Utc::now(),
            format: "bedrock".into(),
            family: "bedrock".into(),
            parameter_size: String::new(),
            quantization_level: String::new(),
        }
    }
}

#[async_trait]
impl Backend for BedrockBackend {
    async fn generate(
        &self,
        req: contract::GenerateRequest,
        _caller: &super::Caller,
    ) -> Result<ChunkStream, contract::Error> {
        self.client.generate(req).await
    }

    fn embeds(&self) -> bool {
        true
    }

    async fn embed(
        &self,
        req: contract::EmbedRequest,
        _caller: &super::Caller,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        self.client.embed(req).await
    }

    /// Bedrock models are always "loaded".
    async fn load(&self, _model: &str) -> Result<(), contract::Error> {
        Ok(())
    }

    /// The configured model names (Bedrock itself has no "local models").
    async fn list_models(&self) -> Result<Vec<ModelDescriptor>, contract::Error> {
        let settings = self.client.settings();
        Ok(settings
            .model_ids
            .keys()
            .chain(settings.embedding_model_ids.keys())
            .map(|m| Self::descriptor(m))
            .collect())
    }

    async fn show(&self, model: &str) -> Result<ModelDetails, contract::Error> {
        let mut model_info = serde_json::Map::new();
        let settings = self.client.settings();
        let embedding_id = settings
            .embedding_model_ids
            .get(model)
            .map(String::as_str)
            .or(bedrock::embed::Family::of(model).map(|_| model));
        let (id, capabilities) = match embedding_id {
            Some(id) => (id.to_owned(), vec!["embedding"]),
            None => (
                settings.model_ids.get(model).cloned().unwrap_or_else(|| model.to_owned()),
                vec!["completion", "tools"],
            ),
        };
        model_info.insert("bedrock.model_id".into(), id.into());
        Ok(ModelDetails {
            descriptor: Self::descriptor(model),
            template: String::new(),
            parameters: String::new(),
            model_info,
            context_length: 0,
            capabilities,
        })
    }

    async fn running(&self) -> Result<Vec<RunningModel>, contract::Error> {
        Ok(Vec::new())
    }

    async fn pull(&self, model: &str) -> Result<PullStream, contract::Error> {
        Err(contract::Error::new(
            ErrorKind::InvalidRequest,
            format!("{model} is served by Amazon Bedrock; there is nothing to pull"),
        ))
    }
}
