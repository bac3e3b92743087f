//! The internal contract every strata hop speaks, generated from `proto/strata.proto`.
//!
//! Binary protobuf travels between hops (`application/x-protobuf`); the same types serialise to
//! JSON (camelCase) for people with curl.

#[allow(clippy::all, missing_docs)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/strata.contract.v1.rs"));
}

pub use pb::stream_chunk::Kind as ChunkKind;
pub use pb::*;

pub mod edge;
mod helpers;
pub use helpers::error_chain;
pub mod lambda_stream;

/// A streamed response as every hop passes it on: deltas, then exactly one `done` or `error`.
pub type ChunkStream = std::pin::Pin<Box<dyn futures_core::Stream<Item = StreamChunk> + Send>>;
