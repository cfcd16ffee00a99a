//! The JSON messages of py-setowire's `SimpleDHT`: parsing what arrives and writing what
//! goes out, byte for byte in the spelling Python's `json.dumps` uses.
//!
//! One UDP datagram holds one JSON object: `type` (1 PING, 2 PONG, 3 STORE, 4 FIND_NODE,
//! 5 FOUND_NODE, 6 FIND_VALUE, 7 FOUND_VAL), `from` (the sender's 40-hex node id), `rpcId`
//! (echoed in replies; STORE has none), `key` / `target` (40 hex), `value` (any JSON value;
//! py-setowire stores strings) and `nodes` (`[{id, ip, port}]`).
//!
//! Parsing takes a quick path for the messages peers actually send (a flat object of ids,
//! numbers and plain strings): one pass over the bytes, no allocation, text borrowed from
//! the datagram. Anything it is not sure about (escapes that do not survive being written
//! again, non-ASCII text, nested values, repeated fields, a `nodes` list) goes through the
//! general path, a full `serde_json` parse; both give the same [`MessageRef`].

use std::borrow::Cow;
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

impl Message {
    pub fn parse(datagram: &[u8]) -> Result<Message, ParseError> {
        MessageRef::parse(datagram).map(MessageRef::into_owned)
    }
}

/// A [`Message`] with its text borrowed from the datagram where it can be, as the node
/// reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRef<'a> {
    pub kind: MsgType,
    pub from: Option<NodeId>,
    /// The `rpcId` as JSON text (`"1a2b3c4d"` with its quotes); `None` when absent or null.
    pub rpc_id: Option<Cow<'a, str>>,
    pub key: Option<NodeId>,
    pub target: Option<NodeId>,
    /// The `value` as compact JSON text; `None` when absent or null.
    pub value: Option<Cow<'a, str>>,
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

impl<'a> MessageRef<'a> {
    pub fn into_owned(self) -> Message {
        Message {
            kind: self.kind,
            from: self.from,
            rpc_id: self.rpc_id.map(Cow::into_owned),
            key: self.key,
            target: self.target,
            value: self.value.map(Cow::into_owned),
            nodes: self.nodes,
        }
    }

