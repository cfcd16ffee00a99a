//! Takes a [`Snapshot`] of the running node: each part is copied under its own short lock
//! (the DHT's, the value store's, the announcement registry's) and encoded later, outside
//! them. Times become wall-clock times here, since the next run has another monotonic clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{SavedAnnouncement, SavedDhtValue, Snapshot, SnapshotLimits};
use crate::discovery::dht::SharedDht;
use crate::http::bootstrap::Registry;
use crate::node::shared::NodeShared;

/// The parts of the running node a snapshot is taken of and restored into.
#[derive(Clone)]
pub struct Live {
    pub shared: Arc<NodeShared>,
    pub dht: Arc<SharedDht>,
    /// The HTTP bootstrap's announcements, when the HTTP listener runs.
    pub registry: Option<Arc<Registry>>,
}

/// The node's state at `now` (`unix_ms` on the wall clock), with `peers` as the peer cache.
pub fn capture(
    live: &Live,
    limits: &SnapshotLimits,
    peers: Vec<SocketAddr>,
    now: Instant,
    unix_ms: u64,
) -> Snapshot {
    let (dht_id, dht_values) = dht_values(&live.dht, limits, now, unix_ms);
    let announcements = live
        .registry
        .as_ref()
        .map(|registry| {
            registry
                .export(now)
                .into_iter()
                .map(|(announcement, source, age)| SavedAnnouncement {
                    announcement,
                    source,
                    announced_unix_ms: unix_ms.saturating_sub(millis(age)),
                })
                .collect()
        })
        .unwrap_or_default();
    Snapshot {
        written_unix_ms: unix_ms,
        dht_id: Some(dht_id),
        dht_values,
        announcements,
        values: live
            .shared
            .values
            .newest(limits.values, limits.values_bytes),
        peers,
    }
}

/// The DHT's id and its live values, soonest to expire first, as many as the caps keep.
fn dht_values(
    dht: &SharedDht,
    limits: &SnapshotLimits,
    now: Instant,
    unix_ms: u64,
) -> (setowire_core::dht::NodeId, Vec<SavedDhtValue>) {
    let dht = dht.lock();
    let mut bytes = 0usize;
    let values = dht
        .storage()
        .entries()
        .filter(|e| e.expires > now)
        .take_while(|e| {
            // Never more than the writer keeps: copying the rest under the lock is waste.
            bytes = bytes.saturating_add(e.value.len());
            bytes <= limits.dht_bytes
        })
        .map(|e| SavedDhtValue {
            key: e.key,
            value: e.value.to_owned(),
            owner: e.owner.addr(),
            expires_unix_ms: unix_ms.saturating_add(millis(e.expires - now)),
        })
        .collect();
    (*dht.id(), values)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
