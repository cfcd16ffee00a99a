//! PING→PONG replies per second from the real `setowire-node` process, next to the bare
//! echo floor of `udp_echo`, in one run:
//!
//! - `echo_io_uring`, `echo_mmsg`: the echo server of `support/echo.rs`, one thread;
//! - `node_io_uring_Nshards`, `node_mmsg_Nshards`: the node with one shard per core;
//! - `node_io_uring_1shard`: the node with one shard.
//!
//! Every node runs as its own process on 127.0.0.1 (port 0, `--control stdio` for the port),
//! with the per-IP limits for unauthenticated traffic raised far above the load; all of them
//! start first and stay up until the end, so idle ones cost nothing but memory. One client
//! per target (`support/client.rs`) sends PINGs from 16 loopback source addresses in
//! sendmmsg batches with at most 256 in flight and counts PONGs.
//!
//! Criterion measures each target in turn (elements = replies). Because the load generator
//! shares the cores with the servers and this is noisy, a second phase then runs the targets
//! interleaved, rotating the order, for several rounds of one second each and prints the
//! medians and their ratio to the echo floor. `cargo test --benches` runs each target once
//! and skips that phase.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use setowire_node::io::BackendChoice;

use support::client::{Client, IN_FLIGHT};
use support::echo::Server;

/// Source addresses per client: enough that SO_REUSEPORT spreads them evenly over the shards.
const SOURCES: usize = 16;
/// Interleaved rounds after the criterion phase, and the length of each measured slice:
/// many short slices, so a burst of other work on the machine spoils few of them.
const ROUNDS: usize = 10;
const SLICE: Duration = Duration::from_millis(500);
/// Unmeasured load before each slice, so a target starts warm after the others ran.
const SLICE_WARM_UP: Duration = Duration::from_millis(150);
/// How long a node gets to print its ready line (a debug build under `cargo test` included).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Datagrams per second and burst per unauthenticated source IP: far above the load.
const UNAUTH_LIMIT: &str = "100000000";

/// A node process, killed when dropped (also when a benchmark panics).
struct NodeProcess {
    child: Child,
    /// Kept open: the node stops when its control input closes.
    _stdin: ChildStdin,
    addr: SocketAddr,
}

impl NodeProcess {
    fn start(shards: usize, backend: BackendChoice) -> Result<NodeProcess, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_setowire-node"));
        cmd.args(["--udp-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--shards", &shards.to_string()])
            .args(["--io-backend", &backend.to_string()])
            .args(["--unauth-rate-per-ip", UNAUTH_LIMIT])
            .args(["--unauth-burst-per-ip", UNAUTH_LIMIT])
            .args(["--log-filter", "warn"])
            .args(["--control", "stdio"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // The node refuses unknown SETOWIRE_* variables, and known ones would change the setup.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SETOWIRE_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the node: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut node = NodeProcess {
            child,
            _stdin: stdin,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        };
        // The first line is the ready event; the rest is read and dropped until the node
        // exits, so a full pipe never stalls it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => return Err("the node exited before it was ready".to_owned()),
            Err(_) => return Err(format!("no ready line within {READY_TIMEOUT:?}")),
        };
        let ready: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("ready line {line:?}: {e}"))?;
        let port = ready
            .get("port")
            .and_then(|p| p.as_u64())
            .filter(|_| ready["event"] == "ready")
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("not a ready line: {line}"))?;
        node.addr.set_port(port);
        Ok(node)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Responder {
    Echo(Server),
    Node(NodeProcess),
}

/// One configuration under load.
struct Target {
    name: String,
    backend: BackendChoice,
    echo: bool,
    server: Responder,
    client: Client,
    /// Replies/s of each interleaved slice.
    rates: Vec<f64>,
}

