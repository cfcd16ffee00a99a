//! One attack's stage: the lab, our node, real py-setowire peers connected to it, the
//! attacker's raw socket and the victim's tap.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::lab::{self, Lab, PEERS_IP};
use super::measure::{Amplification, Traffic};
use super::spoof::Spoofer;
use super::victim::VictimTap;
use crate::support::is_event;
use crate::support::peer::{ControlPeer, PyPeer};
use crate::support::process::LineProcess;
use crate::support::TIMEOUT;

/// Fields drop in order: the processes and sockets go before their namespaces do.
pub struct Scene {
    pub node: ControlPeer,
    /// py-setowire peers in the peers namespace, each connected to the node.
    pub py: Vec<ControlPeer>,
    pub spoofer: Spoofer,
    pub tap: VictimTap,
    pub lab: Lab,
}

impl Scene {
    /// The lab with our node started with `node_args` and `py_peers` py-setowire peers
    /// connected to it.
    #[track_caller]
    pub fn new(node_args: &[&str], py_peers: usize) -> Scene {
        let lab = Lab::new();
        let mut node = lab.spawn_node(node_args);
        let py = connect_py_peers(&lab, &mut node, py_peers);
        let tap = VictimTap::start(&lab.victim);
        probe_victim(&lab, &tap);
        Scene {
            spoofer: Spoofer::new(&lab.attacker),
            tap,
            node,
            py,
            lab,
        }
    }

    pub fn node_addr(&self) -> SocketAddrV4 {
        lab::node_addr(&self.node)
    }

    pub fn admin_port(&mut self) -> u16 {
        self.node.ready_port("admin_port")
    }

    /// What reached the victim until `until` against what the attacker sent, with the
    /// victim's bytes split between the node and the py-setowire peers it introduced.
    pub fn amplification(&self, attacker: Traffic, until: Instant) -> Amplification {
        let mut node = Traffic::default();
        let mut peers = Traffic::default();
        let mut other = Traffic::default();
        for (src, traffic) in self.tap.by_source(until) {
            match src {
                lab::NODE_IP => node += traffic,
                PEERS_IP => peers += traffic,
                _ => other += traffic,
            }
        }
        let mut victim = node;
        victim += peers;
        victim += other;
        Amplification {
            attacker,
            victim,
            breakdown: format!(
                "node {} B, py peers {} B, others {} B",
                node.bytes, peers.bytes, other.bytes
            ),
        }
    }

    /// The address the node sees py peer `i` at (from its `connection` event).
    #[track_caller]
    pub fn py_addr_on_node(&mut self, i: usize) -> SocketAddrV4 {
        let id8 = self.py[i].id8.clone();
        let ev = self
            .node
            .events_so_far()
            .into_iter()
            .find(|e| is_event(e, "connection") && e["peer"] == id8.as_str())
            .unwrap_or_else(|| panic!("the node never reported py peer {id8}"));
        addr_field(&ev)
    }
}

/// Proves the tap counts what the node's namespace sends the victim, so that an attack that
/// passes did not pass on a broken lab; then forgets the probe.
#[track_caller]
fn probe_victim(lab: &Lab, tap: &VictimTap) {
    let socket = lab::bind_udp(&lab.node, lab::NODE_IP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tap.by_source(Instant::now()).contains_key(&lab::NODE_IP) {
        assert!(
            Instant::now() < deadline,
            "the victim's tap never saw the node's namespace"
        );
        socket
            .send_to(b"probe", lab::victim_addr())
            .expect("send the probe");
        std::thread::sleep(Duration::from_millis(50));
    }
    tap.clear();
}

/// Starts `count` py-setowire peers in the peers namespace at once, then has each dial the
/// node and waits until both sides report the session.
#[track_caller]
fn connect_py_peers(lab: &Lab, node: &mut ControlPeer, count: usize) -> Vec<ControlPeer> {
    let starting: Vec<LineProcess> = (0..count)
        .map(|i| LineProcess::spawn_command(&format!("py#{i}"), PyPeer::command(&lab.peers, &[])))
        .collect();
    let node_addr = lab::node_addr(node).to_string();
    starting
        .into_iter()
        .map(|proc| {
            let mut py = ControlPeer::from_process(proc);
            py.dial(&node_addr);
            py.wait_connection(&node.id8);
            node.wait_connection(&py.id8);
            py
        })
        .collect()
}

#[track_caller]
fn addr_field(ev: &Value) -> SocketAddrV4 {
    let text = ev["addr"].as_str().unwrap_or_default();
    match text.parse() {
        Ok(std::net::SocketAddr::V4(a)) => a,
        _ => panic!("not an IPv4 address in {ev}"),
    }
}

/// Whether a py-setowire peer's session with the node is intact: the node reports no
/// disconnect for it, and DATA gets through both ways. Returns what failed, if anything.
pub fn session_intact(
    node: &mut ControlPeer,
    py: &mut ControlPeer,
    tag: u64,
) -> Result<(), String> {
    let gone = node.try_wait_event(Duration::from_millis(1500), |e| {
        is_event(e, "disconnect") && e["peer"] == py.id8.as_str()
    });
    if let Some(ev) = gone {
        return Err(format!("the node dropped the peer: {ev}"));
    }
    let to_py = crate::support::pattern_bytes(tag, 64);
    node.send_to(&py.id8, &to_py);
    let want = hex::encode(&to_py);
    if py
        .try_wait_event(TIMEOUT / 4, |e| {
            is_event(e, "data") && e["hex"] == want.as_str()
        })
        .is_none()
    {
        return Err("the node's DATA no longer reaches the peer".into());
    }
    let to_node = crate::support::pattern_bytes(tag + 1, 64);
    py.send_to(&node.id8, &to_node);
    let want = hex::encode(&to_node);
    let from = py.id8.clone();
    if node
        .try_wait_event(TIMEOUT / 4, |e| {
            is_event(e, "data") && e["peer"] == from.as_str() && e["hex"] == want.as_str()
        })
        .is_none()
    {
        return Err("the peer's DATA no longer reaches the node".into());
    }
    Ok(())
}
