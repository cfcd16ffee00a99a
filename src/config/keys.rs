//! The key table: every config key once, with its flag, its help line, its parser and its
//! emitter. The table's order is that of `config/node.toml` and of `--print-config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use setowire_core::proto::identity::encode_hex;

use super::error::{ConfigError, Origin};
use super::parse::{
    byte_size, int_in, parse_addr, parse_bool, parse_host_port_list, parse_identity,
    parse_io_backend, parse_listen, parse_log_filter, parse_log_format, parse_opt_addr,
    parse_path_prefix, parse_peer_list, parse_public_addr, parse_seed, parse_shards,
    parse_state_dir, parse_token, parse_topics, positive, Parsed, RawValue, ValueError,
};
use super::{
    IdentitySource, IoBackendChoice, LogFormat, NodeConfig, PeerList, PublicAddr, Shards,
    ENV_PREFIX,
};

/// How a key is written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `--key VALUE`.
    Scalar,
    /// `--key[=BOOL]` and `--no-key`.
    Bool,
    /// `--flag VALUE`, repeatable; comma-separated in the environment.
    List,
}

/// One config key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The key as written in TOML.
    pub name: &'static str,
    pub kind: KeyKind,
    /// The flag without its dashes; the key with `-` for `_` unless the key is a plural list.
    pub flag: &'static str,
    /// Placeholder for the value in `--help`.
    pub value_name: &'static str,
    /// One line for `--help`; `config/node.toml` has the full story.
    pub help: &'static str,
}

impl KeySpec {
    /// The environment variable: `SETOWIRE_` and the key in upper case.
    pub fn env_var(&self) -> String {
        format!("{ENV_PREFIX}{}", self.name.to_ascii_uppercase())
    }
}

