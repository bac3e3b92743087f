//! Engine settings: how big the shared KV cache is and how work is split across it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the KV cache stores keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    F16,
    /// Half the memory of f16 for a negligible quality loss (needs flash attention, which is
    /// switched on for it).
    Q8_0,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Context window of each sequence slot in tokens (Ollama's `num_ctx`): prompt plus answer.
    /// A request may ask for less, never more.
    pub num_ctx: u32,
    /// Sequences decoded together in one batch (continuous batching width). Each slot has its
    /// own KV cache of `num_ctx` tokens, so a sequence's output never depends on its
    /// neighbours: KV memory is `num_ctx * max_sequences` tokens.
    pub max_sequences: u32,
    /// Requests waiting for a sequence slot before new ones are refused.
    pub queue_depth: usize,
    /// Tokens per llama.cpp batch (prompt chunks and generation steps share it).
    pub batch_size: u32,
    /// CPU threads; 0 means all available cores.
    pub threads: u32,
    pub kv_cache_type: KvCacheType,
    /// When a chat prompt exceeds the context, drop the oldest turns (keeping the system
    /// prompt and the last message) instead of failing the request.
    pub truncate_chat: bool,
    /// Map the model file instead of reading it into memory (Ollama's `use_mmap`). Off by
    /// default: where llama.cpp repacks weights for the CPU's own kernels (AMX on a Xeon), the
    /// mapped originals stayed resident beside the repacked copy, about 100 MB more per
    /// process; read in, each weight is held once.
    pub use_mmap: bool,
    /// Models kept in memory at once (Ollama's `OLLAMA_MAX_LOADED_MODELS`, 3 on a CPU). A new
    /// model evicts the least recently used idle one; when all are in use it is refused as
    /// overloaded (503). At least 1.
    pub max_loaded_models: usize,
    /// Bytes of generated text a stream may hold waiting for its reader. A client that stops
    /// reading is cut by the server's write timeout; this caps what piles up meanwhile (and
    /// for any caller that stops polling), whatever the context size. Past it the generation
    /// stops with an error and its slot is freed. At least 1.
    pub max_buffered_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            num_ctx: 2048,
            max_sequences: 4,
            queue_depth: 64,
            batch_size: 512,
            threads: 0,
            kv_cache_type: KvCacheType::Q8_0,
            truncate_chat: true,
            use_mmap: false,
            max_loaded_models: 3,
            max_buffered_bytes: 1 << 20,
        }
    }
}

impl EngineConfig {
    pub(crate) fn thread_count(&self) -> i32 {
        let n = if self.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.threads as usize
        };
        i32::try_from(n).unwrap_or(1)
    }
}

/// Which GGUF file to load and what to call it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub path: PathBuf,
    /// A Jinja chat template used instead of the GGUF's own (llama.cpp's
    /// `--chat-template-file`), for models whose stored template is missing or wrong.
    pub chat_template: Option<String>,
}
