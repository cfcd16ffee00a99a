//! The UDP port the shards share: one SO_REUSEPORT socket per shard, each behind its I/O
//! backend, on a port no other process holds.
//!
//! What Linux allows (`udp_lib_get_port`): a socket may bind an address another socket holds
//! only if both set `SO_REUSEADDR` (any user), or both set `SO_REUSEPORT` and belong to the
//! same effective UID; either way the newcomer silently receives some of the datagrams meant
//! for the holder. So:
//! * the shards set `SO_REUSEPORT` alone, which shuts out other users' sockets;
//! * before binding them, a probe without either option checks that nobody holds the port;
//! * a process of our own UID that sets `SO_REUSEPORT` can still join once the shards are
//!   bound, and the node cannot prevent it. A group only admits a newcomer when the member
//!   the kernel meets first sets `SO_REUSEPORT`, and only spreads datagrams over the group
//!   when the member it meets first on receipt does: the two walks meet the same member, so
//!   clearing the option on a bound member, which Linux allows, either leaves the group open
//!   or sends every datagram to one shard. A first socket bound without the option makes
//!   the kernel refuse our own other shards. A reuseport BPF program only chooses which
//!   member receives a datagram (it could starve a newcomer, not refuse it), and
//!   `SO_INCOMING_CPU` only prefers members by CPU: neither controls who joins.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use super::RuntimeError;
use crate::io::{
    bind_reuseport, open_backend, probe_exclusive, BackendChoice, BackendKind, DatagramIo, Waker,
};

/// A shard's socket behind its backend, and the waker that ends the backend's waits.
pub struct Backend {
    pub io: Box<dyn DatagramIo + Send>,
    pub waker: Waker,
}

/// Binds `count` sockets to `listen`, refusing a port another process holds; returns them
/// and the address they are bound to.
pub fn bind(
    listen: SocketAddr,
    count: usize,
) -> Result<(Vec<UdpSocket>, SocketAddr), RuntimeError> {
    // The probe also resolves port 0, so that an ephemeral port is checked like a fixed one
    // and every shard binds the port it got.
    let local = probe_exclusive(listen).map_err(|source| bind_error(listen, source))?;
    // Between the probe's close and the first bind, another process may take the port. A
    // socket that cannot share with ours makes that bind fail, and the node refuses as it
    // would have; a `SO_REUSEPORT` one of our UID is joined, as it could join us at any time
    // after. Two nodes of one user started within microseconds is all the window adds.
    let sockets = (0..count)
        .map(|_| bind_reuseport(local).map_err(|source| bind_error(local, source)))
        .collect::<Result<_, _>>()?;
    Ok((sockets, local))
}

/// `EADDRINUSE` means another process holds the port: said so.
fn bind_error(addr: SocketAddr, source: io::Error) -> RuntimeError {
    match source.kind() {
        io::ErrorKind::AddrInUse => RuntimeError::PortInUse { addr, source },
        _ => RuntimeError::BindUdp { addr, source },
    }
}

/// Opens the backend `choice` asks for on each socket; returns them and the kind in use.
pub fn open_backends(
    sockets: Vec<UdpSocket>,
    choice: BackendChoice,
) -> Result<(Vec<Backend>, BackendKind), RuntimeError> {
    let mut backends = Vec::with_capacity(sockets.len());
    for (shard, socket) in sockets.into_iter().enumerate() {
        let (io, waker, fallback) = open_backend(socket, choice)
            .map_err(|source| RuntimeError::Backend { shard, source })?;
        // Every shard falls back for the same reason: said once.
        if let Some(reason) = fallback.filter(|_| shard == 0) {
            tracing::warn!(%reason, "io_uring unavailable, using recvmmsg/sendmmsg");
        }
        backends.push(Backend { io, waker });
    }
    let kind = backends[0].io.kind();
    Ok((backends, kind))
}
