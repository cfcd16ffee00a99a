//! Waiting for sockets with `ppoll`.

use std::io;
use std::ptr;
use std::time::Duration;

/// Waits up to `timeout` until one of `fds` is ready for its `events`; returns how many are.
///
/// `ppoll` rather than `poll`: a wait of less than a millisecond waits instead of spinning.
/// A wait a signal interrupted returns 0, with every `revents` cleared.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: `fds` is a live array of as many entries as passed, and `timeout` outlives the
    // call; the kernel writes only the `revents` fields.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &timeout,
            ptr::null(),
        )
    };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINTR) {
        return Err(err);
    }
    for fd in fds {
        fd.revents = 0;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn pollfd(socket: &UdpSocket, events: libc::c_short) -> libc::pollfd {
        libc::pollfd {
            fd: socket.as_raw_fd(),
            events,
            revents: 0,
        }
    }

    #[test]
    fn waits_for_readable_and_reports_writable() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut idle = [pollfd(&socket, libc::POLLIN)];
        assert_eq!(poll(&mut idle, Duration::from_millis(1)).unwrap(), 0);
        let mut writable = [pollfd(&socket, libc::POLLOUT)];
        assert_eq!(poll(&mut writable, Duration::ZERO).unwrap(), 1);
        assert_ne!(writable[0].revents & libc::POLLOUT, 0);
        socket.send_to(b"x", socket.local_addr().unwrap()).unwrap();
        let mut readable = [pollfd(&socket, libc::POLLIN)];
        assert_eq!(poll(&mut readable, Duration::from_secs(2)).unwrap(), 1);
    }
}
