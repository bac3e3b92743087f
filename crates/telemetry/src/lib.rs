//! Telemetry shared by every hop: JSON logs, W3C trace context, and one access-log line per
//! request written when the response body ends (so streamed responses log their real
//! duration and token counts).

mod access;
mod logging;
mod trace;

pub use access::{access_log, RequestInfo, TokenCounts};
pub use logging::{init, LogFormat, LogSettings};
pub use trace::TraceContext;
