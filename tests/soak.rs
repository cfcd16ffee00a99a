//! A bounded soak with churn: for about two minutes (`SETOWIRE_SOAK_SECS` for longer), swarms
//! of `setowire-sim` virtual peers join a 2-shard node, run mixed traffic (pings, broadcasts,
//! stores and fetches, relay requests), DHT and HTTP bootstrap work, and leave; beside them
//! real py-setowire 0.1.0 peers come and go, broadcasting and storing. The node must not
//! panic, its resident memory must stay flat once warmed up, and once every peer has left
//! each of its session tables must be back where it started.
//!
//! `SETOWIRE_SOAK_SECS=3600 cargo test --release --test soak -- --nocapture` runs an hour.

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use admin::prom::{sum, Sample};
use serde_json::Value;
use support::net::TestNet;
use support::peer::{ControlPeer, PyPeer};
use support::{is_event, pattern_bytes};

/// The soak's length unless `SETOWIRE_SOAK_SECS` says otherwise.
const DEFAULT_SOAK: Duration = Duration::from_secs(120);
/// Whatever the variable says: every loop of a test is bounded.
const LONGEST_SOAK: Duration = Duration::from_secs(24 * 3600);
/// The first part of the soak, while allocator pools and tables reach their working size.
const WARM_UP_SHARE: f64 = 0.25;
/// Virtual peers per swarm.
const SIM_PEERS: &str = "40";
/// A silent peer (a py-setowire peer killed mid-run) is dropped after this long, a tenth of
/// the default, so that the end of the soak does not wait for it.
const PEER_TIMEOUT_SECS: &str = "6";
/// How long an HTTP announcement is listed: the virtual peers of an `http` round announce
/// from one IP, whose share would otherwise stay full for the default's 10 minutes.
const ANNOUNCE_TTL_SECS: &str = "10";
/// The value store's cap: each mixed round stores dozens of values of 4 KiB.
const STORE_MAX_BYTES: &str = "1048576";
/// How long every table has to come back once the peers have left: a GOAWAY ends a session
/// 3 s later, silence after [`PEER_TIMEOUT_SECS`].
const SETTLE: Duration = Duration::from_secs(20);
const BROADCASTS_PER_PEER: usize = 10;
/// How long the node has to deliver a py-setowire peer's broadcasts.
const PY_DELIVERY: Duration = Duration::from_secs(10);
/// A value of 5 pieces.
const VALUE_LEN: usize = 4_000;

/// The variable that sets the soak's length, in seconds.
const SOAK_VAR: &str = "SETOWIRE_SOAK_SECS";

fn soak_length() -> Duration {
    let secs = std::env::var(SOAK_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    secs.map_or(DEFAULT_SOAK, Duration::from_secs)
        .min(LONGEST_SOAK)
}

/// `setowire-sim`, built beside the node by `cargo test --workspace`.
fn sim_binary() -> PathBuf {
    let sim = PathBuf::from(env!("CARGO_BIN_EXE_setowire-node")).with_file_name("setowire-sim");
    assert!(
        sim.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        sim.display()
    );
    sim
}

/// What one round of virtual peers runs, in turn: mostly everything at once.
fn scenario(round: usize) -> &'static str {
    ["mixed", "mixed", "dht", "mixed", "http", "handshake"][round % 6]
}

/// A running `setowire-sim` and where its report goes.
struct Swarm {
    scenario: &'static str,
    child: Child,
    report: PathBuf,
}

