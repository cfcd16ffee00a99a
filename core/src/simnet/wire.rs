//! Datagrams in flight, delivered in order of arrival time; datagrams due at the same time
//! keep the order they were sent in.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::simnet::NatId;

/// A datagram on its way, as it looks on the wire.
#[derive(Debug)]
pub(crate) struct Datagram {
    /// After translation by the sender's NAT, if it crossed one.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The private side it travels within, or `None` on the public network.
    pub network: Option<NatId>,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct InFlight {
    at: Instant,
    /// Breaks ties between datagrams due at the same instant: first sent, first delivered.
    seq: u64,
    datagram: Datagram,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The datagrams in flight, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct Wire {
    queue: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    capacity: usize,
}

impl Wire {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: BinaryHeap::new(),
            next_seq: 0,
            capacity,
        }
    }

    /// Puts `datagram` on the wire to arrive `at`; false, dropping it, when the wire is full.
    pub(crate) fn push(&mut self, at: Instant, datagram: Datagram) -> bool {
        if self.queue.len() >= self.capacity {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(InFlight { at, seq, datagram }));
        true
    }

    /// When the next datagram arrives.
    pub(crate) fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(f)| f.at)
    }

    pub(crate) fn pop(&mut self) -> Option<Datagram> {
        self.queue.pop().map(|Reverse(f)| f.datagram)
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn datagram(byte: u8) -> Datagram {
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        Datagram {
            src: addr,
            dst: addr,
            network: None,
            bytes: vec![byte],
        }
    }

    #[test]
    fn arrival_order_then_send_order_and_bounded() {
        let now = Instant::now();
        let mut wire = Wire::new(3);
        assert!(wire.push(now + Duration::from_millis(5), datagram(1)));
        assert!(wire.push(now, datagram(2)));
        assert!(wire.push(now, datagram(3)));
        assert!(!wire.push(now, datagram(4)), "full");
        assert_eq!(wire.next_arrival(), Some(now));
        let order: Vec<u8> = std::iter::from_fn(|| wire.pop())
            .map(|d| d.bytes[0])
            .collect();
        assert_eq!(order, [2, 3, 1]);
        assert!(wire.is_empty());
    }
}
