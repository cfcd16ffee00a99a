//! Both backends against real loopback sockets: echo, batching, waking, timeouts,
//! SO_REUSEPORT spreading, truncation, address families and Auto's fallback under seccomp.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::*;

type Backend = Box<dyn DatagramIo + Send>;

/// The backends to test: mmsg always, io_uring where the kernel allows it (it does on the
/// project's machines; under Docker's default seccomp it would not).
fn choices() -> Vec<BackendChoice> {
    let mut choices = vec![BackendChoice::Mmsg];
    let socket = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    match open_backend(socket, BackendChoice::IoUring) {
        Ok(_) => choices.push(BackendChoice::IoUring),
        Err(e) => eprintln!("io_uring unavailable, its backend tests are skipped: {e}"),
    }
    choices
}

fn open_at(choice: BackendChoice, addr: &str) -> (Backend, Waker) {
    let socket = bind_reuseport(addr.parse().unwrap()).unwrap();
    let (io, waker, reason) = open_backend(socket, choice).unwrap();
    assert_eq!(reason, None);
    (io, waker)
}

fn client(addr: &str) -> UdpSocket {
    let socket = UdpSocket::bind(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Room for a whole window of echoes.
    SockRef::from(&socket)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    socket
}

/// Calls recv_batch until `want` datagrams came or `limit` passed; returns them.
fn collect(io: &mut Backend, want: usize, limit: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        io.recv_batch(Duration::from_millis(50), &mut |src, data| {
            got.push((src, data.to_vec()))
        })
        .unwrap();
    }
    got
}

/// Runs an echo server on its own thread until `stop` is set (and the waker rung) or 60 s
/// pass. Returns the backend and the largest batch it saw.
fn spawn_echo(mut io: Backend, stop: Arc<AtomicBool>) -> thread::JoinHandle<(Backend, usize)> {
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut largest = 0;
        let mut batch: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(256);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let n = io
                .recv_batch(Duration::from_millis(200), &mut |src, data| {
                    batch.push((src, data.to_vec()))
                })
                .unwrap();
            largest = largest.max(n);
            for (src, data) in batch.drain(..) {
                io.queue_send(src, &data);
            }
            io.flush().unwrap();
        }
        (io, largest)
    })
}

fn payload(i: usize) -> Vec<u8> {
    // Sizes cycle through all of 1..=1472 (37 is coprime to 1472).
    let len = 1 + (i * 37) % 1472;
    (0..len).map(|j| (i.wrapping_mul(31) + j) as u8).collect()
}

