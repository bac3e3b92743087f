//! OpenAI's `POST /v1/embeddings`: `input` a string, a list of strings, a token array or a
//! list of token arrays; vectors as float lists or base64 (little-endian f32), as the
//! official SDKs ask for by default.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::convert::invalid;
use crate::unsupported;

/// Fields accepted and ignored: `user` identifies the end user for abuse monitoring.
pub const IGNORED: &[&str] = &["user"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Option<Value>,
    pub encoding_format: Option<String>,
    pub dimensions: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How the vectors go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingsResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingData {
    pub object: &'static str,
    pub index: usize,
    pub embedding: Vector,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

fn tokens(ids: Vec<u32>) -> contract::EmbedInput {
    contract::EmbedInput {
        kind: Some(contract::embed_input::Kind::Tokens(contract::TokenIds { ids })),
    }
}

fn text(s: String) -> contract::EmbedInput {
    contract::EmbedInput { kind: Some(contract::embed_input::Kind::Text(s)) }
}

/// A token array, or `None` when `items` is not one.
fn token_array(items: &[Value], at: &str) -> Result<Option<Vec<u32>>, contract::Error> {
    if !items.first().is_some_and(Value::is_number) {
        return Ok(None);
    }
    items
        .iter()
        .enumerate()
        .map(|(j, v)| {
            v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                invalid(format!("{at}[{j}] must be a token id (a whole number >= 0), not {v}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn inputs(input: Option<Value>) -> Result<Vec<contract::EmbedInput>, contract::Error> {
    match input {
        None | Some(Value::Null) => Err(invalid("input is required")),
        Some(Value::String(s)) if s.is_empty() => Err(invalid("input must not be an empty string")),
        Some(Value::String(s)) => Ok(vec![text(s)]),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(invalid("input must not be an empty list"))
        }
        Some(Value::Array(items)) => {
            if let Some(ids) = token_array(&items, "input")? {
                return Ok(vec![tokens(ids)]);
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) if s.is_empty() => {
                        Err(invalid(format!("input[{i}] is an empty string")))
                    }
                    Value::String(s) => Ok(text(s)),
                    Value::Array(ids) if ids.is_empty() => {
                        Err(invalid(format!("input[{i}] is an empty token array")))
                    }
                    Value::Array(ids) => match token_array(&ids, &format!("input[{i}]"))? {
                        Some(ids) => Ok(tokens(ids)),
                        None => Err(invalid(format!(
                            "input[{i}] must be a string or an array of token ids"
                        ))),
                    },
                    other => Err(invalid(format!(
                        "input[{i}] must be a string or an array of token ids, not {other}"
                    ))),
                })
                .collect()
        }
        Some(other) => Err(invalid(format!(
            "input must be a string, a list of strings or token arrays, not {other}"
        ))),
    }
}

pub fn to_contract(
    req: EmbeddingsRequest,
) -> Result<(contract::EmbedRequest, Encoding), contract::Error> {
    if req.model.trim().is_empty() {
        return Err(invalid("model is required"));
    }
    unsupported::check(&req.extra, IGNORED, "")?;
    let encoding = match req.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(invalid(format!(
                "encoding_format must be \"float\" or \"base64\", not \"{other}\""
            )))
        }
    };
    if req.dimensions == Some(0) {
        return Err(invalid("dimensions must be at least 1"));
    }
    // OpenAI refuses inputs over the context rather than cutting them.
    let request = contract::EmbedRequest {
        model: req.model,
        inputs: inputs(req.input)?,
        truncate: false,
        dimensions: req.dimensions,
        trace: None,
    };
    Ok((request, encoding))
}

fn base64_of(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn response(
    model: &str,
    out: contract::EmbedResponse,
    encoding: Encoding,
) -> EmbeddingsResponse {
    EmbeddingsResponse {
        object: "list",
        data: out
            .embeddings
            .into_iter()
            .enumerate()
            .map(|(index, e)| EmbeddingData {
                object: "embedding",
                index,
                embedding: match encoding {
                    Encoding::Float => Vector::Float(e.values),
                    Encoding::Base64 => Vector::Base64(base64_of(&e.values)),
                },
            })
            .collect(),
        model: model.to_owned(),
        usage: EmbeddingUsage { prompt_tokens: out.prompt_tokens, total_tokens: out.prompt_tokens },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<(contract::EmbedRequest, Encoding), contract::Error> {
        to_contract(serde_json::from_value(body).unwrap())
    }

    fn kinds(req: &contract::EmbedRequest) -> Vec<&contract::embed_input::Kind> {
        req.inputs.iter().map(|i| i.kind.as_ref().unwrap()).collect()
    }

    #[test]
    fn every_input_shape_of_the_api() {
        use contract::embed_input::Kind;
        let (r, e) = parse(json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!((kinds(&r), e), (vec![&Kind::Text("hi".into())], Encoding::Float));
        let (r, _) = parse(
            json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64", "user": "u1"}),
        )
        .unwrap();
        assert_eq!(r.inputs.len(), 2);
        let (r, _) = parse(json!({"model": "m", "input": [1, 2, 3]})).unwrap();
        assert_eq!(kinds(&r), vec![&Kind::Tokens(contract::TokenIds { ids: vec![1, 2, 3] })]);
        let (r, _) = parse(json!({"model": "m", "input": [[1, 2], [3]]})).unwrap();
        assert_eq!(r.inputs.len(), 2);
        assert!(!r.truncate);
    }

    #[test]
    fn bad_inputs_are_named() {
        for (body, says) in [
            (json!({"model": "m"}), "input is required"),
            (json!({"model": "m", "input": ""}), "empty string"),
            (json!({"model": "m", "input": []}), "empty list"),
            (json!({"model": "m", "input": ["a", 1]}), "input[1]"),
            (json!({"model": "m", "input": [1, -2]}), "input[1]"),
            (json!({"model": "m", "input": [[1], []]}), "input[1]"),
            (json!({"model": "m", "input": "x", "encoding_format": "int8"}), "encoding_format"),
            (json!({"model": "m", "input": "x", "dimensions": 0}), "dimensions"),
            (json!({"model": "m", "input": "x", "extra_body": 1}), "extra_body"),
            (json!({"input": "x"}), "model is required"),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert!(e.message.contains(says), "{body}: {}", e.message);
        }
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let out = contract::EmbedResponse {
            model: "m".into(),
            embeddings: vec![contract::Embedding { values: vec![1.0, -2.5] }],
            prompt_tokens: 3,
            timings: None,
        };
        let r = response("m", out, Encoding::Base64);
        let Vector::Base64(b) = &r.data[0].embedding else { panic!("base64 expected") };
        let bytes = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
        assert_eq!(r.usage.total_tokens, 3);
    }
}
