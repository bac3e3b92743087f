//! The two encodings of the contract over HTTP: binary protobuf (`application/x-protobuf`,
//! streams as length-delimited `StreamChunk` messages) and JSON (`application/json`, streams
//! as NDJSON). A request's encoding is its answer's encoding.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use contract::{ChunkStream, ErrorKind, StreamChunk};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ServiceError;

pub const PROTOBUF: &str = "application/x-protobuf";
pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    /// From `Content-Type`; no content type means JSON (curl's default).
    pub fn of(headers: &HeaderMap) -> Result<Encoding, ServiceError> {
        let Some(ct) = headers.get(header::CONTENT_TYPE) else { return Ok(Encoding::Json) };
        let ct =
            ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match ct.as_str() {
            "application/json" | "" => Ok(Encoding::Json),
            "application/x-protobuf" | "application/protobuf" | "application/vnd.google.protobuf" => Ok(Encoding::Protobuf),
            other => Err(ServiceError::new(ErrorKind::InvalidRequest, format!("unsupported content type {other:?}: send application/json or application/x-protobuf"))
                .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)),
        }
    }

    /// Decodes a request; JSON deeper than `max_json_depth` levels is refused before parsing
    /// (protobuf's own decoder stops at 100 levels of nested messages).
    pub fn decode<T: prost::Message + Default + DeserializeOwned>(
        self,
        body: &[u8],
        max_json_depth: usize,
    ) -> Result<T, ServiceError> {
        match self {
            Encoding::Json if contract::edge::json_nests_deeper_than(body, max_json_depth) => {
                Err(ServiceError::new(ErrorKind::InvalidRequest, format!("the body is not a valid JSON request: it nests deeper than {max_json_depth} levels")))
            }
            Encoding::Json => serde_json::from_slice(body).map_err(|e| ServiceError::new(ErrorKind::InvalidRequest, format!("the body is not a valid JSON request: {e}"))),
            Encoding::Protobuf => T::decode(body).map_err(|e| ServiceError::new(ErrorKind::InvalidRequest, format!("the body is not a valid protobuf request: {e}"))),
        }
    }

    /// One whole message as a response body.
    pub fn respond<T: prost::Message + Serialize>(self, status: StatusCode, msg: &T) -> Response {
        let (body, ct) = match self {
            Encoding::Json => (serde_json::to_vec(msg).unwrap_or_default(), JSON),
            Encoding::Protobuf => (msg.encode_to_vec(), PROTOBUF),
        };
        let mut r = (status, body).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        r
    }

    fn frame(self, chunk: &StreamChunk) -> Bytes {
        match self {
            Encoding::Json => {
                let mut v = serde_json::to_vec(chunk).unwrap_or_default();
                v.push(b'\n');
                Bytes::from(v)
            }
            Encoding::Protobuf => {
                Bytes::from(prost::Message::encode_length_delimited_to_vec(chunk))
            }
        }
    }

    /// A streamed answer: each chunk is written as soon as it arrives.
    pub fn respond_stream(self, chunks: ChunkStream) -> Response {
        let ct = match self {
            Encoding::Json => NDJSON,
            Encoding::Protobuf => PROTOBUF,
        };
        let body = Body::from_stream(
            chunks.map(move |c| Ok::<_, std::convert::Infallible>(self.frame(&c))),
        );
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    }
}

/// The request body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ServiceError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ServiceError::new(
                ErrorKind::InvalidRequest,
                format!("the request body is larger than {limit} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ServiceError::new(
                ErrorKind::InvalidRequest,
                format!("could not read the request body: {inner}"),
            )
        }
    })
}
