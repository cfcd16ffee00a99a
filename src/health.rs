//! `setowire-node health`: asks a running node's own `GET /healthz` and exits 0 when it
//! answers 200, 1 otherwise. `setowire-node health --ready` asks `GET /readyz` instead (503
//! while a shard is stalled or once the node drains): a readiness probe.
//!
//! It is the image's `HEALTHCHECK`: a minimal image has no curl, and the probe must find the
//! admin listener exactly where the node put it, so it reads the same configuration the node
//! does (`--config`, `SETOWIRE_*`, `--admin-listen` and every other flag, over the built-in
//! defaults). Every failure, a bad configuration included, exits 1: Docker reserves exit
//! code 2 of a health check.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use setowire_node::config::cli::{self, CliAction};
use setowire_node::config::ConfigError;

/// The subcommand's name, the first argument after the program name.
pub const SUBCOMMAND: &str = "health";
/// The flag, right after the subcommand, that asks for readiness rather than liveness.
const READY_FLAG: &str = "--ready";

/// Bound on connecting, and on each write and read: a node too busy to answer /healthz
/// within this is reported unhealthy rather than left to Docker's own timeout.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of the answer read at most: the status line is all that matters.
const MAX_ANSWER: u64 = 4096;

/// Why the node is not reported healthy.
#[derive(Debug, thiserror::Error)]
enum HealthError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("`health` takes the node's config flags only")]
    NotAProbe,
    #[error("admin_listen is off: there is no /healthz to ask")]
    AdminOff,
    #[error("admin_listen {0} has port 0: the probe cannot know the port the node picked")]
    AnyPort(SocketAddr),
    #[error("GET http://{addr}{path}: {source}")]
    Io {
        addr: SocketAddr,
        path: &'static str,
        source: io::Error,
    },
    #[error("GET http://{addr}{path} answered {status:?}")]
    Status {
        addr: SocketAddr,
        path: &'static str,
        status: String,
    },
}

/// Runs the probe for `args`: the program name, `health`, `--ready` or not, then the node's
/// flags.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let ready = args.get(2).is_some_and(|a| a == READY_FLAG);
    let path = if ready { "/readyz" } else { "/healthz" };
    let node_args = args
        .iter()
        .take(1)
        .chain(args.iter().skip(if ready { 3 } else { 2 }))
        .cloned()
        .collect::<Vec<_>>();
    match probe_configured(node_args, path) {
        Ok(addr) => {
            println!("healthy: GET http://{addr}{path} answered 200");
            ExitCode::SUCCESS
        }
        // `--help` and `--version` are "errors" of the command line that exit 0.
        Err(HealthError::Config(e)) if e.exit_code() == 0 => {
            e.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe_configured(args: Vec<OsString>, path: &'static str) -> Result<SocketAddr, HealthError> {
    let config = match cli::parse_cli(args, cli::process_env())? {
        CliAction::Run {
            config,
            control_stdio: false,
        } => config,
        CliAction::Run { .. } | CliAction::PrintConfig(_) => return Err(HealthError::NotAProbe),
    };
    let addr = probe_addr(config.admin_listen)?;
    probe(addr, path)?;
    Ok(addr)
}

/// Where to ask: the admin listener's address, with a wildcard IP replaced by the loopback
/// address of its family (a listener on 0.0.0.0 answers on 127.0.0.1 too).
fn probe_addr(admin_listen: Option<SocketAddr>) -> Result<SocketAddr, HealthError> {
    let mut addr = admin_listen.ok_or(HealthError::AdminOff)?;
    if addr.port() == 0 {
        return Err(HealthError::AnyPort(addr));
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// One `GET path` over HTTP/1.1, every step bounded by [`STEP_TIMEOUT`].
fn probe(addr: SocketAddr, path: &'static str) -> Result<(), HealthError> {
    let io_err = |source| HealthError::Io { addr, path, source };
    let mut stream = TcpStream::connect_timeout(&addr, STEP_TIMEOUT).map_err(io_err)?;
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(STEP_TIMEOUT)))
        .map_err(io_err)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    let mut answer = Vec::new();
    let mut limited = (&mut stream).take(MAX_ANSWER);
    // Read until the status line is complete or the node closes the connection.
    let mut buf = [0u8; 512];
    while !answer.contains(&b'\n') {
        let n = limited.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let status = status_line(&answer);
    if is_ok_status(&status) {
        Ok(())
    } else {
        Err(HealthError::Status { addr, path, status })
    }
}

/// The first line of an HTTP answer, lossily decoded and trimmed.
fn status_line(answer: &[u8]) -> String {
    let end = answer
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(answer.len());
    String::from_utf8_lossy(&answer[..end]).trim().to_owned()
}

/// `HTTP/1.x 200 ...`.
fn is_ok_status(line: &str) -> bool {
    let mut parts = line.split(' ');
    matches!(parts.next(), Some("HTTP/1.1" | "HTTP/1.0")) && parts.next() == Some("200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_asked_on_loopback() {
        let v4 = probe_addr(Some("0.0.0.0:9737".parse().unwrap())).unwrap();
        assert_eq!(v4, "127.0.0.1:9737".parse().unwrap());
        let v6 = probe_addr(Some("[::]:9737".parse().unwrap())).unwrap();
        assert_eq!(v6, "[::1]:9737".parse().unwrap());
        let concrete = probe_addr(Some("10.1.2.3:9000".parse().unwrap())).unwrap();
        assert_eq!(concrete, "10.1.2.3:9000".parse().unwrap());
    }

    #[test]
    fn off_and_port_zero_cannot_be_probed() {
        assert!(matches!(probe_addr(None), Err(HealthError::AdminOff)));
        assert!(matches!(
            probe_addr(Some("127.0.0.1:0".parse().unwrap())),
            Err(HealthError::AnyPort(_))
        ));
    }

    #[test]
    fn only_a_200_status_line_is_healthy() {
        assert!(is_ok_status(&status_line(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2"
        )));
        assert!(is_ok_status(&status_line(b"HTTP/1.0 200 OK\r\n")));
        assert!(!is_ok_status(&status_line(
            b"HTTP/1.1 503 Service Unavailable\r\n"
        )));
        assert!(!is_ok_status(&status_line(b"HTTP/1.1 2000 OK\r\n")));
        assert!(!is_ok_status(&status_line(b"SSH-2.0-OpenSSH\r\n")));
        assert!(!is_ok_status(&status_line(b"")));
    }
}
