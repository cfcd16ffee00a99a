//! HTTP bootstrap: peers `POST /announce` where they can be dialled, and `GET /peers` lists
//! the node itself first and then the freshest announcements.
//!
//! py-setowire 0.1.0 announces once at start (its local or STUN address) and dials every entry
//! of the list it gets back, itself included (it has no id to filter on until a handshake
//! fails). A `GET /peers` carries no id, so the node cannot leave the requester out of its own
//! list; it does leave out entries that name the node's own address.
//!
//! Announcements are one per id (a newer one replaces the older), expire after a TTL, and the
//! table is capped: when it is full the stalest entry makes room. An announced public IP
//! other than the one the request comes from is refused by default
//! (`http_announce_check_source`): otherwise anyone could make every client of the node send
//! handshakes to a third party. Private, loopback and link-local IPs are accepted as given,
//! since a client behind the same NAT may use them.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use lru::LruCache;
use serde_json::{json, Map, Value};

use super::{json_error, AppState, ConnAddrs};
use std::sync::Arc;

/// Longest `nat` value kept, in bytes.
const MAX_NAT_BYTES: usize = 32;
/// Longest `topic` value kept, in bytes.
const MAX_TOPIC_BYTES: usize = 128;

#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// How long an announcement is listed.
    pub ttl: Duration,
    /// Most announcements kept.
    pub max_entries: usize,
    /// Entries `GET /peers` returns without `?limit=`.
    pub default_limit: usize,
    /// Most entries one `GET /peers` returns.
    pub max_limit: usize,
    /// Largest `POST /announce` body, in bytes.
    pub max_body: usize,
    /// Refuse an announced public IP that differs from the request's source IP.
    pub check_source: bool,
}

/// One validated announcement.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// Lower-case hex, 40 digits.
    pub id: String,
    pub addr: SocketAddr,
    pub local: Option<SocketAddr>,
    pub nat: Option<String>,
    pub topic: Option<String>,
    pub relay: Option<bool>,
}

struct Entry {
    announcement: Announcement,
    at: Instant,
}

/// The announcements, most recent first.
pub(crate) struct Registry {
    config: BootstrapConfig,
    entries: Mutex<LruCache<String, Entry>>,
}

impl Registry {
    pub(crate) fn new(config: BootstrapConfig) -> Self {
        let cap = NonZeroUsize::new(config.max_entries).unwrap_or(NonZeroUsize::MIN);
        Registry {
            config,
            entries: Mutex::new(LruCache::new(cap)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or refreshes `announcement`; the stalest entry goes when the table is full.
    pub(crate) fn insert(&self, announcement: Announcement, now: Instant) {
        let mut entries = self.lock();
        expire(&mut entries, self.config.ttl, now);
        entries.put(
            announcement.id.clone(),
            Entry {
                announcement,
                at: now,
            },
        );
    }

    /// Up to `limit` live announcements, most recent first, that pass `keep`.
    pub(crate) fn list(
        &self,
        limit: usize,
        now: Instant,
        mut keep: impl FnMut(&Announcement) -> bool,
    ) -> Vec<Announcement> {
        let mut entries = self.lock();
        expire(&mut entries, self.config.ttl, now);
        entries
            .iter()
            .map(|(_, e)| &e.announcement)
            .filter(|a| keep(a))
            .take(limit)
            .cloned()
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Drops expired entries. Every announcement moves its entry to the front, so the oldest are
/// at the back.
fn expire(entries: &mut LruCache<String, Entry>, ttl: Duration, now: Instant) {
    while let Some((_, oldest)) = entries.peek_lru() {
        if now.saturating_duration_since(oldest.at) < ttl {
            break;
        }
        entries.pop_lru();
    }
}

/// Why an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

/// Validates a `POST /announce` body sent from `source`.
pub fn parse_announcement(
    body: &[u8],
    source: IpAddr,
    check_source: bool,
) -> Result<Announcement, Refused> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(bad("body must be a JSON object"));
    };
    let id = match fields.get("id") {
        Some(Value::String(id)) if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            id.to_ascii_lowercase()
        }
        _ => return Err(bad("\"id\" must be 40 hex digits")),
    };
    let ip = parse_ip(fields.get("ip"))
        .ok_or_else(|| bad("\"ip\" must be an IPv4 or IPv6 address to dial"))?;
    let port = parse_port(fields.get("port"))
        .ok_or_else(|| bad("\"port\" must be an integer from 1 to 65535"))?;
    let source = source.to_canonical();
    if check_source && is_public(ip) && ip != source {
        return Err(Refused {
            status: StatusCode::FORBIDDEN,
            message: format!("\"ip\" {ip} is not the address this request comes from"),
        });
    }
    let local = match (optional(&fields, "lip"), optional(&fields, "lport")) {
        (None, None) => None,
        (Some(lip), Some(lport)) => Some(SocketAddr::new(
            parse_ip(Some(lip)).ok_or_else(|| bad("\"lip\" must be an IP address"))?,
            parse_port(Some(lport)).ok_or_else(|| bad("\"lport\" must be a port"))?,
        )),
        _ => return Err(bad("\"lip\" and \"lport\" go together")),
    };
    let nat = optional_string(&fields, "nat", MAX_NAT_BYTES)?;
    let topic = optional_string(&fields, "topic", MAX_TOPIC_BYTES)?;
    let relay = match optional(&fields, "relay") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad("\"relay\" must be true or false")),
    };
    Ok(Announcement {
        id,
        addr: SocketAddr::new(ip, port),
        local,
        nat,
        topic,
        relay,
    })
}

