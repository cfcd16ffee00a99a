//! Opening a shard's socket.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// What we ask for; the kernel may give less.
const SOCKET_BUFFER: usize = 8 << 20;

/// Opens one shard's socket: `SO_REUSEPORT` so every shard binds the same address and the
/// kernel spreads peers over them by 4-tuple, nonblocking, with large kernel buffers to ride
/// out bursts, and dual-stack when bound to `[::]`. Not `SO_REUSEADDR`: for UDP it lets a
/// socket of *any* user that sets it too bind the same address, where `SO_REUSEPORT` admits
/// only sockets of our own effective UID.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = udp_socket(addr)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    set_buffer(&socket, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)?;
    set_buffer(&socket, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Binds a socket to `addr` with neither `SO_REUSEPORT` nor `SO_REUSEADDR`, which the kernel
/// refuses (`EADDRINUSE`) while any socket holds an overlapping address (a wildcard overlaps
/// every address of its family, dual-stack `[::]` IPv4's too); returns the address it got,
/// port 0 resolved, and closes it.
pub fn probe_exclusive(addr: SocketAddr) -> io::Result<SocketAddr> {
    let socket = udp_socket(addr)?;
    socket.bind(&addr.into())?;
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("a UDP socket bound to a non-IP address"))
}

/// A UDP socket for `addr`'s family, dual-stack when `addr` is `[::]`.
fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let SocketAddr::V6(v6) = addr {
        if v6.ip().is_unspecified() {
            socket.set_only_v6(false)?;
        }
    }
    Ok(socket)
}

/// The `*FORCE` variant passes `net.core.rmem_max`/`wmem_max` when we have CAP_NET_ADMIN;
/// otherwise the plain option, which the kernel clamps to those limits without failing.
fn set_buffer(socket: &Socket, force: libc::c_int, plain: libc::c_int) -> io::Result<()> {
    let size = SOCKET_BUFFER as libc::c_int;
    for option in [force, plain] {
        // SAFETY: passes a live c_int of the right size to setsockopt on our own socket.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    #[test]
    fn options_are_set() {
        let socket = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let s = SockRef::from(&socket);
        assert!(s.reuse_port().unwrap());
        assert!(!s.reuse_address().unwrap());
        assert!(s.nonblocking().unwrap());
        // Linux reports double what was set; anything above the old default is fine.
        assert!(s.recv_buffer_size().unwrap() >= 256 * 1024);
        assert!(s.send_buffer_size().unwrap() >= 256 * 1024);
    }

    #[test]
    fn unspecified_v6_is_dual_stack() {
        let socket = bind_reuseport("[::]:0".parse().unwrap()).unwrap();
        assert!(!SockRef::from(&socket).only_v6().unwrap());
    }

    #[test]
    fn probe_resolves_port_zero_and_is_refused_while_the_port_is_held() {
        let local = probe_exclusive("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(local.port(), 0);
        // The probe is closed: the port is free for the shards.
        let _held = bind_reuseport(local).unwrap();
        let refused = probe_exclusive(local).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
        // Dual-stack `[::]` overlaps the IPv4 socket on the same port.
        let wildcard = SocketAddr::new("::".parse().unwrap(), local.port());
        let refused = probe_exclusive(wildcard).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
    }
}
