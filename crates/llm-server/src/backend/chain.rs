//! The chain backend: Ollama and OpenAI requests become contract requests sent through the API
//! Gateway (with its API key) to MainService, which runs them on Lambda and Bedrock. Binary
//! protobuf on the wire; streamed answers are length-delimited `StreamChunk` messages passed
//! on as they arrive.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use chrono::Utc;
use contract::{ChunkKind, ChunkStream, ErrorKind, HopTiming, StreamChunk};
use futures::StreamExt;
use prost::Message as _;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use super::{Backend, ModelDescriptor, ModelDetails, PullStream, RunningModel};

/// A value that never appears in logs or debug output.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainSettings {
    /// The API Gateway's base URL (its `/v1/generate` route leads to MainService).
    pub gateway_url: String,
    /// The `x-api-key` to send. Prefer `STRATA_SERVER__CHAIN__API_KEY` or `api_key_file` to
    /// writing it in the file.
    pub api_key: Secret,
    /// A file whose first line is the API key (used when `api_key` is empty). Read at start, and
    /// again when the gateway refuses the key (403): a rotated key is picked up without a
    /// restart, and the refused request is sent once more with it.
    pub api_key_file: Option<PathBuf>,
    /// Send the key a caller authenticated with at this server (`server.api_keys`) to the
    /// gateway instead of `api_key`, so that the gateway's usage plan for that key applies to
    /// that client. The gateway must then know the same keys. Callers of a server without keys
    /// are sent with `api_key`.
    pub forward_caller_key: bool,
    /// Model names the chain serves, as `/api/tags` and `/v1/models` list them.
    pub models: Vec<String>,
    /// Connecting to the gateway.
    pub connect_timeout_ms: u64,
    /// Until the gateway's response headers (the gateway's own integration timeout is 29 s).
    pub response_timeout_ms: u64,
    /// Longest wait for the next bytes of a streamed answer. A hop below that stops answering
    /// mid-stream (stopped, wedged, a silent network) ends the stream with a timeout error
    /// after this, not after the whole `server.request_timeout_secs`.
    pub chunk_timeout_secs: u64,
    /// Largest single streamed `StreamChunk` accepted from the chain; a length prefix above it
    /// ends the stream with an error instead of being buffered.
    pub max_chunk_bytes: usize,
}

impl Default for ChainSettings {
    fn default() -> Self {
        ChainSettings {
            gateway_url: "http://127.0.0.1:8080".into(),
            api_key: Secret::default(),
            api_key_file: None,
            forward_caller_key: true,
            models: vec!["smollm2:135m".into()],
            connect_timeout_ms: 2_000,
            response_timeout_ms: 35_000,
            chunk_timeout_secs: 330,
            max_chunk_bytes: 8 * 1024 * 1024,
        }
    }
}

pub struct ChainBackend {
    settings: ChainSettings,
    /// Replaced when `api_key_file` holds a new key.
    api_key: RwLock<String>,
    http: reqwest::Client,
}

