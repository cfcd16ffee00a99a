//! One `POST /announce` body: its validation, and what each client is then told of it.
//!
//! The dialects accepted: py-setowire 0.1.0 sends `{"id","ip","port"}`, where `ip` is its
//! STUN address or, before STUN answered, its LAN address; other peers add `lip`/`lport`
//! (the LAN address), `nat`, `topic` and `relay`. Ports may be numbers or strings, IPv6 in
//! brackets.
//!
//! What a client is told never comes from the announcer alone: every client gets the address
//! the node saw, the announcing request's source IP with the announced port. The announced
//! addresses (`ip` when it is not the source, and `lip`) are for clients behind the same NAT,
//! recognised by their coming from the same source IP. So nobody can make the node's clients
//! send handshakes to an address of their choosing.

use std::net::{IpAddr, SocketAddr};

use axum::http::StatusCode;
use serde_json::{Map, Value};

/// Longest `nat` value kept, in bytes.
pub const MAX_NAT_BYTES: usize = 32;
/// Longest `topic` value kept, in bytes.
pub const MAX_TOPIC_BYTES: usize = 128;

/// One validated announcement.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// Lower-case hex, 40 digits.
    pub id: String,
    /// The address announced (`ip`, `port`).
    pub addr: SocketAddr,
    /// The LAN address announced (`lip`, `lport`).
    pub local: Option<SocketAddr>,
    pub nat: Option<String>,
    pub topic: Option<String>,
    pub relay: Option<bool>,
}

/// An announcement as one client is to dial it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub addr: SocketAddr,
    /// Only for clients behind the announcer's NAT.
    pub local: Option<SocketAddr>,
}

impl Announcement {
    /// How a client coming from `client` is to reach the peer that announced this from
    /// `source`. Another IP than `source` gets the source IP with the announced port. A
    /// client from `source` itself shares the announcer's NAT: it gets the announced
    /// address when that is a LAN address (a private `ip`, as py-setowire announces before
    /// it knows its public one) and the `lip`/`lport` given.
    pub fn seen_by(&self, source: IpAddr, client: IpAddr) -> Seen {
        let source = source.to_canonical();
        let observed = SocketAddr::new(source, self.addr.port());
        if client.to_canonical() != source {
            return Seen {
                addr: observed,
                local: None,
            };
        }
        let addr = if is_public(self.addr.ip()) {
            observed
        } else {
            self.addr
        };
        Seen {
            addr,
            local: self.local,
        }
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

/// Validates a `POST /announce` body sent from `source`. With `check_source`, an `ip` or
/// `lip` that is a public address other than `source` is refused (403): it can only be a
/// mistake or an attempt to aim the node's clients at someone else.
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
    let foreign = |ip: IpAddr| check_source && is_public(ip) && ip != source;
    if foreign(ip) {
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
    if let Some(lip) = local.map(|l| l.ip()).filter(|&lip| foreign(lip)) {
        return Err(Refused {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "\"lip\" {lip} is a public address other than the one this request comes from"
            ),
        });
    }
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
    match ip.to_canonical() {
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
    fn a_public_ip_or_lip_must_be_the_source() {
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
            let body =
                format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":1,"lip":"{private}","lport":2}}"#);
            assert!(parse_announcement(body.as_bytes(), LOOPBACK, true).is_ok());
        }
        let body =
            format!(r#"{{"id":"{ID}","ip":"127.0.0.1","port":1,"lip":"8.8.8.8","lport":2}}"#);
        let refused = parse_announcement(body.as_bytes(), LOOPBACK, true).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
        assert!(refused.message.contains("\"lip\""), "{refused:?}");
        let public_host = "198.51.99.7".parse().unwrap();
        let body =
            format!(r#"{{"id":"{ID}","ip":"198.51.99.7","port":1,"lip":"198.51.99.7","lport":2}}"#);
        assert!(parse_announcement(body.as_bytes(), public_host, true).is_ok());
    }

    #[test]
    fn clients_get_the_observed_address_and_the_announcers_nat_gets_the_lan_one() {
        let nat: IpAddr = "203.0.113.7".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        let lan = Announcement {
            id: ID.to_owned(),
            addr: "192.168.1.20:4000".parse().unwrap(),
            local: Some("192.168.1.20:4001".parse().unwrap()),
            nat: None,
            topic: None,
            relay: None,
        };
        assert_eq!(
            lan.seen_by(nat, stranger),
            Seen {
                addr: "203.0.113.7:4000".parse().unwrap(),
                local: None
            }
        );
        assert_eq!(
            lan.seen_by(nat, nat),
            Seen {
                addr: "192.168.1.20:4000".parse().unwrap(),
                local: Some("192.168.1.20:4001".parse().unwrap())
            }
        );
        // A public address other than the source (only with the source check off) is never
        // handed out, not even behind the same NAT.
        let elsewhere = Announcement {
            addr: "8.8.8.8:53".parse().unwrap(),
            local: None,
            ..lan
        };
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        for client in [nat, mapped, stranger] {
            assert_eq!(
                elsewhere.seen_by(mapped, client).addr,
                "203.0.113.7:53".parse().unwrap()
            );
        }
    }
}