/// `recv_from` that goes on when interrupted: a receive timeout makes the call return EINTR
/// when a signal arrives, and io_uring signals the thread that set a ring up (this test
/// thread) when it has task work for it.
fn recv_from(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    loop {
        match socket.recv_from(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

fn echo_10k(choice: BackendChoice, server: &str, client_addr: &str) {
    const TOTAL: usize = 10_000;
    const WINDOW: usize = 64;
    let (io, waker) = open_at(choice, server);
    let server_addr = io.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = spawn_echo(io, stop.clone());
    let client = client(client_addr);
    let mut buf = [0u8; 2048];
    let mut sent = 0;
    while sent < TOTAL {
        let window: Vec<Vec<u8>> = (sent..(sent + WINDOW).min(TOTAL)).map(payload).collect();
        for p in &window {
            client.send_to(p, server_addr).unwrap();
        }
        let mut echoed = Vec::with_capacity(window.len());
        for _ in 0..window.len() {
            let (n, from) = recv_from(&client, &mut buf).unwrap_or_else(|e| {
                panic!(
                    "{choice}: echo {} of {TOTAL} missing: {e}",
                    sent + echoed.len()
                )
            });
            assert_eq!(from, server_addr);
            echoed.push(buf[..n].to_vec());
        }
        let mut expected = window;
        expected.sort();
        echoed.sort();
        assert_eq!(echoed, expected, "{choice}: window at {sent} differs");
        sent += expected.len();
    }
    stop.store(true, Ordering::Relaxed);
    waker.wake();
    let (mut io, _) = handle.join().unwrap();
    // io_uring counts sends as their completions are collected, by a receive call.
    io.recv_batch(Duration::ZERO, &mut |_, _| {}).unwrap();
    let stats = io.stats();
    assert_eq!(
        stats.datagrams_received, TOTAL as u64,
        "{choice}: {stats:?}"
    );
    assert_eq!(stats.datagrams_sent, TOTAL as u64, "{choice}: {stats:?}");
    assert_eq!(stats.bytes_sent, stats.bytes_received);
    assert_eq!(
        (
            stats.send_errors.total(),
            stats.recv_errors,
            stats.truncated
        ),
        (0, 0, 0)
    );
}

#[test]
fn echo_ipv4() {
    for choice in choices() {
        echo_10k(choice, "127.0.0.1:0", "127.0.0.1:0");
    }
}

#[test]
fn echo_ipv6() {
    for choice in choices() {
        echo_10k(choice, "[::1]:0", "[::1]:0");
    }
}

#[test]
fn receives_in_batches() {
    for choice in choices() {
        let (mut io, _waker) = open_at(choice, "127.0.0.1:0");
        let server = io.local_addr().unwrap();
        let client = client("127.0.0.1:0");
        // More than io_uring's 256 provided buffers: its multishot receive runs dry
        // (ENOBUFS) and must be re-armed.
        for i in 0..1000u32 {
            client.send_to(&i.to_be_bytes(), server).unwrap();
        }
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        for _ in 0..100 {
            if got.len() == 1000 {
                break;
            }
            let n = io
                .recv_batch(Duration::from_millis(500), &mut |src, data| {
                    assert_eq!(src, client.local_addr().unwrap());
                    got.push(u32::from_be_bytes(data.try_into().unwrap()));
                })
                .unwrap();
            sizes.push(n);
        }
        got.sort();
        assert_eq!(got, (0..1000).collect::<Vec<_>>(), "{choice}");
        assert!(sizes[0] >= 2, "{choice}: batches {sizes:?}");
        assert!(
            sizes.iter().all(|&n| n <= 256),
            "{choice}: batches {sizes:?}"
        );
    }
}

#[test]
fn many_sends_without_flush() {
    for choice in choices() {
        let (mut io, _waker) = open_at(choice, "127.0.0.1:0");
        let client = client("127.0.0.1:0");
        let to = client.local_addr().unwrap();
        // More than io_uring's 256 send slots: queue_send must recycle them.
        for i in 0..1000u32 {
            io.queue_send(to, &i.to_be_bytes());
        }
        io.flush().unwrap();
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        for _ in 0..1000 {
            let (n, _) = recv_from(&client, &mut buf).unwrap();
            got.push(u32::from_be_bytes(buf[..n].try_into().unwrap()));
        }
        got.sort();
        assert_eq!(got, (0..1000).collect::<Vec<_>>(), "{choice}");
        io.recv_batch(Duration::from_millis(20), &mut |_, _| {})
            .unwrap();
        assert_eq!(io.stats().datagrams_sent, 1000, "{choice}");
    }
}

#[test]
fn waker_ends_a_long_wait() {
    for choice in choices() {
        let (mut io, waker) = open_at(choice, "127.0.0.1:0");
        let woke_at = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            let at = Instant::now();
            waker.wake();
            at
        });
        let start = Instant::now();
        let n = io
            .recv_batch(Duration::from_secs(10), &mut |_, _| {})
            .unwrap();
        let returned = Instant::now();
        let woke_at = woke_at.join().unwrap();
        assert_eq!(n, 0);
        assert!(
            returned.saturating_duration_since(woke_at) < Duration::from_millis(100),
            "{choice}: returned {:?} after the wake",
            returned.saturating_duration_since(woke_at)
        );
        assert!(returned - start < Duration::from_secs(2), "{choice}");
    }
}

#[test]
fn wake_before_wait_is_kept_then_consumed() {
    for choice in choices() {
        let (mut io, waker) = open_at(choice, "127.0.0.1:0");
        waker.wake();
        waker.wake();
        let start = Instant::now();
        io.recv_batch(Duration::from_secs(10), &mut |_, _| {})
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{choice}: wake lost"
        );
        // Both wakes were used up by that one return.
        let start = Instant::now();
        io.recv_batch(Duration::from_millis(100), &mut |_, _| {})
            .unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(90),
            "{choice}: stale wake"
        );
    }
}

#[test]
fn timeout_is_honoured() {
    for choice in choices() {
        let (mut io, _waker) = open_at(choice, "127.0.0.1:0");
        for ms in [0u64, 20, 150] {
            let timeout = Duration::from_millis(ms);
            let start = Instant::now();
            let n = io.recv_batch(timeout, &mut |_, _| {}).unwrap();
            let took = start.elapsed();
            assert_eq!(n, 0);
            assert!(
                took + Duration::from_millis(1) >= timeout,
                "{choice}: {ms} ms took {took:?}"
            );
            assert!(
                took < timeout + Duration::from_millis(80),
                "{choice}: {ms} ms took {took:?}"
            );
        }
    }
}