impl ChainBackend {
    pub fn new(settings: ChainSettings) -> std::io::Result<Self> {
        let mut api_key = settings.api_key.0.clone();
        if api_key.is_empty() {
            if let Some(path) = &settings.api_key_file {
                api_key = read_key_file(path)?;
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(ChainBackend { settings, api_key: RwLock::new(api_key), http })
    }

    fn api_key(&self) -> String {
        self.api_key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// After the gateway refused `refused`: the key in `api_key_file`, if it is another one
    /// (the key was rotated), which then replaces it.
    fn rotated_key(&self, refused: &str) -> Option<String> {
        if !self.settings.api_key.0.is_empty() {
            return None;
        }
        let key = read_key_file(self.settings.api_key_file.as_ref()?)
            .ok()
            .filter(|k| !k.is_empty() && k != refused)?;
        *self.api_key.write().unwrap_or_else(|e| e.into_inner()) = key.clone();
        tracing::info!("api_key_file holds a new API key; using it from now on");
        Some(key)
    }

    /// Posts `body` to `path` on the gateway with the right key: the caller's own when it
    /// authenticated with one and the chain is told to pass it on (the gateway's usage plans
    /// then apply per client), otherwise this server's. A refused key is checked before
    /// anything runs, so the request is sent once more with a rotated key; a caller's own key
    /// is not replaced by this server's.
    async fn post(
        &self,
        path: &str,
        body: bytes::Bytes,
        traceparent: &str,
        caller: &super::Caller,
    ) -> Result<reqwest::Response, contract::Error> {
        let url = format!("{}{path}", self.settings.gateway_url.trim_end_matches('/'));
        let forwarded = caller
            .api_key
            .as_ref()
            .filter(|_| self.settings.forward_caller_key)
            .map(|k| k.expose_secret().to_owned());
        let key = forwarded.clone().unwrap_or_else(|| self.api_key());
        let response = self.send(&url, body.clone(), traceparent, &key).await?;
        if response.status() == reqwest::StatusCode::FORBIDDEN && forwarded.is_none() {
            if let Some(rotated) = self.rotated_key(&key) {
                return self.send(&url, body, traceparent, &rotated).await;
            }
        }
        Ok(response)
    }

    async fn send(
        &self,
        url: &str,
        body: bytes::Bytes,
        traceparent: &str,
        api_key: &str,
    ) -> Result<reqwest::Response, contract::Error> {
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header(reqwest::header::ACCEPT, "application/x-protobuf")
            .header("x-api-key", api_key)
            .body(body);
        if !traceparent.is_empty() {
            request = request.header("traceparent", traceparent);
        }
        tokio::time::timeout(
            Duration::from_millis(self.settings.response_timeout_ms),
            request.send(),
        )
        .await
        .map_err(|_| {
            contract::Error::new(ErrorKind::Timeout, "the API gateway did not answer in time")
        })?
        .map_err(|e| upstream(format!("could not reach the API gateway: {e}")))
    }
}

/// The key is the file's first line.
fn read_key_file(path: &std::path::Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.lines().next().unwrap_or_default().trim().to_owned())
}

impl ChainBackend {
    fn descriptor(name: &str) -> ModelDescriptor {
        ModelDescriptor {
            name: name.to_owned(),
            size: 0,
            digest: format!("chain:{name}"),
            modified_at: Utc::now(),
            format: "chain".into(),
            family: "chain".into(),
            parameter_size: String::new(),
            quantization_level: String::new(),
        }
    }
}

/// The gateway's own entry of a `Server-Timing` header (`gateway;dur=12.3`), in ns.
fn gateway_timing(headers: &reqwest::header::HeaderMap) -> Option<HopTiming> {
    headers
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|entry| {
            let mut parts = entry.trim().split(';');
            if parts.next()?.trim() != "gateway" {
                return None;
            }
            let ms: f64 = parts.find_map(|p| p.trim().strip_prefix("dur="))?.parse().ok()?;
            Some(HopTiming { hop: "gateway".into(), dur_ns: (ms * 1e6) as u64 })
        })
}

/// An error answer from the gateway (`{"message": ...}`) or MainService
/// (`{"error": {"kind", "message"}}`) as a contract error; the status decides the kind.
fn error_from_response(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> contract::Error {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let message = v["error"]["message"]
        .as_str()
        .or(v["message"].as_str())
        .or(v["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let kind = match status.as_u16() {
        400 | 413 | 422 => ErrorKind::InvalidRequest,
        401 | 403 => ErrorKind::Unauthorized,
        404 => ErrorKind::ModelNotFound,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::Overloaded,
        504 => ErrorKind::Timeout,
        _ => ErrorKind::Upstream,
    };
    // MainService names its own kinds; keep them where they are more precise.
    let kind = match v["error"]["kind"].as_str() {
        Some("CONTEXT_LENGTH") => ErrorKind::ContextLength,
        Some("OVERLOADED") if kind == ErrorKind::RateLimited => ErrorKind::RateLimited,
        _ => kind,
    };
    let message = match (status.as_u16(), message.as_str()) {
        (403, "Forbidden") => "the API gateway refused the API key (403 Forbidden)".to_owned(),
        (_, "") => format!("the chain answered {status}"),
        _ => message,
    };
    let mut e = contract::Error::new(kind, message);
    if let Some(secs) = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        e.retry_after_ms = secs.saturating_mul(1000);
    }
    e
}

fn upstream(message: impl Into<String>) -> contract::Error {
    contract::Error::new(ErrorKind::Upstream, message)
}

#[async_trait]
impl Backend for ChainBackend {
    fn embeds(&self) -> bool {
        true
    }

    /// `/v1/embed` through the gateway: one `EmbedRequest` down, one `EmbedResponse` back.
    async fn embed(
        &self,
        req: contract::EmbedRequest,
        caller: &super::Caller,
    ) -> Result<contract::EmbedResponse, contract::Error> {
        let traceparent = req.trace.as_ref().map(|t| t.traceparent.clone()).unwrap_or_default();
        let response = self
            .post("/v1/embed", bytes::Bytes::from(req.encode_to_vec()), &traceparent, caller)
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| upstream(format!("reading the chain's answer: {e}")))?;
        if !status.is_success() {
            return Err(error_from_response(status, &headers, &body));
        }
        let mut out = contract::EmbedResponse::decode(body)
            .map_err(|e| upstream(format!("the chain's answer is not an EmbedResponse: {e}")))?;
        if let Some(g) = gateway_timing(&headers) {
            out.timings.get_or_insert_with(Default::default).hops.push(g);
        }
        Ok(out)
    }

    async fn generate(
        &self,
        req: contract::GenerateRequest,
        caller: &super::Caller,
    ) -> Result<ChunkStream, contract::Error> {
        let traceparent = req.trace.as_ref().map(|t| t.traceparent.clone()).unwrap_or_default();
        let stream = req.stream;
        let response = self
            .post("/v1/generate", bytes::Bytes::from(req.encode_to_vec()), &traceparent, caller)
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(error_from_response(status, &headers, &body));
        }
        let gateway = gateway_timing(&headers);
        let with_gateway = move |mut chunk: StreamChunk| {
            if let (Some(ChunkKind::Done(done)), Some(g)) = (&mut chunk.kind, &gateway) {
                done.timings.get_or_insert_with(Default::default).hops.push(g.clone());
            }
            chunk
        };
        if !stream {
            let body = response
                .bytes()
                .await
                .map_err(|e| upstream(format!("reading the chain's answer: {e}")))?;
            let done = contract::GenerateResponse::decode(body).map_err(|e| {
                upstream(format!("the chain's answer is not a GenerateResponse: {e}"))
            })?;
            return Ok(Box::pin(futures::stream::iter([with_gateway(StreamChunk::done(done))])));
        }
        // Chunks as they come; a stream that breaks or ends without `done`/`error` ends with
        // an error chunk, so the client always learns how it ended.
        let state = (response.bytes_stream(), BytesMut::new(), false);
        let max_chunk = self.settings.max_chunk_bytes;
        let chunk_timeout = Duration::from_secs(self.settings.chunk_timeout_secs);
        let chunks = futures::stream::unfold(
            state,
            move |(mut body, mut buf, finished)| async move {
                if finished {
                    return None;
                }
                loop {
                    if let Some(decoded) =
                        contract::edge::next_length_delimited::<StreamChunk>(&mut buf, max_chunk)
                    {
                        return Some(match decoded {
                            Ok(chunk) => {
                                let last = matches!(
                                    chunk.kind,
                                    Some(ChunkKind::Done(_) | ChunkKind::Error(_))
                                );
                                (chunk, (body, buf, last))
                            }
                            Err(e) => (
                                StreamChunk::error(upstream(format!(
                                    "the chain sent an unreadable chunk: {e}"
                                ))),
                                (body, buf, true),
                            ),
                        });
                    }
                    let Ok(next) = tokio::time::timeout(chunk_timeout, body.next()).await else {
                        let e = contract::Error::new(ErrorKind::Timeout, format!("the chain sent nothing for {} s: timed out waiting for the next chunk", chunk_timeout.as_secs()));
                        return Some((StreamChunk::error(e), (body, buf, true)));
                    };
                    match next {
                        Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                        Some(Err(e)) => {
                            return Some((
                                StreamChunk::error(upstream(format!(
                                    "the chain's stream broke: {e}"
                                ))),
                                (body, buf, true),
                            ))
                        }
                        None => {
                            return Some((
                                StreamChunk::error(upstream(
                                    "the chain ended the stream before it finished",
                                )),
                                (body, buf, true),
                            ))
                        }
                    }
                }
            },
        );
        Ok(Box::pin(chunks.map(with_gateway)))
    }