/// Declares every key once: its spec, its parser (`&RawValue -> Result<field, ValueError>`)
/// and its emitter (`&field -> toml::Value`). The struct literal in `build_config` makes the
/// compiler check that the table and [`NodeConfig`] have the same fields.
macro_rules! config_keys {
    ($(
        $key:ident: $kind:ident, $flag:literal, $value_name:literal, $help:literal,
            parse = $parse:expr, emit = $emit:expr;
    )*) => {
        /// Every key, in the order of `config/node.toml` and of `--print-config`.
        pub const KEYS: &[KeySpec] = &[$(
            KeySpec {
                name: stringify!($key),
                kind: KeyKind::$kind,
                flag: $flag,
                value_name: $value_name,
                help: $help,
            },
        )*];

        /// Parses `raw` for `key`, discarding the result.
        pub(super) fn check_key(key: &str, raw: &RawValue) -> Parsed<()> {
            match key {
                $(stringify!($key) => parse_field(|c| &c.$key, raw, $parse).map(drop),)*
                _ => Err(ValueError::UnknownKey),
            }
        }

        pub(super) fn build_config(values: &BTreeMap<&'static str, (RawValue, Origin)>)
            -> Result<NodeConfig, ConfigError>
        {
            Ok(NodeConfig {$(
                $key: {
                    let key = stringify!($key);
                    let (raw, origin) = values
                        .get(key)
                        .ok_or(ConfigError::MissingDefault { key })?;
                    parse_field(|c| &c.$key, raw, $parse)
                        .map_err(|reason| ConfigError::invalid_value(key, raw, reason, origin))?
                },
            )*})
        }

        pub(super) fn emit_config(config: &NodeConfig) -> Vec<(&'static str, toml::Value)> {
            vec![$((stringify!($key), emit_with(&config.$key, $emit)),)*]
        }
    };
}

/// Runs a key's parser; `_field` only tells the compiler which field type it produces.
fn parse_field<T>(
    _field: fn(&NodeConfig) -> &T,
    raw: &RawValue,
    parse: impl Fn(&RawValue) -> Parsed<T>,
) -> Parsed<T> {
    parse(raw)
}

fn emit_with<T>(value: &T, emit: impl Fn(&T) -> toml::Value) -> toml::Value {
    emit(value)
}

fn str_value(s: impl Into<String>) -> toml::Value {
    toml::Value::String(s.into())
}

fn int_value<T: Copy + TryInto<i64>>(n: T) -> toml::Value {
    toml::Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

fn opt_addr_value(addr: &Option<SocketAddr>) -> toml::Value {
    str_value(addr.map(|a| a.to_string()).unwrap_or_default())
}

fn list_value<T>(items: &[T], f: impl Fn(&T) -> String) -> toml::Value {
    toml::Value::Array(items.iter().map(|i| str_value(f(i))).collect())
}

config_keys! {
    udp_listen: Scalar, "udp-listen", "ADDR", "UDP address Setowire is served on (ip:port)",
        parse = parse_addr, emit = |a: &SocketAddr| str_value(a.to_string());
    http_listen: Scalar, "http-listen", "ADDR|off", "Public HTTP address: bootstrap and piping",
        parse = parse_listen,
        emit = |a: &Option<SocketAddr>| str_value(a.map_or("off".to_owned(), |a| a.to_string()));
    http_max_connections: Scalar, "http-max-connections", "N", "Open HTTP connections at most",
        parse = |r: &RawValue| int_in(r, 1, 1 << 20), emit = |n: &usize| int_value(*n);
    http_max_connections_per_ip: Scalar, "http-max-connections-per-ip", "N",
        "Open HTTP connections from one IP at most; more are closed at once",
        parse = |r: &RawValue| int_in(r, 1, 1 << 20), emit = |n: &usize| int_value(*n);
    http_header_timeout_secs: Scalar, "http-header-timeout-secs", "SECS",
        "Time a client has to send a request head (and an announce body)",
        parse = |r: &RawValue| int_in(r, 1, 3_600), emit = |n: &u64| int_value(*n);
    http_idle_timeout_secs: Scalar, "http-idle-timeout-secs", "SECS",
        "Keep-alive connections with no request are closed after this",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    http_rate_per_ip: Scalar, "http-rate-per-ip", "N", "HTTP requests/s from one IP",
        parse = positive, emit = |n: &u32| int_value(*n);
    http_burst_per_ip: Scalar, "http-burst-per-ip", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    http_discard_max_bytes: Scalar, "http-discard-max-bytes", "BYTES",
        "Oversized body bytes read and discarded so the client reads its 413",
        parse = |r: &RawValue| int_in(r, 0, 1 << 30), emit = |n: &u64| int_value(*n);
    http_announce_ttl_secs: Scalar, "http-announce-ttl-secs", "SECS",
        "How long an HTTP announcement is listed",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    http_max_announces: Scalar, "http-max-announces", "N", "Most HTTP announcements kept",
        parse = |r: &RawValue| int_in(r, 1, 1 << 24), emit = |n: &usize| int_value(*n);
    http_announces_per_ip: Scalar, "http-announces-per-ip", "N",
        "Most HTTP announcements (ids) from one source IP",
        parse = |r: &RawValue| int_in(r, 1, 1 << 16), emit = |n: &usize| int_value(*n);
    http_announce_max_bytes: Scalar, "http-announce-max-bytes", "BYTES",
        "Largest POST /announce body",
        parse = |r: &RawValue| int_in(r, 64, 1 << 20), emit = |n: &usize| int_value(*n);
    http_announce_check_source: Bool, "http-announce-check-source", "BOOL",
        "Refuse an announced public IP other than the request's source",
        parse = parse_bool, emit = |b: &bool| toml::Value::Boolean(*b);
    http_peers_list: Scalar, "http-peers-list", "node|announced",
        "What GET /peers lists after the node: nothing, or the announcements",
        parse = parse_peer_list, emit = |l: &PeerList| str_value(l.to_string());
    http_peers_default_limit: Scalar, "http-peers-default-limit", "N",
        "Entries GET /peers returns without ?limit=",
        parse = |r: &RawValue| int_in(r, 1, 10_000), emit = |n: &usize| int_value(*n);
    http_peers_max_limit: Scalar, "http-peers-max-limit", "N", "Most entries GET /peers returns",
        parse = |r: &RawValue| int_in(r, 1, 10_000), emit = |n: &usize| int_value(*n);
    piping_open: Bool, "piping-open", "BOOL",
        "Serve generic piping on every path, not only the rendezvous prefix",
        parse = parse_bool, emit = |b: &bool| toml::Value::Boolean(*b);
    piping_rendezvous_prefix: Scalar, "piping-rendezvous-prefix", "PREFIX",
        "Piping paths where waiting requests queue (\"\": none)",
        parse = parse_path_prefix, emit = |s: &String| str_value(s.clone());
    piping_rendezvous_max_body_bytes: Scalar, "piping-rendezvous-max-body-bytes", "BYTES",
        "Largest body sent to a rendezvous path",
        parse = |r: &RawValue| int_in(r, 1, 1 << 30), emit = |n: &u64| int_value(*n);
    piping_max_paths: Scalar, "piping-max-paths", "N", "Piping paths in use at most",
        parse = |r: &RawValue| int_in(r, 1, 1 << 24), emit = |n: &usize| int_value(*n);
    piping_max_waiting_per_path: Scalar, "piping-max-waiting-per-path", "N",
        "Waiting senders (and receivers) per rendezvous path",
        parse = |r: &RawValue| int_in(r, 1, 1 << 16), emit = |n: &usize| int_value(*n);
    piping_max_body_bytes: Scalar, "piping-max-body-bytes", "BYTES", "Largest body piped",
        parse = |r: &RawValue| int_in(r, 1, 1 << 50), emit = |n: &u64| int_value(*n);
    piping_bytes_per_sec_per_ip: Scalar, "piping-bytes-per-sec-per-ip", "BYTES",
        "Piped bytes per second for one IP (sender or receiver)",
        parse = |r: &RawValue| int_in(r, 1024, 1 << 40), emit = |n: &u64| int_value(*n);
    piping_bytes_per_sec_total: Scalar, "piping-bytes-per-sec-total", "BYTES",
        "Piped bytes per second for the whole node",
        parse = |r: &RawValue| int_in(r, 1024, 1 << 40), emit = |n: &u64| int_value(*n);
    piping_idle_timeout_secs: Scalar, "piping-idle-timeout-secs", "SECS",
        "Piping wait for a partner, and longest pause in a transfer",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    admin_listen: Scalar, "admin-listen", "ADDR|off", "Admin API and metrics address",
        parse = parse_listen,
        emit = |a: &Option<SocketAddr>| str_value(a.map_or("off".to_owned(), |a| a.to_string()));
    metrics_listen: Scalar, "metrics-listen", "ADDR|off",
        "Address serving /metrics alone, so it can be exposed while the admin API stays private",
        parse = parse_listen,
        emit = |a: &Option<SocketAddr>| str_value(a.map_or("off".to_owned(), |a| a.to_string()));
    admin_token: Scalar, "admin-token", "TOKEN", "Bearer token of the admin API (empty: none)",
        parse = parse_token, emit = |t: &Option<String>| str_value(t.clone().unwrap_or_default());
    dht_listen: Scalar, "dht-listen", "ADDR", "Separate UDP address for the DHT (empty: none)",
        parse = parse_opt_addr, emit = opt_addr_value;
    public_addr: Scalar, "public-addr", "ADDR|auto",
        "Address peers should dial (empty: the bound address; auto: learnt from the bootstrap nodes)",
        parse = parse_public_addr, emit = |p: &PublicAddr| match p {
            PublicAddr::Bound => str_value(""),
            PublicAddr::Auto => str_value("auto"),
            PublicAddr::Fixed(addr) => str_value(addr.to_string()),
        };
    bootstrap: List, "bootstrap", "HOST:PORT", "Node to join at start (repeatable)",
        parse = parse_host_port_list, emit = |b: &Vec<String>| list_value(b, String::clone);
    topics: List, "topic", "HEX", "Topic to join and announce, 1 to 64 bytes in hex (repeatable)",
        parse = parse_topics, emit = |t: &Vec<Vec<u8>>| list_value(t, |t| encode_hex(t));
    lan: Bool, "lan", "BOOL", "Discover peers on the LAN by multicast",
        parse = parse_bool, emit = |b: &bool| toml::Value::Boolean(*b);
    shards: Scalar, "shards", "N|auto", "Worker shards: auto (one per core) or 1 to 1024",
        parse = parse_shards, emit = |s: &Shards| match s {
            Shards::Auto => str_value("auto"),
            Shards::Count(n) => int_value(n.get()),
        };
    io_backend: Scalar, "io-backend", "auto|io_uring|mmsg", "Socket I/O backend",
        parse = parse_io_backend, emit = |b: &IoBackendChoice| str_value(b.to_string());
    identity: Scalar, "identity", "ephemeral|PATH",
        "Key pair: fresh each run, or a key file (created if missing)",
        parse = parse_identity, emit = |i: &IdentitySource| match i {
            IdentitySource::Ephemeral => str_value("ephemeral"),
            IdentitySource::KeyFile(path) => str_value(path.to_string_lossy()),
        };
    seed: Scalar, "seed", "HEX", "Derive the identity from a hex seed, as py-setowire does",
        parse = parse_seed,
        emit = |s: &Option<Vec<u8>>| str_value(s.as_deref().map(encode_hex).unwrap_or_default());
    state_dir: Scalar, "state-dir", "PATH",
        "Directory the node keeps its key and snapshots in (empty: none)",
        parse = parse_state_dir,
        emit = |p: &Option<PathBuf>| {
            str_value(p.as_ref().map_or(String::new(), |p| p.to_string_lossy().into_owned()))
        };
    state_snapshot_interval_secs: Scalar, "state-snapshot-interval-secs", "SECS",
        "Seconds between snapshots of the node's state",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    state_values_max_bytes: Scalar, "state-values-max-bytes", "BYTES",
        "Most bytes of stored values a snapshot keeps, newest first",
        parse = byte_size, emit = |n: &usize| int_value(*n);
    state_peer_cache_size: Scalar, "state-peer-cache-size", "N",
        "Most peer addresses a snapshot keeps, to dial at the next start",
        parse = |r: &RawValue| int_in(r, 0, 65_536), emit = |n: &usize| int_value(*n);
    max_peers: Scalar, "max-peers", "N", "Most peers with a session",
        parse = positive, emit = |n: &usize| int_value(*n);
    flood: Bool, "flood", "BOOL", "Re-flood application data (false: seed-only)",
        parse = parse_bool, emit = |b: &bool| toml::Value::Boolean(*b);
    relay: Bool, "relay", "BOOL", "Introduce peers on RELAY_REQ and announce as a relay",
        parse = parse_bool, emit = |b: &bool| toml::Value::Boolean(*b);
    store_forward: Bool, "store-forward", "BOOL", "Fetch, keep and serve announced values",
        parse = parse_bool, emit = |b: &bool| toml::Value::Boolean(*b);
    ping_interval_ms: Scalar, "ping-interval-ms", "MS", "PING interval, milliseconds",
        parse = |r: &RawValue| int_in(r, 1, 3_600_000), emit = |n: &u64| int_value(*n);
    peer_timeout_secs: Scalar, "peer-timeout-secs", "SECS", "Drop peers silent this long",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    pex_interval_secs: Scalar, "pex-interval-secs", "SECS", "PEX interval, seconds",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    relay_announce_secs: Scalar, "relay-announce-secs", "SECS", "RELAY_ANN interval, seconds",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    gossip_fanout: Scalar, "gossip-fanout", "N", "Peers a newcomer is introduced to (0: none)",
        parse = |r: &RawValue| int_in(r, 0, 1024), emit = |n: &usize| int_value(*n);
    mesh_degree: Scalar, "mesh-degree", "N", "Peers per shard that application data is flooded to",
        parse = |r: &RawValue| int_in(r, 1, 100_000), emit = |n: &usize| int_value(*n);
    mesh_low: Scalar, "mesh-low", "N", "The mesh is topped up below this many peers",
        parse = |r: &RawValue| int_in(r, 1, 100_000), emit = |n: &usize| int_value(*n);
    mesh_high: Scalar, "mesh-high", "N", "The mesh may grow to this many peers",
        parse = |r: &RawValue| int_in(r, 1, 100_000), emit = |n: &usize| int_value(*n);
    store_max_entries: Scalar, "store-max-entries", "N", "Most values in the store",
        parse = positive, emit = |n: &usize| int_value(*n);
    store_max_bytes: Scalar, "store-max-bytes", "BYTES", "Most bytes of values in the store",
        parse = byte_size, emit = |n: &usize| int_value(*n);
    store_max_value_bytes: Scalar, "store-max-value-bytes", "BYTES", "Largest value stored",
        parse = byte_size, emit = |n: &usize| int_value(*n);
    reassembly_max_bytes: Scalar, "reassembly-max-bytes", "BYTES",
        "Memory FRAG and CHUNK reassembly may take, all shards together",
        parse = byte_size, emit = |n: &usize| int_value(*n);
    dht_value_ttl_secs: Scalar, "dht-value-ttl-secs", "SECS",
        "Lifetime of a DHT value without a new STORE",
        parse = |r: &RawValue| int_in(r, 1, 7 * 86_400), emit = |n: &u64| int_value(*n);
    dht_max_values_bytes: Scalar, "dht-max-values-bytes", "BYTES",
        "Most bytes of values the DHT keeps for others",
        parse = byte_size, emit = |n: &usize| int_value(*n);
    dht_max_values_per_ip: Scalar, "dht-max-values-per-ip", "N",
        "Most DHT values kept for one source IP (IPv6: prefix)",
        parse = |r: &RawValue| int_in(r, 1, 1 << 24), emit = |n: &usize| int_value(*n);
    dht_store_rate_per_ip: Scalar, "dht-store-rate-per-ip", "N",
        "DHT STOREs/s from one source IP (IPv6: prefix), whole node",
        parse = positive, emit = |n: &u32| int_value(*n);
    dht_store_burst_per_ip: Scalar, "dht-store-burst-per-ip", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    dht_request_rate_per_ip: Scalar, "dht-request-rate-per-ip", "N",
        "DHT PING/FIND_NODE/FIND_VALUE/s from one source IP (IPv6: prefix), whole node",
        parse = positive, emit = |n: &u32| int_value(*n);
    dht_request_burst_per_ip: Scalar, "dht-request-burst-per-ip", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    unauth_rate_per_ip: Scalar, "unauth-rate-per-ip", "N",
        "Datagrams/s from one IP without a session",
        parse = positive, emit = |n: &u32| int_value(*n);
    unauth_burst_per_ip: Scalar, "unauth-burst-per-ip", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    session_rate: Scalar, "session-rate", "N", "Datagrams/s from one peer with a session",
        parse = positive, emit = |n: &u32| int_value(*n);
    session_burst: Scalar, "session-burst", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    handshake_rate_per_ip: Scalar, "handshake-rate-per-ip", "N",
        "New sessions/s from one IP (or IPv6 prefix), all shards together",
        parse = positive, emit = |n: &u32| int_value(*n);
    handshake_burst_per_ip: Scalar, "handshake-burst-per-ip", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    rate_limit_ips: Scalar, "rate-limit-ips", "N", "Slots of each per-IP limiter table",
        parse = |r: &RawValue| int_in(r, 1, 1 << 24), emit = |n: &usize| int_value(*n);
    ipv6_prefix_len: Scalar, "ipv6-prefix-len", "BITS",
        "IPv6 sources in one prefix of this length count as one IP for every limit",
        parse = |r: &RawValue| int_in(r, 0, 128), emit = |n: &u8| int_value(*n);
    shutdown_grace_secs: Scalar, "shutdown-grace-secs", "SECS",
        "Seconds a stop signal leaves the node serving, /readyz 503, before it drains",
        parse = |r: &RawValue| int_in(r, 0, 300), emit = |n: &u64| int_value(*n);
    log_format: Scalar, "log-format", "pretty|json", "Log line format on stderr",
        parse = parse_log_format, emit = |f: &LogFormat| str_value(f.as_str());
    log_filter: Scalar, "log-filter", "FILTER", "Log filter, RUST_LOG syntax (RUST_LOG wins)",
        parse = parse_log_filter, emit = |f: &String| str_value(f.clone());
}
/// The spec of `key`, if it is a config key.
pub fn key_spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.name == key)
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub(super) fn suggestion<S: AsRef<str>>(
    word: &str,
    candidates: impl Iterator<Item = S>,
) -> Option<S> {
    let limit = (word.len() / 4).clamp(1, 3);
    candidates
        .map(|c| (strsim::levenshtein(word, c.as_ref()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CONFIG_TOML;

    /// Every key appears in `config/node.toml` once, in table order, right after a comment
    /// that gives its default.
    #[test]
    fn embedded_defaults_document_every_key_in_order() {
        let lines: Vec<&str> = DEFAULT_CONFIG_TOML.lines().collect();
        let mut keys = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let key = line.split('=').next().unwrap().trim();
            assert!(!line.starts_with('['), "no tables: {line}");
            let comment = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.starts_with('#'))
                .copied()
                .collect::<Vec<_>>();
            assert!(
                comment.len() >= 2 && comment[0].starts_with("# Default: "),
                "key {key} needs a comment ending in its default"
            );
            keys.push(key);
        }
        let table: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        assert_eq!(keys, table);
    }

    #[test]
    fn key_flag_and_variable_names_correspond() {
        for spec in KEYS {
            let flag = spec.name.replace('_', "-");
            if spec.name == "topics" {
                assert_eq!(spec.flag, "topic");
            } else {
                assert_eq!(spec.flag, flag);
            }
            assert_eq!(
                spec.env_var(),
                format!("SETOWIRE_{}", spec.name.to_uppercase())
            );
        }
        assert_eq!(
            key_spec("max_peers").unwrap().env_var(),
            "SETOWIRE_MAX_PEERS"
        );
    }

    #[test]
    fn suggestions_are_close_matches_only() {
        let keys = || KEYS.iter().map(|k| k.name);
        assert_eq!(suggestion("max_pers", keys()), Some("max_peers"));
        assert_eq!(suggestion("udp_listn", keys()), Some("udp_listen"));
        assert_eq!(suggestion("completely_else", keys()), None);
    }
}
