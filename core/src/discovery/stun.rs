//! STUN Binding (RFC 8489) on the node's UDP port: a peer learns the address and port the
//! node sees it from, as it would from a public STUN server.
//!
//! Only what a reflexive-address server needs: a Binding request gets a Binding success
//! response with XOR-MAPPED-ADDRESS (IPv4 or IPv6) and the request's transaction id, plus
//! FINGERPRINT when the request carried one. A request with a comprehension-required
//! attribute we do not know (CHANGE-REQUEST, say) gets error 420 with UNKNOWN-ATTRIBUTES,
//! as the RFC asks. Indications are accepted silently; anything else is malformed.
//! Responses are never more than three times the size of the request.

use std::net::{IpAddr, SocketAddr};

/// The magic cookie at bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of a message header.
pub const HEADER_LEN: usize = 20;
/// Largest response [`answer`] writes.
pub const MAX_RESPONSE: usize = 96;

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_INDICATION: u16 = 0x0011;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;

const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Comprehension-required attributes a Binding request may carry that need no action from
/// a server without credentials: USERNAME, MESSAGE-INTEGRITY, REALM, NONCE,
/// MESSAGE-INTEGRITY-SHA256, USERHASH, and ICE's PRIORITY and USE-CANDIDATE.
const UNDERSTOOD: [u16; 8] = [
    0x0006, 0x0008, 0x0014, 0x0015, 0x001C, 0x001E, 0x0024, 0x0025,
];
/// UNKNOWN-ATTRIBUTES lists at most this many.
const MAX_UNKNOWN_LISTED: usize = 4;

/// Why a datagram classified as STUN is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("not a STUN message (leading bits or magic cookie)")]
    NotStun,
    #[error("length field does not match the datagram")]
    BadLength,
    #[error("attribute overruns the message")]
    BadAttribute,
    #[error("FINGERPRINT does not match or is not last")]
    BadFingerprint,
    #[error("not a Binding request or indication")]
    Unexpected,
}

