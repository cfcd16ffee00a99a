//! Batches over real loopback sockets.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use setowire_udp_batch::{
    enable_pktinfo, Patience, PushError, RecvBatch, RecvWait, SendBatch, SendErrorKind,
};

/// A blocking socket whose receives give up after a while, so a lost datagram fails the test
/// instead of hanging it.
fn bound(addr: &str) -> UdpSocket {
    let socket = UdpSocket::bind(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
}

/// Where `socket` receives when it is bound to the wildcard address.
fn on_loopback(socket: &UdpSocket, ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::from((ip, socket.local_addr().unwrap().port()))
}

#[test]
fn datagrams_round_trip_with_their_sources() {
    let (a, b) = (bound("127.0.0.1:0"), bound("127.0.0.1:0"));
    let mut out = SendBatch::<64>::new(4, false);
    for k in 0..3u8 {
        out.push(b.local_addr().unwrap(), &[k; 10][..k as usize + 1])
            .unwrap();
    }
    let flushed = out.flush(&a, Patience::NONE);
    assert_eq!(
        (flushed.sent, flushed.bytes, flushed.dropped.total()),
        (3, 6, 0)
    );
    assert!(out.is_empty() && flushed.socket_error.is_none());

    let mut batch = RecvBatch::<64>::new(4);
    let got: Vec<_> = batch
        .recv(&b, RecvWait::ForFirst)
        .unwrap()
        .map(|d| (d.index(), d.source(), d.data.to_vec(), d.is_truncated()))
        .collect();
    let from = Some(a.local_addr().unwrap());
    assert_eq!(
        got,
        vec![
            (0, from, vec![0], false),
            (1, from, vec![1, 1], false),
            (2, from, vec![2, 2, 2], false),
        ]
    );
    assert_eq!(&batch.buffer(2)[..3], &[2, 2, 2]);
    assert!(batch.recv(&b, RecvWait::Never).unwrap().is_empty());
}

#[test]
fn longer_datagrams_arrive_cut_and_marked() {
    let (a, b) = (bound("127.0.0.1:0"), bound("127.0.0.1:0"));
    a.send_to(&[7; 10], b.local_addr().unwrap()).unwrap();
    let mut batch = RecvBatch::<4>::new(2);
    let mut got = batch.recv(&b, RecvWait::ForFirst).unwrap();
    let datagram = got.next().unwrap();
    assert!(datagram.is_truncated());
    assert_eq!(datagram.data, &[7; 4]);
}

#[test]
fn a_batch_read_in_part_still_takes_whole_addresses_next_time() {
    // A v4 receive leaves the kernel's 16-byte address length in each header it fills; a v6
    // source needs 28, so the v6 receive fails unless the headers' room was restored, for
    // the datagram read and for the one left unread alike.
    let (a4, b4) = (bound("127.0.0.1:0"), bound("127.0.0.1:0"));
    let (a6, b6) = (bound("[::1]:0"), bound("[::1]:0"));
    let mut batch = RecvBatch::<16>::new(2);
    for (from, to) in [(&a4, &b4), (&a6, &b6)] {
        for payload in [b"one", b"two"] {
            from.send_to(payload, to.local_addr().unwrap()).unwrap();
        }
    }
    let mut v4 = batch.recv(&b4, RecvWait::ForFirst).unwrap();
    assert_eq!(v4.len(), 2);
    assert_eq!(v4.next().unwrap().source(), Some(a4.local_addr().unwrap()));
    drop(v4);
    let v6: Vec<_> = batch
        .recv(&b6, RecvWait::ForFirst)
        .unwrap()
        .map(|d| d.source())
        .collect();
    assert_eq!(v6, vec![Some(a6.local_addr().unwrap()); 2]);
}

#[test]
fn pktinfo_chooses_the_source_and_tells_the_destination() {
    let sender = bound("0.0.0.0:0");
    let receiver = bound("0.0.0.0:0");
    enable_pktinfo(&receiver).unwrap();
    let mut out = SendBatch::<16>::new(2, false);
    let to = on_loopback(&receiver, Ipv4Addr::new(127, 0, 0, 7));
    out.push_from(Ipv4Addr::new(127, 0, 0, 5), to, b"chosen")
        .unwrap();
    out.push(on_loopback(&receiver, Ipv4Addr::LOCALHOST), b"plain")
        .unwrap();
    assert_eq!(out.flush(&sender, Patience::NONE).sent, 2);

    let mut batch = RecvBatch::<16>::new(2);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(
            batch
                .recv(&receiver, RecvWait::ForFirst)
                .unwrap()
                .map(|d| (d.data.to_vec(), d.source().unwrap().ip(), d.local_ip())),
        );
    }
    assert_eq!(
        got,
        vec![
            (
                b"chosen".to_vec(),
                Ipv4Addr::new(127, 0, 0, 5).into(),
                Some(Ipv4Addr::new(127, 0, 0, 7))
            ),
            (
                b"plain".to_vec(),
                Ipv4Addr::LOCALHOST.into(),
                Some(Ipv4Addr::LOCALHOST)
            ),
        ]
    );
}

