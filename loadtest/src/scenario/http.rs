//! `http`: load on the HTTP bootstrap (`POST /announce`, `GET /peers`), as py-setowire peers
//! use it: each announces `{"id", "ip", "port"}` as JSON and asks for the list.
//!
//! Each worker (`--threads`) runs up to `--in-flight` blocking client threads (at most
//! [`MAX_CLIENT_THREADS`] in all), each with its own keep-alive connection (a `ureq` agent),
//! taking turns over its share of the virtual peers. One operation in
//! [`ANNOUNCE_EVERY`] is an announcement of the next peer (its own random 40-hex id and its
//! 127/8 address), the others are `GET /peers`. Without `--rate` every client sends its next
//! request when the last one is answered (closed loop); with it, each client has its share
//! of the rate on a fixed schedule, latency is counted from when a request was due, and a
//! request more than `--timeout-ms` behind schedule is not sent but counted lost.
//!
//! A 2xx answer with the expected body completes; any other status is an error, noted by
//! class (`http_4xx`, `http_5xx`, with 429, the per-IP rate limit, apart as `http_429`);
//! no answer within the timeout is lost. All requests come from the one address the
//! kernel picks (127.0.0.1 towards a 127.0.0.1 target), so the node's per-IP HTTP rate limit
//! (`http_rate_per_ip`, `http_burst_per_ip`) applies to the whole run: raise it on the node
//! to measure anything but the limiter.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::net::peer_ip;
use crate::report::Recorder;
use crate::run::Ctx;

/// One request in this many is an announcement.
const ANNOUNCE_EVERY: u64 = 5;
/// Blocking client threads over all workers at most.
const MAX_CLIENT_THREADS: usize = 256;
/// A client whose connection fails waits this long before trying again.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);
/// Longest sleep before checking the stop flag again.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// A virtual peer as it announces itself.
#[derive(Debug, Clone)]
struct Peer {
    id: String,
    ip: Ipv4Addr,
    port: u16,
}

impl Peer {
    fn new(index: u32, rng: &mut impl Rng) -> Peer {
        let id: [u8; 20] = rng.gen();
        Peer {
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            ip: peer_ip(index),
            port: 20_000 + (index % 40_000) as u16,
        }
    }

    /// The body of its `POST /announce`, as py-setowire writes it.
    fn announcement(&self) -> String {
        serde_json::json!({"id": self.id, "ip": self.ip.to_string(), "port": self.port}).to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Announce,
    Peers,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// A 2xx whose body is not what the endpoint answers.
    BadBody,
    Status(u16),
    Timeout,
    Transport,
}

impl Outcome {
    /// The note it adds, beside the standard figures.
    fn note(self, op: Op) -> &'static str {
        match self {
            Outcome::Ok => match op {
                Op::Announce => "announce",
                Op::Peers => "peers",
            },
            Outcome::BadBody => "http_bad_body",
            Outcome::Status(429) => "http_429",
            Outcome::Status(s) if (100..200).contains(&s) => "http_1xx",
            Outcome::Status(s) if (200..300).contains(&s) => "http_2xx_other",
            Outcome::Status(s) if (300..400).contains(&s) => "http_3xx",
            Outcome::Status(s) if (400..500).contains(&s) => "http_4xx",
            Outcome::Status(_) => "http_5xx",
            Outcome::Timeout => "http_timeout",
            Outcome::Transport => "http_transport_error",
        }
    }
}

/// Whether a 2xx body is what `op` answers: `{"ok": true, ...}` or a JSON list.
fn body_ok(op: Op, body: &str) -> bool {
    match op {
        Op::Announce => serde_json::from_str::<serde_json::Value>(body)
            .is_ok_and(|v| v.get("ok") == Some(&serde_json::Value::Bool(true))),
        Op::Peers => body.trim_start().starts_with('['),
    }
}

fn is_timeout(transport: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(transport);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            );
        }
        source = e.source();
    }
    false
}

/// One client thread: a keep-alive connection and its peers.
struct Client {
    agent: ureq::Agent,
    base: String,
    peers: Vec<Peer>,
    ops: u64,
}

