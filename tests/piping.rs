//! The piping-server compatible rendezvous, driven with curl: both arrival orders, 100 MB
//! streamed with matching SHA-256 at both ends and bounded node memory, header pass-through,
//! refusals, reserved paths, caps, the rendezvous FIFO and cleanup of requests that leave.
//! Generic piping is closed by default, so the nodes here open it (`--piping-open`) except
//! where only rendezvous paths are used; tests/http_hardening.rs covers the closed node.

#[macro_use]
mod support;
mod http_client;

use std::io::{Read, Write};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use http_client::{
    curl, curl_command, curl_spawn, curl_with_stdin, finish, node_with_http, peak_rss,
    still_running, Reply, CURL_TIMEOUT,
};
use support::net::TestNet;

/// Time for a request to reach the node and start waiting.
const SETTLE: Duration = Duration::from_millis(400);

/// Reads from `from` until what was read ends with `marker` (at most 4 KiB).
fn read_until(from: &mut impl Read, marker: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(marker) {
        assert!(seen.len() < 4096, "no {marker:?} in {seen:?}");
        from.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
    seen
}

/// A node with generic piping open on every path (it is closed by default).
#[track_caller]
fn open_node(net: &TestNet, args: &[&str]) -> (support::peer::ControlPeer, String) {
    let mut all = vec!["--piping-open"];
    all.extend_from_slice(args);
    node_with_http(net, &all)
}

fn lines(reply: &Reply) -> Vec<String> {
    reply.text().lines().map(str::to_owned).collect()
}

#[test]
fn sender_first_streams_progress_and_passes_headers() {
    let net = TestNet::new();
    let (_node, base) = open_node(&net, &[]);
    let url = format!("{base}/hello");
    let mut sender = curl_command(
        &net,
        &[
            "-T",
            "-",
            "-H",
            "Content-Type: text/html; charset=utf-8",
            "-H",
            "Content-Disposition: attachment; filename=\"a.txt\"",
            "-H",
            "X-Piping: one",
            "-H",
            "X-Piping: two",
            &url,
        ],
    );
    sender.stdin(Stdio::piped());
    let mut sender = sender.spawn().unwrap();
    let mut stdin = sender.stdin.take().unwrap();
    stdin.write_all(b"hello, ").unwrap();
    // The sender is answered at once, before any receiver (after a 100 Continue).
    let head = read_until(sender.stdout.as_mut().unwrap(), b"HTTP/1.1 200");
    assert!(head.starts_with(b"HTTP/1.1 100 Continue\r\n"), "{head:?}");
    let receiver = curl_spawn(&net, &[&url]);
    thread::sleep(SETTLE);
    stdin.write_all(b"piping").unwrap();
    drop(stdin);
    let got = finish(receiver, CURL_TIMEOUT);
    let sent = finish(sender, CURL_TIMEOUT);
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.text(), "hello, piping");
    // text/html is served as text/plain so a browser does not render it.
    assert_eq!(
        got.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        got.header("content-disposition"),
        Some("attachment; filename=\"a.txt\"")
    );
    assert_eq!(got.header_all("x-piping"), ["one", "two"]);
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        got.header("access-control-expose-headers"),
        Some("X-Piping")
    );
    assert_eq!(got.header("x-robots-tag"), Some("none"));
    // The sender's reply, minus what was read above, is the progress log.
    assert_eq!(sent.status, 0, "head already consumed");
    let log = format!("HTTP/1.1 200{}", sent.text());
    assert!(log.contains("content-type: text/plain"), "{log}");
    let body = log.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(
        body,
        "[INFO] Waiting for 1 receiver(s)...\n\
         [INFO] A receiver was connected.\n\
         [INFO] Start sending to 1 receiver(s)!\n\
         [INFO] Sent successfully!\n\
         [INFO] All receiver(s) was/were received successfully.\n"
    );
}