impl Swarm {
    fn start(net: &TestNet, scenario: &'static str, udp: u16, http: u16, round: usize) -> Swarm {
        let dir = std::env::temp_dir().join(format!("setowire-soak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("report directory");
        let report = dir.join(format!("round-{round}.json"));
        let mut cmd = net.command(sim_binary());
        cmd.arg(scenario)
            .arg(format!("--target=127.0.0.1:{udp}"))
            .arg(format!("--http-target=127.0.0.1:{http}"))
            .args(["--peers", SIM_PEERS, "--duration", "5", "--warmup", "2"])
            .args(["--rate", "50", "--timeout-ms", "3000", "--quiet", "--json"])
            .arg(&report)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("start setowire-sim");
        Swarm {
            scenario,
            child,
            report,
        }
    }

    /// Waits for the swarm to end (its peers say GOAWAY) and returns its report.
    fn finish(self) -> Value {
        let out = self.child.wait_with_output().expect("setowire-sim ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", self.scenario);
        let text = std::fs::read_to_string(&self.report).expect("the swarm's report");
        let _ = std::fs::remove_file(&self.report);
        serde_json::from_str(&text).expect("a JSON report")
    }
}

/// py-setowire peers that join, talk and leave during one round.
struct PyRound {
    broadcaster: ControlPeer,
    storer: ControlPeer,
    key: String,
}

impl PyRound {
    /// Two new peers dial the node; one broadcasts, the other stores a multi-piece value.
    fn start(net: &TestNet, node: &mut ControlPeer, round: usize) -> PyRound {
        let mut broadcaster = PyPeer::spawn(net, &[]).into_inner();
        let mut storer = PyPeer::spawn(net, &[]).into_inner();
        for peer in [&mut broadcaster, &mut storer] {
            support::peer::connect(peer, node);
        }
        for i in 0..BROADCASTS_PER_PEER {
            broadcaster.broadcast(&pattern_bytes((round * 100 + i) as u64, 300));
        }
        let key = format!("soak-{round}");
        storer.store(&key, &pattern_bytes(round as u64, VALUE_LEN));
        PyRound {
            broadcaster,
            storer,
            key,
        }
    }

    /// Checks what the node got, then the peers leave: one says GOAWAY, the other is killed
    /// (it goes silent, as a peer whose host vanished does).
    fn finish(mut self, node: &mut ControlPeer, round: usize, drops: impl Fn() -> String) {
        let deadline = Instant::now() + PY_DELIVERY;
        let from = self.broadcaster.id8.clone();
        let mut delivered = 0;
        for i in 0..BROADCASTS_PER_PEER {
            let want = hex::encode(pattern_bytes((round * 100 + i) as u64, 300));
            let wait = deadline.saturating_duration_since(Instant::now());
            // From the broadcaster or relayed by the other peer, whichever came first: the
            // node delivers a payload once.
            let got = node
                .proc
                .try_wait_event(wait, |e| is_event(e, "data") && e["hex"] == want.as_str());
            delivered += usize::from(got.is_some());
        }
        if delivered < BROADCASTS_PER_PEER {
            let peers = self.broadcaster.peers();
            panic!(
                "round {round}: the node got {delivered} of {BROADCASTS_PER_PEER} broadcasts \
                 from py peer {from}, whose peers are {peers:?}; the node's drops: {}\n{}",
                drops(),
                self.broadcaster.proc.report()
            );
        }
        let value = node
            .fetch(&self.key, 10_000)
            .unwrap_or_else(|e| panic!("round {round}: the node keeps {}: {e}", self.key));
        assert_eq!(value, pattern_bytes(round as u64, VALUE_LEN));
        assert!(self.broadcaster.quit().success());
        self.storer.proc.kill();
    }
}

/// Entries per engine table, summed over the shards.
fn tables(samples: &[Sample]) -> BTreeMap<String, f64> {
    let mut tables = BTreeMap::new();
    for (name, labels, value) in samples {
        if name == "setowire_engine_table_entries" {
            *tables.entry(labels["table"].clone()).or_insert(0.0) += value;
        }
    }
    tables
}

/// Tables that are not where they started, with their entries then and now.
fn grown(baseline: &BTreeMap<String, f64>, now: &BTreeMap<String, f64>) -> Vec<String> {
    now.iter()
        .filter(|(table, entries)| baseline.get(*table) != Some(entries))
        .map(|(table, entries)| format!("{table}: {:?} → {entries}", baseline.get(table)))
        .collect()
}

/// The node's drops by reason, those that happened.
fn drops(samples: &[Sample]) -> String {
    let mut by_reason = BTreeMap::new();
    for (name, labels, value) in samples {
        if name == "setowire_drops_total" && *value > 0.0 {
            *by_reason.entry(labels["reason"].clone()).or_insert(0.0) += value;
        }
    }
    format!("{by_reason:?}")
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

#[test]
fn churn_leaves_memory_flat_and_every_table_at_its_baseline() {
    let net = TestNet::new();
    let length = soak_length();
    let mut node = {
        let args = [
            "--shards",
            "2",
            "--peer-timeout-secs",
            PEER_TIMEOUT_SECS,
            // Announcements expire within the soak too, so the table they fill comes back.
            "--http-announce-ttl-secs",
            ANNOUNCE_TTL_SECS,
            // Stored values are kept until the store is full (64 MiB by default): a small
            // store fills during the warm-up, after which eviction must keep memory flat.
            "--store-max-bytes",
            STORE_MAX_BYTES,
            // The virtual peers' broadcasts reach every one of them, as chat checks.
            "--mesh-degree",
            "64",
            "--mesh-low",
            "64",
            "--mesh-high",
            "64",
            // One host is all the load: per-IP limits far above it.
            "--http-rate-per-ip",
            "1000000",
            "--http-burst-per-ip",
            "1000000",
            "--unauth-rate-per-ip",
            "1000000",
            "--unauth-burst-per-ip",
            "1000000",
        ];
        let mut cmd = support::peer::node_command(&net, "127.0.0.1:0", &args);
        // The node reads SETOWIRE_* variables as its configuration.
        cmd.env("RUST_LOG", "warn").env_remove(SOAK_VAR);
        support::peer::spawn_node_command(cmd)
    };
    let admin = format!("http://127.0.0.1:{}", node.ready_port("admin_port"));
    let http = node.ready_port("http_port");
    let udp = node.port;
    let scrape = |net: &TestNet| admin::scrape(net, &admin);
    let baseline = tables(&scrape(&net));
    assert_eq!(baseline.len(), 10, "{baseline:?}");

    let started = Instant::now();
    let warm_until = started + length.mul_f64(WARM_UP_SHARE);
    let mut rss_after_warm_up = Vec::new();
    let mut rounds = 0;
    while started.elapsed() < length {
        let scenario = scenario(rounds);
        let swarm = Swarm::start(&net, scenario, udp, http, rounds);
        let py = PyRound::start(&net, &mut node, rounds);
        let report = swarm.finish();
        py.finish(&mut node, rounds, || drops(&scrape(&net)));
        let completed = report["completed"].as_u64().unwrap_or(0);
        assert!(completed > 0, "round {rounds} ({scenario}): {report}");
        assert_eq!(report["errors"], 0, "round {rounds} ({scenario}): {report}");
        let samples = scrape(&net);
        let rss = sum(&samples, "process_resident_memory_bytes", &[]);
        let largest = tables(&samples)
            .into_iter()
            .fold(
                (String::new(), 0.0),
                |big, t| {
                    if t.1 > big.1 {
                        t
                    } else {
                        big
                    }
                },
            );
        println!(
            "soak | round {rounds:3} | {scenario:9} | {completed:5} ops, {:3} lost | RSS {:6.1} MiB | largest table {} {}",
            report["lost"],
            mib(rss),
            largest.0,
            largest.1,
        );
        if Instant::now() >= warm_until {
            rss_after_warm_up.push(rss);
        }
        rounds += 1;
    }
    // Flat: the last third of the samples after warm-up peaks no higher than the first third
    // did, give or take what one round's traffic keeps in flight.
    assert!(rss_after_warm_up.len() >= 3, "{rss_after_warm_up:?}");
    let third = rss_after_warm_up.len() / 3;
    let early = rss_after_warm_up[..third]
        .iter()
        .cloned()
        .fold(0.0, f64::max);
    let late = rss_after_warm_up[rss_after_warm_up.len() - third..]
        .iter()
        .cloned()
        .fold(0.0, f64::max);
    println!(
        "soak | {rounds} rounds in {:.0} s | RSS after warm-up: early max {:.1} MiB, late max {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(early),
        mib(late)
    );
    // Measured: 29.9 → 30.2 MiB over 5 minutes; a store that did not evict grew 1.5 MiB a
    // round.
    assert!(
        late <= early * 1.05 + 2.0 * 1024.0 * 1024.0,
        "RSS grew from {:.1} MiB to {:.1} MiB: {rss_after_warm_up:?}",
        mib(early),
        mib(late)
    );

    // Everyone has left: every table comes back to its baseline.
    let left_at = Instant::now();
    let deadline = left_at + SETTLE;
    let settled_after = loop {
        let now = tables(&scrape(&net));
        let left = grown(&baseline, &now);
        if left.is_empty() {
            break left_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "tables not back to their baseline {SETTLE:?} after the peers left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let samples = scrape(&net);
    assert_eq!(sum(&samples, "setowire_peers", &[]), 0.0);
    assert_eq!(sum(&samples, "setowire_reassembly_memory_bytes", &[]), 0.0);
    let announcements = |net: &TestNet| sum(&scrape(net), "setowire_http_bootstrap_peers", &[]);
    let deadline = Instant::now() + SETTLE;
    while announcements(&net) > 0.0 {
        assert!(Instant::now() < deadline, "announcements outlive their TTL");
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "soak | DHT: {} values, {} nodes",
        sum(&samples, "setowire_dht_values", &[]),
        sum(&samples, "setowire_dht_nodes", &[])
    );
    println!(
        "soak | every table at its baseline {:.1} s after the last peers left",
        settled_after.as_secs_f64()
    );
    let stderr = node.proc.stderr_text();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(node.quit().success());
}
