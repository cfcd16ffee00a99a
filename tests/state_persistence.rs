//! Persistence (`--state-dir`) with real processes on real sockets: a node killed with
//! SIGKILL and started again on the same state directory keeps its id, still serves a DHT
//! value (for what was left of its TTL), a value a py-setowire peer stored and an HTTP
//! announcement, and dials the py-setowire peers it was connected to, so the swarm forms
//! again without them doing anything. A snapshot that is cut short, corrupt or not one at
//! all is logged and counted, and the node starts anyway; a state directory the node cannot
//! use stops it at start with a configuration error.

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use admin::prom::sum;
use admin::scrape;
use http_client::{curl, curl_from, Reply};
use support::dht::Raw;
use support::net::TestNet;
use support::peer::{node_command, spawn_node_command, ControlPeer, PyPeer};
use support::{is_event, pattern_bytes, TIMEOUT};

/// Lifetime of the DHT value and the announcement: long enough for the restart and the
/// checks after it, short enough to see them expire on the first run's clock.
const TTL_SECS: u64 = 20;
const ANNOUNCED_ID: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// A fresh, empty directory under the target directory; the node creates `state` in it.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "state-{name}-{}-{:x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A node on `udp` with its state in `state` and a snapshot every second.
fn node(net: &TestNet, udp: &str, state: &Path, extra: &[&str]) -> ControlPeer {
    let state = state.to_str().unwrap();
    let mut args = vec![
        "--state-dir",
        state,
        "--state-snapshot-interval-secs",
        "1",
        "--shards",
        "2",
    ];
    args.extend_from_slice(extra);
    spawn_node_command(node_command(net, udp, &args))
}

fn base(node: &mut ControlPeer, listener: &str) -> String {
    format!("http://127.0.0.1:{}", node.ready_port(listener))
}

