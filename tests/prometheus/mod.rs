//! A real Prometheus server and promtool (Debian's `prometheus` package) for the monitoring
//! tests, and a small HTTP/1.0 client to talk to Prometheus and the node from inside the
//! test's network.
//!
//! Include it after `mod support;` with `mod prometheus;`. Missing binaries fail the test
//! with a message saying what to install: these tests are never skipped.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::net::TestNet;

/// Longest wait for Prometheus to become ready after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for Prometheus to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest any one HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a promtool run may take.
const PROMTOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// The path of `program` on `PATH`; fails the test with an install hint when it is absent.
#[track_caller]
pub fn require_tool(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "`{program}` is not installed (not found on PATH). The monitoring tests run a real \
         Prometheus server and promtool: install Debian's `prometheus` package \
         (`apt-get install prometheus`; .ci/run installs it)."
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `promtool ARGS...` (bounded) and returns its combined output; fails the test when
/// it exits non-zero.
#[track_caller]
pub fn promtool(args: &[&str]) -> String {
    let promtool = require_tool("promtool");
    let mut cmd = Command::new(&promtool);
    cmd.args(args);
    let (status, output) = run_bounded(cmd, PROMTOOL_TIMEOUT);
    assert!(
        status == Some(0),
        "`promtool {}` failed ({}):\n{output}",
        args.join(" "),
        status.map_or("timed out".to_string(), |c| format!("exit {c}"))
    );
    output
}

/// Runs `cmd` with stdout and stderr into one temp file; `None` when it had to be killed.
fn run_bounded(mut cmd: Command, timeout: Duration) -> (Option<i32>, String) {
    let dir = TempDir::new("promtool");
    let log = dir.path().join("output.log");
    let out = File::create(&log).expect("create the output file");
    let err = out.try_clone().expect("clone the output file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status.code().unwrap_or(-1)),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    (status, fs::read_to_string(&log).unwrap_or_default())
}

/// A directory under Cargo's test tmpdir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A Prometheus server running inside a test's network on a free loopback port, with its
/// own configuration and TSDB in a temp directory. Stopped (SIGTERM, then SIGKILL) and its
/// directory removed on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    dir: TempDir,
}

impl Prometheus {
    /// Starts `prometheus` inside `net` with `config` (YAML) and waits until it is ready.
    #[track_caller]
    pub fn start(net: &TestNet, config: &str) -> Prometheus {
        let binary = require_tool("prometheus");
        let dir = TempDir::new("prometheus");
        let config_path = dir.path().join("prometheus.yml");
        fs::write(&config_path, config).expect("write the Prometheus config");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("create the TSDB directory");
        let log = dir.path().join("prometheus.log");

        // A port that was free a moment ago in `net`; Prometheus cannot report the port it
        // got for :0, so another process may take it in between: then try another.
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_tcp_port(net);
            let out = File::create(&log).expect("create the Prometheus log");
            let err = out.try_clone().expect("clone the log file");
            let mut cmd = net.command(&binary);
            cmd.arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=1h")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
            match wait_ready(net, &mut child, port) {
                Ok(()) => {
                    return Prometheus {
                        child,
                        port,
                        log,
                        dir,
                    }
                }
                Err(why) => {
                    stop_child(&mut child);
                    last_log = fs::read_to_string(&log).unwrap_or_default();
                    if !last_log.contains("address already in use") {
                        panic!("Prometheus did not start: {why}\n--- its log ---\n{last_log}");
                    }
                }
            }
        }
        panic!("Prometheus found no free port in 5 tries\n--- its log ---\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What Prometheus logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` (with its query string) on the HTTP API; the parsed JSON reply, whose
    /// `status` is "success" or "error".
    #[track_caller]
    pub fn api(&self, net: &TestNet, path: &str) -> Value {
        let (code, body) = http_get(net, self.port, path)
            .unwrap_or_else(|e| panic!("GET {path} from Prometheus: {e}"));
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("GET {path} from Prometheus: HTTP {code}, not JSON ({e}): {body}")
        })
    }

    /// Runs an instant query; `Ok(data)` on success, `Err(error text)` otherwise.
    #[track_caller]
    pub fn query(&self, net: &TestNet, expr: &str) -> Result<Value, String> {
        let reply = self.api(net, &format!("/api/v1/query?query={}", urlencode(expr)));
        if reply["status"] == "success" {
            Ok(reply["data"].clone())
        } else {
            Err(format!(
                "{}: {}",
                reply["errorType"].as_str().unwrap_or("?"),
                reply["error"].as_str().unwrap_or("?")
            ))
        }
    }

    /// The number of an instant query's first sample, when it has one.
    #[track_caller]
    pub fn scalar(&self, net: &TestNet, expr: &str) -> Option<f64> {
        let data = self.query(net, expr).ok()?;
        let value = match data["resultType"].as_str()? {
            "vector" => data["result"].get(0)?["value"].clone(),
            "scalar" => data["result"].clone(),
            _ => return None,
        };
        value.get(1)?.as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop_child(&mut self.child);
        if thread::panicking() {
            let log = self.log_text();
            let tail = &log[log.len().saturating_sub(16 * 1024)..];
            eprintln!("---- Prometheus log (test failed) ----\n{tail}");
        }
    }
}

fn wait_ready(net: &TestNet, child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited with {status}"));
        }
        if let Ok((200, _)) = http_get(net, port, "/-/ready") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not ready after {READY_TIMEOUT:?}"));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL; reaps the child.
fn stop_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A TCP port on 127.0.0.1 that nothing in `net` listens on right now.
pub fn free_tcp_port(net: &TestNet) -> u16 {
    net.run_inside(|| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.local_addr().expect("local_addr").port()
    })
}

/// `GET target HTTP/1.0` to `127.0.0.1:port` from inside `net`: (status, body).
pub fn http_get(net: &TestNet, port: u16, target: &str) -> Result<(u16, String), String> {
    let request =
        format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    net.run_inside(|| http_exchange(port, request.as_bytes()))
        .map(|(code, body)| (code, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends a raw HTTP/1.x request to `127.0.0.1:port` and reads the reply to the end (call it
/// from a thread inside the test's network). Returns (status, body).
pub fn http_exchange(port: u16, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request)
        .map_err(|e| format!("{addr}: write: {e}"))?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .map_err(|e| format!("{addr}: read: {e}"))?;
    parse_reply(&reply).ok_or_else(|| {
        format!(
            "{addr}: malformed HTTP reply: {:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(512)])
        )
    })
}

fn parse_reply(reply: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&reply[..split]).ok()?;
    let body = &reply[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some((status, body))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Percent-encodes `s` for a URL query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
