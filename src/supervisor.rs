//! The node's run state, shared by every thread it runs: the stop flag all their loops
//! watch, and the first failure of a thread the node cannot run without.
//!
//! A node that lost a shard or a service keeps answering on what is left, silently serving
//! less. So a supervised thread that panics, or returns while the node is meant to be
//! running, is logged with its cause and stops the whole node, which then exits non-zero
//! for its service manager (systemd, Kubernetes) to restart it.
//!
//! A panic is reported by a panic hook, as it is raised: before the thread unwinds, which
//! drops its state (sockets, rings) and may take a while or even hang.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a supervised thread stopped serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// It panicked, with this message.
    Panicked(String),
    /// It returned, or its server ended with this error, while the node was running.
    Exited(Option<String>),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Panicked(message) => write!(f, "panicked: {message}"),
            Cause::Exited(None) => f.write_str("exited while the node was running"),
            Cause::Exited(Some(error)) => write!(f, "exited while the node was running: {error}"),
        }
    }
}

/// A supervised thread (or server task) that stopped serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{thread} {cause}")]
pub struct Failure {
    /// The thread's name, e.g. `shard-1` or `dht-listen`.
    pub thread: String,
    pub cause: Cause,
}

struct State {
    /// Set to stop the node: by a signal, `quit`, the end of the control input, or a failure.
    stop: Arc<AtomicBool>,
    /// Set by SIGTERM/SIGINT: the node is about to stop (after its shutdown grace) and no
    /// longer ready for new traffic.
    draining: Arc<AtomicBool>,
    failure: OnceLock<Failure>,
}

/// A handle on the run state; clones share it.
#[derive(Clone)]
pub struct Supervisor {
    state: Arc<State>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor {
            state: Arc::new(State {
                stop: Arc::new(AtomicBool::new(false)),
                draining: Arc::new(AtomicBool::new(false)),
                failure: OnceLock::new(),
            }),
        }
    }

    /// The flag that stops the node, for loops that watch it and for signal handlers.
    pub fn stop_flag(&self) -> &Arc<AtomicBool> {
        &self.state.stop
    }

    pub fn is_stopping(&self) -> bool {
        self.state.stop.load(Ordering::Relaxed)
    }

    /// The flag a stop signal sets, for signal handlers; the node stops after its grace.
    pub fn drain_flag(&self) -> &Arc<AtomicBool> {
        &self.state.draining
    }

    pub fn is_draining(&self) -> bool {
        self.state.draining.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }

    /// The first failure, if a supervised thread has failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.state.failure.get()
    }

    /// Logs `failure`, keeps it if it is the first, and stops the node.
    pub fn fail(&self, failure: Failure) {
        tracing::error!(
            thread = %failure.thread,
            cause = %failure.cause,
            "a thread the node cannot run without failed; stopping"
        );
        // Later failures are mostly the fallout of the first; it is the one to report.
        let _ = self.state.failure.set(failure);
        self.stop();
    }

    /// Spawns a thread named `name` running `body`; a panic or a return before the node
    /// stops is a [`Failure`].
    pub fn spawn(
        &self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> io::Result<JoinHandle<()>> {
        install_panic_hook();
        let supervisor = self.clone();
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                SUPERVISED.with(|s| *s.borrow_mut() = Some((supervisor.clone(), name.clone())));
                body();
                // Only a return gets here; the hook has reported a panic.
                if !supervisor.is_stopping() {
                    supervisor.fail(Failure {
                        thread: name,
                        cause: Cause::Exited(None),
                    });
                }
            })
    }
}

thread_local! {
    /// The supervisor of the thread running here and the thread's name, for the panic hook.
    static SUPERVISED: RefCell<Option<(Supervisor, String)>> = const { RefCell::new(None) };
}

/// Puts a hook before the panic hook in place (which prints the panic) that reports a panic
/// on a supervised thread as its failure.
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            // Reported first: printing a backtrace can take longer than the node has left.
            // `try_with`: a panic while the thread's locals are torn down has no supervisor.
            let _ = SUPERVISED.try_with(|supervised| {
                if let Some((supervisor, name)) = &*supervised.borrow() {
                    supervisor.fail(Failure {
                        thread: name.clone(),
                        cause: Cause::Panicked(panic_message(info.payload())),
                    });
                }
            });
            previous(info);
        }));
    });
}

/// Waits until `deadline` for `thread` to end; one still running then is left behind (it
/// must not hold up the exit) and logged.
pub fn join_until(thread: JoinHandle<()>, deadline: Instant) {
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if thread.is_finished() {
        // A panic it ended with was reported as it was raised.
        let _ = thread.join();
    } else {
        let name = thread.thread().name().unwrap_or("unnamed");
        tracing::warn!(thread = %name, "still running at the shutdown deadline; left behind");
    }
}

/// The message a panic was raised with (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_a_failure_that_stops_the_node() {
        let supervisor = Supervisor::new();
        let thread = supervisor
            .spawn("worker-3".into(), || panic!("boom {}", 42))
            .unwrap();
        // The failure is recorded as the panic is raised, before the thread ends.
        assert!(thread.join().is_err());
        let failure = supervisor.failure().unwrap();
        assert_eq!(failure.thread, "worker-3");
        assert_eq!(failure.cause, Cause::Panicked("boom 42".into()));
        assert_eq!(failure.to_string(), "worker-3 panicked: boom 42");
        assert!(supervisor.is_stopping());
    }

    #[test]
    fn returning_early_is_a_failure_returning_after_stop_is_not() {
        let supervisor = Supervisor::new();
        supervisor
            .spawn("early".into(), || {})
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(supervisor.failure().unwrap().cause, Cause::Exited(None));

        let supervisor = Supervisor::new();
        supervisor.stop();
        supervisor
            .spawn("late".into(), || {})
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(supervisor.failure(), None);
    }

    #[test]
    fn the_first_failure_is_kept() {
        let supervisor = Supervisor::new();
        for thread in ["a", "b"] {
            supervisor.fail(Failure {
                thread: thread.into(),
                cause: Cause::Exited(Some("listener closed".into())),
            });
        }
        assert_eq!(supervisor.failure().unwrap().thread, "a");
    }
}
