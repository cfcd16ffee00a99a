//! `ping --raw --saturate`: bare PINGs from one thread, fast enough to saturate a batched
//! UDP responder, so that what is measured is the target and not the generator.
//!
//! Each virtual peer has a socket of its own on its own 127.1.x.y address ([`Fleet`]) and
//! keeps `--in-flight` PINGs outstanding. One `epoll_wait` finds every peer with replies;
//! each is drained with one `recvmmsg` and immediately sent as many new PINGs as it got
//! answers with one `sendmmsg`, so the per-reply work is a parse, a queue pop and a
//! histogram entry. Closed loop only: there is no schedule to keep, only answers to follow.

use std::time::{Duration, Instant};

use setowire_core::proto::frame::Frame;
use setowire_core::proto::identity::Identity;
use setowire_udp_batch::{Patience, RecvBatch, RecvWait, SendBatch};

use super::ping::InOrder;
use crate::fleet::Fleet;
use crate::net::MAX_DATAGRAM;
use crate::report::Recorder;
use crate::run::{Ctx, DRAIN};

/// Datagrams per `recvmmsg`/`sendmmsg` of one socket.
const BATCH: usize = 64;
/// Longest wait for replies before the loop looks at the clock again (expiry, the end).
const WAIT: Duration = Duration::from_millis(10);
/// How often unanswered PINGs are looked for.
const EXPIRE_EVERY: Duration = Duration::from_millis(10);
/// The encoded PING: 0x03 ‖ u64 ms ‖ 20-byte id.
const PING_LEN: usize = 29;

/// What the loop did besides the replies, for the report's notes.
#[derive(Default)]
struct Counts {
    sent: u64,
    received: u64,
    send_dropped: u64,
    strays: u64,
    waits: u64,
    ready: u64,
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    let opts = &ctx.opts;
    let peers = opts.options.peers;
    let target = opts.target;
    let mut fleet = Fleet::bind(peers, target, PING_LEN as u16)?;
    let ids: Vec<_> = (0..peers).map(|_| *Identity::generate().id()).collect();
    let in_flight = opts.options.in_flight as u32;
    let mut pending = InOrder::new(peers as u32);
    // PINGs each peer may send now: all of them at first, one more per answer or loss.
    let mut credit = vec![in_flight; peers];
    let mut inbox = RecvBatch::<MAX_DATAGRAM>::new(BATCH);
    let mut out = SendBatch::<PING_LEN>::new(BATCH, false);
    let mut segments = Vec::with_capacity(BATCH * PING_LEN);
    let mut counts = Counts::default();
    let mut refill: Vec<u32> = (0..peers as u32).collect();

    let started = Instant::now();
    let mut rec = ctx.recorder(started);
    let window = rec.window();
    let mut last_expire = started;
    loop {
        let now = Instant::now();
        if ctx.stopped() || now >= window.measure_until + DRAIN {
            break;
        }
        if now - last_expire >= EXPIRE_EVERY {
            pending.expire(now, opts.timeout, |at, slot| {
                rec.lost(at, 1);
                credit[slot as usize] += 1;
                refill.push(slot);
            });
            last_expire = now;
        }
        if !window.is_over(now) {
            for slot in refill.drain(..) {
                let mut send = Sender {
                    fleet: &fleet,
                    out: &mut out,
                    segments: &mut segments,
                    pending: &mut pending,
                    counts: &mut counts,
                    rec: &mut rec,
                };
                send.pings(now, slot, &mut credit[slot as usize], &ids, started, target);
            }
        } else {
            refill.clear();
        }
        counts.waits += 1;
        counts.ready += fleet.wait(WAIT) as u64;
        let now = Instant::now();
        for &slot in fleet.ready() {
            let socket = fleet.socket(slot);
            loop {
                let Ok(received) = inbox.recv(socket, RecvWait::Never) else {
                    break;
                };
                let mut got = 0;
                for datagram in received {
                    got += 1;
                    counts.received += 1;
                    let pongs = if datagram.source() == Some(target) && !datagram.is_truncated() {
                        pongs_in(datagram.data)
                    } else {
                        0
                    };
                    if pongs == 0 {
                        counts.strays += 1;
                    }
                    for _ in 0..pongs {
                        match pending.answer(slot) {
                            Some(at) => {
                                rec.done(now, now - at);
                                credit[slot as usize] += 1;
                            }
                            None => rec.note("unexpected_pong", 1),
                        }
                    }
                }
                if got < BATCH {
                    break;
                }
            }
            if !window.is_over(now) {
                let mut send = Sender {
                    fleet: &fleet,
                    out: &mut out,
                    segments: &mut segments,
                    pending: &mut pending,
                    counts: &mut counts,
                    rec: &mut rec,
                };
                send.pings(now, slot, &mut credit[slot as usize], &ids, started, target);
            }
        }
    }
    // What is still unanswered after the drain is lost.
    pending.expire(Instant::now() + opts.timeout, opts.timeout, |at, _| {
        rec.lost(at, 1)
    });
    rec.note("datagrams_sent", counts.sent);
    rec.note("datagrams_received", counts.received);
    rec.note("send_dropped", counts.send_dropped);
    rec.note("strays", counts.strays);
    rec.note("sockets", fleet.len() as u64);
    rec.note("epoll_waits", counts.waits);
    rec.note("ready_sockets", counts.ready);
    Ok(vec![rec])
}