    pub fn parse(datagram: &'a [u8]) -> Result<MessageRef<'a>, ParseError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(ParseError::TooLarge);
        }
        match quick::parse(datagram) {
            Some(msg) => Ok(msg),
            None => Self::parse_general(datagram),
        }
    }

    /// The general path: any JSON, every error told apart.
    fn parse_general(datagram: &[u8]) -> Result<MessageRef<'a>, ParseError> {
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
                Some(Cow::Owned(text))
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
            Some(v) => Some(Cow::Owned(v.to_string())),
        };
        let nodes = match map.remove("nodes") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(parse_contact)
                .take(MAX_NODES_READ)
                .collect(),
            _ => Vec::new(),
        };
        Ok(MessageRef {
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

/// The quick path of [`Message::parse`]: `None` whenever the general path might see the
/// datagram differently, which it then decides.
mod quick {
    use std::borrow::Cow;

    use super::{MessageRef, MsgType, NodeId, MAX_RPC_ID};

    /// The bytes a string may hold as they are: printable ASCII but for `"` and `\\`.
    const PLAIN: [bool; 256] = {
        let mut plain = [false; 256];
        let mut b = 0x20;
        while b <= 0x7e {
            plain[b] = b != b'"' as usize && b != b'\\' as usize;
            b += 1;
        }
        plain
    };

    /// Where a scan stands in the datagram.
    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    /// A scalar value as found.
    enum Scalar<'a> {
        Null,
        /// Digits of a non-negative integer, no leading zero, at most 18 of them.
        Uint(u64),
        /// Some other number, or `true` / `false`: valid, not one the fields here take.
        Other,
        /// A string's JSON text with its quotes (printable ASCII), and whether it holds an
        /// escape.
        Str {
            text: &'a [u8],
            escaped: bool,
        },
    }

    impl<'a> Cursor<'a> {
        fn peek(&self) -> Option<u8> {
            self.bytes.get(self.at).copied()
        }

        fn skip_ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
                self.at += 1;
            }
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            (self.peek()? == byte).then(|| self.at += 1)
        }

        /// A string of printable ASCII whose escapes, if any, are among those written back
        /// the same (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`): its text with the quotes.
        fn string(&mut self) -> Option<(&'a [u8], bool)> {
            let start = self.at;
            self.eat(b'"')?;
            let mut escaped = false;
            loop {
                // The plain run up to the next quote, escape or byte not taken here.
                let run = self.bytes[self.at..]
                    .iter()
                    .position(|&b| !PLAIN[usize::from(b)])?;
                self.at += run;
                match self.bytes[self.at] {
                    b'"' => break,
                    b'\\' => match self.bytes.get(self.at + 1)? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            escaped = true;
                            self.at += 2;
                        }
                        _ => return None,
                    },
                    _ => return None,
                }
            }
            self.at += 1;
            Some((&self.bytes[start..self.at], escaped))
        }

        fn digits(&mut self) -> usize {
            let start = self.at;
            while let Some(b'0'..=b'9') = self.peek() {
                self.at += 1;
            }
            self.at - start
        }

        /// A JSON number; `Uint` when it is a plain integer of up to 18 digits.
        fn number(&mut self) -> Option<Scalar<'a>> {
            let negative = self.eat(b'-').is_some();
            let int_start = self.at;
            let int_digits = self.digits();
            if int_digits == 0 || (int_digits > 1 && self.bytes[int_start] == b'0') {
                return None;
            }
            let mut plain = !negative && int_digits <= 18;
            if self.eat(b'.').is_some() {
                plain = false;
                if self.digits() == 0 {
                    return None;
                }
            }
            if let Some(b'e' | b'E') = self.peek() {
                // An exponent can overflow, which serde_json refuses: not decided here.
                return None;
            }
            if !plain {
                // Valid JSON (no exponent, so always in range).
                return Some(Scalar::Other);
            }
            let text = &self.bytes[int_start..self.at];
            let value = text.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            Some(Scalar::Uint(value))
        }

        fn literal(&mut self, word: &[u8]) -> Option<()> {
            let end = self.at + word.len();
            (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
        }

        /// A scalar value; `None` for arrays, objects and anything not certain.
        fn scalar(&mut self) -> Option<Scalar<'a>> {
            match self.peek()? {
                b'"' => {
                    let (text, escaped) = self.string()?;
                    Some(Scalar::Str { text, escaped })
                }
                b'n' => self.literal(b"null").map(|()| Scalar::Null),
                b't' => self.literal(b"true").map(|()| Scalar::Other),
                b'f' => self.literal(b"false").map(|()| Scalar::Other),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }
    }

    /// An id field: 40 hex digits, or null (or, for `from`, empty) for none.
    fn id(value: Scalar<'_>, empty_is_none: bool) -> Option<Option<NodeId>> {
        match value {
            Scalar::Null => Some(None),
            Scalar::Str {
                text,
                escaped: false,
            } => {
                let inner = &text[1..text.len() - 1];
                if inner.is_empty() && empty_is_none {
                    return Some(None);
                }
                // A bad id is an error the general path names.
                NodeId::from_hex_bytes(inner).map(Some)
            }
            _ => None,
        }
    }

    /// A field echoed or stored as JSON text: a string written back as it came.
    fn text(value: Scalar<'_>) -> Option<Option<Cow<'_, str>>> {
        match value {
            Scalar::Null => Some(None),
            // Printable ASCII: always UTF-8.
            Scalar::Str { text, .. } => Some(Some(Cow::Borrowed(std::str::from_utf8(text).ok()?))),
            _ => None,
        }
    }

    /// Fills `slot`; `None` when it was filled already.
    fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
        slot.replace(value).is_none().then_some(())
    }

    pub(super) fn parse(datagram: &[u8]) -> Option<MessageRef<'_>> {
        let mut c = Cursor {
            bytes: datagram,
            at: 0,
        };
        let mut kind = None;
        let (mut from, mut rpc_id, mut key, mut target, mut value) = (None, None, None, None, None);
        c.skip_ws();
        c.eat(b'{')?;
        c.skip_ws();
        if c.eat(b'}').is_none() {
            loop {
                let (name, escaped) = c.string()?;
                if escaped {
                    return None;
                }
                c.skip_ws();
                c.eat(b':')?;
                c.skip_ws();
                let v = c.scalar()?;
                // A field given twice: the general path keeps the last.
                match &name[1..name.len() - 1] {
                    b"type" => {
                        let Scalar::Uint(code) = v else { return None };
                        once(&mut kind, MsgType::from_code(code)?)?;
                    }
                    b"from" => once(&mut from, id(v, true)?)?,
                    b"key" => once(&mut key, id(v, false)?)?,
                    b"target" => once(&mut target, id(v, false)?)?,
                    b"rpcId" => {
                        let t = text(v)?;
                        if t.as_ref().is_some_and(|t| t.len() > MAX_RPC_ID) {
                            return None;
                        }
                        once(&mut rpc_id, t)?;
                    }
                    b"value" => once(&mut value, text(v)?)?,
                    // Read by the general path.
                    b"nodes" => return None,
                    _ => {}
                }
                c.skip_ws();
                if c.eat(b',').is_some() {
                    c.skip_ws();
                    continue;
                }
                c.eat(b'}')?;
                break;
            }
        }
        c.skip_ws();
        if c.at != datagram.len() {
            return None;
        }
        Some(MessageRef {
            kind: kind?,
            from: from.flatten(),
            rpc_id: rpc_id.flatten(),
            key: key.flatten(),
            target: target.flatten(),
            value: value.flatten(),
            nodes: Vec::new(),
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
    String::from_utf8(rpc_id_bytes(rpc).to_vec()).expect("ASCII")
}

/// `"xxxxxxxx"`: an `rpcId` of ours as JSON text.
fn rpc_id_bytes(rpc: u32) -> [u8; 10] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = *b"\"00000000\"";
    for (i, digit) in text[1..9].iter_mut().enumerate() {
        *digit = DIGITS[((rpc >> (28 - 4 * i)) & 15) as usize];
    }
    text
}

