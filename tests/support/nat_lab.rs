//! A small internet of network namespaces with NAT routers built from nftables.
//!
//! ```text
//!   public ns: bridge br0 = 203.0.113.1/24 (the node runs here)
//!     ├─ veth ── public host ns   203.0.113.(2..)    e.g. a second node
//!     └─ veth ── router ns: wan = 203.0.113.(100+r)  nftables NAT of one kind
//!                  └─ bridge lan = 10.0.r.1/24
//!                       └─ veth ── host ns  10.0.r.(2..)  py-setowire peers
//! ```
//!
//! The public segment is TEST-NET-3 (RFC 5737), the LANs private (RFC 1918). Every namespace
//! is a [`TestNet`] (a unique name, deleted on drop, even on panic); the veths and bridges die
//! with their namespaces, and nftables state with its namespace, so nothing outlives a test.
//! Nothing here routes anywhere but between these namespaces.

use std::net::Ipv4Addr;

use super::net::TestNet;

/// The public segment; the node is at `.1`.
const PUBLIC_PREFIX: [u8; 3] = [203, 0, 113];
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// What a router does to UDP between its LAN and the public segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Port-preserving masquerade; anything arriving at a mapped port goes to the LAN host
    /// (endpoint-independent mapping and filtering).
    FullCone,
    /// As full cone, but only from IPs the LAN host has sent to (address-dependent filtering).
    AddressRestricted,
    /// Port-preserving masquerade; only replies to what the LAN host sent, by address and port
    /// (the usual home router with a stateful firewall).
    PortRestricted,
    /// A random public port for every new destination (`masquerade fully-random`) and a
    /// stateful firewall: endpoint-dependent mapping.
    Symmetric,
    /// Masquerade and no firewall at all: what arrives unsolicited is handed to the router
    /// itself, and conntrack remembers it.
    MasqueradeOnly,
}

impl NatKind {
    /// The nftables ruleset for a router whose LAN host (the only one, for the cone kinds
    /// that forward unsolicited traffic) is `host`.
    fn ruleset(self, host: Ipv4Addr) -> String {
        let masquerade = match self {
            NatKind::Symmetric => "masquerade fully-random",
            _ => "masquerade",
        };
        let mut rules = format!(
            "table ip nat {{\n\
             \x20 chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" {masquerade}; }}\n"
        );
        if matches!(self, NatKind::FullCone | NatKind::AddressRestricted) {
            // A mapping preserves the port, so the port an outside peer was told is the LAN
            // host's own: forwarding it there makes the mapping reachable from anyone.
            rules += &format!(
                "  chain pre {{ type nat hook prerouting priority dstnat; \
                 iifname \"wan\" udp dport 1024-65535 dnat to {host}; }}\n"
            );
        }
        rules += "}\n";
        let admit = match self {
            NatKind::FullCone | NatKind::MasqueradeOnly => return rules,
            NatKind::AddressRestricted => "iifname \"wan\" ip saddr @contacted accept;",
            NatKind::PortRestricted | NatKind::Symmetric => "",
        };
        // Dropping unsolicited datagrams before conntrack confirms them leaves no entry
        // behind that could collide with a later mapping (the no-firewall case does).
        rules += &format!(
            "table ip filter {{\n\
             \x20 set contacted {{ type ipv4_addr; flags dynamic,timeout; timeout 2m; }}\n\
             \x20 chain forwarding {{ type filter hook forward priority filter;\n\
             \x20   oifname \"wan\" add @contacted {{ ip daddr }} accept;\n\
             \x20   iifname \"wan\" ct state established,related accept; {admit}\n\
             \x20   iifname \"wan\" drop; }}\n\
             \x20 chain arriving {{ type filter hook input priority filter;\n\
             \x20   iifname \"wan\" ct state established,related accept; iifname \"wan\" drop; }}\n\
             }}\n"
        );
        rules
    }
}

pub struct Router {
    pub kind: NatKind,
    pub ns: TestNet,
    /// The router's public address.
    pub wan: Ipv4Addr,
    index: u8,
    hosts: u8,
}

pub struct NatLab {
    pub public: TestNet,
    pub routers: Vec<Router>,
    /// Hosts on the LANs and on the public segment, in the order they were added.
    hosts: Vec<TestNet>,
    public_hosts: u8,
}

