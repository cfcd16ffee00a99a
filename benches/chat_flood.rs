//! The node's cost per message of an encrypted chat flood, next to the crypto it cannot avoid.
//!
//! A node `Engine` (default config, flood on, mesh large enough to hold every peer) is
//! connected, with real handshakes and real crypto, to 8 recipient engines and one sender
//! engine on the simulated network (`setowire_core::simnet`, perfect links), which also
//! carries one message from the sender through the node to check that every recipient opens
//! it. Then the node and the sender are taken off the network. The sender seals 64-byte chat
//! messages (each one different, as the node drops repeated content, and in order, as its
//! replay window and jitter buffer expect) in the untimed setup; the measured part is what
//! the node does with one of them: `handle_datagram` (open, deliver, re-seal for each of the
//! 8 other mesh peers), draining its transmits into a sink and polling its events. A virtual
//! clock advances 1 ms per message, a rate the per-peer limit allows.
//!
//! - `chat_flood/node`: as configured by default, which also answers each message with a
//!   sealed WINDOW_ACK to the sender (`ack_data`, for py-setowire senders): 1 open + 9 seals.
//! - `chat_flood/node_no_ack`: `ack_data` off: 1 open + 8 seals.
//! - `chat_flood/open_plus_8_seals`: the reference, the bare `Session` work of relaying one
//!   message: one `open_data` of the sender's DATA (4-byte seq + 64 B) and one `seal_data` of
//!   the same plaintext for each of 8 recipients, each with its own session.
//!
//! After criterion, a second phase times the three in interleaved rounds with
//! `std::time::Instant` and prints the medians per message and per recipient and the ratio
//! node / reference, the figure the node must keep within 2. `cargo test --benches` runs
//! each benchmark once and skips that phase.
//!
//! Run: `cargo bench --bench chat_flood`.

mod support;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use setowire_core::proto::frame::kind;
use setowire_core::proto::identity::{Id8, Identity};
use setowire_core::proto::session::{Session, DATA_HEADER_LEN, DATA_OVERHEAD};
use setowire_core::simnet::{HostId, SimConfig, SimNet};
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::event::Event;

/// Peers the node floods each message to (the sender is not sent its own message back).
const RECIPIENTS: usize = 8;
const PAYLOAD_LEN: usize = 64;
/// The seq that prefixes every DATA plaintext.
const SEQ_LEN: usize = 4;
/// Virtual time between two messages from the sender.
const TICK: Duration = Duration::from_millis(1);
/// Interleaved rounds after criterion, and messages per target in each.
const ROUNDS: usize = 15;
const ROUND_MESSAGES: usize = 20_000;

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, host], port))
}

/// The sender: produces the node's input, one fresh sealed DATA datagram at a time.
struct Sender {
    engine: Engine,
    node: Id8,
    now: Instant,
    count: u64,
}

impl Sender {
    fn payload(count: u64) -> [u8; PAYLOAD_LEN] {
        let mut payload = [b'm'; PAYLOAD_LEN];
        payload[PAYLOAD_LEN - 8..].copy_from_slice(&count.to_be_bytes());
        payload
    }

    /// The next chat message as the node receives it, and when.
    fn next(&mut self) -> (Instant, Vec<u8>) {
        self.now += TICK;
        self.count += 1;
        self.engine
            .send(&self.node, &Self::payload(self.count))
            .expect("sender has a session with the node");
        let mut datagram = Vec::new();
        self.engine.drain_transmits(|_, bytes| {
            assert!(datagram.is_empty(), "one datagram per message");
            datagram = bytes.to_vec();
        });
        assert_eq!(datagram.len(), DATA_OVERHEAD + SEQ_LEN + PAYLOAD_LEN);
        assert_eq!(datagram[0], kind::DATA);
        (self.now, datagram)
    }
}

/// The node with its peers connected, and the sender feeding it.
struct Flood {
    node: Engine,
    sender: Sender,
    sender_addr: SocketAddr,
}