/// The number behind one of our `rpcId`s, if `text` (JSON) is one.
pub fn parse_rpc_id(text: &str) -> Option<u32> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.len() != 8 {
        return None;
    }
    u32::from_str_radix(inner, 16).ok()
}

/// The writers the node uses: they append to a byte buffer (holding the datagrams to send)
/// and take the sender's id as its hex spelling, which the node keeps. The public `write_*`
/// functions below clear a `String` and write one message into it.
pub(crate) mod append {
    use super::{rpc_id_bytes, MsgType, NodeId};

    fn head(out: &mut Vec<u8>, kind: MsgType, from: &[u8]) {
        out.extend_from_slice(b"{\"type\": ");
        out.push(b'0' + kind as u8);
        out.extend_from_slice(b", \"from\": \"");
        out.extend_from_slice(from);
        out.push(b'"');
    }

    fn tail_rpc(out: &mut Vec<u8>, rpc_id: Option<&str>) {
        out.extend_from_slice(b", \"rpcId\": ");
        out.extend_from_slice(rpc_id.unwrap_or("null").as_bytes());
        out.push(b'}');
    }

    /// `{"type": 1, "from": ..., "rpcId": ...}`
    pub(crate) fn ping(out: &mut Vec<u8>, from: &[u8], rpc: u32) {
        head(out, MsgType::Ping, from);
        out.extend_from_slice(b", \"rpcId\": ");
        out.extend_from_slice(&rpc_id_bytes(rpc));
        out.push(b'}');
    }

    /// `{"type": 2, "from": ..., "rpcId": <echoed>}`
    pub(crate) fn pong(out: &mut Vec<u8>, from: &[u8], rpc_id: Option<&str>) {
        head(out, MsgType::Pong, from);
        tail_rpc(out, rpc_id);
    }

    /// `{"type": 4, "from": ..., "target": ..., "rpcId": ...}`
    pub(crate) fn find_node(out: &mut Vec<u8>, from: &[u8], target: &NodeId, rpc: u32) {
        head(out, MsgType::FindNode, from);
        out.extend_from_slice(b", \"target\": \"");
        out.extend_from_slice(target.hex().as_bytes());
        out.extend_from_slice(b"\", \"rpcId\": ");
        out.extend_from_slice(&rpc_id_bytes(rpc));
        out.push(b'}');
    }

    /// `{"type": 3, "from": ..., "key": ..., "value": <JSON>}`
    pub(crate) fn store(out: &mut Vec<u8>, from: &[u8], key: &NodeId, value_json: &str) {
        head(out, MsgType::Store, from);
        out.extend_from_slice(b", \"key\": \"");
        out.extend_from_slice(key.hex().as_bytes());
        out.extend_from_slice(b"\", \"value\": ");
        out.extend_from_slice(value_json.as_bytes());
        out.push(b'}');
    }