    /// The chain's models are always "loaded" as far as this server can tell.
    async fn load(&self, _model: &str) -> Result<(), contract::Error> {
        Ok(())
    }

    async fn list_models(&self) -> Result<Vec<ModelDescriptor>, contract::Error> {
        Ok(self.settings.models.iter().map(|m| Self::descriptor(m)).collect())
    }

    async fn show(&self, model: &str) -> Result<ModelDetails, contract::Error> {
        if !self.settings.models.iter().any(|m| m == model) {
            return Err(contract::Error::new(
                ErrorKind::ModelNotFound,
                format!("model \"{model}\" not found"),
            ));
        }
        let mut model_info = serde_json::Map::new();
        model_info.insert("strata.chain.gateway".into(), self.settings.gateway_url.clone().into());
        Ok(ModelDetails {
            descriptor: Self::descriptor(model),
            template: String::new(),
            parameters: String::new(),
            model_info,
            context_length: 0,
            capabilities: vec!["completion", "tools"],
        })
    }

    async fn running(&self) -> Result<Vec<RunningModel>, contract::Error> {
        Ok(Vec::new())
    }

    async fn pull(&self, model: &str) -> Result<PullStream, contract::Error> {
        Err(contract::Error::new(
            ErrorKind::InvalidRequest,
            format!("{model} is served by the chain; there is nothing to pull"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_refusals_become_contract_errors_with_retry_after() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        let e = error_from_response(
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"message":"Too Many Requests"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after_ms, 3000);
        let e = error_from_response(
            reqwest::StatusCode::FORBIDDEN,
            &Default::default(),
            br#"{"message":"Forbidden"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        let e = error_from_response(
            reqwest::StatusCode::GATEWAY_TIMEOUT,
            &Default::default(),
            br#"{"message":"Endpoint request timed out"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }

    #[test]
    fn the_gateway_entry_is_read_from_server_timing() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("server-timing", "main-service;dur=5, gateway;dur=1.5".parse().unwrap());
        assert_eq!(gateway_timing(&h).unwrap().dur_ns, 1_500_000);
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let s = ChainSettings { api_key: Secret("sk-very-secret".into()), ..Default::default() };
        assert!(!format!("{s:?}").contains("very-secret"));
    }
}
