//! Batched UDP on Linux: `recvmmsg`/`sendmmsg` over preallocated batches.
//!
//! A [`RecvBatch`] and a [`SendBatch`] each own their `mmsghdr`s, `iovec`s, buffers, socket
//! addresses and control messages, wired together once when the batch is made, so a batch
//! of datagrams costs one system call and no allocation. This crate is the one place that
//! unsafe plumbing lives; what it hands out is safe: datagrams as slices of the batch's own
//! buffers, addresses as [`std::net::SocketAddr`] (see [`addr`] for the conversions), and
//! `IP_PKTINFO` as plain IPv4 addresses — the source a datagram leaves from
//! ([`SendBatch::push_from`]) and the address one arrived at ([`Datagram::local_ip`], once
//! [`enable_pktinfo`] is set on the socket).
//!
//! A batch's buffer length is a type parameter, so each datagram's buffer sits in one
//! fixed-size slot with its address and control message. The batches work on any socket
//! passed to each call, nonblocking or not; a full socket buffer is met as the caller's
//! [`Patience`] says.

pub mod addr;
mod errors;
mod pktinfo;
mod poll;
mod recv;
mod send;

pub use errors::{is_socket_unusable, SendErrorKind, SendErrors};
pub use pktinfo::enable_pktinfo;
pub use poll::poll;
pub use recv::{Datagram, Received, RecvBatch, RecvWait};
pub use send::{Flushed, Patience, PushError, SendBatch};
