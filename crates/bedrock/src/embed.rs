//! Embeddings through InvokeModel, by the model id's family: Titan Text Embeddings V2 (one
//! text per call, `dimensions` 256/512/1024, normalized by Bedrock) and Cohere Embed v3 (up to
//! 96 texts per call, 1024 values, `input_type` `search_document`). A request Bedrock would
//! refuse (token inputs, a Titan width it does not offer, `dimensions` for Cohere) is refused
//! here, before it costs a call.

use serde_json::{json, Value};

use contract::ErrorKind;

/// Texts per Cohere call (Bedrock's limit).
pub const COHERE_BATCH: usize = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    TitanV2,
    CohereV3,
}

impl Family {
    /// The family of a model id, with or without a cross-region prefix (`us.`).
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

fn invalid(message: String) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, message)
}

fn upstream(message: String) -> contract::Error {
    contract::Error::new(ErrorKind::Upstream, message)
}

/// The texts of a request (Bedrock's embedding models take no token ids).
pub fn texts(req: &contract::EmbedRequest) -> Result<Vec<String>, contract::Error> {
    if req.inputs.is_empty() {
        return Err(invalid("input must hold at least one item".into()));
    }
    req.inputs
        .iter()
        .enumerate()
        .map(|(i, input)| match &input.kind {
            Some(contract::embed_input::Kind::Text(t)) if !t.is_empty() => Ok(t.clone()),
            Some(contract::embed_input::Kind::Text(_)) => {
                Err(invalid(format!("input {i} is an empty string")))
            }
            Some(contract::embed_input::Kind::Tokens(_)) => Err(invalid(format!(
                "input {i} is token ids; Bedrock's embedding models take text"
            ))),
            None => Err(invalid(format!("input {i} has neither text nor tokens"))),
        })
        .collect()
}

/// Checks `dimensions` for the family before any call.
pub fn check_dimensions(
    family: Family,
    dimensions: Option<u32>,
    model_id: &str,
) -> Result<(), contract::Error> {
    match (family, dimensions) {
        (_, None) | (Family::TitanV2, Some(256 | 512 | 1024)) => Ok(()),
        (Family::TitanV2, Some(d)) => {
            Err(invalid(format!("dimensions {d} is not offered by {model_id}: 256, 512 or 1024")))
        }
        (Family::CohereV3, Some(d)) => {
            Err(invalid(format!("{model_id} has a fixed 1024 dimensions and cannot give {d}")))
        }
    }
}

pub fn titan_body(text: &str, dimensions: Option<u32>) -> Value {
    let mut body = json!({"inputText": text, "normalize": true});
    if let Some(d) = dimensions {
        body["dimensions"] = json!(d);
    }
    body
}

/// A Titan answer: the vector and the tokens read.
pub fn titan_answer(body: &[u8]) -> Result<(Vec<f32>, u32), contract::Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| upstream(format!("Titan's answer is not JSON: {e}")))?;
    let vector = floats(&v["embedding"])
        .ok_or_else(|| upstream("Titan's answer has no embedding".into()))?;
    let tokens = v["inputTextTokenCount"].as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    Ok((vector, tokens))
}

pub fn cohere_body(texts: &[String], truncate: bool) -> Value {
    json!({"texts": texts, "input_type": "search_document", "truncate": if truncate { "END" } else { "NONE" }, "embedding_types": ["float"]})
}

/// A Cohere answer's vectors, `expected` of them.
pub fn cohere_answer(body: &[u8], expected: usize) -> Result<Vec<Vec<f32>>, contract::Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| upstream(format!("Cohere's answer is not JSON: {e}")))?;
    let list = v["embeddings"].get("float").unwrap_or(&v["embeddings"]);
    let vectors: Vec<Vec<f32>> =
        list.as_array().map(|l| l.iter().filter_map(floats).collect()).unwrap_or_default();
    if vectors.len() != expected {
        return Err(upstream(format!(
            "Cohere answered {} vectors for {expected} texts",
            vectors.len()
        )));
    }
    Ok(vectors)
}

fn floats(v: &Value) -> Option<Vec<f32>> {
    v.as_array()?.iter().map(|x| x.as_f64().map(|f| f as f32)).collect()
}

/// Scales a vector to unit length (Cohere's are close to it, not exactly), as the contract
/// promises.
pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> contract::EmbedInput {
        contract::EmbedInput { kind: Some(contract::embed_input::Kind::Text(s.into())) }
    }

    #[test]
    fn requests_bedrock_would_refuse_are_refused_first() {
        let tokens = contract::EmbedInput {
            kind: Some(contract::embed_input::Kind::Tokens(contract::TokenIds { ids: vec![1] })),
        };
        let req = contract::EmbedRequest { inputs: vec![text("a"), tokens], ..Default::default() };
        assert!(texts(&req).unwrap_err().message.contains("input 1"));
        assert!(check_dimensions(Family::TitanV2, Some(300), "t").is_err());
        assert!(check_dimensions(Family::TitanV2, Some(512), "t").is_ok());
        assert!(check_dimensions(Family::CohereV3, Some(512), "c")
            .unwrap_err()
            .message
            .contains("fixed 1024"));
    }

    #[test]
    fn answers_are_read_in_both_shapes() {
        assert_eq!(
            titan_answer(br#"{"embedding": [0.6, 0.8], "inputTextTokenCount": 4}"#).unwrap(),
            (vec![0.6, 0.8], 4)
        );
        assert_eq!(
            cohere_answer(br#"{"embeddings": {"float": [[1.0], [2.0]]}}"#, 2).unwrap(),
            vec![vec![1.0], vec![2.0]]
        );
        assert_eq!(cohere_answer(br#"{"embeddings": [[1.0]]}"#, 1).unwrap(), vec![vec![1.0]]);
        assert!(cohere_answer(br#"{"embeddings": [[1.0]]}"#, 2).is_err());
        assert_eq!(normalized(vec![3.0, 4.0]), vec![0.6, 0.8]);
    }
}
