//! The JSON DHT of py-setowire (`SimpleDHT`), without I/O.
//!
//! - [`id`]: 160-bit ids, XOR distance, key and topic hashes.
//! - [`message`]: the JSON messages, parsed and written as `SimpleDHT` spells them.
//! - [`probe`]: how often we contact addresses that have not proven they receive.
//! - [`routing`]: the routing table (160 buckets of 20 nodes that answered us).
//! - [`storage`]: stored values with a TTL, owned by their first source (an IPv4 address or
//!   an IPv6 prefix, [`crate::ratelimit::SourceGroup`]), bounded in memory
//!   and shared fairly between sources when full.
//! - [`rpc`]: the sans-IO DHT node that ties them together.

pub mod id;
pub mod message;
pub mod probe;
pub mod routing;
pub mod rpc;
pub mod storage;

pub use id::NodeId;
pub use rpc::{Dht, DhtConfig, DhtStats, Outcome};
