//! Connection deadlines. A client has `header` to send a whole request head, counted from
//! connecting (or, on a kept-alive connection, from the first byte of its next request), and
//! a kept-alive connection with no request in progress is closed after `idle`. While a
//! request is in progress neither applies: piping transfers and waiting receivers have
//! limits of their own, and the announce body has its own deadline.
//!
//! axum serves hyper without a timer, so hyper's own header timeout never runs. Instead the
//! socket wrapper checks [`ReadDeadline`] on every read, and [`track_requests`], a layer
//! around every request, tells it through the connection's [`ConnPhase`] when a request
//! starts and when its response has been sent.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;
use tokio::time::{Instant, Sleep};

use super::metrics::HttpMetrics;
use super::ConnAddrs;

/// The two connection timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
}

/// What one connection's requests tell its socket.
pub(crate) struct ConnPhase {
    accepted: Instant,
    /// Requests started whose response has not been sent in full.
    in_flight: AtomicUsize,
    /// Requests ended so far: a new value starts a new wait for the next request.
    ended: AtomicU64,
    /// When the last request ended, in nanoseconds after `accepted`.
    last_end: AtomicU64,
}

impl ConnPhase {
    pub(crate) fn new(accepted: Instant) -> Self {
        ConnPhase {
            accepted,
            in_flight: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
            last_end: AtomicU64::new(0),
        }
    }

    /// A request has started; it ends when the guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }
}

/// A request in progress on its connection.
struct InFlight(Arc<ConnPhase>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let phase = &self.0;
        let since = Instant::now().saturating_duration_since(phase.accepted);
        phase.last_end.store(
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        phase.ended.fetch_add(1, Ordering::AcqRel);
        phase.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which deadline a waiting connection is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// For a request head to be complete.
    Head,
    /// For a kept-alive connection's next request to begin.
    Idle,
}

/// The socket side: decides after every read whether the connection has overstayed.
pub(crate) struct ReadDeadline {
    phase: Arc<ConnPhase>,
    timeouts: Timeouts,
    metrics: Arc<HttpMetrics>,
    timer: Pin<Box<Sleep>>,
    /// The `ended` count the current wait began at.
    wait_began_after: u64,
    /// When the first byte of the awaited request came (kept-alive connections only).
    head_from: Option<Instant>,
}

impl ReadDeadline {
    pub(crate) fn new(
        phase: Arc<ConnPhase>,
        timeouts: Timeouts,
        metrics: Arc<HttpMetrics>,
    ) -> Self {
        let first = phase.accepted + timeouts.header;
        ReadDeadline {
            phase,
            timeouts,
            metrics,
            timer: Box::pin(tokio::time::sleep_until(first)),
            wait_began_after: 0,
            head_from: None,
        }
    }

    /// Passes on the result of one read of the socket (`got` bytes were read), or fails it
    /// with `TimedOut` once the connection has waited past its deadline. A read that found
    /// nothing arms the timer, so the connection's task wakes at the deadline.
    pub(crate) fn after_read(
        &mut self,
        cx: &mut Context<'_>,
        read: Poll<io::Result<()>>,
        got: usize,
    ) -> Poll<io::Result<()>> {
        let Some((deadline, waiting)) = self.deadline(got) else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) if got > 0 => {
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(self.expire(waiting)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(self.expire(waiting)));
                }
                self.timer.as_mut().reset(deadline);
                if self.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(self.expire(waiting)));
                }
                Poll::Pending
            }
            // End of stream or an error: the connection ends anyway.
            done => done,
        }
    }

    /// The deadline the connection waits under now, `None` while a request is in progress.
    fn deadline(&mut self, got: usize) -> Option<(Instant, Waiting)> {
        let phase = &self.phase;
        if phase.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ended = phase.ended.load(Ordering::Acquire);
        if ended != self.wait_began_after {
            self.wait_began_after = ended;
            self.head_from = None;
        }
        if ended == 0 {
            // A new connection: its first request head is due `header` after connecting.
            return Some((phase.accepted + self.timeouts.header, Waiting::Head));
        }
        if got > 0 && self.head_from.is_none() {
            self.head_from = Some(Instant::now());
        }
        Some(match self.head_from {
            Some(from) => (from + self.timeouts.header, Waiting::Head),
            None => {
                let last_end = Duration::from_nanos(phase.last_end.load(Ordering::Acquire));
                (
                    phase.accepted + last_end + self.timeouts.idle,
                    Waiting::Idle,
                )
            }
        })
    }

    fn expire(&self, waiting: Waiting) -> io::Error {
        let (counter, what) = match waiting {
            Waiting::Head => (&self.metrics.header_timeouts, "no complete request head"),
            Waiting::Idle => (&self.metrics.idle_timeouts, "idle"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

/// Marks each request in progress on its connection until its response has been sent (or
/// dropped), so that the connection's deadlines leave it alone meanwhile.
pub(crate) async fn track_requests(
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    request: Request,
    next: Next,
) -> Response {
    let in_flight = conn.phase().begin();
    let response = next.run(request).await;
    response.map(|inner| {
        Body::new(TrackedBody {
            inner,
            _in_flight: in_flight,
        })
    })
}

/// A response body that ends its request's [`InFlight`] when hyper is done with it.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
