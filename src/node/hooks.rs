//! A shard's links to the control plane besides its inbox.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Instant;

use prometheus::Histogram;

use crate::telemetry::{NodeMetrics, ShardMetrics};

/// What a shard keeps for the control plane besides its engine: its metrics, when it last
/// published them, and the admin API's fetches waiting for a result.
pub struct ShardHooks {
    pub metrics: Arc<ShardMetrics>,
    pub handshake_seconds: Histogram,
    pub epoch: Instant,
    pub next_publish: Instant,
    /// Fetches waiting for `Fetched`/`FetchFailed` of their key.
    pub fetch_waiters: Vec<(String, SyncSender<Option<Vec<u8>>>)>,
}

impl ShardHooks {
    pub fn new(node: &NodeMetrics, shard: usize) -> Self {
        ShardHooks {
            metrics: Arc::clone(&node.shards[shard]),
            handshake_seconds: node.handshake_seconds.clone(),
            epoch: node.epoch,
            next_publish: node.epoch,
            fetch_waiters: Vec::new(),
        }
    }

    /// Answers (and forgets) the waiters of `key`.
    pub fn fetch_done(&mut self, key: &str, value: Option<&[u8]>) {
        self.fetch_waiters.retain(|(k, reply)| {
            if k != key {
                return true;
            }
            // A waiter that is gone has already answered its request with a timeout.
            let _ = reply.try_send(value.map(<[u8]>::to_vec));
            false
        });
    }
}
