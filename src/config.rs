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

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::io::BackendChoice as IoBackendChoice;
use setowire_core::proto::identity::{decode_hex, encode_hex, Identity};
use setowire_core::proto::session::restart_safe_counter_base;
use setowire_core::ratelimit::Rate;
use setowire_core::swarm::config::EngineConfig;

/// The default configuration, `config/node.toml`, as embedded in the binary.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../config/node.toml");

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

/// Most worker shards `shards` accepts.
pub const MAX_SHARDS: usize = 1024;

/// Largest topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 64;

/// The effective node configuration. Field names are the config keys; see `config/node.toml`
/// for what each one does. Obtain one from [`ConfigBuilder`], [`NodeConfig::from_toml`] or
/// [`crate::cli::parse_cli`]; all of them validate.
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
    /// HTTP requests/s from one IP.
    pub http_rate_per_ip: u32,
    pub http_burst_per_ip: u32,
    pub http_announce_ttl_secs: u64,
    pub http_max_announces: usize,
    pub http_announce_max_bytes: usize,
    /// Refuse an announced public IP other than the request's source.
    pub http_announce_check_source: bool,
    /// Never above `http_peers_max_limit`.
    pub http_peers_default_limit: usize,
    pub http_peers_max_limit: usize,
    /// Empty, or `/` and up to 63 more visible ASCII characters.
    pub piping_rendezvous_prefix: String,
    pub piping_max_paths: usize,
    pub piping_max_waiting_per_path: usize,
    pub piping_max_body_bytes: u64,
    pub piping_idle_timeout_secs: u64,
    /// Admin API and metrics address; `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token of the admin API; `None` when the key is empty.
    pub admin_token: Option<String>,
    /// Separate UDP address that also serves the DHT; `None`: DHT on `udp_listen` only.
    pub dht_listen: Option<SocketAddr>,
    /// The address peers should dial; `None`: the bound address of `udp_listen`.
    /// Always a concrete IP with a non-zero port.
    pub public_addr: Option<SocketAddr>,
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
    /// Lifetime of a value stored in the DHT without a new STORE.
    pub dht_value_ttl_secs: u64,
    pub dht_max_values_bytes: usize,
    pub dht_max_values_per_ip: usize,
    /// Datagrams/s from one source IP without a session.
    pub unauth_rate_per_ip: u32,
    pub unauth_burst_per_ip: u32,
    /// Datagrams/s from one peer with a session.
    pub session_rate: u32,
    pub session_burst: u32,
    /// Entries of the per-IP limiter table.
    pub rate_limit_ips: usize,
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter; see [`NodeConfig::effective_log_filter`].
    pub log_filter: String,
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
    /// A key file, created when missing; see [`crate::identity_file`].
    KeyFile(PathBuf),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl LogFormat {
    /// The config value: `pretty` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }
    }
}

// ---- errors ---------------------------------------------------------------------------------

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The embedded `config/node.toml`.
    Defaults,
    /// A config file.
    File(PathBuf),
    /// TOML text given to [`NodeConfig::from_toml`] or [`ConfigBuilder::toml`].
    Text,
    /// An environment variable (its name).
    Env(String),
    /// A command-line flag (as written, with its dashes).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("the embedded defaults"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Text => f.write_str("TOML text"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the configuration (or the command line) was refused.
///
/// `Display` names the key, the value and the reason, without an `error:` prefix;
/// [`ConfigError::print`] writes it the way the binary reports it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config key \"{key}\": invalid value {value}: {reason} (from {origin})")]
    InvalidValue {
        key: String,
        /// The value as given, quoted.
        value: String,
        reason: String,
        origin: Origin,
    },
    #[error("config key \"{key}\": unknown key{hint} (in {origin})")]
    UnknownKey {
        key: String,
        /// `, did you mean "..."?` or an explanation; may be empty.
        hint: String,
        origin: Origin,
    },
    #[error("environment variable {var}: matches no config key{hint}")]
    UnknownEnvVar {
        var: String,
        /// `, did you mean ...?`; may be empty.
        hint: String,
    },
    #[error("config keys \"{key}\" and \"{other}\": {reason}")]
    Conflict {
        key: &'static str,
        other: &'static str,
        reason: String,
    },
    #[error("config key \"{key}\": missing from the embedded defaults")]
    MissingDefault { key: &'static str },
    #[error("config file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// A command-line usage error, or `--help` / `--version` (exit code 0). Its `Display` is
    /// clap's rendering, which has its own `error:` prefix.
    #[error("{0}")]
    Cli(#[from] clap::Error),
}

impl ConfigError {
    /// The process exit code: 2 for configuration and usage errors, 0 for `--help` and
    /// `--version`.
    pub fn exit_code(&self) -> u8 {
        match self {
            ConfigError::Cli(e) => u8::try_from(e.exit_code()).unwrap_or(2),
            _ => 2,
        }
    }

    /// The config key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::InvalidValue { key, .. } | ConfigError::UnknownKey { key, .. } => {
                Some(key)
            }
            ConfigError::Conflict { key, .. } | ConfigError::MissingDefault { key } => Some(key),
            _ => None,
        }
    }

    /// Writes the error as the binary reports it: help and version on stdout, everything else
    /// on stderr prefixed with `error: `.
    pub fn print(&self) {
        match self {
            ConfigError::Cli(e) => {
                let _ = e.print();
            }
            other => eprintln!("error: {other}"),
        }
    }
}

