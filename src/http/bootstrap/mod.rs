//! HTTP bootstrap: peers `POST /announce` where they can be dialled, and `GET /peers` lists
//! the node itself first and then, when `http_peers_list = "announced"`, the freshest
//! announcements.
//!
//! py-setowire 0.1.0 announces once at start (its local or STUN address) and every three
//! minutes after, then asks for the list, and dials every entry of it, itself included: its
//! self-check compares an 8-byte id with a 20-byte one, so it opens a session with itself and
//! gets its own broadcasts back. By default the list therefore holds the node alone, and the
//! node introduces its peers to each other once they connect (tests/http_bootstrap.rs
//! measures both ways: four peers all meet in about a second either way; listed with their
//! announcements and nobody left out, all four opened a session with themselves). Listing announcements, a `GET /peers` carries no id, so the node leaves out
//! what the requesting IP announced last if that was within [`ASKER_WINDOW`] (py-setowire asks
//! right after its announcement is answered), and entries that name the node's own address.
//!
//! What is announced is checked ([`announcement`]) and kept per source IP ([`registry`]):
//! an id belongs to the address that announced it until it expires, one address holds a
//! bounded number of ids, and every client is told the address the node saw rather than
//! one the announcer chose.

mod announcement;
mod registry;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use setowire_core::proto::identity::decode_hex;

use super::body_limit::{closing, read_whole, BodyError};
use super::{json_error, AppState, ConnAddrs};
pub use announcement::{
    parse_announcement, Announcement, Refused, Seen, MAX_NAT_BYTES, MAX_TOPIC_BYTES,
};
pub use registry::Registry;
use registry::{Limits, Refusal};

/// How long after announcing a client asking for the list may be that announcer.
pub const ASKER_WINDOW: Duration = Duration::from_secs(3);

/// What `GET /peers` lists after the node itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerList {
    /// Nothing: peers meet through the node's introductions.
    Node,
    /// The freshest announcements.
    Announced,
}

impl std::str::FromStr for PeerList {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "node" => Ok(PeerList::Node),
            "announced" => Ok(PeerList::Announced),
            _ => Err(()),
        }
    }
}

impl std::fmt::Display for PeerList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerList::Node => "node",
            PeerList::Announced => "announced",
        })
    }
}

#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// What the list holds besides the node.
    pub list: PeerList,
    /// How long an announcement is listed.
    pub ttl: Duration,
    /// Most announcements kept.
    pub max_entries: usize,
    /// Most announcements (ids) one source IP holds.
    pub max_per_ip: usize,
    /// Entries `GET /peers` returns without `?limit=`.
    pub default_limit: usize,
    /// Most entries one `GET /peers` returns.
    pub max_limit: usize,
    /// Largest `POST /announce` body, in bytes.
    pub max_body: usize,
    /// Refuse an announced public IP (or LAN IP) that differs from the request's source IP.
    pub check_source: bool,
}

impl BootstrapConfig {
    pub fn registry(&self) -> Registry {
        Registry::new(Limits {
            ttl: self.ttl,
            max_entries: self.max_entries,
            max_per_ip: self.max_per_ip,
        })
    }
}