    /// `{"type": 7, "from": ..., "value": <JSON>, "rpcId": <echoed>}`
    pub(crate) fn found_val(
        out: &mut Vec<u8>,
        from: &[u8],
        value_json: &str,
        rpc_id: Option<&str>,
    ) {
        head(out, MsgType::FoundVal, from);
        out.extend_from_slice(b", \"value\": ");
        out.extend_from_slice(value_json.as_bytes());
        tail_rpc(out, rpc_id);
    }

    /// FOUND_NODE listing `nodes` (each spelled `{"id": ..., "ip": ..., "port": ...}`,
    /// closest first), as many as keep what this appends within `limit` bytes. Returns how
    /// many were written.
    pub(crate) fn found_node<'n>(
        out: &mut Vec<u8>,
        from: &[u8],
        nodes: impl IntoIterator<Item = &'n [u8]>,
        rpc_id: Option<&str>,
        limit: usize,
    ) -> usize {
        let start = out.len();
        head(out, MsgType::FoundNode, from);
        out.extend_from_slice(b", \"nodes\": [");
        // `], "rpcId": <id>}`
        let trailer = 2 + b", \"rpcId\": ".len() + rpc_id.map_or(4, str::len) + 1;
        let mut written = 0;
        for node in nodes {
            let sep = if written > 0 { 2 } else { 0 };
            if out.len() - start + sep + node.len() + trailer > limit {
                break;
            }
            if written > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(node);
            written += 1;
        }
        out.push(b']');
        tail_rpc(out, rpc_id);
        written
    }
}

/// Clears `out` and writes one message into it with `write`.
fn write_into(out: &mut String, write: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::mem::take(out).into_bytes();
    bytes.clear();
    write(&mut bytes);
    // Only text from `&str`s and ASCII is written.
    *out = String::from_utf8(bytes).expect("UTF-8");
}

/// `{"type": 1, "from": ..., "rpcId": ...}`
pub fn write_ping(out: &mut String, from: &NodeId, rpc: u32) {
    write_into(out, |out| append::ping(out, from.hex().as_bytes(), rpc));
}

/// `{"type": 2, "from": ..., "rpcId": <echoed>}`
pub fn write_pong(out: &mut String, from: &NodeId, rpc_id: Option<&str>) {
    write_into(out, |out| append::pong(out, from.hex().as_bytes(), rpc_id));
}

/// `{"type": 4, "from": ..., "target": ..., "rpcId": ...}`
pub fn write_find_node(out: &mut String, from: &NodeId, target: &NodeId, rpc: u32) {
    write_into(out, |out| {
        append::find_node(out, from.hex().as_bytes(), target, rpc)
    });
}

/// `{"type": 3, "from": ..., "key": ..., "value": <JSON>}` (no rpcId, no reply).
pub fn write_store(out: &mut String, from: &NodeId, key: &NodeId, value_json: &str) {
    write_into(out, |out| {
        append::store(out, from.hex().as_bytes(), key, value_json)
    });
}

/// `{"type": 7, "from": ..., "value": <JSON>, "rpcId": <echoed>}`
pub fn write_found_val(out: &mut String, from: &NodeId, value_json: &str, rpc_id: Option<&str>) {
    write_into(out, |out| {
        append::found_val(out, from.hex().as_bytes(), value_json, rpc_id)
    });
}

