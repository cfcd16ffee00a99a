//! Values as given ([`RawValue`]) and the per-key parsers that validate them into the types
//! of [`NodeConfig`](super::NodeConfig)'s fields.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use setowire_core::proto::identity::decode_hex;

use super::{
    IdentitySource, IoBackendChoice, LogFormat, PeerList, PublicAddr, Shards, MAX_SHARDS,
    MAX_TOPIC_BYTES,
};

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

/// Why a value was refused for its key. `Display` is the reason as error messages give it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Not a value the key takes; the text says what it takes.
    #[error("expected {0}")]
    Expected(&'static str),
    #[error("expected an integer from {min} to {max}")]
    OutOfRange { min: i64, max: i64 },
    #[error("expected \"auto\" or an integer from 1 to {max}", max = MAX_SHARDS)]
    NotShards,
    #[error("too large for this platform")]
    TooLargeForPlatform,
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("not a valid log filter: {0}")]
    LogFilter(tracing_subscriber::filter::ParseError),
    #[error(
        "{0:?} is not host:port (a host name or IP and a port from 1 to 65535; IPv6 in brackets)"
    )]
    NotHostPort(String),
    #[error(
        "topic {0:?} is not hex of 1 to {max} bytes (an even number of hex digits, at most \
         {digits})",
        max = MAX_TOPIC_BYTES,
        digits = 2 * MAX_TOPIC_BYTES
    )]
    NotTopic(String),
    #[error("unknown key")]
    UnknownKey,
}

pub(super) type Parsed<T> = Result<T, ValueError>;

pub(super) fn parse_addr(raw: &RawValue) -> Parsed<SocketAddr> {
    raw.text()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(ValueError::Expected(
            "an address as ip:port (IPv6 in brackets: \"[::]:49737\")",
        ))
}

pub(super) fn parse_opt_addr(raw: &RawValue) -> Parsed<Option<SocketAddr>> {
    match raw.text() {
        Some(s) if s.trim().is_empty() => Ok(None),
        _ => parse_addr(raw)
            .map(Some)
            .map_err(|_| ValueError::Expected("\"\" or an address as ip:port")),
    }
}

/// A listener that can be turned off: `""` or `"off"` is `None`.
pub(super) fn parse_listen(raw: &RawValue) -> Parsed<Option<SocketAddr>> {
    match raw.text().map(str::trim) {
        Some("" | "off") => Ok(None),
        _ => parse_addr(raw)
            .map(Some)
            .map_err(|_| ValueError::Expected("\"off\" or an address as ip:port")),
    }
}

/// `""` (none) or a path prefix: `/` and up to 63 more visible ASCII characters.
pub(super) fn parse_path_prefix(raw: &RawValue) -> Parsed<String> {
    match raw.text() {
        Some("") => Ok(String::new()),
        Some(s)
            if s.starts_with('/') && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(s.to_owned())
        }
        _ => Err(ValueError::Expected(
            "\"\" or a path prefix starting with / (at most 64 visible ASCII characters)",
        )),
    }
}

pub(super) fn parse_public_addr(raw: &RawValue) -> Parsed<PublicAddr> {
    const EXPECTED: ValueError = ValueError::Expected(
        "\"\", \"auto\" or the ip:port peers should dial, with a concrete IP and a non-zero port",
    );
    if raw.text() == Some("auto") {
        return Ok(PublicAddr::Auto);
    }
    match parse_opt_addr(raw) {
        Ok(Some(addr)) if addr.ip().is_unspecified() || addr.port() == 0 => Err(EXPECTED),
        Ok(Some(addr)) => Ok(PublicAddr::Fixed(addr)),
        Ok(None) => Ok(PublicAddr::Bound),
        Err(_) => Err(EXPECTED),
    }
}

