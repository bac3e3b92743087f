//! Reading the Lambda function's streamed answer: NDJSON `StreamChunk` lines, possibly behind
//! the `application/vnd.awslambda.http-integration-response` metadata prelude (a JSON object
//! and eight NUL bytes) that Lambda passes through to InvokeWithResponseStream callers as is.

/// The content type of a streamed answer that starts with a metadata prelude.
pub const HTTP_INTEGRATION_CONTENT_TYPE: &str =
    "application/vnd.awslambda.http-integration-response";
const DELIMITER: &[u8] = &[0u8; 8];
/// The longest line (or prelude) a decoder holds by default: far above any real chunk, far
/// below what would hurt the process.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Splits streamed bytes into complete `StreamChunk` lines, skipping the prelude first when
/// the content type says there is one. Feed it bytes as they arrive.
///
/// It never holds more than `max_line` bytes (plus the bytes of one `push`): a line or prelude
/// longer than that ends the stream with an error chunk, and later bytes are ignored.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    prelude_pending: bool,
    max_line: usize,
    /// An error chunk was returned; the rest of the stream is not read.
    failed: bool,
}

impl LineDecoder {
    pub fn new(content_type: Option<&str>) -> Self {
        Self::with_max_line(content_type, DEFAULT_MAX_LINE_BYTES)
    }

    pub fn with_max_line(content_type: Option<&str>, max_line: usize) -> Self {
        let prelude_pending =
            content_type.is_some_and(|t| t.starts_with(HTTP_INTEGRATION_CONTENT_TYPE));
        LineDecoder { buf: Vec::new(), prelude_pending, max_line, failed: false }
    }

    /// Bytes held while waiting for the end of a line.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds bytes; returns the chunks completed by them. A line that is not a chunk is an
    /// error chunk, so a caller always learns why a stream stopped making sense.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<crate::StreamChunk> {
        if self.failed {
            return Vec::new();
        }
        self.buf.extend_from_slice(bytes);
        if self.prelude_pending {
            match self.buf.windows(DELIMITER.len()).position(|w| w == DELIMITER) {
                Some(at) => {
                    self.buf.drain(..at + DELIMITER.len());
                    self.prelude_pending = false;
                }
                None if self.buf.len() > self.max_line => {
                    return vec![self.fail("response metadata prelude")]
                }
                None => return Vec::new(),
            }
        }
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + nl];
            start += nl + 1;
            if line.len() > self.max_line {
                out.push(self.fail("line"));
                return out;
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.push(parse(line));
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > self.max_line {
            out.push(self.fail("line"));
        }
        out
    }

    /// The end of the stream: a last line without a newline, if any.
    pub fn finish(&mut self) -> Option<crate::StreamChunk> {
        let rest = std::mem::take(&mut self.buf);
        (!self.failed && !rest.iter().all(u8::is_ascii_whitespace) && !self.prelude_pending)
            .then(|| parse(&rest))
    }

    fn fail(&mut self, what: &str) -> crate::StreamChunk {
        self.failed = true;
        self.buf = Vec::new();
        crate::StreamChunk::error(crate::Error::new(
            crate::ErrorKind::Upstream,
            format!("the function sent a {what} longer than {} bytes", self.max_line),
        ))
    }
}

/// The contract error behind a Lambda function error: the function names its contract error
/// kind as `errorType` (see the `lambda` crate); Lambda's own failures map to the nearest kind.
pub fn error_from_function(error_type: &str, message: &str) -> crate::Error {
    use crate::ErrorKind as K;
    let kind = match error_type {
        "InvalidRequest" => K::InvalidRequest,
        "ModelNotFound" => K::ModelNotFound,
        "Overloaded" => K::Overloaded,
        "RateLimited" => K::RateLimited,
        "Timeout" | "Sandbox.Timedout" => K::Timeout,
        "Unauthorized" => K::Unauthorized,
        "ContextLength" => K::ContextLength,
        "Internal" => K::Internal,
        // A crashed or unstartable environment, an oversized answer, anything else.
        _ => K::Upstream,
    };
    crate::Error::new(
        kind,
        if message.is_empty() { error_type.to_owned() } else { message.to_owned() },
    )
}

fn parse(line: &[u8]) -> crate::StreamChunk {
    serde_json::from_slice(line).unwrap_or_else(|e| {
        crate::StreamChunk::error(crate::Error::new(
            crate::ErrorKind::Upstream,
            format!("the function sent a line that is not a stream chunk: {e}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkKind;

    #[test]
    fn the_prelude_is_skipped_and_lines_split_across_pushes_are_joined() {
        let delta = serde_json::to_string(&crate::StreamChunk::delta("hi")).unwrap();
        let mut d = LineDecoder::new(Some(HTTP_INTEGRATION_CONTENT_TYPE));
        assert!(d.push(b"{\"statusCode\":200,\"headers\":{}}\0\0\0").is_empty());
        let mut rest = b"\0\0\0\0\0".to_vec();
        rest.extend_from_slice(&delta.as_bytes()[..3]);
        assert!(d.push(&rest).is_empty());
        let chunks = d.push(format!("{}\n", &delta[3..]).as_bytes());
        assert!(matches!(&chunks[0].kind, Some(ChunkKind::Delta(x)) if x.content == "hi"));
        assert!(d.finish().is_none());
    }

    #[test]
    fn function_error_types_map_back_to_contract_kinds() {
        let e = error_from_function("ModelNotFound", "no such model");
        assert_eq!(e.kind(), crate::ErrorKind::ModelNotFound);
        assert!(!e.retryable);
        let e = error_from_function("Sandbox.Timedout", "Task timed out after 3.00 seconds");
        assert_eq!(e.kind(), crate::ErrorKind::Timeout);
        assert!(e.retryable);
        assert_eq!(error_from_function("Runtime.ExitError", "").kind(), crate::ErrorKind::Upstream);
    }

    #[test]
    fn an_endless_line_is_an_error_not_an_endless_buffer() {
        let mut d = LineDecoder::with_max_line(None, 16);
        assert!(d.push(b"{\"kind\":").is_empty());
        let chunks = d.push(&[b'x'; 20]);
        assert!(
            matches!(&chunks[..], [c] if matches!(&c.kind, Some(ChunkKind::Error(e)) if e.message.contains("longer than 16")))
        );
        assert_eq!(d.buffered(), 0);
        assert!(d.push(b"\n{}\n").is_empty());
        assert!(d.finish().is_none());
    }

    #[test]
    fn without_the_content_type_there_is_no_prelude_and_garbage_is_an_error_chunk() {
        let mut d = LineDecoder::new(Some("application/octet-stream"));
        let chunks = d.push(b"not json\n");
        assert!(matches!(&chunks[0].kind, Some(ChunkKind::Error(_))));
    }
}