/// One entry of a FOUND_NODE list: `{"id": ..., "ip": ..., "port": ...}`.
pub fn write_node(out: &mut String, node: &Contact) {
    out.push_str("{\"id\": \"");
    out.push_str(node.id.hex().as_str());
    let _ = write!(
        out,
        "\", \"ip\": \"{}\", \"port\": {}}}",
        node.addr.ip(),
        node.addr.port()
    );
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
    let rendered: Vec<String> = nodes
        .iter()
        .map(|node| {
            let mut entry = String::with_capacity(128);
            write_node(&mut entry, node);
            entry
        })
        .collect();
    let mut written = 0;
    write_into(out, |out| {
        written = append::found_node(
            out,
            from.hex().as_bytes(),
            rendered.iter().map(String::as_bytes),
            rpc_id,
            limit,
        );
    });
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        let two = [
            nodes[0],
            Contact {
                id: id(2),
                addr: "[::1]:4002".parse().unwrap(),
            },
        ];
        write_found_node(&mut out, &id(0xab), &two, Some("\"aa\""), 2000);
        assert_eq!(
            out,
            format!(
                r#"{{"type": 5, "from": "{}", "nodes": [{{"id": "{}", "ip": "127.0.0.1", "port": 4001}}, {{"id": "{}", "ip": "::1", "port": 4002}}], "rpcId": "aa"}}"#,
                id(0xab),
                id(1),
                id(2)
            )
        );
        write_found_node(&mut out, &id(0xab), &[], None, 2000);
        assert_eq!(
            out,
            format!(
                r#"{{"type": 5, "from": "{}", "nodes": [], "rpcId": null}}"#,
                id(0xab)
            )
        );
        write_ping(&mut out, &id(0xab), 0x0a0b0c0d);
        assert_eq!(
            out,
            format!(
                r#"{{"type": 1, "from": "{}", "rpcId": "0a0b0c0d"}}"#,
                id(0xab)
            )
        );
        assert_eq!(out.len(), crate::dht::rpc::PING_LEN);
        write_find_node(&mut out, &id(0xab), &id(0xcd), 0xdeadbeef);
        assert_eq!(
            out,
            format!(
                r#"{{"type": 4, "from": "{}", "target": "{}", "rpcId": "deadbeef"}}"#,
                id(0xab),
                id(0xcd)
            )
        );
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

    /// What the quick path makes of `bytes`, checked against the general path.
    fn both_paths(bytes: &[u8]) -> Option<MessageRef<'_>> {
        let quick = quick::parse(bytes);
        if let Some(m) = &quick {
            assert_eq!(
                MessageRef::parse_general(bytes).as_ref(),
                Ok(m),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        quick
    }

    #[test]
    fn quick_path_takes_what_peers_send() {
        let (a, b) = (id(1).to_hex(), id(2).to_hex());
        let messages = [
            format!(r#"{{"type": 1, "from": "{a}", "rpcId": "0a0b0c0d"}}"#),
            format!(r#"{{"type": 2, "from": "{a}", "rpcId": null}}"#),
            format!(r#"{{"type": 4, "from": "{a}", "target": "{b}", "rpcId": "0a0b0c0d"}}"#),
            format!(
                r#"{{"type":6,"from":"{a}","key":"{}","rpcId":"ff"}}"#,
                b.to_uppercase()
            ),
            format!(
                r#"{{"type": 3, "from": "{a}", "key": "{b}", "value": "{{\"id\": \"x\", \"port\": 1,\n\t\\\\ \"nat\": \"open\"}}"}}"#
            ),
            r#"  {"from": "", "extra": -1.5, "type": 7, "value": "v", "rpcId": "1"} "#.to_owned(),
            r#"{"type": 1, "from": null, "x": true, "y": false, "z": 0}"#.to_owned(),
            "{\"type\": 2}\r\n".to_owned(),
        ];
        for text in &messages {
            assert!(both_paths(text.as_bytes()).is_some(), "{text}");
        }
        let m = both_paths(messages[4].as_bytes()).unwrap();
        assert!(matches!(m.value, Some(Cow::Borrowed(_))));
        assert_eq!(
            serde_json::from_str::<String>(m.value.as_deref().unwrap()).unwrap(),
            "{\"id\": \"x\", \"port\": 1,\n\t\\\\ \"nat\": \"open\"}"
        );
    }

    #[test]
    fn quick_path_leaves_the_unsure_to_the_general_path() {
        let a = id(1).to_hex();
        for text in [
            // Escapes written back differently, non-ASCII, nested values, repeats.
            format!(r#"{{"type": 1, "from": "{a}", "rpcId": "a\/b"}}"#),
            format!(r#"{{"type": 1, "from": "{a}", "rpcId": "\u0061"}}"#),
            format!(r#"{{"type": 3, "key": "{a}", "value": "é"}}"#),
            format!(r#"{{"type": 3, "key": "{a}", "value": {{"a": 1}}}}"#),
            format!(r#"{{"type": 3, "key": "{a}", "value": 12}}"#),
            r#"{"type": 1, "rpcId": 1}"#.to_owned(),
            r#"{"type": 1, "type": 2}"#.to_owned(),
            r#"{"type": 1, "typ\u0065": 2}"#.to_owned(),
            r#"{"type": 5, "nodes": []}"#.to_owned(),
            r#"{"type": 1, "x": 1e999}"#.to_owned(),
            r#"{"type": 1.0}"#.to_owned(),
            format!(r#"{{"type": 1, "from": "{}"}}"#, "a".repeat(41)),
            format!(r#"{{"type": 1, "rpcId": "{}"}}"#, "a".repeat(100)),
            // Not JSON at all.
            r#"{"type": 1,}"#.to_owned(),
            r#"{"type": 1} x"#.to_owned(),
            r#"{"type": 01}"#.to_owned(),
            "{\"type\": 1, \"x\": \"\u{1}\"}".to_owned(),
        ] {
            assert!(quick::parse(text.as_bytes()).is_none(), "{text}");
        }
    }

    /// Pieces of JSON objects: mostly fields a message has with values it might carry,
    /// some anything with anything, for the quick path to get wrong.
    fn field() -> impl Strategy<Value = String> {
        let hex = id(7).to_hex();
        let strings = vec![
            "\"\"".to_owned(),
            "\"0a0b0c0d\"".to_owned(),
            format!("\"{hex}\""),
            format!("\"{}\"", hex.to_uppercase()),
            format!("\"{}\"", &hex[1..]),
            r#""a\"b\\c\n\t\r\b\f""#.to_owned(),
            r#""{\"id\": \"x\", \"port\": 1}""#.to_owned(),
            r#""a\/b""#.to_owned(),
            r#""\u0041""#.to_owned(),
            r#""\ud800""#.to_owned(),
            r#""\x""#.to_owned(),
            "\"é\"".to_owned(),
            "\"\u{7f}\"".to_owned(),
            "\"\u{1}\"".to_owned(),
            format!("\"{}\"", "a".repeat(63)),
            "\"unterminated".to_owned(),
        ];
        let others = vec![
            "1",
            "4",
            "7",
            "9",
            "0",
            "-4",
            "-0",
            "4.0",
            "4e0",
            "1e999",
            "1.",
            "-",
            "18446744073709551616",
            "00",
            "null",
            "nul",
            "true",
            "false",
            "[]",
            "{}",
            "[{\"id\": \"x\"}]",
            "{\"a\": [1, 2]}",
        ];
        let any_value = prop_oneof![
            prop::sample::select(strings.clone()),
            prop::sample::select(others).prop_map(str::to_owned),
        ];
        let names = prop::sample::select(vec![
            "type",
            "from",
            "rpcId",
            "key",
            "target",
            "value",
            "nodes",
            "x",
            "typ\\u0065",
            "ty\"pe",
            "",
        ]);
        let id_value = prop::sample::select(vec![
            format!("\"{hex}\""),
            format!("\"{}\"", hex.to_uppercase()),
            "\"\"".to_owned(),
            "null".to_owned(),
        ]);
        let text_value = prop_oneof![prop::sample::select(strings), Just("null".to_owned()),];
        let likely = prop_oneof![
            (1u8..=7).prop_map(|t| format!("\"type\": {t}")),
            (
                prop::sample::select(vec!["from", "key", "target"]),
                id_value
            )
                .prop_map(|(n, v)| format!("\"{n}\": {v}")),
            (prop::sample::select(vec!["rpcId", "value"]), text_value)
                .prop_map(|(n, v)| format!("\"{n}\": {v}")),
        ];
        let spaces = prop::sample::select(vec!["", " ", "\n", "\t ", "\u{a0}"]);
        let anything = (names, spaces.clone(), any_value, spaces)
            .prop_map(|(n, s1, v, s2)| format!("\"{n}\"{s1}:{s2}{v}"));
        prop_oneof![4 => likely, 1 => anything]
    }

    proptest! {
        // Cheap cases, most of which the quick path rightly turns down: many of them.
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Whatever the quick path accepts, the general path reads the same.
        #[test]
        fn quick_path_agrees_with_the_general_path(
            kind in 0u8..=8,
            fields in prop::collection::vec(field(), 0..7),
            separator in prop::sample::select(vec![", ", ",", ", ", " , ", ",,", " "]),
            around in prop::sample::select(vec![
                ("{", "}"), ("{", "}"), (" {", "} "), ("{", "}x"), ("[", "]"), ("{", ""),
            ]),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), any::<u8>(), 0u8..3),
                0..2,
            ),
        ) {
            let mut fields = fields;
            if kind > 0 {
                fields.insert(0, format!("\"type\": {kind}"));
            }
            let (open, close) = around;
            let mut bytes = format!("{open}{}{close}", fields.join(separator)).into_bytes();
            for (at, byte, how) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match how {
                    0 => bytes[i] = byte,
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, byte),
                }
            }
            both_paths(&bytes);
        }
    }
}
