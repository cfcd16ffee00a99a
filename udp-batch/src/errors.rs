//! Telling a failing socket from a datagram that failed, or from nothing to do yet; and
//! sorting the datagrams the kernel refused into the kinds an operator acts on.

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

/// Why a datagram was not sent, in the few kinds that call for different action: a full
/// buffer is load, a denial is policy, an unreachable destination is routing or a bad
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendErrorKind {
    /// No room, still after waiting: the socket's send buffer or the device queue stayed
    /// full (EAGAIN, ENOBUFS, ENOMEM), or the sender's own queue of datagrams did.
    WouldBlock,
    /// Refused by policy: a firewall rule (EPERM), or a broadcast address on a socket
    /// without `SO_BROADCAST` (EACCES).
    Denied,
    /// No way there: no route (ENETUNREACH, EHOSTUNREACH), an address of a family the
    /// socket cannot reach (EAFNOSUPPORT, or refused before the kernel was asked), or one
    /// the socket cannot send to or from (EADDRNOTAVAIL, ECONNREFUSED).
    Unreachable,
    /// Longer than a datagram may be (EMSGSIZE).
    TooLarge,
    /// Anything else, e.g. port 0 (EINVAL) or a socket that failed as a whole.
    Other,
}

impl SendErrorKind {
    pub const ALL: [SendErrorKind; 5] = [
        SendErrorKind::WouldBlock,
        SendErrorKind::Denied,
        SendErrorKind::Unreachable,
        SendErrorKind::TooLarge,
        SendErrorKind::Other,
    ];

    /// The kind of a send that failed with `errno`.
    pub fn of_errno(errno: i32) -> SendErrorKind {
        match errno {
            libc::EAGAIN | libc::ENOBUFS | libc::ENOMEM | libc::EINTR => SendErrorKind::WouldBlock,
            libc::EPERM | libc::EACCES => SendErrorKind::Denied,
            libc::ENETUNREACH
            | libc::EHOSTUNREACH
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::EAFNOSUPPORT
            | libc::EADDRNOTAVAIL
            | libc::ECONNREFUSED => SendErrorKind::Unreachable,
            libc::EMSGSIZE => SendErrorKind::TooLarge,
            _ => SendErrorKind::Other,
        }
    }

    /// The kind of a send that failed with `err`; an error without an errno is `Other`.
    pub fn of(err: &io::Error) -> SendErrorKind {
        err.raw_os_error()
            .map_or(SendErrorKind::Other, SendErrorKind::of_errno)
    }

    /// A short snake_case name, e.g. for a metric label.
    pub fn name(self) -> &'static str {
        match self {
            SendErrorKind::WouldBlock => "would_block",
            SendErrorKind::Denied => "denied",
            SendErrorKind::Unreachable => "unreachable",
            SendErrorKind::TooLarge => "too_large",
            SendErrorKind::Other => "other",
        }
    }
}

/// Datagrams given up on, counted by [`SendErrorKind`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendErrors([u64; SendErrorKind::ALL.len()]);

impl SendErrors {
    /// Counts `n` more datagrams of `kind`.
    #[inline]
    pub fn add(&mut self, kind: SendErrorKind, n: u64) {
        self.0[kind as usize] += n;
    }

    /// Adds every count of `other`.
    #[inline]
    pub fn merge(&mut self, other: &SendErrors) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    pub fn get(&self, kind: SendErrorKind) -> u64 {
        self.0[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_sort_into_their_kinds() {
        let cases = [
            (libc::EAGAIN, SendErrorKind::WouldBlock),
            (libc::EWOULDBLOCK, SendErrorKind::WouldBlock),
            (libc::ENOBUFS, SendErrorKind::WouldBlock),
            (libc::EPERM, SendErrorKind::Denied),
            (libc::EACCES, SendErrorKind::Denied),
            (libc::ENETUNREACH, SendErrorKind::Unreachable),
            (libc::EHOSTUNREACH, SendErrorKind::Unreachable),
            (libc::EAFNOSUPPORT, SendErrorKind::Unreachable),
            (libc::EMSGSIZE, SendErrorKind::TooLarge),
            (libc::EINVAL, SendErrorKind::Other),
            (libc::EBADF, SendErrorKind::Other),
        ];
        for (errno, kind) in cases {
            assert_eq!(SendErrorKind::of_errno(errno), kind, "errno {errno}");
            let err = io::Error::from_raw_os_error(errno);
            assert_eq!(SendErrorKind::of(&err), kind, "{err}");
        }
        let no_errno = io::Error::other("no errno");
        assert_eq!(SendErrorKind::of(&no_errno), SendErrorKind::Other);
    }

    #[test]
    fn counts_add_up_by_kind() {
        let mut a = SendErrors::default();
        a.add(SendErrorKind::Denied, 2);
        let mut b = SendErrors::default();
        b.add(SendErrorKind::Denied, 1);
        b.add(SendErrorKind::TooLarge, 4);
        a.merge(&b);
        assert_eq!(a.get(SendErrorKind::Denied), 3);
        assert_eq!(a.get(SendErrorKind::TooLarge), 4);
        assert_eq!(a.get(SendErrorKind::Other), 0);
        assert_eq!(a.total(), 7);
        let names: Vec<&str> = SendErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            ["would_block", "denied", "unreachable", "too_large", "other"]
        );
    }
}
