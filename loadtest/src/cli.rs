//! Command line of `setowire-sim`, and the checks that keep its traffic where it belongs.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// No run lasts longer than this, whatever `--duration` says.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Virtual peers per run: each owns one loopback address.
pub const MAX_PEERS: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// New peers per second: full X25519 handshakes with the target.
    Handshake,
    /// PING→PONG round trips (over sessions, or `--raw` with no handshake).
    Ping,
    /// Encrypted DATA broadcast through the target's mesh; checks exactly-once delivery.
    Chat,
    /// Store a value at one peer and fetch it through the target from another.
    Store,
    /// RELAY_REQ → RELAY_FWD introductions between pairs of peers.
    Relay,
    /// JSON DHT FIND_NODE / STORE / FIND_VALUE against the target's DHT.
    Dht,
    /// HTTP bootstrap: POST /announce and GET /peers.
    Http,
    /// Ping, chat, store and relay traffic at once, from one swarm.
    Mixed,
    /// Connect the peers and keep them connected, with no traffic but keep-alives (for
    /// measuring the target's memory per peer).
    Idle,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Handshake => "handshake",
            Scenario::Ping => "ping",
            Scenario::Chat => "chat",
            Scenario::Store => "store",
            Scenario::Relay => "relay",
            Scenario::Dht => "dht",
            Scenario::Http => "http",
            Scenario::Mixed => "mixed",
            Scenario::Idle => "idle",
        }
    }
}

/// Thousands of virtual Setowire peers against one node (or any Setowire endpoint).
///
/// Every virtual peer has a real X25519 identity and its own source address in 127.0.0.0/8,
/// so the target sees distinct peers. Without `--rate` the load is closed-loop (each peer
/// keeps `--in-flight` operations outstanding); with it, operations start on a schedule
/// whatever the answers do (open loop), so overload shows as loss and latency.
#[derive(Debug, Clone, Parser)]
#[command(name = "setowire-sim", version)]
pub struct Options {
    /// What to run.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// The Setowire UDP endpoint under test (node, py-setowire peer, or echo).
    #[arg(long, default_value = "127.0.0.1:49737")]
    pub target: String,

    /// The HTTP bootstrap endpoint, for `http`.
    #[arg(long, default_value = "127.0.0.1:8737")]
    pub http_target: String,

    /// The JSON DHT endpoint, for `dht` (the node answers DHT on its UDP port by default).
    #[arg(long)]
    pub dht_target: Option<String>,

    /// Virtual peers.
    #[arg(long, default_value_t = 1000)]
    pub peers: usize,

    /// Operations per second in all (open loop). Without it: closed loop, as fast as answers come.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Closed loop: operations each peer keeps outstanding.
    #[arg(long, default_value_t = 1)]
    pub in_flight: usize,

    /// Measured seconds (after the warm-up and the peers' set-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,

    /// Worker threads; each drives its share of the peers through one batched socket.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Bytes of application payload: a chat message, a stored value (above ~1 KiB values
    /// travel as several CHUNK pieces).
    #[arg(long)]
    pub payload: Option<usize>,

    /// `dht`: every this many operations of a client, one is a STORE followed by a
    /// FIND_VALUE of it; the others are FIND_NODE (0: FIND_NODE only).
    #[arg(long, default_value_t = 4)]
    pub dht_store_every: u64,

    /// `ping`: send bare PINGs with no handshake, so that any responder (a UDP echo that
    /// answers PING with PONG) can be measured the same way.
    #[arg(long)]
    pub raw: bool,

    /// `ping --raw`, closed loop, one thread: the generator that saturates a batched
    /// responder. Every virtual peer gets a socket of its own on its own 127.1.x.y address,
    /// all watched by one epoll set and each read with `recvmmsg` and written with
    /// `sendmmsg` (e.g. `--peers 512 --in-flight 4`). Loopback targets only.
    #[arg(long)]
    pub saturate: bool,

    /// An operation with no answer after this many milliseconds counts as lost.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,

    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Draw rate and latency over time as an SVG to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,

    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,

    /// Allow targets outside loopback: only for load-testing your own servers.
    #[arg(long)]
    pub allow_remote: bool,
}

/// The options, checked and resolved.
#[derive(Debug, Clone)]
pub struct Checked {
    pub options: Options,
    pub target: SocketAddr,
    pub http_target: SocketAddr,
    pub dht_target: SocketAddr,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
}

