//! `handshake`: new sessions per second. Each operation is a HELLO from a peer without a
//! session and ends when the target's HELLO_ACK comes back; a GOAWAY then ends the session
//! so the peer's next HELLO costs the target a whole new handshake (its X25519 included).
//! The peers' keys are made once: the target's work per handshake is the same, and the
//! generator's own Diffie-Hellman is kept out of the measurement.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use setowire_node::proto::frame::Frame;

use super::{run_swarm, Setup, Worker};
use crate::report::Recorder;
use crate::run::Ctx;
use crate::swarm::{Swarm, Workload};

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    run_swarm(ctx, Setup::Raw, |w| Handshakes::new(ctx, w))
}

struct Handshakes {
    free: VecDeque<u32>,
    /// When each peer's HELLO went out, while it waits for the answer.
    started: Vec<Option<Instant>>,
    order: VecDeque<(Instant, u32)>,
    outstanding: usize,
    timeout: Duration,
}

impl Handshakes {
    fn new(ctx: &Ctx, w: &Worker) -> Self {
        let n = w.swarm.len();
        Self {
            free: (0..n).collect(),
            started: vec![None; n as usize],
            order: VecDeque::new(),
            outstanding: 0,
            timeout: ctx.opts.timeout,
        }
    }
}

impl Workload for Handshakes {
    fn start(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) -> bool {
        let Some(slot) = self.free.pop_front() else {
            rec.note("no_free_peer", 1);
            return false;
        };
        swarm.send_hello(slot);
        self.started[slot as usize] = Some(now);
        self.order.push_back((now, slot));
        self.outstanding += 1;
        rec.sent(now, 1);
        true
    }

    fn intercept(
        &mut self,
        now: Instant,
        slot: u32,
        frame: &Frame<'_>,
        swarm: &mut Swarm,
        rec: &mut Recorder,
    ) -> bool {
        match frame {
            Frame::HelloAck(_) => {
                if let Some(at) = self.started[slot as usize].take() {
                    rec.done(now, now - at);
                    self.outstanding -= 1;
                    swarm.send_goaway(slot);
                    self.free.push_back(slot);
                }
                true
            }
            // Introductions, PINGs, relay announcements to a peer about to leave.
            _ => true,
        }
    }

    fn expire(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) {
        let Some(cutoff) = now.checked_sub(self.timeout) else {
            return;
        };
        while let Some(&(at, slot)) = self.order.front() {
            if at >= cutoff {
                break;
            }
            self.order.pop_front();
            if self.started[slot as usize] == Some(at) {
                self.started[slot as usize] = None;
                self.outstanding -= 1;
                rec.lost(at, 1);
                // Its HELLO may yet be answered: make sure the next one is a new handshake.
                swarm.send_goaway(slot);
                self.free.push_back(slot);
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.outstanding
    }
}
