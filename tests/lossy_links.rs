//! Real py-setowire 0.1.0 peers and the node on a lossy link: every UDP datagram to or from
//! the node's port is dropped with probability 1 %, 5 % or 20 % by nftables (`numgen
//! random`) inside the test's own network namespace. Handshakes complete, the node delivers
//! each broadcast once, and keeps a multi-piece value a peer stores although py-setowire
//! sends its pieces once and never again unless asked.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::net::TestNet;
use support::peer::{spawn_node, PyPeer};
use support::{is_event, pattern_bytes};

const BROADCASTS: usize = 100;
/// 23 pieces of 900 bytes.
const VALUE_LEN: usize = 20_000;

/// Drops `percent` % of the UDP datagrams to and from `port` on the namespace's loopback.
fn lose(net: &TestNet, port: u16, percent: u32) {
    let rules = format!(
        "table inet lossy {{
            chain out {{
                type filter hook output priority 0; policy accept;
                udp dport {port} numgen random mod 100 < {percent} drop
                udp sport {port} numgen random mod 100 < {percent} drop
            }}
        }}"
    );
    net.run(&["nft", &rules]).expect("nft loads the loss rules");
}

/// How a run went.
#[derive(Debug)]
struct Outcome {
    /// From the dials to both sessions up.
    joined_after: Duration,
    /// Broadcasts of one peer the node delivered, of [`BROADCASTS`], and copies beyond one.
    delivered: usize,
    duplicates: usize,
    /// From the store to the node keeping the whole value.
    kept_after: Duration,
}

fn run(percent: u32) -> Outcome {
    let net = TestNet::new();
    assert!(
        net.is_isolated(),
        "the loss rules need a network namespace of the test's own"
    );
    let mut node = spawn_node(&net, &["--shards", "1", "--store-forward", "true"]);
    lose(&net, node.port, percent);
    let mut a = PyPeer::spawn(&net, &[]).into_inner();
    let mut b = PyPeer::spawn(&net, &[]).into_inner();
    let started = Instant::now();
    a.dial_peer(&node);
    b.dial_peer(&node);
    for peer in [&a, &b] {
        node.wait_connection(&peer.id8.clone());
    }
    let joined_after = started.elapsed();
    // The node introduces them to each other, so each broadcast has two ways to the node.
    a.wait_connection(&b.id8.clone());

    for i in 0..BROADCASTS {
        a.broadcast(format!("lossy {i:03}").as_bytes());
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut copies: HashMap<String, usize> = HashMap::new();
    for e in node.events_so_far() {
        if is_event(&e, "data") {
            *copies
                .entry(e["hex"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }

    // py-setowire announces a stored value with one HAVE, which the loss may take: the peer
    // stores it again then, as an application whose store went unanswered would.
    let value = pattern_bytes(12, VALUE_LEN);
    let stored = Instant::now();
    let mut kept = None;
    for _ in 0..3 {
        a.store("lossy-value", &value);
        kept = node.try_wait_event(Duration::from_secs(15), |e| {
            is_event(e, "sync") && e["key"] == "lossy-value"
        });
        if kept.is_some() {
            break;
        }
    }
    let kept = kept.unwrap_or_else(|| panic!("the node never kept the value at {percent} % loss"));
    assert_eq!(support::ev_hex(&kept, "hex"), value);
    Outcome {
        joined_after,
        delivered: copies.len(),
        duplicates: copies.values().map(|n| n - 1).sum(),
        kept_after: stored.elapsed(),
    }
}

fn check(percent: u32, min_delivered: usize) {
    let outcome = run(percent);
    eprintln!("{percent} % loss: {outcome:?}");
    assert_eq!(outcome.duplicates, 0, "{outcome:?}");
    assert!(outcome.delivered >= min_delivered, "{outcome:?}");
    // Eight HELLOs 300 ms apart; three stores of up to 15 s each.
    assert!(outcome.joined_after < Duration::from_secs(3), "{outcome:?}");
    assert!(outcome.kept_after < Duration::from_secs(45), "{outcome:?}");
}

#[test]
fn one_percent_loss() {
    check(1, BROADCASTS - 2);
}

#[test]
fn five_percent_loss() {
    check(5, BROADCASTS * 95 / 100);
}

/// Each broadcast reaches the node straight from its sender and flooded on by the other
/// peer, so it is missing only when both copies are lost.
#[test]
fn twenty_percent_loss() {
    check(20, BROADCASTS * 85 / 100);
}
