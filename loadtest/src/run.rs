//! What every scenario gets to run with, and the pacing shared by all of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::Checked;
use crate::report::{Live, Recorder, Window};

/// Longest a worker may take to set its peers up (handshakes) before the load starts.
pub const SETUP_LIMIT: Duration = Duration::from_secs(120);
/// After the measured window, answers still in flight get this long to arrive.
pub const DRAIN: Duration = Duration::from_millis(500);

/// A run in progress: options, shared counters, and the stop flag (Ctrl-C, or an error in
/// another worker).
#[derive(Clone)]
pub struct Ctx {
    pub opts: Arc<Checked>,
    pub live: Arc<Live>,
    pub stop: Arc<AtomicBool>,
}

impl Ctx {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The measured window for load that starts now (after set-up).
    pub fn window_from(&self, start: Instant) -> Window {
        Window::new(start, self.opts.warmup, self.opts.duration)
    }

    /// A recorder for one worker whose load starts at `start`.
    pub fn recorder(&self, start: Instant) -> Recorder {
        Recorder::new(self.window_from(start), self.live.clone())
    }

    /// The share of `total` that worker `index` of `workers` takes: an even split, the first
    /// workers taking one more when it does not divide.
    pub fn share(total: usize, workers: usize, index: usize) -> (usize, usize) {
        let base = total / workers;
        let extra = total % workers;
        let count = base + usize::from(index < extra);
        let first = index * base + index.min(extra);
        (first, count)
    }

    /// The pacer of worker `index`: its share of `--rate`, or closed loop.
    pub fn pacer(&self, start: Instant) -> Pacer {
        match self.opts.options.rate {
            Some(rate) => Pacer::open(rate / self.opts.options.threads as f64, start),
            None => Pacer::Closed,
        }
    }
}

/// When a worker may start operations.
#[derive(Debug, Clone)]
pub enum Pacer {
    /// As many as the in-flight limit allows.
    Closed,
    /// On a fixed schedule, `per_second` of them, whatever the answers do.
    Open {
        per_second: f64,
        start: Instant,
        started: u64,
    },
}

impl Pacer {
    pub fn open(per_second: f64, start: Instant) -> Pacer {
        Pacer::Open {
            per_second,
            start,
            started: 0,
        }
    }

    /// How many operations may start now, given how many are outstanding and the most that
    /// may be. Open loop ignores the limit: overload must show as loss, not as slower sending.
    pub fn due(&mut self, now: Instant, outstanding: usize, limit: usize) -> u64 {
        match self {
            Pacer::Closed => limit.saturating_sub(outstanding) as u64,
            Pacer::Open {
                per_second,
                start,
                started,
            } => {
                let owed =
                    (now.saturating_duration_since(*start).as_secs_f64() * *per_second) as u64;
                let due = owed.saturating_sub(*started);
                *started += due;
                due
            }
        }
    }

    /// How long until the next operation is due (closed loop: whenever an answer comes).
    pub fn next_in(&self, now: Instant) -> Duration {
        match self {
            Pacer::Closed => Duration::from_millis(5),
            Pacer::Open {
                per_second,
                start,
                started,
            } => {
                let next = *start + Duration::from_secs_f64((*started + 1) as f64 / *per_second);
                next.saturating_duration_since(now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once() {
        for (total, workers) in [(10, 3), (2, 4), (1000, 1), (7, 7)] {
            let mut next = 0;
            for i in 0..workers {
                let (first, count) = Ctx::share(total, workers, i);
                assert_eq!(first, next);
                next += count;
            }
            assert_eq!(next, total);
        }
    }

    #[test]
    fn open_loop_keeps_its_schedule() {
        let t0 = Instant::now();
        let mut p = Pacer::open(1000.0, t0);
        assert_eq!(p.due(t0, 0, 1), 0);
        assert_eq!(p.due(t0 + Duration::from_millis(10), 0, 1), 10);
        // Outstanding work does not hold an open loop back.
        assert_eq!(p.due(t0 + Duration::from_millis(25), 1_000_000, 1), 15);
        assert!(p.next_in(t0 + Duration::from_millis(25)) <= Duration::from_millis(1));
    }

    #[test]
    fn closed_loop_fills_to_the_limit() {
        let mut p = Pacer::Closed;
        assert_eq!(p.due(Instant::now(), 3, 8), 5);
        assert_eq!(p.due(Instant::now(), 9, 8), 0);
    }
}
