//! Ollama's embedding endpoints: `/api/embed` (`input` a string or a list) and the older
//! `/api/embeddings` (`prompt` -> `embedding`), to and from the contract.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::convert::{invalid, require_model};
use super::types::Options;
use crate::unsupported;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EmbedRequest {
    pub model: String,
    /// A string or a list of strings (read by hand, for errors that name the bad item).
    pub input: Option<Value>,
    /// Cut inputs longer than the context (Ollama's default) or refuse them.
    pub truncate: Option<bool>,
    pub dimensions: Option<u32>,
    pub keep_alive: Option<Value>,
    /// Accepted and ignored: sampling options do not apply to embeddings, and the context
    /// size is the server's (`[engine] num_ctx`).
    pub options: Option<Options>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub prompt: String,
    pub keep_alive: Option<Value>,
    pub options: Option<Options>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedResponse {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingsResponse {
    pub embedding: Vec<f32>,
}

fn text(s: String) -> contract::EmbedInput {
    contract::EmbedInput { kind: Some(contract::embed_input::Kind::Text(s)) }
}

/// `/api/embed` as a contract request. No input at all (or an empty string) is Ollama's
/// "load the model" request: `None`.
pub fn embed_to_contract(
    req: EmbedRequest,
) -> Result<Option<contract::EmbedRequest>, contract::Error> {
    require_model(&req.model)?;
    unsupported::check(&req.extra, &[], "")?;
    let inputs = match req.input {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => vec![text(s)],
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(invalid("input must not be an empty list"))
        }
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) if !s.is_empty() => Ok(text(s)),
                Value::String(_) => Err(invalid(format!("input[{i}] is an empty string"))),
                other => Err(invalid(format!("input[{i}] must be a string, not {other}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(format!(
                "input must be a string or a list of strings, not {other}"
            )))
        }
    };
    Ok(Some(contract::EmbedRequest {
        model: req.model,
        inputs,
        truncate: req.truncate.unwrap_or(true),
        dimensions: req.dimensions,
        trace: None,
    }))
}

/// `/api/embeddings` as a contract request; an empty prompt is a load request (`None`).
pub fn embeddings_to_contract(
    req: EmbeddingsRequest,
) -> Result<Option<contract::EmbedRequest>, contract::Error> {
    require_model(&req.model)?;
    unsupported::check(&req.extra, &[], "")?;
    if req.prompt.is_empty() {
        return Ok(None);
    }
    Ok(Some(contract::EmbedRequest {
        model: req.model,
        inputs: vec![text(req.prompt)],
        truncate: true,
        dimensions: None,
        trace: None,
    }))
}

pub fn embed_response(model: &str, out: contract::EmbedResponse, total_ns: u64) -> EmbedResponse {
    EmbedResponse {
        model: model.to_owned(),
        load_duration: out.timings.as_ref().map_or(0, |t| t.load_ns),
        prompt_eval_count: out.prompt_tokens,
        embeddings: out.embeddings.into_iter().map(|e| e.values).collect(),
        total_duration: total_ns,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn embed(body: Value) -> Result<Option<contract::EmbedRequest>, contract::Error> {
        embed_to_contract(serde_json::from_value(body).unwrap())
    }

    #[test]
    fn inputs_are_a_string_or_a_list_of_strings() {
        let one = embed(json!({"model": "m", "input": "hi"})).unwrap().unwrap();
        assert_eq!((one.inputs.len(), one.truncate, one.dimensions), (1, true, None));
        let two =
            embed(json!({"model": "m", "input": ["a", "b"], "truncate": false, "dimensions": 8}))
                .unwrap()
                .unwrap();
        assert_eq!((two.inputs.len(), two.truncate, two.dimensions), (2, false, Some(8)));
        assert_eq!(embed(json!({"model": "m"})).unwrap(), None);
        assert!(embed(json!({"model": "m", "input": []}))
            .unwrap_err()
            .message
            .contains("empty list"));
        assert!(embed(json!({"model": "m", "input": ["a", 3]}))
            .unwrap_err()
            .message
            .contains("input[1]"));
        assert!(embed(json!({"model": "m", "input": ["a", ""]}))
            .unwrap_err()
            .message
            .contains("input[1]"));
        assert!(embed(json!({"model": "m", "input": {"a": 1}}))
            .unwrap_err()
            .message
            .contains("string or a list"));
        assert!(embed(json!({"input": "x"})).unwrap_err().message.contains("model is required"));
        assert!(embed(json!({"model": "m", "input": "x", "pooling": "cls"}))
            .unwrap_err()
            .message
            .contains("pooling"));
    }
}
