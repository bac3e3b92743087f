//! API keys as every hop that checks them (the API Gateway, the Bedrock emulator) keeps them:
//! only their sha256 digests in memory, compared in constant time, named in logs by a short id,
//! and a key file that is re-read while serving so keys rotate without a restart.

mod key_file;
mod keys;
mod list;

pub use key_file::{Change, KeySource, Watcher};
pub use keys::{key_id, ApiKeys};
pub use list::{deserialize_list, KeyList};