#[test]
fn reuseport_sockets_share_a_port() {
    for choice in choices() {
        let (mut a, _wa) = open_at(choice, "127.0.0.1:0");
        let addr = a.local_addr().unwrap();
        let (mut b, _wb) = open_at(choice, &addr.to_string());
        assert_eq!(b.local_addr().unwrap(), addr);
        // Distinct source ports hash to either socket.
        let clients: Vec<UdpSocket> = (0..64).map(|_| client("127.0.0.1:0")).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8], addr).unwrap();
        }
        let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(5);
        while on_a.len() + on_b.len() < 64 && Instant::now() < deadline {
            a.recv_batch(Duration::from_millis(20), &mut |_, d| on_a.push(d[0]))
                .unwrap();
            b.recv_batch(Duration::from_millis(20), &mut |_, d| on_b.push(d[0]))
                .unwrap();
        }
        assert_eq!(on_a.len() + on_b.len(), 64, "{choice}");
        assert!(
            !on_a.is_empty() && !on_b.is_empty(),
            "{choice}: {} / {}",
            on_a.len(),
            on_b.len()
        );
    }
}

#[test]
fn oversized_datagrams_are_counted_not_delivered() {
    for choice in choices() {
        let (mut io, _waker) = open_at(choice, "127.0.0.1:0");
        let server = io.local_addr().unwrap();
        let client = client("127.0.0.1:0");
        client.send_to(&[7u8; 3000], server).unwrap();
        client.send_to(&[1u8; MAX_DATAGRAM], server).unwrap();
        // One byte over, and the largest datagram IPv4 carries.
        client.send_to(&[2u8; MAX_DATAGRAM + 1], server).unwrap();
        client.send_to(&vec![3u8; 65_507], server).unwrap();
        client.send_to(b"after", server).unwrap();
        let got = collect(&mut io, 2, Duration::from_secs(2));
        let lens: Vec<usize> = got.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(lens, vec![MAX_DATAGRAM, 5], "{choice}");
        let stats = io.stats();
        assert_eq!(stats.truncated, 3, "{choice}");
        assert_eq!(stats.datagrams_received, 2, "{choice}");
        assert_eq!(stats.recv_errors, 0, "{choice}");
        // Long datagrams can still be sent.
        io.queue_send(client.local_addr().unwrap(), &[9u8; 3000]);
        io.flush().unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = recv_from(&client, &mut buf).unwrap();
        assert_eq!(n, 3000, "{choice}");
    }
}

#[test]
fn refused_datagrams_are_counted_and_skipped() {
    for choice in choices() {
        let (mut io, _waker) = open_at(choice, "127.0.0.1:0");
        let client = client("127.0.0.1:0");
        let to = client.local_addr().unwrap();
        io.queue_send(to, b"one");
        // Port 0 is refused by the kernel (EINVAL), an IPv6 address by the IPv4 socket.
        io.queue_send("127.0.0.1:0".parse().unwrap(), b"bad");
        io.queue_send("[::1]:9".parse().unwrap(), b"bad");
        io.queue_send(to, b"two");
        io.flush().unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..2 {
            let (n, _) = recv_from(&client, &mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()], "{choice}");
        // io_uring counts at completion, which the next receive call collects.
        io.recv_batch(Duration::from_millis(20), &mut |_, _| {})
            .unwrap();
        let stats = io.stats();
        assert_eq!(
            (stats.datagrams_sent, stats.send_errors.total()),
            (2, 2),
            "{choice}: {stats:?}"
        );
        // EINVAL from the kernel, the family mismatch from the backend itself.
        let errors = stats.send_errors;
        assert_eq!(errors.get(SendErrorKind::Other), 1, "{choice}: {errors:?}");
        assert_eq!(
            errors.get(SendErrorKind::Unreachable),
            1,
            "{choice}: {errors:?}"
        );
    }
}

#[test]
fn send_errors_are_counted_by_kind() {
    for choice in choices() {
        let (mut io, _waker) = open_at(choice, "127.0.0.1:0");
        let client = client("127.0.0.1:0");
        let to = client.local_addr().unwrap();
        // The loopback broadcast address without SO_BROADCAST: EACCES, twice.
        let broadcast: SocketAddr = "127.255.255.255:9".parse().unwrap();
        io.queue_send(broadcast, b"bcast");
        io.queue_send(to, b"one");
        io.queue_send(broadcast, b"bcast");
        // Longer than any UDP datagram, sent on its own: EMSGSIZE.
        io.queue_send(to, &vec![0u8; 70_000]);
        io.flush().unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = recv_from(&client, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"one", "{choice}");
        io.recv_batch(Duration::from_millis(20), &mut |_, _| {})
            .unwrap();
        let errors = io.stats().send_errors;
        let by_kind: Vec<(&str, u64)> = SendErrorKind::ALL
            .iter()
            .map(|&kind| (kind.name(), errors.get(kind)))
            .collect();
        assert_eq!(
            by_kind,
            [
                ("would_block", 0),
                ("denied", 2),
                ("unreachable", 0),
                ("too_large", 1),
                ("other", 0)
            ],
            "{choice}"
        );
    }
}