impl Options {
    pub fn check(self) -> anyhow::Result<Checked> {
        let target = resolve("--target", &self.target)?;
        let http_target = resolve("--http-target", &self.http_target)?;
        let dht_target = match &self.dht_target {
            Some(text) => resolve("--dht-target", text)?,
            None => target,
        };
        for (flag, addr) in [
            ("--target", target),
            ("--http-target", http_target),
            ("--dht-target", dht_target),
        ] {
            if !self.allow_remote && !is_local(addr.ip()) {
                anyhow::bail!(
                    "{flag} {addr} is not a loopback address; pass --allow-remote to load-test \
                     a server of your own elsewhere"
                );
            }
        }
        if self.peers == 0 || self.peers > MAX_PEERS {
            anyhow::bail!("--peers must be between 1 and {MAX_PEERS}");
        }
        if self.threads == 0 || self.threads > 64 {
            anyhow::bail!("--threads must be between 1 and 64");
        }
        if self.in_flight == 0 || self.in_flight > 1024 {
            anyhow::bail!("--in-flight must be between 1 and 1024");
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                anyhow::bail!("--rate must be a positive number");
            }
        }
        if self.saturate {
            check_saturate(&self, target)?;
        }
        let seconds = |flag: &str, v: f64| -> anyhow::Result<Duration> {
            Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| *d <= MAX_DURATION)
                .ok_or_else(|| anyhow::anyhow!("{flag} must be between 0 and 3600 seconds"))
        };
        let duration = seconds("--duration", self.duration)?;
        if duration.is_zero() {
            anyhow::bail!("--duration must be more than 0");
        }
        let warmup = seconds("--warmup", self.warmup)?;
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            anyhow::bail!("--timeout-ms must be between 1 and 60000");
        }
        Ok(Checked {
            target,
            http_target,
            dht_target,
            duration,
            warmup,
            timeout: Duration::from_millis(self.timeout_ms),
            options: self,
        })
    }
}

/// `--saturate` is one shape of load: bare PINGs, closed loop, one thread, one socket per
/// peer on a 127/8 address (so an IPv4 loopback target).
fn check_saturate(opts: &Options, target: SocketAddr) -> anyhow::Result<()> {
    if opts.scenario != Scenario::Ping || !opts.raw {
        anyhow::bail!("--saturate is for `ping --raw`");
    }
    if opts.rate.is_some() {
        anyhow::bail!("--saturate is closed loop: leave out --rate");
    }
    if opts.threads != 1 {
        anyhow::bail!("--saturate runs on one thread: leave out --threads");
    }
    if opts.peers > crate::fleet::MAX_SOCKETS {
        anyhow::bail!(
            "--saturate: at most {} peers (a socket each)",
            crate::fleet::MAX_SOCKETS
        );
    }
    if !(target.is_ipv4() && target.ip().is_loopback()) {
        anyhow::bail!("--saturate sends from 127.1.x.y addresses: give an IPv4 loopback --target");
    }
    Ok(())
}

/// Loopback only: where a load test may send without asking.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn resolve(flag: &str, text: &str) -> anyhow::Result<SocketAddr> {
    text.to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("{flag} {text}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{flag} {text}: no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Checked> {
        let mut all = vec!["setowire-sim"];
        all.extend_from_slice(args);
        Options::try_parse_from(all)?.check()
    }

    #[test]
    fn loopback_targets_are_accepted() {
        let c = parse(&["ping", "--target", "127.0.0.1:5000"]).unwrap();
        assert_eq!(c.target, "127.0.0.1:5000".parse().unwrap());
        parse(&[
            "ping",
            "--target",
            "[::1]:5000",
            "--http-target",
            "[::1]:80",
        ])
        .unwrap();
    }

    #[test]
    fn remote_targets_need_allow_remote() {
        let err = parse(&["ping", "--target", "192.0.2.1:5000"]).unwrap_err();
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        let err = parse(&["http", "--http-target", "198.51.100.7:80"]).unwrap_err();
        assert!(err.to_string().contains("--http-target"), "{err}");
        parse(&["ping", "--target", "192.0.2.1:5000", "--allow-remote"]).unwrap();
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(parse(&["ping", "--duration", "7200"]).is_err());
        assert!(parse(&["ping", "--duration", "0"]).is_err());
        assert!(parse(&["ping", "--peers", "0"]).is_err());
        assert!(parse(&["ping", "--rate", "-5"]).is_err());
        assert!(parse(&["ping", "--threads", "0"]).is_err());
        parse(&["ping", "--raw", "--saturate", "--peers", "512"]).unwrap();
        for bad in [
            &["ping", "--saturate"][..],
            &["handshake", "--raw", "--saturate"],
            &["ping", "--raw", "--saturate", "--rate", "100"],
            &["ping", "--raw", "--saturate", "--threads", "2"],
            &["ping", "--raw", "--saturate", "--peers", "20000"],
            &["ping", "--raw", "--saturate", "--target", "[::1]:5000"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
