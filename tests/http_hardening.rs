//! The public HTTP listener against what an attacker on the internet does, over real HTTP on
//! loopback, with clients leaving from several 127.0.0.x source addresses (curl's
//! `--interface`, sockets bound before connecting, and Python's urllib through
//! tests/http_probe/http_probe.py where the client's own behaviour matters): idle and slow
//! connections, announcements of someone else's id, floods of ids, reflection through
//! announced addresses, oversized bodies, and piping as an open relay. Every refusal is also
//! checked in the node's Prometheus metrics.

#[macro_use]
mod support;
mod http_client;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use socket2::{Domain, Socket, Type};

use http_client::{curl, curl_command, curl_from, curl_with_stdin, finish, Reply, CURL_TIMEOUT};
use support::net::TestNet;
use support::pattern_bytes;
use support::peer::{spawn_node, ControlPeer};

/// A node with its HTTP and admin listeners on free loopback ports, listing announcements.
struct Node {
    /// Held so that the node runs (and is stopped) with the test.
    _process: ControlPeer,
    http: SocketAddr,
    admin: u16,
}

impl Node {
    #[track_caller]
    fn start(net: &TestNet, args: &[&str]) -> Node {
        let mut all = vec!["--shards", "1", "--http-peers-list", "announced"];
        all.extend_from_slice(args);
        let mut node = spawn_node(net, &all);
        let http = SocketAddr::from((Ipv4Addr::LOCALHOST, node.ready_port("http_port")));
        let admin = node.ready_port("admin_port");
        Node {
            _process: node,
            http,
            admin,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The sum of the samples of `family` whose labels include `labels` (`k="v"` pairs).
    #[track_caller]
    fn metric(&self, net: &TestNet, family: &str, labels: &[&str]) -> f64 {
        let reply = curl(net, &[&format!("http://127.0.0.1:{}/metrics", self.admin)]);
        assert_eq!(reply.status, 200, "{reply:?}");
        let text = reply.text();
        let mut found = false;
        let mut sum = 0.0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            if name == family && labels.iter().all(|l| series.contains(l)) {
                found = true;
                sum += value.parse::<f64>().unwrap_or(f64::NAN);
            }
        }
        assert!(found, "no {family}{labels:?} in\n{text}");
        sum
    }
}

fn announce_from(net: &TestNet, node: &Node, from: &str, body: &str) -> Reply {
    curl_from(
        net,
        from,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &node.url("/announce"),
        ],
    )
}

/// The `GET /peers` list as a client at `from` gets it.
#[track_caller]
fn peers_seen_from(net: &TestNet, node: &Node, from: &str) -> Vec<Value> {
    let reply = curl_from(net, from, &[&node.url("/peers?limit=200")]);
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json().as_array().cloned().expect("a JSON array")
}

fn entry<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|e| e["id"] == id)
}

/// A TCP connection to `to` from the source address `from` (inside the test's network).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// Whether the server has closed `stream` (end of stream or a reset), waiting up to `wait`.
fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// A receiver from `receiver_ip` and a sender from `sender_ip` on `url`; returns what the
/// sender and the receiver got and how long the transfer took.
#[track_caller]
fn pipe(
    net: &TestNet,
    url: &str,
    body: &[u8],
    sender_ip: &str,
    receiver_ip: &str,
) -> (Reply, Reply, Duration) {
    let receiver = curl_command(net, &["--interface", receiver_ip, url])
        .spawn()
        .expect("spawn curl");
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let sent = curl_with_stdin(net, &["--interface", sender_ip, "-T", "-", url], body);
    let got = finish(receiver, CURL_TIMEOUT);
    (sent, got, started.elapsed())
}

