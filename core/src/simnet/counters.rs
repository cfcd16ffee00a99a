//! What happened to the datagrams of a simulated network.

/// Counts since the network was made. Every datagram a host hands out, and every duplicate,
/// ends up in exactly one of `delivered`, `lost`, `nat_filtered`, `nat_ports_exhausted`,
/// `unroutable` and `wire_full`, or is still `in_flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams the hosts handed out.
    pub sent: u64,
    /// Datagrams handed to a host.
    pub delivered: u64,
    /// Dropped by a link's loss.
    pub lost: u64,
    /// Extra copies made by a link's duplication.
    pub duplicated: u64,
    /// Refused at a NAT's public side: no live mapping, or filtered.
    pub nat_filtered: u64,
    /// Dropped leaving a NAT that had no external port free.
    pub nat_ports_exhausted: u64,
    /// Addressed where no host is, or to a private address from outside its private side.
    pub unroutable: u64,
    /// Dropped because the cap on datagrams in flight was reached.
    pub wire_full: u64,
    /// On the wire now.
    pub in_flight: u64,
    /// Host events not kept because the host's collected events reached their cap.
    pub events_dropped: u64,
}
