//! API keys as every hop that checks them (the API Gateway, the Bedrock emulator) keeps them:
//! only their sha256 digests in memory, compared in constant time, named in logs by a short id,
//! and a key file that is re-read while serving so keys rotate without a restart. Also what
//! every hop needs to authenticate its caller: a shared secret setting, and the rule that a hop
//! does not serve the network unauthenticated.

mod exposure;
mod key_file;
mod keys;
mod list;
mod shared_secret;

pub use exposure::require_authentication;
pub use key_file::{Change, KeySource, Watcher};
pub use keys::{key_id, ApiKeys};
pub use list::{deserialize_list, KeyList};
pub use shared_secret::{SharedSecret, GATEWAY_SECRET_HEADER};
