//! Each subsystem's configuration, built from a [`NodeConfig`] here and nowhere else, so the
//! subsystems know nothing of config keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use setowire_core::dht::rpc::DhtConfig;
use setowire_core::proto::identity::Identity;
use setowire_core::proto::session::restart_safe_counter_base;
use setowire_core::ratelimit::{Rate, SourceGrouping};
use setowire_core::swarm::config::EngineConfig;

use super::identity_file::{self, KeyFileError};
use super::{IdentitySource, NodeConfig, PublicAddr, SECRET_KEYS};
use crate::admin::AdminConfig;
use crate::discovery::dht::DiscoveryOptions;
use crate::http::{BandwidthConfig, BootstrapConfig, HttpConfig, PipingConfig};
use crate::runtime::{bootstrap, NodeOptions};
use crate::state::{SnapshotLimits, StateDir, StateDirError, StateOptions};

/// Why the node cannot start with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    StateDir(#[from] StateDirError),
}

impl StartError {
    /// The process exit code: 2 for a state directory the configuration names but the node
    /// cannot use, as for other configuration errors; 1 for a key file that cannot be used.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::KeyFile(_) => 1,
            StartError::StateDir(_) => 2,
        }
    }
}

impl NodeConfig {
    /// What the runtime starts the node with: every subsystem's configuration, the state
    /// directory (created when missing, and locked), the identity (a key file is created when
    /// missing) and the bootstrap nodes' addresses (resolved now). `control_stdio` is the run
    /// mode `--control stdio`; `unix_seconds` the current time.
    pub fn node_options(
        &self,
        control_stdio: bool,
        unix_seconds: u64,
    ) -> Result<NodeOptions, StartError> {
        let state_dir = self.state_dir.as_deref().map(StateDir::open).transpose()?;
        let identity = self.load_identity(state_dir.as_ref())?;
        // A seeded or kept identity is the same in every run: never restart its counters.
        let first_send_counter = self.counter_base(state_dir.as_ref(), unix_seconds)?;
        Ok(NodeOptions {
            udp_listen: self.udp_listen,
            shards: self.shards.count().get(),
            io_backend: self.io_backend,
            pin_cores: true,
            identity,
            engine: EngineConfig {
                first_send_counter,
                ..self.engine_config()
            },
            dial: self.resolve_bootstrap(),
            bootstrap: self.bootstrap.clone(),
            control_stdio,
            discovery: self.discovery_options(),
            http: self.http_config(),
            admin: self.admin_config(),
            metrics_listen: self.metrics_listen,
            public_addr_auto: self.public_addr == PublicAddr::Auto,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            reload: None,
            state: state_dir.map(|dir| self.state_options(dir)),
        })
    }

    /// Persistence in `dir`: how often, and how much each snapshot keeps.
    pub fn state_options(&self, dir: StateDir) -> StateOptions {
        StateOptions {
            dir,
            interval: Duration::from_secs(self.state_snapshot_interval_secs),
            limits: SnapshotLimits {
                dht_bytes: self.dht_max_values_bytes,
                announcements: self.http_max_announces,
                values: self.store_max_entries,
                values_bytes: self.state_values_max_bytes,
                peers: self.state_peer_cache_size,
            },
        }
    }