// ---- raw values -----------------------------------------------------------------------------

/// A value as given, before it is parsed for its key.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// From a TOML file: types must match the key.
    Toml(toml::Value),
    /// From the environment or a flag: parsed from text; lists are comma-separated.
    Text(String),
    /// From a repeatable flag.
    List(Vec<String>),
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Toml(v) => write!(f, "{v}"),
            RawValue::Text(s) => write!(f, "{s:?}"),
            RawValue::List(items) => write!(f, "{items:?}"),
        }
    }
}

impl RawValue {
    fn text(&self) -> Option<&str> {
        match self {
            RawValue::Toml(toml::Value::String(s)) | RawValue::Text(s) => Some(s),
            _ => None,
        }
    }

    fn integer(&self) -> Option<i64> {
        match self {
            RawValue::Toml(toml::Value::Integer(i)) => Some(*i),
            RawValue::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn boolean(&self) -> Option<bool> {
        match self {
            RawValue::Toml(toml::Value::Boolean(b)) => Some(*b),
            RawValue::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// List items: a TOML array of strings, comma-separated text, or a repeated flag.
    /// Empty items are dropped, so `""` is the empty list.
    fn list(&self) -> Option<Vec<String>> {
        let items: Vec<String> = match self {
            RawValue::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
            RawValue::Text(s) => s.split(',').map(|s| s.trim().to_owned()).collect(),
            RawValue::List(items) => items.iter().map(|s| s.trim().to_owned()).collect(),
            RawValue::Toml(_) => return None,
        };
        Some(items.into_iter().filter(|s| !s.is_empty()).collect())
    }
}

// ---- per-key parsers ------------------------------------------------------------------------

type Parsed<T> = Result<T, String>;

fn parse_addr(raw: &RawValue) -> Parsed<SocketAddr> {
    raw.text()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| "expected an address as ip:port (IPv6 in brackets: \"[::]:49737\")".into())
}

fn parse_opt_addr(raw: &RawValue) -> Parsed<Option<SocketAddr>> {
    match raw.text() {
        Some(s) if s.trim().is_empty() => Ok(None),
        _ => parse_addr(raw)
            .map(Some)
            .map_err(|_| "expected \"\" or an address as ip:port".into()),
    }
}

/// A listener that can be turned off: `""` or `"off"` is `None`.
fn parse_listen(raw: &RawValue) -> Parsed<Option<SocketAddr>> {
    match raw.text().map(str::trim) {
        Some("" | "off") => Ok(None),
        _ => parse_addr(raw)
            .map(Some)
            .map_err(|_| "expected \"off\" or an address as ip:port".into()),
    }
}

/// `""` (none) or a path prefix: `/` and up to 63 more visible ASCII characters.
fn parse_path_prefix(raw: &RawValue) -> Parsed<String> {
    match raw.text() {
        Some("") => Ok(String::new()),
        Some(s)
            if s.starts_with('/') && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(s.to_owned())
        }
        _ => Err(
            "expected \"\" or a path prefix starting with / (at most 64 visible ASCII \
                  characters)"
                .into(),
        ),
    }
}

fn parse_public_addr(raw: &RawValue) -> Parsed<Option<SocketAddr>> {
    const EXPECTED: &str =
        "expected \"\" or the ip:port peers should dial, with a concrete IP and a non-zero port";
    match parse_opt_addr(raw) {
        Ok(Some(addr)) if addr.ip().is_unspecified() || addr.port() == 0 => Err(EXPECTED.into()),
        Ok(addr) => Ok(addr),
        Err(_) => Err(EXPECTED.into()),
    }
}

fn parse_token(raw: &RawValue) -> Parsed<Option<String>> {
    match raw.text() {
        None => Err("expected a string".into()),
        Some("") => Ok(None),
        Some(s) if s.chars().any(char::is_control) => {
            Err("must not contain control characters".into())
        }
        Some(s) => Ok(Some(s.to_owned())),
    }
}

fn parse_shards(raw: &RawValue) -> Parsed<Shards> {
    let expected = || format!("expected \"auto\" or an integer from 1 to {MAX_SHARDS}");
    let n = match raw {
        RawValue::Toml(toml::Value::Integer(i)) => *i,
        _ => match raw.text().map(str::trim) {
            Some("auto") => return Ok(Shards::Auto),
            Some(s) => s.parse().map_err(|_| expected())?,
            None => return Err(expected()),
        },
    };
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_SHARDS)
        .and_then(NonZeroUsize::new)
        .map(Shards::Count)
        .ok_or_else(expected)
}

fn parse_io_backend(raw: &RawValue) -> Parsed<IoBackendChoice> {
    raw.text()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| "expected \"auto\", \"io_uring\" or \"mmsg\"".into())
}

