//! A bare UDP socket speaking the JSON DHT to a node: an attacker, or a client that proves
//! its address by hand.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use setowire_core::dht::NodeId;

/// A bare UDP socket speaking DHT JSON: an attacker, or a client that proves its address
/// by hand.
pub struct Raw {
    pub socket: UdpSocket,
    to: SocketAddr,
    id: String,
    /// rpcIds of the node's PINGs received so far.
    pings: std::cell::RefCell<Vec<Value>>,
}

impl Raw {
    pub fn bind(local: &str, to: SocketAddr, id: &str) -> Raw {
        let socket = UdpSocket::bind(local).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Raw {
            socket,
            to,
            id: id.to_owned(),
            pings: Default::default(),
        }
    }

    pub fn send(&self, msg: &[u8]) {
        self.socket.send_to(msg, self.to).unwrap();
    }

    /// Everything that arrives within `wait`.
    pub fn collect(&self, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = [0u8; 9000];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                if let Ok(v) = serde_json::from_slice::<Value>(&buf[..n]) {
                    if v["type"] == 1 {
                        self.pings.borrow_mut().push(v["rpcId"].clone());
                    }
                }
                got.push(buf[..n].to_vec());
            }
        }
        got
    }

    /// STOREs `value` under `key` (hashed as SimpleDHT does).
    pub fn store(&self, key: &str, value: &str) {
        let key = NodeId::of_key(key).to_hex();
        let msg = json!({"type": 3, "from": self.id, "key": key, "value": value});
        self.send(msg.to_string().as_bytes());
    }

    /// FIND_VALUE of `key` with rpcId `rpc`: the value, or `None` when the node answers with
    /// nodes (or not at all within 150 ms).
    pub fn find_value(&self, key: &str, rpc: u32) -> Option<Value> {
        let rpc_id = format!("{rpc:08x}");
        let key = NodeId::of_key(key).to_hex();
        let msg = json!({"type": 6, "from": self.id, "key": key, "rpcId": rpc_id});
        self.send(msg.to_string().as_bytes());
        self.collect(Duration::from_millis(150))
            .iter()
            .filter_map(|d| serde_json::from_slice::<Value>(d).ok())
            .find(|m| m["rpcId"] == rpc_id.as_str())
            .filter(|m| m["type"] == 7)
            .map(|m| m["value"].clone())
    }

    /// PINGs the node and answers every PING the node sent us: the address is then
    /// verified (the node pings an address once at a time, so the one in flight may be
    /// from an earlier request).
    pub fn prove(&self) {
        let ping = json!({"type": 1, "from": self.id, "rpcId": "11111111"});
        self.send(ping.to_string().as_bytes());
        self.collect(Duration::from_millis(300));
        let pings = self.pings.borrow().clone();
        assert!(!pings.is_empty(), "the node never pinged us");
        for rpc in pings {
            let pong = json!({"type": 2, "from": self.id, "rpcId": rpc});
            self.send(pong.to_string().as_bytes());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
