//! The node: per-core shards, each running the engine on its own SO_REUSEPORT socket.

pub mod cluster;
pub mod runtime;
pub mod shard;
