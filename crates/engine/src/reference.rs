//! A reference measurement of llama.cpp itself, for `strata bench`: the method of llama.cpp's
//! `llama-bench` (random tokens; prompt = one batch of N tokens into an empty context;
//! generation = N single-token decodes; no sampling; f16 KV cache as its default) run on the
//! very llama.cpp build this crate links. The difference to the engine's figures is what our
//! scheduler, sampling and HTTP layers cost.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use rand::Rng;

use crate::engine::backend;

/// Tokens per second, averaged over the repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceRates {
    pub prompt: f64,
    pub generation: f64,
}

/// What generating one token must read from memory, besides activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFootprint {
    /// Every weight tensor (llama.cpp's model size): all of it is read once per token.
    pub weights_bytes: u64,
    /// Keys and values of one position in an f16 KV cache, over all layers: a token's
    /// attention reads this much per position already in its context.
    pub kv_bytes_per_position: u64,
}

pub fn model_footprint(path: &Path) -> Result<ModelFootprint, String> {
    let backend = backend().map_err(|e| e.to_string())?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|e| e.to_string())?;
    // Keys and values have n_head_kv heads of n_embd / n_head elements each (grouped-query
    // attention shares them across query heads); f16 is 2 bytes an element.
    let head_dim = u64::from(model.n_embd().unsigned_abs()) / u64::from(model.n_head().max(1));
    let kv = 2 * u64::from(model.n_layer()) * u64::from(model.n_head_kv()) * head_dim * 2;
    Ok(ModelFootprint { weights_bytes: model.size(), kv_bytes_per_position: kv })
}

pub fn reference_rates(
    path: &Path,
    n_prompt: u32,
    n_gen: u32,
    threads: i32,
    reps: u32,
) -> Result<ReferenceRates, String> {
    let backend = backend().map_err(|e| e.to_string())?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|e| e.to_string())?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_prompt + n_gen))
        .with_n_batch(n_prompt.max(1))
        .with_n_ubatch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, params).map_err(|e| e.to_string())?;
    let n_vocab = model.n_vocab();
    let mut rng = rand::thread_rng();
    let mut random = |n: u32| -> Vec<LlamaToken> {
        (0..n).map(|_| LlamaToken(rng.gen_range(0..n_vocab))).collect()
    };

    let mut prompt_rate = 0.0;
    let mut gen_rate = 0.0;
    // One unmeasured round of each first, as llama-bench warms up.
    for rep in 0..=reps {
        ctx.clear_kv_cache();
        let tokens = random(n_prompt);
        let mut batch = LlamaBatch::new(n_prompt as usize, 1);
        for (i, t) in tokens.iter().enumerate() {
            batch.add(*t, i as i32, &[0], i + 1 == tokens.len()).map_err(|e| e.to_string())?;
        }
        let started = Instant::now();
        ctx.decode(&mut batch).map_err(|e| e.to_string())?;
        ctx.synchronize();
        if rep > 0 {
            prompt_rate += n_prompt as f64 / started.elapsed().as_secs_f64();
        }

        ctx.clear_kv_cache();
        let tokens = random(n_gen);
        let mut one = LlamaBatch::new(1, 1);
        let started = Instant::now();
        for (i, t) in tokens.iter().enumerate() {
            one.clear();
            one.add(*t, i as i32, &[0], true).map_err(|e| e.to_string())?;
            ctx.decode(&mut one).map_err(|e| e.to_string())?;
        }
        ctx.synchronize();
        if rep > 0 {
            gen_rate += n_gen as f64 / started.elapsed().as_secs_f64();
        }
    }
    Ok(ReferenceRates {
        prompt: prompt_rate / reps.max(1) as f64,
        generation: gen_rate / reps.max(1) as f64,
    })
}

/// llama.cpp's own embedding throughput, the way its `llama-embedding` example works: texts
/// tokenized with the model's special tokens, `batch` of them decoded together as separate
/// sequences in one mean-pooled embedding context, each vector read and normalized. Inputs
/// per second, the median of `reps` passes over `texts` after an unmeasured one.
pub fn reference_embed_rate(
    path: &Path,
    texts: &[String],
    batch: usize,
    threads: i32,
    reps: u32,
) -> Result<f64, String> {
    use llama_cpp_2::context::params::LlamaPoolingType;
    let backend = backend().map_err(|e| e.to_string())?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|e| e.to_string())?;
    let seqs = batch.clamp(1, 64);
    let n_ctx = 2048u32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_seq_max(seqs as u32)
        .with_kv_unified(true)
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, params).map_err(|e| e.to_string())?;
    let vocab = model.vocab();
    let tokens: Vec<Vec<LlamaToken>> =
        texts.iter().map(|t| vocab.tokenize(t.as_bytes(), true, false)).collect();
    let mut lot = LlamaBatch::new(n_ctx as usize, seqs as i32);
    let mut rates = Vec::new();
    for rep in 0..=reps {
        let started = Instant::now();
        for group in tokens.chunks(seqs) {
            lot.clear();
            for (s, t) in group.iter().enumerate() {
                lot.add_sequence(t, s as i32, true).map_err(|e| e.to_string())?;
            }
            ctx.clear_kv_cache();
            ctx.decode(&mut lot).map_err(|e| e.to_string())?;
            for s in 0..group.len() {
                let v = ctx.embeddings_seq_ith(s as i32).map_err(|e| e.to_string())?;
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                std::hint::black_box(v.iter().map(|x| x / norm).collect::<Vec<f32>>());
            }
        }
        if rep > 0 {
            rates.push(texts.len() as f64 / started.elapsed().as_secs_f64());
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates.get(rates.len() / 2).copied().unwrap_or(0.0))
}
