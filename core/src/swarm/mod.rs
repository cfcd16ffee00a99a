//! The sans-IO Setowire peer engine and its parts.
//!
//! [`engine::Engine`] is the entry point. Inputs: datagrams, timeouts, commands and
//! [`effects::ShardMessage`]s from other shards. Outputs, polled: transmits, [`event::Event`]s
//! and [`effects::ClusterEffect`]s. What it reads about other shards comes through a
//! [`node_view::NodeView`].

mod budget;
pub mod config;
pub mod dedupe;
pub mod effects;
pub mod engine;
pub mod event;
mod jitter;
pub mod lan_addrs;
pub mod node_limits;
mod node_link;
pub mod node_view;
pub mod outqueue;
pub mod peer;
pub mod pieces;
pub mod single_node;
pub mod stats;
pub mod store;

#[cfg(test)]
mod tests;
