//! What a run measured: per-thread recorders while it runs, one merged [`Report`] after.
//!
//! Each worker thread owns a [`Recorder`] (no sharing on the hot path) and bumps the shared
//! [`Live`] counters that the progress bar reads. Latencies go into HDR histograms: one for the
//! whole measured window and one per second of the run, for the timeline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, with 3 significant digits.
const LATENCY_MAX_US: u64 = 60_000_000;

/// Counters every worker adds to as it goes; read by the progress bar.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub lost: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed) + self.lost.load(Ordering::Relaxed)
    }
}

/// When a run started and which part of it counts: the warm-up before `measure_from` only
/// shows in the timeline.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub started: Instant,
    pub measure_from: Instant,
    pub measure_until: Instant,
}

impl Window {
    pub fn new(started: Instant, warmup: Duration, duration: Duration) -> Self {
        Self {
            started,
            measure_from: started + warmup,
            measure_until: started + warmup + duration,
        }
    }

    fn measures(&self, now: Instant) -> bool {
        now >= self.measure_from && now < self.measure_until
    }

    pub fn is_over(&self, now: Instant) -> bool {
        now >= self.measure_until
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// One second of the run.
struct Slot {
    completed: u64,
    latency: Histogram<u64>,
}

/// One worker's measurements.
pub struct Recorder {
    window: Window,
    live: Arc<Live>,
    sent: u64,
    completed: u64,
    lost: u64,
    errors: u64,
    latency: Histogram<u64>,
    timeline: Vec<Slot>,
    /// Scenario-specific counts (duplicates, BATCH-coalesced replies, ...).
    notes: BTreeMap<&'static str, u64>,
}

impl Recorder {
    pub fn new(window: Window, live: Arc<Live>) -> Self {
        Self {
            window,
            live,
            sent: 0,
            completed: 0,
            lost: 0,
            errors: 0,
            latency: histogram(),
            timeline: Vec::new(),
            notes: BTreeMap::new(),
        }
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// `n` requests went out at `now`.
    pub fn sent(&mut self, now: Instant, n: u64) {
        self.live.sent.fetch_add(n, Ordering::Relaxed);
        if self.window.measures(now) {
            self.sent += n;
        }
    }

    /// A request sent `latency` ago completed at `now`. It counts in the measured figures when
    /// it was sent inside the measured window.
    pub fn done(&mut self, now: Instant, latency: Duration) {
        self.live.completed.fetch_add(1, Ordering::Relaxed);
        let micros = (latency.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        let slot = now.saturating_duration_since(self.window.started).as_secs() as usize;
        if slot < 3600 {
            while self.timeline.len() <= slot {
                self.timeline.push(Slot {
                    completed: 0,
                    latency: histogram(),
                });
            }
            let slot = &mut self.timeline[slot];
            slot.completed += 1;
            let _ = slot.latency.record(micros);
        }
        if self
            .window
            .measures(now.checked_sub(latency).unwrap_or(now))
        {
            self.completed += 1;
            let _ = self.latency.record(micros);
        }
    }

    /// `n` requests sent at `sent_at` got no answer in time.
    pub fn lost(&mut self, sent_at: Instant, n: u64) {
        self.live.lost.fetch_add(n, Ordering::Relaxed);
        if self.window.measures(sent_at) {
            self.lost += n;
        }
    }

    /// `n` requests failed outright (a refusal, a wrong answer) at `now`.
    pub fn error(&mut self, now: Instant, n: u64) {
        self.live.errors.fetch_add(n, Ordering::Relaxed);
        if self.window.measures(now) {
            self.errors += n;
        }
    }

    /// Adds to a scenario-specific count, reported beside the standard figures.
    pub fn note(&mut self, name: &'static str, n: u64) {
        *self.notes.entry(name).or_default() += n;
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// One second of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the run started (the warm-up included).
    pub second: u64,
    pub rate: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The merged result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub peers: usize,
    /// The open-loop rate asked for; None for closed-loop (as fast as answers come).
    pub offered_rate: Option<f64>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub sent: u64,
    pub completed: u64,
    /// Completed operations per second over the measured window.
    pub rate: f64,
    pub lost: u64,
    pub errors: u64,
    /// Lost ÷ sent in the measured window.
    pub loss_ratio: f64,
    pub latency_ms: Percentiles,
    pub notes: BTreeMap<String, u64>,
    pub timeline: Vec<Sample>,
}

/// What a run was, for the report's header.
pub struct RunInfo {
    pub scenario: String,
    pub target: String,
    pub peers: usize,
    pub offered_rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Report {
    pub fn merge(info: RunInfo, recorders: Vec<Recorder>) -> Report {
        let mut latency = histogram();
        let mut slots: Vec<(u64, Histogram<u64>)> = Vec::new();
        let (mut sent, mut completed, mut lost, mut errors) = (0, 0, 0, 0);
        let mut notes = BTreeMap::new();
        for r in recorders {
            sent += r.sent;
            completed += r.completed;
            lost += r.lost;
            errors += r.errors;
            let _ = latency.add(&r.latency);
            for (i, slot) in r.timeline.into_iter().enumerate() {
                if slots.len() <= i {
                    slots.resize_with(i + 1, || (0, histogram()));
                }
                slots[i].0 += slot.completed;
                let _ = slots[i].1.add(&slot.latency);
            }
            for (name, n) in r.notes {
                *notes.entry(name.to_string()).or_default() += n;
            }
        }
        let secs = info.duration.as_secs_f64().max(1e-9);
        let timeline = slots
            .iter()
            .enumerate()
            .map(|(second, (rate, h))| {
                let p = Percentiles::of(h);
                Sample {
                    second: second as u64,
                    rate: *rate,
                    p50_ms: p.p50,
                    p99_ms: p.p99,
                }
            })
            .collect();
        Report {
            scenario: info.scenario,
            target: info.target,
            peers: info.peers,
            offered_rate: info.offered_rate,
            warmup_secs: info.warmup.as_secs_f64(),
            duration_secs: info.duration.as_secs_f64(),
            sent,
            completed,
            rate: completed as f64 / secs,
            lost,
            errors,
            loss_ratio: if sent == 0 {
                0.0
            } else {
                lost as f64 / sent as f64
            },
            latency_ms: Percentiles::of(&latency),
            notes,
            timeline,
        }
    }

    /// The human-readable summary printed at the end of a run.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let load = match self.offered_rate {
            Some(rate) => format!("open loop, {rate:.0}/s offered"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "{} → {}  ({} peers, {load}, {:.0} s measured after {:.0} s warm-up)",
            self.scenario, self.target, self.peers, self.duration_secs, self.warmup_secs
        );
        let rows = [
            ("rate", format!("{:.0} /s", self.rate)),
            ("completed", self.completed.to_string()),
            ("sent", self.sent.to_string()),
            (
                "lost",
                format!("{} ({:.3} %)", self.lost, self.loss_ratio * 100.0),
            ),
            ("errors", self.errors.to_string()),
            ("latency p50", format!("{:.3} ms", self.latency_ms.p50)),
            ("latency p90", format!("{:.3} ms", self.latency_ms.p90)),
            ("latency p99", format!("{:.3} ms", self.latency_ms.p99)),
            ("latency p99.9", format!("{:.3} ms", self.latency_ms.p999)),
            ("latency max", format!("{:.3} ms", self.latency_ms.max)),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<16} {value:>20}");
        }
        for (name, value) in &self.notes {
            let _ = writeln!(out, "  {name:<16} {value:>20}");
        }
        out
    }

    pub fn write_json(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_measured_window_counts() {
        let t0 = Instant::now();
        let window = Window::new(t0, Duration::from_secs(1), Duration::from_secs(2));
        let live = Arc::new(Live::default());
        let mut r = Recorder::new(window, live.clone());
        // During warm-up: live only.
        r.sent(t0, 1);
        r.done(t0 + Duration::from_millis(10), Duration::from_millis(10));
        // Measured.
        let t = t0 + Duration::from_millis(1500);
        r.sent(t, 2);
        r.done(t + Duration::from_millis(4), Duration::from_millis(4));
        r.lost(t, 1);
        r.note("duplicates", 3);
        let report = Report::merge(
            RunInfo {
                scenario: "ping".into(),
                target: "127.0.0.1:1".into(),
                peers: 1,
                offered_rate: None,
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(2),
            },
            vec![r],
        );
        assert_eq!(live.completed(), 2);
        assert_eq!((report.sent, report.completed, report.lost), (2, 1, 1));
        assert_eq!(report.rate, 0.5);
        assert_eq!(report.loss_ratio, 0.5);
        assert!((report.latency_ms.p50 - 4.0).abs() < 0.01);
        assert_eq!(report.notes["duplicates"], 3);
        assert_eq!(report.timeline.len(), 2);
        assert_eq!(report.timeline[0].rate, 1);
        assert_eq!(report.timeline[1].rate, 1);
    }
}
