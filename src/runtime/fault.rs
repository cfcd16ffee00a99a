//! Faults a debug build injects on request, so that tests can watch the node deal with a
//! failure of its own: `SETOWIRE_TEST_FAULT=shard-panic:<shard>:<after_ms>` makes shard
//! `<shard>` panic `<after_ms>` milliseconds after it starts. Release builds ignore it.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::io::{BackendKind, DatagramIo, IoStats};
use setowire_core::swarm::node_view::ShardId;

const ENV_VAR: &str = "SETOWIRE_TEST_FAULT";

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ShardPanic { shard: ShardId, after: Duration },
}

impl Fault {
    /// The fault `SETOWIRE_TEST_FAULT` asks for; one it cannot read is logged and ignored.
    pub fn from_env() -> Option<Fault> {
        let spec = std::env::var(ENV_VAR).ok()?;
        let fault = Fault::parse(&spec);
        match fault {
            Some(fault) => tracing::warn!(?fault, "{ENV_VAR}: injecting a fault"),
            None => tracing::warn!(%spec, "{ENV_VAR}: expected shard-panic:<shard>:<after_ms>"),
        }
        fault
    }

    fn parse(spec: &str) -> Option<Fault> {
        let mut parts = spec.split(':');
        let fault = match (parts.next(), parts.next(), parts.next()) {
            (Some("shard-panic"), Some(shard), Some(ms)) => Fault::ShardPanic {
                shard: shard.parse().ok()?,
                after: Duration::from_millis(ms.parse().ok()?),
            },
            _ => return None,
        };
        parts.next().is_none().then_some(fault)
    }

    /// Shard `shard`'s socket, made to panic on schedule when the fault is aimed at it.
    pub fn arm(self, shard: ShardId, io: Box<dyn DatagramIo + Send>) -> Box<dyn DatagramIo + Send> {
        match self {
            Fault::ShardPanic {
                shard: target,
                after,
            } if target == shard => Box::new(PanickingIo {
                inner: io,
                after,
                at: Instant::now() + after,
            }),
            Fault::ShardPanic { .. } => io,
        }
    }
}

/// A socket whose receive panics from `at` on: the shard's loop panics as a bug would.
struct PanickingIo {
    inner: Box<dyn DatagramIo + Send>,
    after: Duration,
    at: Instant,
}

impl DatagramIo for PanickingIo {
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
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!(
                "injected fault: shard panic after {} ms",
                self.after.as_millis()
            );
        }
        // Wake up in time to panic on schedule.
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
    fn parses_a_shard_panic() {
        assert_eq!(
            Fault::parse("shard-panic:1:250"),
            Some(Fault::ShardPanic {
                shard: 1,
                after: Duration::from_millis(250)
            })
        );
        for bad in [
            "",
            "shard-panic",
            "shard-panic:x:1",
            "shard-panic:1:2:3",
            "oops:1:2",
        ] {
            assert_eq!(Fault::parse(bad), None, "{bad}");
        }
    }
}
