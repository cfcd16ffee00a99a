//! NAT boxes as RFC 4787 describes their UDP behaviour: how outbound traffic is mapped to an
//! external port, which inbound traffic a mapping lets through, when a mapping expires and
//! how its port is chosen. Hairpinning (a host reaching a neighbour through their shared
//! public address) is not modelled.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use rand::Rng;

/// Which part of the remote endpoint a NAT behaviour depends on (RFC 4787, section 4.1 for
/// mapping, 5 for filtering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// One mapping for every destination; anyone may send in through it.
    EndpointIndependent,
    /// A mapping per destination IP; only IPs that were sent to may send in.
    AddressDependent,
    /// A mapping per destination IP and port; only endpoints that were sent to may send in.
    AddressAndPortDependent,
}

impl Dependency {
    /// What of `remote` tells mappings (or permissions) apart.
    fn key(self, remote: SocketAddr) -> Remote {
        match self {
            Dependency::EndpointIndependent => Remote::Any,
            Dependency::AddressDependent => Remote::Address(remote.ip()),
            Dependency::AddressAndPortDependent => Remote::Endpoint(remote),
        }
    }
}

/// How a new mapping's external port is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortAllocation {
    /// The internal port when it is free, a random one otherwise.
    Preserve,
    /// A random port from the dynamic range.
    Random,
}

/// A NAT's behaviour. The constants are the classic names for the common combinations.
///
/// ```
/// use std::time::Duration;
/// use setowire_core::simnet::{Dependency, NatConfig};
///
/// let short_lived = NatConfig {
///     mapping_timeout: Duration::from_secs(30),
///     ..NatConfig::PORT_RESTRICTED_CONE
/// };
/// assert_eq!(short_lived.filtering, Dependency::AddressAndPortDependent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    pub mapping: Dependency,
    pub filtering: Dependency,
    /// A mapping, and each permission to send in through it, lasts this long after the last
    /// outbound datagram that used it. Inbound traffic does not refresh it (RFC 4787 REQ-6
    /// only requires outbound refresh).
    pub mapping_timeout: Duration,
    pub port_allocation: PortAllocation,
}

/// RFC 4787 REQ-5: a mapping must not expire in less than two minutes.
const DEFAULT_MAPPING_TIMEOUT: Duration = Duration::from_secs(120);

impl NatConfig {
    /// Endpoint-independent mapping and filtering.
    pub const FULL_CONE: NatConfig = NatConfig {
        mapping: Dependency::EndpointIndependent,
        filtering: Dependency::EndpointIndependent,
        mapping_timeout: DEFAULT_MAPPING_TIMEOUT,
        port_allocation: PortAllocation::Preserve,
    };
    /// Endpoint-independent mapping, address-dependent filtering.
    pub const RESTRICTED_CONE: NatConfig = NatConfig {
        filtering: Dependency::AddressDependent,
        ..NatConfig::FULL_CONE
    };
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    pub const PORT_RESTRICTED_CONE: NatConfig = NatConfig {
        filtering: Dependency::AddressAndPortDependent,
        ..NatConfig::FULL_CONE
    };
    /// A mapping and a random port per destination endpoint, and only that endpoint let in.
    pub const SYMMETRIC: NatConfig = NatConfig {
        mapping: Dependency::AddressAndPortDependent,
        filtering: Dependency::AddressAndPortDependent,
        mapping_timeout: DEFAULT_MAPPING_TIMEOUT,
        port_allocation: PortAllocation::Random,
    };
}

/// Where random external ports come from (the IANA dynamic and registered ranges).
const RANDOM_PORTS: RangeInclusive<u16> = 1024..=u16::MAX;
/// Remotes one mapping remembers having sent to; beyond it the least recently used is
/// forgotten, so a host spraying datagrams cannot grow the table without bound.
const MAX_PERMISSIONS: usize = 1024;

/// The part of a remote endpoint a mapping or a permission is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Remote {
    Any,
    Address(IpAddr),
    Endpoint(SocketAddr),
}

/// One external port in use.
#[derive(Debug)]
struct Mapping {
    internal: SocketAddr,
    /// The remote this mapping is for, as far as the mapping behaviour cares.
    remote: Remote,
    last_outbound: Instant,
    /// Remotes (as far as the filtering behaviour cares) that were sent to, and when last.
    permissions: BTreeMap<Remote, Instant>,
}

/// The state of one NAT box. Ordered maps, so that nothing depends on hash order and a
/// seeded run repeats exactly.
#[derive(Debug)]
pub(crate) struct Nat {
    public_ip: IpAddr,
    config: NatConfig,
    by_port: BTreeMap<u16, Mapping>,
    /// (internal endpoint, remote) → external port, for every mapping in `by_port`.
    by_session: BTreeMap<(SocketAddr, Remote), u16>,
}

