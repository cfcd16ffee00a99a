//! Checks between keys, which no single value can fail on its own.

use super::error::ConfigError;
use super::{IdentitySource, NodeConfig};

/// Checks between keys, once all layers are merged.
pub(super) fn check_combination(config: &NodeConfig) -> Result<(), ConfigError> {
    if config.seed.is_some() {
        if let IdentitySource::KeyFile(path) = &config.identity {
            return Err(ConfigError::Conflict {
                key: "seed",
                other: "identity",
                reason: format!(
                    "a seed cannot be combined with the key file {}: set identity = \
                     \"ephemeral\" to use the seed, or leave seed empty",
                    path.display()
                ),
            });
        }
    }
    if !(config.mesh_low <= config.mesh_degree && config.mesh_degree <= config.mesh_high) {
        return Err(ConfigError::Conflict {
            key: "mesh_degree",
            other: "mesh_low",
            reason: format!(
                "the mesh needs mesh_low ({}) <= mesh_degree ({}) <= mesh_high ({})",
                config.mesh_low, config.mesh_degree, config.mesh_high
            ),
        });
    }
    if config.peer_timeout_secs.saturating_mul(1000) <= config.ping_interval_ms {
        return Err(ConfigError::Conflict {
            key: "peer_timeout_secs",
            other: "ping_interval_ms",
            reason: format!(
                "the peer timeout ({} s) must be longer than the ping interval ({} ms)",
                config.peer_timeout_secs, config.ping_interval_ms
            ),
        });
    }
    if let (Some(admin), None) = (config.admin_listen, &config.admin_token) {
        if !admin.ip().to_canonical().is_loopback() {
            return Err(ConfigError::Conflict {
                key: "admin_listen",
                other: "admin_token",
                reason: format!(
                    "the admin API on {admin} is reachable from other hosts: set admin_token \
                     (or SETOWIRE_ADMIN_TOKEN), or listen on a loopback address"
                ),
            });
        }
    }
    if config.http_peers_default_limit > config.http_peers_max_limit {
        return Err(ConfigError::Conflict {
            key: "http_peers_default_limit",
            other: "http_peers_max_limit",
            reason: format!(
                "the default ({}) cannot exceed the maximum ({})",
                config.http_peers_default_limit, config.http_peers_max_limit
            ),
        });
    }
    if config.store_max_value_bytes > config.store_max_bytes {
        return Err(ConfigError::Conflict {
            key: "store_max_value_bytes",
            other: "store_max_bytes",
            reason: format!(
                "the largest value ({} bytes) cannot exceed the whole store ({} bytes)",
                config.store_max_value_bytes, config.store_max_bytes
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use setowire_core::proto::identity::Identity;

    #[test]
    fn mesh_bounds_must_enclose_the_degree() {
        let e = NodeConfig::from_toml("mesh_degree = 20")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mesh_high"), "{e}");
        let config =
            NodeConfig::from_toml("mesh_degree = 500\nmesh_low = 500\nmesh_high = 500").unwrap();
        let engine = config.engine_config();
        assert_eq!(
            (engine.mesh_degree, engine.mesh_low, engine.mesh_high),
            (500, 500, 500)
        );
    }

    #[test]
    fn conflicting_keys_are_refused() {
        let e = NodeConfig::from_toml("seed = \"01\"\nidentity = \"/tmp/key\"").unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Conflict {
                key: "seed",
                other: "identity",
                ..
            }
        ));
        assert_eq!(e.exit_code(), 2);
        let e = NodeConfig::from_toml("peer_timeout_secs = 1\nping_interval_ms = 1000")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"peer_timeout_secs\""), "{e}");
        let e = NodeConfig::from_toml("store_max_bytes = 100\nstore_max_value_bytes = 101")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"store_max_value_bytes\""), "{e}");
        // A seed with an ephemeral identity is the normal seeded setup.
        let config = NodeConfig::from_toml("seed = \"01\"").unwrap();
        assert_eq!(
            config.load_identity(None).unwrap().id(),
            Identity::from_seed(&[1]).id()
        );
    }
}