impl Client {
    fn new(target: SocketAddr, timeout: Duration, peers: Vec<Peer>) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .no_delay(true)
            .redirects(0)
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .user_agent("setowire-sim")
            .build();
        Client {
            agent,
            base: format!("http://{target}"),
            peers,
            ops: 0,
        }
    }

    fn next_op(&mut self) -> (Op, Option<usize>) {
        let n = self.ops;
        self.ops += 1;
        if n % ANNOUNCE_EVERY == 0 && !self.peers.is_empty() {
            let peer = (n / ANNOUNCE_EVERY) as usize % self.peers.len();
            (Op::Announce, Some(peer))
        } else {
            (Op::Peers, None)
        }
    }

    fn request(&self, op: Op, peer: Option<usize>) -> Outcome {
        let result = match (op, peer) {
            (Op::Announce, Some(peer)) => self
                .agent
                .post(&format!("{}/announce", self.base))
                .set("Content-Type", "application/json")
                .send_string(&self.peers[peer].announcement()),
            _ => self.agent.get(&format!("{}/peers", self.base)).call(),
        };
        match result {
            Ok(response) => {
                let status = response.status();
                // Read to the end, so that the connection goes back for the next request.
                let body = response.into_string();
                match body {
                    Ok(body) if (200..300).contains(&status) => {
                        if status == 200 && body_ok(op, &body) {
                            Outcome::Ok
                        } else if status == 200 {
                            Outcome::BadBody
                        } else {
                            Outcome::Status(status)
                        }
                    }
                    Ok(_) => Outcome::Status(status),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        ) =>
                    {
                        Outcome::Timeout
                    }
                    Err(_) => Outcome::Transport,
                }
            }
            Err(ureq::Error::Status(status, response)) => {
                let _ = response.into_string();
                Outcome::Status(status)
            }
            Err(ureq::Error::Transport(t)) if is_timeout(&t) => Outcome::Timeout,
            Err(ureq::Error::Transport(_)) => Outcome::Transport,
        }
    }
}

/// Records one request that was due at `due` and ended at `now`.
fn record(rec: &Mutex<Recorder>, op: Op, outcome: Outcome, due: Instant, now: Instant) {
    let mut rec = rec.lock().unwrap_or_else(|e| e.into_inner());
    rec.note(outcome.note(op), 1);
    match outcome {
        Outcome::Ok => rec.done(now, now.saturating_duration_since(due)),
        Outcome::Timeout => rec.lost(due, 1),
        _ => rec.error(now, 1),
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep((t - now).min(MAX_SLEEP));
    }
}

