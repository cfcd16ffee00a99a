//! The io_uring backend: one ring per shard, the socket registered as a fixed file, one
//! multishot `recvmsg` fed by a provided-buffer ring (re-armed whenever a completion comes
//! without the MORE flag), the waker's eventfd under a multishot poll, and sends as
//! `SendMsg` entries submitted in batches. Waits are `io_uring_enter` with a timeout
//! (`IORING_FEAT_EXT_ARG`).
//!
//! Needs Linux 6.0 (multishot `recvmsg`); anything missing is reported by [`UringIo::new`]
//! so `Auto` can fall back to mmsg.

mod buf_ring;
mod mem;
mod send_slots;

use std::collections::VecDeque;
use std::io;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::types::{Fd, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};
use setowire_udp_batch::{addr, is_socket_unusable, SendErrorKind};

use self::buf_ring::BufRing;
use self::send_slots::SendSlots;
use super::MAX_DATAGRAM;
use super::{send_direct, BackendKind, DatagramIo, IoStats, Waker};

/// Receive buffers in the provided-buffer ring. When all are waiting in our completion
/// backlog the multishot receive stops with ENOBUFS and datagrams wait in the socket's own
/// buffer until we re-arm it, so this bounds memory, not correctness.
const RECV_BUFFERS: u16 = 256;
/// Send slots, i.e. datagrams in flight at once.
const SEND_SLOTS: u16 = 256;
/// Queued sends that trigger a submit on their own.
const SEND_BATCH: usize = 64;
/// Datagrams handed to the caller per `recv_batch`.
const RECV_BATCH: usize = 64;
/// Submission queue: every send slot plus the re-arms and cancels.
const SQ_ENTRIES: u32 = 512;
/// Completion queue: receive completions are bounded by RECV_BUFFERS and send completions
/// by SEND_SLOTS; the rest is slack for waker completions.
const CQ_ENTRIES: u32 = 2048;

/// Bytes the kernel puts before the payload in a multishot `recvmsg` buffer: its
/// `io_uring_recvmsg_out` header and then `msg_namelen` bytes of source address.
const RECVMSG_OUT_LEN: usize = 16;
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();
const RECV_BUF_LEN: usize = RECVMSG_OUT_LEN + NAME_LEN + MAX_DATAGRAM;

const BUF_GROUP: u16 = 0;
const SOCKET: Fixed = Fixed(0);

/// `user_data` of the long-lived entries; send entries carry their slot id (< SEND_SLOTS).
const UD_RECV: u64 = u64::MAX;
const UD_WAKER: u64 = u64::MAX - 1;
const UD_CANCEL: u64 = u64::MAX - 2;

/// When a full set of send slots is in flight, `queue_send` waits this long for a
/// completion, a few times, before dropping the datagram.
const SLOT_WAIT: Duration = Duration::from_millis(10);
const SLOT_WAIT_ROUNDS: usize = 10;
/// How long Drop waits for the kernel to let go of our buffers before leaking them.
const DRAIN_ON_DROP: Duration = Duration::from_secs(1);

/// io_uring could not be used; the socket is handed back for the fallback.
pub(crate) struct Refused {
    pub(crate) socket: UdpSocket,
    pub(crate) error: io::Error,
    pub(crate) reason: String,
}

pub(crate) struct UringIo {
    ring: IoUring,
    // Freed by Drop only once no operation points into them any more (else leaked).
    bufs: ManuallyDrop<BufRing>,
    sends: ManuallyDrop<SendSlots>,
    /// Template for the multishot receive: only its name and control lengths matter, and
    /// the kernel reads it when the entry is prepared, so it is kept alive with the ring.
    recv_hdr: Box<libc::msghdr>,
    socket: UdpSocket,
    v6: bool,
    waker: Waker,
    recv_armed: bool,
    waker_armed: bool,
    woken: bool,
    /// Receive completions taken off the completion queue but not yet handed over: the
    /// queue is drained whole (sends must free their slots) even when the caller's batch is
    /// full.
    backlog: VecDeque<cqueue::Entry>,
    stats: IoStats,
}

// SAFETY: the raw pointers (inside `recv_hdr` and the send slots) point only into memory
// this value owns, and the ring is not set up SINGLE_ISSUER, so any one thread at a time
// may drive it.
unsafe impl Send for UringIo {}

/// What `setup` built: a ring with the multishot receive already running.
struct Setup {
    ring: IoUring,
    bufs: BufRing,
    recv_hdr: Box<libc::msghdr>,
    /// Completions that arrived during setup (datagrams already waiting, say).
    early: Vec<cqueue::Entry>,
}