/// Runs tests/http_probe/http_probe.py inside the test's network; returns its JSON report.
#[track_caller]
fn probe(net: &TestNet, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http_probe/http_probe.py");
    let child = net
        .command("python3")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let out = child.wait_with_output().expect("wait for the probe");
    assert!(
        out.status.success(),
        "probe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn idle_connections_from_one_ip_leave_the_listener_to_the_others() {
    let net = TestNet::new();
    let node = Node::start(
        &net,
        &[
            "--http-max-connections",
            "64",
            "--http-max-connections-per-ip",
            "16",
            "--http-header-timeout-secs",
            "5",
        ],
    );
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let http = node.http;
    let started = Instant::now();
    // 200 idle connections from one address, over three times the whole listener's cap.
    let (mut held, refused) = net.run_inside(|| {
        let mut open: Vec<TcpStream> = (0..200)
            .filter_map(|_| connect_from(attacker, http).ok())
            .collect();
        thread::sleep(Duration::from_millis(500));
        let refused = open
            .iter_mut()
            .map(|s| closed_by_server(s, Duration::from_millis(1)))
            .filter(|closed| *closed)
            .count();
        (open, refused)
    });
    assert!(held.len() >= 16, "only {} connected", held.len());
    assert!(
        refused >= held.len() - 16,
        "{refused} of {} closed",
        held.len()
    );
    let counted = node.metric(&net, "setowire_http_connections_refused_total", &[]);
    assert!(
        counted >= (held.len() - 16) as f64,
        "{counted} refusals counted"
    );

    // Meanwhile another address bootstraps and meets a peer on the rendezvous.
    let victim = "127.0.0.3";
    let listed = curl_from(&net, victim, &["--max-time", "2", &node.url("/peers")]);
    assert_eq!(listed.status, 200, "{listed:?}");
    let body = r#"{"id":"abababababababababababababababababababab","ip":"127.0.0.3","port":40001}"#;
    assert_eq!(announce_from(&net, &node, victim, body).status, 200);
    let info =
        br#"{"id":"abababababababababababababababababababab","ip":"127.0.0.3","port":40001}"#;
    let (sent, got, _) = pipe(
        &net,
        &node.url("/p2p-0123456789ab-announce"),
        info,
        victim,
        victim,
    );
    assert_eq!((sent.status, got.status), (200, 200), "{sent:?} {got:?}");
    assert_eq!(got.body, info);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "all of it while the attacker's connections are still open"
    );

    // The connections the attacker kept are closed at the header timeout.
    let mut still_open = Vec::new();
    for stream in held.iter_mut() {
        if !closed_by_server(stream, Duration::from_millis(1)) {
            still_open.push(stream);
        }
    }
    assert_eq!(still_open.len(), 16, "the per-IP cap");
    let all_closed = net.run_inside(|| {
        still_open
            .into_iter()
            .all(|s| closed_by_server(s, Duration::from_secs(5)))
    });
    assert!(all_closed, "a connection outlived the header timeout");
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(
        node.metric(&net, "setowire_http_timeouts_total", &["type=\"header\""]),
        16.0
    );
}