#[test]
fn receiver_first_waits_without_headers() {
    let net = TestNet::new();
    let (_node, base) = open_node(&net, &[]);
    let url = format!("{base}/later");
    let mut receiver = curl_spawn(&net, &[&url]);
    assert!(still_running(&mut receiver, SETTLE), "the receiver waits");
    // No response head yet: nothing on curl's stdout.
    let sent = curl(
        &net,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "payload",
            &url,
        ],
    );
    let got = finish(receiver, CURL_TIMEOUT);
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "payload");
    assert_eq!(got.header("content-length"), Some("7"));
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("x-piping"), None);
    assert_eq!(got.header("access-control-expose-headers"), None);
    assert_eq!(sent.status, 200);
    assert_eq!(
        lines(&sent),
        [
            "[INFO] Waiting for 1 receiver(s)...",
            "[INFO] 1 receiver(s) has/have been connected.",
            "[INFO] Start sending to 1 receiver(s)!",
            "[INFO] Sent successfully!",
            "[INFO] All receiver(s) was/were received successfully.",
        ]
    );
}

/// 100 MB of pseudo-random bytes made on the fly, written to `out`; returns their SHA-256.
fn write_stream(mut out: impl Write, len: u64) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        hash.update(&chunk[..n]);
        if out.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    hash.finalize().into()
}

/// Streams `len` bytes from a curl sender to a curl receiver; returns (sent hash, received
/// hash, received length).
fn stream_through(
    net: &TestNet,
    base: &str,
    path: &str,
    len: u64,
    sender_first: bool,
) -> ([u8; 32], [u8; 32], u64) {
    let url = format!("{base}{path}");
    let start_receiver = || {
        let mut cmd = net.command("curl");
        cmd.args(["-sS", "--noproxy", "*", "--max-time", "120", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    let mut receiver = (!sender_first).then(start_receiver);
    if receiver.is_some() {
        thread::sleep(SETTLE);
    }
    let mut sender = net.command("curl");
    sender
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "120",
            "-T",
            "-",
            &url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut sender = sender.spawn().unwrap();
    let stdin = sender.stdin.take().unwrap();
    let writer = thread::spawn(move || write_stream(stdin, len));
    if receiver.is_none() {
        thread::sleep(SETTLE);
        receiver = Some(start_receiver());
    }
    let mut receiver = receiver.unwrap();
    let mut out = receiver.stdout.take().unwrap();
    let mut hash = Sha256::new();
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                hash.update(&buf[..n]);
                got += n as u64;
            }
        }
    }
    let sent_hash = writer.join().unwrap();
    assert!(receiver.wait().unwrap().success());
    let mut log = String::new();
    sender
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(sender.wait().unwrap().success());
    assert!(
        log.ends_with("[INFO] All receiver(s) was/were received successfully.\n"),
        "{log}"
    );
    (sent_hash, hash.finalize().into(), got)
}

#[test]
fn hundred_megabytes_stream_in_both_orders_without_buffering() {
    const LEN: u64 = 100_000_000;
    let net = TestNet::new();
    let (node, base) = open_node(
        &net,
        &[
            "--piping-max-body-bytes",
            "200000000",
            "--piping-bytes-per-sec-per-ip",
            "1000000000000",
            "--piping-bytes-per-sec-total",
            "1000000000000",
        ],
    );
    let before = peak_rss(node.pid());
    for (path, sender_first) in [("/big-1", true), ("/big-2", false)] {
        let (sent, received, len) = stream_through(&net, &base, path, LEN, sender_first);
        assert_eq!(len, LEN, "{path}");
        assert_eq!(sent, received, "{path}: SHA-256 differs");
    }
    // Streamed, not held: the node's peak memory grew by far less than one body.
    let grown = peak_rss(node.pid()).saturating_sub(before);
    assert!(grown < 32 << 20, "peak RSS grew by {grown} bytes");
}

