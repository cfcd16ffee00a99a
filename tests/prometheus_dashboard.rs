//! The monitoring kit against the real thing: `dashboards/setowire-node.json` and
//! `deploy/{prometheus,alerts,alerts_test}.yml`.
//!
//! * promtool (Debian's `prometheus` package) checks the scrape config and the alert rules
//!   and runs the rules' unit tests.
//! * The dashboard is checked for what Grafana import and the operators rely on: the
//!   datasource and instance variables, every query filtered by instance, units, layout.
//! * A node runs with its admin listener on a free port and some load — py-setowire peers
//!   exchanging data through it and asking it for introductions, raw PINGs, DHT messages,
//!   STUN, garbage, HTTP bootstrap requests and piping transfers — while a real Prometheus server scrapes it every
//!   second, all inside the test's network. Every expression of the dashboard (panels,
//!   annotations, the instance variable) then runs through Prometheus's query API: each must
//!   parse, every metric the dashboard and the alerts name must exist, the core panels must
//!   return data, and Prometheus must evaluate every alert rule without error.
//!
//! A missing `prometheus` or `promtool` fails the tests with an install hint: CI installs
//! them (.ci/run).

#[macro_use]
mod support;
mod prometheus;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use prometheus::{http_exchange, http_get, promtool, require_tool, Prometheus};
use support::net::TestNet;
use support::peer::{connect, spawn_node, ControlPeer, PyPeer};
use support::{is_event, pattern_bytes, TIMEOUT};

/// The scrape job name the alert rules select (`job="setowire-node"`), as in
/// deploy/prometheus.yml.
const JOB: &str = "setowire-node";
/// What `$__rate_interval` stands for here: Grafana makes it at least four scrape intervals;
/// the test scrapes every second and waits for enough samples.
const RATE_INTERVAL: &str = "30s";
/// Scrapes to wait for before querying.
const MIN_SCRAPES: f64 = 6.0;
/// Longest wait for those scrapes (and for the rules to be evaluated).
const SCRAPE_WAIT: Duration = Duration::from_secs(90);

/// Panels whose every query must return data on a node with peers and traffic.
const CORE_PANELS: &[&str] = &[
    "Version",
    "Uptime",
    "I/O backend",
    "Peers",
    "Peers per shard",
    "Handshakes / s",
    "Datagrams / s",
    "Bytes / s",
    "Resident memory",
    "CPU",
    "Open file descriptors",
];

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---- the deploy files --------------------------------------------------------------------

