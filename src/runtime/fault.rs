//! Faults a debug build injects on request, so that tests can watch the node deal with a
//! failure of its own. `SETOWIRE_TEST_FAULT` names one:
//!
//! - `shard-panic:<shard>:<after_ms>`: shard `<shard>` panics `<after_ms>` milliseconds after
//!   it starts;
//! - `shard-stall:<shard>:<after_ms>:<for_ms>`: shard `<shard>`'s loop stops for `<for_ms>`
//!   milliseconds, once, `<after_ms>` after it starts, and then goes on.
//!
//! Release builds ignore it.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::io::{BackendKind, DatagramIo, IoStats};
use setowire_core::swarm::node_view::ShardId;

const ENV_VAR: &str = "SETOWIRE_TEST_FAULT";
const EXPECTED: &str = "shard-panic:<shard>:<after_ms> or shard-stall:<shard>:<after_ms>:<for_ms>";

/// What happens to the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Panic,
    /// Its loop blocks for this long.
    Stall(Duration),
}

/// A fault to inject: `failure` befalls shard `shard` `after` its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub shard: ShardId,
    pub after: Duration,
    pub failure: Failure,
}

impl Fault {
    /// The fault `SETOWIRE_TEST_FAULT` asks for; one it cannot read is logged and ignored.
    pub fn from_env() -> Option<Fault> {
        let spec = std::env::var(ENV_VAR).ok()?;
        let fault = Fault::parse(&spec);
        match fault {
            Some(fault) => tracing::warn!(?fault, "{ENV_VAR}: injecting a fault"),
            None => tracing::warn!(%spec, "{ENV_VAR}: expected {EXPECTED}"),
        }
        fault
    }

    fn parse(spec: &str) -> Option<Fault> {
        let parts: Vec<&str> = spec.split(':').collect();
        let ms = |s: &str| s.parse().ok().map(Duration::from_millis);
        let (failure, shard, after) = match parts[..] {
            ["shard-panic", shard, after] => (Failure::Panic, shard, after),
            ["shard-stall", shard, after, stall] => (Failure::Stall(ms(stall)?), shard, after),
            _ => return None,
        };
        Some(Fault {
            shard: shard.parse().ok()?,
            after: ms(after)?,
            failure,
        })
    }

    /// Shard `shard`'s socket, made to fail on schedule when the fault is aimed at it.
    pub fn arm(self, shard: ShardId, io: Box<dyn DatagramIo + Send>) -> Box<dyn DatagramIo + Send> {
        if self.shard != shard {
            return io;
        }
        Box::new(FaultyIo {
            inner: io,
            fault: self,
            at: Instant::now() + self.after,
            done: false,
        })
    }
}

/// A socket whose receive fails from `at` on, as a bug in the shard's loop would: it panics,
/// or it blocks once.
struct FaultyIo {
    inner: Box<dyn DatagramIo + Send>,
    fault: Fault,
    at: Instant,
    /// The stall is over.
    done: bool,
}

impl DatagramIo for FaultyIo {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn recv_batch(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> io::Result<usize> {
        if self.done {
            return self.inner.recv_batch(timeout, on_datagram);
        }
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            match self.fault.failure {
                Failure::Panic => panic!(
                    "injected fault: shard panic after {} ms",
                    self.fault.after.as_millis()
                ),
                Failure::Stall(stall) => {
                    tracing::warn!(shard = self.fault.shard, ?stall, "injected fault: stalling");
                    std::thread::sleep(stall);
                    self.done = true;
                    tracing::warn!(shard = self.fault.shard, "injected fault: stall over");
                }
            }
        }
        // Wake up in time to fail on schedule.
        self.inner.recv_batch(timeout.min(left), on_datagram)
    }

    fn queue_send(&mut self, dst: SocketAddr, data: &[u8]) {
        self.inner.queue_send(dst, data);
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn stats(&self) -> IoStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_shard_panic_and_a_stall() {
        assert_eq!(
            Fault::parse("shard-panic:1:250"),
            Some(Fault {
                shard: 1,
                after: Duration::from_millis(250),
                failure: Failure::Panic,
            })
        );
        assert_eq!(
            Fault::parse("shard-stall:0:100:3000"),
            Some(Fault {
                shard: 0,
                after: Duration::from_millis(100),
                failure: Failure::Stall(Duration::from_secs(3)),
            })
        );
        for bad in [
            "",
            "shard-panic",
            "shard-panic:x:1",
            "shard-panic:1:2:3",
            "shard-stall:1:2",
            "shard-stall:1:2:x",
            "oops:1:2",
        ] {
            assert_eq!(Fault::parse(bad), None, "{bad}");
        }
    }
}
