//! The byte-level pieces of the snapshot format: little-endian integers, length-prefixed
//! bytes and text, IP and socket addresses. The reader checks every length against what is
//! left before it takes anything, so a truncated or corrupt input is an error, never a panic
//! or an allocation larger than the input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why bytes could not be read as what the format says is there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated: {wanted} bytes needed for {what}, {left} left")]
    Truncated {
        what: &'static str,
        wanted: u64,
        left: usize,
    },
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Tags of an IP address: the family, then 4 or 16 bytes.
const V4: u8 = 4;
const V6: u8 = 6;

/// Most bytes a socket address takes: tag, IPv6, port.
pub const MAX_ADDR_BYTES: usize = 1 + 16 + 2;
/// Most bytes an IP address takes.
pub const MAX_IP_BYTES: usize = 1 + 16;

/// Appends to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, n: u8) {
        self.buf.push(n);
    }

    pub fn u16(&mut self, n: u16) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    pub fn u32(&mut self, n: u32) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    pub fn u64(&mut self, n: u64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// At most 255 bytes behind a one-byte length; the caller guarantees the bound.
    pub fn short(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= usize::from(u8::MAX));
        self.u8(bytes.len() as u8);
        self.raw(bytes);
    }

    /// Bytes behind a four-byte length; the caller guarantees they fit.
    pub fn long(&mut self, bytes: &[u8]) {
        debug_assert!(u32::try_from(bytes.len()).is_ok());
        self.u32(bytes.len() as u32);
        self.raw(bytes);
    }

    pub fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.u8(V4);
                self.raw(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.u8(V6);
                self.raw(&v6.octets());
            }
        }
    }

    pub fn addr(&mut self, addr: SocketAddr) {
        self.ip(addr.ip());
        self.u16(addr.port());
    }
}

/// Reads from a slice, front to back.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn left(&self) -> usize {
        self.rest.len()
    }

    /// The next `n` bytes, named `what` in the error when there are fewer.
    pub fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], CodecError> {
        let truncated = CodecError::Truncated {
            what,
            wanted: n,
            left: self.rest.len(),
        };
        let n = usize::try_from(n).map_err(|_| truncated.clone())?;
        if n > self.rest.len() {
            return Err(truncated);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.array(what).map(u64::from_le_bytes)
    }

    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        self.array(what)
    }

    /// Bytes behind a one-byte length.
    pub fn short(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let len = self.u8(what)?;
        self.take(u64::from(len), what)
    }

    /// Bytes behind a four-byte length.
    pub fn long(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let len = self.u32(what)?;
        self.take(u64::from(len), what)
    }

    /// UTF-8 text behind a one-byte length.
    pub fn short_text(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.short(what)?).map_err(|_| CodecError::Invalid(what))
    }

    /// UTF-8 text behind a four-byte length.
    pub fn long_text(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.long(what)?).map_err(|_| CodecError::Invalid(what))
    }

    pub fn ip(&mut self, what: &'static str) -> Result<IpAddr, CodecError> {
        match self.u8(what)? {
            V4 => Ok(IpAddr::V4(Ipv4Addr::from(self.fixed::<4>(what)?))),
            V6 => Ok(IpAddr::V6(Ipv6Addr::from(self.fixed::<16>(what)?))),
            _ => Err(CodecError::Invalid(what)),
        }
    }

    pub fn addr(&mut self, what: &'static str) -> Result<SocketAddr, CodecError> {
        let ip = self.ip(what)?;
        Ok(SocketAddr::new(ip, self.u16(what)?))
    }

    /// A count of records that each take at least `min_bytes`: refused when the bytes left
    /// cannot hold that many, so that no caller reserves room for records that are not there.
    pub fn count(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, CodecError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_bytes.max(1)) > self.rest.len() {
            return Err(CodecError::Truncated {
                what,
                wanted: (n as u64).saturating_mul(min_bytes.max(1) as u64),
                left: self.rest.len(),
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_short_input() {
        let mut w = Writer::default();
        w.u8(7);
        w.u16(0x1234);
        w.u32(0xdead_beef);
        w.u64(u64::MAX - 1);
        w.short(b"key");
        w.long("héllo".as_bytes());
        w.addr("127.0.0.1:4000".parse().unwrap());
        w.addr("[2001:db8::1]:5".parse().unwrap());
        let bytes = w.buf;
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a"), Ok(7));
        assert_eq!(r.u16("b"), Ok(0x1234));
        assert_eq!(r.u32("c"), Ok(0xdead_beef));
        assert_eq!(r.u64("d"), Ok(u64::MAX - 1));
        assert_eq!(r.short_text("e"), Ok("key"));
        assert_eq!(r.long_text("f"), Ok("héllo"));
        assert_eq!(r.addr("g"), Ok("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(r.addr("h"), Ok("[2001:db8::1]:5".parse().unwrap()));
        assert!(r.is_empty());
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let all = (|| -> Result<(), CodecError> {
                r.u8("a")?;
                r.u16("b")?;
                r.u32("c")?;
                r.u64("d")?;
                r.short_text("e")?;
                r.long_text("f")?;
                r.addr("g")?;
                r.addr("h")?;
                Ok(())
            })();
            assert!(
                matches!(all, Err(CodecError::Truncated { .. })),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn refuses_bad_tags_text_and_counts() {
        assert_eq!(
            Reader::new(&[5, 1, 2, 3, 4]).ip("ip"),
            Err(CodecError::Invalid("ip"))
        );
        assert_eq!(
            Reader::new(&[2, 0xff, 0xfe]).short_text("key"),
            Err(CodecError::Invalid("key"))
        );
        // Four billion records of at least one byte cannot be in eight bytes.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(matches!(
            r.count("records", 1),
            Err(CodecError::Truncated { .. })
        ));
        let mut r = Reader::new(&[2, 0, 0, 0, 9, 9]);
        assert_eq!(r.count("records", 1), Ok(2));
    }
}
