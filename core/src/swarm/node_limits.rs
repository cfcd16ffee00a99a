//! The limits that hold for a whole node, whichever shard a datagram lands on: the kernel
//! spreads one source's datagrams over the shards by port, so limits kept per shard would be
//! N times as loose. Shared by all shards without a lock, with memory fixed at start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::ratelimit::{SharedIpLimiter, SourceGrouping};
use crate::swarm::config::EngineConfig;

pub struct NodeLimits {
    /// Datagrams, and each frame inside a BATCH, from sources without a session.
    pub unauthenticated: SharedIpLimiter,
    /// New sessions (each a Diffie-Hellman and a peer record) per source group.
    pub handshakes: SharedIpLimiter,
    reassembly_memory: AtomicUsize,
    reassembly_cap: usize,
}

impl NodeLimits {
    pub fn new(config: &EngineConfig, now: Instant) -> Self {
        let grouping = SourceGrouping::new(config.ipv6_prefix);
        Self {
            unauthenticated: SharedIpLimiter::new(
                config.unauth_rate,
                grouping,
                config.rate_limit_ips,
                now,
            ),
            handshakes: SharedIpLimiter::new(
                config.handshake_rate,
                grouping,
                config.rate_limit_ips,
                now,
            ),
            reassembly_memory: AtomicUsize::new(0),
            reassembly_cap: config.max_fragment_bytes,
        }
    }

    /// Takes `bytes` of the memory the node's FRAG and CHUNK reassembly may hold (both are
    /// cleartext, so anyone can start one); false (and nothing taken) when that would pass
    /// the cap.
    pub fn reserve_reassembly_memory(&self, bytes: usize) -> bool {
        let before = self.reassembly_memory.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.reassembly_cap {
            self.reassembly_memory.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn release_reassembly_memory(&self, bytes: usize) {
        self.reassembly_memory.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes of FRAG and CHUNK reassembly held across the node.
    pub fn reassembly_memory(&self) -> usize {
        self.reassembly_memory.load(Ordering::Relaxed)
    }

    /// When the limiters' clock starts (see [`SharedIpLimiter::allow_at`]).
    pub fn start(&self) -> Instant {
        self.unauthenticated.start()
    }

    /// Bytes the rate-limit tables take (fixed).
    pub fn table_memory(&self) -> usize {
        self.unauthenticated.memory() + self.handshakes.memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembly_memory_is_capped_and_released() {
        let config = EngineConfig {
            max_fragment_bytes: 1000,
            ..EngineConfig::default()
        };
        let limits = NodeLimits::new(&config, Instant::now());
        assert!(limits.reserve_reassembly_memory(600));
        assert!(!limits.reserve_reassembly_memory(500));
        assert_eq!(limits.reassembly_memory(), 600);
        limits.release_reassembly_memory(600);
        assert!(limits.reserve_reassembly_memory(1000));
    }
}
