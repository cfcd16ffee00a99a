//! `chat`: encrypted DATA broadcast through the target's mesh. Each operation is one message
//! from one peer; every other connected peer should get it exactly once. An operation counts
//! as sent once per intended recipient, and as done once per delivery (latency: send to that
//! delivery), so loss is deliveries that never came and a second delivery is an error.
//!
//! The target floods to its mesh only: for every peer to be a recipient, run the node with a
//! mesh as large as the swarm (`--mesh-degree`, `--mesh-low`, `--mesh-high`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use setowire_core::swarm::event::Event;

use super::{run_swarm, Setup, Worker};
use crate::report::Recorder;
use crate::run::Ctx;
use crate::swarm::{Swarm, Workload};

/// Default message size: a short chat line.
const DEFAULT_PAYLOAD: usize = 64;
/// Marks the generator's messages, so anything else the peers receive is told apart.
const MAGIC: &[u8; 4] = b"SIMC";
/// magic ‖ run tag ‖ message number ‖ send time (µs since the process epoch).
const HEADER: usize = 4 + 8 + 8 + 8;
/// Messages whose deliveries are counted at once; a message's slot is reused this many later.
const TALLY_SLOTS: usize = 1 << 20;
/// Bits of a tally slot that hold the count; the rest identify the message.
const COUNT_BITS: u32 = 24;

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    let tally = Arc::new(Tally::new());
    run_swarm(ctx, Setup::Engines, |w| Chat::new(ctx, w, tally.clone()))
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A random tag of this run, in every message: nodes and peers drop a payload they have seen
/// before (for minutes), so without it a second run's messages — same numbers, and on an
/// open-loop schedule the same send times — would be taken for the first run's copies and
/// never delivered; and a message of an earlier run still in flight is not counted as ours.
fn run_tag() -> u64 {
    static TAG: OnceLock<u64> = OnceLock::new();
    *TAG.get_or_init(rand::random)
}

