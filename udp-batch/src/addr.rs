//! `SocketAddr` ↔ `sockaddr` without allocation, for preallocated message arrays.

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Writes `dst` into `out` in the form a socket of the given family accepts and returns the
/// address length. A dual-stack IPv6 socket needs IPv4 destinations as `::ffff:a.b.c.d`; an
/// IPv4 socket takes IPv4-mapped IPv6 destinations as plain IPv4. `None` when `dst` cannot
/// be reached from such a socket (a real IPv6 address on an IPv4 socket).
#[inline]
pub fn encode(
    dst: SocketAddr,
    v6_socket: bool,
    out: &mut libc::sockaddr_storage,
) -> Option<libc::socklen_t> {
    let dst = match (dst, v6_socket) {
        (SocketAddr::V4(v4), true) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        (SocketAddr::V6(v6), false) => {
            SocketAddr::V4(SocketAddrV4::new(v6.ip().to_ipv4_mapped()?, v6.port()))
        }
        (dst, _) => dst,
    };
    match dst {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and at least as aligned as
            // sockaddr_in; that is what it exists for.
            unsafe { (out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in).write(sin) };
            Some(mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { (out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6).write(sin6) };
            Some(mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Reads a source address the kernel wrote, reporting IPv4-mapped IPv6 as plain IPv4 so a
/// peer has one address whichever socket family it reached.
pub fn decode(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, and the storage is
            // large and aligned enough for one.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            // As one integer rather than `to_ipv4_mapped` on the bytes, which the compiler
            // would keep as sixteen separate bytes through every copy of the result.
            let ip = u128::from_be_bytes(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(if ip >> 32 == 0xffff {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip as u32), port))
            } else {
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(ip),
                    port,
                    0,
                    sin6.sin6_scope_id,
                ))
            })
        }
        _ => None,
    }
}

/// [`decode`] for address bytes the kernel placed at an arbitrary offset of a buffer (as
/// io_uring's multishot `recvmsg` does).
pub fn decode_bytes(bytes: &[u8]) -> Option<SocketAddr> {
    let mut storage = zeroed_storage();
    let len = bytes.len().min(mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: copies `len` bytes, which fit both the source slice and the storage; the two
    // cannot overlap (the storage is a local).
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            &mut storage as *mut libc::sockaddr_storage as *mut u8,
            len,
        )
    };
    decode(&storage, len as libc::socklen_t)
}

pub fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (unspecified) value.
    unsafe { mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(dst: SocketAddr, v6_socket: bool) -> Option<SocketAddr> {
        let mut storage = zeroed_storage();
        let len = encode(dst, v6_socket, &mut storage)?;
        decode(&storage, len)
    }

    #[test]
    fn v4_and_v6_round_trip() {
        let v4: SocketAddr = "192.0.2.7:49737".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(round_trip(v4, false), Some(v4));
        assert_eq!(round_trip(v6, true), Some(v6));
    }

    #[test]
    fn v4_destination_is_mapped_on_a_v6_socket() {
        let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut storage = zeroed_storage();
        let len = encode(v4, true, &mut storage).unwrap();
        assert_eq!(len as usize, mem::size_of::<libc::sockaddr_in6>());
        assert_eq!(storage.ss_family as libc::c_int, libc::AF_INET6);
        // ...and comes back canonical.
        assert_eq!(decode(&storage, len), Some(v4));
    }

    #[test]
    fn mapped_destination_on_a_v4_socket_and_unreachable_v6() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:7".parse().unwrap();
        assert_eq!(
            round_trip(mapped, false),
            Some("10.1.2.3:7".parse().unwrap())
        );
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        let mut storage = zeroed_storage();
        assert_eq!(encode(v6, false, &mut storage), None);
    }

    #[test]
    fn garbage_is_rejected() {
        let storage = zeroed_storage();
        assert_eq!(decode(&storage, 16), None);
        assert_eq!(decode_bytes(&[]), None);
        let mut storage = zeroed_storage();
        let len = encode("[::1]:7".parse().unwrap(), true, &mut storage).unwrap();
        assert_eq!(decode(&storage, len - 1), None);
    }
}
