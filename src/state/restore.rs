//! Puts a [`Snapshot`] back into a node that is starting: DHT values with what was left of
//! their TTL, announcements with their age, stored values in their order, and the peer
//! addresses to dial. Everything goes through the same limits as new entries, so a snapshot
//! written under larger limits cannot overfill the node; what has expired by now, or the
//! limits refuse, is left out and logged.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::capture::Live;
use super::format::Snapshot;
use crate::telemetry::state::{StateMetrics, StatePart};

/// What became of one part's entries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    restored: usize,
    expired: usize,
    refused: usize,
}

impl Tally {
    fn log(self, part: StatePart, metrics: &StateMetrics) {
        metrics.count_restored(part, self.restored);
        if self.restored + self.expired + self.refused > 0 {
            tracing::info!(
                part = %part.name(),
                restored = self.restored,
                expired = self.expired,
                refused = self.refused,
                "restored from the snapshot"
            );
        }
    }
}

/// Restores `snapshot` into `live` at `now` (`unix_ms` on the wall clock); returns the peer
/// addresses to dial, without duplicates.
pub fn restore(
    snapshot: Snapshot,
    live: &Live,
    metrics: &StateMetrics,
    now: Instant,
    unix_ms: u64,
) -> Vec<SocketAddr> {
    let mut dht = Tally::default();
    let mut values = snapshot.dht_values;
    // Soonest to expire first: the order the storage keeps its entries in.
    values.sort_by_key(|v| v.expires_unix_ms);
    {
        let mut shared = live.dht.lock();
        for v in values {
            let Some(left) = remaining(v.expires_unix_ms, unix_ms) else {
                dht.expired += 1;
                continue;
            };
            match shared.restore_value(now, v.key, &v.value, v.owner, left) {
                Ok(()) => dht.restored += 1,
                Err(_) => dht.refused += 1,
            }
        }
    }
    dht.log(StatePart::Dht, metrics);

    let mut announced = Tally::default();
    if let Some(registry) = &live.registry {
        let mut list = snapshot.announcements;
        list.sort_by_key(|a| a.announced_unix_ms);
        for a in list {
            let age = age(a.announced_unix_ms, unix_ms);
            match registry.restore(a.announcement, a.source, age, now) {
                Ok(true) => announced.restored += 1,
                Ok(false) => announced.expired += 1,
                Err(_) => announced.refused += 1,
            }
        }
    }
    announced.log(StatePart::Announcements, metrics);

    let mut stored = Tally::default();
    // Newest first in the snapshot: the oldest go in first, so the order of eviction stays.
    for (key, value) in snapshot.values.into_iter().rev() {
        if live.shared.values.insert(&key, value) {
            stored.restored += 1;
        } else {
            stored.refused += 1;
        }
    }
    stored.log(StatePart::Values, metrics);

    let mut seen = HashSet::new();
    let peers: Vec<SocketAddr> = snapshot
        .peers
        .into_iter()
        .filter(|addr| seen.insert(*addr))
        .collect();
    Tally {
        restored: peers.len(),
        ..Tally::default()
    }
    .log(StatePart::Peers, metrics);
    peers
}

/// What is left of a lifetime ending at `expires_unix_ms`, if anything. A clock that went
/// back makes it longer, which the storage cuts to one TTL.
fn remaining(expires_unix_ms: u64, unix_ms: u64) -> Option<Duration> {
    let left = expires_unix_ms.checked_sub(unix_ms)?;
    (left > 0).then(|| Duration::from_millis(left))
}

/// How long ago `at_unix_ms` was; none if the clock went back past it.
fn age(at_unix_ms: u64, unix_ms: u64) -> Duration {
    Duration::from_millis(unix_ms.saturating_sub(at_unix_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lifetimes_and_ages_from_the_wall_clock() {
        assert_eq!(remaining(10_500, 10_000), Some(Duration::from_millis(500)));
        assert_eq!(remaining(10_000, 10_000), None, "expired at that instant");
        assert_eq!(remaining(9_000, 10_000), None);
        assert_eq!(age(9_000, 10_000), Duration::from_secs(1));
        assert_eq!(age(11_000, 10_000), Duration::ZERO, "the clock went back");
    }
}
