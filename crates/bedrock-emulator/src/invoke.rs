//! `POST /model/{modelId}/invoke` for the embedding models: Titan Text Embeddings V2 and
//! Cohere Embed v3 request and response bodies, checked as Bedrock checks them, answered by the
//! generator's embeddings. Differences from Bedrock, because the vectors come from a local
//! model: without `dimensions` the vector has the local model's width (Bedrock: 1024), a
//! `dimensions` wider than the local model is refused, and vectors are always normalized.

use serde_json::{json, Map, Value};

use crate::error::{AwsError, AwsErrorType};

/// The body shapes InvokeModel serves here, by model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    TitanV2,
    CohereV3,
}

impl Family {
    /// The family of a model id (with or without a cross-region prefix such as `us.`).
    pub fn of(model_id: &str) -> Option<Family> {
        if model_id.contains("amazon.titan-embed-text-v2") {
            Some(Family::TitanV2)
        } else if model_id.contains("cohere.embed-english-v3")
            || model_id.contains("cohere.embed-multilingual-v3")
        {
            Some(Family::CohereV3)
        } else {
            None
        }
    }
}

fn malformed(detail: impl std::fmt::Display) -> AwsError {
    AwsError::new(
        AwsErrorType::Validation,
        format!("Malformed input request: {detail}, please reformat your input and try again."),
    )
}

fn text_input(text: String) -> contract::EmbedInput {
    contract::EmbedInput { kind: Some(contract::embed_input::Kind::Text(text)) }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, AwsError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(malformed("#: expected type: JSONObject")),
        Err(e) => Err(malformed(format!("#: {e}"))),
    }
}

fn no_extra_keys(map: &Map<String, Value>, known: &[&str]) -> Result<(), AwsError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(malformed(format!("#: extraneous key [{k}] is not permitted"))),
        None => Ok(()),
    }
}

/// A Titan V2 body as a contract request for `local` (the local model's name).
pub fn titan_request(body: &[u8], local: &str) -> Result<contract::EmbedRequest, AwsError> {
    let map = object(body)?;
    no_extra_keys(&map, &["inputText", "dimensions", "normalize", "embeddingTypes"])?;
    let text = match map.get("inputText") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => {
            return Err(malformed("#/inputText: expected minLength: 1, actual: 0"))
        }
        Some(_) => return Err(malformed("#/inputText: expected type: String")),
        None => return Err(malformed("#: required key [inputText] not found")),
    };
    let dimensions = match map.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(d @ (256 | 512 | 1024)) => Some(d as u32),
            _ => return Err(malformed(format!("#/dimensions: {v} is not a valid enum value"))),
        },
    };
    if let Some(v) = map.get("normalize") {
        if !v.is_boolean() {
            return Err(malformed("#/normalize: expected type: Boolean"));
        }
    }
    if let Some(types) = map.get("embeddingTypes") {
        let valid = types
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|x| x == "float" || x == "binary"));
        if !valid {
            return Err(malformed(
                "#/embeddingTypes: expected a non-empty list of \"float\" and \"binary\"",
            ));
        }
        if types.as_array().is_some_and(|t| t.iter().any(|x| x == "binary")) {
            return Err(AwsError::new(
                AwsErrorType::Validation,
                "The emulator serves float embeddings only (embeddingTypes [\"float\"]).",
            ));
        }
    }
    Ok(contract::EmbedRequest {
        model: local.to_owned(),
        inputs: vec![text_input(text)],
        truncate: false,
        dimensions,
        trace: None,
    })
}

pub fn titan_response(out: contract::EmbedResponse) -> Value {
    let vector = out.embeddings.into_iter().next().map(|e| e.values).unwrap_or_default();
    json!({"embedding": vector, "embeddingsByType": {"float": vector}, "inputTextTokenCount": out.prompt_tokens})
}