#[test]
fn dual_stack_socket_reports_ipv4_sources() {
    for choice in choices() {
        let (mut io, _waker) = open_at(choice, "[::]:0");
        let port = io.local_addr().unwrap().port();
        let v4 = client("127.0.0.1:0");
        let v6 = client("[::1]:0");
        v4.send_to(b"v4", ("127.0.0.1", port)).unwrap();
        let got = collect(&mut io, 1, Duration::from_secs(2));
        assert_eq!(
            got,
            vec![(v4.local_addr().unwrap(), b"v4".to_vec())],
            "{choice}"
        );
        v6.send_to(b"v6", ("::1", port)).unwrap();
        let got = collect(&mut io, 1, Duration::from_secs(2));
        assert_eq!(
            got,
            vec![(v6.local_addr().unwrap(), b"v6".to_vec())],
            "{choice}"
        );
        // Replies to a plain IPv4 address go out mapped and arrive as IPv4.
        io.queue_send(v4.local_addr().unwrap(), b"r4");
        io.queue_send(v6.local_addr().unwrap(), b"r6");
        io.flush().unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = recv_from(&v4, &mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"r4"[..], SocketAddr::from(([127, 0, 0, 1], port)))
        );
        let (n, from) = recv_from(&v6, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"r6");
        assert_eq!(from.port(), port);
    }
}

#[test]
fn auto_prefers_io_uring_where_allowed() {
    let socket = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let (io, _waker, reason) = open_backend(socket, BackendChoice::Auto).unwrap();
    match reason {
        None => assert_eq!(io.kind(), BackendKind::IoUring),
        Some(reason) => {
            assert_eq!(io.kind(), BackendKind::Mmsg);
            assert!(reason.contains("io_uring"), "{reason}");
        }
    }
}

#[test]
fn backend_names() {
    assert_eq!(BackendKind::IoUring.to_string(), "io_uring");
    assert_eq!(BackendKind::Mmsg.to_string(), "mmsg");
    for choice in [
        BackendChoice::Auto,
        BackendChoice::IoUring,
        BackendChoice::Mmsg,
    ] {
        assert_eq!(choice.to_string().parse::<BackendChoice>(), Ok(choice));
    }
    assert!("epoll".parse::<BackendChoice>().is_err());
}

/// Set in the child process that runs [`seccomp_child`].
const SECCOMP_CHILD: &str = "SETOWIRE_IO_SECCOMP_CHILD";
const SECCOMP_OK: &str = "seccomp child: fallback ok";

/// Auto's fallback for real: a child process forbids io_uring_setup with a seccomp filter
/// (as Docker's default profile does) and opens backends.
#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn auto_falls_back_when_seccomp_forbids_io_uring() {
    let module = module_path!().split_once("::").unwrap().1;
    let name = format!("{module}::seccomp_child");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(SECCOMP_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(SECCOMP_OK),
        "child failed: {}\n{stdout}\n{stderr}",
        out.status
    );
}

/// Runs only in the child started above (a no-op otherwise).
#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn seccomp_child() {
    if std::env::var_os(SECCOMP_CHILD).is_none() {
        return;
    }
    forbid_io_uring_setup();
    let socket = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let (mut io, _waker, reason) = open_backend(socket, BackendChoice::Auto).unwrap();
    assert_eq!(io.kind(), BackendKind::Mmsg);
    let reason = reason.expect("a fallback reason");
    assert!(reason.contains("io_uring"), "{reason}");
    assert!(reason.contains("not permitted"), "{reason}");

    let socket = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
    let err = open_backend(socket, BackendChoice::IoUring)
        .err()
        .expect("io_uring refused");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");

    // The fallback works.
    let client = client("127.0.0.1:0");
    client.send_to(b"hi", io.local_addr().unwrap()).unwrap();
    let got = collect(&mut io, 1, Duration::from_secs(2));
    assert_eq!(got, vec![(client.local_addr().unwrap(), b"hi".to_vec())]);
    println!("{SECCOMP_OK}: {reason}");
}

/// Installs a seccomp filter on this thread making io_uring_setup fail with EPERM.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn forbid_io_uring_setup() {
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    // Offsets in struct seccomp_data.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let program = [
        op(LD_W_ABS, 0, 0, ARCH),
        op(JEQ_K, 0, 3, AUDIT_ARCH),
        op(LD_W_ABS, 0, 0, NR),
        op(JEQ_K, 0, 1, libc::SYS_io_uring_setup as u32),
        op(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        op(RET_K, 0, 0, RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with a valid, live filter program; it only restricts this thread.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        );
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }
}