/// One client thread's loop until the measured window is over.
fn drive(ctx: &Ctx, client: &mut Client, rec: &Mutex<Recorder>, per_second: Option<f64>) {
    let window = rec.lock().unwrap_or_else(|e| e.into_inner()).window();
    let timeout = ctx.opts.timeout;
    let mut scheduled = 0u64;
    loop {
        let now = Instant::now();
        if ctx.stopped() || window.is_over(now) {
            break;
        }
        let due = match per_second {
            None => now,
            Some(rate) => {
                let due = window.started + Duration::from_secs_f64(scheduled as f64 / rate);
                if due > now {
                    sleep_until(due);
                    continue;
                }
                scheduled += 1;
                if now.saturating_duration_since(due) > timeout {
                    // Too far behind to be worth sending: overload shows as loss.
                    let mut rec = rec.lock().unwrap_or_else(|e| e.into_inner());
                    rec.sent(due, 1);
                    rec.lost(due, 1);
                    rec.note("http_behind_schedule", 1);
                    continue;
                }
                due
            }
        };
        let (op, peer) = client.next_op();
        rec.lock().unwrap_or_else(|e| e.into_inner()).sent(due, 1);
        let outcome = client.request(op, peer);
        record(rec, op, outcome, due, Instant::now());
        if outcome == Outcome::Transport {
            std::thread::sleep(FAILURE_PAUSE);
        }
    }
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    let opts = &ctx.opts;
    let peers = opts.options.peers;
    let workers = opts.options.threads.min(peers);
    let per_worker = opts
        .options
        .in_flight
        .min((MAX_CLIENT_THREADS / workers).max(1));
    // Every client thread over all workers, for its share of the rate.
    let mut clients: Vec<(usize, Client)> = Vec::new();
    let mut rng = rand::rngs::StdRng::from_entropy();
    for worker in 0..workers {
        let (first, count) = Ctx::share(peers, workers, worker);
        let n = per_worker.min(count).max(1);
        for c in 0..n {
            let (sub_first, sub_count) = Ctx::share(count, n, c);
            let list = (first + sub_first..first + sub_first + sub_count)
                .map(|i| Peer::new(i as u32, &mut rng))
                .collect();
            clients.push((worker, Client::new(opts.http_target, opts.timeout, list)));
        }
    }
    let total_clients = clients.len();
    let per_second = opts.options.rate.map(|r| r / total_clients as f64);
    let start = Instant::now();
    let recorders: Vec<Mutex<Recorder>> = (0..workers)
        .map(|_| Mutex::new(ctx.recorder(start)))
        .collect();
    std::thread::scope(|scope| {
        for (worker, mut client) in clients {
            let rec = &recorders[worker];
            let spawned = std::thread::Builder::new()
                .name(format!("http-{worker}"))
                .spawn_scoped(scope, move || drive(ctx, &mut client, rec, per_second));
            if let Err(e) = spawned {
                ctx.stop.store(true, Ordering::Relaxed);
                return Err(anyhow::anyhow!("cannot start a client thread: {e}"));
            }
        }
        Ok(())
    })?;
    let mut recorders: Vec<Recorder> = recorders
        .into_iter()
        .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    if let Some(first) = recorders.first_mut() {
        first.note("http_clients", total_clients as u64);
    }
    Ok(recorders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    #[test]
    fn announcements_are_what_the_node_accepts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = Peer::new(300, &mut rng);
        let v: serde_json::Value = serde_json::from_str(&p.announcement()).unwrap();
        let id = v["id"].as_str().unwrap();
        assert_eq!(id.len(), 40);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(v["ip"], "127.1.1.47");
        assert!(v["port"].as_u64().unwrap() > 0);
        assert_ne!(Peer::new(300, &mut rng).id, p.id);
    }

    #[test]
    fn one_op_in_five_announces_each_peer_in_turn() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let peers = (0..3).map(|i| Peer::new(i, &mut rng)).collect();
        let mut c = Client::new(
            "127.0.0.1:1".parse().unwrap(),
            Duration::from_secs(1),
            peers,
        );
        let ops: Vec<_> = (0..16).map(|_| c.next_op()).collect();
        assert_eq!(ops[0], (Op::Announce, Some(0)));
        assert_eq!(ops[5], (Op::Announce, Some(1)));
        assert_eq!(ops[10], (Op::Announce, Some(2)));
        assert_eq!(ops[15], (Op::Announce, Some(0)));
        assert_eq!(ops.iter().filter(|(op, _)| *op == Op::Peers).count(), 12);
    }

    #[test]
    fn outcomes_are_noted_by_class() {
        assert_eq!(Outcome::Status(429).note(Op::Peers), "http_429");
        assert_eq!(Outcome::Status(413).note(Op::Announce), "http_4xx");
        assert_eq!(Outcome::Status(503).note(Op::Peers), "http_5xx");
        assert_eq!(Outcome::Ok.note(Op::Announce), "announce");
        assert!(body_ok(Op::Announce, r#"{"ok":true,"ttl":600}"#));
        assert!(!body_ok(Op::Announce, r#"{"error":"x"}"#));
        assert!(body_ok(Op::Peers, "[]"));
        assert!(!body_ok(Op::Peers, "{}"));
    }

    /// A tiny keep-alive HTTP server: 200 for the first requests, then 429.
    #[test]
    fn statuses_are_told_apart_over_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut stream = stream;
            for i in 0..3 {
                let mut length = 0;
                let mut request_line = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if request_line.is_empty() {
                        request_line = line.clone();
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let (status, body) = match (i, request_line.starts_with("POST /announce")) {
                    (0, true) => ("200 OK", r#"{"ok": true, "ttl": 600}"#),
                    (1, false) => ("200 OK", "[]"),
                    _ => ("429 Too Many Requests", r#"{"error": "slow down"}"#),
                };
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut c = Client::new(addr, Duration::from_secs(2), vec![Peer::new(0, &mut rng)]);
        let (op, peer) = c.next_op();
        assert_eq!(c.request(op, peer), Outcome::Ok);
        let (op, peer) = c.next_op();
        assert_eq!(c.request(op, peer), Outcome::Ok);
        let (op, peer) = c.next_op();
        assert_eq!(c.request(op, peer), Outcome::Status(429));
        server.join().unwrap();
    }
}
