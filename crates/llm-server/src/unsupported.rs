//! Nothing is dropped silently: a request field that strata does not honour is either on a
//! documented list of fields accepted and ignored (each with its reason, in
//! docs/configuration.md "Request fields"), harmless in the value sent (`logprobs: false`), or
//! refused with a 400 that names it. Each request type collects the fields it does not know
//! into an `extra` map, checked here.

use serde_json::{Map, Value};

/// Fields whose value changes nothing here when it is the default one.
fn harmless(name: &str, v: &Value) -> bool {
    match name {
        "logprobs" | "echo" | "think" => v == &Value::Bool(false),
        "top_logprobs" | "best_of" => {
            v.as_u64().is_some_and(|n| n <= 1) && (name != "top_logprobs" || v.as_u64() == Some(0))
        }
        "modalities" => v == &serde_json::json!(["text"]),
        "suffix" | "template" => v.as_str().is_some_and(str::is_empty),
        "context" => v.as_array().is_some_and(Vec::is_empty),
        _ => false,
    }
}

/// Refuses the first field of `extra` that is neither ignored by design nor harmless.
/// `where_` prefixes the name (`options.`) so the error points at it.
pub fn check(
    extra: &Map<String, Value>,
    ignored: &[&str],
    where_: &str,
) -> Result<(), contract::Error> {
    for (name, value) in extra {
        if value.is_null() || ignored.contains(&name.as_str()) || harmless(name, value) {
            continue;
        }
        return Err(contract::Error::new(
            contract::ErrorKind::InvalidRequest,
            format!(
                "{where_}{name} is not supported by this server (sent {}); leave it out",
                short(value)
            ),
        ));
    }
    Ok(())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}...", &s[..s.char_indices().nth(37).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

/// OpenAI chat completions fields accepted and ignored: identifiers and hints that change no
/// output (abuse-monitoring ids, caching and storage hints, the service tier).
pub const OPENAI_CHAT_IGNORED: &[&str] =
    &["user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"];

/// The legacy completions API: the same identifiers.
pub const OPENAI_COMPLETIONS_IGNORED: &[&str] = &["user"];

/// Ollama request fields accepted and ignored: `truncate` and `shift` ask for what strata does
/// anyway (long chats are truncated to fit, per `engine.truncate_chat`).
pub const OLLAMA_IGNORED: &[&str] = &["truncate", "shift"];

/// Ollama options accepted and ignored: hardware and runtime settings that belong to the
/// server's configuration (`[engine]`), not to one request.
pub const OLLAMA_OPTIONS_IGNORED: &[&str] = &[
    "num_thread",
    "num_gpu",
    "main_gpu",
    "num_batch",
    "use_mmap",
    "use_mlock",
    "low_vram",
    "numa",
    "vocab_only",
    "num_keep",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ignored_null_and_harmless_fields_pass_others_are_named() {
        assert!(check(&map(json!({"user": "u1", "logprobs": false, "top_logprobs": 0, "seed_extra": null, "modalities": ["text"]})), OPENAI_CHAT_IGNORED, "").is_ok());
        let e = check(&map(json!({"logit_bias": {"50256": -100}})), OPENAI_CHAT_IGNORED, "")
            .unwrap_err();
        assert!(e.message.starts_with("logit_bias is not supported"), "{}", e.message);
        let e =
            check(&map(json!({"mirostat": 2})), OLLAMA_OPTIONS_IGNORED, "options.").unwrap_err();
        assert!(e.message.starts_with("options.mirostat"), "{}", e.message);
        assert!(check(&map(json!({"num_thread": 8})), OLLAMA_OPTIONS_IGNORED, "options.").is_ok());
        assert!(check(&map(json!({"think": true})), OLLAMA_IGNORED, "").is_err());
        assert!(check(&map(json!({"suffix": "x"})), OLLAMA_IGNORED, "").is_err());
    }
}
