//! What every hop shares at its HTTP edge: JSON logs, W3C trace context, one access-log line
//! per request written when the response body ends (so streamed responses log their real
//! duration and token counts), the one way listeners serve (with connection timeouts), and the
//! header-size limit at every edge, and fault injection there.

mod access;
mod faults;
mod header_limit;
mod listener;
mod logging;
mod serve;
mod trace;

pub use access::{access_log, RequestInfo, TokenCounts};
pub use faults::{FaultSettings, Faults, InjectableFault};
pub use header_limit::{header_bytes, header_limit, too_large_message, HeaderLimit, Refusal};
pub use listener::{bind, listen, listen_std, pass_to_child, LISTEN_FD, LISTEN_FD_VAR};
pub use logging::{init, LogFormat, LogSettings};
pub use serve::{
    is_body_read_timeout, serve, BodyReadTimeout, ConnectionLimits, ConnectionSettings,
};
pub use trace::TraceContext;
