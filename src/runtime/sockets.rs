//! The UDP port the shards share: one SO_REUSEPORT socket per shard, each behind its I/O
//! backend.

use std::net::{SocketAddr, UdpSocket};

use super::RuntimeError;
use crate::io::{bind_reuseport, open_backend, BackendChoice, BackendKind, DatagramIo, Waker};

/// A shard's socket behind its backend, and the waker that ends the backend's waits.
pub struct Backend {
    pub io: Box<dyn DatagramIo + Send>,
    pub waker: Waker,
}

/// Binds `count` sockets to `listen`; returns them and the address they are bound to.
pub fn bind(
    listen: SocketAddr,
    count: usize,
) -> Result<(Vec<UdpSocket>, SocketAddr), RuntimeError> {
    let bind_error = |addr| move |source| RuntimeError::BindUdp { addr, source };
    // The first alone, so that port 0 resolves to one port all shards share.
    let first = bind_reuseport(listen).map_err(bind_error(listen))?;
    let local = first.local_addr().map_err(bind_error(listen))?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind_reuseport(local).map_err(bind_error(local))?);
    }
    Ok((sockets, local))
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
