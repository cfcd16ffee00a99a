//! The JSON messages of py-setowire's `SimpleDHT`: parsing what arrives and writing what
//! goes out, byte for byte in the spelling Python's `json.dumps` uses.
//!
//! One UDP datagram holds one JSON object: `type` (1 PING, 2 PONG, 3 STORE, 4 FIND_NODE,
//! 5 FOUND_NODE, 6 FIND_VALUE, 7 FOUND_VAL), `from` (the sender's 40-hex node id), `rpcId`
//! (echoed in replies; STORE has none), `key` / `target` (40 hex), `value` (any JSON value;
//! py-setowire stores strings) and `nodes` (`[{id, ip, port}]`).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use super::id::NodeId;

/// Longest datagram looked at; longer ones are dropped unparsed.
pub const MAX_DATAGRAM: usize = 8192;
/// Longest `rpcId` (as JSON text) echoed back; a longer one makes the message malformed.
pub const MAX_RPC_ID: usize = 64;
/// Most entries read from a received `nodes` list.
pub const MAX_NODES_READ: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    Ping = 1,
    Pong = 2,
    Store = 3,
    FindNode = 4,
    FoundNode = 5,
    FindValue = 6,
    FoundVal = 7,
}

impl MsgType {
    pub fn from_code(code: u64) -> Option<MsgType> {
        Some(match code {
            1 => MsgType::Ping,
            2 => MsgType::Pong,
            3 => MsgType::Store,
            4 => MsgType::FindNode,
            5 => MsgType::FoundNode,
            6 => MsgType::FindValue,
            7 => MsgType::FoundVal,
            _ => return None,
        })
    }
}

/// A node as DHT messages list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Contact {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// A parsed message. Fields a type does not use may still be filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: MsgType,
    pub from: Option<NodeId>,
    /// The `rpcId` as JSON text (`"1a2b3c4d"` with its quotes); `None` when absent or null.
    pub rpc_id: Option<String>,
    pub key: Option<NodeId>,
    pub target: Option<NodeId>,
    /// The `value` as compact JSON text; `None` when absent or null.
    pub value: Option<String>,
    /// Well-formed entries of `nodes` (at most [`MAX_NODES_READ`]); bad entries are skipped.
    pub nodes: Vec<Contact>,
}

/// Why a datagram is not a DHT message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("datagram longer than {MAX_DATAGRAM} bytes")]
    TooLarge,
    #[error("not a JSON object")]
    NotJson,
    #[error("unknown or missing type")]
    BadType,
    #[error("bad field {0}")]
    BadField(&'static str),
}

impl Message {
    pub fn parse(datagram: &[u8]) -> Result<Message, ParseError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(ParseError::TooLarge);
        }
        // serde_json bounds nesting depth itself, so hostile input cannot exhaust the stack.
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(datagram) else {
            return Err(ParseError::NotJson);
        };
        let kind = map
            .get("type")
            .and_then(Value::as_u64)
            .and_then(MsgType::from_code)
            .ok_or(ParseError::BadType)?;
        let from = match map.get("from") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => {
                Some(NodeId::from_hex(s).ok_or(ParseError::BadField("from"))?)
            }
            Some(_) => return Err(ParseError::BadField("from")),
        };
        let rpc_id = match map.get("rpcId") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let text = v.to_string();
                if text.len() > MAX_RPC_ID {
                    return Err(ParseError::BadField("rpcId"));
                }
                Some(text)
            }
        };
        let id_field =
            |map: &serde_json::Map<String, Value>, name: &'static str| match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => NodeId::from_hex(s)
                    .map(Some)
                    .ok_or(ParseError::BadField(name)),
                Some(_) => Err(ParseError::BadField(name)),
            };
        let key = id_field(&map, "key")?;
        let target = id_field(&map, "target")?;
        let value = match map.get("value") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.to_string()),
        };
        let nodes = match map.remove("nodes") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(parse_contact)
                .take(MAX_NODES_READ)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Message {
            kind,
            from,
            rpc_id,
            key,
            target,
            value,
            nodes,
        })
    }
}

