//! A peer with a real session to the node, over a real UDP socket: the attacker's own
//! session (to send PEX and gossip), or a legitimate newcomer.
//!
//! It speaks just enough of the protocol through the core crate's codec: it dials as
//! py-setowire does (HELLO up to eight times, 300 ms apart, until HELLO_ACK), derives the
//! session, and seals DATA. It does not answer PINGs: every test ends long before the node's
//! 60 s peer timeout.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use setowire_core::proto::frame::{Frame, Handshake};
use setowire_core::proto::identity::{Id8, Identity};
use setowire_core::proto::session::{Session, DATA_HEADER_LEN, DATA_OVERHEAD};

use super::measure::Traffic;
use super::{frames, lab};
use crate::support::net::TestNet;

const DIAL_HELLOS: usize = 8;
const DIAL_INTERVAL: Duration = Duration::from_millis(300);

pub struct SessionClient {
    socket: UdpSocket,
    identity: Identity,
    node: SocketAddrV4,
    session: Option<Session>,
    sent: Traffic,
}

impl SessionClient {
    /// A fresh identity on `ip:<free port>` inside `net`, for talking to `node`.
    #[track_caller]
    pub fn new(net: &TestNet, ip: Ipv4Addr, node: SocketAddrV4) -> SessionClient {
        let socket = lab::bind_udp(net, ip);
        SessionClient {
            socket,
            identity: Identity::generate(),
            node,
            session: None,
            sent: Traffic::default(),
        }
    }

    pub fn addr(&self) -> SocketAddrV4 {
        match self.socket.local_addr().expect("bound") {
            SocketAddr::V4(addr) => addr,
            SocketAddr::V6(addr) => unreachable!("bound to an IPv4 address, not {addr}"),
        }
    }

    pub fn id8(&self) -> Id8 {
        self.identity.id8()
    }

    /// What this client sent so far.
    pub fn sent(&self) -> Traffic {
        self.sent
    }

    /// Dials the node; true once a HELLO_ACK came back and the session is derived.
    pub fn handshake(&mut self) -> bool {
        let hello = frames::hello(&self.identity);
        for _ in 0..DIAL_HELLOS {
            self.send(&hello);
            let until = Instant::now() + DIAL_INTERVAL;
            while let Some(datagram) = self.recv_until(until) {
                if let Some(ack) = find_hello_ack(&datagram) {
                    let session = self
                        .identity
                        .derive_session(&ack.public_key, &ack.id8, 0)
                        .expect("the node's key makes a session");
                    self.session = Some(session);
                    return true;
                }
            }
        }
        false
    }

    /// One datagram to the node, counted.
    #[track_caller]
    pub fn send(&mut self, datagram: &[u8]) {
        match self.socket.send_to(datagram, self.node) {
            Ok(_) => self.sent.add(datagram.len()),
            Err(e) => panic!("send to {}: {e}", self.node),
        }
    }

    /// Application data: DATA carrying `seq` and `payload`, as py-setowire sends a message.
    #[track_caller]
    pub fn send_data(&mut self, seq: u32, payload: &[u8]) {
        let mut plaintext = seq.to_be_bytes().to_vec();
        plaintext.extend_from_slice(payload);
        self.send_sealed(&plaintext);
    }

    /// DATA carrying `plaintext` as it is (no seq: how introductions travel).
    #[track_caller]
    pub fn send_sealed(&mut self, plaintext: &[u8]) {
        let session = self
            .session
            .as_mut()
            .expect("handshake before sending DATA");
        let mut frame = vec![0u8; DATA_OVERHEAD + plaintext.len()];
        frame[DATA_HEADER_LEN..DATA_HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
        session.seal_data(&mut frame).expect("DATA seals");
        self.send(&frame);
    }

    fn recv_until(&self, until: Instant) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) if from == SocketAddr::V4(self.node) => {
                    return Some(buf[..n].to_vec())
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

/// The HELLO_ACK in a datagram, alone or inside a BATCH.
fn find_hello_ack(datagram: &[u8]) -> Option<Handshake> {
    match Frame::parse(datagram).ok()? {
        Frame::HelloAck(h) => Some(h),
        Frame::Batch(entries) => entries.datagrams().find_map(find_hello_ack),
        _ => None,
    }
}
