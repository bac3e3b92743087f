//! One side of the conversation: an Ollama API endpoint, `POST /api/chat` with streaming so the
//! time to first token is measured.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

/// Which side of the conversation a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Answers the questions (`--server`).
    Answering,
    /// Writes the follow-up questions (`--follow-up-server`).
    FollowUp,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Answering => "answering side",
            Side::FollowUp => "follow-up side",
        })
    }
}

/// A chat message (Ollama's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Message {
        Message { role: "user".into(), content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message { role: "assistant".into(), content: content.into() }
    }
}

/// What a side failed with: always names the side and its URL.
#[derive(Debug, thiserror::Error)]
#[error("{side} ({url}): {kind}")]
pub struct ChatError {
    pub side: Side,
    pub url: String,
    pub kind: ChatErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatErrorKind {
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("model {model:?} is not known to the server: {message}")]
    UnknownModel { model: String, message: String },
    #[error("the server answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("the server reported an error mid-answer: {0}")]
    Stream(String),
}

/// One finished chat request, measured.
#[derive(Debug, Clone, Default)]
pub struct ChatResult {
    pub content: String,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// Generation speed: `eval_count / eval_duration` when reported, else over the time after the first token.
    pub tokens_per_sec: Option<f64>,
    /// Per-hop durations in milliseconds from `Server-Timing` (`name;dur=12.3`).
    pub server_timing: BTreeMap<String, f64>,
}

/// An Ollama API client for one side.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    side: Side,
    url: String,
    model: String,
    num_predict: u32,
    temperature: f64,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    eval_duration: Option<u64>,
    #[serde(default)]
    server_timing: Option<String>,
}

impl ChatClient {
    pub fn new(
        side: Side,
        url: &str,
        model: &str,
        num_predict: u32,
        temperature: f64,
        timeout: Duration,
    ) -> ChatClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client");
        ChatClient {
            http,
            side,
            url: url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            num_predict,
            temperature,
        }
    }

    pub fn side(&self) -> Side {
        self.side
    }
    pub fn url(&self) -> &str {
        &self.url
    }
    pub fn model(&self) -> &str {
        &self.model
    }

    fn err(&self, kind: ChatErrorKind) -> ChatError {
        ChatError { side: self.side, url: self.url.clone(), kind }
    }

    /// Sends the messages, streams the answer, and measures it. `on_token` sees each piece.
    pub async fn chat(
        &self,
        messages: &[Message],
        mut on_token: impl FnMut(&str),
    ) -> Result<ChatResult, ChatError> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "options": { "num_predict": self.num_predict, "temperature": self.temperature },
        });
        let start = Instant::now();
        let response = self
            .http
            .post(format!("{}/api/chat", self.url))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.err(ChatErrorKind::Unreachable(error_chain(&e))))?;
        let status = response.status();
        let header_timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("error")
                        .map(|e| e.as_str().map(str::to_string).unwrap_or_else(|| e.to_string()))
                })
                .unwrap_or_else(|| text.chars().take(300).collect());
            if status.as_u16() == 404 && message.contains(&self.model) {
                return Err(
                    self.err(ChatErrorKind::UnknownModel { model: self.model.clone(), message })
                );
            }
            return Err(self.err(ChatErrorKind::Status { status: status.as_u16(), message }));
        }
        let mut result = ChatResult::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut done = None;
        let mut stream = response.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| {
                self.err(ChatErrorKind::Unreachable(format!(
                    "connection lost mid-answer: {}",
                    error_chain(&e)
                )))
            })?;
            buf.extend_from_slice(&piece);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if let Some(chunk) = self.parse_line(&line)? {
                    if self.take(chunk, &mut result, &mut done, start, &mut on_token)? {
                        break;
                    }
                }
            }
        }
        if !buf.is_empty() {
            if let Some(chunk) = self.parse_line(&buf)? {
                self.take(chunk, &mut result, &mut done, start, &mut on_token)?;
            }
        }
        result.latency = start.elapsed();
        let done = done.ok_or_else(|| {
            self.err(ChatErrorKind::Malformed(
                "the stream ended without a final (\"done\": true) object".into(),
            ))
        })?;
        result.tokens_in = done.prompt_eval_count;
        result.tokens_out = done.eval_count;
        result.tokens_per_sec = match (done.eval_count, done.eval_duration) {
            (Some(n), Some(d)) if d > 0 => Some(n as f64 / (d as f64 / 1e9)),
            (Some(n), _) => {
                let gen =
                    result.latency.saturating_sub(result.ttft.unwrap_or_default()).as_secs_f64();
                (gen > 0.0).then(|| n as f64 / gen)
            }
            _ => None,
        };
        if let Some(h) = header_timing.as_deref() {
            result.server_timing.extend(parse_server_timing(h));
        }
        if let Some(t) = done.server_timing.as_deref() {
            result.server_timing.extend(parse_server_timing(t));
        }
        Ok(result)
    }

    fn parse_line(&self, line: &[u8]) -> Result<Option<Chunk>, ChatError> {
        let text = std::str::from_utf8(line)
            .map_err(|_| self.err(ChatErrorKind::Malformed("invalid UTF-8 in the stream".into())))?
            .trim();
        if text.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(text).map(Some).map_err(|e| {
            let shown: String = text.chars().take(120).collect();
            self.err(ChatErrorKind::Malformed(format!(
                "{e} in {shown:?} (is this an Ollama API endpoint?)"
            )))
        })
    }

    /// Folds one streamed object in; true when it was the final one.
    fn take(
        &self,
        chunk: Chunk,
        result: &mut ChatResult,
        done: &mut Option<Chunk>,
        start: Instant,
        on_token: &mut impl FnMut(&str),
    ) -> Result<bool, ChatError> {
        if let Some(e) = chunk.error {
            return Err(self.err(ChatErrorKind::Stream(e)));
        }
        if let Some(m) = &chunk.message {
            if !m.content.is_empty() {
                if result.ttft.is_none() {
                    result.ttft = Some(start.elapsed());
                }
                result.content.push_str(&m.content);
                on_token(&m.content);
            }
        } else if !chunk.done {
            return Err(self.err(ChatErrorKind::Malformed(
                "a streamed object has neither \"message\" nor \"done\"".into(),
            )));
        }
        if chunk.done {
            *done = Some(chunk);
            return Ok(true);
        }
        Ok(false)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = inner.source();
    }
    s
}

/// `llm-server;dur=12.3, gateway;dur=4` -> {"llm-server": 12.3, "gateway": 4.0}.
pub fn parse_server_timing(value: &str) -> BTreeMap<String, f64> {
    value
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let name = parts.next().filter(|n| !n.is_empty())?;
            let dur = parts.find_map(|p| p.strip_prefix("dur="))?.trim_matches('"').parse().ok()?;
            Some((name.to_string(), dur))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_entries() {
        let t = parse_server_timing("llm-server;dur=12.3, gateway;dur=4, main-service;desc=\"x\";dur=2.5, junk, lambda;dur=abc");
        assert_eq!(t.len(), 3);
        assert_eq!(t["llm-server"], 12.3);
        assert_eq!(t["gateway"], 4.0);
        assert_eq!(t["main-service"], 2.5);
        assert!(parse_server_timing("").is_empty());
    }

    #[test]
    fn errors_name_the_side_and_url() {
        let e = ChatError {
            side: Side::FollowUp,
            url: "http://x:1".into(),
            kind: ChatErrorKind::Unreachable("refused".into()),
        };
        assert_eq!(e.to_string(), "follow-up side (http://x:1): cannot reach the server: refused");
    }
}
