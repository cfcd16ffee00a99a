//! The node: per-core shards, each running the engine on its own SO_REUSEPORT socket, and
//! what they share.

pub mod directory;
pub mod inboxes;
pub mod runtime;
pub mod shard;
pub mod shared;
pub mod values;