/// Answers one STUN datagram from `src`: `Ok(Some(n))` when `out[..n]` is to be sent back,
/// `Ok(None)` for a valid message that gets no answer (an indication).
pub fn answer(
    request: &[u8],
    src: SocketAddr,
    out: &mut [u8; MAX_RESPONSE],
) -> Result<Option<usize>, StunError> {
    if request.len() < HEADER_LEN {
        return Err(StunError::TooShort);
    }
    if request[0] & 0xC0 != 0 || be32(&request[4..8]) != MAGIC_COOKIE {
        return Err(StunError::NotStun);
    }
    let body_len = usize::from(be16(&request[2..4]));
    if body_len % 4 != 0 || HEADER_LEN + body_len != request.len() {
        return Err(StunError::BadLength);
    }
    let kind = be16(&request[0..2]);
    let mut unknown = [0u16; MAX_UNKNOWN_LISTED];
    let mut unknown_count = 0;
    let mut fingerprint = false;
    let mut pos = HEADER_LEN;
    while pos < request.len() {
        if fingerprint {
            return Err(StunError::BadFingerprint);
        }
        if pos + 4 > request.len() {
            return Err(StunError::BadAttribute);
        }
        let attr = be16(&request[pos..pos + 2]);
        let len = usize::from(be16(&request[pos + 2..pos + 4]));
        let value = pos + 4;
        let next = value + len.next_multiple_of(4);
        if next > request.len() {
            return Err(StunError::BadAttribute);
        }
        if attr == ATTR_FINGERPRINT {
            if len != 4 || be32(&request[value..value + 4]) != fingerprint_of(&request[..pos]) {
                return Err(StunError::BadFingerprint);
            }
            fingerprint = true;
        } else if attr < 0x8000 && !UNDERSTOOD.contains(&attr) && unknown_count < unknown.len() {
            unknown[unknown_count] = attr;
            unknown_count += 1;
        }
        pos = next;
    }
    match kind {
        BINDING_REQUEST => {}
        BINDING_INDICATION => return Ok(None),
        _ => return Err(StunError::Unexpected),
    }
    let transaction = &request[8..HEADER_LEN];
    let mut w = Writer {
        out,
        len: HEADER_LEN,
    };
    if unknown_count > 0 {
        let reason = b"Unknown Attribute";
        let mut code = [0u8; 4 + 17];
        code[2] = 4;
        code[3] = 20;
        code[4..].copy_from_slice(reason);
        w.attr(ATTR_ERROR_CODE, &code);
        let mut list = [0u8; 2 * MAX_UNKNOWN_LISTED];
        for (i, attr) in unknown[..unknown_count].iter().enumerate() {
            list[2 * i..2 * i + 2].copy_from_slice(&attr.to_be_bytes());
        }
        w.attr(ATTR_UNKNOWN_ATTRIBUTES, &list[..2 * unknown_count]);
        w.header(BINDING_ERROR, transaction);
    } else {
        let mut xaddr = [0u8; 20];
        xaddr[1] = if src.is_ipv4() { 0x01 } else { 0x02 };
        let port = src.port() ^ (MAGIC_COOKIE >> 16) as u16;
        xaddr[2..4].copy_from_slice(&port.to_be_bytes());
        let mut pad = [0u8; 16];
        pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        pad[4..].copy_from_slice(transaction);
        let len = match src.ip() {
            IpAddr::V4(ip) => {
                for (i, b) in ip.octets().iter().enumerate() {
                    xaddr[4 + i] = b ^ pad[i];
                }
                8
            }
            IpAddr::V6(ip) => {
                for (i, b) in ip.octets().iter().enumerate() {
                    xaddr[4 + i] = b ^ pad[i];
                }
                20
            }
        };
        w.attr(ATTR_XOR_MAPPED_ADDRESS, &xaddr[..len]);
        w.header(BINDING_SUCCESS, transaction);
    }
    if fingerprint {
        // The length field counts the FINGERPRINT attribute before the CRC is taken.
        let total = w.len + 8;
        w.out[2..4].copy_from_slice(&((total - HEADER_LEN) as u16).to_be_bytes());
        let crc = fingerprint_of(&w.out[..w.len]);
        w.attr(ATTR_FINGERPRINT, &crc.to_be_bytes());
    }
    Ok(Some(w.len))
}

/// A Binding request with `transaction` as its id and no attributes: what a client sends to
/// learn its reflexive address (the node asks its bootstrap nodes for `public_addr = "auto"`).
pub fn binding_request(transaction: &[u8; 12]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..].copy_from_slice(transaction);
    out
}

/// The XOR-MAPPED-ADDRESS of a Binding success response to the request with id
/// `transaction`; `None` for anything else (another transaction, an error, no address).
pub fn mapped_address(response: &[u8], transaction: &[u8; 12]) -> Option<SocketAddr> {
    if response.len() < HEADER_LEN
        || be16(&response[0..2]) != BINDING_SUCCESS
        || be32(&response[4..8]) != MAGIC_COOKIE
        || response[8..HEADER_LEN] != transaction[..]
        || HEADER_LEN + usize::from(be16(&response[2..4])) != response.len()
    {
        return None;
    }
    let mut pos = HEADER_LEN;
    while pos + 4 <= response.len() {
        let attr = be16(&response[pos..pos + 2]);
        let len = usize::from(be16(&response[pos + 2..pos + 4]));
        let value = response.get(pos + 4..pos + 4 + len)?;
        if attr == ATTR_XOR_MAPPED_ADDRESS {
            return xor_mapped(value, transaction);
        }
        pos += 4 + len.next_multiple_of(4);
    }
    None
}

