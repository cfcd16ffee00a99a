//! The attacker's JSON DHT messages (py-setowire's `SimpleDHT` format), and its own DHT
//! client: from its real address it proves itself to the node (it answers the node's PING)
//! and stores a value, which forged requests then ask for in the victim's name.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use setowire_core::dht::NodeId;

use super::lab;
use crate::support::net::TestNet;

pub fn ping(from: &NodeId, rpc: u32) -> Vec<u8> {
    message(json!({"type": 1, "from": from.to_hex(), "rpcId": rpc_id(rpc)}))
}

pub fn find_node(from: &NodeId, target: &NodeId, rpc: u32) -> Vec<u8> {
    message(json!({
        "type": 4, "from": from.to_hex(), "target": target.to_hex(), "rpcId": rpc_id(rpc)
    }))
}

pub fn find_value(from: &NodeId, key: &NodeId, rpc: u32) -> Vec<u8> {
    message(json!({
        "type": 6, "from": from.to_hex(), "key": key.to_hex(), "rpcId": rpc_id(rpc)
    }))
}

fn store(from: &NodeId, key: &NodeId, value: &str) -> Vec<u8> {
    message(json!({"type": 3, "from": from.to_hex(), "key": key.to_hex(), "value": value}))
}

fn pong(from: &NodeId, rpc_id: &Value) -> Vec<u8> {
    message(json!({"type": 2, "from": from.to_hex(), "rpcId": rpc_id}))
}

fn rpc_id(rpc: u32) -> String {
    format!("{rpc:08x}")
}

fn message(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).expect("JSON encodes")
}

/// A DHT client on the attacker's own address.
pub struct DhtClient {
    socket: UdpSocket,
    id: NodeId,
    node: SocketAddrV4,
}

impl DhtClient {
    #[track_caller]
    pub fn new(net: &TestNet, ip: Ipv4Addr, node: SocketAddrV4) -> DhtClient {
        let socket = lab::bind_udp(net, ip);
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        DhtClient {
            socket,
            id: NodeId::random(&mut rand::thread_rng()),
            node,
        }
    }

    /// PINGs the node and answers the PING it sends back, which verifies this address.
    /// True once the node has been answered.
    pub fn prove_address(&mut self, within: Duration) -> bool {
        self.send(&ping(&self.id, 1));
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let Some(msg) = self.recv() else { continue };
            if msg["type"] == 1 {
                self.send(&pong(&self.id, &msg["rpcId"]));
                return true;
            }
        }
        false
    }

    /// Stores `value` under `key` and checks that FIND_VALUE from here returns it.
    pub fn store_and_check(&mut self, key: &NodeId, value: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut rpc = 100;
        while Instant::now() < deadline {
            self.send(&store(&self.id, key, value));
            rpc += 1;
            self.send(&find_value(&self.id, key, rpc));
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_millis(500) {
                match self.recv() {
                    Some(msg) if msg["type"] == 7 && msg["value"] == value => return true,
                    Some(msg) if msg["type"] == 1 => self.send(&pong(&self.id, &msg["rpcId"])),
                    _ => {}
                }
            }
        }
        false
    }

    #[track_caller]
    fn send(&self, datagram: &[u8]) {
        if let Err(e) = self.socket.send_to(datagram, self.node) {
            panic!("DHT send to {}: {e}", self.node);
        }
    }

    fn recv(&self) -> Option<Value> {
        let mut buf = [0u8; 65_536];
        let (n, _) = self.socket.recv_from(&mut buf).ok()?;
        serde_json::from_slice(&buf[..n]).ok()
    }
}
