//! `handshake`: new peers per second. Each operation is a HELLO from a peer the target has
//! never seen (a fresh X25519 key pair) and ends when the target's HELLO_ACK comes back; a
//! GOAWAY then ends the session. The target pays for everything a newcomer costs it: the
//! Diffie-Hellman, the session, and introducing the newcomer to its other peers. The
//! generator only makes the key pair (a fixed-base multiplication, a fraction of a
//! Diffie-Hellman) and never derives the session itself.
//!
//! A peer's address is used again only after [`REST`]: a node lets a new key take over the
//! address of a session only once that session has been silent for two ping intervals (so
//! that a HELLO forged from a live peer's address cannot replace it). Rates above
//! `peers / REST` need more peers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use setowire_core::proto::frame::Frame;

use super::{run_swarm, Setup, Worker};
use crate::deadlines::Deadlines;
use crate::report::Recorder;
use crate::run::Ctx;
use crate::swarm::{Swarm, Workload};

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    run_swarm(ctx, Setup::Raw, |w| Handshakes::new(ctx, w))
}

/// How long a peer's address rests between two handshakes: two of the node's default ping
/// intervals and a margin.
const REST: Duration = Duration::from_millis(2_200);

struct Handshakes {
    /// Peers free for a handshake, and from when (their address has rested).
    free: VecDeque<(Instant, u32)>,
    /// When each peer's HELLO went out, while it waits for the answer.
    started: Vec<Option<Instant>>,
    order: Deadlines<u32>,
    outstanding: usize,
    timeout: Duration,
}

impl Handshakes {
    fn new(ctx: &Ctx, w: &Worker) -> Self {
        let n = w.swarm.len();
        Self {
            free: (0..n).map(|slot| (Instant::now(), slot)).collect(),
            started: vec![None; n as usize],
            order: Deadlines::default(),
            outstanding: 0,
            timeout: ctx.opts.timeout,
        }
    }
}

impl Workload for Handshakes {
    fn start(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) -> bool {
        let Some(&(ready, slot)) = self.free.front() else {
            rec.note("no_free_peer", 1);
            return false;
        };
        if ready > now {
            rec.note("no_rested_peer", 1);
            return false;
        }
        self.free.pop_front();
        swarm.renew_identity(slot);
        swarm.send_hello(slot);
        self.started[slot as usize] = Some(now);
        self.order.push(now, slot);
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
                    self.free.push_back((now + REST, slot));
                }
                true
            }
            // Introductions, PINGs, relay announcements to a peer about to leave.
            _ => true,
        }
    }

    fn expire(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) {
        let (started, outstanding, free) =
            (&mut self.started, &mut self.outstanding, &mut self.free);
        self.order.expire(now, self.timeout, |at, slot| {
            if started[slot as usize] == Some(at) {
                started[slot as usize] = None;
                *outstanding -= 1;
                rec.lost(at, 1);
                // Its HELLO may yet be answered: make sure the next one is a new handshake.
                swarm.send_goaway(slot);
                free.push_back((now + REST, slot));
            }
        });
    }

    fn outstanding(&self) -> usize {
        self.outstanding
    }
}
