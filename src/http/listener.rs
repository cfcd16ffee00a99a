//! The public TCP listener: at most `max_connections` open connections (beyond that the
//! kernel's backlog holds newcomers until one closes) and at most `max_per_ip` from one
//! source IP, counted at accept (a connection over it is reset at once and counted, so one
//! address holding idle connections cannot take the listener from everyone else).
//! TCP_NODELAY, keepalive probes, and a TCP user timeout so a peer that stops acknowledging
//! (or reading) cannot pin a connection forever; every read goes through the connection's
//! [`ReadDeadline`]. Each connection knows its local address, which the bootstrap uses to
//! tell clients how to reach a node bound to a wildcard address.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::deadlines::{ConnPhase, ReadDeadline, Timeouts};
use super::metrics::HttpMetrics;
use setowire_core::ratelimit::SourceGrouping;

/// Pause after an accept error that is not about one connection (EMFILE, ENOBUFS, ...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many connections the listener holds, in all and per source IP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_per_ip: usize,
    /// What counts as one source IP (IPv6 by prefix) for every per-IP limit.
    pub(crate) grouping: SourceGrouping,
    /// Longest a peer may leave sent data unacknowledged.
    pub(crate) user_timeout: Duration,
    pub(crate) timeouts: Timeouts,
}

pub(crate) struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    per_ip: Arc<OpenPerIp>,
    limits: ConnLimits,
    metrics: Arc<HttpMetrics>,
}

impl CappedListener {
    pub(crate) fn new(inner: TcpListener, limits: ConnLimits, metrics: Arc<HttpMetrics>) -> Self {
        CappedListener {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_ip: Arc::new(OpenPerIp {
                max: limits.max_per_ip.max(1),
                open: Mutex::new(HashMap::new()),
            }),
            limits,
            metrics,
        }
    }

    fn tune(&self, stream: &TcpStream) {
        let sock = SockRef::from(stream);
        let _ = sock.set_tcp_nodelay(true);
        let keepalive = TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(10))
            .with_retries(3);
        let _ = sock.set_tcp_keepalive(&keepalive);
        let _ = sock.set_tcp_user_timeout(Some(self.limits.user_timeout));
    }
}

/// Closes a connection with a reset: the client learns at once, and no TIME_WAIT is left.
fn reset(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
}

/// Open connections per source IP; an IP has an entry only while it has one open.
struct OpenPerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl OpenPerIp {
    /// A place for one more connection from `ip`, if it has fewer than `max` open.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

/// One open connection's place in [`OpenPerIp`], given back on drop.
struct IpSlot {
    table: Arc<OpenPerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl Listener for CappedListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                // The semaphore is never closed; wait for shutdown instead of spinning.
                std::future::pending::<()>().await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, remote)) => {
                    let source = self.limits.grouping.group_of(remote.ip()).addr();
                    let Some(slot) = self.per_ip.admit(source) else {
                        reset(stream);
                        self.metrics
                            .connections_refused
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    self.tune(&stream);
                    let local = match stream.local_addr() {
                        Ok(local) => local,
                        Err(_) => continue,
                    };
                    let phase = Arc::new(ConnPhase::new(tokio::time::Instant::now()));
                    let deadline = ReadDeadline::new(
                        Arc::clone(&phase),
                        self.limits.timeouts,
                        Arc::clone(&self.metrics),
                    );
                    return (
                        Conn {
                            stream,
                            local,
                            source,
                            phase,
                            deadline,
                            _slot: slot,
                            _permit: permit,
                        },
                        remote,
                    );
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!("http accept: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// An accepted connection; its places (in all and for its IP) are given back when it is
/// dropped.
pub(crate) struct Conn {
    stream: TcpStream,
    local: SocketAddr,
    source: IpAddr,
    phase: Arc<ConnPhase>,
    deadline: ReadDeadline,
    _slot: IpSlot,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        this.deadline.after_read(cx, read, got)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Both ends of the connection a request came in on, IPv4-mapped IPv6 addresses unmapped,
/// its socket for [`peer_has_closed`] and its [`ConnPhase`].
#[derive(Clone)]
pub struct ConnAddrs {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The source per-IP limits count the connection against: its IP, or for IPv6 its
    /// prefix.
    pub source: IpAddr,
    fd: RawFd,
    phase: Arc<ConnPhase>,
}

impl ConnAddrs {
    pub(crate) fn phase(&self) -> &Arc<ConnPhase> {
        &self.phase
    }

    /// True when the client has shut its side of the connection down (or it failed).
    ///
    /// Only for code that runs while the connection is open: a response body is polled by
    /// the connection's own task, so while it runs the socket is this one.
    pub(crate) fn peer_has_closed(&self) -> bool {
        let mut probe = libc::pollfd {
            fd: self.fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout; see above for why the fd is ours.
        let ready = unsafe { libc::poll(&mut probe, 1, 0) };
        ready > 0 && probe.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
}

impl Connected<IncomingStream<'_, CappedListener>> for ConnAddrs {
    fn connect_info(stream: IncomingStream<'_, CappedListener>) -> Self {
        ConnAddrs {
            local: canonical(stream.io().local),
            remote: canonical(*stream.remote_addr()),
            source: stream.io().source,
            fd: stream.io().stream.as_raw_fd(),
            phase: Arc::clone(&stream.io().phase),
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
