//! The node: per-core shards, each running the engine on its own SO_REUSEPORT socket, the
//! state they share, and the handle the control interfaces reach them by.

pub mod directory;
pub mod handle;
pub mod hooks;
pub mod inboxes;
pub mod shard;
pub mod shared;
pub mod values;