impl UringIo {
    pub(crate) fn new(socket: UdpSocket, waker: Waker) -> Result<Self, Refused> {
        let v6 = match socket.local_addr() {
            Ok(local) => local.is_ipv6(),
            Err(error) => {
                let reason = format!("io_uring not tried: local_addr: {error}");
                return Err(Refused {
                    socket,
                    error,
                    reason,
                });
            }
        };
        let setup = match Self::setup(&socket) {
            Ok(setup) => setup,
            Err((error, reason)) => {
                return Err(Refused {
                    socket,
                    error,
                    reason,
                })
            }
        };
        let mut backlog = VecDeque::with_capacity(RECV_BUFFERS as usize * 2);
        backlog.extend(setup.early);
        Ok(UringIo {
            ring: setup.ring,
            bufs: ManuallyDrop::new(setup.bufs),
            sends: ManuallyDrop::new(SendSlots::new(SEND_SLOTS)),
            recv_hdr: setup.recv_hdr,
            socket,
            v6,
            waker,
            recv_armed: false,
            waker_armed: false,
            woken: false,
            backlog,
            stats: IoStats::default(),
        })
    }

    /// Everything that may fail on an old or locked-down kernel. On failure nothing is left
    /// running in the kernel, so dropping the half-built parts is safe.
    fn setup(socket: &UdpSocket) -> Result<Setup, (io::Error, String)> {
        let refused = |what: &str, err: io::Error| {
            let reason = format!("io_uring refused: {what}: {err}");
            (err, reason)
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| refused("socket", e))?;
        let mut ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            // No interrupts to run completions: they run when we enter the kernel to wait,
            // which a shard does all the time anyway (5.19).
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_submit_all()
            .build(SQ_ENTRIES)
            .map_err(|e| refused("io_uring_setup", e))?;
        if !ring.params().is_feature_ext_arg() {
            return Err(missing(
                "IORING_FEAT_EXT_ARG (waits with a timeout, Linux 5.11)",
            ));
        }
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| refused("probe", e))?;
        for (code, name) in [
            (opcode::RecvMsgMulti::CODE, "RECVMSG"),
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::PollAdd::CODE, "POLL_ADD"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(missing(&format!("opcode {name}")));
            }
        }
        ring.submitter()
            .register_files(&[socket.as_raw_fd()])
            .map_err(|e| refused("register_files", e))?;
        let mut bufs = BufRing::new(RECV_BUFFERS, RECV_BUF_LEN, BUF_GROUP);
        bufs.register(&ring)
            .map_err(|e| refused("provided buffer ring (Linux 5.19)", e))?;

        // Try the multishot receive now: a kernel without it (before 6.0) fails the entry
        // at once, which is our cue to fall back.
        // SAFETY: all zeroes is a valid msghdr; only the lengths are used.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
        let entry = recv_entry(&recv_hdr);
        // SAFETY: the entry points at the boxed header, which moves into UringIo with the
        // ring (or is dropped only after the entry failed).
        unsafe { ring.submission().push(&entry) }
            .map_err(|_| refused("push", io::Error::from_raw_os_error(libc::EBUSY)))?;
        ring.submit().map_err(|e| refused("submit", e))?;
        let early: Vec<cqueue::Entry> = ring.completion().collect();
        if let Some(failed) = early
            .iter()
            .find(|c| c.result() < 0 && !cqueue::more(c.flags()))
        {
            let err = io::Error::from_raw_os_error(-failed.result());
            return Err(refused("multishot recvmsg (Linux 6.0)", err));
        }
        let early = Self::cancel_probe(&mut ring, early).map_err(|e| refused("cancel", e))?;
        Ok(Setup {
            ring,
            bufs,
            recv_hdr,
            early,
        })
    }

    /// Cancels the multishot receive started to probe the kernel. The kernel does a
    /// multishot receive's work in the thread that submitted it, and backends are opened on
    /// the thread that starts the node; the shard arms its own receive on its first wait.
    /// Returns the completions worth keeping (datagrams that arrived meanwhile).
    fn cancel_probe(
        ring: &mut IoUring,
        mut early: Vec<cqueue::Entry>,
    ) -> io::Result<Vec<cqueue::Entry>> {
        let ended = |c: &cqueue::Entry| c.user_data() == UD_RECV && !cqueue::more(c.flags());
        if early.iter().any(ended) {
            early.retain(|c| !ended(c));
            return Ok(early);
        }
        let cancel = opcode::AsyncCancel::new(UD_RECV)
            .build()
            .user_data(UD_CANCEL);
        // SAFETY: a cancel entry refers to no memory of ours.
        unsafe { ring.submission().push(&cancel) }
            .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))?;
        // The receive ends with a final completion; a few rounds are plenty, bounded anyway.
        for _ in 0..8 {
            ring.submit_and_wait(1)?;
            let mut done = false;
            for c in ring.completion() {
                if ended(&c) {
                    done = true;
                } else if c.user_data() == UD_RECV {
                    early.push(c);
                }
            }
            if done {
                return Ok(early);
            }
        }
        Err(io::Error::from_raw_os_error(libc::ETIMEDOUT))
    }

    /// Pushes the multishot receive and the waker poll if they are not running.
    fn arm(&mut self) {
        if !self.recv_armed {
            let entry = recv_entry(&self.recv_hdr);
            self.recv_armed = self.push(&entry);
        }
        if !self.waker_armed {
            let entry = opcode::PollAdd::new(Fd(self.waker.raw_fd()), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(UD_WAKER);
            self.waker_armed = self.push(&entry);
        }
    }

    /// Entries pushed but not yet submitted.
    fn pending(&mut self) -> usize {
        self.ring.submission().len()
    }

    /// Queues an entry for the next submit. False only if the submission queue stayed
    /// full, which it cannot in practice: it holds more entries than we ever have pending.
    #[must_use]
    fn push(&mut self, entry: &squeue::Entry) -> bool {
        // Bounded: a full queue is emptied by the submit, after which the push succeeds.
        for _ in 0..2 {
            // SAFETY: every entry we build points at memory that outlives its operation:
            // the boxed receive header, a send slot held until its completion, or nothing.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return true;
            }
            let _ = self.submit();
        }
        false
    }

    fn submit(&mut self) -> io::Result<()> {
        // Bounded: EBUSY (completions backed up) is cleared by reaping, EINTR by retrying.
        let mut last = None;
        for _ in 0..3 {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EINTR)) => {
                    self.reap();
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY)))
    }

    /// Submits what is pending and waits up to `timeout` for at least one completion.
    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            // Timed out, interrupted, or completions backed up: all end the wait.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Takes every completion off the queue: sends free their slots at once, the waker
    /// sets a flag, receives go to the backlog.
    fn reap(&mut self) {
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            match cqe.user_data() {
                UD_RECV => {
                    if !cqueue::more(cqe.flags()) {
                        self.recv_armed = false;
                    }
                    self.backlog.push_back(cqe);
                }
                UD_WAKER => {
                    if !cqueue::more(cqe.flags()) {
                        self.waker_armed = false;
                    }
                    if cqe.result() >= 0 {
                        self.waker.drain();
                        self.woken = true;
                    }
                }
                UD_CANCEL => {}
                slot => {
                    let res = cqe.result();
                    if res < 0 {
                        let kind = SendErrorKind::of_errno(-res);
                        self.stats.send_errors.add(kind, 1);
                    } else {
                        self.stats.datagrams_sent += 1;
                        self.stats.bytes_sent += res as u64;
                    }
                    self.sends.release(slot as u16);
                }
            }
        }
    }

    /// Hands over up to RECV_BATCH datagrams from the backlog and recycles their buffers.
    fn deliver(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8])) -> usize {
        let mut delivered = 0;
        while delivered < RECV_BATCH {
            let Some(cqe) = self.backlog.pop_front() else {
                break;
            };
            let res = cqe.result();
            let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
                // No buffer: ENOBUFS (the multishot ended; re-armed by the caller) or an
                // error from the socket.
                if res != -libc::ENOBUFS {
                    self.stats.recv_errors += 1;
                }
                continue;
            };
            if res >= 0 {
                // SAFETY: the kernel handed us `bid` in this completion and it is recycled
                // only below, after the last use of this slice.
                let buf = unsafe { self.bufs.buffer(bid, res as usize) };
                if let Some((src, start, len)) = parse(buf, &self.recv_hdr, &mut self.stats) {
                    self.stats.datagrams_received += 1;
                    self.stats.bytes_received += len as u64;
                    on_datagram(src, &mut buf[start..start + len]);
                    delivered += 1;
                }
            } else {
                self.stats.recv_errors += 1;
            }
            self.bufs.recycle(bid);
        }
        self.bufs.publish();
        delivered
    }

    /// A free send slot, waiting briefly for completions when all are in flight.
    fn acquire_slot(&mut self) -> Option<u16> {
        if let Some(id) = self.sends.take() {
            return Some(id);
        }
        for _ in 0..SLOT_WAIT_ROUNDS {
            self.reap();
            if let Some(id) = self.sends.take() {
                return Some(id);
            }
            if self.wait(SLOT_WAIT).is_err() {
                break;
            }
        }
        self.reap();
        self.sends.take()
    }
}

