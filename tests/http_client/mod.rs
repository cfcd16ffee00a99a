//! What the HTTP tests share: a node with its HTTP listener on a free loopback port, and curl
//! (a real client) run inside the test's network, with every wait bounded.
//!
//! Include it after `mod support;` with `mod http_client;`. Not every test binary uses every
//! helper, hence the allow below.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::net::TestNet;
use crate::support::peer::{spawn_node, ControlPeer};

/// Longest any single curl run may take before the test fails.
pub const CURL_TIMEOUT: Duration = Duration::from_secs(60);

/// Our node with HTTP on `127.0.0.1:<free port>`; returns it and its base URL.
#[track_caller]
pub fn node_with_http(net: &TestNet, args: &[&str]) -> (ControlPeer, String) {
    let mut all = vec!["--http-listen", "127.0.0.1:0", "--shards", "1"];
    all.extend_from_slice(args);
    let mut node = spawn_node(net, &all);
    let port = node.ready_port("http_port");
    (node, format!("http://127.0.0.1:{port}"))
}

/// One finished HTTP exchange as curl saw it.
#[derive(Debug)]
pub struct Reply {
    /// 0 when curl got no response.
    pub status: u16,
    /// Lower-case names, in order, repeated headers repeated.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// curl's exit code.
    pub exit: i32,
    pub stderr: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// `curl -sS -i ARGS...` inside `net` (its output parsed by [`Reply`]).
pub fn curl_command(net: &TestNet, args: &[&str]) -> Command {
    let mut cmd = net.command("curl");
    // -N: write what arrives at once (stdout is a pipe), so tests can watch a stream.
    cmd.args(["-sS", "-N", "-i", "--noproxy", "*", "--max-time", "60"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs curl to completion.
#[track_caller]
pub fn curl(net: &TestNet, args: &[&str]) -> Reply {
    let child = curl_command(net, args).spawn().expect("spawn curl");
    finish(child, CURL_TIMEOUT)
}

/// curl from the source address `from` (any 127.0.0.x: each is a client of its own).
#[track_caller]
pub fn curl_from(net: &TestNet, from: &str, args: &[&str]) -> Reply {
    let mut all = vec!["--interface", from];
    all.extend_from_slice(args);
    curl(net, &all)
}

/// Starts curl in the background; collect it with [`finish`].
pub fn curl_spawn(net: &TestNet, args: &[&str]) -> Child {
    curl_command(net, args).spawn().expect("spawn curl")
}

/// curl with `body` on stdin (`-T -` or `--data-binary @-` among `args`).
#[track_caller]
pub fn curl_with_stdin(net: &TestNet, args: &[&str], body: &[u8]) -> Reply {
    let mut cmd = curl_command(net, args);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn curl");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = body.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let reply = finish(child, CURL_TIMEOUT);
    let _ = writer.join();
    reply
}

/// Waits (bounded) for a curl started with [`curl_spawn`]; kills it and fails on timeout.
#[track_caller]
pub fn finish(mut child: Child, timeout: Duration) -> Reply {
    let deadline = Instant::now() + timeout;
    // Read stdout and stderr on threads so a large body cannot block the child.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for curl") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("curl did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    parse(output)
}

/// True when curl is still running after `window` (it is waiting for something).
pub fn still_running(child: &mut Child, window: Duration) -> bool {
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait for curl").is_some() {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

fn parse(output: Output) -> Reply {
    let exit = output.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut rest: &[u8] = &output.stdout;
    let mut status = 0;
    let mut headers = Vec::new();
    // Skip interim responses (100 Continue); keep the last head.
    while rest.starts_with(b"HTTP/") {
        let Some(end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 4..];
        let mut lines = head.split("\r\n");
        status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        if status >= 200 {
            break;
        }
    }
    Reply {
        status,
        headers,
        body: rest.to_vec(),
        exit,
        stderr,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The node's peak resident memory (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM in /proc/PID/status")
}
