//! The REST API's resources and methods, matched as API Gateway does: an exact path wins over a
//! greedy `{proxy+}` one, a longer greedy prefix over a shorter one, and a named method over `ANY`.

use axum::http::Method;
use reqwest::Url;

use crate::config::RouteSettings;
use crate::request_path::RequestPath;

const GREEDY: &str = "/{proxy+}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    Exact(String),
    /// The prefix before `/{proxy+}` ("" for the root's greedy resource).
    Greedy(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// `None` for `ANY`.
    method: Option<Method>,
    path: PathMatch,
    /// The resource path as configured (logged as `resourcePath`).
    pub resource_path: String,
    url: Url,
    pub api_key_required: bool,
}

/// What a request matched: the route and the integration URL to call.
#[derive(Debug)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub upstream: Url,
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl Route {
    pub fn parse(s: &RouteSettings) -> Result<Route, String> {
        let method = match s.method.to_ascii_uppercase().as_str() {
            "ANY" => None,
            m => Some(
                Method::from_bytes(m.as_bytes())
                    .map_err(|_| format!("route {} {}: invalid method", s.method, s.path))?,
            ),
        };
        if !s.path.starts_with('/') {
            return Err(format!("route {} {}: the path must start with '/'", s.method, s.path));
        }
        let path = match s.path.strip_suffix(GREEDY) {
            Some(prefix) => PathMatch::Greedy(prefix.to_owned()),
            None if s.path.contains('{') => {
                return Err(format!(
                    "route {} {}: only a trailing /{{proxy+}} is supported as a path parameter",
                    s.method, s.path
                ))
            }
            None => PathMatch::Exact(s.path.clone()),
        };
        let url = Url::parse(&s.url)
            .map_err(|e| format!("route {} {}: invalid url {:?}: {e}", s.method, s.path, s.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err(format!(
                "route {} {}: the url must be http(s) without a query: {:?}",
                s.method, s.path, s.url
            ));
        }
        Ok(Route {
            method,
            path,
            resource_path: s.path.clone(),
            url,
            api_key_required: s.api_key_required,
        })
    }

    /// How well the route fits, higher is better; `None` when it does not match.
    fn score(&self, method: &Method, path: &str) -> Option<(u8, usize, u8)> {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return None;
        }
        let method_score = u8::from(self.method.is_some());
        match &self.path {
            PathMatch::Exact(p) => (p == path).then_some((1, p.len(), method_score)),
            PathMatch::Greedy(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?.strip_prefix('/')?;
                (!rest.is_empty()).then_some((0, prefix.len(), method_score))
            }
        }
    }

    /// The integration URL for `path` (and the original query string). `path` has no
    /// dot-segments, so `set_path` keeps it as it is: the routed path is the forwarded one.
    fn upstream(&self, path: &str, query: Option<&str>) -> Url {
        let forwarded = match &self.path {
            PathMatch::Exact(_) => path,
            // `score` guaranteed the prefix and the slash; keep the slash.
            PathMatch::Greedy(prefix) => &path[prefix.len()..],
        };
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{forwarded}"));
        url.set_query(query);
        url
    }
}

impl RouteTable {
    pub fn new(settings: &[RouteSettings]) -> Result<RouteTable, String> {
        Ok(RouteTable { routes: settings.iter().map(Route::parse).collect::<Result<_, _>>()? })
    }

    pub fn find(
        &self,
        method: &Method,
        path: &RequestPath,
        query: Option<&str>,
    ) -> Option<Matched<'_>> {
        let path = path.as_str();
        let route = self
            .routes
            .iter()
            .filter_map(|r| r.score(method, path).map(|s| (s, r)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, r)| r)?;
        Some(Matched { route, upstream: route.upstream(path, query) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str, url: &str) -> RouteSettings {
        RouteSettings {
            method: method.into(),
            path: path.into(),
            url: url.into(),
            api_key_required: true,
        }
    }

    fn path(p: &str) -> RequestPath {
        RequestPath::parse(p).unwrap()
    }

    #[test]
    fn matching_table() {
        let t = RouteTable::new(&[
            route("ANY", "/{proxy+}", "http://root:1"),
            route("POST", "/api/chat", "http://chat:2/base/"),
            route("ANY", "/api/{proxy+}", "http://api:3/v1"),
            route("GET", "/api/{proxy+}", "http://apiget:4"),
        ])
        .unwrap();
        let cases = [
            ("POST", "/api/chat", None, Some("http://chat:2/base/api/chat")),
            ("GET", "/api/chat", None, Some("http://apiget:4/chat")),
            ("PUT", "/api/chat/x", Some("a=1&b=2"), Some("http://api:3/v1/chat/x?a=1&b=2")),
            ("GET", "/other/thing", None, Some("http://root:1/other/thing")),
            // The greedy resource does not match its own prefix...
            ("PUT", "/api", None, Some("http://root:1/api")),
            // ...and the root greedy resource does not match "/".
            ("GET", "/", None, None),
            ("GET", "/apix", None, Some("http://root:1/apix")),
        ];
        for (m, p, q, want) in cases {
            let got = t
                .find(&Method::from_bytes(m.as_bytes()).unwrap(), &path(p), q)
                .map(|m| m.upstream.to_string());
            assert_eq!(got.as_deref(), want, "{m} {p}");
        }
        let only = RouteTable::new(&[route("GET", "/health", "http://h:1")]).unwrap();
        assert!(only.find(&Method::POST, &path("/health"), None).is_none());
        assert!(only.find(&Method::GET, &path("/health/"), None).is_none());
        assert!(only.find(&Method::GET, &path("/health"), None).is_some());
    }

    #[test]
    fn bad_routes_are_refused() {
        for r in [
            route("GET", "nope", "http://x"),
            route("G T", "/a", "http://x"),
            route("GET", "/a/{id}", "http://x"),
            route("GET", "/a", "ftp://x"),
            route("GET", "/a", "not a url"),
        ] {
            assert!(Route::parse(&r).is_err(), "{r:?}");
        }
    }
}
