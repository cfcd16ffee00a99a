//! Which sources count as one for per-address limits. An IPv4 address is one subscriber; an
//! IPv6 subscriber usually holds a whole /64 (or more) and can send from any address in it,
//! so IPv6 sources are grouped by a configurable prefix.

use std::net::{IpAddr, Ipv6Addr};

/// The prefix IPv6 sources are grouped by unless configured otherwise.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// Groups source addresses into the unit per-address limits apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceGrouping {
    ipv6_prefix: u8,
}

impl Default for SourceGrouping {
    fn default() -> Self {
        Self::new(DEFAULT_IPV6_PREFIX)
    }
}

impl SourceGrouping {
    /// `ipv6_prefix` is clamped to 0..=128.
    pub fn new(ipv6_prefix: u8) -> Self {
        Self {
            ipv6_prefix: ipv6_prefix.min(128),
        }
    }

    pub fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }

    /// The group `ip` belongs to. IPv4-mapped IPv6 addresses are the IPv4 address.
    pub fn group_of(&self, ip: IpAddr) -> SourceGroup {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceGroup(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let mask = match self.ipv6_prefix {
                    0 => 0,
                    n => u128::MAX << (128 - u32::from(n)),
                };
                SourceGroup(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)))
            }
        }
    }
}

/// One unit of per-address accounting (see [`SourceGrouping`]): an IPv4 address, or an IPv6
/// address with the bits past the prefix cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceGroup(IpAddr);

impl SourceGroup {
    /// The group as an address (host bits cleared), e.g. to key a per-IP limiter.
    pub fn addr(&self) -> IpAddr {
        self.0
    }
}

impl std::fmt::Display for SourceGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(prefix: u8, ip: &str) -> SourceGroup {
        SourceGrouping::new(prefix).group_of(ip.parse().unwrap())
    }

    #[test]
    fn ipv6_sources_in_one_prefix_are_one_group() {
        assert_eq!(
            group(64, "2001:db8:1:2::1"),
            group(64, "2001:db8:1:2:ffff::9")
        );
        assert_ne!(group(64, "2001:db8:1:2::1"), group(64, "2001:db8:1:3::1"));
        assert_ne!(group(128, "2001:db8::1"), group(128, "2001:db8::2"));
        assert_eq!(group(0, "2001:db8::1"), group(0, "fe80::2"));
        assert_eq!(
            group(64, "2001:db8:1:2::1").addr(),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        // A /48 takes in the /64s under it.
        assert_eq!(group(48, "2001:db8:1:2::1"), group(48, "2001:db8:1:3::1"));
    }

    #[test]
    fn ipv4_sources_are_whole_addresses_and_mapped_ones_are_the_same() {
        assert_ne!(group(64, "192.0.2.1"), group(64, "192.0.2.2"));
        assert_eq!(group(64, "192.0.2.1"), group(64, "::ffff:192.0.2.1"));
        // The IPv4-compatible ::c000:201 is an IPv6 source, not 192.0.2.1.
        assert_ne!(group(128, "192.0.2.1"), group(128, "::c000:201"));
    }
}
