//! `[converse]`: the agent's configuration section.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of `strata converse`; flags override them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConverseSettings {
    /// The answering side: base URL of an Ollama API endpoint (`strata up`, `strata serve`, Ollama).
    pub server: String,
    /// Model asked on the answering side.
    pub model: String,
    /// The follow-up side: `embedded` (the engine in the converse process, configured by
    /// `[engine]` and `[models]`), the base URL of an Ollama API endpoint (a real Ollama at
    /// `http://localhost:11434` works unchanged), or empty for the same endpoint as `server`.
    pub follow_up_server: String,
    /// Model that writes the follow-up questions; empty means the same as `model`.
    pub follow_up_model: String,
    /// Prompt templates for the follow-up side, by name; `{answer}` is replaced by the last answer.
    pub templates: BTreeMap<String, String>,
    /// The template used unless `--template` names another.
    pub template: String,
    /// Turn limit (one turn = one question and its answer).
    pub turns: u32,
    /// Wall-clock limit of one run, such as `90s`, `10m`, `1h` or `500ms`; a turn still in flight
    /// at the limit is abandoned and not written.
    pub time_limit: String,
    /// Stop when an answer's word-set (Jaccard) similarity to an earlier answer reaches this (0..1].
    pub repetition_threshold: f64,
    /// Answers starting with one of these (case-insensitive) count as refused and stop the conversation.
    pub refusal_prefixes: Vec<String>,
    /// Context budget of each side, in tokens: the oldest exchanges are dropped from the history
    /// sent with a request until the estimate fits.
    pub context_tokens: usize,
    /// Characters per token, for estimating history size.
    pub chars_per_token: f64,
    /// Most tokens generated for an answer (`num_predict`).
    pub answer_max_tokens: u32,
    /// Most tokens generated for a follow-up question (`num_predict`).
    pub follow_up_max_tokens: u32,
    /// Sampling temperature of both sides.
    pub temperature: f64,
    /// Timeout of one request, in seconds.
    pub request_timeout_secs: u64,
}

impl Default for ConverseSettings {
    fn default() -> Self {
        let templates = [
            ("respond", "How can you respond to the statement: {answer}?"),
            ("comment", "Do you have any comments on {answer}?"),
            (
                "deeper",
                "Ask one short follow-up question that digs deeper into this answer: {answer}",
            ),
        ];
        ConverseSettings {
            server: "http://127.0.0.1:11434".into(),
            model: "smollm2:135m".into(),
            follow_up_server: EMBEDDED.into(),
            follow_up_model: String::new(),
            templates: templates.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            template: "respond".into(),
            turns: 10,
            time_limit: "10m".into(),
            repetition_threshold: 0.8,
            refusal_prefixes: vec![
                "I'm sorry, but I can't".into(),
                "I cannot help".into(),
                "I can't help".into(),
                "As an AI, I cannot".into(),
            ],
            context_tokens: 1536,
            chars_per_token: 4.0,
            answer_max_tokens: 256,
            follow_up_max_tokens: 64,
            temperature: 0.7,
            request_timeout_secs: 300,
        }
    }
}

/// The `follow_up_server` value that asks for the engine in this process.
pub const EMBEDDED: &str = "embedded";

/// Where the follow-up side's questions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpServer<'a> {
    /// The engine in this process (the caller starts it and passes its URL in `RunOptions`).
    Embedded,
    /// An Ollama API endpoint.
    Url(&'a str),
}

impl FollowUpServer<'_> {
    /// How records and reports name the side.
    pub fn label(&self) -> &str {
        match self {
            FollowUpServer::Embedded => EMBEDDED,
            FollowUpServer::Url(url) => url,
        }
    }
}

impl ConverseSettings {
    /// The follow-up side (an empty setting means the answering side's endpoint).
    pub fn follow_up_server(&self) -> FollowUpServer<'_> {
        match self.follow_up_server.trim() {
            "" => FollowUpServer::Url(&self.server),
            s if s.eq_ignore_ascii_case(EMBEDDED) => FollowUpServer::Embedded,
            _ => FollowUpServer::Url(&self.follow_up_server),
        }
    }

    /// The follow-up side's model (falls back to the answering side's).
    pub fn follow_up_model(&self) -> &str {
        if self.follow_up_model.is_empty() {
            &self.model
        } else {
            &self.follow_up_model
        }
    }
}

/// `90s`, `10m`, `1h`, `500ms`, `1.5m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (examples: 90s, 10m, 1h, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!("invalid duration unit {other:?} in {s:?} (use ms, s, m or h)"))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn defaults_include_the_issue_templates_and_a_valid_time_limit() {
        let s = ConverseSettings::default();
        assert_eq!(s.templates["respond"], "How can you respond to the statement: {answer}?");
        assert_eq!(s.templates["comment"], "Do you have any comments on {answer}?");
        assert!(s.templates.contains_key(&s.template));
        assert!(parse_duration(&s.time_limit).is_ok());
        assert_eq!(s.follow_up_server(), FollowUpServer::Embedded);
        let same = ConverseSettings { follow_up_server: String::new(), ..s.clone() };
        assert_eq!(same.follow_up_server(), FollowUpServer::Url(&s.server));
        let other = ConverseSettings { follow_up_server: "http://localhost:11434".into(), ..s };
        assert_eq!(other.follow_up_server(), FollowUpServer::Url("http://localhost:11434"));
    }
}
