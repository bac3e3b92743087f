//! Gateway settings (the `[gateway]` section).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The usage plan every key gets unless `key_plans` names another one.
pub const DEFAULT_PLAN: &str = "default";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Connection timeouts of this listener: header read (slow clients) and idle keep-alive.
    pub connections: telemetry::ConnectionSettings,
    /// The resources and methods of the REST API, each with its HTTP proxy integration.
    /// Requests matching none get 403 `{"message":"Missing Authentication Token"}`, as API Gateway answers.
    pub routes: Vec<RouteSettings>,
    /// API keys accepted in `x-api-key`. From the environment, one string of comma-separated keys
    /// also works (`STRATA_GATEWAY__API_KEYS=key1,key2`).
    #[serde(deserialize_with = "api_keys::deserialize_list")]
    pub api_keys: Vec<String>,
    /// A file with more API keys, one per line (blank lines and lines starting with `#` are skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<PathBuf>,
    /// How often `api_keys_file` is checked for changes (milliseconds); a changed file replaces
    /// its keys without a restart. An unreadable or empty file keeps the previous keys. 0 = never.
    pub api_keys_reload_ms: u64,
    /// Sent in `x-strata-gateway-secret` with every integration request (what an integration
    /// request header mapping with a static value does on API Gateway), so that MainService
    /// (`main_service.gateway_secret`) can tell the gateway from anyone else on its network.
    /// A client's own `x-strata-gateway-secret` is never passed on. Empty: not sent. Prefer
    /// `STRATA_GATEWAY__INTEGRATION_SECRET` to the file.
    pub integration_secret: api_keys::SharedSecret,
    /// Usage plans by name: throttling (rate, burst) and quota per API key.
    pub usage_plans: BTreeMap<String, UsagePlan>,
    /// The usage plan of keys not listed in `key_plans`; must name an entry of `usage_plans`.
    pub default_usage_plan: String,
    /// Key id (first 8 hex digits of the key's sha256, as logged in `apiKeyId`) -> usage plan name.
    /// Ids, not keys, so that keys appear in one place only.
    pub key_plans: BTreeMap<String, String>,
    /// Longest wait for the integration's response headers; then 504 `Endpoint request timed out`.
    pub integration_timeout_ms: u64,
    /// Longest a streamed response body may run once its headers have arrived; then the stream is cut.
    pub stream_timeout_secs: u64,
    /// Longest pause between two chunks of a streamed response body; then the stream is cut.
    pub stream_idle_timeout_secs: u64,
    /// Largest request body; larger ones get 413 `{"message":"Request Too Long"}`.
    pub max_body_bytes: usize,
    /// Largest request header block in bytes (`name: value\r\n` per field); larger ones get 431
    /// `{"message":"Request Header Fields Too Large"}`. API Gateway allows 10240 bytes.
    pub max_header_bytes: usize,
}

/// One resource + method of the REST API and its HTTP proxy integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteSettings {
    /// HTTP method, or `ANY`.
    pub method: String,
    /// Exact path (`/api/chat`), or a greedy one ending in `/{proxy+}` (`/api/{proxy+}`), which
    /// matches every deeper path (but not the prefix itself).
    pub path: String,
    /// Integration endpoint (base URL). An exact route forwards the request path as is appended to
    /// it; a greedy route appends only the part matched by `{proxy+}`. The query string follows.
    pub url: String,
    /// Whether callers must send a valid `x-api-key` (and are subject to its usage plan).
    pub api_key_required: bool,
}

impl Default for RouteSettings {
    fn default() -> Self {
        RouteSettings {
            method: "ANY".into(),
            path: "/{proxy+}".into(),
            url: "http://127.0.0.1:8081".into(),
            api_key_required: true,
        }
    }
}

/// Quota period of a usage plan, in UTC like API Gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    Day,
    Week,
    Month,
}

/// Throttling and quota for each key of the plan (every key has its own bucket and counter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsagePlan {
    /// Steady-state requests per second (token bucket refill rate).
    pub rate_limit: f64,
    /// Bucket size: requests that may arrive at once.
    pub burst_limit: u32,
    /// Requests per quota period; 0 = no quota.
    pub quota_limit: u64,
    /// `day`, `week` (from Monday) or `month`, starting at 00:00 UTC.
    pub quota_period: QuotaPeriod,
    /// When > 0, the quota counts over fixed windows of this many seconds instead of `quota_period`
    /// (the first window starts at the key's first request).
    pub quota_window_secs: u64,
}

impl Default for UsagePlan {
    fn default() -> Self {
        // API Gateway's account-level throttle defaults; no quota.
        UsagePlan {
            rate_limit: 10000.0,
            burst_limit: 5000,
            quota_limit: 0,
            quota_period: QuotaPeriod::Month,
            quota_window_secs: 0,
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        let mut usage_plans = BTreeMap::new();
        usage_plans.insert(DEFAULT_PLAN.to_owned(), UsagePlan::default());
        GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            connections: telemetry::ConnectionSettings::default(),
            routes: vec![RouteSettings::default()],
            api_keys: Vec::new(),
            api_keys_file: None,
            api_keys_reload_ms: 5_000,
            integration_secret: api_keys::SharedSecret::default(),
            usage_plans,
            default_usage_plan: DEFAULT_PLAN.to_owned(),
            key_plans: BTreeMap::new(),
            integration_timeout_ms: 29_000,
            stream_timeout_secs: 900,
            stream_idle_timeout_secs: 900,
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 10 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_a_list_or_a_comma_separated_string() {
        let s: GatewaySettings = serde_json::from_str(r#"{"api_keys": " a, b,,c "}"#).unwrap();
        assert_eq!(s.api_keys, ["a", "b", "c"]);
        let s: GatewaySettings = serde_json::from_str(r#"{"api_keys": ["a", "b", 123]}"#).unwrap();
        assert_eq!(s.api_keys, ["a", "b", "123"]);
        let s: GatewaySettings = serde_json::from_str(r#"{"api_keys": 12345}"#).unwrap();
        assert_eq!(s.api_keys, ["12345"]);
        assert!(serde_json::from_str::<GatewaySettings>(r#"{"api_keyz": []}"#).is_err());
    }
}
