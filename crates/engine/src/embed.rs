//! Embeddings from a loaded model: a second llama.cpp context over the same weights (shared,
//! not loaded twice), with embeddings on and the model's pooling (mean where the model names
//! none, as for the generative models), run by its own thread, started by the first request.
//! Inputs are packed whole into batches of up to a context's worth of tokens and decoded
//! together, many sequences per decode.

use std::num::NonZeroU32;
use std::sync::mpsc::{Receiver, SyncSender};

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::request::EngineError;

/// Sequences decoded together at most (llama.cpp allows 256 per context).
const MAX_SEQUENCES: u32 = 64;

/// One input to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    Text(String),
    /// Token ids of the model's vocabulary (OpenAI's token arrays), used as they are.
    Tokens(Vec<u32>),
}

/// A request for one vector per input, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedRequest {
    pub inputs: Vec<EmbedInput>,
    /// Cut an input longer than the context (true) or refuse the request (false).
    pub truncate: bool,
    /// Keep the first `dimensions` values and normalize again; `None`: all of them.
    pub dimensions: Option<u32>,
}

/// The vectors (L2-normalized, in input order) and what they cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read across all inputs, after truncation.
    pub prompt_tokens: usize,
    /// Model load time charged to this request (the first after a load), as Ollama does.
    pub load: std::time::Duration,
    pub total: std::time::Duration,
}

/// How a model pools token states into one vector, from its GGUF (`<arch>.pooling_type`).
pub(crate) fn pooling(
    metadata: &std::collections::BTreeMap<String, String>,
    architecture: &str,
) -> Result<LlamaPoolingType, String> {
    match metadata.get(&format!("{architecture}.pooling_type")).and_then(|v| v.parse::<u32>().ok())
    {
        Some(2) => Ok(LlamaPoolingType::Cls),
        Some(3) => Ok(LlamaPoolingType::Last),
        Some(4) => Err("is a reranker (rank pooling): it scores pairs and cannot embed".into()),
        // Mean (1), none (0) or unnamed: a generative model's states, averaged.
        _ => Ok(LlamaPoolingType::Mean),
    }
}

/// One request's token sequences, and where its vectors go.
pub(crate) struct EmbedJob {
    pub inputs: Vec<Vec<LlamaToken>>,
    pub dimensions: Option<usize>,
    pub reply: tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>,
}

/// The embedding thread's handle: its queue, and the thread to join on drop.
pub(crate) struct Embedder {
    pub jobs: SyncSender<EmbedJob>,
    pub thread: std::thread::JoinHandle<()>,
}

/// The settings of an embedding context.
pub(crate) struct EmbedContext {
    /// Tokens per batch, and the longest input.
    pub n_ctx: u32,
    pub threads: i32,
    pub pooling: LlamaPoolingType,
}

/// Runs the embedding context until the job queue closes; says on `ready` whether it could be
/// created.
pub(crate) fn run(
    backend: &LlamaBackend,
    model: &LlamaModel,
    settings: &EmbedContext,
    jobs: Receiver<EmbedJob>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let n_ctx = settings.n_ctx.max(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        // A pooled sequence must be decoded in one micro-batch.
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_seq_max(MAX_SEQUENCES)
        // One pool of cells for all sequences: a batch holds one long input or many short ones.
        .with_kv_unified(true)
        .with_embeddings(true)
        .with_pooling_type(settings.pooling)
        .with_n_threads(settings.threads)
        .with_n_threads_batch(settings.threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut batch = LlamaBatch::new(n_ctx as usize, MAX_SEQUENCES as i32);
    for job in jobs {
        let result = embed_all(&mut ctx, &mut batch, &job.inputs, n_ctx as usize, job.dimensions);
        let _ = job.reply.send(result);
    }
}

fn embed_all(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    inputs: &[Vec<LlamaToken>],
    n_ctx: usize,
    dimensions: Option<usize>,
) -> Result<Vec<Vec<f32>>, EngineError> {
    let failed = |e: &dyn std::fmt::Display| EngineError::Inference(format!("embedding: {e}"));
    let mut vectors = Vec::with_capacity(inputs.len());
    let mut start = 0;
    while start < inputs.len() {
        batch.clear();
        let (mut end, mut used) = (start, 0);
        while end < inputs.len()
            && end - start < MAX_SEQUENCES as usize
            && used + inputs[end].len() <= n_ctx
        {
            batch.add_sequence(&inputs[end], (end - start) as i32, true).map_err(|e| failed(&e))?;
            used += inputs[end].len();
            end += 1;
        }
        if end == start {
            return Err(EngineError::Inference(format!(
                "input {start} is longer than the embedding context ({n_ctx} tokens)"
            )));
        }
        forget(ctx);
        ctx.decode(batch).map_err(|e| failed(&e))?;
        for seq in 0..(end - start) {
            let pooled = ctx
                .embeddings_seq_ith(seq as i32)
                .map_err(|_| failed(&"no pooled vector for a sequence"))?;
            vectors.push(normalized(pooled, dimensions));
        }
        start = end;
    }
    Ok(vectors)
}

/// Frees every KV cell for the next batch. Only the cells' bookkeeping: `clear_kv_cache`
/// would also zero the whole cache (tens of MB, milliseconds per request), and a freed cell's
/// stale contents are never attended to.
fn forget(ctx: &mut LlamaContext<'_>) {
    let _ = ctx.clear_kv_cache_seq(None, None, None);
}

/// The first `dimensions` values (all when `None`), scaled to unit length (a zero vector
/// stays zero).
pub(crate) fn normalized(values: &[f32], dimensions: Option<usize>) -> Vec<f32> {
    let kept = &values[..dimensions.unwrap_or(values.len()).min(values.len())];
    let norm = kept.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt();
    if norm == 0.0 {
        return kept.to_vec();
    }
    kept.iter().map(|v| (f64::from(*v) / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_cut_then_normalized() {
        assert_eq!(normalized(&[3.0, 4.0], None), vec![0.6, 0.8]);
        assert_eq!(normalized(&[3.0, 4.0, 12.0], Some(2)), vec![0.6, 0.8]);
        assert_eq!(normalized(&[0.0, 0.0], None), vec![0.0, 0.0]);
        assert_eq!(normalized(&[2.0], Some(5)), vec![1.0]);
    }

    #[test]
    fn pooling_follows_the_gguf() {
        let meta =
            |v: &str| std::iter::once(("bert.pooling_type".to_owned(), v.to_owned())).collect();
        assert_eq!(pooling(&meta("2"), "bert").unwrap(), LlamaPoolingType::Cls);
        assert_eq!(pooling(&meta("1"), "bert").unwrap(), LlamaPoolingType::Mean);
        assert_eq!(pooling(&Default::default(), "llama").unwrap(), LlamaPoolingType::Mean);
        assert!(pooling(&meta("4"), "bert").unwrap_err().contains("reranker"));
    }
}
