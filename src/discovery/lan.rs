//! LAN discovery's I/O: the multicast socket py-setowire shares, and the thread that
//! announces the node and hands the announcers [`LanDiscovery`] picks to a shard.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use setowire_core::discovery::lan::{
    LanDiscovery, ANNOUNCE_INTERVAL, MAX_DATAGRAM, MULTICAST_GROUP, MULTICAST_PORT,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::supervisor::Supervisor;

/// The local IPv4 address LAN peers would reach us at: the source address the kernel picks
/// for the multicast group (found with `connect`, which sends nothing), else loopback.
pub fn local_ip_guess() -> IpAddr {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((MULTICAST_GROUP, MULTICAST_PORT))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Opens the multicast socket as py-setowire does (`SO_REUSEADDR`, bound to the group's
/// port on every address, member of the group on the default interface), so the node and
/// py-setowire peers on one host share the port.
fn open_socket() -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MULTICAST_PORT).into())?;
    socket.join_multicast_v4(&MULTICAST_GROUP, &Ipv4Addr::UNSPECIFIED)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(socket.into())
}

/// Runs LAN discovery on a thread `supervisor` watches, until the node stops: announces
/// every [`ANNOUNCE_INTERVAL`] (the first at once) and calls `dial` for each announcer to
/// dial.
pub fn spawn(
    mut discovery: LanDiscovery,
    dial: Box<dyn Fn(SocketAddr) + Send>,
    connected: Box<dyn Fn(&str) -> bool + Send>,
    supervisor: &Supervisor,
) -> io::Result<JoinHandle<()>> {
    let socket = open_socket()?;
    let group = SocketAddr::from((MULTICAST_GROUP, MULTICAST_PORT));
    let stop = Arc::clone(supervisor.stop_flag());
    supervisor.spawn("lan".into(), move || {
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut next_announce = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_announce {
                next_announce = now + ANNOUNCE_INTERVAL;
                for datagram in discovery.announcements() {
                    match socket.send_to(&datagram, group) {
                        Ok(_) => discovery.note_announcement_sent(),
                        Err(e) => tracing::debug!(error = %e, "LAN announcement failed"),
                    }
                }
            }
            match socket.recv_from(&mut buf) {
                Ok((len, _)) => {
                    if let Some(addr) =
                        discovery.on_datagram(Instant::now(), &buf[..len], &connected)
                    {
                        tracing::debug!(%addr, "dialling a LAN announcer");
                        dial(addr);
                    }
                }
                Err(e) if crate::io::is_wait_over(&e) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "LAN receive failed");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })
}
