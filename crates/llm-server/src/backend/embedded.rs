//! The embedded backend: the llama.cpp engine in this process, models loaded on first use.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contract::{ChunkStream, ErrorKind};
use engine::{ModelInfo, ModelPool, PullProgress};
use futures::StreamExt;

use super::{
    Backend, BackendStats, ModelDescriptor, ModelDetails, PullEvent, PullStream, RunningModel,
};

pub struct EmbeddedBackend {
    pool: Arc<ModelPool>,
}

impl EmbeddedBackend {
    pub fn new(pool: Arc<ModelPool>) -> Self {
        EmbeddedBackend { pool }
    }

    fn descriptor(
        info: &ModelInfo,
        digest: Option<&str>,
        modified: DateTime<Utc>,
    ) -> ModelDescriptor {
        ModelDescriptor {
            name: info.name.clone(),
            size: info.size,
            digest: digest
                .map_or_else(|| format!("path:{}", info.path.display()), |d| format!("sha256:{d}")),
            modified_at: modified,
            format: "gguf".into(),
            family: info.architecture.clone(),
            parameter_size: info.parameter_size.clone(),
            quantization_level: info.quantization.clone(),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> contract::Error {
    contract::Error::new(ErrorKind::Internal, e.to_string())
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn generate(
        &self,
        req: contract::GenerateRequest,
        _caller: &super::Caller,
    ) -> Result<ChunkStream, contract::Error> {
        engine_contract::generate(&self.pool, req, "llm-server").await
    }

    fn embeds(&self) -> bool {
        true
    }

    async fn embed(
        &self,
        req: contract::EmbedRequest,
        _caller: &super::Caller,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        engine_contract::embed(&self.pool, req, "llm-server").await
    }

    async fn load(&self, model: &str) -> Result<(), contract::Error> {
        self.pool.get(model).await.map(|_| ()).map_err(engine_contract::pool_error)
    }

    async fn list_models(&self) -> Result<Vec<ModelDescriptor>, contract::Error> {
        let pool = Arc::clone(&self.pool);
        let local =
            tokio::task::spawn_blocking(move || pool.resolver().list()).await.map_err(internal)?;
        let loaded = self.pool.loaded().await;
        Ok(local
            .into_iter()
            .map(|m| {
                let modified: DateTime<Utc> = m.modified.into();
                match loaded.iter().find(|l| l.engine.info().path == m.path) {
                    Some(l) => Self::descriptor(l.engine.info(), m.digest.as_deref(), modified),
                    // Not loaded: what the file alone says (details fill in once loaded).
                    None => ModelDescriptor {
                        name: m.name,
                        size: m.size,
                        digest: m.digest.map_or_else(
                            || format!("path:{}", m.path.display()),
                            |d| format!("sha256:{d}"),
                        ),
                        modified_at: modified,
                        format: "gguf".into(),
                        family: String::new(),
                        parameter_size: String::new(),
                        quantization_level: String::new(),
                    },
                }
            })
            .collect())
    }

    async fn show(&self, model: &str) -> Result<ModelDetails, contract::Error> {
        let loaded = self.pool.get(model).await.map_err(engine_contract::pool_error)?;
        let info = loaded.engine.info();
        let modified = std::fs::metadata(&info.path)
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now());
        let cfg = self.pool.config();
        let defaults = engine::SamplingParams::default();
        let parameters = format!(
            "num_ctx {}\ntemperature {}\ntop_k {}\ntop_p {}\nrepeat_penalty {}\nrepeat_last_n {}",
            cfg.num_ctx,
            defaults.temperature,
            defaults.top_k,
            defaults.top_p,
            defaults.repeat_penalty,
            defaults.repeat_last_n
        );
        let mut model_info: serde_json::Map<String, serde_json::Value> = info
            .metadata
            .iter()
            .map(|(k, v)| {
                let value = v
                    .parse::<i64>()
                    .map(serde_json::Value::from)
                    .or_else(|_| v.parse::<f64>().map(serde_json::Value::from))
                    .unwrap_or_else(|_| v.clone().into());
                (k.clone(), value)
            })
            .collect();
        model_info.insert("general.parameter_count".into(), info.parameter_count.into());
        Ok(ModelDetails {
            descriptor: Self::descriptor(info, loaded.digest.as_deref(), modified),
            template: info.chat_template.clone().unwrap_or_default(),
            parameters,
            model_info,
            context_length: info.context_length,
            // A generative model gets tools (through its template where it has them, else
            // the engine's generic, grammar-constrained format) and embeds too; a dedicated
            // embedding model only embeds.
            capabilities: if info.embedding_only() {
                vec!["embedding"]
            } else {
                vec!["completion", "tools", "embedding"]
            },
        })
    }

    async fn running(&self) -> Result<Vec<RunningModel>, contract::Error> {
        Ok(self
            .pool
            .loaded()
            .await
            .into_iter()
            .map(|l| {
                let info = l.engine.info();
                RunningModel {
                    descriptor: Self::descriptor(info, l.digest.as_deref(), l.loaded_at.into()),
                    // Models stay loaded for the life of the process.
                    expires_at: Utc::now() + chrono::Duration::days(365 * 100),
                    context_length: l.engine.context_limit(None),
                }
            })
            .collect())
    }

    async fn pull(&self, model: &str) -> Result<PullStream, contract::Error> {
        let resolver = self.pool.resolver().clone();
        if !resolver.is_pullable(model) && resolver.resolve(model).is_err() {
            return Err(contract::Error::new(ErrorKind::ModelNotFound, format!("pull model manifest: file does not exist: model \"{model}\" is not in the catalog")));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let name = model.to_owned();
        tokio::task::spawn_blocking(move || {
            let progress_tx = tx.clone();
            let result = resolver.pull(&name, &mut |p| {
                let event = match p {
                    PullProgress::Status(s) => {
                        PullEvent { status: s.into(), digest: None, total: None, completed: None }
                    }
                    PullProgress::Bytes { digest, total, completed } => PullEvent {
                        status: format!("pulling {}", &digest[7..digest.len().min(19)]),
                        digest: Some(digest),
                        total: Some(total),
                        completed: Some(completed),
                    },
                };
                let _ = progress_tx.send(Ok(event));
            });
            if let Err(e) = result {
                let _ = tx.send(Err(engine_contract::pool_error(e.into())));
            }
        });
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn unload(&self, model: &str) -> Result<(), contract::Error> {
        self.pool.unload(model).await.map_err(engine_contract::pool_error)
    }

    fn stats(&self) -> BackendStats {
        // Best effort: a scrape that meets the model table mid-update reports zeros.
        self.pool.try_stats().unwrap_or_default().iter().fold(BackendStats::default(), |acc, s| {
            BackendStats {
                queued: acc.queued + s.queued,
                active_sequences: acc.active_sequences + s.active,
            }
        })
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
