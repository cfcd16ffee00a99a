//! The network a hostile test runs in: four namespaces of its own on one bridge.
//!
//! ```text
//!   node ns: setowire-node, bridge br0 = 192.0.2.1/24
//!     ├─ veth ── attacker ns  192.0.2.2   raw sockets that forge source addresses
//!     ├─ veth ── peers ns     192.0.2.20  real py-setowire peers and session clients
//!     └─ veth ── victim ns    192.0.2.66  counts every UDP datagram that reaches it
//! ```
//!
//! The addresses are TEST-NET-1 (RFC 5737): documentation addresses that look public to the
//! node, as a victim on the internet would. TEST-NET-2 (198.51.100.0/24) is the attacker's
//! pool of forged sources that belong to nobody: the node routes it towards the attacker's
//! namespace, which drops it (it forwards nothing), so answers to those addresses vanish as
//! they would on the internet.
//!
//! Reverse-path filtering is off in the node's namespace, so the kernel accepts forged sources
//! as a host on the internet does. Every namespace is a [`TestNet`] (unique per test, deleted
//! on drop, even on panic), and the veths and the bridge die with their namespaces.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use crate::support::net::TestNet;
use crate::support::peer::{node_command, spawn_node_command, ControlPeer};

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const PEERS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
pub const VICTIM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
/// The port the attacks name as the victim's (any port of the victim counts).
pub const VICTIM_PORT: u16 = 40_000;
/// Forged sources nobody owns (TEST-NET-2), routed to the attacker and dropped there.
pub const FORGED_NET: [u8; 3] = [198, 51, 100];
const PREFIX: &str = "/24";

pub struct Lab {
    pub node: TestNet,
    pub attacker: TestNet,
    pub peers: TestNet,
    pub victim: TestNet,
}

impl Lab {
    #[track_caller]
    pub fn new() -> Lab {
        let lab = Lab {
            node: TestNet::new(),
            attacker: TestNet::new(),
            peers: TestNet::new(),
            victim: TestNet::new(),
        };
        assert!(
            lab.node.is_isolated(),
            "the hostile suite forges source addresses with raw sockets inside network \
             namespaces of its own: it needs root and `ip netns` (SETOWIRE_TEST_NETNS=off \
             cannot be honoured here)"
        );
        lab.build();
        lab
    }

    fn build(&self) {
        let bridge_ip = format!("{NODE_IP}{PREFIX}");
        self.in_node(&["ip", "link", "add", "br0", "type", "bridge"]);
        self.in_node(&["ip", "addr", "add", &bridge_ip, "dev", "br0"]);
        self.in_node(&["ip", "link", "set", "br0", "up"]);
        for (port, net, ip) in [
            ("v-attacker", &self.attacker, ATTACKER_IP),
            ("v-peers", &self.peers, PEERS_IP),
            ("v-victim", &self.victim, VICTIM_IP),
        ] {
            let ns = net.namespace().expect("isolated");
            self.in_node(&[
                "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ]);
            self.in_node(&["ip", "link", "set", port, "master", "br0", "up"]);
            let addr = format!("{ip}{PREFIX}");
            run(net, &["ip", "addr", "add", &addr, "dev", "eth0"]);
            run(net, &["ip", "link", "set", "eth0", "up"]);
        }
        let forged = format!(
            "{}.{}.{}.0{PREFIX}",
            FORGED_NET[0], FORGED_NET[1], FORGED_NET[2]
        );
        let via = ATTACKER_IP.to_string();
        self.in_node(&["ip", "route", "add", &forged, "via", &via]);
        // A host on the internet takes a datagram from any source its route does not rule
        // out; strict reverse-path filtering would hide the attacks a real node faces.
        for conf in ["all", "default", "br0"] {
            self.in_node(&[
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{conf}.rp_filter=0"),
            ]);
        }
    }

    #[track_caller]
    fn in_node(&self, argv: &[&str]) {
        run(&self.node, argv);
    }

    /// Our node in the node namespace on `0.0.0.0:<free port>` (admin on its loopback), with
    /// `args` added; waits until it is ready.
    #[track_caller]
    pub fn spawn_node(&self, args: &[&str]) -> ControlPeer {
        let mut cmd = node_command(&self.node, "0.0.0.0:0", args);
        // The attacks make thousands of handshakes: debug logs would slow the node down.
        cmd.env("RUST_LOG", "info");
        spawn_node_command(cmd)
    }
}

/// The node's UDP address as the other namespaces reach it.
pub fn node_addr(node: &ControlPeer) -> SocketAddrV4 {
    SocketAddrV4::new(NODE_IP, node.port)
}

/// The address the attacks name as the victim's.
pub fn victim_addr() -> SocketAddrV4 {
    SocketAddrV4::new(VICTIM_IP, VICTIM_PORT)
}

/// The `n`th forged source nobody owns: 250 addresses of the pool, many ports each.
pub fn forged_source(n: usize) -> SocketAddrV4 {
    let [a, b, c] = FORGED_NET;
    let host = 1 + (n % 250) as u8;
    let port = 20_000 + (n / 250) as u16;
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, host), port)
}

/// A UDP socket on `ip:<free port>` inside `net`.
#[track_caller]
pub fn bind_udp(net: &TestNet, ip: Ipv4Addr) -> UdpSocket {
    net.run_inside(|| UdpSocket::bind((ip, 0)))
        .unwrap_or_else(|e| panic!("bind {ip}:0 in {}: {e}", net.describe()))
}

#[track_caller]
fn run(net: &TestNet, argv: &[&str]) {
    if let Err(e) = net.run(argv) {
        panic!("setting up {}: {e}", net.describe());
    }
}