impl Nat {
    pub(crate) fn new(public_ip: IpAddr, config: NatConfig) -> Self {
        Self {
            public_ip,
            config,
            by_port: BTreeMap::new(),
            by_session: BTreeMap::new(),
        }
    }

    pub(crate) fn public_ip(&self) -> IpAddr {
        self.public_ip
    }

    /// Translates a datagram from `internal` to `remote`: the public endpoint it leaves from,
    /// or `None` when every external port is taken.
    pub(crate) fn outbound(
        &mut self,
        now: Instant,
        internal: SocketAddr,
        remote: SocketAddr,
        rng: &mut impl Rng,
    ) -> Option<SocketAddr> {
        let timeout = self.config.mapping_timeout;
        let session = (internal, self.config.mapping.key(remote));
        let port = match self.by_session.get(&session).copied() {
            Some(port) if self.by_port[&port].is_live(now, timeout) => port,
            stale => {
                if let Some(port) = stale {
                    self.release(port);
                }
                self.allocate(now, session, rng)?
            }
        };
        let mapping = self
            .by_port
            .get_mut(&port)
            .expect("by_session names a mapping");
        mapping.last_outbound = now;
        mapping.permit(self.config.filtering.key(remote), now, timeout);
        Some(SocketAddr::new(self.public_ip, port))
    }

    /// Where a datagram from `remote` to external `port` goes inside, if the NAT lets it in.
    pub(crate) fn inbound(
        &self,
        now: Instant,
        remote: SocketAddr,
        port: u16,
    ) -> Option<SocketAddr> {
        let timeout = self.config.mapping_timeout;
        let mapping = self.by_port.get(&port)?;
        let permitted = mapping
            .permissions
            .get(&self.config.filtering.key(remote))
            .is_some_and(|at| now < *at + timeout);
        (mapping.is_live(now, timeout) && permitted).then_some(mapping.internal)
    }

    fn allocate(
        &mut self,
        now: Instant,
        session: (SocketAddr, Remote),
        rng: &mut impl Rng,
    ) -> Option<u16> {
        let port = self.free_port(now, session.0.port(), rng)?;
        // The port may still hold a mapping that expired.
        self.release(port);
        self.by_port.insert(
            port,
            Mapping {
                internal: session.0,
                remote: session.1,
                last_outbound: now,
                permissions: BTreeMap::new(),
            },
        );
        self.by_session.insert(session, port);
        Some(port)
    }

    fn free_port(&self, now: Instant, internal_port: u16, rng: &mut impl Rng) -> Option<u16> {
        let timeout = self.config.mapping_timeout;
        let free = |port: &u16| {
            self.by_port
                .get(port)
                .map_or(true, |m| !m.is_live(now, timeout))
        };
        if self.config.port_allocation == PortAllocation::Preserve && free(&internal_port) {
            return Some(internal_port);
        }
        // A random start, then the first free port from there: bounded, even when full.
        let start = rng.gen_range(RANDOM_PORTS);
        (start..=*RANDOM_PORTS.end())
            .chain(*RANDOM_PORTS.start()..start)
            .find(free)
    }

    fn release(&mut self, port: u16) {
        if let Some(old) = self.by_port.remove(&port) {
            self.by_session.remove(&(old.internal, old.remote));
        }
    }
}

impl Mapping {
    fn is_live(&self, now: Instant, timeout: Duration) -> bool {
        now < self.last_outbound + timeout
    }

