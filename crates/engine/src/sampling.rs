//! Builds a llama.cpp sampler chain from Ollama-style options, in the order Ollama's runner
//! applies them: penalties, top-k, top-p, min-p, temperature, then the random draw.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

use crate::grammar;
use crate::request::{EngineError, GenerateParams, SamplingParams};

/// Validates options a client could get wrong, before any work is queued.
pub fn validate(p: &SamplingParams) -> Result<(), EngineError> {
    let bad = |what: &str| Err(EngineError::InvalidRequest(what.to_owned()));
    if !p.temperature.is_finite() || p.temperature < 0.0 {
        return bad("temperature must be a finite number >= 0");
    }
    if !(0.0..=1.0).contains(&p.top_p) {
        return bad("top_p must be between 0 and 1");
    }
    if !(0.0..=1.0).contains(&p.min_p) {
        return bad("min_p must be between 0 and 1");
    }
    if !p.repeat_penalty.is_finite() || p.repeat_penalty <= 0.0 {
        return bad("repeat_penalty must be a finite number > 0");
    }
    if p.top_k < 0 {
        return bad("top_k must be >= 0");
    }
    if p.repeat_last_n < -1 {
        return bad("repeat_last_n must be >= -1");
    }
    Ok(())
}

pub fn build(model: &LlamaModel, params: &GenerateParams, n_ctx: u32) -> Result<LlamaSampler, EngineError> {
    let s = &params.sampling;
    let mut chain = Vec::with_capacity(7);
    if params.json {
        chain.push(
            LlamaSampler::grammar(model, grammar::JSON_OBJECT, "root")
                .map_err(|e| EngineError::Inference(format!("json grammar: {e}")))?,
        );
    }
    if s.repeat_penalty != 1.0 && s.repeat_last_n != 0 {
        let last_n = if s.repeat_last_n == -1 { i32::try_from(n_ctx).unwrap_or(i32::MAX) } else { s.repeat_last_n };
        chain.push(LlamaSampler::penalties(model.n_vocab(), last_n, s.repeat_penalty, 0.0, 0.0));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k));
        }
        if s.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(s.top_p, 1));
        }
        if s.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(s.min_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(s.seed.unwrap_or_else(rand::random)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}