fn parse_log_format(raw: &RawValue) -> Parsed<LogFormat> {
    match raw.text().map(str::trim) {
        Some("pretty") => Ok(LogFormat::Pretty),
        Some("json") => Ok(LogFormat::Json),
        _ => Err("expected \"pretty\" or \"json\"".into()),
    }
}

fn parse_log_filter(raw: &RawValue) -> Parsed<String> {
    let s = raw.text().map(str::trim).unwrap_or_default();
    if s.is_empty() {
        return Err(
            "expected a log filter such as \"info\" or \"setowire_node=debug,info\"".into(),
        );
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a valid log filter: {e}"))
}

fn parse_identity(raw: &RawValue) -> Parsed<IdentitySource> {
    match raw.text() {
        Some("ephemeral") => Ok(IdentitySource::Ephemeral),
        Some(path) if !path.trim().is_empty() => Ok(IdentitySource::KeyFile(path.into())),
        _ => Err("expected \"ephemeral\" or the path of a key file".into()),
    }
}

fn parse_seed(raw: &RawValue) -> Parsed<Option<Vec<u8>>> {
    match raw.text().map(str::trim) {
        Some("") => Ok(None),
        Some(s) => decode_hex(s)
            .map(Some)
            .ok_or_else(|| "expected \"\" or hex digits (an even number of them)".into()),
        None => Err("expected a string of hex digits".into()),
    }
}

fn parse_bool(raw: &RawValue) -> Parsed<bool> {
    raw.boolean().ok_or_else(|| "expected true or false".into())
}

/// An integer in `min..=max`, converted to the field's type.
fn int_in<T: TryFrom<i64>>(raw: &RawValue, min: i64, max: i64) -> Parsed<T> {
    let expected = || {
        if min == 1 && max >= i64::from(u32::MAX) {
            "expected a positive integer".to_owned()
        } else if min == 0 && max >= i64::from(u32::MAX) {
            "expected a non-negative integer".to_owned()
        } else {
            format!("expected an integer from {min} to {max}")
        }
    };
    let n = raw.integer().ok_or_else(expected)?;
    if !(min..=max).contains(&n) {
        return Err(expected());
    }
    T::try_from(n).map_err(|_| "too large for this platform".into())
}

fn positive<T: TryFrom<i64>>(raw: &RawValue) -> Parsed<T> {
    int_in(raw, 1, i64::from(u32::MAX))
}

/// Sizes in bytes: positive, up to 1 TiB.
fn byte_size(raw: &RawValue) -> Parsed<usize> {
    int_in(raw, 1, 1 << 40)
}

fn parse_host_port_list(raw: &RawValue) -> Parsed<Vec<String>> {
    let items = raw.list().ok_or("expected a list of host:port strings")?;
    for item in &items {
        if !is_host_port(item) {
            return Err(format!(
                "{item:?} is not host:port (a host name or IP and a port from 1 to 65535; \
                 IPv6 in brackets)"
            ));
        }
    }
    Ok(items)
}

/// `host:port` with a non-zero port; an IPv6 host must be in brackets.
fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    if !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return false;
    }
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn parse_topics(raw: &RawValue) -> Parsed<Vec<Vec<u8>>> {
    let items = raw.list().ok_or("expected a list of hex strings")?;
    items
        .iter()
        .map(|item| {
            decode_hex(item)
                .filter(|t| (1..=MAX_TOPIC_BYTES).contains(&t.len()))
                .ok_or_else(|| {
                    format!(
                        "topic {item:?} is not hex of 1 to {MAX_TOPIC_BYTES} bytes (an even \
                         number of hex digits, at most {})",
                        2 * MAX_TOPIC_BYTES
                    )
                })
        })
        .collect()
}

// ---- per-key emitters -----------------------------------------------------------------------

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

// ---- the key table --------------------------------------------------------------------------

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

/// Declares every key once: its spec, its parser (`&RawValue -> Result<field, reason>`) and
/// its emitter (`&field -> toml::Value`). The struct literal in `build` makes the compiler
/// check that the table and [`NodeConfig`] have the same fields.
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
        fn check_key(key: &str, raw: &RawValue) -> Parsed<()> {
            match key {
                $(stringify!($key) => parse_field(|c| &c.$key, raw, $parse).map(drop),)*
                _ => Err("unknown key".into()),
            }
        }

        fn build_config(values: &BTreeMap<&'static str, (RawValue, Origin)>)
            -> Result<NodeConfig, ConfigError>
        {
            Ok(NodeConfig {$(
                $key: {
                    let key = stringify!($key);
                    let (raw, origin) = values
                        .get(key)
                        .ok_or(ConfigError::MissingDefault { key })?;
                    parse_field(|c| &c.$key, raw, $parse)
                        .map_err(|reason| invalid(key, raw, reason, origin))?
                },
            )*})
        }

        fn emit_config(config: &NodeConfig) -> Vec<(&'static str, toml::Value)> {
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

fn invalid(key: &str, raw: &RawValue, reason: String, origin: &Origin) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value: raw.to_string(),
        reason,
        origin: origin.clone(),
    }
}

