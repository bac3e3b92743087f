//! Loaded models by name. A model is resolved and loaded on first use (the load runs on a
//! blocking thread and its time is charged to that request, as Ollama reports it); concurrent
//! first requests for one model share a single load.
//!
//! Every user of a model holds a [`Lease`] on it for as long as it needs the model (a
//! generation, for its whole stream), so there is only ever one copy of a model in memory: an
//! unload (`keep_alive: 0`) while leases are out marks the model to leave when the last one
//! ends, and requests meanwhile keep using the same copy. At most `max_loaded_models` models
//! are in memory: a new one evicts the least recently used idle model, or is refused as
//! overloaded when every loaded model is in use.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tokio::sync::OnceCell;

use crate::config::{EngineConfig, ModelSpec};
use crate::engine::Engine;
use crate::resolver::{ResolveError, Resolver};

/// Why the pool could not hand out a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Not pulled, or no such model (Ollama's wording).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidName(String),
    /// `max_loaded_models` are loaded and all in use.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Failed(String),
}

impl From<ResolveError> for PoolError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::NotPulled(_) | ResolveError::Unknown(_) => {
                PoolError::NotFound(e.to_string())
            }
            ResolveError::InvalidName(_) => PoolError::InvalidName(e.to_string()),
            other => PoolError::Failed(other.to_string()),
        }
    }
}

/// A model in memory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub engine: Arc<Engine>,
    pub digest: Option<String>,
    pub loaded_at: SystemTime,
}

/// One model's place in the pool, from the first request for it until it is unloaded.
struct Slot {
    /// Filled once by the first request's load; shared by requests that arrive during it.
    cell: Arc<OnceCell<Loaded>>,
    /// Leases out on this model: it is in use while this is not zero.
    leases: usize,
    /// `keep_alive: 0` arrived while it was in use: unload when the last lease ends.
    unload_when_idle: bool,
    last_used: Instant,
}

type Table = Arc<Mutex<BTreeMap<String, Slot>>>;

fn lock(table: &Table) -> MutexGuard<'_, BTreeMap<String, Slot>> {
    // Every critical section leaves the table consistent, so a panic elsewhere cannot have
    // left it half-updated.
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// A model held in memory for as long as this lives.
pub struct Lease {
    loaded: Loaded,
    _hold: Hold,
}

impl Deref for Lease {
    type Target = Loaded;
    fn deref(&self) -> &Loaded {
        &self.loaded
    }
}

/// The count a lease adds to its slot, given back on drop (also when the load fails).
struct Hold {
    name: String,
    table: Table,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut models = lock(&self.table);
        let Some(slot) = models.get_mut(&self.name) else { return };
        slot.leases = slot.leases.saturating_sub(1);
        slot.last_used = Instant::now();
        // A model marked for unloading goes with its last user; a load that failed leaves
        // nothing behind.
        if slot.leases == 0 && (slot.unload_when_idle || !slot.cell.initialized()) {
            if let Some(slot) = models.remove(&self.name) {
                retire(slot);
            }
        }
    }
}

pub struct ModelPool {
    resolver: Resolver,
    config: EngineConfig,
    models: Table,
}

