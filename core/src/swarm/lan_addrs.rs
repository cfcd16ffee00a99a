//! The LAN addresses peers announced (py-setowire announces its LAN `ip:port` to an HTTP
//! bootstrap before it knows a public one), each with the public IP it was announced from.
//!
//! Two peers behind one NAT see the node from the same public IP, and most NATs do not
//! forward a datagram sent from inside to their own public address back inside
//! (hairpinning), so introduced at their public addresses they never meet. Introduced at
//! their LAN addresses as well, they do. A LAN address is only ever given to a peer coming
//! from the public IP it was announced from: the HELLOs it aims stay inside that network.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::proto::identity::Id8;

/// Announcements kept; the least recently announced go first.
const CAPACITY: usize = 16_384;
/// How long an announcement counts: py-setowire announces again every three minutes.
const TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Clone, Copy)]
struct Announced {
    public: IpAddr,
    lan: SocketAddr,
    at: Instant,
}

pub struct LanAddrs {
    table: Mutex<LruCache<Id8, Announced>>,
}

impl Default for LanAddrs {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(CAPACITY).expect("a non-zero capacity");
        LanAddrs {
            table: Mutex::new(LruCache::new(capacity)),
        }
    }
}

impl LanAddrs {
    /// `id8` announced, from `public`, that it listens at `lan` on its own network.
    pub fn note(&self, id8: Id8, public: IpAddr, lan: SocketAddr, now: Instant) {
        let public = public.to_canonical();
        self.lock().put(
            id8,
            Announced {
                public,
                lan,
                at: now,
            },
        );
    }

    /// Where a peer coming from `public` can reach `id8` inside their shared network: the
    /// LAN address `id8` announced from that same IP, if it did lately.
    pub fn behind(&self, id8: &Id8, public: IpAddr, now: Instant) -> Option<SocketAddr> {
        let table = self.lock();
        let announced = table.peek(id8)?;
        (announced.public == public.to_canonical()
            && now.saturating_duration_since(announced.at) < TTL)
            .then_some(announced.lan)
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<Id8, Announced>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lan_address_is_given_only_to_the_ip_it_was_announced_from() {
        let lan: SocketAddr = "192.168.1.2:4000".parse().unwrap();
        let public: IpAddr = "198.51.100.1".parse().unwrap();
        let now = Instant::now();
        let addrs = LanAddrs::default();
        addrs.note([1; 8], public, lan, now);
        assert_eq!(addrs.behind(&[1; 8], public, now), Some(lan));
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        assert_eq!(addrs.behind(&[1; 8], mapped, now), Some(lan));
        assert_eq!(
            addrs.behind(&[1; 8], "198.51.100.2".parse().unwrap(), now),
            None
        );
        assert_eq!(addrs.behind(&[2; 8], public, now), None);
        assert_eq!(addrs.behind(&[1; 8], public, now + TTL), None);
    }
}
