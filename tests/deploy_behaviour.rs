//! How the node behaves where operators deploy it (containers, Kubernetes, systemd), with
//! real node processes and curl: the metrics listener serves `/metrics` alone; `/readyz`
//! turns 503 once the node drains; Kubernetes service-link variables do not stop it; logs
//! to a pipe carry no colour codes and JSON logs have the message at the top level;
//! `public_addr = "auto"` learns the address a bootstrap node sees, and a node with no
//! public address says so; SIGHUP applies the live keys and names the ones that need a
//! restart, without showing secrets.

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use admin::get;
use http_client::curl;
use support::net::TestNet;
use support::peer::{node_command, spawn_node, spawn_node_command, spawn_node_on, ControlPeer};

/// Longest wait for a log line.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// Waits until the node's stderr holds `needle`; returns the stderr.
#[track_caller]
fn wait_log(node: &ControlPeer, needle: &str) -> String {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let text = node.stderr_text();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(node: &ControlPeer, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(node.pid() as i32, signal) }, 0);
}

/// A fresh config file under the test target directory.
fn config_file(contents: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "deploy_behaviour-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.toml");
    std::fs::write(&path, contents).unwrap();
    path
}

/// The address a listener logged it listens on: `KEY=ADDR` in the line with `message`.
#[track_caller]
fn logged_addr(node: &ControlPeer, message: &str, key: &str) -> String {
    let text = wait_log(node, message);
    let line = text.lines().find(|l| l.contains(message)).unwrap();
    let field = format!("{key}=");
    let at = line
        .find(&field)
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    line[at + field.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn metrics_listener_serves_metrics_alone() {
    let net = TestNet::new();
    let mut node = spawn_node(&net, &["--shards", "1", "--metrics-listen", "127.0.0.1:0"]);
    let admin = node.ready_port("admin_port");
    let metrics = logged_addr(&node, "metrics listening", "metrics");
    let scrape = curl(&net, &[&format!("http://{metrics}/metrics")]);
    assert_eq!(scrape.status, 200, "{scrape:?}");
    let (_, samples) = admin::prom::parse(&scrape.text());
    assert!(
        samples.iter().any(|(name, _, _)| name == "setowire_peers"),
        "no setowire_peers in {}",
        scrape.text()
    );
    for path in [
        "/api/v1/status",
        "/api/v1/config",
        "/",
        "/readyz",
        "/healthz",
    ] {
        let reply = curl(&net, &[&format!("http://{metrics}{path}")]);
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
    }
    // The admin listener still serves everything, /metrics included.
    let status = get(
        &net,
        &format!("http://127.0.0.1:{admin}/api/v1/status"),
        None,
    );
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(
        get(&net, &format!("http://127.0.0.1:{admin}/metrics"), None).status,
        200
    );
    node.quit();
}

#[test]
fn readyz_turns_503_when_the_drain_starts() {
    let net = TestNet::new();
    let grace = Duration::from_secs(1);
    let mut node = spawn_node(&net, &["--shards", "2", "--shutdown-grace-secs", "1"]);
    let mut peer = spawn_node(&net, &["--shards", "1"]);
    support::peer::connect(&mut node, &mut peer);
    let readyz = format!("http://127.0.0.1:{}/readyz", node.ready_port("admin_port"));
    assert_eq!(curl(&net, &[&readyz]).status, 200);
    signal(&node, libc::SIGTERM);
    let signalled = Instant::now();
    let mut statuses = Vec::new();
    // Until the admin listener closes (curl then gets no response: status 0).
    while signalled.elapsed() < Duration::from_secs(10) {
        let status = curl(&net, &["--max-time", "2", &readyz]).status;
        statuses.push(status);
        if status == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The peer is told to leave only after the grace: the node served it meanwhile.
    peer.wait_disconnect(&node.id8);
    let goaway = signalled.elapsed();
    assert!(node.wait_exit(Duration::from_secs(10)).success());
    assert!(goaway >= grace, "GOAWAY after {goaway:?}, before the grace");
    assert!(
        statuses.iter().filter(|&&s| s == 503).count() >= 5,
        "{statuses:?}"
    );
    assert!(
        !statuses.contains(&200),
        "ready while draining: {statuses:?}"
    );
}

#[test]
fn kubernetes_service_links_are_ignored_and_noted_once() {
    let net = TestNet::new();
    let mut cmd = node_command(&net, "127.0.0.1:0", &["--shards", "1"]);
    cmd.env("SETOWIRE_NODE_PORT", "udp://10.0.0.1:49737")
        .env("SETOWIRE_NODE_PORT_49737_UDP", "udp://10.0.0.1:49737")
        .env("SETOWIRE_NODE_SERVICE_HOST", "10.0.0.1")
        .env("SETOWIRE_NODE_SERVICE_PORT", "49737");
    let mut node = spawn_node_command(cmd);
    let text = wait_log(&node, "node started");
    let notes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ignoring Kubernetes service-link variables"))
        .collect();
    assert_eq!(notes.len(), 1, "{text}");
    assert!(
        notes[0].contains("SETOWIRE_NODE_PORT,SETOWIRE_NODE_PORT_49737_UDP,")
            && notes[0].contains("SETOWIRE_NODE_SERVICE_HOST,SETOWIRE_NODE_SERVICE_PORT"),
        "{}",
        notes[0]
    );
    assert!(node.quit().success());
}

#[test]
fn logs_to_a_pipe_have_no_colour_and_json_logs_have_the_message_on_top() {
    let net = TestNet::new();
    let mut pretty = spawn_node(&net, &["--shards", "1"]);
    let text = wait_log(&pretty, "node started");
    assert!(!text.contains('\x1b'), "escape codes in:\n{text}");
    assert!(pretty.quit().success());

    let mut json = spawn_node(&net, &["--shards", "1", "--log-format", "json"]);
    let text = wait_log(&json, "node started");
    assert!(!text.contains('\x1b'), "escape codes in:\n{text}");
    let started = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "node started")
        .unwrap_or_else(|| panic!("no JSON line with the message on top:\n{text}"));
    assert!(started.get("fields").is_none(), "{started}");
    assert_eq!(started["level"], "INFO", "{started}");
    assert_eq!(
        started["shards"], 1,
        "the event's fields are on top too: {started}"
    );
    assert!(json.quit().success());
}

#[test]
fn public_addr_auto_learns_the_address_a_bootstrap_node_sees() {
    let net = TestNet::new();
    let mut seed = spawn_node(&net, &["--shards", "1"]);
    let bootstrap = format!("127.0.0.1:{}", seed.port);
    // On a wildcard, without "auto" the node has no address to announce, and says so.
    let mut plain = spawn_node_on(&net, "0.0.0.0:0", &["--shards", "1"]);
    wait_log(&plain, "no public address: bound to a wildcard");
    let status = |node: &mut ControlPeer| {
        let admin = node.ready_port("admin_port");
        let reply = get(
            &net,
            &format!("http://127.0.0.1:{admin}/api/v1/status"),
            None,
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json()["listeners"]["public_addr"].clone()
    };
    assert_eq!(status(&mut plain), Value::Null);
    let args = [
        "--shards",
        "1",
        "--public-addr",
        "auto",
        "--bootstrap",
        &bootstrap,
    ];
    let mut auto = spawn_node_on(&net, "0.0.0.0:0", &args);
    let learnt = format!("127.0.0.1:{}", auto.port);
    wait_log(&auto, "public address learnt from the bootstrap nodes");
    assert_eq!(status(&mut auto), Value::String(learnt));
    // Loopback is private: the node warns that peers elsewhere cannot dial it.
    wait_log(&auto, "the node announces a private address");
    for node in [&mut seed, &mut plain, &mut auto] {
        assert!(node.quit().success());
    }
}

/// A node run from `file` alone (no RUST_LOG: the file's log filter decides), as an operator
/// runs it.
fn node_from_file(net: &TestNet, file: &std::path::Path) -> ControlPeer {
    let mut cmd: Command = net.command(env!("CARGO_BIN_EXE_setowire-node"));
    cmd.args(["--config", file.to_str().unwrap(), "--control", "stdio"])
        .env_remove("RUST_LOG");
    spawn_node_command(cmd)
}

/// Statuses of `n` requests to `url`, one after the other.
fn statuses(net: &TestNet, url: &str, n: usize) -> Vec<u16> {
    (0..n).map(|_| curl(net, &[url]).status).collect()
}

#[test]
fn sighup_applies_live_keys_and_names_the_ones_that_need_a_restart() {
    let net = TestNet::new();
    let base = "shards = 1\nhttp_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    let file = config_file(&format!(
        "{base}udp_listen = \"127.0.0.1:0\"\nlog_filter = \"warn\"\n\
         http_rate_per_ip = 1000\nhttp_burst_per_ip = 1000\n"
    ));
    let mut node = node_from_file(&net, &file);
    let peers = format!("http://127.0.0.1:{}/peers", node.ready_port("http_port"));
    assert_eq!(statuses(&net, &peers, 5), [200; 5]);
    let before = node.stderr_text();
    assert!(
        !before.contains("node started"),
        "info lines under warn:\n{before}"
    );

    std::fs::write(
        &file,
        format!(
            "{base}udp_listen = \"127.0.0.1:1\"\nlog_filter = \"info\"\n\
             http_rate_per_ip = 1\nhttp_burst_per_ip = 1\nadmin_token = \"tok-Zq81\"\n"
        ),
    )
    .unwrap();
    signal(&node, libc::SIGHUP);
    // Logged at info, so seen only once the new filter is in force; log_filter comes last.
    let text = wait_log(&node, "key=\"log_filter\"");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("SIGHUP")).collect();
    let line = |key: &str| {
        let key = format!("key=\"{key}\"");
        *lines
            .iter()
            .find(|l| l.contains(&key))
            .unwrap_or_else(|| panic!("no SIGHUP line for {key}:\n{text}"))
    };
    assert!(line("log_filter").contains("applied"), "{text}");
    assert!(line("http_rate_per_ip").contains("applied"), "{text}");
    assert!(line("udp_listen").contains("needs a restart"), "{text}");
    assert!(line("admin_token").contains("needs a restart"), "{text}");
    assert!(!text.contains("tok-Zq81"), "a secret in the log:\n{text}");
    // Burst 1, 1/s: of five requests in a row, the first goes through and most are refused.
    let after = statuses(&net, &peers, 5);
    assert!(
        after.iter().filter(|&&s| s == 429).count() >= 3,
        "{after:?}"
    );
    assert_eq!(after[0], 200, "{after:?}");

    // A file that no longer validates changes nothing; the node goes on.
    std::fs::write(&file, "max_peers = 0\n").unwrap();
    signal(&node, libc::SIGHUP);
    wait_log(&node, "configuration not reloaded");
    assert!(node.try_status().is_none(), "the node stopped");
    assert!(node.quit().success());
}
