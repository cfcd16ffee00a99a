//! What the node shows of itself under attack: its Prometheus counters and its memory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::net::TestNet;

/// The sum of the series of metric `name` whose labels include each of `labels` (e.g.
/// `type="frag"`; none: every series), scraped from the admin listener on
/// `127.0.0.1:admin_port` inside `net`.
#[track_caller]
pub fn metric_sum(net: &TestNet, admin_port: u16, name: &str, labels: &[&str]) -> f64 {
    let text = net.run_inside(|| scrape(admin_port));
    let text = text.unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(std::io::Error::other(format!(
            "unexpected response: {}",
            response.lines().next().unwrap_or_default()
        ))),
    }
}

/// The resident set size of process `pid`, in bytes (VmRSS of /proc/PID/status).
#[track_caller]
pub fn rss_bytes(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {path}"));
    kib * 1024
}
