//! The engine seen through the internal contract: pure conversions between
//! `contract::GenerateRequest` / `StreamChunk` and the engine's own types, so every hop that
//! serves the embedded model (the LLM Server's `embedded` backend, the Bedrock emulator) maps
//! them the same way.

use std::time::Instant;

use contract::{ErrorKind, GenerateResponse, HopTiming, StreamChunk, Timings, Usage};

use crate::request::{ChatMessage, Completion, EngineError, EngineRequest, Event, FinishReason, GenerateParams, Prompt, Role, SamplingParams};

/// Contract request -> engine request. Validation of ranges happens in the engine.
pub fn to_engine_request(req: &contract::GenerateRequest) -> Result<EngineRequest, contract::Error> {
    let invalid = |m: String| contract::Error::new(ErrorKind::InvalidRequest, m);
    let prompt = match &req.raw_prompt {
        Some(raw) => {
            if !req.messages.is_empty() {
                return Err(invalid("raw_prompt and messages are mutually exclusive".into()));
            }
            Prompt::Raw(raw.clone())
        }
        None => {
            let mut messages = Vec::with_capacity(req.messages.len() + 1);
            if let Some(system) = &req.system {
                messages.push(ChatMessage::new(Role::System, system.clone()));
            }
            for (i, m) in req.messages.iter().enumerate() {
                let role = match m.role() {
                    contract::Role::System => Role::System,
                    contract::Role::User => Role::User,
                    contract::Role::Assistant => Role::Assistant,
                    contract::Role::Unspecified => return Err(invalid(format!("messages[{i}].role is missing or unknown"))),
                };
                messages.push(ChatMessage::new(role, m.content.clone()));
            }
            Prompt::Chat(messages)
        }
    };
    let defaults = SamplingParams::default();
    let o = req.options.clone().unwrap_or_default();
    let max_tokens = match o.num_predict {
        None => None,
        Some(n) if n < 0 => None,
        Some(n) => Some(n as u32),
    };
    Ok(EngineRequest {
        prompt,
        params: GenerateParams {
            sampling: SamplingParams {
                temperature: o.temperature.unwrap_or(defaults.temperature),
                top_k: o.top_k.unwrap_or(defaults.top_k),
                top_p: o.top_p.unwrap_or(defaults.top_p),
                min_p: o.min_p.unwrap_or(defaults.min_p),
                repeat_penalty: o.repeat_penalty.unwrap_or(defaults.repeat_penalty),
                repeat_last_n: o.repeat_last_n.unwrap_or(defaults.repeat_last_n),
                seed: o.seed,
            },
            max_tokens,
            num_ctx: o.num_ctx,
            stop: o.stop,
            json: req.format() == contract::ResponseFormat::Json,
        },
    })
}

pub fn error_to_contract(e: &EngineError) -> contract::Error {
    let kind = match e {
        EngineError::QueueFull { .. } => ErrorKind::Overloaded,
        EngineError::PromptTooLong { .. } => ErrorKind::ContextLength,
        EngineError::InvalidRequest(_) | EngineError::Template(_) => ErrorKind::InvalidRequest,
        EngineError::Inference(_)
        | EngineError::ShutDown
        | EngineError::Cancelled
        | EngineError::ReaderBehind { .. } => ErrorKind::Internal,
    };
    contract::Error::new(kind, e.to_string())
}

pub fn done_reason(reason: FinishReason) -> contract::DoneReason {
    match reason {
        FinishReason::Stop => contract::DoneReason::Stop,
        FinishReason::Length => contract::DoneReason::Length,
        FinishReason::StopSequence => contract::DoneReason::StopSequence,
    }
}

/// The final chunk of a stream. `content` is the whole answer for non-streaming callers and
/// empty when the text already went out as deltas.
pub fn final_response(model: &str, content: String, c: &Completion, hop: &str, started: Instant) -> GenerateResponse {
    let total = started.elapsed();
    GenerateResponse {
        model: model.to_owned(),
        message: Some(contract::Message::assistant(content)),
        done_reason: done_reason(c.reason) as i32,
        usage: Some(Usage { prompt_tokens: c.prompt_tokens, completion_tokens: c.completion_tokens }),
        timings: Some(Timings {
            load_ns: c.load.as_nanos() as u64,
            prompt_eval_ns: c.prompt_eval.as_nanos() as u64,
            eval_ns: c.eval.as_nanos() as u64,
            total_ns: total.as_nanos() as u64,
            hops: vec![HopTiming { hop: hop.to_owned(), dur_ns: total.as_nanos() as u64 }],
        }),
    }
}

/// Engine event -> contract chunk.
pub fn event_to_chunk(model: &str, event: Result<Event, EngineError>, hop: &str, started: Instant) -> StreamChunk {
    match event {
        Ok(Event::Text(t)) => StreamChunk::delta(t),
        Ok(Event::Done(c)) => StreamChunk::done(final_response(model, String::new(), &c, hop, started)),
        Err(e) => StreamChunk::error(error_to_contract(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{GenerateRequest, Message, Options, ResponseFormat};

    #[test]
    fn requests_map_table() {
        let base = GenerateRequest { model: "m".into(), messages: vec![Message::user("hi")], ..Default::default() };
        let with_system = GenerateRequest { system: Some("be brief".into()), ..base.clone() };
        let raw = GenerateRequest { raw_prompt: Some("abc".into()), messages: vec![], ..base.clone() };
        let opts = GenerateRequest {
            options: Some(Options { temperature: Some(0.0), num_predict: Some(-1), stop: vec!["x".into()], seed: Some(7), ..Default::default() }),
            format: ResponseFormat::Json as i32,
            ..base.clone()
        };
        let r = to_engine_request(&base).unwrap();
        assert_eq!(r.prompt, Prompt::Chat(vec![ChatMessage::new(Role::User, "hi")]));
        assert_eq!(r.params.sampling, SamplingParams::default());
        let r = to_engine_request(&with_system).unwrap();
        assert_eq!(r.prompt, Prompt::Chat(vec![ChatMessage::new(Role::System, "be brief"), ChatMessage::new(Role::User, "hi")]));
        assert_eq!(to_engine_request(&raw).unwrap().prompt, Prompt::Raw("abc".into()));
        let r = to_engine_request(&opts).unwrap();
        assert_eq!((r.params.sampling.temperature, r.params.max_tokens, r.params.sampling.seed, r.params.json), (0.0, None, Some(7), true));
        assert_eq!(r.params.stop, vec!["x".to_string()]);
    }

    #[test]
    fn invalid_requests_map_to_invalid_request_errors() {
        let both = GenerateRequest { raw_prompt: Some("a".into()), messages: vec![Message::user("b")], ..Default::default() };
        assert_eq!(to_engine_request(&both).unwrap_err().kind(), ErrorKind::InvalidRequest);
        let no_role = GenerateRequest { messages: vec![Message { role: 0, content: "x".into() }], ..Default::default() };
        assert_eq!(to_engine_request(&no_role).unwrap_err().kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn errors_map_with_retryability() {
        let e = error_to_contract(&EngineError::QueueFull { depth: 3 });
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        assert!(e.retryable);
        let e = error_to_contract(&EngineError::PromptTooLong { tokens: 9, limit: 4 });
        assert_eq!(e.kind(), ErrorKind::ContextLength);
        assert!(!e.retryable);
    }
}
