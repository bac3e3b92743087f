//! What the engine knows about a loaded model, for `/api/show`, `/api/tags` and `/api/ps`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use llama_cpp_2::model::LlamaModel;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The name clients use (e.g. `smollm2:135m`).
    pub name: String,
    pub path: PathBuf,
    /// File size in bytes.
    pub size: u64,
    pub parameter_count: u64,
    /// Architecture from `general.architecture` (e.g. `llama`).
    pub architecture: String,
    /// Quantization name derived from `general.file_type` (e.g. `Q4_1`).
    pub quantization: String,
    /// Human size label (`general.size_label`, e.g. `135M`), or one computed from the count.
    pub parameter_size: String,
    pub context_length: u32,
    /// The Jinja chat template, if the model has one.
    pub chat_template: Option<String>,
    /// GGUF metadata as strings, without the large tokenizer arrays.
    pub metadata: BTreeMap<String, String>,
}

impl ModelInfo {
    pub(crate) fn read(name: &str, path: PathBuf, model: &LlamaModel) -> Self {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or_else(|_| model.size());
        let mut metadata = BTreeMap::new();
        for i in 0..model.meta_count() {
            let Ok(key) = model.meta_key_by_index(i) else { continue };
            // Token lists and merges are huge and say nothing a client needs.
            if key.starts_with("tokenizer.ggml.")
                && !matches!(key.as_str(), "tokenizer.ggml.model" | "tokenizer.ggml.pre")
                || key == "tokenizer.chat_template"
            {
                continue;
            }
            if let Ok(value) = model.meta_val_str_by_index(i) {
                metadata.insert(key, value);
            }
        }
        let get = |k: &str| metadata.get(k).cloned();
        let architecture = get("general.architecture").unwrap_or_else(|| "unknown".into());
        let quantization = get("general.file_type")
            .and_then(|v| v.parse::<u32>().ok())
            .map(file_type_name)
            .unwrap_or("unknown")
            .to_owned();
        let parameter_count = model.n_params();
        let parameter_size =
            get("general.size_label").unwrap_or_else(|| human_count(parameter_count));
        let chat_template =
            model.meta_val_str("tokenizer.chat_template").ok().filter(|t| !t.is_empty());
        ModelInfo {
            name: name.to_owned(),
            path,
            size,
            parameter_count,
            architecture,
            quantization,
            parameter_size,
            context_length: model.n_ctx_train(),
            chat_template,
            metadata,
        }
    }
}

impl ModelInfo {
    /// A dedicated embedding model: its GGUF names a pooling (`<arch>.pooling_type`), as
    /// embedding conversions do and generative ones do not. Ollama reads the same key to list
    /// such a model with the `embedding` capability alone and to refuse it generation.
    pub fn embedding_only(&self) -> bool {
        self.metadata.contains_key(&format!("{}.pooling_type", self.architecture))
    }
}

/// llama.cpp's `llama_ftype` numbers, as Ollama names them.
fn file_type_name(ftype: u32) -> &'static str {
    match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => "unknown",
    }
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n => format!("{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_type_name(3), "Q4_1");
        assert_eq!(file_type_name(999), "unknown");
        assert_eq!(human_count(134_515_008), "134M");
        assert_eq!(human_count(7_241_732_096), "7.2B");
    }

    #[test]
    fn a_named_pooling_makes_an_embedding_model() {
        let info = |arch: &str, keys: &[&str]| ModelInfo {
            name: "m".into(),
            path: PathBuf::new(),
            size: 0,
            parameter_count: 0,
            architecture: arch.into(),
            quantization: String::new(),
            parameter_size: String::new(),
            context_length: 0,
            chat_template: None,
            metadata: keys.iter().map(|k| ((*k).to_owned(), "1".to_owned())).collect(),
        };
        assert!(info("bert", &["bert.pooling_type"]).embedding_only());
        assert!(info("nomic-bert", &["nomic-bert.pooling_type"]).embedding_only());
        assert!(!info("llama", &["llama.context_length"]).embedding_only());
        assert!(!info("llama", &["bert.pooling_type"]).embedding_only());
    }
}
