//! NAT traversal through the node, between real py-setowire 0.1.0 peers that know only the
//! node (its HTTP bootstrap URL), each on a LAN behind a router namespace doing nftables NAT
//! (see tests/support/nat_lab.rs). For each pair of NATs: the time to a direct session where
//! a path exists, else a broadcast delivered through the node. Each case prints one
//! `nat | case | outcome | time` line (run with `-- --nocapture` to see them).
//!
//! Needs root (network namespaces), `nft`, `conntrack` and `ping`.

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

/// Asks every process to quit, then waits for each: py-setowire takes a while to leave.
fn quit_all(procs: &mut [&mut ControlPeer]) {
    for p in procs.iter_mut() {
        p.send(&serde_json::json!({"cmd": "quit"}));
    }
    for p in procs.iter_mut() {
        p.wait_exit(TIMEOUT);
    }
}

/// `time`: to the direct session, or for the broadcast to cross through the node(s).
fn print_line(case: &str, outcome: &str, time: Option<Duration>) {
    let time = time.map_or("-".to_owned(), |t| format!("{} ms", t.as_millis()));
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
    quit_all(&mut [&mut a, &mut b, &mut node]);
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

#[test]
fn a_second_node_as_the_only_path() {
    // Peer A knows node 1 only, peer B node 2 only, both behind symmetric NATs; the nodes
    // introduce nobody, so what A broadcasts can reach B only through node 1 and node 2.
    let mut lab = NatLab::new();
    let (r1, r2) = (
        lab.add_router(NatKind::Symmetric),
        lab.add_router(NatKind::Symmetric),
    );
    let (a_host, b_host) = (lab.add_host(r1), lab.add_host(r2));
    let (second, second_ip) = lab.add_public_host();
    let quiet = ["--gossip-fanout", "0"];
    let (mut node1, url1) = start_node(&lab.public, NODE_IP, &quiet);
    let (mut node2, url2) = start_node(lab.host(second), second_ip, &quiet);
    node1.dial(&format!("{second_ip}:{}", node2.port));
    node1.wait_connection(&node2.id8);
    node2.wait_connection(&node1.id8);
    let mut a = start_peers(&lab, &[a_host], &url1).remove(0);
    let mut b = start_peers(&lab, &[b_host], &url2).remove(0);
    a.wait_connection(&node1.id8);
    b.wait_connection(&node2.id8);
    let payload = pattern_bytes(8, 64);
    let sent = Instant::now();
    a.broadcast(&payload);
    b.wait_data_eq(&node2.id8, &payload);
    let took = sent.elapsed();
    let only =
        |p: &mut ControlPeer| -> Vec<String> { p.peers().into_iter().map(|i| i.id).collect() };
    assert_eq!(only(&mut a), [node1.id8.clone()], "A has no other path");
    assert_eq!(only(&mut b), [node2.id8.clone()], "B has no other path");
    print_line(
        "two nodes, the second the only path",
        "through node 1 and node 2",
        Some(took),
    );
    quit_all(&mut [&mut a, &mut b, &mut node1, &mut node2]);
}

/// The round-trip time from lab host `host` to `ip`, by ping.
fn rtt(lab: &NatLab, host: usize, ip: Ipv4Addr) -> Duration {
    let ip = ip.to_string();
    let out = lab
        .host(host)
        .run(&["ping", "-c", "5", "-i", "0.2", "-q", &ip]);
    let out = out.unwrap_or_else(|e| panic!("ping {ip}: {e}"));
    // "rtt min/avg/max/mdev = 0.031/0.047/0.069/0.012 ms"
    let avg = out
        .lines()
        .find_map(|l| l.split(" = ").nth(1))
        .and_then(|v| v.split('/').nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no rtt in ping's output: {out}"));
    Duration::from_secs_f64(avg / 1000.0)
}

/// Whether the router's conntrack holds a mapping of `host`'s datagrams to `to` on another
/// public port than `host`'s own (the port a collision moved it to).
fn mapping_moved(router: &TestNet, host: Ipv4Addr, to: Ipv4Addr) -> bool {
    let out = router.run(&["conntrack", "-L", "-p", "udp"]);
    let out = out.unwrap_or_else(|e| panic!("conntrack: {e}"));
    // "udp 17 29 src=10.0.0.2 dst=203.0.113.101 sport=4000 dport=5000 [UNREPLIED]
    //  src=203.0.113.101 dst=203.0.113.100 sport=5000 dport=4001 mark=0 use=1"
    out.lines().any(|line| {
        let field = |name: &str, nth: usize| {
            let prefix = format!("{name}=");
            line.split_whitespace()
                .filter_map(|w| w.strip_prefix(&prefix))
                .nth(nth)
        };
        let (host, to) = (host.to_string(), to.to_string());
        field("src", 0) == Some(&host)
            && field("dst", 0) == Some(&to)
            && field("sport", 0) != field("dport", 1)
    })
}

#[test]
fn masquerade_without_firewall_introduction_lead() {
    // Behind masquerade without a firewall, a HELLO that reaches the other router before
    // that side's own HELLO left is handed to the router itself, and conntrack keeps it: the
    // other side's mapping then collides with it and moves to another port. Here the node
    // introduces nobody; the test makes the introductions itself, to one side a lead ahead of
    // the other, each trial with peers behind routers of their own (fresh conntrack).
    const TRIALS: usize = 2;
    let mut lab = NatLab::new();
    let (mut node, url) = start_node(&lab.public, NODE_IP, &["--gossip-fanout", "0"]);
    let mut pairs = Vec::new();
    for _ in 0..3 * TRIALS {
        let (r1, r2) = (
            lab.add_router(NatKind::MasqueradeOnly),
            lab.add_router(NatKind::MasqueradeOnly),
        );
        pairs.push(([r1, r2], [lab.add_host(r1), lab.add_host(r2)]));
    }
    let wan = |r: usize| lab.routers[r].wan;
    let ([_, r2], [a_host, _]) = pairs[0];
    let round_trip = rtt(&lab, a_host.0, wan(r2));
    let leads = [
        ("none", Duration::ZERO),
        ("one RTT", round_trip),
        ("100 ms", Duration::from_millis(100)),
    ];
    let hosts: Vec<(usize, Ipv4Addr)> = pairs.iter().flat_map(|(_, h)| *h).collect();
    let mut peers = start_peers(&lab, &hosts, &url).into_iter();
    let mut trials = Vec::new();
    for p in 0..pairs.len() {
        let (mut a, mut b) = (peers.next().expect("a"), peers.next().expect("b"));
        a.wait_connection(&node.id8);
        b.wait_connection(&node.id8);
        trials.push((p, a, b));
    }
    let seen = node.peers();
    let public = |id8: &str, wan: Ipv4Addr| -> String {
        let addr = (seen.iter().find(|p| p.id == id8))
            .map(|p| p.addr.clone())
            .unwrap_or_else(|| panic!("the node has no session with {id8}"));
        assert!(
            addr.starts_with(&format!("{wan}:")),
            "{addr} is not behind {wan}"
        );
        addr
    };
    let mut started = Vec::new();
    for (p, a, b) in &mut trials {
        let ([r1, r2], _) = pairs[*p];
        let (a_public, b_public) = (public(&a.id8, wan(r1)), public(&b.id8, wan(r2)));
        let lead = leads[*p / TRIALS].1;
        started.push(Instant::now());
        b.dial(&a_public);
        std::thread::sleep(lead);
        a.dial(&b_public);
    }
    // Eight HELLOs 300 ms apart, and a little more.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut met = Vec::new();
    for (p, a, b) in &mut trials {
        let ([r1, r2], [(_, a_ip), (_, b_ip)]) = pairs[*p];
        let meeting = meet(a, b, deadline).map(|(at, _)| at - started[*p]);
        let moved = mapping_moved(&lab.routers[r1].ns, a_ip, wan(r2))
            || mapping_moved(&lab.routers[r2].ns, b_ip, wan(r1));
        // The model this measures: where they did not meet, a collision moved a mapping.
        assert!(
            meeting.is_some() || moved,
            "trial {p}: no direct session, yet no mapping moved"
        );
        met.push((meeting, moved));
    }
    for (l, (name, lead)) in leads.iter().enumerate() {
        let these = &met[l * TRIALS..(l + 1) * TRIALS];
        let count = these.iter().filter(|(m, _)| m.is_some()).count();
        let moved = these.iter().filter(|(_, moved)| *moved).count();
        let times: Vec<String> = (these.iter().filter_map(|(m, _)| *m))
            .map(|t| format!("{} ms", t.as_millis()))
            .collect();
        let time = if times.is_empty() {
            "-".to_owned()
        } else {
            times.join(", ")
        };
        let case = format!(
            "masquerade, no firewall, lead {name} ({} µs)",
            lead.as_micros()
        );
        println!("nat | {case} | met directly {count}/{TRIALS}, a mapping moved {moved}/{TRIALS} | {time}");
    }
    let mut all: Vec<&mut ControlPeer> = (trials.iter_mut()).flat_map(|(_, a, b)| [a, b]).collect();
    all.push(&mut node);
    quit_all(&mut all);
}
