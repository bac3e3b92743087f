//! Pure conversions between OpenAI shapes and the contract, in the spirit of Ollama's
//! `openai/openai.go`: requests in, completions, chunks, usage and errors out.

use contract::{ErrorKind, GenerateResponse as Final, ResponseFormat as Format};

use super::types::*;
use crate::backend::ModelDescriptor;

pub const FINGERPRINT: &str = "fp_strata";

fn invalid(msg: impl Into<String>) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, msg)
}

fn stops(stop: Option<Stop>) -> Vec<String> {
    match stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    }
}

fn seed(seed: Option<i64>) -> Result<Option<u32>, contract::Error> {
    seed.map(|s| u32::try_from(s.rem_euclid(1 << 32)).map_err(|_| invalid("seed out of range"))).transpose()
}

fn max_tokens(n: Option<i64>) -> Result<Option<i32>, contract::Error> {
    match n {
        None => Ok(None),
        Some(n) if n < 1 => Err(invalid("max_tokens must be at least 1")),
        Some(n) => Ok(Some(i32::try_from(n).unwrap_or(i32::MAX))),
    }
}

fn only_one_choice(n: Option<u32>) -> Result<(), contract::Error> {
    match n {
        None | Some(1) => Ok(()),
        Some(_) => Err(invalid("n must be 1: only one choice per request is supported")),
    }
}

/// OpenAI's repetition penalties have no exact llama.cpp twin here; they are accepted and,
/// when positive, mapped onto a mild `repeat_penalty` as Ollama's compatibility layer does.
fn repeat_penalty(freq: Option<f32>, pres: Option<f32>) -> Option<f32> {
    let p = freq.unwrap_or(0.0).max(pres.unwrap_or(0.0));
    (p > 0.0).then(|| 1.0 + p.min(2.0) / 2.0)
}

fn content_text(c: Option<Content>, i: usize) -> Result<String, contract::Error> {
    match c {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t),
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => out.push_str(&t),
                    (kind, _) => return Err(invalid(format!("messages[{i}]: content part type \"{kind}\" is not supported"))),
                }
            }
            Ok(out)
        }
    }
}

