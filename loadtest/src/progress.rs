//! The live progress line: operations done, current rate, errors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::Ctx;

const REFRESH: Duration = Duration::from_millis(250);

pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Draws on stderr until [`Progress::finish`]; draws nothing with `--quiet` or when stderr
    /// is not a terminal.
    pub fn start(ctx: &Ctx) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let bar = if ctx.opts.options.quiet {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let live = ctx.live.clone();
        let flag = done.clone();
        let thread = thread::spawn(move || {
            let mut last = (Instant::now(), 0u64);
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(REFRESH);
                let now = Instant::now();
                let completed = live.completed();
                let rate = (completed - last.1) as f64 / (now - last.0).as_secs_f64();
                last = (now, completed);
                bar.set_message(format!(
                    "{completed} done, {rate:.0}/s, {} lost or failed",
                    live.errors()
                ));
                bar.tick();
            }
            bar.finish_and_clear();
        });
        Progress {
            done,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