/// Sends one peer's PINGs through its own socket.
struct Sender<'a> {
    fleet: &'a Fleet,
    out: &'a mut SendBatch<PING_LEN>,
    /// The bytes of one segmented send.
    segments: &'a mut Vec<u8>,
    pending: &'a mut InOrder,
    counts: &'a mut Counts,
    rec: &'a mut Recorder,
}

impl Sender<'_> {
    /// Spends peer `slot`'s credit: that many PINGs to `target`, in `sendmmsg`s of up to a
    /// batch. A PING the kernel does not take stays pending and is lost at its timeout, as
    /// one the target dropped would be.
    fn pings(
        &mut self,
        now: Instant,
        slot: u32,
        credit: &mut u32,
        ids: &[[u8; 20]],
        started: Instant,
        target: std::net::SocketAddr,
    ) {
        let mut buf = [0u8; PING_LEN];
        let ping = Frame::Ping {
            timestamp_ms: (now - started).as_millis() as u64,
            id: ids[slot as usize],
        };
        let Ok(len) = ping.encode(&mut buf) else {
            return;
        };
        while *credit > 0 {
            let n = (*credit).min(BATCH as u32);
            for _ in 0..n {
                self.pending.push(now, slot);
            }
            *credit -= n;
            self.rec.sent(now, u64::from(n));
            let socket = self.fleet.socket(slot);
            if self.fleet.segmented() {
                // One send, cut by the kernel into `n` PINGs.
                self.segments.clear();
                for _ in 0..n {
                    self.segments.extend_from_slice(&buf[..len]);
                }
                match socket.send(self.segments) {
                    Ok(_) => self.counts.sent += u64::from(n),
                    Err(_) => self.counts.send_dropped += u64::from(n),
                }
            } else {
                for _ in 0..n {
                    // The batch was flushed empty and holds BATCH: there is room.
                    let _ = self.out.push(target, &buf[..len]);
                }
                let flushed = self.out.flush(socket, Patience::NONE);
                self.counts.sent += flushed.sent as u64;
                self.counts.send_dropped += flushed.dropped.total();
            }
        }
    }
}

/// How many PONGs a datagram holds: one for a PONG, those inside a BATCH, else none.
fn pongs_in(data: &[u8]) -> usize {
    match Frame::parse(data) {
        Ok(Frame::Pong { .. }) => 1,
        Ok(Frame::Batch(entries)) => entries
            .datagrams()
            .filter(|inner| matches!(Frame::parse(inner), Ok(Frame::Pong { .. })))
            .count(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pongs_are_counted_alone_and_inside_batches() {
        let mut buf = [0u8; 64];
        let n = Frame::Pong { id: [7; 20] }.encode(&mut buf).unwrap();
        assert_eq!(pongs_in(&buf[..n]), 1);
        let ping = Frame::Ping {
            timestamp_ms: 1,
            id: [7; 20],
        };
        let m = ping.encode(&mut buf).unwrap();
        assert_eq!(pongs_in(&buf[..m]), 0);
        assert_eq!(pongs_in(&[0xff, 1, 2]), 0);
        assert_eq!(pongs_in(&[]), 0);
    }
}
