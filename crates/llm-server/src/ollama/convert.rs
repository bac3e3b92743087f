//! Pure conversions: Ollama requests -> contract requests, contract results -> Ollama
//! responses. No I/O, table-tested.

use chrono::{DateTime, SecondsFormat, Utc};
use contract::{ErrorKind, GenerateResponse as Final, ResponseFormat};

use super::types::*;
use crate::backend::{ModelDescriptor, ModelDetails as BackendDetails, RunningModel};

fn invalid(msg: impl Into<String>) -> contract::Error {
    contract::Error::new(ErrorKind::InvalidRequest, msg)
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub fn options_to_contract(o: Option<Options>) -> Result<Option<contract::Options>, contract::Error> {
    let Some(o) = o else { return Ok(None) };
    let seed = match o.seed {
        None => None,
        // Ollama treats a negative seed as "random".
        Some(s) if s < 0 => None,
        Some(s) => Some(u32::try_from(s).map_err(|_| invalid("option \"seed\" must fit in 32 bits"))?),
    };
    let num_ctx = match o.num_ctx {
        None => None,
        Some(n) if n <= 0 => return Err(invalid("option \"num_ctx\" must be positive")),
        Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
    };
    Ok(Some(contract::Options {
        temperature: o.temperature,
        top_k: o.top_k,
        top_p: o.top_p,
        min_p: o.min_p,
        repeat_penalty: o.repeat_penalty,
        repeat_last_n: o.repeat_last_n,
        seed,
        num_predict: o.num_predict,
        num_ctx,
        stop: o.stop.unwrap_or_default(),
    }))
}

/// `format`: `"json"` or a JSON schema object both constrain output to JSON; `""`/null is text.
pub fn format_to_contract(format: &Option<serde_json::Value>) -> Result<ResponseFormat, contract::Error> {
    match format {
        None | Some(serde_json::Value::Null) => Ok(ResponseFormat::Text),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(ResponseFormat::Text),
        Some(serde_json::Value::String(s)) if s == "json" => Ok(ResponseFormat::Json),
        Some(serde_json::Value::Object(_)) => Ok(ResponseFormat::Json),
        Some(other) => Err(invalid(format!("invalid format: {other}; expected \"json\" or a JSON schema"))),
    }
}

fn role(name: &str, i: usize) -> Result<contract::Role, contract::Error> {
    contract::Role::from_name(name).ok_or_else(|| invalid(format!("invalid role \"{name}\" in message {i}: must be system, user or assistant")))
}

fn require_model(model: &str) -> Result<(), contract::Error> {
    if model.trim().is_empty() { Err(invalid("model is required")) } else { Ok(()) }
}

fn refuse_images(images: &Option<Vec<String>>) -> Result<(), contract::Error> {
    match images {
        Some(i) if !i.is_empty() => Err(invalid("this model does not support images")),
        _ => Ok(()),
    }
}

/// Ollama's `keep_alive`: a number of seconds or a duration string ("5m", "0s", "-1").
/// strata keeps models loaded until told otherwise; only "unload now" (zero) changes anything.
pub fn keep_alive_is_zero(v: &Option<serde_json::Value>) -> Result<bool, contract::Error> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Number(n)) => Ok(n.as_f64() == Some(0.0)),
        Some(serde_json::Value::String(s)) => {
            let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let value: f64 = digits.parse().map_err(|_| invalid(format!("invalid keep_alive duration \"{s}\"")))?;
            Ok(value == 0.0)
        }
        Some(other) => Err(invalid(format!("invalid keep_alive {other}"))),
    }
}

/// `None` means "load the model and answer done" (an empty prompt).
pub fn generate_to_contract(r: GenerateRequest) -> Result<Option<contract::GenerateRequest>, contract::Error> {
    require_model(&r.model)?;
    refuse_images(&r.images)?;
    if r.prompt.is_empty() {
        return Ok(None);
    }
    let format = format_to_contract(&r.format)? as i32;
    let options = options_to_contract(r.options)?;
    let stream = r.stream.unwrap_or(true);
    let req = if r.raw {
        contract::GenerateRequest { model: r.model, raw_prompt: Some(r.prompt), options, stream, format, ..Default::default() }
    } else {
        contract::GenerateRequest {
            model: r.model,
            messages: vec![contract::Message::user(r.prompt)],
            system: r.system.filter(|s| !s.is_empty()),
            options,
            stream,
            format,
            ..Default::default()
        }
    };
    Ok(Some(req))
}

/// `None` means "load the model and answer done" (no messages).
pub fn chat_to_contract(r: ChatRequest) -> Result<Option<contract::GenerateRequest>, contract::Error> {
    require_model(&r.model)?;
    if r.messages.is_empty() {
        return Ok(None);
    }
    let mut messages = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.into_iter().enumerate() {
        refuse_images(&m.images)?;
        messages.push(contract::Message::new(role(&m.role, i)?, m.content));
    }
    Ok(Some(contract::GenerateRequest {
        model: r.model,
        messages,
        options: options_to_contract(r.options)?,
        stream: r.stream.unwrap_or(true),
        format: format_to_contract(&r.format)? as i32,
        ..Default::default()
    }))
}

