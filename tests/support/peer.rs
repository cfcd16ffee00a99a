//! Typed helpers over the JSON-lines control protocol shared by
//! `tests/interop/setowire_driver.py` and `setowire-node --control stdio`.

use std::ops::{Deref, DerefMut};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use super::net::TestNet;
use super::process::LineProcess;
use super::{ev_hex, is_event, venv, TIMEOUT};

/// One entry of a `peers` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// id8 as 16 hex chars.
    pub id: String,
    pub addr: String,
    pub in_mesh: bool,
    /// The node's shard the peer is connected on (the node lists it; py-setowire does not).
    pub shard: Option<u64>,
}

/// A process that has announced itself with `{"event":"ready",...}`.
pub struct ControlPeer {
    pub proc: LineProcess,
    /// Full 20-byte id, 40 hex chars.
    pub id40: String,
    /// First 8 bytes of the id, 16 hex chars: how peers name each other.
    pub id8: String,
    /// UDP port the swarm listens on.
    pub port: u16,
}

impl ControlPeer {
    /// Waits for the `ready` event of a freshly spawned process.
    #[track_caller]
    pub fn from_process(mut proc: LineProcess) -> ControlPeer {
        let ev = proc.wait_event(TIMEOUT, |e| is_event(e, "ready"));
        let id40 = ev["id"].as_str().unwrap_or_default().to_string();
        let port = ev["port"].as_u64().unwrap_or(0);
        let id_ok = id40.len() == 40
            && id40
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        assert!(
            id_ok && port > 0 && port <= u64::from(u16::MAX),
            "{}: malformed ready event {ev}",
            proc.label()
        );
        ControlPeer {
            id8: id40[..16].to_string(),
            id40,
            port: port as u16,
            proc,
        }
    }

    /// The `ready` event this process announced itself with.
    #[track_caller]
    pub fn ready_event(&mut self) -> Value {
        self.proc
            .events_so_far()
            .into_iter()
            .find(|e| is_event(e, "ready"))
            .expect("the process announced itself")
    }

    /// A listener port the `ready` event names (`http_port`, `admin_port`).
    #[track_caller]
    pub fn ready_port(&mut self, name: &str) -> u16 {
        let ready = self.ready_event();
        ready[name]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p > 0)
            .unwrap_or_else(|| panic!("ready event without {name}: {ready}"))
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dial(&mut self, addr: &str) {
        self.proc.send(&json!({"cmd": "dial", "addr": addr}));
    }

    pub fn dial_peer(&mut self, other: &ControlPeer) {
        self.dial(&other.addr());
    }

    pub fn broadcast(&mut self, payload: &[u8]) {
        self.proc
            .send(&json!({"cmd": "broadcast", "hex": hex::encode(payload)}));
    }

    /// Unicast to one connected peer (`send` command).
    pub fn send_to(&mut self, peer_id8: &str, payload: &[u8]) {
        self.proc
            .send(&json!({"cmd": "send", "peer": peer_id8, "hex": hex::encode(payload)}));
    }

    pub fn store(&mut self, key: &str, value: &[u8]) {
        self.proc
            .send(&json!({"cmd": "store", "key": key, "hex": hex::encode(value)}));
    }

    /// Sends `fetch` and waits for its `fetched` (Ok) or `fetch_failed` (Err).
    #[track_caller]
    pub fn fetch(&mut self, key: &str, timeout_ms: u64) -> Result<Vec<u8>, String> {
        self.proc
            .send(&json!({"cmd": "fetch", "key": key, "timeout_ms": timeout_ms}));
        let wait = TIMEOUT + std::time::Duration::from_millis(timeout_ms);
        let ev = self.proc.wait_event(wait, |e| {
            (is_event(e, "fetched") || is_event(e, "fetch_failed")) && e["key"] == key
        });
        if is_event(&ev, "fetched") {
            Ok(ev_hex(&ev, "hex"))
        } else {
            Err(ev["error"].as_str().unwrap_or_default().to_string())
        }
    }

    /// Sends `peers` and returns the next `peers` event's list.
    #[track_caller]
    pub fn peers(&mut self) -> Vec<PeerInfo> {
        self.proc.send(&json!({"cmd": "peers"}));
        let ev = self.proc.wait_event(TIMEOUT, |e| is_event(e, "peers"));
        let label = self.proc.label().to_string();
        ev["peers"]
            .as_array()
            .unwrap_or_else(|| panic!("{label}: malformed peers event {ev}"))
            .iter()
            .map(|p| PeerInfo {
                id: p["id"].as_str().unwrap_or_default().to_string(),
                addr: p["addr"].as_str().unwrap_or_default().to_string(),
                in_mesh: p["in_mesh"].as_bool().unwrap_or(false),
                shard: p["shard"].as_u64(),
            })
            .collect()
    }

    pub fn join(&mut self, topic: &[u8]) {
        self.proc
            .send(&json!({"cmd": "join", "topic": hex::encode(topic)}));
    }

    /// One raw datagram from the peer's own UDP socket (Python driver only).
    pub fn send_raw(&mut self, addr: &str, datagram: &[u8]) {
        self.proc
            .send(&json!({"cmd": "send_raw", "addr": addr, "hex": hex::encode(datagram)}));
    }

    /// Sends `quit` and waits (bounded) for the process to exit.
    #[track_caller]
    pub fn quit(&mut self) -> ExitStatus {
        self.proc.send(&json!({"cmd": "quit"}));
        self.proc.wait_exit(TIMEOUT)
    }

    /// Waits for `connection` from the peer with this id8; returns the event.
    #[track_caller]
    pub fn wait_connection(&mut self, id8: &str) -> Value {
        self.proc
            .wait_event(TIMEOUT, |e| is_event(e, "connection") && e["peer"] == id8)
    }