impl Flood {
    fn new(ack_data: bool) -> Flood {
        let mut net = SimNet::new(Instant::now(), SimConfig::default());
        let now = net.now();
        let config = EngineConfig {
            // Every peer joins the mesh at its handshake while the mesh is below the degree.
            mesh_degree: RECIPIENTS + 1,
            mesh_low: RECIPIENTS + 1,
            mesh_high: (RECIPIENTS + 1).max(EngineConfig::default().mesh_high),
            ack_data,
            ..EngineConfig::default()
        };
        assert!(config.flood);
        let node_addr = addr(1, 4000);
        let node = Engine::new(Identity::generate(), config, now);
        let node = net.add_host(node_addr, node).expect("a free address");
        // Recipients first, the sender last.
        let peers: Vec<HostId> = (0..=RECIPIENTS)
            .map(|i| {
                let engine = Engine::new(Identity::generate(), EngineConfig::default(), now);
                net.add_host(addr(10 + i as u8, 5000), engine)
                    .expect("a free address")
            })
            .collect();
        for &peer in &peers {
            assert!(net.host_mut(peer).dial(now, node_addr));
            net.settle().expect("the handshake ends");
        }
        assert_eq!(net.host(node).peer_count(), RECIPIENTS + 1);
        assert_eq!(
            net.host(node).peers().filter(|p| p.in_mesh).count(),
            RECIPIENTS + 1,
            "every peer is in the node's mesh"
        );
        let (&sender, recipients) = peers.split_last().expect("a sender");
        check_delivery(&mut net, node, sender, recipients, ack_data);
        let sender_addr = net.addr(sender);
        let node = net.remove_host(node).expect("the node");
        Flood {
            sender: Sender {
                engine: net.remove_host(sender).expect("the sender"),
                node: node.identity().id8(),
                now: net.now(),
                count: 1,
            },
            node,
            sender_addr,
        }
    }
}

/// Relays the sender's first message through the node and checks that it went to every
/// recipient (and a WINDOW_ACK back to the sender with `ack_data`) and that each opened it.
fn check_delivery(
    net: &mut SimNet<Engine>,
    node: HostId,
    sender: HostId,
    recipients: &[HostId],
    ack_data: bool,
) {
    let payload = Sender::payload(1);
    let node_id = net.host(node).identity().id8();
    let sent_before = net.host(node).stats().datagrams_sent;
    net.host_mut(sender)
        .send(&node_id, &payload)
        .expect("sender has a session with the node");
    net.settle().expect("the flood ends");
    let sent = net.host(node).stats().datagrams_sent - sent_before;
    assert_eq!(sent, (RECIPIENTS + usize::from(ack_data)) as u64);
    for &recipient in recipients {
        let delivered = net
            .take_events(recipient)
            .into_iter()
            .any(|e| matches!(e, Event::Data { payload: got, .. } if got == payload));
        assert!(
            delivered,
            "recipient {} got the message",
            net.addr(recipient)
        );
    }
}

/// The node's per-message work; returns the bytes it sent.
fn relay(node: &mut Engine, src: SocketAddr, now: Instant, datagram: &[u8]) -> usize {
    node.handle_datagram(now, src, datagram);
    let mut bytes = 0;
    node.drain_transmits(|_, d| bytes += d.len());
    while node.poll_event().is_some() {}
    bytes
}

/// The reference: the sessions a relay of one message needs, used bare.
struct Reference {
    source: RefSource,
    relay: RefRelay,
}

/// Seals the sender's messages for the reference (untimed).
struct RefSource {
    session: Session,
    count: u64,
}

/// The node's sessions, with the sender and with each recipient.
struct RefRelay {
    from_sender: Session,
    to_recipients: Vec<Session>,
    plain: Vec<u8>,
    frame: Vec<u8>,
}

impl Reference {
    fn new() -> Reference {
        let node = Identity::from_seed(b"chat-flood-node");
        let sender = Identity::from_seed(b"chat-flood-sender");
        let session = |a: &Identity, b: &Identity| {
            a.derive_session(b.public_key(), &b.id8(), 0)
                .expect("distinct identities")
        };
        Reference {
            source: RefSource {
                session: session(&sender, &node),
                count: 0,
            },
            relay: RefRelay {
                from_sender: session(&node, &sender),
                to_recipients: (0..RECIPIENTS)
                    .map(|i| session(&node, &Identity::from_seed(&[b'r', i as u8])))
                    .collect(),
                plain: vec![0; 2048],
                frame: vec![0; 2048],
            },
        }
    }
}

impl RefSource {
    /// The sender's next DATA frame, as the node receives it.
    fn next(&mut self) -> Vec<u8> {
        self.count += 1;
        let mut frame = vec![0u8; DATA_OVERHEAD + SEQ_LEN + PAYLOAD_LEN];
        let body = &mut frame[DATA_HEADER_LEN..DATA_HEADER_LEN + SEQ_LEN + PAYLOAD_LEN];
        body[..SEQ_LEN].copy_from_slice(&(self.count as u32).to_be_bytes());
        body[SEQ_LEN..].copy_from_slice(&Sender::payload(self.count));
        self.session.seal_data(&mut frame).expect("seal");
        frame
    }
}

