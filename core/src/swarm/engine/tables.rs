//! How many entries each of an engine's tables holds: every one is bounded, and once its
//! peers have left each must come back to where it started. Soak tests and the node's
//! metrics watch these.

use crate::swarm::engine::Engine;

/// Entries per table of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Sessions.
    pub peers: usize,
    /// Addresses (and aliases) that map to a session.
    pub addresses: usize,
    /// Peers with work waiting for send credit.
    pub pending_peers: usize,
    /// Addresses being dialled.
    pub dials: usize,
    /// Peers holding out-of-order DATA.
    pub gapped: usize,
    /// Values asked for and not received yet.
    pub wanted: usize,
    /// CHUNK reassemblies in progress.
    pub chunk_assemblies: usize,
    /// FRAG reassemblies in progress, over all peers.
    pub fragment_assemblies: usize,
    /// Datagrams waiting to be sent.
    pub queued_datagrams: usize,
    /// Events not polled yet.
    pub events: usize,
}

impl TableSizes {
    /// How many tables [`TableSizes::named`] lists.
    pub const COUNT: usize = 10;

    /// `(name, entries)` for each table, in a fixed order (the metrics' `table` label).
    pub fn named(&self) -> [(&'static str, usize); Self::COUNT] {
        [
            ("peers", self.peers),
            ("addresses", self.addresses),
            ("pending_peers", self.pending_peers),
            ("dials", self.dials),
            ("gapped", self.gapped),
            ("wanted", self.wanted),
            ("chunk_assemblies", self.chunk_assemblies),
            ("fragment_assemblies", self.fragment_assemblies),
            ("queued_datagrams", self.queued_datagrams),
            ("events", self.events),
        ]
    }
}

impl Engine {
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            peers: self.peers.len(),
            addresses: self.by_addr.len(),
            pending_peers: self.pending_peers.len(),
            dials: self.dials.len(),
            gapped: self.gapped.len(),
            wanted: self.sync.wanted_len(),
            chunk_assemblies: self.sync.chunk_assemblies(),
            fragment_assemblies: self.peers.values().map(|p| p.fragments.len()).sum(),
            queued_datagrams: self.out.len(),
            events: self.events.len(),
        }
    }
}
