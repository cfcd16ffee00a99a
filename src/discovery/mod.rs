//! The node's discovery services around the UDP port: the JSON DHT shared by the shards
//! (with an optional port of its own), STUN answers on the main port, LAN multicast, and the
//! node's own reflexive address learnt from its bootstrap nodes.

pub mod dht;
pub mod lan;
pub mod reflexive;
