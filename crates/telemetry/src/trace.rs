//! W3C trace context (`traceparent`): accepted from the caller when valid, generated when not,
//! and passed to the next hop with this hop's own span id.

use rand::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, never all zero.
    pub trace_id: String,
    /// This hop's span id: 16 lowercase hex digits.
    pub span_id: String,
    /// The caller's span id, if there was a caller.
    pub parent_id: Option<String>,
    pub sampled: bool,
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    loop {
        let buf: Vec<u8> = (0..bytes).map(|_| rng.gen()).collect();
        if buf.iter().any(|b| *b != 0) {
            return hex::encode(buf);
        }
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

impl TraceContext {
    /// A new trace, for requests that arrive without a (valid) `traceparent`.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            parent_id: None,
            sampled: true,
        }
    }

    /// Continues the caller's trace, or starts a new one if the header is missing or invalid.
    pub fn from_header(header: Option<&str>) -> Self {
        header.and_then(Self::parse).unwrap_or_else(Self::new_root)
    }

    /// Parses a `traceparent` and makes a child span of it.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || !version.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        // Version 00 has exactly four fields; later versions may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if !is_hex(trace_id, 32) || !is_hex(parent_id, 16) || flags.len() != 2 {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id: trace_id.to_owned(),
            span_id: random_hex(8),
            parent_id: Some(parent_id.to_owned()),
            sampled: flags & 1 == 1,
        })
    }

    /// The header to send downstream (and back to the caller): this hop is the parent.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, if self.sampled { "01" } else { "00" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        let p = "00f067aa0ba902b7";
        let valid = format!("00-{t}-{p}-01");
        let c = TraceContext::parse(&valid).unwrap();
        assert_eq!((c.trace_id.as_str(), c.parent_id.as_deref(), c.sampled), (t, Some(p), true));
        assert_ne!(c.span_id, p);
        assert!(c.header().starts_with(&format!("00-{t}-")));
        for bad in [
            "".to_string(),
            format!("00-{}-{p}-01", "0".repeat(32)),
            format!("00-{t}-{}-01", "0".repeat(16)),
            format!("00-{}-{p}-01", t.to_uppercase()),
            format!("ff-{t}-{p}-01"),
            format!("00-{t}-{p}-01-extra"),
            format!("00-{t}-{p}"),
            "garbage".to_string(),
        ] {
            assert!(TraceContext::parse(&bad).is_none(), "{bad:?}");
        }
        // A future version may carry more fields.
        assert!(TraceContext::parse(&format!("01-{t}-{p}-00-x")).is_some());
    }

    #[test]
    fn invalid_headers_start_a_new_trace() {
        let c = TraceContext::from_header(Some("nope"));
        assert_eq!(c.trace_id.len(), 32);
        assert!(c.parent_id.is_none());
        assert!(TraceContext::parse(&c.header()).is_some());
    }
}
