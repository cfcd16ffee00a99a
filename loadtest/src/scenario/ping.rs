//! `ping`: PING→PONG round trips, over sessions or (`--raw`) from strangers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use setowire_core::proto::frame::Frame;

use super::{run_swarm, Setup, Worker};
use crate::deadlines::Deadlines;
use crate::report::Recorder;
use crate::run::Ctx;
use crate::swarm::{Swarm, Workload};

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    if ctx.opts.options.saturate {
        return super::saturate::run(ctx);
    }
    let setup = if ctx.opts.options.raw {
        Setup::Raw
    } else {
        Setup::RawConnected
    };
    run_swarm(ctx, setup, |w| Pings::new(ctx, w))
}

/// Outstanding requests of many peers, each peer's answered in order (a PONG carries no
/// timestamp of ours, so each answers the oldest PING of its peer).
pub struct InOrder {
    per_peer: Vec<VecDeque<Instant>>,
    /// Every request in the order sent, for expiry; entries already answered are skipped.
    sent: Deadlines<u32>,
    outstanding: usize,
}

impl InOrder {
    pub fn new(peers: u32) -> Self {
        Self {
            per_peer: vec![VecDeque::new(); peers as usize],
            sent: Deadlines::default(),
            outstanding: 0,
        }
    }

    pub fn push(&mut self, now: Instant, slot: u32) {
        self.per_peer[slot as usize].push_back(now);
        self.sent.push(now, slot);
        self.outstanding += 1;
    }

    /// The oldest outstanding request of `slot`, now answered.
    pub fn answer(&mut self, slot: u32) -> Option<Instant> {
        let at = self.per_peer[slot as usize].pop_front()?;
        self.outstanding -= 1;
        Some(at)
    }

    /// Requests older than `timeout` and still unanswered: given up, each with its send time
    /// and peer.
    pub fn expire(&mut self, now: Instant, timeout: Duration, mut lost: impl FnMut(Instant, u32)) {
        let (per_peer, outstanding) = (&mut self.per_peer, &mut self.outstanding);
        self.sent.expire(now, timeout, |at, slot| {
            let queue = &mut per_peer[slot as usize];
            if queue.front() == Some(&at) {
                queue.pop_front();
                *outstanding -= 1;
                lost(at, slot);
            }
        });
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

pub struct Pings {
    pending: InOrder,
    /// Peers that may ping: all of them raw, else those with a session.
    eligible: Vec<u32>,
    /// Open loop: the next peer in turn.
    next: usize,
    /// Closed loop: a peer for each PING that may go out now (each peer `--in-flight` times
    /// at first, again whenever one of its PINGs is answered or lost).
    ready: Option<VecDeque<u32>>,
    timeout: Duration,
    started: Instant,
}

impl Pings {
    pub fn new(ctx: &Ctx, w: &Worker) -> Self {
        let raw = ctx.opts.options.raw;
        let eligible: Vec<u32> = (0..w.swarm.len())
            .filter(|&s| raw || w.swarm.is_connected(s))
            .collect();
        let ready = ctx.opts.options.rate.is_none().then(|| {
            (0..ctx.opts.options.in_flight)
                .flat_map(|_| eligible.iter().copied())
                .collect()
        });
        Self {
            pending: InOrder::new(w.swarm.len()),
            eligible,
            next: 0,
            ready,
            timeout: ctx.opts.timeout,
            started: Instant::now(),
        }
    }

    fn next_peer(&mut self) -> Option<u32> {
        match &mut self.ready {
            Some(ready) => ready.pop_front(),
            None => {
                let slot = *self.eligible.get(self.next)?;
                self.next = (self.next + 1) % self.eligible.len();
                Some(slot)
            }
        }
    }

    /// Peer `slot` may send another PING (closed loop).
    fn free(&mut self, slot: u32) {
        if let Some(ready) = &mut self.ready {
            ready.push_back(slot);
        }
    }
}

impl Workload for Pings {
    fn start(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) -> bool {
        let Some(slot) = self.next_peer() else {
            return false;
        };
        let ping = Frame::Ping {
            timestamp_ms: (now - self.started).as_millis() as u64,
            id: *swarm.identity(slot).id(),
        };
        swarm.send_frame(slot, &ping);
        self.pending.push(now, slot);
        rec.sent(now, 1);
        true
    }

    fn intercept(
        &mut self,
        now: Instant,
        slot: u32,
        frame: &Frame<'_>,
        _swarm: &mut Swarm,
        rec: &mut Recorder,
    ) -> bool {
        if !matches!(frame, Frame::Pong { .. }) {
            return false;
        }
        match self.pending.answer(slot) {
            Some(at) => {
                rec.done(now, now - at);
                self.free(slot);
            }
            None => rec.note("unexpected_pong", 1),
        }
        true
    }

    fn expire(&mut self, now: Instant, _swarm: &mut Swarm, rec: &mut Recorder) {
        let mut freed = Vec::new();
        self.pending.expire(now, self.timeout, |at, slot| {
            rec.lost(at, 1);
            freed.push(slot);
        });
        for slot in freed {
            self.free(slot);
        }
    }

    fn outstanding(&self) -> usize {
        self.pending.outstanding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_match_the_oldest_request_and_late_ones_expire() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = InOrder::new(2);
        q.push(t0, 0);
        q.push(t0 + ms(1), 1);
        q.push(t0 + ms(2), 0);
        assert_eq!(q.outstanding(), 3);
        assert_eq!(q.answer(0), Some(t0));
        let mut lost = Vec::new();
        q.expire(t0 + ms(12), ms(10), |at, slot| lost.push((at, slot)));
        assert_eq!(lost, vec![(t0 + ms(1), 1)]);
        assert_eq!(q.outstanding(), 1);
        assert_eq!(q.answer(1), None);
        assert_eq!(q.answer(0), Some(t0 + ms(2)));
        assert_eq!(q.outstanding(), 0);
    }
}