config_keys! {
    udp_listen: Scalar, "udp-listen", "ADDR", "UDP address Setowire is served on (ip:port)",
        parse = parse_addr, emit = |a: &SocketAddr| str_value(a.to_string());
    http_listen: Scalar, "http-listen", "ADDR|off", "Public HTTP address: bootstrap and piping",
        parse = parse_listen,
        emit = |a: &Option<SocketAddr>| str_value(a.map_or("off".to_owned(), |a| a.to_string()));
    http_max_connections: Scalar, "http-max-connections", "N", "Open HTTP connections at most",
        parse = |r: &RawValue| int_in(r, 1, 1 << 20), emit = |n: &usize| int_value(*n);
    http_rate_per_ip: Scalar, "http-rate-per-ip", "N", "HTTP requests/s from one IP",
        parse = positive, emit = |n: &u32| int_value(*n);
    http_burst_per_ip: Scalar, "http-burst-per-ip", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    http_announce_ttl_secs: Scalar, "http-announce-ttl-secs", "SECS",
        "How long an HTTP announcement is listed",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    http_max_announces: Scalar, "http-max-announces", "N", "Most HTTP announcements kept",
        parse = |r: &RawValue| int_in(r, 1, 1 << 24), emit = |n: &usize| int_value(*n);
    http_announce_max_bytes: Scalar, "http-announce-max-bytes", "BYTES",
        "Largest POST /announce body",
        parse = |r: &RawValue| int_in(r, 64, 1 << 20), emit = |n: &usize| int_value(*n);
    http_announce_check_source: Bool, "http-announce-check-source", "BOOL",
        "Refuse an announced public IP other than the request's source",
        parse = parse_bool, emit = |b: &bool| toml::Value::Boolean(*b);
    http_peers_default_limit: Scalar, "http-peers-default-limit", "N",
        "Entries GET /peers returns without ?limit=",
        parse = |r: &RawValue| int_in(r, 1, 10_000), emit = |n: &usize| int_value(*n);
    http_peers_max_limit: Scalar, "http-peers-max-limit", "N", "Most entries GET /peers returns",
        parse = |r: &RawValue| int_in(r, 1, 10_000), emit = |n: &usize| int_value(*n);
    piping_rendezvous_prefix: Scalar, "piping-rendezvous-prefix", "PREFIX",
        "Piping paths where waiting requests queue (\"\": none)",
        parse = parse_path_prefix, emit = |s: &String| str_value(s.clone());
    piping_max_paths: Scalar, "piping-max-paths", "N", "Piping paths in use at most",
        parse = |r: &RawValue| int_in(r, 1, 1 << 24), emit = |n: &usize| int_value(*n);
    piping_max_waiting_per_path: Scalar, "piping-max-waiting-per-path", "N",
        "Waiting senders (and receivers) per rendezvous path",
        parse = |r: &RawValue| int_in(r, 1, 1 << 16), emit = |n: &usize| int_value(*n);
    piping_max_body_bytes: Scalar, "piping-max-body-bytes", "BYTES", "Largest body piped",
        parse = |r: &RawValue| int_in(r, 1, 1 << 50), emit = |n: &u64| int_value(*n);
    piping_idle_timeout_secs: Scalar, "piping-idle-timeout-secs", "SECS",
        "Piping wait for a partner, and longest pause in a transfer",
        parse = |r: &RawValue| int_in(r, 1, 86_400), emit = |n: &u64| int_value(*n);
    admin_listen: Scalar, "admin-listen", "ADDR|off", "Admin API and metrics address",
        parse = parse_listen,
        emit = |a: &Option<SocketAddr>| str_value(a.map_or("off".to_owned(), |a| a.to_string()));
    admin_token: Scalar, "admin-token", "TOKEN", "Bearer token of the admin API (empty: none)",
        parse = parse_token, emit = |t: &Option<String>| str_value(t.clone().unwrap_or_default());
    dht_listen: Scalar, "dht-listen", "ADDR", "Separate UDP address for the DHT (empty: none)",
        parse = parse_opt_addr, emit = opt_addr_value;
    public_addr: Scalar, "public-addr", "ADDR",
        "Address peers should dial (empty: the bound address)",
        parse = parse_public_addr, emit = opt_addr_value;
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
    dht_value_ttl_secs: Scalar, "dht-value-ttl-secs", "SECS",
        "Lifetime of a DHT value without a new STORE",
        parse = |r: &RawValue| int_in(r, 1, 7 * 86_400), emit = |n: &u64| int_value(*n);
    dht_max_values_bytes: Scalar, "dht-max-values-bytes", "BYTES",
        "Most bytes of values the DHT keeps for others",
        parse = byte_size, emit = |n: &usize| int_value(*n);
    dht_max_values_per_ip: Scalar, "dht-max-values-per-ip", "N",
        "Most DHT values kept for one source IP",
        parse = |r: &RawValue| int_in(r, 1, 1 << 24), emit = |n: &usize| int_value(*n);
    unauth_rate_per_ip: Scalar, "unauth-rate-per-ip", "N",
        "Datagrams/s from one IP without a session",
        parse = positive, emit = |n: &u32| int_value(*n);
    unauth_burst_per_ip: Scalar, "unauth-burst-per-ip", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    session_rate: Scalar, "session-rate", "N", "Datagrams/s from one peer with a session",
        parse = positive, emit = |n: &u32| int_value(*n);
    session_burst: Scalar, "session-burst", "N", "Burst of that limit",
        parse = positive, emit = |n: &u32| int_value(*n);
    rate_limit_ips: Scalar, "rate-limit-ips", "N", "Size of the per-IP limiter table",
        parse = |r: &RawValue| int_in(r, 1, 1 << 24), emit = |n: &usize| int_value(*n);
    log_format: Scalar, "log-format", "pretty|json", "Log line format on stderr",
        parse = parse_log_format, emit = |f: &LogFormat| str_value(f.as_str());
    log_filter: Scalar, "log-filter", "FILTER", "Log filter, RUST_LOG syntax (RUST_LOG wins)",
        parse = parse_log_filter, emit = |f: &String| str_value(f.clone());
}