fn parse_contact(v: &Value) -> Option<Contact> {
    let id = NodeId::from_hex(v.get("id")?.as_str()?)?;
    let ip: IpAddr = v.get("ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(v.get("port")?.as_u64()?).ok()?;
    if port == 0 || ip.is_unspecified() {
        return None;
    }
    Some(Contact {
        id,
        addr: SocketAddr::new(ip.to_canonical(), port),
    })
}

/// Our `rpcId`s: 4 random bytes as 8 hex digits, like `SimpleDHT`'s.
pub fn rpc_id_text(rpc: u32) -> String {
    format!("\"{rpc:08x}\"")
}

/// The number behind one of our `rpcId`s, if `text` (JSON) is one.
pub fn parse_rpc_id(text: &str) -> Option<u32> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.len() != 8 {
        return None;
    }
    u32::from_str_radix(inner, 16).ok()
}

fn head(out: &mut String, kind: MsgType, from: &NodeId) {
    out.clear();
    let _ = write!(out, "{{\"type\": {}, \"from\": \"", kind as u8);
    from.write_hex(out);
    out.push('"');
}

fn tail_rpc(out: &mut String, rpc_id: Option<&str>) {
    out.push_str(", \"rpcId\": ");
    out.push_str(rpc_id.unwrap_or("null"));
    out.push('}');
}

/// `{"type": 1, "from": ..., "rpcId": ...}`
pub fn write_ping(out: &mut String, from: &NodeId, rpc: u32) {
    head(out, MsgType::Ping, from);
    tail_rpc(out, Some(&rpc_id_text(rpc)));
}

/// `{"type": 2, "from": ..., "rpcId": <echoed>}`
pub fn write_pong(out: &mut String, from: &NodeId, rpc_id: Option<&str>) {
    head(out, MsgType::Pong, from);
    tail_rpc(out, rpc_id);
}

/// `{"type": 4, "from": ..., "target": ..., "rpcId": ...}`
pub fn write_find_node(out: &mut String, from: &NodeId, target: &NodeId, rpc: u32) {
    head(out, MsgType::FindNode, from);
    out.push_str(", \"target\": \"");
    target.write_hex(out);
    out.push('"');
    tail_rpc(out, Some(&rpc_id_text(rpc)));
}

/// `{"type": 3, "from": ..., "key": ..., "value": <JSON>}` (no rpcId, no reply).
pub fn write_store(out: &mut String, from: &NodeId, key: &NodeId, value_json: &str) {
    head(out, MsgType::Store, from);
    out.push_str(", \"key\": \"");
    key.write_hex(out);
    out.push_str("\", \"value\": ");
    out.push_str(value_json);
    out.push('}');
}

/// `{"type": 7, "from": ..., "value": <JSON>, "rpcId": <echoed>}`
pub fn write_found_val(out: &mut String, from: &NodeId, value_json: &str, rpc_id: Option<&str>) {
    head(out, MsgType::FoundVal, from);
    out.push_str(", \"value\": ");
    out.push_str(value_json);
    tail_rpc(out, rpc_id);
}