#[test]
fn deploy_files_pass_promtool() {
    let config = repo_file("deploy/prometheus.yml");
    let rules = repo_file("deploy/alerts.yml");
    let rule_tests = repo_file("deploy/alerts_test.yml");
    let out = promtool(&["check", "config", config.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");
    let out = promtool(&["test", "rules", rule_tests.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");

    // The scrape job the rules select is the one the config defines, and every alert the
    // brief calls for is there.
    let config_text = std::fs::read_to_string(&config).unwrap();
    assert!(
        config_text.contains(&format!("job_name: {JOB}")),
        "{config_text}"
    );
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    for alert in [
        "SetowireNodeDown",
        "SetowireHighDropRate",
        "SetowirePeersAtMax",
        "SetowireHighMemory",
    ] {
        assert!(
            rules_text.contains(&format!("alert: {alert}")),
            "{alert} missing"
        );
    }
}

// ---- the dashboard, statically ---------------------------------------------------------------

fn load_dashboard() -> Value {
    let path = repo_file("dashboards/setowire-node.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested.iter());
        }
    }
    out
}

/// One PromQL expression of the dashboard and where it comes from.
#[derive(Debug, Clone)]
struct Query {
    /// Panel title, or "annotation: NAME".
    source: String,
    ref_id: String,
    expr: String,
}

fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in all_panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                source: panel["title"].as_str().unwrap_or_default().to_string(),
                ref_id: target["refId"].as_str().unwrap_or_default().to_string(),
                expr: target["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    for ann in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = ann["expr"].as_str() {
            out.push(Query {
                source: format!("annotation: {}", ann["name"].as_str().unwrap_or_default()),
                ref_id: String::new(),
                expr: expr.to_string(),
            });
        }
    }
    out
}

/// The `{...}` selectors that follow each `setowire_*` / `process_*` metric name in `expr`
/// (skipping string literals and the insides of selectors), as (name, selector or None).
fn metric_selectors(expr: &str) -> Vec<(String, Option<String>)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            // A string literal outside a selector (e.g. in label_replace): skip it.
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'{' {
            // A selector with no name in front of it ({__name__=...}): skip it.
            i = expr[i..].find('}').map_or(bytes.len(), |end| i + end + 1);
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
            {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("setowire_") || word.starts_with("process_") {
                let selector = if bytes.get(i) == Some(&b'{') {
                    let end = expr[i..].find('}').map_or(bytes.len(), |e| i + e + 1);
                    let sel = expr[i..end].to_string();
                    i = end;
                    Some(sel)
                } else {
                    None
                };
                out.push((word.to_string(), selector));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Metric names in `text` (`setowire_*`, `process_*`).
fn metric_names(text: &str) -> BTreeSet<String> {
    metric_selectors(text).into_iter().map(|(n, _)| n).collect()
}

#[test]
fn dashboard_is_importable_and_every_query_is_filtered_by_instance() {
    let d = load_dashboard();
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion {}",
        d["schemaVersion"]
    );
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    // Import gives a dashboard its own id.
    assert!(d["id"].is_null(), "id must be null, not {}", d["id"]);

    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource", "{ds}");
    assert_eq!(ds["query"], "prometheus", "{ds}");
    let inst = var("instance");
    assert_eq!(inst["type"], "query", "{inst}");
    assert_eq!(inst["datasource"]["uid"], "${datasource}", "{inst}");
    let inst_query = inst["query"]
        .as_str()
        .or_else(|| inst["query"]["query"].as_str())
        .unwrap_or_default();
    assert_eq!(
        inst_query, "label_values(setowire_build_info, instance)",
        "{inst}"
    );

    let panels = all_panels(&d);
    let mut ids = BTreeSet::new();
    let mut boxes = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "{title}: id {id} used twice");
        let pos = &panel["gridPos"];
        let (x, y, w, h) = (
            pos["x"].as_u64().unwrap(),
            pos["y"].as_u64().unwrap(),
            pos["w"].as_u64().unwrap(),
            pos["h"].as_u64().unwrap(),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {pos}");
        for (other, ox, oy, ow, oh) in &boxes {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "{title} overlaps {other}");
        }
        boxes.push((title.to_string(), x, y, w, h));
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert_eq!(panel["datasource"]["type"], "prometheus", "{title}");
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default();
        assert!(!unit.is_empty(), "{title}: no unit");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}: {t}");
            assert!(refs.insert(t["refId"].to_string()), "{title}: refId twice");
        }
    }

    let queries = dashboard_queries(&d);
    for q in &queries {
        let selectors = metric_selectors(&q.expr);
        assert!(
            !selectors.is_empty(),
            "{}: no metric in {}",
            q.source,
            q.expr
        );
        for (name, selector) in selectors {
            let ok = selector.as_deref().is_some_and(|s| {
                s.trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .any(|m| m.trim() == "instance=~\"$instance\"")
            });
            assert!(
                ok,
                "{}: {name} is not filtered by instance=~\"$instance\" in {}",
                q.source, q.expr
            );
        }
    }

    // Every panel the brief lists is there.
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Peers",
        "Peers per shard",
        "Handshakes / s",
        "Handshake latency",
        "Datagrams / s",
        "Bytes / s",
        "Drops / s by reason",
        "Relay forwards / s",
        "DHT requests / s by type",
        "DHT values and nodes",
        "HTTP bootstrap peers",
        "HTTP requests / s",
        "Piping transfers / s",
        "Piping bytes / s",
        "I/O backend",
        "CPU",
        "Resident memory",
        "Open file descriptors",
    ] {
        assert!(titles.contains(want), "no panel {want:?}");
    }
    // Every metric family the node exports is shown somewhere.
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(&q.expr)).collect();
    for family in EXPORTED_FAMILIES {
        let family_used = used
            .iter()
            .any(|u| u == family || u.strip_suffix("_bucket") == Some(family));
        assert!(family_used, "the dashboard does not show {family}");
    }
}

