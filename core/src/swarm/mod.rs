pub mod cluster;
pub mod config;
pub mod dedupe;
pub mod discovery;
pub mod engine;
pub mod event;
pub mod jitter;
pub mod outqueue;
pub mod peer;
pub mod pieces;
pub mod stats;
pub mod store;
pub mod sync;

#[cfg(test)]
mod tests;
