//! Instant embeddings: a fixed-width vector computed from each input's bytes, the same for the
//! same input, at once. For tests and overhead benchmarks, like the instant generator's
//! replies: they carry no meaning.

use contract::{embed_input, EmbedRequest, EmbedResponse, Embedding};

use crate::invalid;

/// The width of an instant vector.
pub const WIDTH: usize = 384;

/// One vector per input, unit length, cut to `dimensions` when asked.
pub fn embed(req: &EmbedRequest) -> Result<EmbedResponse, contract::Error> {
    if req.inputs.is_empty() {
        return Err(invalid("input must hold at least one item".into()));
    }
    let width = match req.dimensions {
        None => WIDTH,
        Some(d) if (1..=WIDTH as u32).contains(&d) => d as usize,
        Some(d) => {
            return Err(invalid(format!(
                "dimensions must be between 1 and {WIDTH} for {}, not {d}",
                req.model
            )))
        }
    };
    let mut tokens = 0usize;
    let mut embeddings = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.iter().enumerate() {
        let bytes: Vec<u8> = match &input.kind {
            Some(embed_input::Kind::Text(t)) if !t.is_empty() => {
                tokens += t.split_whitespace().count().max(1);
                t.as_bytes().to_vec()
            }
            Some(embed_input::Kind::Tokens(t)) if !t.ids.is_empty() => {
                tokens += t.ids.len();
                t.ids.iter().flat_map(|id| id.to_le_bytes()).collect()
            }
            _ => return Err(invalid(format!("input {i} is empty"))),
        };
        embeddings.push(Embedding { values: vector(&bytes, width) });
    }
    Ok(EmbedResponse {
        model: req.model.clone(),
        embeddings,
        prompt_tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
        timings: None,
    })
}

/// A unit vector seeded by FNV-1a of `bytes`, its values from xorshift64.
fn vector(bytes: &[u8], width: usize) -> Vec<f32> {
    let mut state = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
        | 1;
    let values: Vec<f32> = (0..width)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    values.into_iter().map(|v| v / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(texts: &[&str], dimensions: Option<u32>) -> EmbedRequest {
        EmbedRequest {
            model: "instant".into(),
            inputs: texts
                .iter()
                .map(|t| contract::EmbedInput { kind: Some(embed_input::Kind::Text((*t).into())) })
                .collect(),
            dimensions,
            ..Default::default()
        }
    }

    #[test]
    fn the_same_input_gets_the_same_unit_vector() {
        let out = embed(&request(&["a b", "c", "a b"], None)).unwrap();
        assert_eq!(out.embeddings.len(), 3);
        assert_eq!(out.embeddings[0], out.embeddings[2]);
        assert_ne!(out.embeddings[0], out.embeddings[1]);
        let norm: f32 = out.embeddings[1].values.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4 && out.embeddings[1].values.len() == WIDTH);
        assert_eq!(out.prompt_tokens, 5);
        assert_eq!(embed(&request(&["a"], Some(8))).unwrap().embeddings[0].values.len(), 8);
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(embed(&request(&[], None)).is_err());
        assert!(embed(&request(&[""], None)).unwrap_err().message.contains("input 0"));
        assert!(embed(&request(&["a"], Some(0))).unwrap_err().message.contains("dimensions"));
        assert!(embed(&request(&["a"], Some(10_000))).unwrap_err().message.contains("dimensions"));
    }
}
