//! The victim: a host that asked for nothing and counts every UDP datagram that reaches it.
//!
//! A raw `IPPROTO_UDP` socket in the victim's namespace gets a copy of every UDP datagram the
//! namespace receives, on any port, before the kernel looks for a listening socket, so HELLO
//! bursts aimed at ports the attacker made up count too. A thread records each datagram's
//! arrival time, source and payload size until the tap is dropped.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::measure::Traffic;
use crate::support::net::TestNet;

/// Room for a 1 MiB value arriving in one burst without kernel drops.
const RECV_BUFFER: i32 = 32 << 20;
/// Arrivals kept; beyond it they are still counted in `overflow`.
const MAX_ARRIVALS: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
struct Arrival {
    at: Instant,
    src: Ipv4Addr,
    bytes: usize,
}

#[derive(Default)]
struct Log {
    arrivals: Vec<Arrival>,
    overflow: Traffic,
}

pub struct VictimTap {
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VictimTap {
    /// Starts counting in `net` (the victim's namespace).
    #[track_caller]
    pub fn start(net: &TestNet) -> VictimTap {
        let socket = net
            .run_inside(|| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)))
            .unwrap_or_else(|e| panic!("raw UDP socket in {}: {e}", net.describe()));
        force_recv_buffer(&socket);
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("victim-tap".into())
                .spawn(move || record(&socket, &log, &stop))
                .expect("spawn the victim's tap")
        };
        VictimTap {
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received from the start until `until`, by source address.
    pub fn by_source(&self, until: Instant) -> BTreeMap<Ipv4Addr, Traffic> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let mut sources: BTreeMap<Ipv4Addr, Traffic> = BTreeMap::new();
        for a in log.arrivals.iter().filter(|a| a.at <= until) {
            sources.entry(a.src).or_default().add(a.bytes);
        }
        assert_eq!(
            log.overflow,
            Traffic::default(),
            "the victim's log overflowed: the attack is larger than the suite allows"
        );
        sources
    }
}

impl VictimTap {
    /// Forgets what was received so far.
    pub fn clear(&self) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        *log = Log::default();
    }
}

impl Drop for VictimTap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads IPv4 packets (header included) until told to stop.
fn record(socket: &Socket, log: &Mutex<Log>, stop: &AtomicBool) {
    let mut buf = [MaybeUninit::<u8>::uninit(); 65_536];
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => panic!("the victim's tap: {e}"),
        };
        // SAFETY: recv initialised the first n bytes.
        let packet = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let Some((src, bytes)) = udp_payload_len(packet) else {
            continue;
        };
        let arrival = Arrival {
            at: Instant::now(),
            src,
            bytes,
        };
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if log.arrivals.len() < MAX_ARRIVALS {
            log.arrivals.push(arrival);
        } else {
            log.overflow.add(bytes);
        }
    }
}

/// The source and UDP payload size of an IPv4 packet holding a UDP datagram.
fn udp_payload_len(packet: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let ihl = usize::from(packet.first()? & 0x0F) * 4;
    if ihl < 20 {
        return None;
    }
    let udp = packet.get(ihl..ihl + 8)?;
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    Some((src, udp_len.checked_sub(8)?))
}

/// SO_RCVBUFFORCE (root) passes the namespace's rmem_max, which a 1 MiB burst exceeds.
fn force_recv_buffer(socket: &Socket) {
    let size = RECV_BUFFER;
    // SAFETY: setsockopt on a socket we own, with a pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}
