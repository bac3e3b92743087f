//! The embedded engine seen through the internal contract, for every hop that serves it (the
//! LLM Server's `embedded` backend, the Bedrock emulator): contract requests become engine
//! requests (generations and embeddings), engine events become contract chunks, and pool
//! errors contract errors. The engine
//! itself knows nothing of the wire contract.

mod embed;
mod mapping;

use std::time::Instant;

use contract::{ChunkStream, ErrorKind};
use engine::{ModelPool, PoolError};
use futures::StreamExt;

pub use embed::{embed_response, to_engine_embed};
pub use mapping::{
    done_reason, error_to_contract, event_to_chunk, final_response, to_engine_request,
};

/// A pool failure as the contract reports it.
pub fn pool_error(e: PoolError) -> contract::Error {
    let kind = match &e {
        PoolError::NotFound(_) => ErrorKind::ModelNotFound,
        PoolError::InvalidName(_) => ErrorKind::InvalidRequest,
        PoolError::Busy(_) => ErrorKind::Overloaded,
        PoolError::Failed(_) => ErrorKind::Internal,
    };
    contract::Error::new(kind, e.to_string())
}

/// Generates through the contract: the stream every embedded-model hop serves. `hop` names
/// this hop in the timings. The stream holds the model until it ends or is dropped.
pub async fn generate(
    pool: &ModelPool,
    req: contract::GenerateRequest,
    hop: &'static str,
) -> Result<ChunkStream, contract::Error> {
    let started = Instant::now();
    let lease = pool.get(&req.model).await.map_err(pool_error)?;
    let engine_req = to_engine_request(&req)?;
    let generation = lease.engine.generate(engine_req).await.map_err(|e| error_to_contract(&e))?;
    let model = req.model;
    let mut calls = 0;
    Ok(Box::pin(generation.map(move |event| {
        let _held = &lease;
        event_to_chunk(&model, event, hop, started, &mut calls)
    })))
}

/// Embeds through the contract, for every embedded-model hop.
pub async fn embed(
    pool: &ModelPool,
    req: contract::EmbedRequest,
    hop: &'static str,
) -> Result<contract::EmbedResponse, contract::Error> {
    let started = Instant::now();
    let engine_req = to_engine_embed(&req)?;
    let lease = pool.get(&req.model).await.map_err(pool_error)?;
    let out = lease.engine.embed(engine_req).await.map_err(|e| error_to_contract(&e))?;
    Ok(embed_response(&req.model, out, hop, started))
}