impl RefRelay {
    /// One open and a seal per recipient; returns the bytes sealed.
    fn relay(&mut self, datagram: &[u8]) -> usize {
        let len = self
            .from_sender
            .open_data(&datagram[1..], &mut self.plain)
            .expect("opens");
        let frame_len = DATA_OVERHEAD + len;
        let mut bytes = 0;
        for session in &mut self.to_recipients {
            let frame = &mut self.frame[..frame_len];
            frame[DATA_HEADER_LEN..DATA_HEADER_LEN + len].copy_from_slice(&self.plain[..len]);
            session.seal_data(frame).expect("seals");
            bytes += black_box(frame).len();
        }
        bytes
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nanoseconds per message of the node relaying ROUND_MESSAGES fresh messages.
fn time_node(flood: &mut Flood) -> f64 {
    let inputs: Vec<(Instant, Vec<u8>)> =
        (0..ROUND_MESSAGES).map(|_| flood.sender.next()).collect();
    let delivered = flood.node.stats().data_delivered;
    let start = Instant::now();
    for (now, datagram) in &inputs {
        black_box(relay(&mut flood.node, flood.sender_addr, *now, datagram));
    }
    let took = start.elapsed();
    // A message the node took for a duplicate (a Bloom false positive) is not flooded.
    let relayed = flood.node.stats().data_delivered - delivered;
    assert!(
        relayed as f64 >= 0.99 * ROUND_MESSAGES as f64,
        "{relayed} relayed"
    );
    took.as_nanos() as f64 / ROUND_MESSAGES as f64
}

/// Nanoseconds per message of the reference.
fn time_reference(reference: &mut Reference) -> f64 {
    let inputs: Vec<Vec<u8>> = (0..ROUND_MESSAGES)
        .map(|_| reference.source.next())
        .collect();
    let start = Instant::now();
    for datagram in &inputs {
        black_box(reference.relay.relay(datagram));
    }
    start.elapsed().as_nanos() as f64 / ROUND_MESSAGES as f64
}

fn print_summary(node: &[f64], node_no_ack: &[f64], reference: &[f64]) {
    let ratios =
        |times: &[f64]| -> Vec<f64> { times.iter().zip(reference).map(|(t, r)| t / r).collect() };
    println!();
    println!(
        "chat_flood: {PAYLOAD_LEN} B messages relayed to {RECIPIENTS} recipients; medians of \
         {ROUNDS} interleaved rounds of {ROUND_MESSAGES} messages; ratio = median of per-round \
         ratios to the reference (target: at most 2)"
    );
    println!(
        "  {:<38} {:>10} {:>14} {:>7}",
        "", "ns/message", "ns/recipient", "ratio"
    );
    for (name, times) in [
        ("node (default: ack_data on)", node),
        ("node_no_ack (ack_data off)", node_no_ack),
    ] {
        let t = median(times);
        println!(
            "  {name:<38} {t:>10.0} {:>14.0} {:>7.2}",
            t / RECIPIENTS as f64,
            median(&ratios(times))
        );
    }
    let r = median(reference);
    println!(
        "  {:<38} {r:>10.0} {:>14.0} {:>7.2}",
        format!("reference: open + {RECIPIENTS} x seal"),
        r / RECIPIENTS as f64,
        1.0
    );
}

fn chat_flood(c: &mut Criterion) {
    let mut node = Flood::new(true);
    let mut node_no_ack = Flood::new(false);
    let mut reference = Reference::new();

    let mut group = c.benchmark_group("chat_flood");
    group.throughput(Throughput::Elements(1));
    for (name, flood) in [("node", &mut node), ("node_no_ack", &mut node_no_ack)] {
        let Flood {
            node,
            sender,
            sender_addr,
        } = flood;
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || sender.next(),
                |(now, datagram)| relay(node, *sender_addr, *now, datagram),
                BatchSize::SmallInput,
            )
        });
    }
    let Reference {
        source,
        relay: bare,
    } = &mut reference;
    group.bench_function(format!("open_plus_{RECIPIENTS}_seals"), |b| {
        b.iter_batched_ref(
            || source.next(),
            |datagram| bare.relay(datagram),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    if support::bench_mode() {
        let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        // Warm-up, then rounds rotating which target goes first.
        time_node(&mut node);
        time_node(&mut node_no_ack);
        time_reference(&mut reference);
        for round in 0..ROUNDS {
            for j in 0..3 {
                match (round + j) % 3 {
                    0 => a.push(time_node(&mut node)),
                    1 => b.push(time_node(&mut node_no_ack)),
                    _ => r.push(time_reference(&mut reference)),
                }
            }
        }
        print_summary(&a, &b, &r);
    }
}

criterion_group!(benches, chat_flood);
criterion_main!(benches);