    fn permit(&mut self, remote: Remote, now: Instant, timeout: Duration) {
        if !self.permissions.contains_key(&remote) && self.permissions.len() >= MAX_PERMISSIONS {
            self.permissions.retain(|_, at| now < *at + timeout);
            if self.permissions.len() >= MAX_PERMISSIONS {
                let oldest = self
                    .permissions
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(remote, _)| *remote)
                    .expect("the table is full");
                self.permissions.remove(&oldest);
            }
        }
        self.permissions.insert(remote, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const ALL: [Dependency; 3] = [
        Dependency::EndpointIndependent,
        Dependency::AddressDependent,
        Dependency::AddressAndPortDependent,
    ];

    fn endpoint(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn nat(config: NatConfig) -> Nat {
        Nat::new("198.51.100.1".parse().unwrap(), config)
    }

    /// Every mapping × filtering combination: which remotes share a mapping, and which may
    /// send in after one outbound datagram (RFC 4787 sections 4.1 and 5).
    #[test]
    fn each_combination_maps_and_filters_per_rfc_4787() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let internal = endpoint("192.168.1.2:4000");
        let contacted = endpoint("203.0.113.1:1000");
        let same_ip_other_port = endpoint("203.0.113.1:2000");
        let other_ip_same_port = endpoint("203.0.113.2:1000");
        for mapping in ALL {
            for filtering in ALL {
                let label = format!("{mapping:?} mapping, {filtering:?} filtering");
                let mut nat = nat(NatConfig {
                    mapping,
                    filtering,
                    ..NatConfig::FULL_CONE
                });
                let external = nat.outbound(now, internal, contacted, &mut rng).unwrap();
                let port = external.port();
                assert_eq!(nat.inbound(now, contacted, port), Some(internal), "{label}");
                assert_eq!(
                    nat.inbound(now, same_ip_other_port, port).is_some(),
                    filtering != Dependency::AddressAndPortDependent,
                    "{label}: same IP, other port"
                );
                assert_eq!(
                    nat.inbound(now, other_ip_same_port, port).is_some(),
                    filtering == Dependency::EndpointIndependent,
                    "{label}: other IP"
                );
                let to_other_port = nat.outbound(now, internal, same_ip_other_port, &mut rng);
                assert_eq!(
                    to_other_port == Some(external),
                    mapping != Dependency::AddressAndPortDependent,
                    "{label}: mapping towards the same IP's other port"
                );
                let to_other_ip = nat.outbound(now, internal, other_ip_same_port, &mut rng);
                assert_eq!(
                    to_other_ip == Some(external),
                    mapping == Dependency::EndpointIndependent,
                    "{label}: mapping towards another IP"
                );
            }
        }
    }

    #[test]
    fn port_preservation_keeps_the_internal_port_while_it_is_free() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let mut nat = nat(NatConfig::FULL_CONE);
        let remote = endpoint("203.0.113.1:1000");
        let first = nat
            .outbound(now, endpoint("192.168.1.2:4000"), remote, &mut rng)
            .unwrap();
        let second = nat
            .outbound(now, endpoint("192.168.1.3:4000"), remote, &mut rng)
            .unwrap();
        assert_eq!(first.port(), 4000);
        assert_ne!(second.port(), 4000, "the port is taken by the first host");
        assert!(RANDOM_PORTS.contains(&second.port()));
    }

    #[test]
    fn a_mapping_expires_after_the_timeout_without_outbound_traffic() {
        let start = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut rng = StdRng::seed_from_u64(7);
        let mut nat = nat(NatConfig {
            mapping_timeout: timeout,
            ..NatConfig::FULL_CONE
        });
        let (internal, remote) = (endpoint("192.168.1.2:4000"), endpoint("203.0.113.1:1000"));
        let port = nat
            .outbound(start, internal, remote, &mut rng)
            .unwrap()
            .port();
        // Inbound traffic does not keep it alive; outbound traffic does.
        let just_before = start + timeout - Duration::from_millis(1);
        assert_eq!(nat.inbound(just_before, remote, port), Some(internal));
        assert_eq!(nat.inbound(start + timeout, remote, port), None);
        let later = start + timeout * 2;
        nat.outbound(later, internal, remote, &mut rng).unwrap();
        assert_eq!(
            nat.inbound(later + timeout / 2, remote, port),
            Some(internal)
        );
    }

    #[test]
    fn symmetric_ports_are_random_and_a_remapping_after_expiry_gets_a_new_one() {
        let start = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let mut nat = nat(NatConfig::SYMMETRIC);
        let (internal, remote) = (endpoint("192.168.1.2:4000"), endpoint("203.0.113.1:1000"));
        let first = nat.outbound(start, internal, remote, &mut rng).unwrap();
        let later = start + NatConfig::SYMMETRIC.mapping_timeout;
        let second = nat.outbound(later, internal, remote, &mut rng).unwrap();
        assert_ne!(first.port(), 4000);
        assert_ne!(first, second);
        assert_eq!(nat.inbound(later, remote, first.port()), None);
        assert_eq!(nat.inbound(later, remote, second.port()), Some(internal));
    }

    #[test]
    fn permissions_per_mapping_are_bounded() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let mut nat = nat(NatConfig::PORT_RESTRICTED_CONE);
        let internal = endpoint("192.168.1.2:4000");
        let remotes: Vec<SocketAddr> = (0..=MAX_PERMISSIONS as u16)
            .map(|i| SocketAddr::new("203.0.113.1".parse().unwrap(), 1000 + i))
            .collect();
        for (i, remote) in remotes.iter().enumerate() {
            let at = now + Duration::from_millis(i as u64);
            nat.outbound(at, internal, *remote, &mut rng).unwrap();
        }
        let mapping = &nat.by_port[&4000];
        assert_eq!(mapping.permissions.len(), MAX_PERMISSIONS);
        assert_eq!(
            nat.inbound(now, remotes[0], 4000),
            None,
            "the oldest is forgotten"
        );
        assert!(nat.inbound(now, remotes[1], 4000).is_some());
    }
}