impl ModelPool {
    pub fn new(resolver: Resolver, config: EngineConfig) -> Self {
        ModelPool { resolver, config, models: Table::default() }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Resolves a model name on a blocking thread: resolving may hash the model file (after a
    /// change), which is no work for an async thread.
    async fn resolve(&self, name: &str) -> Result<crate::resolver::Resolved, PoolError> {
        let resolver = self.resolver.clone();
        let requested = name.to_owned();
        Ok(tokio::task::spawn_blocking(move || resolver.resolve(&requested))
            .await
            .map_err(|e| PoolError::Failed(format!("model lookup task failed: {e}")))??)
    }

    /// The loaded model, loading it first if needed, held until the lease is dropped. Unknown
    /// or unpulled models are `ModelNotFound` with Ollama's wording; a new model when
    /// `max_loaded_models` are loaded and all in use is `Overloaded`.
    pub async fn get(&self, name: &str) -> Result<Lease, PoolError> {
        let resolved = self.resolve(name).await?;
        let (cell, hold) = {
            let mut models = lock(&self.models);
            if !models.contains_key(&resolved.name) {
                make_room(&mut models, self.config.max_loaded_models.max(1))?;
            }
            let slot = models.entry(resolved.name.clone()).or_insert_with(|| Slot {
                cell: Arc::default(),
                leases: 0,
                unload_when_idle: false,
                last_used: Instant::now(),
            });
            slot.leases += 1;
            // A request that does not ask to unload keeps the model, as Ollama's keep_alive does.
            slot.unload_when_idle = false;
            slot.last_used = Instant::now();
            (
                Arc::clone(&slot.cell),
                Hold { name: resolved.name.clone(), table: Arc::clone(&self.models) },
            )
        };
        let config = self.config.clone();
        let template_file = self.resolver.chat_template(&resolved.name).map(Path::to_path_buf);
        let loaded = cell
            .get_or_try_init(|| async move {
                let name = resolved.name.clone();
                let path = resolved.path.clone();
                let engine = tokio::task::spawn_blocking(move || {
                    let chat_template = match template_file {
                        Some(file) => Some(std::fs::read_to_string(&file).map_err(|e| PoolError::Failed(format!("reading the chat template {} of {name}: {e}", file.display())))?),
                        None => None,
                    };
                    Engine::load(ModelSpec { name, path, chat_template }, config).map_err(|e| PoolError::Failed(e.to_string()))
                })
                    .await
                    .map_err(|e| PoolError::Failed(format!("model load task failed: {e}")))??;
                tracing::info!(model = %resolved.name, path = %resolved.path.display(), "model loaded");
                Ok::<_, PoolError>(Loaded { engine: Arc::new(engine), digest: resolved.digest, loaded_at: SystemTime::now() })
            })
            .await?
            .clone();
        Ok(Lease { loaded, _hold: hold })
    }

    /// Load across loaded models, without waiting (for metrics scrapes).
    pub fn try_stats(&self) -> Option<Vec<crate::EngineStats>> {
        let models = self.models.try_lock().ok()?;
        Some(models.values().filter_map(|s| s.cell.get()).map(|l| l.engine.stats()).collect())
    }

    /// Takes a model out of memory (Ollama's `keep_alive: 0`): at once when nothing uses it,
    /// otherwise when its last lease ends. Generations already running on it finish first, and
    /// requests that arrive meanwhile use the same copy rather than loading another.
    pub async fn unload(&self, name: &str) -> Result<(), PoolError> {
        let resolved = self.resolve(name).await?;
        let mut models = lock(&self.models);
        match models.get_mut(&resolved.name) {
            Some(slot) if slot.leases > 0 => slot.unload_when_idle = true,
            Some(_) => {
                if let Some(slot) = models.remove(&resolved.name) {
                    retire(slot);
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Models currently in memory.
    pub async fn loaded(&self) -> Vec<Loaded> {
        lock(&self.models).values().filter_map(|s| s.cell.get().cloned()).collect()
    }
}

/// Lets go of a model that left the pool. Dropping its engine waits for the engine's thread to
/// free the model's context, which is no work for an async thread.
fn retire(slot: Slot) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(slot));
        }
        Err(_) => drop(slot),
    }
}

/// Makes room for one more model: evicts the least recently used model nobody is using, or
/// refuses when every loaded model is in use.
fn make_room(models: &mut BTreeMap<String, Slot>, max_loaded: usize) -> Result<(), PoolError> {
    while models.len() >= max_loaded {
        let idle = models
            .iter()
            .filter(|(_, s)| s.leases == 0)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(name, _)| name.clone());
        match idle {
            Some(name) => {
                tracing::info!(model = %name, "unloading the least recently used model to make room");
                if let Some(slot) = models.remove(&name) {
                    retire(slot);
                }
            }
            None => {
                return Err(PoolError::Busy(format!(
                "{} models are loaded and all in use (engine.max_loaded_models); try again later",
                models.len()
            )))
            }
        }
    }
    Ok(())
}
