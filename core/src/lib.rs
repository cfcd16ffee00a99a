//! setowire-core: the Setowire protocol without I/O.
//!
//! Nothing in this crate owns a socket, a clock or a thread. Callers drive it with
//! datagrams, timestamps and commands, and poll what it wants sent, what happened and what the
//! rest of a sharded node must learn:
//!
//! - [`proto`]: the wire frames, identities, sessions and the anti-replay window.
//! - [`swarm`]: the peer engine (handshakes, data, mesh, discovery, store and fetch).
//! - [`dht`]: py-setowire's JSON DHT (messages, routing table, storage, the RPC node).
//! - [`discovery`]: the STUN and LAN multicast codecs.
//! - [`ratelimit`]: token buckets per peer and per source IP.
//! - [`simnet`]: a deterministic simulated network with virtual time, lossy links and NATs,
//!   to run engines against each other in one process.

#![warn(unreachable_pub)]

pub mod dht;
pub mod discovery;
pub mod proto;
pub mod ratelimit;
pub mod simnet;
pub mod swarm;
