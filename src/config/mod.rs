//! The node's configuration: typed keys, their parsing and validation, and the layering of
//! the embedded defaults, a config file, the environment and command-line flags.
//!
//! `config/node.toml` is the single source of truth for the defaults: it is embedded with
//! [`DEFAULT_CONFIG_TOML`] and parsed at start like any other config file. Keys are flat, so a
//! key, its flag and its environment variable map 1:1 (`max_peers`, `--max-peers`,
//! `SETOWIRE_MAX_PEERS`). Later layers win:
//!
//! embedded defaults < `--config` file < `SETOWIRE_*` environment < flags.
//!
//! Every value is validated in the layer it comes from, also when a later layer overrides it,
//! so a bad value never hides. Errors name the key, the value, the reason and where the value
//! came from; [`ConfigError::exit_code`] is 2 for all of them.
//!
//! The parts: the key table (`keys`), the per-key parsers (`parse`), the checks between keys
//! (`constraints`), the layering (`layers`), the command line ([`cli`]), key files
//! ([`identity_file`]) and the one place each subsystem's configuration is built from a
//! [`NodeConfig`] (`subsystems`).

pub mod cli;
mod constraints;
mod error;
pub mod identity_file;
mod keys;
mod layers;
mod parse;
pub mod reload;
pub mod service_links;
mod subsystems;

pub use crate::http::bootstrap::PeerList;
pub use crate::io::BackendChoice as IoBackendChoice;
pub use crate::telemetry::logging::LogFormat;
pub use error::{ConfigError, Origin};
pub use keys::{key_spec, KeyKind, KeySpec, KEYS};
pub use layers::ConfigBuilder;
pub use parse::{RawValue, ValueError};
pub use subsystems::StartError;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use keys::emit_config;

/// The default configuration, `config/node.toml`, as embedded in the binary.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/node.toml");

/// Prefix of the environment variables that set config keys.
pub const ENV_PREFIX: &str = "SETOWIRE_";

/// Environment variable naming a config file, used when `--config` is not given.
pub const ENV_CONFIG_FILE: &str = "SETOWIRE_CONFIG";

/// Variables with [`ENV_PREFIX`] that are not config keys and are not errors: the config file
/// variable and the ones the test harness reads.
pub const ENV_ALLOWLIST: &[&str] = &[
    ENV_CONFIG_FILE,
    "SETOWIRE_TEST_NETNS",
    "SETOWIRE_TEST_PYTHON",
    "SETOWIRE_TEST_FAULT",
];

/// Keys whose values are secrets: never logged, printed or served (shown as set or not).
pub const SECRET_KEYS: &[&str] = &["admin_token", "seed"];

/// Most worker shards `shards` accepts.
pub const MAX_SHARDS: usize = 1024;

/// Largest topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 64;

