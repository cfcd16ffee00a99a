//! The public TCP listener: at most `max_connections` open connections (beyond that the
//! kernel's backlog holds newcomers until one closes), TCP_NODELAY, keepalive probes, and a
//! TCP user timeout so a peer that stops acknowledging (or reading) cannot pin a connection
//! forever. Each connection knows its local address, which the bootstrap uses to tell clients
//! how to reach a node bound to a wildcard address.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pause after an accept error that is not about one connection (EMFILE, ENOBUFS, ...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    user_timeout: Duration,
}

impl CappedListener {
    pub(crate) fn new(inner: TcpListener, max_connections: usize, user_timeout: Duration) -> Self {
        CappedListener {
            inner,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            user_timeout,
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
        let _ = sock.set_tcp_user_timeout(Some(self.user_timeout));
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
                    self.tune(&stream);
                    let local = match stream.local_addr() {
                        Ok(local) => local,
                        Err(_) => continue,
                    };
                    return (
                        Conn {
                            stream,
                            local,
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

/// An accepted connection; its slot is given back when it is dropped.
pub(crate) struct Conn {
    stream: TcpStream,
    local: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
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
/// and its socket for [`peer_has_closed`].
#[derive(Debug, Clone, Copy)]
pub struct ConnAddrs {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    fd: RawFd,
}

impl ConnAddrs {
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
            fd: stream.io().stream.as_raw_fd(),
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