fn start_targets(cores: usize) -> Vec<Target> {
    let mut targets = Vec::new();
    for backend in [BackendChoice::IoUring, BackendChoice::Mmsg] {
        if let Some(server) = Server::start(backend) {
            targets.push((format!("echo_{backend}"), backend, Responder::Echo(server)));
        }
    }
    let mut nodes = vec![
        (BackendChoice::IoUring, cores),
        (BackendChoice::Mmsg, cores),
    ];
    if cores > 1 {
        nodes.push((BackendChoice::IoUring, 1));
    }
    for (backend, shards) in nodes {
        let plural = if shards == 1 { "" } else { "s" };
        let name = format!("node_{backend}_{shards}shard{plural}");
        match NodeProcess::start(shards, backend) {
            Ok(node) => targets.push((name, backend, Responder::Node(node))),
            Err(e) => eprintln!("node_ping: {name} skipped: {e}"),
        }
    }
    targets
        .into_iter()
        .map(|(name, backend, server)| {
            let addr = match &server {
                Responder::Echo(s) => s.addr,
                Responder::Node(n) => n.addr,
            };
            Target {
                name,
                backend,
                echo: matches!(server, Responder::Echo(_)),
                server,
                client: Client::new(addr, SOURCES),
                rates: Vec::new(),
            }
        })
        .collect()
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

/// Runs every target for ROUNDS slices, interleaved, rotating which goes first.
fn interleaved_rounds(targets: &mut [Target]) {
    let n = targets.len();
    for round in 0..ROUNDS {
        for j in 0..n {
            let target = &mut targets[(round + j) % n];
            target.client.run_for(SLICE_WARM_UP);
            let (replies, took) = target.client.run_for(SLICE);
            target
                .rates
                .push(replies as f64 / took.as_secs_f64().max(1e-9));
        }
    }
}

fn print_summary(targets: &[Target], cores: usize) {
    let echo = |backend: BackendChoice| targets.iter().find(|t| t.echo && t.backend == backend);
    // Ratios are taken round by round (the two slices ran seconds apart), then the median.
    let ratio = |t: &Target, base: Option<&Target>| match base {
        Some(base) => {
            let per_round: Vec<f64> = t
                .rates
                .iter()
                .zip(&base.rates)
                .map(|(rate, base)| rate / base.max(1e-9))
                .collect();
            format!("{:.2}", median(&per_round))
        }
        None => "-".to_owned(),
    };
    println!();
    println!(
        "node_ping: replies/s over {ROUNDS} interleaved rounds of {SLICE:?} \
         ({SOURCES} sources, {IN_FLIGHT} in flight, {cores} cores shared with the client); \
         ratios are medians of per-round ratios"
    );
    println!(
        "  {:<24} {:>9} {:>9} {:>9}  {:>6} {:>14}  {:>6} {:>8}",
        "config", "median", "min", "max", "/echo", "/echo_io_uring", "lost", "batched"
    );
    for t in targets {
        let min = t.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.rates.iter().copied().fold(0.0, f64::max);
        let stats = t.client.stats();
        println!(
            "  {:<24} {:>9.0} {:>9.0} {:>9.0}  {:>6} {:>14}  {:>6} {:>7.1}%",
            t.name,
            median(&t.rates),
            min,
            max,
            ratio(t, echo(t.backend)),
            ratio(t, echo(BackendChoice::IoUring)),
            stats.lost,
            100.0 * stats.batched as f64 / stats.replies.max(1) as f64,
        );
    }
}

fn node_ping(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut targets = start_targets(cores);
    let mut group = c.benchmark_group("node_ping");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for target in targets.iter_mut() {
        let client = &mut target.client;
        group.bench_function(target.name.as_str(), |b| {
            b.iter_custom(|iters| client.run(iters))
        });
    }
    group.finish();
    // `cargo test --benches` runs each benchmark once: no time for the rounds.
    if support::bench_mode() && !targets.is_empty() {
        interleaved_rounds(&mut targets);
        print_summary(&targets, cores);
    }
    for target in targets {
        match target.server {
            Responder::Echo(server) => {
                let stats = server.stop();
                let errors = stats.send_errors.total();
                if errors > 0 {
                    eprintln!("node_ping: {} had {errors} send errors", target.name);
                }
            }
            Responder::Node(node) => drop(node),
        }
    }
}

criterion_group!(benches, node_ping);
criterion_main!(benches);
