//! The unit the DHT charges storage and rate limits to: one IPv4 address, or one IPv6
//! prefix. A single IPv6 host is usually handed a whole /64, so counting IPv6 sources one
//! address at a time would give one attacker 2^64 fresh budgets.

use std::net::{IpAddr, Ipv6Addr};

/// An IPv4 address, or an IPv6 address with its bits past the prefix length cleared.
/// IPv4-mapped IPv6 addresses count as the IPv4 address they map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(IpAddr);

/// The IPv6 prefix length sources are grouped by unless configured otherwise.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

impl Prefix {
    /// The prefix `ip` belongs to; `ipv6_len` is clamped to 1..=128.
    pub fn of(ip: IpAddr, ipv6_len: u8) -> Prefix {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Prefix(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let len = u32::from(ipv6_len.clamp(1, 128));
                let mask = u128::MAX << (128 - len);
                Prefix(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)))
            }
        }
    }

    /// The prefix as an address (the host bits cleared), e.g. to key a per-IP limiter.
    pub fn addr(&self) -> IpAddr {
        self.0
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_stands_alone_and_ipv6_groups_by_prefix() {
        assert_ne!(
            Prefix::of(ip("192.0.2.1"), 64),
            Prefix::of(ip("192.0.2.2"), 64)
        );
        let a = Prefix::of(ip("2001:db8:1:2:aaaa::1"), 64);
        assert_eq!(a, Prefix::of(ip("2001:db8:1:2:ffff:1:2:3"), 64));
        assert_ne!(a, Prefix::of(ip("2001:db8:1:3::1"), 64));
        assert_eq!(a.addr(), ip("2001:db8:1:2::"));
        // A /48 takes in the /64s under it; /128 is one address.
        assert_eq!(
            Prefix::of(ip("2001:db8:1:2::1"), 48),
            Prefix::of(ip("2001:db8:1:ffff::1"), 48)
        );
        assert_ne!(Prefix::of(ip("::1"), 128), Prefix::of(ip("::2"), 128));
        // Out-of-range lengths are clamped rather than overflowing the shift.
        assert_eq!(Prefix::of(ip("2001:db8::1"), 0).addr(), ip("::"));
        assert_eq!(Prefix::of(ip("2001:db8::1"), 200).addr(), ip("2001:db8::1"));
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_address() {
        assert_eq!(
            Prefix::of(ip("::ffff:192.0.2.7"), 64),
            Prefix::of(ip("192.0.2.7"), 64)
        );
        assert_eq!(
            Prefix::of(ip("::ffff:192.0.2.7"), 64).addr(),
            ip("192.0.2.7")
        );
    }
}
