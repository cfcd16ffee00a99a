//! NAT traversal through the node, between real py-setowire 0.1.0 peers that know only the
//! node (its HTTP bootstrap URL), each on a LAN behind a router namespace doing nftables NAT
//! (see tests/support/nat_lab.rs). For each pair of NATs: the time to a direct session where
//! a path exists, else a broadcast delivered through the node. Each case prints one
//! `nat | case | outcome | time` line (run with `-- --nocapture` to see them).
//!
//! Needs root (network namespaces) and `nft`.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::nat_lab::{NatKind, NatLab, NODE_IP};
use support::net::TestNet;
use support::peer::{node_command, spawn_node_command, ControlPeer, PyPeer};
use support::process::LineProcess;
use support::{is_event, pattern_bytes, TIMEOUT};

/// From the peers' start until they must have met directly, if they can: py-setowire asks
/// the bootstrap 0.5 s after its start, the node introduces the second peer to arrive to the
/// first, and each then sends eight HELLOs 300 ms apart.
const MEET_WINDOW: Duration = Duration::from_secs(5);

/// What a case must show.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A direct session between the two peers.
    Direct,
    /// No direct session: no path exists, and a broadcast crosses through the node.
    ThroughNode,
    /// A broadcast arrives, directly or through the node: which one is measured.
    Delivered,
}

/// Our node on `net` (on every address, HTTP bootstrap included) and its bootstrap URL.
fn start_node(net: &TestNet, ip: Ipv4Addr, args: &[&str]) -> (ControlPeer, String) {
    let mut cmd = node_command(net, "0.0.0.0:0", &["--http-listen", "0.0.0.0:0"]);
    cmd.args(args).env("RUST_LOG", "info");
    let mut node = spawn_node_command(cmd);
    let url = format!("http://{ip}:{}", node.ready_port("http_port"));
    (node, url)
}

/// py-setowire peers on lab hosts, started together, each knowing only `url` and announcing
/// its LAN address there.
fn start_peers(lab: &NatLab, hosts: &[(usize, Ipv4Addr)], url: &str) -> Vec<ControlPeer> {
    let procs: Vec<LineProcess> = hosts
        .iter()
        .map(|&(host, ip)| {
            let ip = ip.to_string();
            let args = ["--bootstrap-http", url, "--local-ip", &ip];
            let label = format!("py@{ip}");
            LineProcess::spawn_command(&label, PyPeer::command(lab.host(host), &args))
        })
        .collect();
    procs.into_iter().map(ControlPeer::from_process).collect()
}

fn connection_with(id8: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| is_event(e, "connection") && e["peer"] == id8
}