fn metric(net: &TestNet, admin: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(&scrape(net, admin), name, labels)
}

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Waits until the node has written a snapshot that began after `after` (Unix seconds).
fn wait_snapshot(net: &TestNet, admin: &str, after: f64) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let last = metric(net, admin, "setowire_state_last_snapshot_time_seconds", &[]);
        if last > after {
            return;
        }
        assert!(Instant::now() < deadline, "no snapshot since {after}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until nothing holds UDP `addr`: a killed process's io_uring gives its sockets back
/// a moment after the process is gone.
fn wait_port_free(net: &TestNet, addr: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while net.run_inside(|| std::net::UdpSocket::bind(addr).is_err()) {
        assert!(Instant::now() < deadline, "{addr} never came free");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ids `GET /peers` lists to a client other than the announcer (127.0.0.1).
fn listed_ids(net: &TestNet, http: &str) -> Vec<String> {
    let reply: Reply = curl_from(net, "127.0.0.2", &[&format!("{http}/peers?limit=50")]);
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_killed_node_restarts_with_its_id_values_announcements_and_peers() {
    let net = TestNet::new();
    let dir = scratch("restart");
    let state = dir.join("state");
    let ttl = TTL_SECS.to_string();
    let extra = [
        "--dht-value-ttl-secs",
        &ttl,
        "--http-announce-ttl-secs",
        &ttl,
        "--http-peers-list",
        "announced",
    ];
    let mut first = node(&net, "127.0.0.1:0", &state, &extra);
    let udp = first.addr();
    let (http, admin) = (
        base(&mut first, "http_port"),
        base(&mut first, "admin_port"),
    );
    assert!(
        state.join("identity.key").exists(),
        "the key is kept in the state directory"
    );

    // Two py-setowire peers the node dials; they dial no one, ever.
    let mut peers: Vec<ControlPeer> = (0..2)
        .map(|_| PyPeer::spawn(&net, &[]).into_inner())
        .collect();
    for peer in &mut peers {
        first.dial(&peer.addr());
        first.wait_connection(&peer.id8);
        peer.wait_connection(&first.id8);
    }
    // A third stores a value, which the node fetches and keeps, and leaves.
    let value = pattern_bytes(12, 3000);
    let mut writer = PyPeer::spawn(&net, &[]).into_inner();
    writer.dial(&udp);
    writer.wait_connection(&first.id8);
    writer.store("kept-across-restarts", &value);
    assert_eq!(first.wait_sync("kept-across-restarts"), value);
    writer.quit();

    // A DHT value, STOREd by an address that proved itself, and an HTTP announcement.
    let udp_addr = udp.parse().unwrap();
    let raw = net.run_inside(|| Raw::bind("127.0.0.2:0", udp_addr, &"d1".repeat(20)));
    raw.prove();
    let put_at = Instant::now();
    raw.store("persisted", "dht value");
    assert_eq!(raw.find_value("persisted", 1), Some("dht value".into()));
    let body = format!(r#"{{"id":"{ANNOUNCED_ID}","ip":"127.0.0.1","port":4242}}"#);
    let reply = curl(&net, &["--data-binary", &body, &format!("{http}/announce")]);
    assert_eq!(reply.status, 200, "{reply:?}");

    wait_snapshot(&net, &admin, unix_secs());
    // Long enough after the STORE that its lifetime is seen to run on the first run's clock.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(put_at.elapsed()));
    first.kill();
    wait_port_free(&net, &udp);

    let restart_at = Instant::now();
    let mut second = node(&net, &udp, &state, &extra);
    let (http, admin) = (
        base(&mut second, "http_port"),
        base(&mut second, "admin_port"),
    );
    assert_eq!(second.id40, first.id40, "the same identity");
    raw.prove();
    assert_eq!(
        raw.find_value("persisted", 2),
        Some("dht value".into()),
        "the DHT value is still served"
    );
    assert!(
        listed_ids(&net, &http).contains(&ANNOUNCED_ID.to_owned()),
        "the announcement is still listed"
    );

    // The node dials its peers of the last run: their sessions work again.
    for peer in &mut peers {
        second.wait_connection(&peer.id8);
    }
    let reconnected = restart_at.elapsed();
    eprintln!("restart to both cached peers reconnected: {reconnected:?}");
    let hello = pattern_bytes(13, 64);
    second.broadcast(&hello);
    for peer in &mut peers {
        peer.wait_data_eq(&second.id8, &hello);
    }
    let back = pattern_bytes(14, 64);
    peers[0].send_to(&second.id8, &back);
    second.wait_data_eq(&peers[0].id8, &back);

    // A newcomer fetches the stored value: only the node has it (its writer is gone).
    let mut reader = PyPeer::spawn(&net, &[]).into_inner();
    reader.dial(&udp);
    reader.wait_connection(&second.id8);
    assert_eq!(reader.fetch("kept-across-restarts", 10_000), Ok(value));

    for (part, restored) in [("dht", 1.0), ("announcements", 1.0), ("values", 1.0)] {
        let labels = [("part", part)];
        assert_eq!(
            metric(&net, &admin, "setowire_state_restored_total", &labels),
            restored,
            "{part}"
        );
    }
    assert!(
        metric(
            &net,
            &admin,
            "setowire_state_restored_total",
            &[("part", "peers")]
        ) >= 2.0
    );
    assert_eq!(
        metric(&net, &admin, "setowire_state_restore_failures_total", &[]),
        0.0
    );

    // Both lifetimes run from the first run's STORE and announcement, not from the restart.
    let check_at = put_at + Duration::from_millis(TTL_SECS * 1000 + 500);
    std::thread::sleep(check_at.saturating_duration_since(Instant::now()));
    assert!(
        Instant::now() + Duration::from_millis(500) < restart_at + Duration::from_secs(TTL_SECS),
        "the checks after the restart took too long to tell the two lifetimes apart"
    );
    assert_eq!(raw.find_value("persisted", 3), None, "expired");
    assert!(!listed_ids(&net, &http).contains(&ANNOUNCED_ID.to_owned()));

    // Control: with the snapshot gone (the key stays), nobody dials the peers, and their
    // PINGs to the node's address alone do not bring them back.
    second.kill();
    wait_port_free(&net, &udp);
    fs::remove_file(state.join("snapshot.bin")).unwrap();
    let mut third = node(&net, &udp, &state, &extra);
    assert_eq!(third.id40, first.id40);
    third.assert_no_event(Duration::from_secs(5), |e| is_event(e, "connection"));
    let _ = fs::remove_dir_all(&dir);
}

/// Has a node store `value` and quit once its snapshot holds it; returns the node's id.
fn node_with_a_snapshot(net: &TestNet, state: &Path, value: &[u8]) -> String {
    let mut node = node(net, "127.0.0.1:0", state, &[]);
    node.store("k", value);
    let deadline = Instant::now() + TIMEOUT;
    let snapshot = state.join("snapshot.bin");
    while !fs::read(&snapshot).is_ok_and(|bytes| find(&bytes, value).is_some()) {
        assert!(
            Instant::now() < deadline,
            "the value never reached the snapshot"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = node.id40.clone();
    node.quit();
    id
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn a_bad_snapshot_is_logged_counted_and_skipped() {
    let net = TestNet::new();
    let dir = scratch("bad");
    let state = dir.join("state");
    let value = b"a value kept in the snapshot";
    let id = node_with_a_snapshot(&net, &state, value);
    let snapshot = state.join("snapshot.bin");
    let good = fs::read(&snapshot).unwrap();
    assert!(good.starts_with(b"SWNSTATE"));

    let mut flipped = good.clone();
    flipped[find(&good, value).unwrap() + 3] ^= 0x20;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("cut short", good[..good.len() / 2].to_vec(), "file"),
        ("a byte of a stored value changed", flipped, "values"),
        (
            "not a snapshot",
            b"{\"this\": \"is not one\"}".to_vec(),
            "file",
        ),
    ];
    for (case, contents, part) in cases {
        fs::write(&snapshot, &contents).unwrap();
        let mut node = node(&net, "127.0.0.1:0", &state, &["--log-format", "json"]);
        let admin = base(&mut node, "admin_port");
        assert_eq!(node.id40, id, "{case}: the key is apart from the snapshot");
        let samples = scrape(&net, &admin);
        let failures = |p: &str| {
            sum(
                &samples,
                "setowire_state_restore_failures_total",
                &[("part", p)],
            )
        };
        assert_eq!(failures(part), 1.0, "{case}");
        assert_eq!(
            sum(&samples, "setowire_state_restore_failures_total", &[]),
            1.0,
            "{case}: one failure"
        );
        let stderr = node.stderr_text();
        let logged = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|l| {
                l["level"] == "WARN"
                    && l["message"] == "snapshot part skipped: the node starts without it"
                    && l["part"] == part
                    && l["error"].as_str().is_some_and(|e| !e.is_empty())
            });
        assert!(
            logged,
            "{case}: the skip is logged at warn with its part and reason\n{stderr}"
        );
        // It goes on to write good snapshots.
        wait_snapshot(&net, &admin, unix_secs());
        let samples = scrape(&net, &admin);
        assert!(sum(&samples, "setowire_state_snapshots_total", &[]) >= 1.0);
        assert!(sum(&samples, "setowire_state_last_snapshot_bytes", &[]) > 37.0);
        assert!(
            sum(
                &samples,
                "setowire_state_last_snapshot_duration_seconds",
                &[]
            ) > 0.0
        );
        assert_eq!(
            sum(&samples, "setowire_state_snapshot_failures_total", &[]),
            0.0
        );
        node.quit();
        let rewritten = fs::read(&snapshot).unwrap();
        assert!(rewritten.starts_with(b"SWNSTATE"), "{case}");
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Runs a node on `state`, which must refuse to start with a configuration error; its
/// stderr.
fn refused_start(net: &TestNet, state: &Path) -> String {
    let output = node_command(
        net,
        "127.0.0.1:0",
        &["--state-dir", state.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn an_unusable_state_dir_stops_the_start() {
    let net = TestNet::new();
    let dir = scratch("unusable");
    let file = dir.join("a-file");
    fs::write(&file, b"x").unwrap();
    let stderr = refused_start(&net, &file.join("state"));
    assert!(stderr.contains("state_dir"), "{stderr}");

    // A directory another node runs from is refused: the two would share a key and epoch.
    let state = dir.join("state");
    let running = node(&net, "127.0.0.1:0", &state, &[]);
    let stderr = refused_start(&net, &state);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    drop(running);
    let _ = fs::remove_dir_all(&dir);
}