/// `{"type": 5, "from": ..., "nodes": [{"id": ..., "ip": ..., "port": ...}, ...], "rpcId": ...}`
/// with as many of `nodes` (closest first) as keep the message within `limit` bytes.
/// Returns how many were written.
pub fn write_found_node(
    out: &mut String,
    from: &NodeId,
    nodes: &[Contact],
    rpc_id: Option<&str>,
    limit: usize,
) -> usize {
    head(out, MsgType::FoundNode, from);
    out.push_str(", \"nodes\": [");
    // `], "rpcId": <id>}`
    let trailer = 2 + ", \"rpcId\": ".len() + rpc_id.map_or(4, str::len) + 1;
    let mut entry = String::with_capacity(128);
    let mut written = 0;
    for node in nodes {
        entry.clear();
        if written > 0 {
            entry.push_str(", ");
        }
        entry.push_str("{\"id\": \"");
        node.id.write_hex(&mut entry);
        let _ = write!(
            entry,
            "\", \"ip\": \"{}\", \"port\": {}}}",
            node.addr.ip(),
            node.addr.port()
        );
        if out.len() + entry.len() + trailer > limit {
            break;
        }
        out.push_str(&entry);
        written += 1;
    }
    out.push(']');
    tail_rpc(out, rpc_id);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 20])
    }

    #[test]
    fn parses_simple_dht_messages() {
        let text = format!(
            r#"{{"type": 4, "from": "{}", "target": "{}", "rpcId": "0a0b0c0d"}}"#,
            id(1),
            id(2)
        );
        let m = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(m.kind, MsgType::FindNode);
        assert_eq!(m.from, Some(id(1)));
        assert_eq!(m.target, Some(id(2)));
        assert_eq!(m.rpc_id.as_deref(), Some("\"0a0b0c0d\""));
        assert_eq!(parse_rpc_id(m.rpc_id.as_deref().unwrap()), Some(0x0a0b0c0d));

        let store = format!(
            r#"{{"type": 3, "from": "{}", "key": "{}", "value": "{{\"id\": 1}}"}}"#,
            id(1),
            id(3)
        );
        let m = Message::parse(store.as_bytes()).unwrap();
        assert_eq!(m.kind, MsgType::Store);
        assert_eq!(m.value.as_deref(), Some(r#""{\"id\": 1}""#));
        assert_eq!(m.rpc_id, None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b"{"[..],
            b"[1,2]",
            b"{\"type\": 9}",
            b"{\"type\": \"1\"}",
            b"{\"type\": 1, \"from\": \"xyz\"}",
            b"{\"type\": 1, \"from\": 5}",
            b"{\"type\": 6, \"key\": \"00\"}",
        ] {
            assert!(
                Message::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_rpc = format!(r#"{{"type": 1, "rpcId": "{}"}}"#, "a".repeat(100));
        assert_eq!(
            Message::parse(long_rpc.as_bytes()),
            Err(ParseError::BadField("rpcId"))
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(Message::parse(deep.as_bytes()).is_err());
        assert_eq!(
            Message::parse(&vec![b' '; MAX_DATAGRAM + 1]),
            Err(ParseError::TooLarge)
        );
    }

    #[test]
    fn node_lists_skip_bad_entries() {
        let text = format!(
            r#"{{"type": 5, "nodes": [{{"id": "{}", "ip": "10.0.0.1", "port": 5}},
                {{"id": "zz", "ip": "10.0.0.1", "port": 5}},
                {{"id": "{}", "ip": "nope", "port": 5}},
                {{"id": "{}", "ip": "::ffff:10.0.0.2", "port": 6}},
                {{"id": "{}", "ip": "10.0.0.3", "port": 70000}}]}}"#,
            id(1),
            id(2),
            id(3),
            id(4)
        );
        let m = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(
            m.nodes,
            vec![
                Contact {
                    id: id(1),
                    addr: "10.0.0.1:5".parse().unwrap()
                },
                Contact {
                    id: id(3),
                    addr: "10.0.0.2:6".parse().unwrap()
                }
            ]
        );
    }

    #[test]
    fn writes_python_spelling() {
        let mut out = String::new();
        write_pong(&mut out, &id(0xab), Some("\"01020304\""));
        assert_eq!(
            out,
            format!(
                r#"{{"type": 2, "from": "{}", "rpcId": "01020304"}}"#,
                id(0xab)
            )
        );
        write_pong(&mut out, &id(0xab), None);
        assert!(out.ends_with(r#""rpcId": null}"#));
        let nodes: Vec<Contact> = (1..=20)
            .map(|i| Contact {
                id: id(i),
                addr: SocketAddr::from(([127, 0, 0, i], 4000 + u16::from(i))),
            })
            .collect();
        let n = write_found_node(&mut out, &id(0xab), &nodes, Some("\"aa\""), 100_000);
        assert_eq!(n, 20);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["nodes"].as_array().unwrap().len(), 20);
        assert_eq!(v["nodes"][0]["port"], 4001);
        assert_eq!(v["rpcId"], "aa");
        for limit in [100, 250, 400, 1400] {
            let n = write_found_node(&mut out, &id(0xab), &nodes, Some("\"aa\""), limit);
            assert!(out.len() <= limit.max(100), "{} > {limit}", out.len());
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["nodes"].as_array().unwrap().len(), n);
        }
        write_found_val(&mut out, &id(1), "\"x\"", Some("\"aa\""));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["type"].as_u64(), v["value"].as_str()),
            (Some(7), Some("x"))
        );
        write_store(&mut out, &id(1), &id(2), "{\"a\":1}");
        let m = Message::parse(out.as_bytes()).unwrap();
        assert_eq!(
            (m.kind, m.key, m.value.as_deref()),
            (MsgType::Store, Some(id(2)), Some("{\"a\":1}"))
        );
    }
}