/// Waits until `deadline` for `a` and `b` to open a session with each other: when the later
/// side reported it, and the address `a` reaches `b` at.
fn meet(a: &mut ControlPeer, b: &mut ControlPeer, deadline: Instant) -> Option<(Instant, String)> {
    let (a_id, b_id) = (a.id8.clone(), b.id8.clone());
    let left = || deadline.saturating_duration_since(Instant::now());
    let on_a = a.try_wait_event(left(), connection_with(&b_id))?;
    b.try_wait_event(left(), connection_with(&a_id))?;
    Some((
        Instant::now(),
        on_a["addr"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn print_line(case: &str, outcome: &str, time: Option<Duration>) {
    let time = time.map_or("-".to_owned(), |t| format!("{:.2} s", t.as_secs_f64()));
    println!("nat | {case} | {outcome} | {time}");
}

/// A case: the two lab hosts the peers run on, whether they share a LAN (then they must meet
/// at their LAN addresses), what must happen, and a seed for the payload.
struct Case<'a> {
    name: &'a str,
    hosts: [(usize, Ipv4Addr); 2],
    same_lan: bool,
    expect: Expect,
    seed: u64,
}

/// The peers join the node, which introduces them; checks what the case expects.
fn run_case(lab: &NatLab, case: Case<'_>) {
    let Case {
        name: case,
        hosts,
        same_lan,
        expect,
        seed,
    } = case;
    let (mut node, url) = start_node(&lab.public, NODE_IP, &[]);
    let mut peers = start_peers(lab, &hosts, &url);
    let start = Instant::now();
    let (mut b, mut a) = (peers.pop().expect("two"), peers.pop().expect("two"));
    let met = meet(&mut a, &mut b, start + MEET_WINDOW);
    // Whatever happened between them, both reached the node.
    a.wait_connection(&node.id8);
    b.wait_connection(&node.id8);
    let payload = pattern_bytes(seed, 64);
    match (expect, &met) {
        (Expect::Direct, Some((at, addr))) => {
            let b_ip = hosts[1].1.to_string();
            if same_lan {
                let ip = addr.rsplit_once(':').map_or("", |(ip, _)| ip);
                assert_eq!(ip, b_ip, "{case}: met at {addr}, not at the LAN address");
            }
            a.send_to(&b.id8, &payload);
            b.wait_data_eq(&a.id8, &payload);
            let how = if same_lan { "direct, LAN" } else { "direct" };
            print_line(case, &format!("{how} ({addr})"), Some(*at - start));
        }
        (Expect::Direct, None) => panic!("{case}: no direct session within {MEET_WINDOW:?}"),
        (Expect::ThroughNode, Some((_, addr))) => {
            panic!("{case}: a direct session at {addr}, where no path should exist")
        }
        (Expect::ThroughNode, None) => {
            let sent = Instant::now();
            a.broadcast(&payload);
            b.wait_data_eq(&node.id8, &payload);
            print_line(case, "through the node", Some(sent.elapsed()));
        }
        (Expect::Delivered, met) => {
            let sent = Instant::now();
            a.broadcast(&payload);
            let want = hex::encode(&payload);
            let ev = b.wait_event(TIMEOUT, |e| {
                is_event(e, "data") && e["hex"] == want.as_str()
            });
            let from = if ev["peer"] == node.id8.as_str() {
                "the node"
            } else {
                "the peer"
            };
            let outcome = match met {
                Some((at, addr)) => format!(
                    "direct ({addr}) after {:.2} s; broadcast from {from}",
                    (*at - start).as_secs_f64()
                ),
                None => format!("no direct session; broadcast from {from}"),
            };
            print_line(case, &outcome, Some(sent.elapsed()));
        }
    }
    for p in [&mut a, &mut b, &mut node] {
        p.quit();
    }
}

/// A peer behind a router of `first` and one behind a router of `second`.
fn pair(case: &str, first: NatKind, second: NatKind, expect: Expect, seed: u64) {
    let mut lab = NatLab::new();
    let (r1, r2) = (lab.add_router(first), lab.add_router(second));
    let hosts = [lab.add_host(r1), lab.add_host(r2)];
    let same_lan = false;
    run_case(
        &lab,
        Case {
            name: case,
            hosts,
            same_lan,
            expect,
            seed,
        },
    );
}

#[test]
fn full_cone_both_sides() {
    let (kind, expect) = (NatKind::FullCone, Expect::Direct);
    pair("full cone / full cone", kind, kind, expect, 1);
}

#[test]
fn address_restricted_both_sides() {
    let (kind, expect) = (NatKind::AddressRestricted, Expect::Direct);
    pair(
        "address-restricted / address-restricted",
        kind,
        kind,
        expect,
        2,
    );
}

#[test]
fn port_restricted_both_sides() {
    let (kind, expect) = (NatKind::PortRestricted, Expect::Direct);
    pair("port-restricted / port-restricted", kind, kind, expect, 3);
}

#[test]
fn symmetric_both_sides() {
    let (kind, expect) = (NatKind::Symmetric, Expect::ThroughNode);
    pair("symmetric / symmetric", kind, kind, expect, 4);
}

#[test]
fn symmetric_one_side() {
    let case = "symmetric / port-restricted";
    let expect = Expect::ThroughNode;
    pair(case, NatKind::Symmetric, NatKind::PortRestricted, expect, 5);
}

#[test]
fn masquerade_without_firewall_both_sides() {
    let (kind, expect) = (NatKind::MasqueradeOnly, Expect::Delivered);
    pair("masquerade, no firewall / same", kind, kind, expect, 6);
}

#[test]
fn two_peers_behind_the_same_nat() {
    let mut lab = NatLab::new();
    let router = lab.add_router(NatKind::PortRestricted);
    let hosts = [lab.add_host(router), lab.add_host(router)];
    let case = Case {
        name: "same NAT (port-restricted)",
        hosts,
        same_lan: true,
        expect: Expect::Direct,
        seed: 7,
    };
    run_case(&lab, case);
}