    /// The engine tunables these keys set; the others keep [`EngineConfig::default`].
    /// `first_send_counter` stays 0: [`NodeConfig::node_options`] sets it (see
    /// [`setowire_core::proto::session::restart_safe_counter_base`]).
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            max_peers: self.max_peers,
            flood: self.flood,
            relay: self.relay,
            store_forward: self.store_forward,
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            peer_timeout: Duration::from_secs(self.peer_timeout_secs),
            pex_interval: Duration::from_secs(self.pex_interval_secs),
            relay_announce_interval: Duration::from_secs(self.relay_announce_secs),
            gossip_fanout: self.gossip_fanout,
            mesh_degree: self.mesh_degree,
            mesh_low: self.mesh_low,
            mesh_high: self.mesh_high,
            store_max_entries: self.store_max_entries,
            store_max_bytes: self.store_max_bytes,
            store_max_value: self.store_max_value_bytes,
            max_fragment_bytes: self.reassembly_max_bytes,
            unauth_rate: Rate {
                per_second: self.unauth_rate_per_ip as f32,
                burst: self.unauth_burst_per_ip as f32,
            },
            session_rate: Rate {
                per_second: self.session_rate as f32,
                burst: self.session_burst as f32,
            },
            handshake_rate: Rate {
                per_second: self.handshake_rate_per_ip as f32,
                burst: self.handshake_burst_per_ip as f32,
            },
            rate_limit_ips: self.rate_limit_ips,
            ipv6_prefix: self.ipv6_prefix_len,
            public_addr: self.public_addr.fixed(),
            ..EngineConfig::default()
        }
    }

    /// The DHT's limits, its separate port, the topics announced and LAN discovery.
    pub fn discovery_options(&self) -> DiscoveryOptions {
        DiscoveryOptions {
            dht: DhtConfig {
                value_ttl: Duration::from_secs(self.dht_value_ttl_secs),
                max_values_bytes: self.dht_max_values_bytes,
                max_values_per_ip: self.dht_max_values_per_ip,
                ipv6_prefix_len: self.ipv6_prefix_len,
                store_rate: Rate {
                    per_second: self.dht_store_rate_per_ip as f32,
                    burst: self.dht_store_burst_per_ip as f32,
                },
                request_rate: Rate {
                    per_second: self.dht_request_rate_per_ip as f32,
                    burst: self.dht_request_burst_per_ip as f32,
                },
                rate_limit_sources: self.rate_limit_ips,
                ..DhtConfig::default()
            },
            dht_listen: self.dht_listen,
            topics: self.topics.clone(),
            lan: self.lan,
        }
    }

    /// The public HTTP listener; `None` when `http_listen` is off.
    pub fn http_config(&self) -> Option<HttpConfig> {
        let listen = self.http_listen?;
        Some(HttpConfig {
            listen,
            max_connections: self.http_max_connections,
            max_connections_per_ip: self.http_max_connections_per_ip,
            header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            idle_timeout: Duration::from_secs(self.http_idle_timeout_secs),
            rate_per_ip: self.http_rate(),
            rate_limit_ips: self.rate_limit_ips,
            grouping: SourceGrouping::new(self.ipv6_prefix_len),
            discard_max: self.http_discard_max_bytes,
            bootstrap: BootstrapConfig {
                list: self.http_peers_list,
                ttl: Duration::from_secs(self.http_announce_ttl_secs),
                max_entries: self.http_max_announces,
                max_per_ip: self.http_announces_per_ip,
                default_limit: self.http_peers_default_limit,
                max_limit: self.http_peers_max_limit,
                max_body: self.http_announce_max_bytes,
                check_source: self.http_announce_check_source,
            },
            piping: PipingConfig {
                open: self.piping_open,
                rendezvous_prefix: self.piping_rendezvous_prefix.clone(),
                rendezvous_max_body: self.piping_rendezvous_max_body_bytes,
                max_paths: self.piping_max_paths,
                max_waiting_per_path: self.piping_max_waiting_per_path,
                max_body: self.piping_max_body_bytes,
                bandwidth: BandwidthConfig {
                    per_ip: self.piping_bytes_per_sec_per_ip,
                    total: self.piping_bytes_per_sec_total,
                    tracked_ips: self.rate_limit_ips,
                },
                idle_timeout: Duration::from_secs(self.piping_idle_timeout_secs),
            },
        })
    }

    /// The public listener's request rate per source IP.
    pub fn http_rate(&self) -> Rate {
        Rate {
            per_second: self.http_rate_per_ip as f32,
            burst: self.http_burst_per_ip as f32,
        }
    }

    /// The admin listener, with the configuration it reports (secrets redacted); `None` when
    /// `admin_listen` is off.
    pub fn admin_config(&self) -> Option<AdminConfig> {
        let listen = self.admin_listen?;
        let mut values = serde_json::Map::new();
        for (key, value) in self.to_values() {
            let value = if SECRET_KEYS.contains(&key) {
                let set = value.as_str().is_some_and(|s| !s.is_empty());
                Value::String(if set { "<redacted>" } else { "" }.into())
            } else {
                serde_json::to_value(&value).unwrap_or(Value::Null)
            };
            values.insert(key.to_owned(), value);
        }
        Some(AdminConfig {
            listen,
            token: self.admin_token.clone(),
            config: Value::Object(values),
        })
    }

    /// The node's identity, the first of: derived from `seed`; the key file `identity`
    /// names; the state directory's key file; a fresh key pair. Key files are created when
    /// missing.
    pub fn load_identity(&self, state: Option<&StateDir>) -> Result<Identity, KeyFileError> {
        if let Some(seed) = &self.seed {
            return Ok(Identity::from_seed(seed));
        }
        match self.key_file(state) {
            Some(path) => identity_file::load_or_create(&path),
            None => Ok(Identity::generate()),
        }
    }

    /// The key file the identity is kept in, unless it is seeded or fresh.
    fn key_file(&self, state: Option<&StateDir>) -> Option<PathBuf> {
        match (&self.identity, state) {
            (IdentitySource::KeyFile(path), _) => Some(path.clone()),
            (IdentitySource::Ephemeral, Some(dir)) => Some(dir.identity_key()),
            (IdentitySource::Ephemeral, None) => None,
        }
    }

    /// The first nonce counter of this run (see [`restart_safe_counter_base`]): above the
    /// epoch recorded beside the key file, or in the state directory for a seeded identity;
    /// from the clock for a seed without one, irrelevant but harmless for a fresh identity.
    pub fn counter_base(
        &self,
        state: Option<&StateDir>,
        unix_seconds: u64,
    ) -> Result<u64, KeyFileError> {
        let epoch_file = match &self.seed {
            Some(_) => state.map(StateDir::seed_epoch),
            None => self
                .key_file(state)
                .map(|key| identity_file::epoch_path(&key)),
        };
        match epoch_file {
            Some(path) => identity_file::next_counter_base(&path, unix_seconds),
            None => Ok(restart_safe_counter_base(unix_seconds)),
        }
    }

    /// The bootstrap nodes' addresses at start, preferring the address family of
    /// `udp_listen`. A name that does not resolve is logged and skipped: the node still
    /// serves its own peers, and the bootstrap keeper tries the name again.
    fn resolve_bootstrap(&self) -> Vec<SocketAddr> {
        let mut dial = Vec::new();
        for host_port in &self.bootstrap {
            match bootstrap::resolve(host_port, self.udp_listen.is_ipv4()) {
                Ok(addrs) => dial.extend(addrs),
                Err(e) => tracing::warn!(bootstrap = %host_port, "cannot resolve: {e}"),
            }
        }
        dial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_keeps_the_identity_and_its_epoch() {
        let path = crate::state::atomic::scratch::dir("subsystems").join("state");
        let dir = StateDir::open(&path).unwrap();
        let kept = NodeConfig::defaults();
        let first = kept.load_identity(Some(&dir)).unwrap();
        assert_eq!(kept.load_identity(Some(&dir)).unwrap().id(), first.id());
        assert!(path.join("identity.key").exists());
        assert_ne!(
            kept.load_identity(None).unwrap().id(),
            first.id(),
            "no state: fresh"
        );
        // The epoch is kept beside the key and grows though the clock goes back.
        let before = kept.counter_base(Some(&dir), 1_000).unwrap();
        let after = kept.counter_base(Some(&dir), 10).unwrap();
        assert!(after > before);
        assert!(path.join("identity.key.epoch").exists());
        // A seed wins, and its epoch is kept in the state directory too.
        let seeded = NodeConfig::from_toml("seed = \"01\"").unwrap();
        assert_eq!(
            seeded.load_identity(Some(&dir)).unwrap().id(),
            Identity::from_seed(&[1]).id()
        );
        let before = seeded.counter_base(Some(&dir), 2_000).unwrap();
        assert!(seeded.counter_base(Some(&dir), 5).unwrap() > before);
        assert!(path.join("seed.epoch").exists());
        assert_eq!(
            seeded.counter_base(None, 5).unwrap(),
            restart_safe_counter_base(5),
            "without a state directory a seed counts from the clock"
        );
        // A configured key file wins over the state directory's.
        let mut own_key = NodeConfig::defaults();
        own_key.identity = IdentitySource::KeyFile(path.join("own.key"));
        let own = own_key.load_identity(Some(&dir)).unwrap();
        assert_ne!(own.id(), first.id());
        own_key.counter_base(Some(&dir), 1).unwrap();
        assert!(path.join("own.key.epoch").exists());
        drop(dir);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn engine_config_carries_the_engine_keys() {
        let config = NodeConfig::from_toml(
            "max_peers = 9\nflood = false\nrelay = false\nstore_forward = false\n\
             ping_interval_ms = 250\npeer_timeout_secs = 5\npex_interval_secs = 7\n\
             relay_announce_secs = 11\ngossip_fanout = 2\nstore_max_entries = 3\n\
             store_max_bytes = 4000\nstore_max_value_bytes = 500\nunauth_rate_per_ip = 10\n\
             unauth_burst_per_ip = 20\nsession_rate = 30\nsession_burst = 40\n\
             handshake_rate_per_ip = 60\nhandshake_burst_per_ip = 70\n\
             rate_limit_ips = 50\nipv6_prefix_len = 56\npublic_addr = \"192.0.2.1:4242\"\n",
        )
        .unwrap();
        let engine = config.engine_config();
        assert_eq!(engine.max_peers, 9);
        assert!(!engine.flood && !engine.relay && !engine.store_forward);
        assert_eq!(engine.ping_interval, Duration::from_millis(250));
        assert_eq!(engine.peer_timeout, Duration::from_secs(5));
        assert_eq!(engine.pex_interval, Duration::from_secs(7));
        assert_eq!(engine.relay_announce_interval, Duration::from_secs(11));
        assert_eq!(engine.gossip_fanout, 2);
        assert_eq!(
            (
                engine.store_max_entries,
                engine.store_max_bytes,
                engine.store_max_value
            ),
            (3, 4000, 500)
        );
        assert_eq!(
            engine.unauth_rate,
            Rate {
                per_second: 10.0,
                burst: 20.0
            }
        );
        assert_eq!(
            engine.session_rate,
            Rate {
                per_second: 30.0,
                burst: 40.0
            }
        );
        assert_eq!(engine.rate_limit_ips, 50);
        assert_eq!(
            engine.handshake_rate,
            Rate {
                per_second: 60.0,
                burst: 70.0
            }
        );
        assert_eq!(engine.ipv6_prefix, 56);
        assert_eq!(engine.public_addr, Some("192.0.2.1:4242".parse().unwrap()));
        assert_eq!(engine.first_send_counter, 0);

        let defaults = NodeConfig::defaults().engine_config();
        assert!(
            defaults.store_forward,
            "the node stores and forwards by default"
        );
    }
}
