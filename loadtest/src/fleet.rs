//! Many UDP sockets, one per virtual peer, each bound to the peer's own 127.1.x.y address,
//! all in one epoll set: what a single thread needs to keep thousands of datagrams in flight.
//!
//! [`crate::net::PeerNet`] serves every peer of a worker through one wildcard socket, which
//! keeps set-up cheap but funnels every reply through one receive queue. Here each peer has
//! a queue of its own, `epoll_wait` says which have replies, and each is drained with one
//! `recvmmsg` and refilled with one `sendmmsg`; with hundreds of peers ready at once, one
//! wake-up serves all of them. Loopback only: the sockets are bound to 127/8 addresses.
//!
//! Each socket is connected to the target, so the kernel keeps its route instead of looking
//! it up for every datagram, and where the kernel allows it (`UDP_SEGMENT`, Linux 4.18+)
//! the datagrams of one refill leave in one `send` that the kernel cuts into datagrams of
//! the given size: the sending stack (route, netfilter, loopback) runs once per refill
//! rather than once per datagram. The target still receives separate datagrams, each
//! exactly as if sent alone; only the generator's own cost per datagram drops.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::net::{peer_ip, udp_socket};

/// Sockets one fleet may hold: past the default soft limit of open files, which is raised
/// when it is too low (up to the hard limit).
pub const MAX_SOCKETS: usize = 16_384;

pub struct Fleet {
    epoll: OwnedFd,
    sockets: Vec<UdpSocket>,
    events: Vec<libc::epoll_event>,
    /// Which sockets the last [`Fleet::wait`] found readable.
    ready: Vec<u32>,
    /// Whether every socket cuts its sends into datagrams of the segment size.
    segmented: bool,
}

impl Fleet {
    /// `count` sockets, socket `i` bound to `peer_ip(i)` on a port the kernel picks, each
    /// connected to `target`, and cutting sends into datagrams of `segment` bytes when the
    /// kernel can.
    pub fn bind(count: usize, target: SocketAddr, segment: u16) -> io::Result<Fleet> {
        if count > MAX_SOCKETS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("at most {MAX_SOCKETS} sockets"),
            ));
        }
        raise_open_files(count as u64 + 64)?;
        // SAFETY: a plain system call; the descriptor it returns is owned here alone.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and nothing else holds it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut sockets = Vec::with_capacity(count);
        let mut segmented = true;
        for i in 0..count {
            let socket = udp_socket(SocketAddr::from((peer_ip(i as u32), 0)))?;
            socket.connect(target)?;
            segmented &= set_segment(&socket, segment).is_ok();
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both descriptors are open; `event` lives across the call.
            let rc = unsafe {
                libc::epoll_ctl(
                    epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    socket.as_raw_fd(),
                    &mut event,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            sockets.push(socket);
        }
        Ok(Fleet {
            epoll,
            sockets,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; count.max(1)],
            ready: Vec::with_capacity(count),
            segmented,
        })
    }

    /// Whether one `send` of several segments' worth of bytes leaves as that many datagrams.
    pub fn segmented(&self) -> bool {
        self.segmented
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn socket(&self, index: u32) -> &UdpSocket {
        &self.sockets[index as usize]
    }

    /// Waits up to `timeout` (whole milliseconds) for sockets with datagrams waiting; returns
    /// how many [`Fleet::ready`] now lists. An interrupted or failed wait finds none: the
    /// caller's next turn waits again.
    pub fn wait(&mut self, timeout: Duration) -> usize {
        self.ready.clear();
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `events` has room for `events.len()` entries, which the kernel fills.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        for event in &self.events[..n.max(0) as usize] {
            self.ready.push(event.u64 as u32);
        }
        self.ready.len()
    }

    /// The sockets the last [`Fleet::wait`] found readable.
    pub fn ready(&self) -> &[u32] {
        &self.ready
    }
}

/// Asks the kernel to cut every send on `socket` into datagrams of `segment` bytes.
fn set_segment(socket: &UdpSocket, segment: u16) -> io::Result<()> {
    let value = libc::c_int::from(segment);
    // SAFETY: a valid socket and a c_int option value of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as _,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes room for `needed` open descriptors, raising the soft limit towards the hard one.
fn raise_open_files(needed: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    if limit.rlim_max < needed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{needed} open files needed, the hard limit is {}",
                limit.rlim_max
            ),
        ));
    }
    limit.rlim_cur = needed;
    // SAFETY: `limit` is a valid rlimit, below the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_socket_has_its_own_address_and_wakes_alone() {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut fleet = Fleet::bind(3, sender.local_addr().unwrap(), 5).unwrap();
        assert_eq!(fleet.len(), 3);
        for i in 0..3u32 {
            assert_eq!(
                fleet.socket(i).local_addr().unwrap().ip(),
                std::net::IpAddr::V4(peer_ip(i))
            );
        }
        assert_eq!(fleet.wait(Duration::ZERO), 0);
        sender
            .send_to(b"x", fleet.socket(1).local_addr().unwrap())
            .unwrap();
        assert_eq!(fleet.wait(Duration::from_secs(2)), 1);
        assert_eq!(fleet.ready(), &[1]);
    }

    #[test]
    fn a_segmented_send_arrives_as_separate_datagrams_from_the_peer() {
        let target = UdpSocket::bind("127.0.0.1:0").unwrap();
        target
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let fleet = Fleet::bind(2, target.local_addr().unwrap(), 5).unwrap();
        let copies = if fleet.segmented() { 3 } else { 1 };
        fleet.socket(1).send(&b"hello".repeat(copies)).unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..copies {
            let (n, from) = target.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, fleet.socket(1).local_addr().unwrap());
        }
    }
}
