//! The attacker's raw socket: UDP datagrams with whatever source address it likes.
//!
//! An `IPPROTO_RAW` socket (which implies `IP_HDRINCL`) sends the IPv4 header we write, so
//! the source is ours to choose; the kernel fills in the header checksum and the packet id.
//! Everything sent is counted, to compare with what the victim receives.

use std::net::SocketAddrV4;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::measure::Traffic;
use crate::support::net::TestNet;

const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const UDP: u8 = 17;

pub struct Spoofer {
    socket: Socket,
    sent: Traffic,
}

impl Spoofer {
    /// A raw socket opened inside `net` (the attacker's namespace).
    #[track_caller]
    pub fn new(net: &TestNet) -> Spoofer {
        let socket = net.run_inside(|| {
            Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(libc::IPPROTO_RAW)),
            )
        });
        let socket = socket.unwrap_or_else(|e| panic!("raw socket in {}: {e}", net.describe()));
        Spoofer {
            socket,
            sent: Traffic::default(),
        }
    }

    /// Sends `payload` from `from` (forged) to `to`; counts its UDP payload bytes.
    #[track_caller]
    pub fn send(&mut self, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
        let packet = ipv4_udp(from, to, payload);
        let dst = SockAddr::from(std::net::SocketAddr::V4(SocketAddrV4::new(*to.ip(), 0)));
        match self.socket.send_to(&packet, &dst) {
            Ok(n) if n == packet.len() => self.sent.add(payload.len()),
            Ok(n) => panic!("raw send wrote {n} of {} bytes", packet.len()),
            Err(e) => panic!("raw send {from} → {to}: {e}"),
        }
    }

    /// What this socket sent so far.
    pub fn sent(&self) -> Traffic {
        self.sent
    }
}

/// An IPv4 packet (DF set, TTL 64) carrying one UDP datagram with its checksum.
fn ipv4_udp(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = UDP_HEADER + payload.len();
    let total = IPV4_HEADER + udp_len;
    let total16 = u16::try_from(total).expect("one datagram fits an IPv4 packet");
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total16.to_be_bytes());
    // Packet id 0 (the kernel picks one), don't fragment, TTL 64, UDP, checksum by the kernel.
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, UDP, 0, 0]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let checksum = udp_checksum(from, to, &p[IPV4_HEADER..]);
    p[IPV4_HEADER + 6..IPV4_HEADER + 8].copy_from_slice(&checksum.to_be_bytes());
    p
}

/// RFC 768: the ones' complement sum over the pseudo-header and the datagram; 0 is sent as
/// 0xFFFF, since 0 means "no checksum".
fn udp_checksum(from: SocketAddrV4, to: SocketAddrV4, datagram: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u32::from);
            sum += hi | lo;
        }
    };
    add(&from.ip().octets());
    add(&to.ip().octets());
    add(&[0, UDP]);
    add(&(datagram.len() as u16).to_be_bytes());
    add(datagram);
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xFFFF,
        c => c,
    }
}
