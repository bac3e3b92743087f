//! Loaded models by name. A model is resolved and loaded on first use (the load runs on a
//! blocking thread and its time is charged to that request, as Ollama reports it); concurrent
//! first requests for one model share a single load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use contract::{ChunkStream, ErrorKind};
use tokio::sync::{Mutex, OnceCell};

use crate::config::{EngineConfig, ModelSpec};
use crate::engine::Engine;
use crate::resolver::{ResolveError, Resolver};
use crate::contract_map;
use futures::StreamExt;

/// A model in memory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub engine: Arc<Engine>,
    pub digest: Option<String>,
    pub loaded_at: SystemTime,
}

pub struct ModelPool {
    resolver: Resolver,
    config: EngineConfig,
    models: Mutex<BTreeMap<String, Arc<OnceCell<Loaded>>>>,
}

impl ModelPool {
    pub fn new(resolver: Resolver, config: EngineConfig) -> Self {
        ModelPool { resolver, config, models: Mutex::new(BTreeMap::new()) }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The loaded model, loading it first if needed. Unknown or unpulled models are
    /// `ModelNotFound` with Ollama's wording.
    pub async fn get(&self, name: &str) -> Result<Loaded, contract::Error> {
        let resolved = self.resolver.resolve(name).map_err(resolve_error)?;
        let cell = {
            let mut models = self.models.lock().await;
            Arc::clone(models.entry(resolved.name.clone()).or_default())
        };
        let config = self.config.clone();
        cell.get_or_try_init(|| async move {
            let spec = ModelSpec { name: resolved.name.clone(), path: resolved.path.clone() };
            let engine = tokio::task::spawn_blocking(move || Engine::load(spec, config))
                .await
                .map_err(|e| contract::Error::new(ErrorKind::Internal, format!("model load task failed: {e}")))?
                .map_err(|e| contract::Error::new(ErrorKind::Internal, e.to_string()))?;
            tracing::info!(model = %resolved.name, path = %resolved.path.display(), "model loaded");
            Ok(Loaded { engine: Arc::new(engine), digest: resolved.digest, loaded_at: SystemTime::now() })
        })
        .await
        .cloned()
    }

    /// Load across loaded models, without waiting (for metrics scrapes): `None` if the model
    /// table is busy at this instant.
    pub fn try_stats(&self) -> Option<Vec<crate::EngineStats>> {
        let models = self.models.try_lock().ok()?;
        Some(models.values().filter_map(|c| c.get()).map(|l| l.engine.stats()).collect())
    }

    /// Drops a model from memory. Generations already running on it finish first: the
    /// scheduler thread drains its sequences, then exits when the last handle is gone.
    pub async fn unload(&self, name: &str) -> Result<(), contract::Error> {
        let resolved = self.resolver.resolve(name).map_err(resolve_error)?;
        self.models.lock().await.remove(&resolved.name);
        Ok(())
    }

    /// Models currently in memory.
    pub async fn loaded(&self) -> Vec<Loaded> {
        let models = self.models.lock().await;
        models.values().filter_map(|c| c.get().cloned()).collect()
    }

    /// Generates through the contract: the stream every embedded-model hop serves. `hop`
    /// names this hop in the timings.
    pub async fn generate(&self, req: contract::GenerateRequest, hop: &'static str) -> Result<ChunkStream, contract::Error> {
        let started = Instant::now();
        let loaded = self.get(&req.model).await?;
        let engine_req = contract_map::to_engine_request(&req)?;
        let generation = loaded.engine.generate(engine_req).await.map_err(|e| contract_map::error_to_contract(&e))?;
        let model = req.model;
        Ok(Box::pin(generation.map(move |event| contract_map::event_to_chunk(&model, event, hop, started))))
    }
}

pub fn resolve_error(e: ResolveError) -> contract::Error {
    match e {
        ResolveError::NotPulled(_) | ResolveError::Unknown(_) => contract::Error::new(ErrorKind::ModelNotFound, e.to_string()),
        ResolveError::InvalidName(_) => contract::Error::new(ErrorKind::InvalidRequest, e.to_string()),
        other => contract::Error::new(ErrorKind::Internal, other.to_string()),
    }
}