    #[track_caller]
    pub fn wait_disconnect(&mut self, id8: &str) -> Value {
        self.proc
            .wait_event(TIMEOUT, |e| is_event(e, "disconnect") && e["peer"] == id8)
    }

    /// Payload of the next `data` event from the peer with this id8.
    #[track_caller]
    pub fn wait_data_from(&mut self, id8: &str) -> Vec<u8> {
        let ev = self
            .proc
            .wait_event(TIMEOUT, |e| is_event(e, "data") && e["peer"] == id8);
        ev_hex(&ev, "hex")
    }

    /// Waits for a `data` event from `id8` carrying exactly `payload`.
    #[track_caller]
    pub fn wait_data_eq(&mut self, id8: &str, payload: &[u8]) {
        let want = hex::encode(payload);
        self.proc.wait_event(TIMEOUT, |e| {
            is_event(e, "data") && e["peer"] == id8 && e["hex"] == want.as_str()
        });
    }

    /// Value of the next `sync` event for `key`.
    #[track_caller]
    pub fn wait_sync(&mut self, key: &str) -> Vec<u8> {
        let ev = self
            .proc
            .wait_event(TIMEOUT, |e| is_event(e, "sync") && e["key"] == key);
        ev_hex(&ev, "hex")
    }
}

impl Deref for ControlPeer {
    type Target = LineProcess;
    fn deref(&self) -> &LineProcess {
        &self.proc
    }
}

impl DerefMut for ControlPeer {
    fn deref_mut(&mut self) -> &mut LineProcess {
        &mut self.proc
    }
}

/// `a` broadcasts, `b` receives it: from a node's flood or from `a` directly after they were
/// introduced (a peer delivers a payload once, whichever way it came first).
#[track_caller]
pub fn broadcast_reaches(a: &mut ControlPeer, b: &mut ControlPeer, seed: u64) {
    let payload = super::pattern_bytes(seed, 300);
    a.broadcast(&payload);
    let want = hex::encode(&payload);
    b.proc.wait_event(TIMEOUT, |e| {
        is_event(e, "data") && e["hex"] == want.as_str()
    });
}

/// `a` dials `b`; waits until both report the connection. Returns
/// (`a`'s connection event, `b`'s connection event).
#[track_caller]
pub fn connect(a: &mut ControlPeer, b: &mut ControlPeer) -> (Value, Value) {
    a.dial_peer(b);
    let on_a = a.wait_connection(&b.id8);
    let on_b = b.wait_connection(&a.id8);
    (on_a, on_b)
}

/// Our node (`setowire-node --control stdio`) on the namespace's loopback, on a free port,
/// with extra `args` (e.g. `--shards 2 --io-backend mmsg`).
#[track_caller]
pub fn spawn_node(net: &TestNet, args: &[&str]) -> ControlPeer {
    spawn_node_on(net, "127.0.0.1:0", args)
}

/// Like [`spawn_node`], listening on `udp_listen` (e.g. `[::1]:0`).
#[track_caller]
pub fn spawn_node_on(net: &TestNet, udp_listen: &str, args: &[&str]) -> ControlPeer {
    spawn_node_command(node_command(net, udp_listen, args))
}

/// The command [`spawn_node_on`] runs, for a test to add to (e.g. environment variables).
pub fn node_command(net: &TestNet, udp_listen: &str, args: &[&str]) -> Command {
    let mut cmd = net.command(env!("CARGO_BIN_EXE_setowire-node"));
    // HTTP and admin on free loopback ports unless `args` say otherwise (later flags win).
    cmd.args(["--udp-listen", udp_listen, "--http-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--control", "stdio"])
        .args(args)
        .env("RUST_LOG", "debug");
    cmd
}

/// Spawns a command made by [`node_command`] and waits until the node is ready.
#[track_caller]
pub fn spawn_node_command(cmd: Command) -> ControlPeer {
    ControlPeer::from_process(LineProcess::spawn_command("node", cmd))
}

/// A real py-setowire 0.1.0 `Swarm` behind `tests/interop/setowire_driver.py`.
pub struct PyPeer(pub ControlPeer);

static PY_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl PyPeer {
    /// Spawns a driver inside `net` with extra driver `args` (`--seed HEX`,
    /// `--bootstrap-http URL`, `--max-peers N`, `--lan`) and waits until ready.
    #[track_caller]
    pub fn spawn(net: &TestNet, args: &[&str]) -> PyPeer {
        let label = format!("py#{}", PY_COUNTER.fetch_add(1, Ordering::Relaxed));
        PyPeer::spawn_labeled(net, &label, args)
    }

    #[track_caller]
    pub fn spawn_labeled(net: &TestNet, label: &str, args: &[&str]) -> PyPeer {
        let proc = LineProcess::spawn_command(label, PyPeer::command(net, args));
        PyPeer(ControlPeer::from_process(proc))
    }

    /// The driver's command line inside `net` (provisions the venv if needed).
    #[track_caller]
    pub fn command(net: &TestNet, args: &[&str]) -> Command {
        // -I: ignore PYTHON* variables and user site-packages, and keep the
        // script's directory off sys.path; -u: unbuffered stdio.
        let mut cmd = net.command(venv::python());
        cmd.arg("-I")
            .arg("-u")
            .arg(venv::driver_script())
            .args(args);
        cmd
    }

    pub fn into_inner(self) -> ControlPeer {
        self.0
    }
}

impl Deref for PyPeer {
    type Target = ControlPeer;
    fn deref(&self) -> &ControlPeer {
        &self.0
    }
}

impl DerefMut for PyPeer {
    fn deref_mut(&mut self) -> &mut ControlPeer {
        &mut self.0
    }
}