#[test]
fn slow_heads_and_idle_keepalives_are_closed_but_waiting_requests_are_not() {
    let net = TestNet::new();
    let node = Node::start(
        &net,
        &[
            "--http-header-timeout-secs",
            "2",
            "--http-idle-timeout-secs",
            "1",
        ],
    );
    let http = node.http;
    // A receiver waits on the rendezvous longer than both timeouts: a request in progress.
    let url = node.url("/p2p-0123456789ab-slow");
    let receiver = curl_command(&net, &[&url]).spawn().expect("spawn curl");

    let (slow, idle_closed_after, served) = net.run_inside(|| {
        // A head dripped a byte every 300 ms: still cut at 2 s from connecting.
        let mut slow = connect_from(Ipv4Addr::new(127, 0, 0, 2), http).unwrap();
        let started = Instant::now();
        let mut cut_after = None;
        for byte in b"GET /peers HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n" {
            thread::sleep(Duration::from_millis(300));
            let cut = slow.write_all(&[*byte]).is_err()
                || closed_by_server(&mut slow, Duration::from_millis(1));
            if cut {
                cut_after = Some(started.elapsed());
                break;
            }
        }
        // A kept-alive connection: one request answered, then nothing.
        let mut idle = connect_from(Ipv4Addr::new(127, 0, 0, 3), http).unwrap();
        idle.write_all(b"GET /peers HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 12];
        idle.read_exact(&mut head).unwrap();
        let answered = Instant::now();
        let mut rest = Vec::new();
        // Reads the rest of the answer, then the end of stream when the node closes.
        let _ = idle.read_to_end(&mut rest);
        (cut_after, answered.elapsed(), head)
    });
    let cut_after = slow.expect("the slow head was never cut");
    assert!(
        cut_after >= Duration::from_millis(1500) && cut_after < Duration::from_secs(4),
        "cut after {cut_after:?}"
    );
    assert_eq!(&served, b"HTTP/1.1 200");
    assert!(
        idle_closed_after >= Duration::from_millis(900)
            && idle_closed_after < Duration::from_secs(3),
        "idle connection closed after {idle_closed_after:?}"
    );
    // The receiver has waited over 3 s: it is still there and gets its sender's data.
    let sent = curl(&net, &["--data-binary", "still here", &url]);
    assert_eq!(sent.status, 200, "{sent:?}");
    let got = finish(receiver, CURL_TIMEOUT);
    assert_eq!((got.status, got.text().as_str()), (200, "still here"));
    assert_eq!(
        node.metric(&net, "setowire_http_timeouts_total", &["type=\"header\""]),
        1.0
    );
    assert_eq!(
        node.metric(&net, "setowire_http_timeouts_total", &["type=\"idle\""]),
        1.0
    );
}

#[test]
fn an_announced_id_belongs_to_its_source_ip_until_it_expires() {
    let net = TestNet::new();
    let node = Node::start(
        &net,
        &[
            "--http-announce-ttl-secs",
            "2",
            "--http-announces-per-ip",
            "3",
        ],
    );
    let id = "cd".repeat(20);
    let owner = format!(r#"{{"id":"{id}","ip":"127.0.0.2","port":41000}}"#);
    assert_eq!(announce_from(&net, &node, "127.0.0.2", &owner).status, 200);
    // Another address announcing the same id is refused and changes nothing.
    let thief = format!(r#"{{"id":"{id}","ip":"127.0.0.3","port":42000}}"#);
    let refused = announce_from(&net, &node, "127.0.0.3", &thief);
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(
        refused.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("held by the address that announced it")),
        "{refused:?}"
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let list = peers_seen_from(&net, &node, "127.0.0.4");
    let seen = entry(&list, &id).expect("listed");
    assert_eq!(
        (seen["ip"].as_str(), seen["port"].as_u64()),
        (Some("127.0.0.2"), Some(41000))
    );
    // Its owner may refresh it.
    let moved = format!(r#"{{"id":"{id}","ip":"127.0.0.2","port":41001}}"#);
    assert_eq!(announce_from(&net, &node, "127.0.0.2", &moved).status, 200);
    let list = peers_seen_from(&net, &node, "127.0.0.4");
    assert_eq!(entry(&list, &id).unwrap()["port"], 41001);

    // One address holds at most three ids.
    for n in 1..=3u32 {
        let body = format!(
            r#"{{"id":"{n:040x}","ip":"127.0.0.5","port":{}}}"#,
            43000 + n
        );
        assert_eq!(announce_from(&net, &node, "127.0.0.5", &body).status, 200);
    }
    let fourth = format!(r#"{{"id":"{:040x}","ip":"127.0.0.5","port":43004}}"#, 4);
    let capped = announce_from(&net, &node, "127.0.0.5", &fourth);
    assert_eq!(capped.status, 429, "{capped:?}");
    assert!(capped.header("retry-after").is_some());

    // Once expired, the id is anyone's.
    thread::sleep(Duration::from_millis(2200));
    assert_eq!(announce_from(&net, &node, "127.0.0.3", &thief).status, 200);
    let list = peers_seen_from(&net, &node, "127.0.0.4");
    assert_eq!(entry(&list, &id).unwrap()["ip"], "127.0.0.3");
    assert_eq!(
        node.metric(
            &net,
            "setowire_http_announces_refused_total",
            &["reason=\"owned\""]
        ),
        1.0
    );
    assert_eq!(
        node.metric(
            &net,
            "setowire_http_announces_refused_total",
            &["reason=\"per_ip_cap\""]
        ),
        1.0
    );
}

#[test]
fn a_flood_of_ids_from_many_ips_evicts_itself_not_the_peers() {
    let net = TestNet::new();
    // 400 places shared by 21 addresses: a fair share is 19.
    let node = Node::start(&net, &["--http-max-announces", "400"]);
    let report = probe(
        &net,
        &[
            "evict",
            "--target",
            &node.http.to_string(),
            "--legit",
            "127.0.0.5",
            "--legit-ids",
            "5",
            "--observer",
            "127.0.0.6",
            "--attack-net",
            "127.0.1",
            "--attack-ips",
            "20",
            "--ids-per-ip",
            "30",
        ],
    );
    assert_eq!(report["legit_announced"], 5, "{report}");
    assert_eq!(report["attack_requests"]["accepted"], 600, "{report}");
    assert_eq!(report["legit_still_listed"], 5, "{report}");
}

#[test]
fn peers_are_listed_where_the_node_saw_them() {
    let net = TestNet::new();
    let node = Node::start(&net, &[]);
    // An address and a LAN address of the announcer's choosing.
    let id = "ef".repeat(20);
    let body = format!(
        r#"{{"id":"{id}","ip":"10.9.8.7","port":5000,"lip":"192.168.1.5","lport":5001,"nat":"open"}}"#
    );
    assert_eq!(announce_from(&net, &node, "127.0.0.2", &body).status, 200);
    // Anyone else is told the announcing request's source IP with the announced port.
    let list = peers_seen_from(&net, &node, "127.0.0.4");
    let seen = entry(&list, &id).expect("listed");
    assert_eq!(seen["ip"], "127.0.0.2");
    assert_eq!(seen["port"], 5000);
    assert!(
        seen.get("lip").is_none() && seen.get("lport").is_none(),
        "{seen}"
    );
    assert_eq!(seen["nat"], "open");

    // A loopback "victim" address is no better: others still see the source.
    let other = "12".repeat(20);
    let body = format!(r#"{{"id":"{other}","ip":"127.0.0.9","port":53}}"#);
    assert_eq!(announce_from(&net, &node, "127.0.0.2", &body).status, 200);
    let list = peers_seen_from(&net, &node, "127.0.0.4");
    assert_eq!(entry(&list, &other).unwrap()["ip"], "127.0.0.2");

    // A client behind the same NAT (the same source IP) gets the LAN addresses; what it
    // announced itself just before asking is left out, or it would dial itself.
    let list = peers_seen_from(&net, &node, "127.0.0.2");
    let seen = entry(&list, &id).expect("listed");
    assert_eq!(
        (seen["ip"].as_str(), seen["port"].as_u64()),
        (Some("10.9.8.7"), Some(5000))
    );
    assert_eq!(
        (seen["lip"].as_str(), seen["lport"].as_u64()),
        (Some("192.168.1.5"), Some(5001))
    );
    assert!(entry(&list, &other).is_none(), "its own entry: {list:?}");
    // A public LAN address is refused outright, as a public "ip" is.
    for body in [
        format!(r#"{{"id":"{other}","ip":"127.0.0.2","port":53,"lip":"8.8.8.8","lport":53}}"#),
        format!(r#"{{"id":"{other}","ip":"8.8.8.8","port":53}}"#),
    ] {
        let reply = announce_from(&net, &node, "127.0.0.2", &body);
        assert_eq!(reply.status, 403, "{body}: {reply:?}");
    }
}

#[test]
fn oversized_bodies_get_a_413_that_urllib_reads() {
    let net = TestNet::new();
    let node = Node::start(&net, &[]);
    let target = node.http.to_string();
    for (bytes, clients) in [("2000000", "40"), ("8000000", "20")] {
        let report = probe(
            &net,
            &[
                "oversize",
                "--target",
                &target,
                "--bytes",
                bytes,
                "--clients",
                clients,
            ],
        );
        assert_eq!(
            report["got_413"].as_u64().map(|n| n.to_string()).as_deref(),
            Some(clients),
            "{bytes} bytes: {report}"
        );
    }
    // A chunked body (no declared length) that grows past the limit, from curl.
    let big = pattern_bytes(1, 100_000);
    let chunked = curl_with_stdin(
        &net,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            &node.url("/announce"),
        ],
        &big,
    );
    assert_eq!(chunked.status, 413, "{chunked:?}");
    assert_eq!(chunked.header("connection"), Some("close"));
    // A client that asks before sending (curl sends Expect: 100-continue for large
    // bodies) is answered at once and sends nothing.
    let started = Instant::now();
    let asked = curl_with_stdin(
        &net,
        &[
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@-",
            &node.url("/announce"),
        ],
        &pattern_bytes(2, 3_000_000),
    );
    assert_eq!(asked.status, 413, "{asked:?}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Rendezvous paths have a small cap of their own; urllib reads that 413 too.
    let report = probe(
        &net,
        &[
            "pipe",
            "--target",
            &target,
            "--path",
            "/p2p-0123456789ab-announce",
            "--bytes",
            "1000000",
            "--timeout",
            "3",
        ],
    );
    assert_eq!(report["sender_status"], 413, "{report}");
    assert_eq!(
        node.metric(
            &net,
            "setowire_http_too_large_total",
            &["route=\"announce\""]
        ),
        62.0
    );
    assert_eq!(
        node.metric(&net, "setowire_http_too_large_total", &["route=\"piping\""]),
        1.0
    );
}

#[test]
fn an_announce_body_that_does_not_arrive_in_time_gets_408() {
    let net = TestNet::new();
    let node = Node::start(&net, &["--http-header-timeout-secs", "1"]);
    let http = node.http;
    let (answer, took) = net.run_inside(|| {
        let mut stream = TcpStream::connect(http).unwrap();
        stream
            .write_all(b"POST /announce HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":")
            .unwrap();
        let started = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    });
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn generic_piping_is_closed_by_default_and_the_rendezvous_is_not() {
    let net = TestNet::new();
    let node = Node::start(&net, &[]);
    // What py-setowire posts on its announce path: its address, a couple hundred bytes.
    let info = br#"{"id":"0123456789abcdef0123456789abcdef01234567","ip":"127.0.0.3","port":40123,"lip":"127.0.0.3","lport":40123,"nat":"unknown"}"#;
    let (sent, got, _) = pipe(
        &net,
        &node.url("/p2p-0123456789ab-announce"),
        info,
        "127.0.0.2",
        "127.0.0.3",
    );
    assert_eq!((sent.status, got.status), (200, 200), "{sent:?} {got:?}");
    assert_eq!(got.body, info);
    // Any other path: 404, for every method.
    let put = curl_with_stdin(&net, &["-T", "-", &node.url("/some-file")], b"data");
    assert_eq!(put.status, 404, "{put:?}");
    assert!(put.text().contains("only rendezvous paths"), "{put:?}");
    assert_eq!(curl(&net, &[&node.url("/some-file")]).status, 404);
    assert_eq!(
        curl(&net, &["-X", "OPTIONS", &node.url("/some-file")]).status,
        404
    );
    // The node's own pages stay, and say what is served.
    assert_eq!(curl(&net, &[&node.url("/version")]).status, 200);
    let help = curl(&net, &[&node.url("/help")]).text();
    assert!(
        help.contains("only on paths starting with '/p2p-'"),
        "{help}"
    );
    assert_eq!(node.metric(&net, "setowire_piping_closed_total", &[]), 3.0);
    let report = probe(
        &net,
        &[
            "pipe",
            "--target",
            &node.http.to_string(),
            "--path",
            "/file",
            "--bytes",
            "20000",
            "--timeout",
            "3",
        ],
    );
    assert_eq!(report["sender_status"], 404, "{report}");
    assert_eq!(report["receiver_status"], 404, "{report}");
}

#[test]
fn open_piping_is_held_to_bandwidth_caps() {
    let net = TestNet::new();
    // 200 kB/s for one IP, plenty for the node.
    let node = Node::start(
        &net,
        &[
            "--piping-open",
            "--piping-bytes-per-sec-per-ip",
            "200000",
            "--piping-bytes-per-sec-total",
            "100000000",
        ],
    );
    let body = pattern_bytes(3, 1_000_000);
    let (sent, got, took) = pipe(&net, &node.url("/file-1"), &body, "127.0.0.2", "127.0.0.3");
    assert_eq!((sent.status, got.status), (200, 200), "{sent:?}");
    assert!(got.body == body, "{} bytes arrived", got.body.len());
    // A second's worth passes at once, the other 800 kB at 200 kB/s.
    assert!(
        took >= Duration::from_millis(3500) && took < Duration::from_secs(20),
        "1 MB took {took:?}"
    );
    let throttled = node.metric(&net, "setowire_piping_throttled_bytes_total", &[]);
    assert!(
        throttled > 0.0 && throttled <= 1e6,
        "{throttled} bytes throttled"
    );

    // The node-wide cap binds transfers between other addresses together.
    let node = Node::start(
        &net,
        &[
            "--piping-open",
            "--piping-bytes-per-sec-per-ip",
            "100000000",
            "--piping-bytes-per-sec-total",
            "200000",
        ],
    );
    let half = pattern_bytes(4, 500_000);
    let took: Vec<Duration> = thread::scope(|s| {
        let runs: Vec<_> = [
            ("127.0.0.4", "127.0.0.5", "/a"),
            ("127.0.0.6", "127.0.0.7", "/b"),
        ]
        .into_iter()
        .map(|(from, to, path)| {
            let (net, url, half) = (&net, node.url(path), &half);
            s.spawn(move || {
                let (sent, got, took) = pipe(net, &url, half, from, to);
                assert_eq!((sent.status, got.status), (200, 200), "{sent:?}");
                assert!(got.body == *half, "{} bytes arrived", got.body.len());
                took
            })
        })
        .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let slowest = took.iter().max().unwrap();
    assert!(
        *slowest >= Duration::from_millis(3500) && *slowest < Duration::from_secs(20),
        "1 MB in all took {took:?}"
    );
}