#[test]
fn second_sender_and_receiver_are_refused() {
    let net = TestNet::new();
    let (_node, base) = open_node(&net, &[]);
    let url = format!("{base}/busy");
    let mut first = curl_command(&net, &["-T", "-", &url]);
    first.stdin(Stdio::piped());
    let mut first = first.spawn().unwrap();
    let mut first_stdin = first.stdin.take().unwrap();
    first_stdin.write_all(b"first").unwrap();
    thread::sleep(SETTLE);
    let second = curl_with_stdin(&net, &["-T", "-", &url], b"second");
    assert_eq!(second.status, 400, "{second:?}");
    assert_eq!(
        second.text(),
        "[ERROR] Another sender has been connected on '/busy'.\n"
    );
    assert_eq!(second.header("access-control-allow-origin"), Some("*"));
    let second = curl(&net, &["--data-binary", "x", &format!("{base}/busy")]);
    assert_eq!(second.status, 400, "POST too: {second:?}");

    // A receiver takes the first sender's stream; while it runs the path is established.
    let receiver = curl_spawn(&net, &[&url]);
    thread::sleep(SETTLE);
    let late = curl(&net, &[&url]);
    assert_eq!(late.status, 400, "{late:?}");
    assert_eq!(
        late.text(),
        "[ERROR] Connection on '/busy' has been established already.\n"
    );
    drop(first_stdin);
    assert_eq!(finish(receiver, CURL_TIMEOUT).text(), "first");
    let _ = finish(first, CURL_TIMEOUT);

    // Two receivers waiting on one path: the second is refused.
    let mut waiting = curl_spawn(&net, &[&format!("{base}/two")]);
    assert!(still_running(&mut waiting, SETTLE));
    let second = curl(&net, &[&format!("{base}/two")]);
    assert_eq!(second.status, 400, "{second:?}");
    assert_eq!(
        second.text(),
        "[ERROR] The number of receivers has reached limits.\n"
    );
    let sent = curl(&net, &["--data-binary", "ok", &format!("{base}/two")]);
    assert_eq!(sent.status, 200);
    assert_eq!(finish(waiting, CURL_TIMEOUT).text(), "ok");
}

#[test]
fn reserved_paths_methods_and_preflight() {
    let net = TestNet::new();
    let (_node, base) = open_node(&net, &[]);
    let index = curl(&net, &[&format!("{base}/")]);
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("text/html"));
    let noscript = curl(&net, &[&format!("{base}/noscript")]);
    assert_eq!(noscript.status, 200);
    assert!(noscript.header("content-security-policy").is_some());
    let version = curl(&net, &[&format!("{base}/version")]);
    assert_eq!(version.status, 200);
    assert!(version.text().starts_with("setowire-node "), "{version:?}");
    let help = curl(&net, &[&format!("{base}/help")]);
    assert!(
        help.text()
            .contains(&format!("curl -T myfile {base}/mypath")),
        "{help:?}"
    );
    assert_eq!(curl(&net, &[&format!("{base}/favicon.ico")]).status, 204);
    let robots = curl(&net, &[&format!("{base}/robots.txt")]);
    assert_eq!((robots.status, robots.body.len()), (404, 0));
    let head = curl(&net, &["-I", &format!("{base}/version")]);
    assert_eq!(head.status, 200);

    for path in ["/", "/version", "/help"] {
        let reply = curl(&net, &["--data-binary", "x", &format!("{base}{path}")]);
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(
            reply.text(),
            format!("[ERROR] Cannot send to the reserved path '{path}'. (e.g. '/mypath123')\n")
        );
    }
    for method in ["DELETE", "PATCH", "HEAD"] {
        let mut args = vec!["-X", method, ""];
        let url = format!("{base}/some-path");
        args[2] = &url;
        if method == "HEAD" {
            args = vec!["-I", &url];
        }
        let reply = curl(&net, &args);
        assert_eq!(reply.status, 405, "{method}: {reply:?}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD, POST, PUT, OPTIONS"));
    }
    let preflight = curl(
        &net,
        &[
            "-X",
            "OPTIONS",
            "-H",
            "Access-Control-Request-Private-Network: true",
            &format!("{base}/some-path"),
        ],
    );
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, HEAD, POST, PUT, OPTIONS")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("Content-Type, Content-Disposition, X-Piping")
    );
    assert_eq!(
        preflight.header("access-control-allow-private-network"),
        Some("true")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("86400"));

    let ranged = curl(
        &net,
        &[
            "-H",
            "Content-Range: bytes 0-0/1",
            "--data-binary",
            "x",
            &format!("{base}/r"),
        ],
    );
    assert_eq!(ranged.status, 400);
    assert_eq!(
        ranged.text(),
        "[ERROR] Content-Range is not supported for now in POST\n"
    );
    let worker = curl(
        &net,
        &["-H", "Service-Worker: script", &format!("{base}/sw")],
    );
    assert_eq!(worker.status, 400);
    for n in ["0", "2", "x"] {
        let reply = curl(&net, &[&format!("{base}/n?n={n}")]);
        assert_eq!(reply.status, 400, "n={n}");
        let reply = curl(&net, &["--data-binary", "x", &format!("{base}/n?n={n}")]);
        assert_eq!(reply.status, 400, "n={n}");
    }
    let long = format!("{base}/{}", "a".repeat(2000));
    assert_eq!(curl(&net, &[&long]).status, 414);
}

