//! How peers find a node besides the DHT: STUN binding answers and LAN multicast
//! announcements.

pub mod lan;
pub mod stun;