/// Finds source and payload in a multishot `recvmsg` buffer: `(src, payload offset, len)`.
fn parse(
    buf: &[u8],
    hdr: &libc::msghdr,
    stats: &mut IoStats,
) -> Option<(SocketAddr, usize, usize)> {
    let Ok(out) = RecvMsgOut::parse(buf, hdr) else {
        stats.recv_errors += 1;
        return None;
    };
    if out.is_payload_truncated() {
        stats.truncated += 1;
        return None;
    }
    let Some(src) = addr::decode_bytes(out.name_data()) else {
        stats.recv_errors += 1;
        return None;
    };
    let payload = out.payload_data();
    let start = payload.as_ptr() as usize - buf.as_ptr() as usize;
    Some((src, start, payload.len()))
}

impl DatagramIo for UringIo {
    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn recv_batch(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> io::Result<usize> {
        // Set on the first pass that finds nothing: under load no clock is read.
        let mut deadline = None;
        let mut entered = false;
        // Bounded by the deadline: each pass either returns or blocks in the kernel until a
        // completion arrives or the time is up.
        loop {
            self.reap();
            let delivered = self.deliver(on_datagram);
            if delivered > 0 || self.woken {
                self.woken = false;
                return Ok(delivered);
            }
            // Re-arm only now that the buffers are back, or it would fail with ENOBUFS.
            self.arm();
            let now = Instant::now();
            let remaining = deadline
                .get_or_insert(now + timeout)
                .saturating_duration_since(now);
            if remaining.is_zero() {
                if entered {
                    return Ok(0);
                }
                // A poll still enters the kernel once to run completions it holds for us.
                self.submit()?;
                entered = true;
                continue;
            }
            self.wait(remaining)?;
            entered = true;
        }
    }

    fn queue_send(&mut self, dst: SocketAddr, data: &[u8]) {
        if data.len() > MAX_DATAGRAM {
            let _ = self.flush();
            send_direct(&self.socket, self.v6, dst, data, &mut self.stats);
            return;
        }
        // Every send slot still in flight after waiting: the ring's own buffer is full.
        let Some(id) = self.acquire_slot() else {
            self.stats.send_errors.add(SendErrorKind::WouldBlock, 1);
            return;
        };
        let Some(hdr) = self.sends.fill(id, dst, self.v6, data) else {
            self.stats.send_errors.add(SendErrorKind::Unreachable, 1);
            return;
        };
        let entry = opcode::SendMsg::new(SOCKET, hdr)
            .build()
            .user_data(id as u64);
        if !self.push(&entry) {
            self.sends.release(id);
            self.stats.send_errors.add(SendErrorKind::WouldBlock, 1);
            return;
        }
        if self.pending() >= SEND_BATCH {
            let _ = self.flush();
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending() == 0 {
            return Ok(());
        }
        match self.submit() {
            Err(e) if is_socket_unusable(&e) => Err(e),
            // Anything else (EAGAIN for kernel memory…) leaves the entries queued for the
            // next submit.
            _ => Ok(()),
        }
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        // Stop the long-lived operations and let the sends finish, so that nothing in the
        // kernel points into our buffers when they are freed.
        let _ = self.submit();
        for target in [UD_RECV, UD_WAKER] {
            let entry = opcode::AsyncCancel::new(target)
                .build()
                .user_data(UD_CANCEL);
            // A cancel that cannot be queued leaves that operation running, and Drop then
            // leaks the buffers instead of freeing them.
            let _ = self.push(&entry);
        }
        let _ = self.submit();
        let deadline = Instant::now() + DRAIN_ON_DROP;
        // Bounded by the deadline.
        loop {
            self.reap();
            // Recycle whatever the receive still delivered, without a consumer.
            while self.deliver(&mut |_, _| {}) > 0 {}
            let busy = self.recv_armed || self.waker_armed || self.sends.in_flight() > 0;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !busy {
                let _ = self.bufs.unregister(&self.ring);
                // SAFETY: no operation refers to these any more, and they are not used
                // again (the struct is being dropped).
                unsafe {
                    ManuallyDrop::drop(&mut self.bufs);
                    ManuallyDrop::drop(&mut self.sends);
                }
                return;
            }
            if remaining.is_zero() || self.wait(remaining.min(Duration::from_millis(50))).is_err() {
                // The kernel may still write into them: leak rather than free.
                return;
            }
        }
    }
}

fn recv_entry(hdr: &libc::msghdr) -> squeue::Entry {
    opcode::RecvMsgMulti::new(SOCKET, hdr, BUF_GROUP)
        .build()
        .user_data(UD_RECV)
}

fn missing(what: &str) -> (io::Error, String) {
    (
        io::Error::new(io::ErrorKind::Unsupported, format!("missing {what}")),
        format!("io_uring refused: kernel lacks {what}"),
    )
}

// A batch must fit in the slots, and every slot in the submission queue.
const _: () = assert!(SEND_BATCH <= SEND_SLOTS as usize);
const _: () = assert!((SEND_SLOTS as u32) < SQ_ENTRIES);