fn xor_mapped(value: &[u8], transaction: &[u8; 12]) -> Option<SocketAddr> {
    let mut pad = [0u8; 16];
    pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    pad[4..].copy_from_slice(transaction);
    let port = be16(value.get(2..4)?) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (value.get(1)?, value.len()) {
        (0x01, 8) => {
            let mut octets = [0u8; 4];
            for (i, b) in octets.iter_mut().enumerate() {
                *b = value[4 + i] ^ pad[i];
            }
            IpAddr::from(octets)
        }
        (0x02, 20) => {
            let mut octets = [0u8; 16];
            for (i, b) in octets.iter_mut().enumerate() {
                *b = value[4 + i] ^ pad[i];
            }
            IpAddr::from(octets)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

struct Writer<'a> {
    out: &'a mut [u8; MAX_RESPONSE],
    len: usize,
}

impl Writer<'_> {
    fn attr(&mut self, kind: u16, value: &[u8]) {
        let padded = value.len().next_multiple_of(4);
        let at = self.len;
        self.out[at..at + 2].copy_from_slice(&kind.to_be_bytes());
        self.out[at + 2..at + 4].copy_from_slice(&(value.len() as u16).to_be_bytes());
        self.out[at + 4..at + 4 + value.len()].copy_from_slice(value);
        self.out[at + 4 + value.len()..at + 4 + padded].fill(0);
        self.len = at + 4 + padded;
    }

    fn header(&mut self, kind: u16, transaction: &[u8]) {
        self.out[0..2].copy_from_slice(&kind.to_be_bytes());
        self.out[2..4].copy_from_slice(&((self.len - HEADER_LEN) as u16).to_be_bytes());
        self.out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        self.out[8..HEADER_LEN].copy_from_slice(transaction);
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// FINGERPRINT: CRC-32 (ISO HDLC, as in zlib) of the message so far, XORed with 0x5354554E.
fn fingerprint_of(message: &[u8]) -> u32 {
    crc32(message) ^ FINGERPRINT_XOR
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_reads_the_address_the_server_answers() {
        let transaction = [7u8; 12];
        let request = binding_request(&transaction);
        for src in ["203.0.113.9:40000", "[2001:db8::5]:1"] {
            let src: SocketAddr = src.parse().unwrap();
            let mut out = [0u8; MAX_RESPONSE];
            let n = answer(&request, src, &mut out).unwrap().unwrap();
            assert_eq!(mapped_address(&out[..n], &transaction), Some(src));
            assert_eq!(
                mapped_address(&out[..n], &[8u8; 12]),
                None,
                "other transaction"
            );
            assert_eq!(
                mapped_address(&out[..n - 1], &transaction),
                None,
                "truncated"
            );
        }
        assert_eq!(mapped_address(&request, &transaction), None, "a request");
    }

    fn request(attrs: &[(u16, &[u8])], fingerprint: bool) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42];
        m.extend(1..=12u8);
        for (kind, value) in attrs {
            m.extend(kind.to_be_bytes());
            m.extend((value.len() as u16).to_be_bytes());
            m.extend(*value);
            m.resize(m.len().next_multiple_of(4), 0);
        }
        if fingerprint {
            let len = (m.len() + 8 - HEADER_LEN) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
            let crc = fingerprint_of(&m);
            m.extend(ATTR_FINGERPRINT.to_be_bytes());
            m.extend(4u16.to_be_bytes());
            m.extend(crc.to_be_bytes());
        } else {
            let len = (m.len() - HEADER_LEN) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
        }
        m
    }

    fn attrs(msg: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = HEADER_LEN;
        while pos < msg.len() {
            let kind = be16(&msg[pos..]);
            let len = usize::from(be16(&msg[pos + 2..]));
            out.push((kind, msg[pos + 4..pos + 4 + len].to_vec()));
            pos += 4 + len.next_multiple_of(4);
        }
        out
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn ipv4_binding_response() {
        let req = request(&[], false);
        let mut out = [0u8; MAX_RESPONSE];
        let src: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let n = answer(&req, src, &mut out).unwrap().unwrap();
        let resp = &out[..n];
        assert_eq!(be16(resp), BINDING_SUCCESS);
        assert_eq!(usize::from(be16(&resp[2..])), n - HEADER_LEN);
        assert_eq!(&resp[4..20], &req[4..20], "cookie and transaction id");
        let a = attrs(resp);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].0, ATTR_XOR_MAPPED_ADDRESS);
        // RFC 5769 style: port and address XORed with the cookie.
        assert_eq!(a[0].1[1], 1);
        assert_eq!(be16(&a[0].1[2..]) ^ 0x2112, 32853);
        assert_eq!(
            [
                a[0].1[4] ^ 0x21,
                a[0].1[5] ^ 0x12,
                a[0].1[6] ^ 0xA4,
                a[0].1[7] ^ 0x42
            ],
            [192, 0, 2, 1]
        );
        assert!(n <= 3 * req.len());
    }

    #[test]
    fn ipv6_binding_response_with_fingerprint() {
        let req = request(&[(0x8022, b"client")], true);
        let mut out = [0u8; MAX_RESPONSE];
        let src: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        let n = answer(&req, src, &mut out).unwrap().unwrap();
        let resp = &out[..n];
        let a = attrs(resp);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].0, ATTR_XOR_MAPPED_ADDRESS);
        assert_eq!(a[0].1.len(), 20);
        let mut pad = MAGIC_COOKIE.to_be_bytes().to_vec();
        pad.extend(&req[8..20]);
        let ip: Vec<u8> = a[0].1[4..].iter().zip(&pad).map(|(x, p)| x ^ p).collect();
        let want: std::net::Ipv6Addr = "2001:db8:1234:5678:11:2233:4455:6677".parse().unwrap();
        assert_eq!(ip, want.octets());
        assert_eq!(a[1].0, ATTR_FINGERPRINT);
        assert_eq!(be32(&a[1].1), fingerprint_of(&resp[..n - 8]));
        assert!(n <= 3 * req.len());
    }

    #[test]
    fn unknown_required_attribute_gets_420() {
        let req = request(&[(0x0003, &[0, 0, 0, 6])], false);
        let mut out = [0u8; MAX_RESPONSE];
        let n = answer(&req, "10.0.0.1:5".parse().unwrap(), &mut out)
            .unwrap()
            .unwrap();
        let resp = &out[..n];
        assert_eq!(be16(resp), BINDING_ERROR);
        let a = attrs(resp);
        assert_eq!(a[0].0, ATTR_ERROR_CODE);
        assert_eq!((a[0].1[2], a[0].1[3]), (4, 20));
        assert_eq!(a[1], (ATTR_UNKNOWN_ATTRIBUTES, vec![0, 3]));
        assert!(n <= 3 * req.len());
        // Optional unknown attributes and understood ones are fine.
        let req = request(&[(0x8055, b"x"), (0x0006, b"user")], false);
        let n = answer(&req, "10.0.0.1:5".parse().unwrap(), &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(be16(&out[..n]), BINDING_SUCCESS);
    }

    #[test]
    fn malformed_messages_are_refused() {
        let src: SocketAddr = "10.0.0.1:5".parse().unwrap();
        let mut out = [0u8; MAX_RESPONSE];
        let good = request(&[(0x8022, b"abcd")], true);
        assert!(answer(&good, src, &mut out).unwrap().is_some());
        assert_eq!(answer(&good[..19], src, &mut out), Err(StunError::TooShort));
        assert_eq!(
            answer(&good[..good.len() - 4], src, &mut out),
            Err(StunError::BadLength)
        );
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        assert_eq!(
            answer(&bad_crc, src, &mut out),
            Err(StunError::BadFingerprint)
        );
        let mut overrun = request(&[(0x8022, b"abcd")], false);
        overrun[22..24].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            answer(&overrun, src, &mut out),
            Err(StunError::BadAttribute)
        );
        let mut response = request(&[], false);
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(answer(&response, src, &mut out), Err(StunError::Unexpected));
        let mut indication = request(&[], false);
        indication[1] = 0x11;
        assert_eq!(answer(&indication, src, &mut out), Ok(None));
        // Every length and byte pattern: never a panic.
        for len in 0..64 {
            let mut m = request(&[], false);
            m.resize(len.max(20), 0xFF);
            m[2..4].copy_from_slice(&((len.max(20) - 20) as u16).to_be_bytes());
            let _ = answer(&m, src, &mut out);
        }
    }
}
