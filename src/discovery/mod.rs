//! The node's discovery services around the UDP port: the JSON DHT shared by the shards
//! (with an optional port of its own), STUN answers on the main port, and LAN multicast.

pub mod dht;
pub mod lan;
