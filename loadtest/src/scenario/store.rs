//! `store`: values stored at one peer and fetched through the target by another. An
//! operation stores a new value at a writer (HAVE to the target, which fetches it, as its
//! store-and-forward does), then has a reader fetch it (WANT to the target, CHUNK back) and
//! checks the bytes. Values above one CHUNK piece travel as several pieces both ways.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use setowire_core::proto::frame::Frame;
use setowire_core::swarm::event::Event;
use setowire_core::swarm::pieces::CHUNK_PIECE_LEN;

use super::{run_swarm, Setup, Worker};
use crate::deadlines::Deadlines;
use crate::report::Recorder;
use crate::run::Ctx;
use crate::swarm::{Swarm, Workload};

/// Default value size: four CHUNK pieces.
const DEFAULT_VALUE: usize = 4096;
/// A reader's WANT that found the target without the value yet (it may still be fetching
/// it from the writer) is sent again after this long.
const FETCH_RETRY: Duration = Duration::from_millis(250);

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    run_swarm(ctx, Setup::Engines, |w| Stores::new(ctx, w))
}

/// Keys unique over the whole run, whichever worker makes them, and new to a target that
/// earlier runs filled (it would not fetch a key it holds).
fn next_key() -> (u64, String) {
    static RUN: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = RUN.get_or_init(rand::random);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (n, format!("sim/{run:08x}/{n}"))
}

/// The value stored under key number `n`: different for every key, cheap to check.
pub fn value_of(n: u64, len: usize) -> Vec<u8> {
    let seed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|i| (seed >> ((i % 8) * 8)) as u8 ^ (i / 8) as u8)
        .collect()
}

struct Op {
    number: u64,
    writer: u32,
    reader: u32,
    started: Instant,
    /// When the reader last sent its WANT.
    asked: Option<Instant>,
    /// CHUNK_ACKs the writer got from the target, one per piece.
    acks: u16,
}

pub struct Stores {
    peers: Vec<u32>,
    next: usize,
    value_len: usize,
    /// CHUNK frames a value travels in.
    pieces: u16,
    ops: HashMap<String, Op>,
    order: Deadlines<String>,
    /// Keys the target asked a writer for: their readers fetch on the next tick, after the
    /// writer's CHUNKs went out.
    to_fetch: Vec<String>,
    last_retry_scan: Instant,
    timeout: Duration,
}

impl Stores {
    pub fn new(ctx: &Ctx, w: &Worker) -> Self {
        let value_len = ctx.opts.options.payload.unwrap_or(DEFAULT_VALUE).max(1);
        Self {
            pieces: value_len.div_ceil(CHUNK_PIECE_LEN).min(u16::MAX as usize) as u16,
            peers: (0..w.swarm.len())
                .filter(|&s| w.swarm.is_connected(s))
                .collect(),
            next: 0,
            value_len,
            ops: HashMap::new(),
            order: Deadlines::default(),
            to_fetch: Vec::new(),
            last_retry_scan: Instant::now(),
            timeout: ctx.opts.timeout,
        }
    }
}

impl Workload for Stores {
    fn start(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) -> bool {
        let n = self.peers.len();
        if n < 2 {
            return false;
        }
        let writer = self.peers[self.next];
        let reader = self.peers[(self.next + n / 2) % n];
        self.next = (self.next + 1) % n;
        let (number, key) = next_key();
        if !swarm
            .engine(writer)
            .store(&key, value_of(number, self.value_len))
        {
            rec.error(now, 1);
            rec.note("store_refused", 1);
            return true;
        }
        self.order.push(now, key.clone());
        self.ops.insert(
            key,
            Op {
                number,
                writer,
                reader,
                started: now,
                asked: None,
                acks: 0,
            },
        );
        rec.sent(now, 1);
        true
    }

    fn intercept(
        &mut self,
        _: Instant,
        slot: u32,
        frame: &Frame<'_>,
        _: &mut Swarm,
        _: &mut Recorder,
    ) -> bool {
        // The reader asks once the target holds the value: after the last piece is
        // acknowledged, or for a one-piece value once the target asked for it.
        match frame {
            Frame::ChunkAck { key, .. } => {
                if let Some(op) = self.ops.get_mut(*key).filter(|op| op.writer == slot) {
                    op.acks += 1;
                    if op.acks == self.pieces {
                        self.to_fetch.push(key.to_string());
                    }
                }
            }
            Frame::Want { key }
                if self.pieces == 1 && self.ops.get(*key).is_some_and(|op| op.writer == slot) =>
            {
                self.to_fetch.push(key.to_string());
            }
            _ => {}
        }
        // The writer's engine answers the WANT itself.
        false
    }

    fn tick(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) {
        for key in self.to_fetch.drain(..) {
            if let Some(op) = self.ops.get_mut(&key) {
                op.asked = Some(now);
                swarm.engine(op.reader).fetch_within(now, &key, FETCH_RETRY);
            }
        }
        // A WANT that reached the target before the value did (the writer's CHUNKs and the
        // reader's WANT may be handled by different shards) is asked again.
        if now - self.last_retry_scan < FETCH_RETRY / 4 {
            return;
        }
        self.last_retry_scan = now;
        for (key, op) in &mut self.ops {
            if op.asked.is_some_and(|at| now - at >= FETCH_RETRY) {
                op.asked = Some(now);
                rec.note("refetches", 1);
                swarm.engine(op.reader).fetch_within(now, key, FETCH_RETRY);
            }
        }
    }

    fn event(&mut self, now: Instant, slot: u32, event: &Event, _: &mut Swarm, rec: &mut Recorder) {
        // A failed fetch needs nothing here: retries are timed by `tick`.
        let Event::Fetched { key, value } = event else {
            return;
        };
        let Some(op) = self.ops.get(key).filter(|op| op.reader == slot) else {
            return;
        };
        if *value == value_of(op.number, self.value_len) {
            rec.done(now, now - op.started);
        } else {
            rec.error(now, 1);
            rec.note("wrong_value", 1);
        }
        self.ops.remove(key);
    }

    fn expire(&mut self, now: Instant, _: &mut Swarm, rec: &mut Recorder) {
        let ops = &mut self.ops;
        self.order.expire(now, self.timeout, |at, key| {
            if ops.remove(&key).is_some() {
                rec.lost(at, 1);
            }
        });
    }

    fn outstanding(&self) -> usize {
        self.ops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_differ_by_key_and_have_the_asked_length() {
        assert_eq!(value_of(1, 4096).len(), 4096);
        assert_ne!(value_of(1, 64), value_of(2, 64));
        assert_eq!(value_of(3, 100), value_of(3, 100));
    }
}
