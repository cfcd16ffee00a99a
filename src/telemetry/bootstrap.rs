//! The counters of the bootstrap keeper (config `bootstrap`): how many bootstrap nodes are
//! configured and joined, and the dials it sent. The keeper stores into atomics; the
//! collector reads them at scrape time.

use std::sync::atomic::AtomicU64;

#[derive(Default)]
pub struct BootstrapMetrics {
    /// `bootstrap` entries configured.
    pub configured: AtomicU64,
    /// Of them, those the node has a session with now.
    pub connected: AtomicU64,
    /// Dials sent to bootstrap node addresses.
    pub dials: AtomicU64,
}