/// The counters of a final object. `total_ns` is measured by the API layer, the rest comes from
/// where the work happened.
pub fn metrics(done: &Final, total_ns: u64) -> Metrics {
    let usage = done.usage.unwrap_or_default();
    let t = done.timings.clone().unwrap_or_default();
    Metrics {
        total_duration: total_ns.max(t.total_ns),
        load_duration: t.load_ns,
        prompt_eval_count: usage.prompt_tokens,
        prompt_eval_duration: t.prompt_eval_ns,
        eval_count: usage.completion_tokens,
        eval_duration: t.eval_ns,
    }
}

pub fn generate_chunk(model: &str, text: String, now: DateTime<Utc>) -> GenerateResponse {
    GenerateResponse { model: model.into(), created_at: timestamp(now), response: text, done: false, done_reason: None, context: None, metrics: None }
}

pub fn generate_final(model: &str, text: String, done: &Final, total_ns: u64, now: DateTime<Utc>) -> GenerateResponse {
    GenerateResponse {
        model: model.into(),
        created_at: timestamp(now),
        response: text,
        done: true,
        done_reason: Some(done.done_reason().as_name().into()),
        context: Some(Vec::new()),
        metrics: Some(metrics(done, total_ns)),
    }
}

pub fn chat_chunk(model: &str, text: String, now: DateTime<Utc>) -> ChatResponse {
    ChatResponse {
        model: model.into(),
        created_at: timestamp(now),
        message: Message { role: "assistant".into(), content: text, images: None },
        done: false,
        done_reason: None,
        metrics: None,
    }
}

pub fn chat_final(model: &str, text: String, done: &Final, total_ns: u64, now: DateTime<Utc>) -> ChatResponse {
    ChatResponse {
        model: model.into(),
        created_at: timestamp(now),
        message: Message { role: "assistant".into(), content: text, images: None },
        done: true,
        done_reason: Some(done.done_reason().as_name().into()),
        metrics: Some(metrics(done, total_ns)),
    }
}

/// The answer to a load request (empty prompt / no messages).
/// `reason` is "load", or "unload" for `keep_alive: 0`.
pub fn load_generate(model: &str, reason: &str, now: DateTime<Utc>) -> GenerateResponse {
    GenerateResponse { model: model.into(), created_at: timestamp(now), response: String::new(), done: true, done_reason: Some(reason.into()), context: None, metrics: None }
}

pub fn load_chat(model: &str, reason: &str, now: DateTime<Utc>) -> ChatResponse {
    ChatResponse {
        model: model.into(),
        created_at: timestamp(now),
        message: Message { role: "assistant".into(), content: String::new(), images: None },
        done: true,
        done_reason: Some(reason.into()),
        metrics: None,
    }
}

pub fn details(d: &ModelDescriptor) -> ModelDetails {
    ModelDetails {
        parent_model: String::new(),
        format: d.format.clone(),
        family: d.family.clone(),
        families: if d.family.is_empty() { vec![] } else { vec![d.family.clone()] },
        parameter_size: d.parameter_size.clone(),
        quantization_level: d.quantization_level.clone(),
    }
}

pub fn list_model(d: &ModelDescriptor) -> ListModel {
    ListModel { name: d.name.clone(), model: d.name.clone(), modified_at: timestamp(d.modified_at), size: d.size, digest: d.digest.clone(), details: details(d) }
}

pub fn process_model(r: &RunningModel) -> ProcessModel {
    let d = &r.descriptor;
    ProcessModel {
        name: d.name.clone(),
        model: d.name.clone(),
        size: d.size,
        digest: d.digest.clone(),
        details: details(d),
        expires_at: timestamp(r.expires_at),
        size_vram: 0,
        context_length: r.context_length,
    }
}