/// The effective node configuration. Field names are the config keys; see `config/node.toml`
/// for what each one does. Obtain one from [`ConfigBuilder`], [`NodeConfig::from_toml`] or
/// [`cli::parse_cli`]; all of them validate.
///
/// `Debug` shows `admin_token` and `seed` as they are: do not log a whole `NodeConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// UDP address Setowire is served on.
    pub udp_listen: SocketAddr,
    /// Public HTTP address (bootstrap and piping); `None`: no HTTP listener.
    pub http_listen: Option<SocketAddr>,
    /// Open HTTP connections at most.
    pub http_max_connections: usize,
    /// Open HTTP connections from one source IP at most.
    pub http_max_connections_per_ip: usize,
    pub http_header_timeout_secs: u64,
    pub http_idle_timeout_secs: u64,
    /// HTTP requests/s from one IP.
    pub http_rate_per_ip: u32,
    pub http_burst_per_ip: u32,
    /// Bytes of an oversized body read and discarded before the 413.
    pub http_discard_max_bytes: u64,
    pub http_announce_ttl_secs: u64,
    pub http_max_announces: usize,
    /// Live announcements from one source IP at most.
    pub http_announces_per_ip: usize,
    pub http_announce_max_bytes: usize,
    /// Refuse an announced public IP other than the request's source.
    pub http_announce_check_source: bool,
    pub http_peers_list: PeerList,
    /// Never above `http_peers_max_limit`.
    pub http_peers_default_limit: usize,
    pub http_peers_max_limit: usize,
    /// Generic piping on every path; off: only the rendezvous prefix.
    pub piping_open: bool,
    /// Empty, or `/` and up to 63 more visible ASCII characters.
    pub piping_rendezvous_prefix: String,
    pub piping_rendezvous_max_body_bytes: u64,
    pub piping_max_paths: usize,
    pub piping_max_waiting_per_path: usize,
    pub piping_max_body_bytes: u64,
    pub piping_bytes_per_sec_per_ip: u64,
    pub piping_bytes_per_sec_total: u64,
    pub piping_idle_timeout_secs: u64,
    /// Admin API and metrics address; `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// A listener serving `/metrics` alone; `None`: none (metrics are on the admin listener).
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token of the admin API; `None` when the key is empty.
    pub admin_token: Option<String>,
    /// Separate UDP address that also serves the DHT; `None`: DHT on `udp_listen` only.
    pub dht_listen: Option<SocketAddr>,
    /// The address peers should dial.
    pub public_addr: PublicAddr,
    /// Nodes to join at start, `host:port` (checked for shape, resolved by the runtime).
    pub bootstrap: Vec<String>,
    /// Topics to join and announce, 1 to [`MAX_TOPIC_BYTES`] bytes each.
    pub topics: Vec<Vec<u8>>,
    /// LAN multicast discovery.
    pub lan: bool,
    /// Worker shards; see [`Shards::count`].
    pub shards: Shards,
    /// Socket I/O backend.
    pub io_backend: IoBackendChoice,
    /// Where the key pair comes from (unless `seed` is set).
    pub identity: IdentitySource,
    /// Decoded seed bytes: the identity is derived from them as py-setowire does.
    /// Never set together with [`IdentitySource::KeyFile`].
    pub seed: Option<Vec<u8>>,
    /// Where the node keeps its state across restarts; `None`: nowhere.
    pub state_dir: Option<PathBuf>,
    pub state_snapshot_interval_secs: u64,
    /// Bytes of stored values (keys and values) a snapshot keeps at most.
    pub state_values_max_bytes: usize,
    /// Peer addresses a snapshot keeps at most (0: none).
    pub state_peer_cache_size: usize,
    pub max_peers: usize,
    pub flood: bool,
    pub relay: bool,
    pub store_forward: bool,
    pub ping_interval_ms: u64,
    /// Always longer than `ping_interval_ms`.
    pub peer_timeout_secs: u64,
    pub pex_interval_secs: u64,
    pub relay_announce_secs: u64,
    pub gossip_fanout: usize,
    pub mesh_degree: usize,
    /// Never above `mesh_degree`.
    pub mesh_low: usize,
    /// Never below `mesh_degree`.
    pub mesh_high: usize,
    pub store_max_entries: usize,
    pub store_max_bytes: usize,
    /// Never above `store_max_bytes`.
    pub store_max_value_bytes: usize,
    /// Memory of all FRAG and CHUNK reassembly in progress, node-wide.
    pub reassembly_max_bytes: usize,
    /// Lifetime of a value stored in the DHT without a new STORE.
    pub dht_value_ttl_secs: u64,
    pub dht_max_values_bytes: usize,
    pub dht_max_values_per_ip: usize,
    /// STOREs/s from one source IP (IPv6: prefix), for the whole node.
    pub dht_store_rate_per_ip: u32,
    pub dht_store_burst_per_ip: u32,
    /// PING, FIND_NODE and FIND_VALUE requests/s from one source, for the whole node.
    pub dht_request_rate_per_ip: u32,
    pub dht_request_burst_per_ip: u32,
    /// Datagrams/s from one source IP without a session.
    pub unauth_rate_per_ip: u32,
    pub unauth_burst_per_ip: u32,
    /// Datagrams/s from one peer with a session.
    pub session_rate: u32,
    pub session_burst: u32,
    /// New sessions/s from one source IP (IPv6: prefix), node-wide.
    pub handshake_rate_per_ip: u32,
    pub handshake_burst_per_ip: u32,
    /// Slots of each node-wide per-IP limiter table.
    pub rate_limit_ips: usize,
    /// IPv6 sources are grouped by this prefix length for per-IP limits.
    pub ipv6_prefix_len: u8,
    /// Seconds between a stop signal and the drain, not ready meanwhile.
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter; see [`NodeConfig::effective_log_filter`].
    pub log_filter: String,
}

/// The address the node tells peers to dial (`public_addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicAddr {
    /// `""`: the bound address of `udp_listen` (a wildcard gives none).
    Bound,
    /// `"auto"`: the IP the bootstrap nodes see the node from (STUN), with the bound port.
    Auto,
    /// A concrete IP with a non-zero port.
    Fixed(SocketAddr),
}

impl PublicAddr {
    /// The configured address, when it is a fixed one.
    pub fn fixed(self) -> Option<SocketAddr> {
        match self {
            PublicAddr::Fixed(addr) => Some(addr),
            PublicAddr::Bound | PublicAddr::Auto => None,
        }
    }
}

