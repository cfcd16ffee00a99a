//! Telling a failing socket from a datagram that failed, or from nothing to do yet.

use std::io;

/// Whether `err` says the socket itself is unusable, as opposed to one datagram failing or
/// the socket having nothing to give or no room right now.
pub fn is_socket_unusable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT | libc::EOPNOTSUPP)
    )
}

/// Nothing to receive now (or a signal came first): an empty batch, not a failure.
pub(crate) fn is_nothing_waiting(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINTR))
}

/// No room in the socket's send buffer now (or a signal came first): worth a retry.
pub(crate) fn is_no_room(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR)
    )
}