pub fn show(d: &BackendDetails) -> ShowResponse {
    let modelfile = format!(
        "# Modelfile generated by \"strata show\"\nFROM {}\nTEMPLATE \"\"\"{}\"\"\"\n{}",
        d.descriptor.name,
        d.template,
        d.parameters.lines().map(|l| format!("PARAMETER {l}\n")).collect::<String>()
    );
    ShowResponse {
        license: String::new(),
        modelfile,
        parameters: d.parameters.clone(),
        template: d.template.clone(),
        details: details(&d.descriptor),
        model_info: d.model_info.clone(),
        capabilities: vec!["completion".into()],
        modified_at: timestamp(d.descriptor.modified_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gen(v: serde_json::Value) -> Result<Option<contract::GenerateRequest>, contract::Error> {
        generate_to_contract(serde_json::from_value(v).unwrap())
    }

    fn chat(v: serde_json::Value) -> Result<Option<contract::GenerateRequest>, contract::Error> {
        chat_to_contract(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn generate_requests() {
        let r = gen(json!({"model": "m", "prompt": "hi", "system": "be brief"})).unwrap().unwrap();
        assert_eq!(r.messages, vec![contract::Message::user("hi")]);
        assert_eq!(r.system.as_deref(), Some("be brief"));
        assert!(r.stream, "Ollama streams by default");
        let r = gen(json!({"model": "m", "prompt": "hi", "raw": true, "stream": false})).unwrap().unwrap();
        assert_eq!((r.raw_prompt.as_deref(), r.messages.len(), r.stream), (Some("hi"), 0, false));
        let r = gen(json!({"model": "m", "prompt": "hi", "format": "json"})).unwrap().unwrap();
        assert_eq!(r.format(), ResponseFormat::Json);
        let r = gen(json!({"model": "m", "prompt": "hi", "format": {"type": "object"}})).unwrap().unwrap();
        assert_eq!(r.format(), ResponseFormat::Json);
        assert!(gen(json!({"model": "m", "prompt": ""})).unwrap().is_none(), "empty prompt loads");
        assert_eq!(gen(json!({"prompt": "hi"})).unwrap_err().message, "model is required");
        assert_eq!(gen(json!({"model": "m", "prompt": "x", "format": "xml"})).unwrap_err().kind(), ErrorKind::InvalidRequest);
        assert_eq!(gen(json!({"model": "m", "prompt": "x", "images": ["aGk="]})).unwrap_err().kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn keep_alive_zero_means_unload() {
        let cases = [(json!(0), true), (json!("0"), true), (json!("0s"), true), (json!("5m"), false), (json!(-1), false), (json!("-1"), false), (json!(300), false)];
        for (v, want) in cases {
            assert_eq!(keep_alive_is_zero(&Some(v.clone())).unwrap(), want, "{v}");
        }
        assert!(!keep_alive_is_zero(&None).unwrap());
        assert!(keep_alive_is_zero(&Some(json!("soon"))).is_err());
        assert!(keep_alive_is_zero(&Some(json!([1]))).is_err());
    }

    #[test]
    fn options_map() {
        let r = gen(json!({"model": "m", "prompt": "x", "options": {"temperature": 0, "seed": 42, "num_predict": 5, "num_ctx": 512,
                                                                     "stop": ["\n"], "top_k": 3, "mirostat": 1}}))
        .unwrap()
        .unwrap();
        let o = r.options.unwrap();
        assert_eq!((o.temperature, o.seed, o.num_predict, o.num_ctx, o.top_k), (Some(0.0), Some(42), Some(5), Some(512), Some(3)));
        assert_eq!(o.stop, vec!["\n".to_string()]);
        assert_eq!(gen(json!({"model": "m", "prompt": "x", "options": {"seed": -1}})).unwrap().unwrap().options.unwrap().seed, None);
        assert!(gen(json!({"model": "m", "prompt": "x", "options": {"num_ctx": 0}})).is_err());
    }

    #[test]
    fn chat_requests() {
        let r = chat(json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]})).unwrap().unwrap();
        assert_eq!(r.messages, vec![contract::Message::system("s"), contract::Message::user("u")]);
        assert!(chat(json!({"model": "m", "messages": []})).unwrap().is_none());
        let e = chat(json!({"model": "m", "messages": [{"role": "wizard", "content": "u"}]})).unwrap_err();
        assert!(e.message.contains("invalid role \"wizard\""), "{}", e.message);
    }

    #[test]
    fn final_objects_carry_measured_counters() {
        let done = Final {
            model: "m".into(),
            message: None,
            done_reason: contract::DoneReason::Length as i32,
            usage: Some(contract::Usage { prompt_tokens: 7, completion_tokens: 3 }),
            timings: Some(contract::Timings { load_ns: 1, prompt_eval_ns: 2, eval_ns: 3, total_ns: 4, hops: vec![] }),
        };
        let now = Utc::now();
        let v = serde_json::to_value(generate_final("m", String::new(), &done, 10, now)).unwrap();
        assert_eq!(v["done"], true);
        assert_eq!(v["done_reason"], "length");
        assert_eq!(
            (v["total_duration"].as_u64(), v["load_duration"].as_u64(), v["prompt_eval_count"].as_u64(), v["prompt_eval_duration"].as_u64(), v["eval_count"].as_u64(), v["eval_duration"].as_u64()),
            (Some(10), Some(1), Some(7), Some(2), Some(3), Some(3))
        );
        let chunk = serde_json::to_value(chat_chunk("m", "hi".into(), now)).unwrap();
        assert_eq!(chunk["message"], json!({"role": "assistant", "content": "hi"}));
        assert!(chunk.get("eval_count").is_none());
    }
}