/// The metric families the node exports at GET /metrics.
const EXPORTED_FAMILIES: &[&str] = &[
    "setowire_peers",
    "setowire_handshakes_total",
    "setowire_datagrams_received_total",
    "setowire_datagrams_sent_total",
    "setowire_bytes_received_total",
    "setowire_bytes_sent_total",
    "setowire_frames_received_total",
    "setowire_drops_total",
    "setowire_relay_forwards_total",
    "setowire_data_delivered_total",
    "setowire_dht_requests_total",
    "setowire_dht_values",
    "setowire_dht_nodes",
    "setowire_stun_responses_total",
    "setowire_http_bootstrap_peers",
    "setowire_http_requests_total",
    "setowire_piping_transfers_total",
    "setowire_piping_bytes_total",
    "setowire_io_backend",
    "setowire_handshake_duration_seconds",
    "setowire_max_peers",
    "setowire_build_info",
    "setowire_start_time_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
];

// ---- the dashboard against a live node --------------------------------------------------------

/// The Prometheus config the test runs: the deployed job, scraped every second, and the
/// deployed alert rules.
fn prometheus_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: {JOB}\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: ['{target}']\n",
        rules = repo_file("deploy/alerts.yml").display(),
    )
}

/// Substitutes the dashboard's variables as Grafana would for one selected instance.
fn substitute(expr: &str, instance: &str) -> String {
    let out = expr
        .replace("${instance}", instance)
        .replace("$instance", instance)
        .replace("${__rate_interval}", RATE_INTERVAL)
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", "1s")
        .replace("$__range", "5m");
    assert!(!out.contains('$'), "an unknown variable is left in {out}");
    out
}

/// Raw datagrams that move the node's counters: PINGs, a DHT ping and store, a STUN Binding
/// request, and garbage (unknown type, truncated frames, bad JSON). Sent from inside `net`.
fn poke_udp(net: &TestNet, udp_port: u16, round: u64) {
    net.run_inside(|| {
        let node = SocketAddr::from((Ipv4Addr::LOCALHOST, udp_port));
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let id = pattern_bytes(7000 + round, 20);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut ping = vec![0x03];
        ping.extend_from_slice(&now_ms.to_be_bytes());
        ping.extend_from_slice(&id);

        let from = hex::encode(&id);
        let key = hex::encode(pattern_bytes(9000 + round, 20));
        let dht_ping = json!({"type": 1, "from": from, "rpcId": format!("{round:08x}")});
        let dht_store = json!({"type": 3, "from": from, "key": key, "value": format!("v{round}")});

        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        stun.extend_from_slice(&pattern_bytes(round, 12));

        let datagrams: Vec<Vec<u8>> = vec![
            ping,
            dht_ping.to_string().into_bytes(),
            dht_store.to_string().into_bytes(),
            stun,
            vec![0xEE; 40],               // unknown type
            vec![0x03, 0x01],             // truncated PING
            b"{not json at all".to_vec(), // bad DHT JSON
            vec![0xA1; 10],               // truncated HELLO
        ];
        for d in &datagrams {
            let _ = sock.send_to(d, node);
        }
        // Answer the DHT's PING (it checks an address before it keeps a value or a node from
        // there); throw everything else away.
        let mut buf = [0u8; 2048];
        while let Ok((n, src)) = sock.recv_from(&mut buf) {
            let Ok(msg) = serde_json::from_slice::<Value>(&buf[..n]) else {
                continue;
            };
            if msg["type"] == 1 {
                let pong = json!({"type": 2, "from": from, "rpcId": msg["rpcId"]});
                let _ = sock.send_to(pong.to_string().as_bytes(), src);
            }
        }
    });
}