impl NatLab {
    #[track_caller]
    pub fn new() -> NatLab {
        let public = TestNet::new();
        assert!(
            public.is_isolated(),
            "the NAT tests build routers in network namespaces of their own: they need root \
             and `ip netns` (SETOWIRE_TEST_NETNS=off cannot be honoured here)"
        );
        run(&public, &["ip", "link", "add", "br0", "type", "bridge"]);
        run(
            &public,
            &["ip", "addr", "add", &format!("{NODE_IP}/24"), "dev", "br0"],
        );
        run(&public, &["ip", "link", "set", "br0", "up"]);
        NatLab {
            public,
            routers: Vec::new(),
            hosts: Vec::new(),
            public_hosts: 1,
        }
    }

    /// A host on the public segment (another node): its number and address.
    #[track_caller]
    pub fn add_public_host(&mut self) -> (usize, Ipv4Addr) {
        self.public_hosts += 1;
        let [a, b, c] = PUBLIC_PREFIX;
        let ip = Ipv4Addr::new(a, b, c, self.public_hosts);
        let net = TestNet::new();
        self.attach(&net, &format!("vp{}", self.public_hosts), "eth0", ip);
        self.hosts.push(net);
        (self.hosts.len() - 1, ip)
    }

    /// A router of `kind` on the public segment, with an empty LAN; returns its number.
    #[track_caller]
    pub fn add_router(&mut self, kind: NatKind) -> usize {
        let index = self.routers.len() as u8;
        let [a, b, c] = PUBLIC_PREFIX;
        let wan = Ipv4Addr::new(a, b, c, 100 + index);
        let ns = TestNet::new();
        self.attach(&ns, &format!("vr{index}"), "wan", wan);
        run(&ns, &["ip", "link", "add", "lan", "type", "bridge"]);
        let gateway = format!("{}/24", lan_ip(index, 1));
        run(&ns, &["ip", "addr", "add", &gateway, "dev", "lan"]);
        run(&ns, &["ip", "link", "set", "lan", "up"]);
        run(&ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        self.routers.push(Router {
            kind,
            ns,
            wan,
            index,
            hosts: 1,
        });
        index as usize
    }

    /// A host on router `r`'s LAN: its number and address. The first host of a router also
    /// gets the router's nftables rules, which name it.
    #[track_caller]
    pub fn add_host(&mut self, r: usize) -> (usize, Ipv4Addr) {
        let router = &mut self.routers[r];
        router.hosts += 1;
        let ip = lan_ip(router.index, router.hosts);
        let net = TestNet::new();
        let port = format!("vh{}", router.hosts);
        let ns = net.namespace().expect("isolated");
        run(
            &router.ns,
            &[
                "ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        );
        run(
            &router.ns,
            &["ip", "link", "set", &port, "master", "lan", "up"],
        );
        up(&net, "eth0", ip);
        let gateway = lan_ip(router.index, 1).to_string();
        run(&net, &["ip", "route", "add", "default", "via", &gateway]);
        if router.hosts == 2 {
            nft(&router.ns, &router.kind.ruleset(ip));
        }
        self.hosts.push(net);
        (self.hosts.len() - 1, ip)
    }

    /// Host number `i`'s namespace.
    pub fn host(&self, i: usize) -> &TestNet {
        &self.hosts[i]
    }

    /// A veth from the public bridge (`port` there) to `iface` in `net`, at `ip`.
    #[track_caller]
    fn attach(&self, net: &TestNet, port: &str, iface: &str, ip: Ipv4Addr) {
        let ns = net.namespace().expect("isolated");
        run(
            &self.public,
            &[
                "ip", "link", "add", port, "type", "veth", "peer", "name", iface, "netns", ns,
            ],
        );
        run(
            &self.public,
            &["ip", "link", "set", port, "master", "br0", "up"],
        );
        up(net, iface, ip);
    }
}

fn lan_ip(router: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, router, host)
}

#[track_caller]
fn up(net: &TestNet, iface: &str, ip: Ipv4Addr) {
    run(
        net,
        &["ip", "addr", "add", &format!("{ip}/24"), "dev", iface],
    );
    run(net, &["ip", "link", "set", iface, "up"]);
}

/// Loads `rules` into `net`'s nftables.
#[track_caller]
fn nft(net: &TestNet, rules: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = net
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("nft in {}: {e}", net.describe()));
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(rules.as_bytes())
        .expect("nft reads its rules");
    drop(stdin);
    let out = child.wait_with_output().expect("nft finishes");
    assert!(
        out.status.success(),
        "nft in {}: {}\n{rules}",
        net.describe(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[track_caller]
fn run(net: &TestNet, argv: &[&str]) {
    if let Err(e) = net.run(argv) {
        panic!("setting up {}: {e}", net.describe());
    }
}