#[test]
fn what_cannot_be_queued_is_refused() {
    let mut out = SendBatch::<4>::new(1, false);
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(out.push(v6, b"x"), Err(PushError::Unreachable));
    assert_eq!(out.push(v4, b"too long"), Err(PushError::TooLong));
    out.push(v4, b"x").unwrap();
    assert!(out.is_full());
    assert_eq!(out.push(v4, b"x"), Err(PushError::Full));
    assert_eq!(PushError::Full.kind(), SendErrorKind::WouldBlock);
    assert_eq!(PushError::TooLong.kind(), SendErrorKind::TooLarge);
    assert_eq!(PushError::Unreachable.kind(), SendErrorKind::Unreachable);
}

#[test]
fn a_refused_datagram_is_dropped_alone() {
    let (a, b) = (bound("127.0.0.1:0"), bound("127.0.0.1:0"));
    let mut out = SendBatch::<8>::new(3, false);
    out.push(b.local_addr().unwrap(), b"one").unwrap();
    // Port 0 is no destination: the kernel refuses this one datagram (EINVAL).
    out.push("127.0.0.1:0".parse().unwrap(), b"none").unwrap();
    out.push(b.local_addr().unwrap(), b"two").unwrap();
    let flushed = out.flush(&a, Patience::NONE);
    assert_eq!((flushed.sent, flushed.dropped.total()), (2, 1));
    assert_eq!(flushed.dropped.get(SendErrorKind::Other), 1);
    assert!(flushed.socket_error.is_none());
    let mut batch = RecvBatch::<8>::new(2);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(
            batch
                .recv(&b, RecvWait::ForFirst)
                .unwrap()
                .map(|d| d.data.to_vec()),
        );
    }
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn a_dead_socket_ends_the_flush() {
    let not_a_socket = std::fs::File::open("/dev/null").unwrap();
    let mut out = SendBatch::<8>::new(2, false);
    out.push("127.0.0.1:9".parse().unwrap(), b"x").unwrap();
    out.push("127.0.0.1:9".parse().unwrap(), b"y").unwrap();
    let flushed = out.flush(&not_a_socket, Patience::NONE);
    assert_eq!((flushed.sent, flushed.dropped.total()), (0, 2));
    assert_eq!(flushed.dropped.get(SendErrorKind::Other), 2);
    assert_eq!(
        flushed.socket_error.and_then(|e| e.raw_os_error()),
        Some(libc::ENOTSOCK)
    );
    assert!(out.is_empty());
}

#[test]
fn refused_datagrams_are_counted_by_kind() {
    let (a, b) = (bound("127.0.0.1:0"), bound("127.0.0.1:0"));
    let mut out = SendBatch::<8>::new(4, false);
    // The loopback broadcast address, without SO_BROADCAST: EACCES.
    out.push("127.255.255.255:9".parse().unwrap(), b"bcast")
        .unwrap();
    out.push(b.local_addr().unwrap(), b"one").unwrap();
    // Port 0: EINVAL.
    out.push("127.0.0.1:0".parse().unwrap(), b"none").unwrap();
    out.push("127.255.255.255:9".parse().unwrap(), b"bcast")
        .unwrap();
    let flushed = out.flush(&a, Patience::NONE);
    assert_eq!(flushed.sent, 1);
    assert_eq!(flushed.dropped.get(SendErrorKind::Denied), 2);
    assert_eq!(flushed.dropped.get(SendErrorKind::Other), 1);
    assert_eq!(flushed.dropped.total(), 3);
    let mut batch = RecvBatch::<8>::new(2);
    let got: Vec<Vec<u8>> = batch
        .recv(&b, RecvWait::ForFirst)
        .unwrap()
        .map(|d| d.data.to_vec())
        .collect();
    assert_eq!(got, vec![b"one".to_vec()]);
}