/// A Cohere v3 body as a contract request, and whether it asked for vectors by type.
pub fn cohere_request(
    body: &[u8],
    local: &str,
) -> Result<(contract::EmbedRequest, Vec<String>, bool), AwsError> {
    let map = object(body)?;
    no_extra_keys(&map, &["texts", "input_type", "truncate", "embedding_types", "images"])?;
    if map.contains_key("images") {
        return Err(AwsError::new(AwsErrorType::Validation, "The emulator embeds texts only."));
    }
    let texts: Vec<String> = match map.get("texts") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed("#/texts: expected type: String"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed("#/texts: expected type: JSONArray")),
        None => return Err(malformed("#: required key [texts] not found")),
    };
    if texts.is_empty() || texts.len() > 96 {
        return Err(malformed(format!(
            "#/texts: expected between 1 and 96 items, found {}",
            texts.len()
        )));
    }
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(malformed(format!("#/texts/{i}: expected minLength: 1, actual: 0")));
    }
    match map.get("input_type").and_then(Value::as_str) {
        Some("search_document" | "search_query" | "classification" | "clustering") => {}
        Some(other) => {
            return Err(malformed(format!("#/input_type: {other} is not a valid enum value")))
        }
        None => return Err(malformed("#: required key [input_type] not found")),
    }
    let truncate = match map.get("truncate").map(|v| v.as_str()) {
        None | Some(Some("NONE")) => false,
        Some(Some("END")) => true,
        Some(Some("START")) => {
            return Err(AwsError::new(
                AwsErrorType::Validation,
                "The emulator cuts long texts at the end only (truncate END or NONE).",
            ))
        }
        Some(_) => return Err(malformed("#/truncate: expected NONE, START or END")),
    };
    let by_type = match map.get("embedding_types") {
        None | Some(Value::Null) => false,
        Some(Value::Array(t)) if t == &[json!("float")] => true,
        Some(_) => {
            return Err(AwsError::new(
                AwsErrorType::Validation,
                "The emulator serves float embeddings only (embedding_types [\"float\"]).",
            ))
        }
    };
    let request = contract::EmbedRequest {
        model: local.to_owned(),
        inputs: texts.iter().cloned().map(text_input).collect(),
        truncate,
        dimensions: None,
        trace: None,
    };
    Ok((request, texts, by_type))
}

pub fn cohere_response(out: contract::EmbedResponse, texts: Vec<String>, by_type: bool) -> Value {
    let vectors: Vec<Vec<f32>> = out.embeddings.into_iter().map(|e| e.values).collect();
    let id = uuid::Uuid::new_v4().to_string();
    if by_type {
        json!({"id": id, "texts": texts, "embeddings": {"float": vectors}, "response_type": "embeddings_by_type"})
    } else {
        json!({"id": id, "texts": texts, "embeddings": vectors, "response_type": "embeddings_floats"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_by_model_id() {
        assert_eq!(Family::of("amazon.titan-embed-text-v2:0"), Some(Family::TitanV2));
        assert_eq!(Family::of("us.cohere.embed-english-v3"), Some(Family::CohereV3));
        assert_eq!(Family::of("anthropic.claude-3-haiku"), None);
    }

    #[test]
    fn titan_bodies_are_checked_as_bedrock_does() {
        let ok =
            titan_request(br#"{"inputText": "hi", "dimensions": 512, "normalize": true}"#, "m")
                .unwrap();
        assert_eq!((ok.inputs.len(), ok.dimensions), (1, Some(512)));
        for (body, says) in [
            (&br#"{"dimensions": 256}"#[..], "inputText"),
            (br#"{"inputText": ""}"#, "minLength"),
            (br#"{"inputText": "x", "dimensions": 300}"#, "dimensions"),
            (br#"{"inputText": "x", "colour": 1}"#, "extraneous key [colour]"),
            (br#"[1]"#, "JSONObject"),
        ] {
            let e = titan_request(body, "m").unwrap_err();
            assert!(e.message.contains(says), "{}", e.message);
        }
    }

    #[test]
    fn cohere_bodies_are_checked_as_bedrock_does() {
        let (r, texts, by_type) = cohere_request(br#"{"texts": ["a", "b"], "input_type": "search_query", "truncate": "END", "embedding_types": ["float"]}"#, "m").unwrap();
        assert_eq!((r.inputs.len(), r.truncate, texts.len(), by_type), (2, true, 2, true));
        for (body, says) in [
            (&br#"{"texts": ["a"]}"#[..], "input_type"),
            (br#"{"texts": [], "input_type": "search_query"}"#, "between 1 and 96"),
            (br#"{"texts": ["a"], "input_type": "poetry"}"#, "poetry"),
            (
                br#"{"texts": ["a"], "input_type": "clustering", "embedding_types": ["int8"]}"#,
                "float",
            ),
        ] {
            let e = cohere_request(body, "m").unwrap_err();
            assert!(e.message.contains(says), "{}", e.message);
        }
    }
}