/// Number of worker shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    /// One per CPU core available to the process.
    Auto,
    /// At most [`MAX_SHARDS`].
    Count(NonZeroUsize),
}

impl Shards {
    /// The number of shards to run: `Auto` is the available parallelism (1 if unknown),
    /// capped at [`MAX_SHARDS`].
    pub fn count(self) -> NonZeroUsize {
        match self {
            Shards::Count(n) => n,
            Shards::Auto => {
                let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
                NonZeroUsize::new(cores.min(MAX_SHARDS)).unwrap_or(NonZeroUsize::MIN)
            }
        }
    }
}

/// Where the node's key pair comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A fresh key pair every run.
    Ephemeral,
    /// A key file, created when missing; see [`identity_file`].
    KeyFile(PathBuf),
}

impl NodeConfig {
    /// The embedded defaults.
    pub fn defaults() -> NodeConfig {
        match ConfigBuilder::new().build() {
            Ok(config) => config,
            Err(e) => panic!("the embedded config/node.toml is invalid: {e}"),
        }
    }

    /// The embedded defaults overlaid with `text`, a config file's contents.
    pub fn from_toml(text: &str) -> Result<NodeConfig, ConfigError> {
        ConfigBuilder::new().toml(text, Origin::Text)?.build()
    }

    /// Every key and its value, in the order of `config/node.toml`.
    pub fn to_values(&self) -> Vec<(&'static str, toml::Value)> {
        emit_config(self)
    }

