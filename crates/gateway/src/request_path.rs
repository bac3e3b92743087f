//! The request path, checked once and then used for both routing and forwarding.
//!
//! The integration URL is built with `Url::set_path`, which resolves dot-segments (`.`, `..`
//! and their percent-encoded forms `%2e`) and reads `\` as `/`, as browsers do. Matching routes
//! on the raw path and forwarding the resolved one would let `/public/../admin` pass the rules
//! of `/public/{proxy+}` and reach `/admin` upstream. So a path that such resolution would
//! change is refused instead: what was routed is exactly what is forwarded.

use std::fmt;

/// A path with no dot-segments (raw or percent-encoded, also hidden behind an encoded `/` or
/// `\` inside a segment) and no raw `\`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath(String);

/// Why a path was refused (the gateway answers 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    DotSegment,
    Backslash,
}

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathRefusal::DotSegment => {
                "the path has a dot-segment ('.' or '..', raw or percent-encoded)"
            }
            PathRefusal::Backslash => "the path has a raw '\\'",
        })
    }
}

impl RequestPath {
    pub fn parse(raw: &str) -> Result<RequestPath, PathRefusal> {
        if raw.contains('\\') {
            return Err(PathRefusal::Backslash);
        }
        for segment in raw.split('/') {
            let decoded = percent_encoding::percent_decode_str(segment).collect::<Vec<u8>>();
            // An encoded `/` or `\` (`..%2f..`) makes one segment several to a server that
            // decodes before it splits.
            if decoded.split(|&b| b == b'/' || b == b'\\').any(|part| part == b"." || part == b"..")
            {
                return Err(PathRefusal::DotSegment);
            }
        }
        Ok(RequestPath(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Url;

    #[test]
    fn dot_segments_in_every_spelling_are_refused() {
        let refused = [
            "/..",
            "/.",
            "/api/../admin",
            "/api/./chat",
            "/api/..",
            "/api/%2e%2e/admin",
            "/api/%2E%2E/admin",
            "/api/.%2e/admin",
            "/api/%2e./admin",
            "/api/%2e/chat",
            "/api/..%2fadmin",
            "/api/..%2Fadmin",
            "/api/x%2f..%2fadmin",
            "/api/..%5cadmin",
            "/api/..\\admin",
            "/api\\chat",
        ];
        for p in refused {
            assert!(RequestPath::parse(p).is_err(), "{p}");
        }
    }

    #[test]
    fn ordinary_paths_pass_unchanged_and_url_keeps_them() {
        let kept = [
            "/",
            "/api/chat",
            "/api/chat/",
            "/a//b",
            "/v1/models/smollm2:135m",
            "/a/...",
            "/a/.b",
            "/a/b.",
            "/a/..b",
            "/%2e%2e%2e",
            "/a%2fb",
            "/q%20x",
        ];
        for p in kept {
            let path = RequestPath::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert_eq!(path.as_str(), p);
            // What the gateway forwards: the integration URL's path is the routed one.
            let mut url = Url::parse("http://upstream:1").unwrap();
            url.set_path(path.as_str());
            assert_eq!(url.path(), p);
        }
    }
}
