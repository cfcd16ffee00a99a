//! Runs the engine on one UDP socket in one thread: the simplest complete node.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::control::{self, Outcome};
use crate::proto::identity::Identity;
use crate::swarm::config::EngineConfig;
use crate::swarm::engine::Engine;

/// Largest datagram read; Setowire keeps datagrams under 1500 bytes, DHT JSON can be larger.
const RECV_BUF: usize = 65_536;
/// Upper bound on one blocking wait, so commands and signals are seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How long GOAWAYs get to leave before exit.
const DRAIN: Duration = Duration::from_millis(200);

pub struct StandaloneOptions {
    pub listen: SocketAddr,
    pub identity: Identity,
    pub engine: EngineConfig,
    pub dial: Vec<SocketAddr>,
    /// Read commands from stdin and write events to stdout as JSON lines.
    pub control_stdio: bool,
}

pub fn run(options: StandaloneOptions) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(options.listen)
        .with_context(|| format!("binding UDP {}", options.listen))?;
    let local = socket.local_addr()?;
    let start = Instant::now();
    let mut engine = Engine::new(options.identity, options.engine, start);
    tracing::info!(id = %engine.identity().id_hex(), udp = %local, "node started");

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let commands = options.control_stdio.then(spawn_stdin_reader);
    let mut out = std::io::stdout().lock();
    let mut emit = |value: Value| {
        if options.control_stdio {
            // A closed stdout only loses events; the node keeps serving.
            let _ = writeln!(out, "{value}").and_then(|()| out.flush());
        }
    };
    emit(json!({"event": "ready", "id": engine.identity().id_hex(), "port": local.port()}));
    for addr in options.dial {
        engine.dial(start, addr);
    }

    let mut buf = vec![0u8; RECV_BUF];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = engine
            .poll_timeout()
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), MAX_WAIT);
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut buf) {
            Ok((len, src)) => engine.handle_datagram(Instant::now(), canonical(src), &buf[..len]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => tracing::debug!(error = %e, "recv failed"),
        }
        let now = Instant::now();
        if now >= engine.poll_timeout() {
            engine.handle_timeout(now);
        }
        if let Some(rx) = &commands {
            while let Ok(line) = rx.try_recv() {
                let outcome = match control::parse_command(&line) {
                    Ok(cmd) => control::apply(&mut engine, now, cmd, &mut emit),
                    Err(message) => {
                        emit(json!({"event": "error", "message": message}));
                        Outcome::Continue
                    }
                };
                if outcome == Outcome::Quit {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        flush(&mut engine, &socket);
        while let Some(event) = engine.poll_event() {
            emit(control::render_event(&event));
        }
    }

    tracing::info!(
        peers = engine.peer_count(),
        "shutting down: GOAWAY to every peer"
    );
    engine.disconnect_all();
    flush(&mut engine, &socket);
    std::thread::sleep(DRAIN);
    Ok(())
}

fn flush(engine: &mut Engine, socket: &UdpSocket) {
    engine.drain_transmits(|dst, bytes| {
        if let Err(e) = socket.send_to(bytes, dst) {
            tracing::debug!(%dst, error = %e, "send failed");
        }
    });
}

/// Stdin lines on a channel; EOF becomes a quit command.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if !line.trim().is_empty() && tx.send(line).is_err() {
                return;
            }
        }
        let _ = tx.send(serde_json::to_string(&json!({"cmd": "quit"})).expect("static JSON"));
    });
    rx
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// IPv4 peers reach a dual-stack socket as IPv4-mapped IPv6; the engine wants one form.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
