//! The control loop on stdin and stdout: commands in, the shards' events out.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::Value;

use super::codec::{self, Command};
use super::route;
use crate::node::handle::NodeHandle;
use setowire_core::swarm::event::Event;
use setowire_core::swarm::node_view::ShardId;

/// Longest the loop waits for a command before it forwards events and looks at `stop`.
const TURN: Duration = Duration::from_millis(10);

/// Writes `ready`, then reads commands from stdin and writes events to stdout until
/// `quit`, the end of stdin, or `stop`.
pub fn serve(
    node: &NodeHandle,
    ready: Value,
    events: Receiver<(ShardId, Event)>,
    stop: &AtomicBool,
) {
    let lines = spawn_stdin_reader();
    let mut out = EventWriter::new();
    out.emit(ready);
    while !stop.load(Ordering::Relaxed) {
        match lines.recv_timeout(TURN) {
            Ok(line) => match codec::parse_command(&line) {
                Ok(Command::Quit) => break,
                Ok(cmd) => {
                    if let Err(e) = route::execute(node, cmd, &mut |event| out.emit(event)) {
                        out.emit(codec::render_error(&e));
                    }
                }
                Err(e) => out.emit(codec::render_error(&e)),
            },
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        forward(&events, &mut out);
    }
    // Events that raced the stop (e.g. a last disconnect) still go out.
    forward(&events, &mut out);
}

fn forward(events: &Receiver<(ShardId, Event)>, out: &mut EventWriter) {
    while let Ok((_, event)) = events.try_recv() {
        out.emit(codec::render_event(&event));
    }
}

/// Events as JSON lines on stdout.
struct EventWriter {
    out: std::io::StdoutLock<'static>,
    /// Whether a write has failed (and been logged).
    broken: bool,
}

impl EventWriter {
    fn new() -> Self {
        EventWriter {
            out: std::io::stdout().lock(),
            broken: false,
        }
    }

    fn emit(&mut self, event: Value) {
        let written = writeln!(self.out, "{event}").and_then(|()| self.out.flush());
        // A closed stdout only loses events; the node keeps serving. Said once, not per event.
        if let Err(e) = written {
            if !self.broken {
                self.broken = true;
                tracing::warn!(error = %e, "cannot write control events to stdout; dropping them");
            }
        }
    }
}

/// Stdin lines on a channel; the channel closes at EOF.
fn spawn_stdin_reader() -> Receiver<String> {
    let (tx, rx) = mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            // The receiver is gone once the control loop has ended.
            if !line.trim().is_empty() && tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