/// The spec of `key`, if it is a config key.
pub fn key_spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.name == key)
}

/// Checks between keys, once all layers are merged.
fn check_combination(config: &NodeConfig) -> Result<(), ConfigError> {
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

// ---- layering -------------------------------------------------------------------------------

/// Builds a [`NodeConfig`] from layers applied in order of increasing precedence:
/// [`ConfigBuilder::new`] starts from the embedded defaults, then call [`ConfigBuilder::file`],
/// [`ConfigBuilder::env`] and [`ConfigBuilder::set`] in that order. Each value is checked as it
/// is added; [`ConfigBuilder::build`] checks the keys against each other.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    values: BTreeMap<&'static str, (RawValue, Origin)>,
}

impl ConfigBuilder {
    /// The embedded defaults.
    ///
    /// # Panics
    ///
    /// If `config/node.toml` does not parse, which a unit test rules out.
    pub fn new() -> Self {
        let mut builder = ConfigBuilder {
            values: BTreeMap::new(),
        };
        if let Err(e) = builder.toml(DEFAULT_CONFIG_TOML, Origin::Defaults) {
            panic!("the embedded config/node.toml is invalid: {e}");
        }
        builder
    }

    /// Reads a TOML config file over the current values.
    pub fn file(&mut self, path: &Path) -> Result<&mut Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: format!("cannot read it: {e}"),
        })?;
        self.toml(&text, Origin::File(path.to_owned()))
    }

    /// Applies TOML text over the current values. Every top-level entry must be a known key.
    pub fn toml(&mut self, text: &str, origin: Origin) -> Result<&mut Self, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let path = match &origin {
                Origin::File(path) => path.clone(),
                Origin::Defaults => PathBuf::from("<embedded defaults>"),
                _ => PathBuf::from("<toml text>"),
            };
            ConfigError::File {
                path,
                reason: format!("not valid TOML: {}", e.to_string().trim_end()),
            }
        })?;
        for (key, value) in table {
            let Some(spec) = key_spec(&key) else {
                let hint = if value.is_table() {
                    ": tables are not supported, all keys are top-level".to_owned()
                } else {
                    suggestion(&key, KEYS.iter().map(|k| k.name))
                        .map(|s| format!(", did you mean \"{s}\"?"))
                        .unwrap_or_default()
                };
                return Err(ConfigError::UnknownKey { key, hint, origin });
            };
            self.insert(spec.name, RawValue::Toml(value), origin.clone())?;
        }
        Ok(self)
    }

    /// Applies the `SETOWIRE_*` variables of `env` (other variables are ignored). A variable
    /// with the prefix that names no key is an error, unless it is in [`ENV_ALLOWLIST`].
    pub fn env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<&mut Self, ConfigError> {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .filter(|(name, _)| !ENV_ALLOWLIST.contains(&name.as_str()))
            .collect();
        // The first error reported does not depend on the order of the environment.
        vars.sort();
        for (var, value) in vars {
            let spec = KEYS.iter().find(|spec| spec.env_var() == var);
            let Some(spec) = spec else {
                let known = KEYS.iter().map(KeySpec::env_var);
                let hint = suggestion(&var, known)
                    .map(|s| format!(", did you mean {s}?"))
                    .unwrap_or_default();
                return Err(ConfigError::UnknownEnvVar { var, hint });
            };
            self.insert(spec.name, RawValue::Text(value), Origin::Env(var))?;
        }
        Ok(self)
    }

    /// Sets one key from text (lists comma-separated), as a flag or variable would.
    pub fn set(
        &mut self,
        key: &str,
        value: &str,
        origin: Origin,
    ) -> Result<&mut Self, ConfigError> {
        self.set_raw(key, RawValue::Text(value.to_owned()), origin)
    }

    /// Sets one key from a raw value.
    pub fn set_raw(
        &mut self,
        key: &str,
        value: RawValue,
        origin: Origin,
    ) -> Result<&mut Self, ConfigError> {
        let Some(spec) = key_spec(key) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_owned(),
                hint: String::new(),
                origin,
            });
        };
        self.insert(spec.name, value, origin)
    }

    fn insert(
        &mut self,
        key: &'static str,
        value: RawValue,
        origin: Origin,
    ) -> Result<&mut Self, ConfigError> {
        check_key(key, &value).map_err(|reason| invalid(key, &value, reason, &origin))?;
        self.values.insert(key, (value, origin));
        Ok(self)
    }

    /// Where the current value of `key` comes from.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.values.get(key).map(|(_, origin)| origin)
    }

    /// The typed configuration.
    pub fn build(&self) -> Result<NodeConfig, ConfigError> {
        let config = build_config(&self.values)?;
        check_combination(&config)?;
        Ok(config)
    }
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
fn suggestion<S: AsRef<str>>(word: &str, candidates: impl Iterator<Item = S>) -> Option<S> {
    let limit = (word.len() / 4).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(word, c.as_ref()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

// ---- NodeConfig -----------------------------------------------------------------------------

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

    /// The engine tunables these keys set; the others keep [`EngineConfig::default`].
    /// `first_send_counter` stays 0: the runtime sets it (see
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
            unauth_rate: Rate {
                per_second: self.unauth_rate_per_ip as f32,
                burst: self.unauth_burst_per_ip as f32,
            },
            session_rate: Rate {
                per_second: self.session_rate as f32,
                burst: self.session_burst as f32,
            },
            rate_limit_ips: self.rate_limit_ips,
            public_addr: self.public_addr,
            ..EngineConfig::default()
        }
    }

    /// The log filter to use: `RUST_LOG` when it is set and not empty, else `log_filter`.
    pub fn effective_log_filter<'a>(&'a self, rust_log: Option<&'a str>) -> &'a str {
        rust_log
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(&self.log_filter)
    }

    /// The node's identity: derived from `seed` when set, else from `identity` (a fresh key
    /// pair, or the key file, created when missing).
    /// The first nonce counter of this run (see [`restart_safe_counter_base`]): persisted per
    /// key file, from the clock for seeded identities, irrelevant but harmless for ephemeral
    /// ones.
    pub fn counter_base(&self, unix_seconds: u64) -> anyhow::Result<u64> {
        match (&self.seed, &self.identity) {
            (None, IdentitySource::KeyFile(path)) => {
                crate::identity_file::next_counter_base(path, unix_seconds)
            }
            _ => Ok(restart_safe_counter_base(unix_seconds)),
        }
    }

    pub fn load_identity(&self) -> anyhow::Result<Identity> {
        if let Some(seed) = &self.seed {
            return Ok(Identity::from_seed(seed));
        }
        match &self.identity {
            IdentitySource::Ephemeral => Ok(Identity::generate()),
            IdentitySource::KeyFile(path) => crate::identity_file::load_or_create(path),
        }
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

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err_text(result: Result<impl fmt::Debug, ConfigError>) -> String {
        result.expect_err("expected an error").to_string()
    }

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
        assert_eq!(config.public_addr, None);
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
    fn mesh_bounds_must_enclose_the_degree() {
        let e = err_text(NodeConfig::from_toml("mesh_degree = 20"));
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
        config.public_addr = Some("203.0.113.7:49737".parse().unwrap());
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
            Some("198.51.100.2:4000".parse().unwrap())
        );
        assert_eq!(config.admin_token.as_deref(), Some("t"));
        assert_eq!(config.flood, NodeConfig::defaults().flood);
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("setowire-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("precedence.toml");
        std::fs::write(&path, "max_peers = 10\ngossip_fanout = 3\nflood = false\n").unwrap();

        let mut builder = ConfigBuilder::new();
        builder.file(&path).unwrap();
        builder
            .env(env(&[
                ("SETOWIRE_MAX_PEERS", "20"),
                ("SETOWIRE_GOSSIP_FANOUT", "4"),
                ("PATH", "/bin"),
                ("SETOWIRE_TEST_NETNS", "off"),
            ]))
            .unwrap();
        builder
            .set("max_peers", "30", Origin::Flag("--max-peers".into()))
            .unwrap();
        let config = builder.build().unwrap();
        assert_eq!(config.max_peers, 30, "flag beats env");
        assert_eq!(config.gossip_fanout, 4, "env beats file");
        assert!(!config.flood, "file beats defaults");
        assert_eq!(config.relay, NodeConfig::defaults().relay);
        assert_eq!(
            builder.origin("max_peers"),
            Some(&Origin::Flag("--max-peers".into()))
        );
        assert_eq!(
            builder.origin("gossip_fanout"),
            Some(&Origin::Env("SETOWIRE_GOSSIP_FANOUT".into()))
        );
        assert_eq!(builder.origin("flood"), Some(&Origin::File(path.clone())));
        assert_eq!(builder.origin("relay"), Some(&Origin::Defaults));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_values_name_key_value_reason_and_origin() {
        let e = ConfigBuilder::new()
            .env(env(&[("SETOWIRE_MAX_PEERS", "abc")]))
            .unwrap_err();
        assert_eq!(e.key(), Some("max_peers"));
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "config key \"max_peers\": invalid value \"abc\": expected a positive integer \
             (from environment variable SETOWIRE_MAX_PEERS)"
        );

        let e = err_text(NodeConfig::from_toml("max_peers = 0"));
        assert!(
            e.contains("\"max_peers\": invalid value 0: expected a positive integer"),
            "{e}"
        );
        let e = err_text(NodeConfig::from_toml("max_peers = \"5\""));
        assert!(e.contains("expected a positive integer"), "{e}");
        let e = err_text(NodeConfig::from_toml("ping_interval_ms = 3600001"));
        assert!(e.contains("expected an integer from 1 to 3600000"), "{e}");
        let e = err_text(NodeConfig::from_toml("flood = \"yes\""));
        assert!(
            e.contains("\"flood\"") && e.contains("expected true or false"),
            "{e}"
        );
    }

    #[test]
    fn invalid_values_are_refused_even_when_overridden() {
        // Each layer is checked as it is added, before a later layer could hide it.
        let mut builder = ConfigBuilder::new();
        let e = builder
            .toml("shards = 0", Origin::Text)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.key(), Some("shards"));
        builder
            .set("shards", "2", Origin::Flag("--shards".into()))
            .unwrap();
        assert_eq!(
            builder.origin("shards"),
            Some(&Origin::Flag("--shards".into()))
        );
        let e = builder
            .env(env(&[("SETOWIRE_SHARDS", "0")]))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.key(), Some("shards"));
        let e = NodeConfig::from_toml("shards = 0\nshards = 2").unwrap_err();
        assert!(matches!(e, ConfigError::File { .. }), "duplicate key: {e}");
    }

    #[test]
    fn per_key_validation() {
        let bad: &[(&str, &str)] = &[
            ("udp_listen", "0.0.0.0"),
            ("udp_listen", "localhost:1"),
            ("http_listen", "on"),
            ("http_max_connections", "0"),
            ("http_announce_max_bytes", "10"),
            ("piping_rendezvous_prefix", "p2p-"),
            ("piping_rendezvous_prefix", "/a b"),
            ("piping_max_body_bytes", "0"),
            ("dht_listen", "1.2.3.4"),
            ("public_addr", "0.0.0.0:49737"),
            ("public_addr", "1.2.3.4:0"),
            ("admin_token", "a\nb"),
            ("shards", "0"),
            ("shards", "1025"),
            ("shards", "many"),
            ("io_backend", "epoll"),
            ("identity", ""),
            ("seed", "abc"),
            ("seed", "zz"),
            ("bootstrap", "host"),
            ("bootstrap", "host:0"),
            ("bootstrap", "::1:80"),
            ("bootstrap", "a:1,b c:2"),
            ("topics", "abc"),
            ("topics", "zz"),
            ("max_peers", "-1"),
            ("max_peers", "4294967296"),
            ("lan", "maybe"),
            ("peer_timeout_secs", "0"),
            ("gossip_fanout", "1025"),
            ("store_max_bytes", "0"),
            ("unauth_rate_per_ip", "0"),
            ("session_burst", "0"),
            ("rate_limit_ips", "16777217"),
            ("log_format", "xml"),
            ("log_filter", ""),
            ("log_filter", "setowire_node=loud"),
        ];
        for (key, value) in bad {
            let mut builder = ConfigBuilder::new();
            let result = builder.set(key, value, Origin::Flag(format!("--{key}")));
            let e = result.map(|_| ()).expect_err(&format!("{key} = {value:?}"));
            assert_eq!(e.key(), Some(*key), "{e}");
            assert!(e.to_string().contains(&format!("{value:?}")), "{e}");
        }
        let too_long = "ab".repeat(65);
        let e = ConfigBuilder::new()
            .set("topics", &too_long, Origin::Text)
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("1 to 64 bytes"), "{e}");

        let good: &[(&str, &str)] = &[
            ("udp_listen", "[::]:49737"),
            ("udp_listen", "127.0.0.1:0"),
            ("dht_listen", ""),
            ("http_listen", "off"),
            ("http_listen", ""),
            ("http_listen", "127.0.0.1:0"),
            ("piping_rendezvous_prefix", ""),
            ("piping_rendezvous_prefix", "/rdv/"),
            ("dht_listen", "[::1]:5000"),
            ("shards", "auto"),
            ("shards", "1024"),
            ("io_backend", "mmsg"),
            ("io_backend", "io_uring"),
            ("bootstrap", "seed-1.example.org:49737, 10.0.0.1:1,[::1]:2"),
            ("bootstrap", ""),
            ("topics", "00,ff"),
            ("seed", "DEADbeef"),
            ("flood", "FALSE"),
            ("lan", "1"),
            ("gossip_fanout", "0"),
            ("log_filter", "setowire_node=debug,warn"),
        ];
        for (key, value) in good {
            ConfigBuilder::new()
                .set(key, value, Origin::Text)
                .and_then(|b| b.build())
                .unwrap_or_else(|e| panic!("{key} = {value:?}: {e}"));
        }
    }

    #[test]
    fn unknown_file_keys_and_tables_are_refused() {
        let e = NodeConfig::from_toml("max_pers = 5").unwrap_err();
        assert_eq!(e.key(), Some("max_pers"));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("did you mean \"max_peers\"?"), "{e}");
        let e = err_text(NodeConfig::from_toml(
            "[network]\nudp_listen = \"0.0.0.0:1\"",
        ));
        assert!(e.contains("\"network\"") && e.contains("top-level"), "{e}");
        let e = err_text(NodeConfig::from_toml("max_peers = "));
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn unknown_prefixed_variables_are_refused_except_the_allowlist() {
        let e = ConfigBuilder::new()
            .env(env(&[("SETOWIRE_MAX_PERS", "5")]))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("SETOWIRE_MAX_PERS"), "{text}");
        assert!(text.contains("did you mean SETOWIRE_MAX_PEERS?"), "{text}");
        assert_eq!(e.exit_code(), 2);
        // Keys must be written in upper case.
        assert!(ConfigBuilder::new()
            .env(env(&[("SETOWIRE_max_peers", "5")]))
            .is_err());
        let config = ConfigBuilder::new()
            .env(env(&[
                ("SETOWIRE_TEST_NETNS", "off"),
                ("SETOWIRE_TEST_PYTHON", "python3"),
                ("SETOWIRE_CONFIG", "/nonexistent"),
                ("SETOWIREX", "1"),
                ("HOME", "/root"),
            ]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config, NodeConfig::defaults());
    }

    #[test]
    fn env_lists_are_comma_separated() {
        let mut builder = ConfigBuilder::new();
        builder
            .env(env(&[
                ("SETOWIRE_BOOTSTRAP", "a.example:1, b.example:2"),
                ("SETOWIRE_TOPICS", "aa,bbcc"),
            ]))
            .unwrap();
        let config = builder.build().unwrap();
        assert_eq!(config.bootstrap, ["a.example:1", "b.example:2"]);
        assert_eq!(config.topics, [vec![0xaa], vec![0xbb, 0xcc]]);
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
        let e = err_text(NodeConfig::from_toml(
            "peer_timeout_secs = 1\nping_interval_ms = 1000",
        ));
        assert!(e.contains("\"peer_timeout_secs\""), "{e}");
        let e = err_text(NodeConfig::from_toml(
            "store_max_bytes = 100\nstore_max_value_bytes = 101",
        ));
        assert!(e.contains("\"store_max_value_bytes\""), "{e}");
        // A seed with an ephemeral identity is the normal seeded setup.
        let config = NodeConfig::from_toml("seed = \"01\"").unwrap();
        assert_eq!(
            config.load_identity().unwrap().id(),
            Identity::from_seed(&[1]).id()
        );
    }

    #[test]
    fn engine_config_carries_the_engine_keys() {
        let config = NodeConfig::from_toml(
            "max_peers = 9\nflood = false\nrelay = false\nstore_forward = false\n\
             ping_interval_ms = 250\npeer_timeout_secs = 5\npex_interval_secs = 7\n\
             relay_announce_secs = 11\ngossip_fanout = 2\nstore_max_entries = 3\n\
             store_max_bytes = 4000\nstore_max_value_bytes = 500\nunauth_rate_per_ip = 10\n\
             unauth_burst_per_ip = 20\nsession_rate = 30\nsession_burst = 40\n\
             rate_limit_ips = 50\npublic_addr = \"192.0.2.1:4242\"\n",
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
        assert_eq!(engine.public_addr, Some("192.0.2.1:4242".parse().unwrap()));
        assert_eq!(engine.first_send_counter, 0);

        let defaults = NodeConfig::defaults().engine_config();
        assert!(
            defaults.store_forward,
            "the node stores and forwards by default"
        );
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

    #[test]
    fn suggestions_are_close_matches_only() {
        let keys = || KEYS.iter().map(|k| k.name);
        assert_eq!(suggestion("max_pers", keys()), Some("max_peers"));
        assert_eq!(suggestion("udp_listn", keys()), Some("udp_listen"));
        assert_eq!(suggestion("completely_else", keys()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