/// RELAY_REQ (0x21): `from` id8, `to` id8, then the requester's endpoint (length-prefixed
/// IP text and port).
fn relay_req(from_id8: &str, to_id8: &str, port: u16) -> Vec<u8> {
    let ip = b"127.0.0.1";
    let mut frame = vec![0x21];
    frame.extend_from_slice(&hex::decode(from_id8).expect("id8 hex"));
    frame.extend_from_slice(&hex::decode(to_id8).expect("id8 hex"));
    frame.push(ip.len() as u8);
    frame.extend_from_slice(ip);
    frame.extend_from_slice(&port.to_be_bytes());
    frame
}

/// HTTP bootstrap requests: a listing, a malformed listing and an announcement.
fn poke_http(net: &TestNet, http_port: u16, round: u64) {
    let _ = http_get(net, http_port, "/peers");
    let _ = http_get(net, http_port, "/peers?limit=abc");
    let body = json!({"id": hex::encode(pattern_bytes(500 + round, 20)), "ip": "127.0.0.1",
                      "port": 40000 + round % 1000})
    .to_string();
    let announce = format!(
        "POST /announce HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = net.run_inside(|| http_exchange(http_port, announce.as_bytes()));
}

/// One piping transfer: a sender PUTs `len` bytes, a receiver GETs them.
#[track_caller]
fn pipe_once(net: &TestNet, http_port: u16, path: &str, len: usize) {
    let body = pattern_bytes(len as u64, len);
    let (received, sent) = net.run_inside(|| {
        thread::scope(|s| {
            let put =
                format!("PUT {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {len}\r\n\r\n");
            let mut request = put.into_bytes();
            request.extend_from_slice(&body);
            let sender = s.spawn(move || http_exchange(http_port, &request));
            let get = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let received = http_exchange(http_port, get.as_bytes());
            (received, sender.join().expect("the sender thread"))
        })
    });
    let (code, data) = received.unwrap_or_else(|e| panic!("piping receiver: {e}"));
    assert_eq!(code, 200, "piping receiver");
    assert!(data == body, "piping receiver got {} bytes", data.len());
    let (code, _) = sent.unwrap_or_else(|e| panic!("piping sender: {e}"));
    assert_eq!(code, 200, "piping sender");
}

/// Waits for a `data` event carrying `payload`, from whichever peer.
#[track_caller]
fn wait_payload(peer: &mut ControlPeer, payload: &[u8]) {
    let want = hex::encode(payload);
    peer.proc.wait_event(TIMEOUT, |e| {
        is_event(e, "data") && e["hex"] == want.as_str()
    });
}

/// Result rows of an instant query (a scalar counts as one).
fn series_count(data: &Value) -> usize {
    match data["resultType"].as_str() {
        Some("scalar") | Some("string") => 1,
        _ => data["result"].as_array().map_or(0, Vec::len),
    }
}

#[test]
fn every_dashboard_query_runs_against_a_live_node() {
    // Fail at once, with an install hint, before starting anything.
    require_tool("prometheus");
    require_tool("promtool");
    let dashboard = load_dashboard();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 20, "{} queries", queries.len());

    let net = TestNet::new();
    // Piping open: the transfers below use a generic path.
    let mut node = spawn_node(
        &net,
        &[
            "--shards",
            "2",
            "--admin-listen",
            "127.0.0.1:0",
            "--piping-open",
        ],
    );
    let admin_port = node.ready_port("admin_port");
    let http_port = node.ready_port("http_port");
    let udp_port = node.port;
    let instance = format!("127.0.0.1:{admin_port}");

    // The node serves the exposition format itself.
    let (code, exposition) = http_get(&net, admin_port, "/metrics")
        .unwrap_or_else(|e| panic!("GET /metrics on the admin listener: {e}"));
    assert_eq!(code, 200, "GET /metrics: {exposition}");
    for family in EXPORTED_FAMILIES {
        assert!(
            exposition.contains(&format!("# TYPE {family} ")),
            "GET /metrics has no {family}:\n{exposition}"
        );
    }

    // Two py-setowire peers through the node, data both ways; the node introduces them to
    // each other.
    let mut a = PyPeer::spawn(&net, &[]).into_inner();
    let mut b = PyPeer::spawn(&net, &[]).into_inner();
    connect(&mut a, &mut node);
    connect(&mut b, &mut node);
    // Matched on the payload alone: a peer may get a message first from the other peer's
    // re-flood rather than from its origin.
    let mut seq = 0u64;
    let mut exchange = |node: &mut ControlPeer, a: &mut ControlPeer, b: &mut ControlPeer| {
        seq += 1;
        let to_peers = pattern_bytes(10_000 + seq, 300);
        node.broadcast(&to_peers);
        wait_payload(a, &to_peers);
        wait_payload(b, &to_peers);
        let from_a = pattern_bytes(20_000 + seq, 2000);
        a.broadcast(&from_a);
        wait_payload(node, &from_a);
        // A asks the node to introduce it to B (RELAY_REQ): the node forwards to both.
        let request = relay_req(&a.id8, &b.id8, a.port);
        let node_addr = node.addr();
        a.send_raw(&node_addr, &request);
    };
    exchange(&mut node, &mut a, &mut b);
    a.store("metrics-test-key", &pattern_bytes(77, 3000));
    poke_udp(&net, udp_port, 0);
    poke_http(&net, http_port, 0);
    pipe_once(&net, http_port, "/metrics-test-pipe", 5000);

    let prom = Prometheus::start(&net, &prometheus_config(&instance));
    let up = format!("up{{job=\"{JOB}\",instance=\"{instance}\"}}");
    let scrapes = format!("count_over_time({up}[5m])");
    let deadline = Instant::now() + SCRAPE_WAIT;
    let mut round = 1;
    loop {
        let n = prom.scalar(&net, &scrapes).unwrap_or(0.0);
        if n >= MIN_SCRAPES && prom.scalar(&net, &up) == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus scraped {n} times in {SCRAPE_WAIT:?}, up = {:?}; targets: {}",
            prom.scalar(&net, &up),
            prom.api(&net, "/api/v1/targets")
        );
        // Keep the counters moving so rates are not all zero.
        exchange(&mut node, &mut a, &mut b);
        poke_udp(&net, udp_port, round);
        poke_http(&net, http_port, round);
        round += 1;
        thread::sleep(Duration::from_millis(300));
    }
    pipe_once(&net, http_port, "/metrics-test-pipe", 7000);
    // One more scrape after the last load.
    thread::sleep(Duration::from_millis(2500));

    // Every expression parses and runs; record what each returns.
    let mut failures = Vec::new();
    let mut report = String::new();
    let mut empty_core = Vec::new();
    for q in &queries {
        let expr = substitute(&q.expr, &instance);
        match prom.query(&net, &expr) {
            Ok(data) => {
                let n = series_count(&data);
                report.push_str(&format!(
                    "  {n:>3} series  {} {}: {expr}\n",
                    q.source, q.ref_id
                ));
                if n == 0 && CORE_PANELS.contains(&q.source.as_str()) {
                    empty_core.push(format!("{} {}: {expr}", q.source, q.ref_id));
                }
            }
            Err(e) => failures.push(format!("{} {}: {expr}\n    {e}", q.source, q.ref_id)),
        }
    }
    println!("dashboard queries against {instance}:\n{report}");
    assert!(
        failures.is_empty(),
        "queries Prometheus refused:\n{}",
        failures.join("\n")
    );
    assert!(
        empty_core.is_empty(),
        "core panels without data:\n{}\nall results:\n{report}",
        empty_core.join("\n")
    );

    // Every metric the dashboard and the alert rules name exists for this instance.
    let alerts_text = std::fs::read_to_string(repo_file("deploy/alerts.yml")).unwrap();
    let mut names: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(&q.expr)).collect();
    names.extend(metric_names(&alerts_text));
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| {
            let present = format!("count({name}{{instance=\"{instance}\"}})");
            prom.scalar(&net, &present).unwrap_or(0.0) < 1.0
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metrics named by the dashboard or the alerts that Prometheus never scraped: \
         {missing:?}"
    );

    // What the load moved, for the log.
    let mut totals = String::new();
    for family in EXPORTED_FAMILIES {
        let name = match *family {
            "setowire_handshake_duration_seconds" => "setowire_handshake_duration_seconds_count",
            other => other,
        };
        let total = prom.scalar(&net, &format!("sum({name}{{instance=\"{instance}\"}})"));
        totals.push_str(&format!("  {name} = {}\n", total.unwrap_or(f64::NAN)));
    }
    println!("totals after the load:\n{totals}");

    // The values make sense for what the test did.
    let value = |expr: &str| {
        let expr = substitute(expr, &instance);
        prom.scalar(&net, &expr)
            .unwrap_or_else(|| panic!("no value for {expr}"))
    };
    assert!(
        value("sum(setowire_peers{instance=~\"$instance\"})") >= 2.0,
        "the two py-setowire peers are not counted"
    );
    assert!(value("sum(setowire_handshakes_total{instance=~\"$instance\"})") >= 2.0);
    assert!(value("sum(setowire_datagrams_received_total{instance=~\"$instance\"})") > 0.0);
    assert!(value("sum(setowire_piping_transfers_total{instance=~\"$instance\"})") >= 2.0);
    assert!(value("process_resident_memory_bytes{instance=~\"$instance\"}") > 1e6);
    let backend = prom
        .query(
            &net,
            &substitute(
                "setowire_io_backend{instance=~\"$instance\"} == 1",
                &instance,
            ),
        )
        .unwrap();
    let in_use: Vec<&str> = backend["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["metric"]["backend"].as_str())
        .collect();
    assert!(
        matches!(in_use[..], ["io_uring"] | ["mmsg"]),
        "io backend in use: {in_use:?}"
    );
    let build = prom
        .query(
            &net,
            &substitute("setowire_build_info{instance=~\"$instance\"}", &instance),
        )
        .unwrap();
    assert_eq!(
        build["result"][0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build}"
    );

    // The instance variable: Grafana's label_values(setowire_build_info, instance).
    let values = prom.api(
        &net,
        "/api/v1/label/instance/values?match[]=setowire_build_info",
    );
    assert!(
        values["data"]
            .as_array()
            .is_some_and(|v| v.iter().any(|i| i == instance.as_str())),
        "label_values(setowire_build_info, instance) = {values}"
    );

    // Prometheus loaded the deployed alert rules and evaluates every one without error.
    let deadline = Instant::now() + SCRAPE_WAIT;
    loop {
        let rules = prom.api(&net, "/api/v1/rules");
        let list: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let healthy = list.iter().filter(|r| r["health"] == "ok").count();
        if list.len() == 4 && healthy == 4 {
            // Nothing is wrong with this node: no alert fires.
            let firing: Vec<&Value> = list
                .iter()
                .filter(|r| r["state"] == "firing")
                .copied()
                .collect();
            assert!(
                firing.is_empty(),
                "alerts firing on a healthy node: {firing:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alert rules are not all loaded and healthy: {rules}"
        );
        thread::sleep(Duration::from_millis(500));
    }

    // Everything stops: Prometheus (guard), then the peers and the node.
    drop(prom);
    for mut peer in [a, b] {
        assert!(peer.quit().success());
    }
    assert!(node.quit().success());
}