pub fn chat_to_contract(r: ChatCompletionRequest) -> Result<contract::GenerateRequest, contract::Error> {
    if r.model.trim().is_empty() {
        return Err(invalid("you must provide a model parameter"));
    }
    if r.messages.is_empty() {
        return Err(invalid("messages must not be empty"));
    }
    only_one_choice(r.n)?;
    let mut messages = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.into_iter().enumerate() {
        // "developer" is the newer name for "system".
        let role = match m.role.as_str() {
            "developer" => contract::Role::System,
            other => contract::Role::from_name(other)
                .ok_or_else(|| invalid(format!("messages[{i}].role \"{other}\" is not supported (system, developer, user, assistant)")))?,
        };
        messages.push(contract::Message::new(role, content_text(m.content, i)?));
    }
    let format = match r.response_format.as_ref().map(|f| f.kind.as_str()) {
        None | Some("text") => Format::Text,
        Some("json_object" | "json_schema") => Format::Json,
        Some(other) => return Err(invalid(format!("response_format type \"{other}\" is not supported"))),
    };
    Ok(contract::GenerateRequest {
        model: r.model,
        messages,
        stream: r.stream,
        format: format as i32,
        options: Some(contract::Options {
            temperature: r.temperature,
            top_p: r.top_p,
            seed: seed(r.seed)?,
            num_predict: max_tokens(r.max_completion_tokens.or(r.max_tokens))?,
            stop: stops(r.stop),
            repeat_penalty: repeat_penalty(r.frequency_penalty, r.presence_penalty),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn completion_to_contract(r: CompletionRequest) -> Result<contract::GenerateRequest, contract::Error> {
    if r.model.trim().is_empty() {
        return Err(invalid("you must provide a model parameter"));
    }
    only_one_choice(r.n)?;
    let prompt = match r.prompt {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Array(a)) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or_default().to_owned(),
        Some(serde_json::Value::Array(_)) => return Err(invalid("prompt must be a string or a list of exactly one string")),
        Some(_) => return Err(invalid("prompt must be a string")),
        None => return Err(invalid("prompt is required")),
    };
    if prompt.is_empty() {
        return Err(invalid("prompt must not be empty"));
    }
    Ok(contract::GenerateRequest {
        model: r.model,
        raw_prompt: Some(prompt),
        stream: r.stream,
        options: Some(contract::Options {
            temperature: r.temperature,
            top_p: r.top_p,
            seed: seed(r.seed)?,
            // The legacy completions API defaults to 16 tokens.
            num_predict: Some(max_tokens(r.max_tokens)?.unwrap_or(16)),
            stop: stops(r.stop),
            repeat_penalty: repeat_penalty(r.frequency_penalty, r.presence_penalty),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn usage(done: &Final) -> Usage {
    let u = done.usage.unwrap_or_default();
    Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.prompt_tokens + u.completion_tokens }
}

pub fn finish_reason(done: &Final) -> String {
    done.done_reason().as_name().to_owned()
}

pub fn chat_completion(id: &str, created: i64, model: &str, text: String, done: &Final) -> ChatCompletion {
    ChatCompletion {
        id: id.into(),
        object: "chat.completion",
        created,
        model: model.into(),
        system_fingerprint: FINGERPRINT,
        choices: vec![Choice { index: 0, message: AssistantMessage { role: "assistant", content: text }, finish_reason: Some(finish_reason(done)), logprobs: None }],
        usage: usage(done),
    }
}

pub fn chat_chunk(id: &str, created: i64, model: &str, delta: Delta, finish_reason: Option<String>) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: id.into(),
        object: "chat.completion.chunk",
        created,
        model: model.into(),
        system_fingerprint: FINGERPRINT,
        choices: vec![ChunkChoice { index: 0, delta, finish_reason, logprobs: None }],
        usage: None,
    }
}

/// The extra chunk `stream_options.include_usage` asks for: no choices, only usage.
pub fn usage_chunk(id: &str, created: i64, model: &str, done: &Final) -> ChatCompletionChunk {
    ChatCompletionChunk { choices: Vec::new(), usage: Some(usage(done)), ..chat_chunk(id, created, model, Delta::default(), None) }
}

pub fn completion(id: &str, created: i64, model: &str, text: String, finish: Option<String>, usage: Option<Usage>) -> Completion {
    Completion {
        id: id.into(),
        object: "text_completion",
        created,
        model: model.into(),
        system_fingerprint: FINGERPRINT,
        choices: vec![CompletionChoice { text, index: 0, finish_reason: finish, logprobs: None }],
        usage,
    }
}

pub fn model(d: &ModelDescriptor) -> Model {
    Model { id: d.name.clone(), object: "model", created: d.modified_at.timestamp(), owned_by: "library".into() }
}

/// OpenAI's error body for a contract error.
pub fn error(e: &contract::Error) -> ErrorResponse {
    let (kind, code) = match e.kind() {
        ErrorKind::InvalidRequest => ("invalid_request_error", None),
        ErrorKind::ContextLength => ("invalid_request_error", Some("context_length_exceeded")),
        ErrorKind::ModelNotFound => ("invalid_request_error", Some("model_not_found")),
        ErrorKind::Unauthorized => ("authentication_error", Some("invalid_api_key")),
        ErrorKind::Overloaded => ("server_error", Some("overloaded")),
        ErrorKind::Timeout => ("server_error", Some("timeout")),
        ErrorKind::RateLimited => ("requests", Some("rate_limit_exceeded")),
        ErrorKind::Internal | ErrorKind::Upstream | ErrorKind::Unspecified => ("server_error", None),
    };
    ErrorResponse { error: ErrorBody { message: e.message.clone(), kind, param: None, code } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: serde_json::Value) -> Result<contract::GenerateRequest, contract::Error> {
        chat_to_contract(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn chat_requests() {
        let r = chat(json!({"model": "m", "messages": [{"role": "developer", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                           "max_tokens": 5, "stop": "x", "seed": 3, "temperature": 0.5, "response_format": {"type": "json_object"}}))
        .unwrap();
        assert_eq!(r.messages, vec![contract::Message::system("s"), contract::Message::user("ab")]);
        let o = r.options.clone().unwrap();
        assert_eq!((o.num_predict, o.seed, o.temperature, o.stop.clone()), (Some(5), Some(3), Some(0.5), vec!["x".to_string()]));
        assert_eq!(r.format(), Format::Json);
        assert!(!r.stream, "OpenAI does not stream by default");
        let r = chat(json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 9, "max_completion_tokens": 4, "stop": ["p", "q"]})).unwrap();
        assert_eq!(r.options.as_ref().unwrap().num_predict, Some(4));
        assert_eq!(r.options.unwrap().stop.len(), 2);
    }

    #[test]
    fn chat_request_errors() {
        let cases = [
            json!({"messages": [{"role": "user", "content": "a"}]}),
            json!({"model": "m", "messages": []}),
            json!({"model": "m", "messages": [{"role": "tool", "content": "a"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "n": 2}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 0}),
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}], "response_format": {"type": "yaml"}}),
        ];
        for c in cases {
            assert_eq!(chat(c.clone()).unwrap_err().kind(), ErrorKind::InvalidRequest, "{c}");
        }
    }

    #[test]
    fn completions_requests() {
        let r = completion_to_contract(serde_json::from_value(json!({"model": "m", "prompt": "once"})).unwrap()).unwrap();
        assert_eq!((r.raw_prompt.as_deref(), r.options.unwrap().num_predict), (Some("once"), Some(16)));
        let r = completion_to_contract(serde_json::from_value(json!({"model": "m", "prompt": ["x"], "max_tokens": 3})).unwrap()).unwrap();
        assert_eq!(r.options.unwrap().num_predict, Some(3));
        assert!(completion_to_contract(serde_json::from_value(json!({"model": "m", "prompt": ["a", "b"]})).unwrap()).is_err());
        assert!(completion_to_contract(serde_json::from_value(json!({"model": "m"})).unwrap()).is_err());
    }

    #[test]
    fn responses_and_errors() {
        let done = Final { done_reason: contract::DoneReason::Length as i32, usage: Some(contract::Usage { prompt_tokens: 2, completion_tokens: 3 }), ..Default::default() };
        let v = serde_json::to_value(chat_completion("id", 1, "m", "hi".into(), &done)).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"], json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}));
        let u = serde_json::to_value(usage_chunk("id", 1, "m", &done)).unwrap();
        assert_eq!(u["choices"], json!([]));
        let e = serde_json::to_value(error(&contract::Error::new(ErrorKind::ModelNotFound, "nope"))).unwrap();
        assert_eq!(e, json!({"error": {"message": "nope", "type": "invalid_request_error", "param": null, "code": "model_not_found"}}));
    }
}