#[test]
fn caps_are_answered_with_status_codes() {
    let net = TestNet::new();
    let (_node, base) = open_node(
        &net,
        &[
            "--piping-max-body-bytes",
            "1000",
            "--piping-max-paths",
            "2",
            "--piping-max-waiting-per-path",
            "2",
            "--piping-idle-timeout-secs",
            "1",
        ],
    );
    // A declared body over the cap: 413 at once.
    let big = vec![b'x'; 2000];
    let reply = curl_with_stdin(&net, &["--data-binary", "@-", &format!("{base}/big")], &big);
    assert_eq!(reply.status, 413, "{reply:?}");
    // A chunked body that grows past the cap is cut off.
    let receiver = curl_spawn(&net, &[&format!("{base}/chunked")]);
    thread::sleep(SETTLE);
    let sent = curl_with_stdin(&net, &["-T", "-", &format!("{base}/chunked")], &big);
    let got = finish(receiver, CURL_TIMEOUT);
    assert!(got.body.len() <= 1000 && got.exit != 0, "{got:?}");
    assert!(
        sent.text()
            .contains("[ERROR] The body exceeds 1000 bytes; the transfer was stopped."),
        "{sent:?}"
    );

    // Unpaired requests wait at most the idle timeout: a receiver gets 408, a sender's log
    // says so and ends.
    let started = Instant::now();
    let alone = curl(&net, &[&format!("{base}/alone")]);
    assert_eq!(alone.status, 408, "{alone:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let alone = curl(&net, &["--data-binary", "x", &format!("{base}/alone")]);
    assert_eq!(
        lines(&alone),
        [
            "[INFO] Waiting for 1 receiver(s)...",
            "[ERROR] No receiver came within 1 s."
        ]
    );

    // Two paths in use at most.
    let a = curl_spawn(&net, &[&format!("{base}/a")]);
    let b = curl_spawn(&net, &[&format!("{base}/b")]);
    thread::sleep(Duration::from_millis(200));
    let third = curl(&net, &[&format!("{base}/c")]);
    assert_eq!(third.status, 503, "{third:?}");
    assert_eq!(
        third.text(),
        "[ERROR] Too many paths are in use; try again later.\n"
    );
    assert_eq!(finish(a, CURL_TIMEOUT).status, 408);
    assert_eq!(finish(b, CURL_TIMEOUT).status, 408);

    // Two waiting senders per rendezvous path at most.
    let path = format!("{base}/p2p-cap-announce");
    let s1 = curl_spawn(&net, &["--data-binary", "1", &path]);
    let s2 = curl_spawn(&net, &["--data-binary", "2", &path]);
    thread::sleep(Duration::from_millis(200));
    let s3 = curl(&net, &["--data-binary", "3", &path]);
    assert_eq!(s3.status, 503, "{s3:?}");
    assert_eq!(
        s3.text(),
        "[ERROR] Too many senders are waiting on '/p2p-cap-announce'.\n"
    );
    let _ = finish(s1, CURL_TIMEOUT);
    let _ = finish(s2, CURL_TIMEOUT);
}

#[test]
fn rendezvous_paths_queue_many_peers_in_order() {
    let net = TestNet::new();
    // Generic piping stays closed: the rendezvous prefix is served all the same.
    let (_node, base) = node_with_http(&net, &[]);
    let path = format!("{base}/p2p-0123456789ab-announce");
    let info = |n: u32| {
        format!(
            r#"{{"id":"{n:040x}","ip":"127.0.0.1","port":{}}}"#,
            9000 + n
        )
    };
    // Three peers announce at once, as py-setowire peers do; each is answered at once.
    let mut senders = Vec::new();
    for n in 1..=3 {
        let sender = curl_spawn(
            &net,
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &info(n),
                &path,
            ],
        );
        senders.push(sender);
        thread::sleep(Duration::from_millis(150));
    }
    // Receivers get them oldest first.
    for n in 1..=3 {
        let got = curl(&net, &[&path]);
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), info(n));
        assert_eq!(got.header("content-type"), Some("application/json"));
    }
    for sender in senders {
        assert!(lines(&finish(sender, CURL_TIMEOUT))
            .contains(&"[INFO] All receiver(s) was/were received successfully.".to_owned()));
    }
    // Receivers queue too, and are served oldest first.
    let mut receivers = Vec::new();
    for _ in 0..3 {
        receivers.push(curl_spawn(&net, &[&path]));
        thread::sleep(Duration::from_millis(150));
    }
    for n in 4..=6 {
        let sent = curl(&net, &["--data-binary", &info(n), &path]);
        assert_eq!(sent.status, 200);
    }
    for (receiver, n) in receivers.into_iter().zip(4..=6) {
        assert_eq!(finish(receiver, CURL_TIMEOUT).text(), info(n));
    }
}

