//! The node's address as its bootstrap nodes see it, for `public_addr = "auto"`: a STUN
//! Binding request to each (a setowire node answers STUN on its UDP port, as public STUN
//! servers do) from a socket on the node's IP, and the IP of the first answer. Behind NAT or
//! in a container that is the public IP, which the node cannot see on its own interfaces.
//!
//! The request goes from a socket of its own, not the node's port, so the answer's port is
//! that socket's mapping and is not used: the caller pairs the IP with its UDP port.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use setowire_core::discovery::stun;

/// How often the requests are sent again while no answer comes.
const RESEND: Duration = Duration::from_millis(250);

/// The IP the first of `servers` to answer sees a socket on `local`'s IP from, waiting at
/// most `timeout`; `None` when none answers (or none is of `local`'s address family).
pub fn learn(
    local: SocketAddr,
    servers: &[SocketAddr],
    timeout: Duration,
) -> io::Result<Option<IpAddr>> {
    let servers: Vec<SocketAddr> = servers
        .iter()
        .filter_map(|s| reachable(local, *s))
        .collect();
    if servers.is_empty() {
        return Ok(None);
    }
    let socket = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
    let transaction: [u8; 12] = rand::random();
    let request = stun::binding_request(&transaction);
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 512];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        for server in &servers {
            // A server that cannot be reached now may be later; the others are still asked.
            if let Err(e) = socket.send_to(&request, server) {
                tracing::debug!(%server, error = %e, "STUN request not sent");
            }
        }
        let round_end = Instant::now() + RESEND.min(left);
        while let Some(wait) = round_end.checked_duration_since(Instant::now()) {
            socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                // An ICMP error from a server not listening: wait for the others.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            if !servers.contains(&from) {
                continue;
            }
            if let Some(mapped) = stun::mapped_address(&buf[..n], &transaction) {
                return Ok(Some(mapped.ip().to_canonical()));
            }
        }
    }
    Ok(None)
}

/// `server` as a socket on `local`'s IP sends to it: a dual-stack `[::]` reaches IPv4
/// servers at their IPv4-mapped addresses; other mixes of families cannot.
fn reachable(local: SocketAddr, server: SocketAddr) -> Option<SocketAddr> {
    match (local.ip(), server) {
        (IpAddr::V6(ip), SocketAddr::V4(v4)) if ip.is_unspecified() => Some(SocketAddr::new(
            IpAddr::V6(v4.ip().to_ipv6_mapped()),
            v4.port(),
        )),
        (ip, server) if ip.is_ipv4() == server.is_ipv4() => Some(server),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN server on loopback that answers one request, as the node's port does.
    fn one_answer() -> (SocketAddr, std::thread::JoinHandle<()>) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let mut out = [0u8; stun::MAX_RESPONSE];
            let len = stun::answer(&buf[..n], from, &mut out).unwrap().unwrap();
            server.send_to(&out[..len], from).unwrap();
        });
        (addr, thread)
    }

    #[test]
    fn learns_the_ip_a_server_sees() {
        let (server, thread) = one_answer();
        let local: SocketAddr = "127.0.0.1:49737".parse().unwrap();
        let ip = learn(local, &[server], Duration::from_secs(3)).unwrap();
        assert_eq!(ip, Some("127.0.0.1".parse().unwrap()));
        thread.join().unwrap();
    }

    #[test]
    fn no_answer_within_the_timeout_is_none() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local: SocketAddr = "127.0.0.1:49737".parse().unwrap();
        let started = Instant::now();
        let servers = [silent.local_addr().unwrap()];
        assert_eq!(
            learn(local, &servers, Duration::from_millis(600)).unwrap(),
            None
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(
            learn(local, &[v6], Duration::from_secs(5)).unwrap(),
            None,
            "no v4 server"
        );
    }

    #[test]
    fn a_dual_stack_wildcard_asks_ipv4_servers_too() {
        let (server, thread) = one_answer();
        let local: SocketAddr = "[::]:49737".parse().unwrap();
        let ip = learn(local, &[server], Duration::from_secs(3)).unwrap();
        assert_eq!(ip, Some("127.0.0.1".parse().unwrap()));
        thread.join().unwrap();
    }
}
