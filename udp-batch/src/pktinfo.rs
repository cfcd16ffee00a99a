//! `IP_PKTINFO` control messages: the IPv4 source a datagram leaves from, and the address a
//! datagram arrived at, so one socket bound to the wildcard address can speak for many
//! local addresses.

use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};

/// Asks the kernel to tell, with each datagram received on `socket` (IPv4), the address it
/// was sent to: [`crate::Datagram::local_ip`].
pub fn enable_pktinfo(socket: impl AsFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a live c_int of the size passed, for an option of our own socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An `IP_PKTINFO` control message choosing a datagram's source address, laid out as the
/// kernel reads it: a `cmsghdr` and its `in_pktinfo`, with no padding between them on any
/// Linux ABI (checked below).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SourceControl {
    hdr: libc::cmsghdr,
    info: libc::in_pktinfo,
}

/// What a [`SourceControl`] takes in `msg_controllen`.
// SAFETY: CMSG_SPACE only computes a length.
pub(crate) const SOURCE_CONTROL_LEN: usize =
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in_pktinfo>() as libc::c_uint) } as usize;

const _: () = assert!(SOURCE_CONTROL_LEN == mem::size_of::<SourceControl>());

/// What an `IP_PKTINFO` message's `cmsg_len` says when it holds a whole `in_pktinfo`.
// SAFETY: CMSG_LEN only computes a length.
const PKTINFO_MESSAGE_LEN: usize =
    unsafe { libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as libc::c_uint) } as usize;

impl SourceControl {
    pub(crate) fn new() -> Self {
        // SAFETY: cmsghdr and in_pktinfo are plain C structs; all zeroes is valid for both.
        let mut control: SourceControl = unsafe { mem::zeroed() };
        control.hdr.cmsg_level = libc::IPPROTO_IP;
        control.hdr.cmsg_type = libc::IP_PKTINFO;
        control.hdr.cmsg_len = PKTINFO_MESSAGE_LEN as _;
        control
    }

    pub(crate) fn set_source(&mut self, ip: Ipv4Addr) {
        self.info.ipi_spec_dst.s_addr = u32::from(ip).to_be();
    }
}

/// Room for the control messages the kernel attaches to one received datagram: an
/// `IP_PKTINFO` needs 32 bytes, and the rest leaves space for one more option of the
/// caller's. Aligned as a `cmsghdr` must be.
#[repr(C, align(8))]
pub(crate) struct ControlRoom([u8; 64]);

impl ControlRoom {
    pub(crate) const LEN: usize = mem::size_of::<ControlRoom>();

    pub(crate) fn new() -> Self {
        ControlRoom([0; Self::LEN])
    }

    /// The destination address in the first `len` bytes, as the kernel wrote them, when
    /// they hold an `IP_PKTINFO` message.
    pub(crate) fn destination(&self, len: usize) -> Option<Ipv4Addr> {
        // SAFETY: a zeroed msghdr is valid; it only frames the control bytes for the CMSG
        // macros, which read within `msg_controllen` of `msg_control`.
        let mut frame: libc::msghdr = unsafe { mem::zeroed() };
        frame.msg_control = self.0.as_ptr() as *mut libc::c_void;
        frame.msg_controllen = len.min(Self::LEN) as _;
        // SAFETY: CMSG_FIRSTHDR/NXTHDR only yield headers lying within the frame, which the
        // kernel filled; an IP_PKTINFO message whose length covers an in_pktinfo (a message
        // cut short by MSG_CTRUNC does not) carries one, read unaligned as CMSG_DATA does
        // not promise its alignment.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&frame);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::IPPROTO_IP
                    && (*cmsg).cmsg_type == libc::IP_PKTINFO
                    && (*cmsg).cmsg_len as usize >= PKTINFO_MESSAGE_LEN
                {
                    let info = libc::CMSG_DATA(cmsg)
                        .cast::<libc::in_pktinfo>()
                        .read_unaligned();
                    return Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
                }
                cmsg = libc::CMSG_NXTHDR(&frame, cmsg);
            }
        }
        None
    }
}