/// A present, non-null field.
fn optional<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    fields.get(key).filter(|v| !v.is_null())
}

fn optional_string(
    fields: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<String>, Refused> {
    match optional(fields, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= max && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad(format!(
            "\"{key}\" must be a string of at most {max} bytes"
        ))),
    }
}

/// An address a client could dial: not unspecified, multicast or broadcast. IPv6 may be in
/// brackets.
fn parse_ip(value: Option<&Value>) -> Option<IpAddr> {
    let text = value?.as_str()?.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let ip = text.parse::<IpAddr>().ok()?.to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    (!ip.is_unspecified() && !ip.is_multicast() && !broadcast).then_some(ip)
}

/// 1..=65535 as a JSON number or a string of digits.
fn parse_port(value: Option<&Value>) -> Option<u16> {
    let n = match value? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// Reachable across the internet: not private, loopback, link-local, shared (CGNAT) or
/// documentation space.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_documentation()
                || shared)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            let documentation = first == 0x2001 && v6.segments()[1] == 0x0db8;
            !(v6.is_loopback() || unique_local || link_local || documentation)
        }
    }
}

/// `POST /announce`.
pub(crate) async fn announce(
    State(state): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    body: Body,
) -> Response {
    let config = &state.bootstrap.config;
    let Ok(bytes) = to_bytes(body, config.max_body).await else {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {} bytes", config.max_body),
        );
    };
    match parse_announcement(&bytes, conn.remote.ip(), config.check_source) {
        Ok(announcement) => {
            state.bootstrap.insert(announcement, Instant::now());
            json_ok(json!({"ok": true, "ttl": config.ttl.as_secs()}))
        }
        Err(refused) => json_error(refused.status, &refused.message),
    }
}

/// `GET /peers[?limit=N][&topic=T]`.
pub(crate) async fn peers(
    State(state): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    RawQuery(query): RawQuery,
) -> Response {
    let config = &state.bootstrap.config;
    let mut limit = config.default_limit;
    let mut topic = None;
    for (key, value) in form_pairs(query.as_deref().unwrap_or("")) {
        match key.as_str() {
            "limit" => match value.trim().parse::<usize>() {
                Ok(n) if n > 0 => limit = n,
                _ => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "\"limit\" must be a positive integer",
                    )
                }
            },
            "topic" => topic = Some(value),
            _ => {}
        }
    }
    let limit = limit.min(config.max_limit).max(1);
    let me = state.node.dial_addr(conn.local);
    let mut list = Vec::with_capacity(limit.min(64));
    if let Some(addr) = me {
        let mut entry =
            json!({"id": state.node.id40, "ip": addr.ip().to_string(), "port": addr.port()});
        if state.node.relay {
            entry["relay"] = Value::Bool(true);
        }
        list.push(entry);
    }
    let own = [me, state.node.public_addr, Some(state.node.udp)];
    let rest = state
        .bootstrap
        .list(limit - list.len(), Instant::now(), |a| {
            !own.contains(&Some(a.addr))
                && a.id != state.node.id40
                && topic.as_ref().map_or(true, |t| a.topic.as_ref() == Some(t))
        });
    list.extend(rest.iter().map(render));
    let mut response = json_ok(Value::Array(list));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn render(a: &Announcement) -> Value {
    let mut entry = json!({"id": a.id, "ip": a.addr.ip().to_string(), "port": a.addr.port()});
    if let Some(local) = a.local {
        entry["lip"] = Value::String(local.ip().to_string());
        entry["lport"] = Value::from(local.port());
    }
    if let Some(nat) = &a.nat {
        entry["nat"] = Value::String(nat.clone());
    }
    if let Some(topic) = &a.topic {
        entry["topic"] = Value::String(topic.clone());
    }
    if let Some(relay) = a.relay {
        entry["relay"] = Value::Bool(relay);
    }
    entry
}

