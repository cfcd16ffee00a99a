//! Kubernetes service links: for every Service in its namespace, Kubernetes gives a pod
//! variables such as `SETOWIRE_NODE_SERVICE_HOST=10.0.0.1` and
//! `SETOWIRE_NODE_PORT=udp://10.0.0.1:49737` (for a Service named `setowire-node`). They
//! share the config variables' prefix but are not config keys; the node must not refuse to
//! start over them, or the pod crash-loops. Only the shapes Kubernetes writes are recognised,
//! name and value both, so that a mistyped config variable is still an error.

use std::net::{IpAddr, SocketAddr};

use super::keys::KEYS;
use super::ENV_PREFIX;

/// The names of the service-link variables in `env` that the configuration ignores, sorted:
/// prefixed variables that name no config key and have a service link's shape.
pub fn ignored(env: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = env
        .iter()
        .filter(|(name, value)| name.starts_with(ENV_PREFIX) && is_service_link(name, value))
        .filter(|(name, _)| !KEYS.iter().any(|spec| spec.env_var() == *name))
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

/// Whether `name=value` is a variable Kubernetes injects for a Service.
pub fn is_service_link(name: &str, value: &str) -> bool {
    let value = value.trim();
    if name.ends_with("_SERVICE_HOST") {
        return value.parse::<IpAddr>().is_ok();
    }
    if let Some((_, rest)) = name.rsplit_once("_SERVICE_PORT") {
        // `X_SERVICE_PORT` or `X_SERVICE_PORT_<PORT NAME>`: a port number.
        return (rest.is_empty() || rest.starts_with('_')) && value.parse::<u16>().is_ok();
    }
    // Before `X_PORT`: `X_PORT_49737_UDP_PORT` ends the same way.
    if is_port_companion(name, value) {
        return true;
    }
    // `X_PORT=tcp://10.0.0.1:80`, the Service's first port.
    name.ends_with("_PORT") && is_port_url(value)
}

/// `X_PORT_<N>_<PROTO>` and its `_PROTO`, `_PORT` and `_ADDR` companions.
fn is_port_companion(name: &str, value: &str) -> bool {
    let Some((_, rest)) = name.rsplit_once("_PORT_") else {
        return false;
    };
    let mut parts = rest.split('_');
    let (Some(port), Some(proto)) = (parts.next(), parts.next()) else {
        return false;
    };
    if port.parse::<u16>().is_err() || !["TCP", "UDP", "SCTP"].contains(&proto) {
        return false;
    }
    match (parts.next(), parts.next()) {
        (None, _) => is_port_url(value),
        (Some("PROTO"), None) => value.eq_ignore_ascii_case(proto),
        (Some("PORT"), None) => value == port,
        (Some("ADDR"), None) => value.parse::<IpAddr>().is_ok(),
        _ => false,
    }
}

/// `tcp://IP:PORT`, `udp://…` or `sctp://…`.
fn is_port_url(value: &str) -> bool {
    ["tcp://", "udp://", "sctp://"]
        .iter()
        .find_map(|scheme| value.strip_prefix(scheme))
        .is_some_and(|addr| addr.parse::<SocketAddr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_kubernetes_writes_are_links() {
        for (name, value) in [
            ("SETOWIRE_NODE_SERVICE_HOST", "10.0.0.1"),
            ("SETOWIRE_NODE_SERVICE_PORT", "49737"),
            ("SETOWIRE_NODE_SERVICE_PORT_ADMIN", "9737"),
            ("SETOWIRE_NODE_PORT", "udp://10.0.0.1:49737"),
            ("SETOWIRE_NODE_PORT_49737_UDP", "udp://10.0.0.1:49737"),
            ("SETOWIRE_NODE_PORT_49737_UDP_PROTO", "udp"),
            ("SETOWIRE_NODE_PORT_49737_UDP_PORT", "49737"),
            ("SETOWIRE_NODE_PORT_49737_UDP_ADDR", "10.0.0.1"),
            ("SETOWIRE_NODE_PORT_8737_TCP", "tcp://[fd00::1]:8737"),
            // A Service named `setowire`.
            ("SETOWIRE_PORT", "udp://10.0.0.1:49737"),
            ("SETOWIRE_SERVICE_HOST", "10.0.0.1"),
        ] {
            assert!(is_service_link(name, value), "{name}={value}");
        }
    }

    #[test]
    fn other_shapes_are_not() {
        for (name, value) in [
            ("SETOWIRE_MAX_PEERS", "5"),
            ("SETOWIRE_NODE_PORT", "49737"),
            ("SETOWIRE_NODE_PORT", "http://10.0.0.1:80"),
            ("SETOWIRE_NODE_SERVICE_HOST", "node.example"),
            ("SETOWIRE_NODE_SERVICE_PORT", "udp"),
            ("SETOWIRE_NODE_PORT_49737_QUIC", "udp://10.0.0.1:49737"),
            ("SETOWIRE_NODE_PORT_49737_UDP_PORT", "1"),
            ("SETOWIRE_NODE_PORT_X_UDP", "udp://10.0.0.1:49737"),
        ] {
            assert!(!is_service_link(name, value), "{name}={value}");
        }
    }
}
