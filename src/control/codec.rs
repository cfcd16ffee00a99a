//! The control interface's JSON: commands in, events out, and the fields commands carry.

use std::net::SocketAddr;

use serde::Deserialize;
use serde_json::{json, Value};

use super::ControlError;
use setowire_core::proto::identity::{decode_hex, encode_hex, Id8};
use setowire_core::swarm::event::Event;
use setowire_core::swarm::node_view::ShardId;
use setowire_core::swarm::peer::PeerInfo;

#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Dial {
        addr: SocketAddr,
    },
    Broadcast {
        hex: String,
    },
    Send {
        peer: String,
        hex: String,
    },
    Store {
        key: String,
        hex: String,
    },
    Fetch {
        key: String,
        timeout_ms: Option<u64>,
    },
    Peers,
    Disconnect {
        peer: String,
    },
    Quit,
}

/// Parses one input line.
pub fn parse_command(line: &str) -> Result<Command, ControlError> {
    serde_json::from_str(line).map_err(ControlError::BadCommand)
}

/// The first event: the node's id and the ports it listens on.
pub fn render_ready(
    id40: &str,
    udp: SocketAddr,
    http: Option<SocketAddr>,
    admin: Option<SocketAddr>,
) -> Value {
    json!({
        "event": "ready",
        "id": id40,
        "port": udp.port(),
        "http_port": http.map(|a| a.port()),
        "admin_port": admin.map(|a| a.port()),
    })
}

/// The event telling that a command failed.
pub fn render_error(error: &ControlError) -> Value {
    json!({"event": "error", "message": error.to_string()})
}

/// Renders an engine event as a control-interface event.
pub fn render_event(event: &Event) -> Value {
    match event {
        Event::Connected { peer, addr } => {
            json!({"event": "connection", "peer": encode_hex(peer), "addr": addr.to_string()})
        }
        Event::Disconnected { peer, reason } => {
            json!({"event": "disconnect", "peer": encode_hex(peer), "reason": reason.name()})
        }
        Event::Data { peer, payload } => {
            json!({"event": "data", "peer": encode_hex(peer), "hex": encode_hex(payload)})
        }
        Event::Synced { key, value } => {
            json!({"event": "sync", "key": key, "hex": encode_hex(value)})
        }
        Event::Fetched { key, value } => {
            json!({"event": "fetched", "key": key, "hex": encode_hex(value)})
        }
        Event::FetchFailed { key } => {
            json!({"event": "fetch_failed", "key": key, "error": "timeout"})
        }
    }
}

/// The `peers` event listing `peers` with the shard each is connected on.
pub fn render_peers(peers: &[(ShardId, PeerInfo)]) -> Value {
    let peers: Vec<Value> = peers
        .iter()
        .map(|(shard, p)| {
            json!({
                "id": encode_hex(&p.id[..8]),
                "addr": p.addr.to_string(),
                "in_mesh": p.in_mesh,
                "rtt_ms": p.rtt_ms,
                "shard": shard,
            })
        })
        .collect();
    json!({"event": "peers", "peers": peers})
}

/// Decodes a command's hex field.
pub fn bytes(hex: &str) -> Result<Vec<u8>, ControlError> {
    decode_hex(hex).ok_or(ControlError::BadHex)
}

/// A command's peer field: at least the 16 hex characters of an id8.
pub fn peer_id(hex: &str) -> Result<Id8, ControlError> {
    hex.get(..16)
        .and_then(decode_hex)
        .and_then(|b| b.try_into().ok())
        .ok_or(ControlError::BadPeerId)
}
