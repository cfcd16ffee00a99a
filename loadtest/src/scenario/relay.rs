//! `relay`: introductions through the target. Peers are paired (0–1, 2–3, …); an operation is
//! a RELAY_REQ from one peer naming its partner, and ends when both have their RELAY_FWD
//! naming the other, as a full-cone relay sends them.

use std::time::{Duration, Instant};

use setowire_core::proto::frame::{Endpoint, Frame};

use super::{run_swarm, Setup, Worker};
use crate::deadlines::Deadlines;
use crate::report::Recorder;
use crate::run::Ctx;
use crate::swarm::{Swarm, Workload};

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    run_swarm(ctx, Setup::RawConnected, |w| Introductions::new(ctx, w))
}

pub struct Introductions {
    /// Pairs (`2k`, `2k+1`) where both have a session, in turn.
    pairs: Vec<u32>,
    next: usize,
    /// Per pair: when its request went out, and which of the two got their RELAY_FWD (bit 0
    /// the even peer, bit 1 the odd one).
    pending: Vec<Option<(Instant, u8)>>,
    order: Deadlines<u32>,
    outstanding: usize,
    timeout: Duration,
}

impl Introductions {
    pub fn new(ctx: &Ctx, w: &Worker) -> Self {
        let n = w.swarm.len();
        let pairs = (0..n / 2)
            .filter(|&p| w.swarm.is_connected(2 * p) && w.swarm.is_connected(2 * p + 1))
            .collect();
        Self {
            pairs,
            next: 0,
            pending: vec![None; (n / 2) as usize],
            order: Deadlines::default(),
            outstanding: 0,
            timeout: ctx.opts.timeout,
        }
    }
}

impl Workload for Introductions {
    fn start(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) -> bool {
        for _ in 0..self.pairs.len() {
            let pair = self.pairs[self.next];
            self.next = (self.next + 1) % self.pairs.len();
            if self.pending[pair as usize].is_some() {
                continue;
            }
            let (asker, partner) = (2 * pair, 2 * pair + 1);
            let Some(addr) = swarm.net.peer_addr(asker) else {
                continue;
            };
            let ip = addr.ip().to_string();
            let request = Frame::RelayReq {
                from: swarm.id8(asker),
                to: swarm.id8(partner),
                endpoint: Endpoint {
                    ip: &ip,
                    port: addr.port(),
                },
            };
            swarm.send_frame(asker, &request);
            self.pending[pair as usize] = Some((now, 0));
            self.order.push(now, pair);
            self.outstanding += 1;
            rec.sent(now, 1);
            return true;
        }
        false
    }

    fn intercept(
        &mut self,
        now: Instant,
        slot: u32,
        frame: &Frame<'_>,
        swarm: &mut Swarm,
        rec: &mut Recorder,
    ) -> bool {
        let Frame::RelayFwd { from, .. } = frame else {
            return false;
        };
        let pair = (slot / 2) as usize;
        let Some(Some((at, got))) = self.pending.get_mut(pair) else {
            rec.note("unexpected_relay_fwd", 1);
            return true;
        };
        if *from != swarm.id8(slot ^ 1) {
            // The target's own matchmaking: it introduces newcomers to each other with
            // RELAY_FWD as their send credit allows, which may be well after they connected.
            rec.note("relay_fwd_introduction", 1);
            return true;
        }
        *got |= 1 << (slot & 1);
        if *got == 0b11 {
            rec.done(now, now - *at);
            self.pending[pair] = None;
            self.outstanding -= 1;
        }
        true
    }

    fn expire(&mut self, now: Instant, _swarm: &mut Swarm, rec: &mut Recorder) {
        let (pending, outstanding) = (&mut self.pending, &mut self.outstanding);
        self.order.expire(now, self.timeout, |at, pair| {
            if matches!(pending[pair as usize], Some((t, _)) if t == at) {
                pending[pair as usize] = None;
                *outstanding -= 1;
                rec.lost(at, 1);
            }
        });
    }

    fn outstanding(&self) -> usize {
        self.outstanding
    }
}
