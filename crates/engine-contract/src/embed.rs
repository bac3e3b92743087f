//! Embedding requests and answers between the contract and the engine.

use std::time::Instant;

use contract::{embed_input, EmbedResponse, Embedding, ErrorKind, HopTiming, Timings};
use engine::{EmbedInput, EmbedRequest, Embeddings};

/// A contract request as the engine takes it; an input with neither text nor tokens is refused.
pub fn to_engine_embed(req: &contract::EmbedRequest) -> Result<EmbedRequest, contract::Error> {
    let inputs = req
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| match &input.kind {
            Some(embed_input::Kind::Text(t)) => Ok(EmbedInput::Text(t.clone())),
            Some(embed_input::Kind::Tokens(t)) => Ok(EmbedInput::Tokens(t.ids.clone())),
            None => Err(contract::Error::new(
                ErrorKind::InvalidRequest,
                format!("input {i} has neither text nor tokens"),
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(EmbedRequest { inputs, truncate: req.truncate, dimensions: req.dimensions })
}

/// The engine's vectors as the contract carries them; `hop` names this hop in the timings.
pub fn embed_response(model: &str, out: Embeddings, hop: &str, started: Instant) -> EmbedResponse {
    let total = started.elapsed().as_nanos() as u64;
    EmbedResponse {
        model: model.to_owned(),
        prompt_tokens: u32::try_from(out.prompt_tokens).unwrap_or(u32::MAX),
        embeddings: out.vectors.into_iter().map(|values| Embedding { values }).collect(),
        timings: Some(Timings {
            load_ns: out.load.as_nanos() as u64,
            prompt_eval_ns: out.total.saturating_sub(out.load).as_nanos() as u64,
            eval_ns: 0,
            total_ns: total,
            hops: vec![HopTiming { hop: hop.to_owned(), dur_ns: total }],
        }),
    }
}