fn json_ok(value: Value) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        value.to_string(),
    )
        .into_response()
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded (`+` is a space).
pub(crate) fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|b| (*b as char).to_digit(16));
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef01234567";
    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn parse(body: &str) -> Result<Announcement, Refused> {
        parse_announcement(body.as_bytes(), LOOPBACK, true)
    }

    #[test]
    fn accepts_what_py_setowire_sends_and_the_other_dialects() {
        let a = parse(&format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":4000}}"#)).unwrap();
        assert_eq!(a.addr, "127.0.0.1:4000".parse().unwrap());
        assert_eq!((a.local, a.nat, a.topic, a.relay), (None, None, None, None));
        let upper = ID.to_ascii_uppercase();
        let a = parse(&format!(
            r#"{{"id":"{upper}","ip":"[::1]","port":"5","lip":"10.0.0.2","lport":6,
                "nat":"full_cone","topic":"abc","relay":true,"extra":1}}"#
        ))
        .unwrap();
        assert_eq!(a.id, ID);
        assert_eq!(a.addr, "[::1]:5".parse().unwrap());
        assert_eq!(a.local, Some("10.0.0.2:6".parse().unwrap()));
        assert_eq!(a.nat.as_deref(), Some("full_cone"));
        assert_eq!(a.topic.as_deref(), Some("abc"));
        assert_eq!(a.relay, Some(true));
    }

    #[test]
    fn refuses_malformed_announcements() {
        for body in [
            "",
            "nope",
            "[]",
            "{}",
            &format!(r#"{{"id":"{}","ip":"127.0.0.1","port":1}}"#, &ID[..39]),
            &format!(r#"{{"id":"{}z","ip":"127.0.0.1","port":1}}"#, &ID[..39]),
            &format!(r#"{{"id":"{ID}","ip":"localhost","port":1}}"#),
            &format!(r#"{{"id":"{ID}","ip":"0.0.0.0","port":1}}"#),
            &format!(r#"{{"id":"{ID}","ip":"224.0.0.1","port":1}}"#),
            &format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":0}}"#),
            &format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":65536}}"#),
            &format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":-1}}"#),
            &format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":1.5}}"#),
            &format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":1,"lip":"10.0.0.1"}}"#),
            &format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":1,"relay":"yes"}}"#),
            &format!(
                r#"{{"id":"{ID}","ip":"127.0.0.1","port":1,"nat":"{}"}}"#,
                "x".repeat(33)
            ),
        ] {
            let refused = parse(body).expect_err(body);
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn a_public_ip_must_be_the_source() {
        let body = format!(r#"{{"id":"{ID}","ip":"8.8.8.8","port":1}}"#);
        let refused = parse_announcement(body.as_bytes(), LOOPBACK, true).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(parse_announcement(body.as_bytes(), "8.8.8.8".parse().unwrap(), true).is_ok());
        assert!(parse_announcement(body.as_bytes(), LOOPBACK, false).is_ok());
        let mapped = "::ffff:8.8.8.8".parse().unwrap();
        assert!(parse_announcement(body.as_bytes(), mapped, true).is_ok());
        for private in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            let body = format!(r#"{{"id":"{ID}","ip":"{private}","port":1}}"#);
            assert!(parse_announcement(body.as_bytes(), LOOPBACK, true).is_ok());
        }
    }

    fn announcement(n: u8) -> Announcement {
        Announcement {
            id: format!("{n:02x}").repeat(20),
            addr: SocketAddr::new(LOOPBACK, 1000 + u16::from(n)),
            local: None,
            nat: None,
            topic: None,
            relay: None,
        }
    }

    fn registry(max_entries: usize) -> Registry {
        Registry::new(BootstrapConfig {
            ttl: Duration::from_secs(10),
            max_entries,
            default_limit: 20,
            max_limit: 100,
            max_body: 1024,
            check_source: true,
        })
    }

    #[test]
    fn newest_first_one_per_id_capped_and_expiring() {
        let registry = registry(3);
        let t0 = Instant::now();
        for n in 1..=4 {
            registry.insert(announcement(n), t0 + Duration::from_secs(u64::from(n)));
        }
        let ids =
            |list: Vec<Announcement>| list.into_iter().map(|a| a.addr.port()).collect::<Vec<_>>();
        let now = t0 + Duration::from_secs(5);
        assert_eq!(ids(registry.list(10, now, |_| true)), [1004, 1003, 1002]);
        // A second announcement of the same id replaces the first and moves to the front.
        let mut again = announcement(2);
        again.addr.set_port(2002);
        registry.insert(again, now);
        assert_eq!(registry.len(), 3);
        assert_eq!(ids(registry.list(2, now, |_| true)), [2002, 1004]);
        // Entries announced at t0+3 and t0+4 expire at t0+13 and t0+14.
        let later = t0 + Duration::from_secs(14);
        assert_eq!(ids(registry.list(10, later, |_| true)), [2002]);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn form_pairs_decode() {
        let pairs: Vec<_> = form_pairs("limit=5&topic=a%20b+c&&x").collect();
        assert_eq!(
            pairs,
            [
                ("limit".to_owned(), "5".to_owned()),
                ("topic".to_owned(), "a b c".to_owned()),
                ("x".to_owned(), String::new())
            ]
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
