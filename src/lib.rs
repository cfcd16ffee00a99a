//! setowire-node: a relay and seed node for the Setowire peer-to-peer protocol.
//!
//! The protocol itself lives in [`proto`] (wire frames and cryptography) and [`swarm`]
//! (the peer engine). Both are sans-IO: they own no socket, clock or thread, and are driven
//! by the caller with datagrams, timestamps and commands.

pub mod admin;
pub mod cli;
pub mod config;
pub mod control;
pub mod dht;
pub mod http;
pub mod identity_file;
pub mod io;
pub mod lan;
pub mod metrics;
pub mod node;
pub mod process_metrics;
pub mod proto;
pub mod stun;
pub mod swarm;
