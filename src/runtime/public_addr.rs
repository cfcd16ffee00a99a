//! The address the node announces (RELAY_ANN, the DHT, the HTTP bootstrap), settled at
//! start: the configured one; learnt from the bootstrap nodes by STUN with
//! `public_addr = "auto"`; else the bound address unless it is a wildcard. A node that would
//! announce a private address, or none, says so: in a container or behind NAT that is the
//! address peers elsewhere cannot dial, and nothing else would tell the operator.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::discovery::reflexive;

/// How long the node waits at start for a bootstrap node to answer its STUN request.
const LEARN_TIMEOUT: Duration = Duration::from_secs(2);

/// The address to announce: `configured`, else (with `auto`) the IP the `bootstrap` nodes
/// see with `local`'s port, else `local` unless it is a wildcard.
pub fn settle(
    configured: Option<SocketAddr>,
    auto: bool,
    local: SocketAddr,
    bootstrap: &[SocketAddr],
) -> Option<SocketAddr> {
    let learnt = (configured.is_none() && auto)
        .then(|| learn(local, bootstrap))
        .flatten();
    let public = configured
        .or(learnt)
        .or((!local.ip().is_unspecified()).then_some(local));
    match public {
        None => tracing::warn!(
            udp = %local,
            "no public address: bound to a wildcard and public_addr is not set, so peers are \
             told the address each request arrived on (in a container or behind NAT, a \
             private one); set public_addr to the address peers should dial, or \"auto\""
        ),
        Some(addr) if is_private(addr.ip()) => tracing::warn!(
            public_addr = %addr,
            "the node announces a private address, which peers outside this network cannot \
             dial; set public_addr to the address they should use, or \"auto\""
        ),
        Some(_) => {}
    }
    public
}

fn learn(local: SocketAddr, bootstrap: &[SocketAddr]) -> Option<SocketAddr> {
    if bootstrap.is_empty() {
        tracing::warn!("public_addr = \"auto\" but there are no bootstrap nodes to ask");
        return None;
    }
    match reflexive::learn(local, bootstrap, LEARN_TIMEOUT) {
        Ok(Some(ip)) => {
            let public = SocketAddr::new(ip, local.port());
            tracing::info!(public_addr = %public, "public address learnt from the bootstrap nodes");
            Some(public)
        }
        Ok(None) => {
            tracing::warn!(
                bootstrap = bootstrap.len(),
                "public_addr = \"auto\": no bootstrap node answered STUN within {LEARN_TIMEOUT:?}"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "public_addr = \"auto\": cannot ask the bootstrap nodes");
            None
        }
    }
}

/// Loopback, RFC 1918, shared (RFC 6598), link-local, unique-local IPv6 and the like: an
/// address peers on the internet cannot reach.
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_addresses() {
        for ip in [
            "10.1.2.3",
            "172.17.0.2",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "203.0.113.1",
            "8.8.8.8",
            "100.128.0.1",
            "2001:db8::1",
            "172.32.0.1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn configured_beats_bound_and_a_wildcard_gives_none() {
        let fixed = addr("203.0.113.5:4000");
        assert_eq!(
            settle(Some(fixed), true, addr("0.0.0.0:1"), &[]),
            Some(fixed)
        );
        assert_eq!(
            settle(None, false, addr("10.0.0.2:1"), &[]),
            Some(addr("10.0.0.2:1"))
        );
        assert_eq!(settle(None, false, addr("0.0.0.0:1"), &[]), None);
        assert_eq!(
            settle(None, true, addr("0.0.0.0:1"), &[]),
            None,
            "auto with nobody to ask"
        );
    }
}
