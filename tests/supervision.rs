//! A shard that panics stops the whole node: the debug build injects the panic when
//! `SETOWIRE_TEST_FAULT` asks for one, and the node must say on stderr which thread failed
//! and why, answer `/readyz` with 503 until it is gone, and exit non-zero within a second
//! (so that systemd or Kubernetes restart it).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::net::TestNet;
use support::peer::{node_command, spawn_node_command};
use support::TIMEOUT;

/// When the injected panic fires, after the shards start: time enough to see the node ready.
const PANIC_AFTER_MS: u64 = 1500;
/// The panic message the fault raises.
const PANIC_MESSAGE: &str = "injected fault: shard panic after 1500 ms";

/// One `/readyz` answer: when it came, its status and body.
type Answer = (Instant, u16, String);

/// `GET /readyz` on a fresh connection; `None` when nothing answers.
fn readyz(addr: SocketAddr) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Some((status, body.to_owned()))
}

/// Asks `/readyz` as fast as it answers until `done`; every answer, in order.
fn poll_readyz(addr: SocketAddr, done: &AtomicBool) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !done.load(Ordering::Relaxed) {
        match readyz(addr) {
            Some((status, body)) => answers.push((Instant::now(), status, body)),
            None => thread::sleep(Duration::from_millis(1)),
        }
    }
    answers
}

#[test]
fn a_panicking_shard_stops_the_node_with_an_error() {
    let net = TestNet::new();
    let mut cmd = node_command(&net, "127.0.0.1:0", &["--shards", "2"]);
    cmd.env(
        "SETOWIRE_TEST_FAULT",
        format!("shard-panic:1:{PANIC_AFTER_MS}"),
    );
    let mut node = spawn_node_command(cmd);
    let admin_port = node.ready_port("admin_port");
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));

    let done = AtomicBool::new(false);
    let (answers, panic_seen, exit) = thread::scope(|scope| {
        let poller = scope.spawn(|| net.run_inside(|| poll_readyz(admin, &done)));
        // The panic is on stderr as soon as the shard raises it.
        let deadline = Instant::now() + TIMEOUT;
        let mut panic_seen = None;
        let exit = loop {
            let now = Instant::now();
            if let Some(status) = node.proc.try_status() {
                break Some((now, status));
            }
            if panic_seen.is_none() && node.proc.stderr_text().contains(PANIC_MESSAGE) {
                panic_seen = Some(now);
            }
            if now >= deadline {
                break None;
            }
            thread::sleep(Duration::from_millis(2));
        };
        done.store(true, Ordering::Relaxed);
        (poller.join().expect("poller"), panic_seen, exit)
    });

    let report = node.proc.report();
    let (exited_at, status) = exit.unwrap_or_else(|| panic!("the node did not exit\n{report}"));
    assert!(
        status.code() == Some(1),
        "the node must exit with status 1, not {status}\n{report}"
    );
    let panicked_at = panic_seen.unwrap_or_else(|| panic!("no panic message\n{report}"));
    let took = exited_at - panicked_at;
    assert!(
        took < Duration::from_secs(1),
        "exited {took:?} after the panic\n{report}"
    );
    // The supervisor names the thread and what it died of.
    let stderr = node.proc.stderr_text();
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("shard-1")
                && line.contains(&format!("panicked: {PANIC_MESSAGE}"))),
        "no log line naming shard-1 and the panic\n{report}"
    );

    // Ready once the shards run; from the panic on, 503 saying why until the node is gone.
    let ready_from = answers
        .iter()
        .position(|(_, status, _)| *status == 200)
        .unwrap_or_else(|| panic!("/readyz never answered 200\n{report}"));
    let answers = &answers[ready_from..];
    let unready_from = answers
        .iter()
        .position(|(_, status, _)| *status != 200)
        .unwrap_or_else(|| panic!("/readyz never answered 503 ({} answers)", answers.len()));
    for (_, status, body) in &answers[unready_from..] {
        assert_eq!(*status, 503, "{body}");
        assert!(
            body.contains(&format!("shard-1 panicked: {PANIC_MESSAGE}")),
            "{body}"
        );
    }
}
