//! setowire-node: a relay and seed node for the Setowire peer-to-peer protocol.
//!
//! The protocol itself — frames, sessions, the peer engine, the DHT's logic — lives in the
//! sans-IO crate `setowire_core`; this crate gives it sockets, threads, a clock, and the
//! node's services around it. [`runtime`] puts them together; nothing else depends on it.

pub mod admin;
pub mod config;
pub mod control;
pub mod discovery;
pub mod http;
pub mod io;
pub mod node;
pub mod runtime;
pub mod state;
pub mod supervisor;
pub mod telemetry;
