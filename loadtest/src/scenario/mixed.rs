//! `mixed`: one swarm of full peers doing PING, chat, store/fetch and relay operations in
//! turn, so the target serves every kind of traffic at once.

use std::sync::Arc;
use std::time::Instant;

use setowire_core::proto::frame::Frame;
use setowire_core::swarm::event::Event;

use super::chat::{Chat, Tally};
use super::ping::Pings;
use super::relay::Introductions;
use super::store::Stores;
use super::{run_swarm, Setup};
use crate::report::Recorder;
use crate::run::Ctx;
use crate::swarm::{Swarm, Workload};

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    let tally = Arc::new(Tally::new());
    run_swarm(ctx, Setup::Engines, |w| Mixed {
        parts: vec![
            Box::new(Pings::new(ctx, w)),
            Box::new(Chat::new(ctx, w, tally.clone())),
            Box::new(Stores::new(ctx, w)),
            Box::new(Introductions::new(ctx, w)),
        ],
        next: 0,
    })
}

struct Mixed {
    parts: Vec<Box<dyn Workload>>,
    next: usize,
}

impl Workload for Mixed {
    fn start(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) -> bool {
        for _ in 0..self.parts.len() {
            let index = self.next;
            self.next = (self.next + 1) % self.parts.len();
            if self.parts[index].start(now, swarm, rec) {
                return true;
            }
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
        self.parts
            .iter_mut()
            .any(|part| part.intercept(now, slot, frame, swarm, rec))
    }

    fn event(
        &mut self,
        now: Instant,
        slot: u32,
        event: &Event,
        swarm: &mut Swarm,
        rec: &mut Recorder,
    ) {
        for part in &mut self.parts {
            part.event(now, slot, event, swarm, rec);
        }
    }

    fn tick(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) {
        for part in &mut self.parts {
            part.tick(now, swarm, rec);
        }
    }

    fn expire(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) {
        for part in &mut self.parts {
            part.expire(now, swarm, rec);
        }
    }

    fn outstanding(&self) -> usize {
        self.parts.iter().map(|p| p.outstanding()).sum()
    }
}