/// `POST /announce`.
pub(crate) async fn announce(
    State(state): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    request: Request,
) -> Response {
    let config = &state.bootstrap_config;
    let (parts, body) = request.into_parts();
    let bytes = match read_whole(body, &parts.headers, config.max_body as u64, state.bodies).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let status = match e {
                BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
                BodyError::Broken => StatusCode::BAD_REQUEST,
            };
            return closing(json_error(status, &e.to_string()));
        }
    };
    let source = conn.remote.ip();
    let announcement = match parse_announcement(&bytes, source, config.check_source) {
        Ok(announcement) => announcement,
        Err(refused) => return json_error(refused.status, &refused.message),
    };
    let now = Instant::now();
    let lan = lan_addr(&announcement, source);
    let id8 = announcement.id.get(..16).and_then(decode_hex);
    match state.bootstrap.insert(announcement, source, now) {
        Ok(()) => {
            if let (Some(lan), Some(id8)) = (lan, id8.and_then(|id8| id8.try_into().ok())) {
                state.node.lan_addrs.note(id8, source, lan, now);
            }
            json_ok(json!({"ok": true, "ttl": config.ttl.as_secs()}))
        }
        Err(refusal) => {
            let (status, counter) = match refusal {
                Refusal::Owned { .. } => {
                    (StatusCode::CONFLICT, &state.metrics.announces_refused_owned)
                }
                Refusal::PerIpCap { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    &state.metrics.announces_refused_per_ip,
                ),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let mut response = json_error(status, &refusal.to_string());
            let secs = refusal.retry_after().as_secs().max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

/// The address an announcer gave for clients behind its own NAT (its `lip`, or a LAN `ip`),
/// which the node's UDP introductions also give peers coming from the same IP.
fn lan_addr(announcement: &Announcement, source: IpAddr) -> Option<SocketAddr> {
    let seen = announcement.seen_by(source, source);
    seen.local
        .or_else(|| Some(seen.addr).filter(|addr| addr.ip() != source.to_canonical()))
}

/// `GET /peers[?limit=N][&topic=T]`.
pub(crate) async fn peers(
    State(state): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    RawQuery(query): RawQuery,
) -> Response {
    let config = &state.bootstrap_config;
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
    if config.list == PeerList::Announced {
        list.extend(announced(
            &state,
            conn.remote.ip(),
            me,
            limit - list.len(),
            topic,
        ));
    }
    let mut response = json_ok(Value::Array(list));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Up to `limit` announcements as `client` is to dial them, most recent first.
fn announced(
    state: &AppState,
    client: IpAddr,
    me: Option<SocketAddr>,
    limit: usize,
    topic: Option<String>,
) -> Vec<Value> {
    let now = Instant::now();
    let own = [me, state.node.public_addr, Some(state.node.udp)];
    let since = now.checked_sub(ASKER_WINDOW).unwrap_or(now);
    let asker = state.bootstrap.last_announced_by(client, since);
    state.bootstrap.list(limit, now, |a, source| {
        let seen = a.seen_by(source, client);
        let seen = at_session_port(seen, (state.node.sessions)(&a.id));
        let listed = !own.contains(&Some(seen.addr))
            && a.id != state.node.id40
            && asker.as_ref() != Some(&a.id)
            && topic.as_ref().map_or(true, |t| a.topic.as_ref() == Some(t));
        listed.then(|| render(a, seen))
    })
}

/// The port of the node's own session with the announcer, when it has one from the IP the
/// client is to dial: the port a NAT mapped, which the announcer itself may not know.
fn at_session_port(seen: Seen, session: Option<SocketAddr>) -> Seen {
    match session {
        Some(session) if session.ip().to_canonical() == seen.addr.ip() => Seen {
            addr: SocketAddr::new(seen.addr.ip(), session.port()),
            ..seen
        },
        _ => seen,
    }
}

/// One entry of `GET /peers`: `a` as this client is to dial it.
fn render(a: &Announcement, seen: Seen) -> Value {
    let mut entry = json!({"id": a.id, "ip": seen.addr.ip().to_string(), "port": seen.addr.port()});
    if let Some(local) = seen.local {
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

    #[test]
    fn the_lan_address_of_an_announcement() {
        let source: IpAddr = "198.51.100.7".parse().unwrap();
        let lan = |body: &str| {
            let announcement = parse_announcement(body.as_bytes(), source, true).unwrap();
            lan_addr(&announcement, source)
        };
        let id = "ab".repeat(20);
        // py-setowire 0.1.0 before STUN: its LAN address as `ip`.
        let py = format!(r#"{{"id":"{id}","ip":"10.0.0.2","port":4000}}"#);
        assert_eq!(lan(&py), Some("10.0.0.2:4000".parse().unwrap()));
        // Its public address: nothing for inside.
        let public = format!(r#"{{"id":"{id}","ip":"198.51.100.7","port":4000}}"#);
        assert_eq!(lan(&public), None);
        let both = format!(
            r#"{{"id":"{id}","ip":"198.51.100.7","port":4000,"lip":"192.168.1.5","lport":4001}}"#
        );
        assert_eq!(lan(&both), Some("192.168.1.5:4001".parse().unwrap()));
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