    /// The configuration as a TOML config file: one `key = value` line per key, all keys,
    /// secrets included. [`NodeConfig::from_toml`] reads it back to an equal config.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (key, value) in emit_config(self) {
            out.push_str(key);
            out.push_str(" = ");
            out.push_str(&value.to_string());
            out.push('\n');
        }
        out
    }

    /// [`NodeConfig::to_toml`] with the secrets that are set ([`SECRET_KEYS`]) left out: each
    /// one's line is a comment saying it is set. What `--print-config` prints.
    pub fn to_toml_redacted(&self) -> String {
        let mut out = String::new();
        for (key, value) in emit_config(self) {
            let set = value.as_str().is_some_and(|s| !s.is_empty());
            if SECRET_KEYS.contains(&key) && set {
                out.push_str(&format!("# {key} is set; not shown\n"));
            } else {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    }

    /// The log filter to use: `RUST_LOG` when it is set and not empty, else `log_filter`.
    pub fn effective_log_filter<'a>(&'a self, rust_log: Option<&'a str>) -> &'a str {
        rust_log
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(&self.log_filter)
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self::defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let config = NodeConfig::defaults();
        assert_eq!(config.udp_listen, "0.0.0.0:49737".parse().unwrap());
        assert_eq!(config.http_listen, Some("0.0.0.0:8737".parse().unwrap()));
        assert_eq!(
            (
                config.http_peers_default_limit,
                config.http_peers_max_limit,
                config.piping_rendezvous_prefix.as_str()
            ),
            (20, 200, "/p2p-")
        );
        assert_eq!(config.admin_listen, Some("127.0.0.1:9737".parse().unwrap()));
        assert_eq!(config.admin_token, None);
        assert_eq!(config.dht_listen, None);
        assert_eq!(config.public_addr, PublicAddr::Bound);
        assert_eq!(config.metrics_listen, None);
        assert!(config.bootstrap.is_empty() && config.topics.is_empty());
        assert_eq!(config.shards, Shards::Auto);
        assert_eq!(config.io_backend, IoBackendChoice::Auto);
        assert_eq!(config.identity, IdentitySource::Ephemeral);
        assert_eq!(config.seed, None);
        assert_eq!(config.max_peers, 100_000);
        assert!(config.flood && config.relay && config.store_forward && !config.lan);
        assert_eq!(
            (
                config.ping_interval_ms,
                config.peer_timeout_secs,
                config.pex_interval_secs,
                config.relay_announce_secs
            ),
            (1000, 60, 60, 30)
        );
        assert_eq!(config.gossip_fanout, 16);
        assert_eq!(
            (
                config.store_max_entries,
                config.store_max_bytes,
                config.store_max_value_bytes
            ),
            (10_000, 64 << 20, 1 << 20)
        );
        assert_eq!(
            (
                config.unauth_rate_per_ip,
                config.unauth_burst_per_ip,
                config.session_rate,
                config.session_burst,
                config.rate_limit_ips
            ),
            (1000, 2000, 4000, 8000, 65_536)
        );
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.log_filter, "info");
    }

    #[test]
    fn to_toml_round_trips() {
        let defaults = NodeConfig::defaults();
        assert_eq!(
            NodeConfig::from_toml(&defaults.to_toml()).unwrap(),
            defaults
        );

        let mut config = defaults.clone();
        config.udp_listen = "[::]:49737".parse().unwrap();
        config.admin_token = Some("s3cr\"et 'token' \\ x".into());
        config.dht_listen = Some("[fe80::1%2]:5000".parse().unwrap());
        config.public_addr = PublicAddr::Fixed("203.0.113.7:49737".parse().unwrap());
        config.metrics_listen = Some("0.0.0.0:9738".parse().unwrap());
        config.bootstrap = vec!["seed.example.org:49737".into(), "[2001:db8::1]:1".into()];
        config.topics = vec![vec![0xab; 64], vec![1]];
        config.shards = Shards::Count(NonZeroUsize::new(7).unwrap());
        config.io_backend = IoBackendChoice::IoUring;
        config.identity = IdentitySource::KeyFile("/var/lib/setowire/key".into());
        config.max_peers = 5;
        config.flood = false;
        config.lan = true;
        config.store_max_value_bytes = 1;
        config.log_format = LogFormat::Json;
        config.log_filter = "setowire_node=debug,info".into();
        let text = config.to_toml();
        assert_eq!(NodeConfig::from_toml(&text).unwrap(), config, "{text}");
        config.public_addr = PublicAddr::Auto;
        let text = config.to_toml();
        assert!(text.contains("public_addr = \"auto\""), "{text}");
        assert_eq!(NodeConfig::from_toml(&text).unwrap(), config, "{text}");

        let mut seeded = defaults;
        seeded.seed = Some(vec![0x00, 0xff, 0x10]);
        let text = seeded.to_toml();
        assert!(text.contains("seed = \"00ff10\""), "{text}");
        assert_eq!(NodeConfig::from_toml(&text).unwrap(), seeded);
    }

    #[test]
    fn to_toml_lists_every_key_in_order() {
        let text = NodeConfig::defaults().to_toml();
        let keys: Vec<&str> = text
            .lines()
            .map(|l| l.split(" = ").next().unwrap())
            .collect();
        assert_eq!(keys, KEYS.iter().map(|k| k.name).collect::<Vec<_>>());
        assert!(text.contains("udp_listen = \"0.0.0.0:49737\"\n"), "{text}");
        assert!(text.contains("bootstrap = []\n"), "{text}");
        assert!(text.contains("max_peers = 100000\n"), "{text}");
    }

    #[test]
    fn file_values_override_defaults() {
        let config = NodeConfig::from_toml(
            "max_peers = 7\nshards = 4\ntopics = [\"aa01\", \"BB\"]\nseed = \"0102\"\n\
             public_addr = \"198.51.100.2:4000\"\nadmin_token = \"t\"\n",
        )
        .unwrap();
        assert_eq!(config.max_peers, 7);
        assert_eq!(config.shards, Shards::Count(NonZeroUsize::new(4).unwrap()));
        assert_eq!(config.topics, vec![vec![0xaa, 0x01], vec![0xbb]]);
        assert_eq!(config.seed, Some(vec![1, 2]));
        assert_eq!(
            config.public_addr,
            PublicAddr::Fixed("198.51.100.2:4000".parse().unwrap())
        );
        assert_eq!(config.admin_token.as_deref(), Some("t"));
        assert_eq!(config.flood, NodeConfig::defaults().flood);
    }

    #[test]
    fn redacted_toml_leaves_out_the_secrets_that_are_set() {
        let defaults = NodeConfig::defaults();
        assert_eq!(defaults.to_toml_redacted(), defaults.to_toml());
        let mut config = defaults.clone();
        config.admin_token = Some("hunter2".into());
        config.seed = Some(vec![0xab, 0xcd]);
        let text = config.to_toml_redacted();
        assert!(
            !text.contains("hunter2") && !text.contains("abcd"),
            "{text}"
        );
        assert!(text.contains("# admin_token is set; not shown\n"), "{text}");
        assert!(text.contains("# seed is set; not shown\n"), "{text}");
        assert_eq!(NodeConfig::from_toml(&text).unwrap(), defaults);
    }

    #[test]
    fn rust_log_wins_over_log_filter() {
        let config = NodeConfig::defaults();
        assert_eq!(config.effective_log_filter(None), "info");
        assert_eq!(config.effective_log_filter(Some("")), "info");
        assert_eq!(config.effective_log_filter(Some("debug")), "debug");
    }

    #[test]
    fn shards_count() {
        assert!(Shards::Auto.count().get() >= 1);
        assert!(Shards::Auto.count().get() <= MAX_SHARDS);
        let three = NonZeroUsize::new(3).unwrap();
        assert_eq!(Shards::Count(three).count(), three);
    }
}