pub(super) fn parse_token(raw: &RawValue) -> Parsed<Option<String>> {
    match raw.text() {
        None => Err(ValueError::Expected("a string")),
        Some("") => Ok(None),
        Some(s) if s.chars().any(char::is_control) => Err(ValueError::ControlCharacter),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

pub(super) fn parse_shards(raw: &RawValue) -> Parsed<Shards> {
    let n = match raw {
        RawValue::Toml(toml::Value::Integer(i)) => *i,
        _ => match raw.text().map(str::trim) {
            Some("auto") => return Ok(Shards::Auto),
            Some(s) => s.parse().map_err(|_| ValueError::NotShards)?,
            None => return Err(ValueError::NotShards),
        },
    };
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_SHARDS)
        .and_then(NonZeroUsize::new)
        .map(Shards::Count)
        .ok_or(ValueError::NotShards)
}

pub(super) fn parse_io_backend(raw: &RawValue) -> Parsed<IoBackendChoice> {
    raw.text()
        .and_then(|text| text.trim().parse().ok())
        .ok_or(ValueError::Expected("\"auto\", \"io_uring\" or \"mmsg\""))
}

pub(super) fn parse_peer_list(raw: &RawValue) -> Parsed<PeerList> {
    raw.text()
        .and_then(|text| text.trim().parse().ok())
        .ok_or(ValueError::Expected("\"node\" or \"announced\""))
}

pub(super) fn parse_log_format(raw: &RawValue) -> Parsed<LogFormat> {
    match raw.text().map(str::trim) {
        Some("pretty") => Ok(LogFormat::Pretty),
        Some("json") => Ok(LogFormat::Json),
        _ => Err(ValueError::Expected("\"pretty\" or \"json\"")),
    }
}

pub(super) fn parse_log_filter(raw: &RawValue) -> Parsed<String> {
    let s = raw.text().map(str::trim).unwrap_or_default();
    if s.is_empty() {
        return Err(ValueError::Expected(
            "a log filter such as \"info\" or \"setowire_node=debug,info\"",
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(ValueError::LogFilter)
}

pub(super) fn parse_identity(raw: &RawValue) -> Parsed<IdentitySource> {
    match raw.text() {
        Some("ephemeral") => Ok(IdentitySource::Ephemeral),
        Some(path) if !path.trim().is_empty() => Ok(IdentitySource::KeyFile(path.into())),
        _ => Err(ValueError::Expected(
            "\"ephemeral\" or the path of a key file",
        )),
    }
}

/// `""` (no state directory) or a path.
pub(super) fn parse_state_dir(raw: &RawValue) -> Parsed<Option<PathBuf>> {
    match raw.text() {
        Some("") => Ok(None),
        Some(path) if !path.trim().is_empty() && !path.chars().any(char::is_control) => {
            Ok(Some(path.into()))
        }
        _ => Err(ValueError::Expected("\"\" or the path of a directory")),
    }
}

pub(super) fn parse_seed(raw: &RawValue) -> Parsed<Option<Vec<u8>>> {
    match raw.text().map(str::trim) {
        Some("") => Ok(None),
        Some(s) => decode_hex(s).map(Some).ok_or(ValueError::Expected(
            "\"\" or hex digits (an even number of them)",
        )),
        None => Err(ValueError::Expected("a string of hex digits")),
    }
}

pub(super) fn parse_bool(raw: &RawValue) -> Parsed<bool> {
    raw.boolean().ok_or(ValueError::Expected("true or false"))
}

/// An integer in `min..=max`, converted to the field's type.
pub(super) fn int_in<T: TryFrom<i64>>(raw: &RawValue, min: i64, max: i64) -> Parsed<T> {
    let expected = || {
        if min == 1 && max >= i64::from(u32::MAX) {
            ValueError::Expected("a positive integer")
        } else if min == 0 && max >= i64::from(u32::MAX) {
            ValueError::Expected("a non-negative integer")
        } else {
            ValueError::OutOfRange { min, max }
        }
    };
    let n = raw.integer().ok_or_else(expected)?;
    if !(min..=max).contains(&n) {
        return Err(expected());
    }
    T::try_from(n).map_err(|_| ValueError::TooLargeForPlatform)
}

pub(super) fn positive<T: TryFrom<i64>>(raw: &RawValue) -> Parsed<T> {
    int_in(raw, 1, i64::from(u32::MAX))
}

/// Sizes in bytes: positive, up to 1 TiB.
pub(super) fn byte_size(raw: &RawValue) -> Parsed<usize> {
    int_in(raw, 1, 1 << 40)
}

pub(super) fn parse_host_port_list(raw: &RawValue) -> Parsed<Vec<String>> {
    let items = raw
        .list()
        .ok_or(ValueError::Expected("a list of host:port strings"))?;
    for item in &items {
        if !is_host_port(item) {
            return Err(ValueError::NotHostPort(item.clone()));
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

pub(super) fn parse_topics(raw: &RawValue) -> Parsed<Vec<Vec<u8>>> {
    let items = raw
        .list()
        .ok_or(ValueError::Expected("a list of hex strings"))?;
    items
        .iter()
        .map(|item| {
            decode_hex(item)
                .filter(|t| (1..=MAX_TOPIC_BYTES).contains(&t.len()))
                .ok_or_else(|| ValueError::NotTopic(item.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigBuilder, Origin, SECRET_KEYS};

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
            let shown = if SECRET_KEYS.contains(key) {
                "<redacted>".to_owned()
            } else {
                format!("{value:?}")
            };
            assert!(e.to_string().contains(&shown), "{e}");
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
}