#[test]
fn requests_that_leave_before_pairing_free_their_place() {
    let net = TestNet::new();
    let (_node, base) = open_node(&net, &[]);
    let url = format!("{base}/leaving");
    // A receiver that gives up: the next one is not refused as a second receiver.
    let mut gone = curl_spawn(&net, &[&url]);
    assert!(still_running(&mut gone, SETTLE));
    gone.kill().unwrap();
    gone.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let next = loop {
        let mut next = curl_spawn(&net, &[&url]);
        if still_running(&mut next, SETTLE) {
            break next;
        }
        assert!(
            Instant::now() < deadline,
            "the path stays taken by a receiver that left"
        );
    };
    let sent = curl(&net, &["--data-binary", "to the one still here", &url]);
    assert_eq!(sent.status, 200);
    assert_eq!(finish(next, CURL_TIMEOUT).text(), "to the one still here");

    // A sender that gives up (hyper does not read its connection until a receiver comes; the
    // node checks waiting senders' connections every second): the next sender is not
    // refused, and a receiver gets the new sender's data rather than a dead stream.
    let mut gone = curl_command(&net, &["-T", "-", &url]);
    gone.stdin(Stdio::piped());
    let mut gone = gone.spawn().unwrap();
    read_until(
        gone.stdout.as_mut().unwrap(),
        b"Waiting for 1 receiver(s)...\n",
    );
    gone.kill().unwrap();
    gone.wait().unwrap();
    thread::sleep(Duration::from_millis(1500));
    let mut sender = curl_command(&net, &["-T", "-", &url]);
    sender.stdin(Stdio::piped());
    let mut sender = sender.spawn().unwrap();
    let mut stdin = sender.stdin.take().unwrap();
    stdin.write_all(b"second sender").unwrap();
    drop(stdin);
    thread::sleep(SETTLE);
    let got = curl(&net, &[&url]);
    assert_eq!(got.text(), "second sender");
    let log = finish(sender, CURL_TIMEOUT);
    assert!(
        log.text()
            .ends_with("[INFO] All receiver(s) was/were received successfully.\n"),
        "{log:?}"
    );
}

#[test]
fn sigterm_ends_waiting_requests_and_exits_in_time() {
    let net = TestNet::new();
    let (mut node, base) = open_node(&net, &[]);
    let mut waiting = curl_spawn(&net, &[&format!("{base}/waiting")]);
    assert!(still_running(&mut waiting, SETTLE));
    let started = Instant::now();
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(node.pid() as i32, libc::SIGTERM) }, 0);
    let reply = finish(waiting, CURL_TIMEOUT);
    assert_eq!(reply.status, 503, "{reply:?}");
    let status = node.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