/// Deliveries per message, shared by all workers (a message sent by one worker's peer is
/// received by peers of every worker).
pub struct Tally {
    next: AtomicU64,
    slots: Vec<AtomicU64>,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            next: AtomicU64::new(1),
            slots: (0..TALLY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn tag(number: u64) -> u64 {
        number << COUNT_BITS
    }

    fn slot(&self, number: u64) -> &AtomicU64 {
        &self.slots[number as usize % TALLY_SLOTS]
    }

    /// A new message number, its tally at zero.
    pub fn open(&self) -> u64 {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        self.slot(number)
            .store(Self::tag(number), Ordering::Relaxed);
        number
    }

    pub fn delivered(&self, number: u64) {
        let slot = self.slot(number);
        if slot.load(Ordering::Relaxed) >> COUNT_BITS == Self::tag(number) >> COUNT_BITS {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count(&self, number: u64) -> u64 {
        let v = self.slot(number).load(Ordering::Relaxed);
        if v >> COUNT_BITS == Self::tag(number) >> COUNT_BITS {
            v & ((1 << COUNT_BITS) - 1)
        } else {
            0
        }
    }
}

/// What a peer received, to catch a second delivery of one message.
struct Seen {
    first: Instant,
    receivers: Vec<u64>,
}

pub struct Chat {
    tally: Arc<Tally>,
    senders: Vec<u32>,
    next: usize,
    payload_len: usize,
    /// Recipients of each message: every other connected peer.
    recipients: u64,
    /// This worker's messages not yet settled, oldest first.
    mine: VecDeque<(u64, Instant)>,
    seen: HashMap<u64, Seen>,
    timeout: Duration,
}

impl Chat {
    pub fn new(ctx: &Ctx, w: &Worker, tally: Arc<Tally>) -> Self {
        epoch();
        Self {
            tally,
            senders: (0..w.swarm.len())
                .filter(|&s| w.swarm.is_connected(s))
                .collect(),
            next: 0,
            payload_len: ctx.opts.options.payload.unwrap_or(DEFAULT_PAYLOAD),
            recipients: w.peers_total.saturating_sub(1) as u64,
            mine: VecDeque::new(),
            seen: HashMap::new(),
            timeout: ctx.opts.timeout,
        }
    }
}

/// Message `number`, sent at `now`, padded to `len` bytes.
fn message(number: u64, now: Instant, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len.max(HEADER));
    m.extend_from_slice(MAGIC);
    m.extend_from_slice(&run_tag().to_be_bytes());
    m.extend_from_slice(&number.to_be_bytes());
    m.extend_from_slice(&((now - epoch()).as_micros() as u64).to_be_bytes());
    m.resize(len.max(HEADER), b'.');
    m
}

/// Message number and send time of one of this run's messages.
fn parse_message(payload: &[u8]) -> Option<(u64, Instant)> {
    if payload.len() < HEADER || &payload[..4] != MAGIC {
        return None;
    }
    let field = |at: usize| payload[at..at + 8].try_into().ok().map(u64::from_be_bytes);
    if field(4)? != run_tag() {
        return None;
    }
    let number = field(12)?;
    let micros = field(20)?;
    Some((number, epoch() + Duration::from_micros(micros)))
}

impl Workload for Chat {
    fn start(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) -> bool {
        if self.senders.is_empty() || self.recipients == 0 {
            return false;
        }
        let sender = self.senders[self.next];
        self.next = (self.next + 1) % self.senders.len();
        let number = self.tally.open();
        let message = message(number, now, self.payload_len);
        if swarm.engine(sender).broadcast(&message) == 0 {
            rec.error(now, 1);
            rec.note("broadcast_refused", 1);
            return true;
        }
        self.mine.push_back((number, now));
        rec.sent(now, self.recipients);
        rec.note("messages", 1);
        true
    }

    fn event(&mut self, now: Instant, slot: u32, event: &Event, _: &mut Swarm, rec: &mut Recorder) {
        let Event::Data { payload, .. } = event else {
            return;
        };
        let Some((number, sent_at)) = parse_message(payload) else {
            rec.note("other_data", 1);
            return;
        };
        let seen = self.seen.entry(number).or_insert_with(|| Seen {
            first: now,
            receivers: Vec::new(),
        });
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if seen.receivers.len() <= word {
            seen.receivers.resize(word + 1, 0);
        }
        if seen.receivers[word] & bit != 0 {
            rec.error(now, 1);
            rec.note("duplicate_deliveries", 1);
            return;
        }
        seen.receivers[word] |= bit;
        self.tally.delivered(number);
        rec.done(now, now.saturating_duration_since(sent_at));
    }

    fn expire(&mut self, now: Instant, _: &mut Swarm, rec: &mut Recorder) {
        let cutoff = now.checked_sub(self.timeout);
        while let Some(&(number, at)) = self.mine.front() {
            let got = self.tally.count(number);
            if got >= self.recipients {
                self.mine.pop_front();
            } else if cutoff.is_some_and(|c| at < c) {
                self.mine.pop_front();
                rec.lost(at, self.recipients - got);
            } else {
                break;
            }
        }
        if let Some(cutoff) = cutoff.and_then(|c| c.checked_sub(self.timeout)) {
            self.seen.retain(|_, s| s.first >= cutoff);
        }
    }

    fn outstanding(&self) -> usize {
        self.mine.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_only_the_current_message_of_a_slot() {
        let t = Tally::new();
        let a = t.open();
        t.delivered(a);
        t.delivered(a);
        assert_eq!(t.count(a), 2);
        // A delivery for a message whose slot was reused is not counted for the new one.
        let stale = a + TALLY_SLOTS as u64;
        t.delivered(stale);
        assert_eq!(t.count(a), 2);
        assert_eq!(t.count(stale), 0);
    }

    #[test]
    fn messages_carry_their_number_and_time() {
        epoch();
        let now = Instant::now();
        let m = message(7, now, 100);
        assert_eq!(m.len(), 100);
        let (number, at) = parse_message(&m).unwrap();
        assert_eq!(number, 7);
        assert!(at <= now && now - at < Duration::from_millis(1));
        assert!(parse_message(b"not ours, and long enough to pass").is_none());
        let mut earlier_run = m.clone();
        earlier_run[4] ^= 1;
        assert!(parse_message(&earlier_run).is_none());
        assert_eq!(message(1, now, 3).len(), HEADER);
    }
}
