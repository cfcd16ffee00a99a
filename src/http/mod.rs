//! The control plane's public HTTP listener: HTTP bootstrap (`POST /announce`, `GET /peers`)
//! and a piping-server compatible rendezvous (under the rendezvous prefix, or on every other
//! path when generic piping is open).
//!
//! It runs on a small tokio runtime of its own (two worker threads), off the shards' hot path:
//! it reads only what the runtime hands it at start (the node's id and addresses) and keeps
//! its own state behind short-lived locks. [`ControlPlane::start`] binds the listener (port 0
//! picks a free port) and serves; [`ControlPlane::stop`] stops accepting, ends requests that
//! are still waiting for a partner, gives running transfers until a deadline and then drops
//! whatever is left. It counts requests, piping and what it refuses into
//! [`metrics::HttpMetrics`], which the node's telemetry reads at scrape time.
//!
//! Made for the public internet: connections are capped in all and per source IP and held
//! to a header and an idle timeout ([`listener`], [`deadlines`]), requests are rate-limited
//! per IP, oversized bodies are answered so the client reads the 413 ([`body_limit`]),
//! announcements belong to their source IP ([`bootstrap`]), and piping is capped in
//! bandwidth ([`bandwidth`]).

mod bandwidth;
mod body_limit;
pub mod bootstrap;
mod deadlines;
mod listener;
pub mod metrics;
pub mod piping;
pub mod server;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::supervisor::Supervisor;
use body_limit::BodyLimits;
use deadlines::Timeouts;
use listener::ConnLimits;
use metrics::HttpMetrics;
use server::{ServeError, Served};
use setowire_core::ratelimit::{IpLimiter, Rate, SourceGrouping};
use setowire_core::swarm::lan_addrs::LanAddrs;

pub use bandwidth::BandwidthConfig;
pub use bootstrap::BootstrapConfig;
pub use listener::ConnAddrs;
pub use piping::PipingConfig;

/// Worker threads of the control plane's runtime.
const WORKER_THREADS: usize = 2;

/// Everything the public HTTP listener needs, from the `http_*` and `piping_*` keys.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Open connections at most; more wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// Open connections from one source IP at most; more are reset at accept.
    pub max_connections_per_ip: usize,
    /// Time to send a whole request head (and an announce body).
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Requests per second from one IP (all paths), with a burst.
    pub rate_per_ip: Rate,
    /// Source IPs the limiter tracks at once.
    pub rate_limit_ips: usize,
    /// What counts as one source IP (IPv6 by prefix) for every per-IP limit.
    pub grouping: SourceGrouping,
    /// Bytes of an oversized body read and discarded before the 413.
    pub discard_max: u64,
    pub bootstrap: BootstrapConfig,
    pub piping: PipingConfig,
}

/// The address of the node's UDP session with the peer of a 40-hex-digit id, if it has one.
pub type SessionLookup = Arc<dyn Fn(&str) -> Option<SocketAddr> + Send + Sync>;

/// What the bootstrap tells clients about the node itself, and how it finds its sessions.
#[derive(Clone)]
pub struct NodeSelf {
    /// The full id, 40 hex digits.
    pub id40: String,
    /// The bound UDP address (may be a wildcard).
    pub udp: SocketAddr,
    /// The configured public address, if any.
    pub public_addr: Option<SocketAddr>,
    /// Whether the node answers RELAY_REQ.
    pub relay: bool,
    pub sessions: SessionLookup,
    /// Where announced LAN addresses go, for the node's introductions behind one NAT.
    pub lan_addrs: Arc<LanAddrs>,
}

impl NodeSelf {
    /// The UDP address a client that reached us on `conn_local` should dial: the public
    /// address, else the bound one, else (bound to a wildcard) the IP the client connected to
    /// with the UDP port. `None` when that IP cannot reach the UDP socket (an IPv6 connection
    /// to a node whose UDP socket is IPv4 only).
    pub fn dial_addr(&self, conn_local: SocketAddr) -> Option<SocketAddr> {
        if let Some(public) = self.public_addr {
            return Some(public);
        }
        if !self.udp.ip().is_unspecified() {
            return Some(self.udp);
        }
        let ip = conn_local.ip().to_canonical();
        match (self.udp.ip(), ip) {
            (IpAddr::V4(_), IpAddr::V6(_)) => None,
            _ => Some(SocketAddr::new(ip, self.udp.port())),
        }
    }
}

/// State shared by the handlers.
pub(crate) struct AppState {
    pub(crate) node: NodeSelf,
    pub(crate) bootstrap_config: BootstrapConfig,
    pub(crate) bootstrap: Arc<bootstrap::Registry>,
    pub(crate) piping: Arc<piping::Rendezvous>,
    pub(crate) bodies: BodyLimits,
    pub(crate) metrics: Arc<HttpMetrics>,
    limiter: Mutex<IpLimiter>,
}

/// The running control plane.
pub struct ControlPlane {
    served: Served,
    piping: Arc<piping::Rendezvous>,
    local_addr: SocketAddr,
    state: Weak<AppState>,
}

/// Changes the per-IP request rate of a running control plane (on SIGHUP); a no-op once it
/// has stopped.
#[derive(Clone)]
pub struct HttpRateControl(Weak<AppState>);

impl HttpRateControl {
    /// From now on, each source IP gets `rate`; sources start again from a full burst.
    pub fn set(&self, rate: Rate) {
        if let Some(state) = self.0.upgrade() {
            let mut limiter = state.limiter.lock().unwrap_or_else(|p| p.into_inner());
            limiter.set_rate(rate);
        }
    }
}

impl ControlPlane {
    /// Binds `config.listen` and starts serving on a runtime of its own, keeping
    /// announcements in `registry` (made with [`BootstrapConfig::registry`]) and counting
    /// requests and piping into `metrics`. The server failing later is reported to
    /// `supervisor`.
    pub fn start(
        config: HttpConfig,
        node: NodeSelf,
        registry: Arc<bootstrap::Registry>,
        metrics: Arc<HttpMetrics>,
        supervisor: &Supervisor,
    ) -> Result<ControlPlane, ServeError> {
        let (runtime, listener, local_addr) = server::bind(config.listen, "http", WORKER_THREADS)?;
        let piping = Arc::new(piping::Rendezvous::new(
            config.piping.clone(),
            Arc::clone(&metrics),
        ));
        let state = Arc::new(AppState {
            node,
            bootstrap: registry,
            bootstrap_config: config.bootstrap.clone(),
            piping: Arc::clone(&piping),
            bodies: BodyLimits {
                discard_max: config.discard_max,
                deadline: config.header_timeout,
            },
            metrics: Arc::clone(&metrics),
            limiter: Mutex::new(IpLimiter::new(
                config.rate_per_ip,
                config.rate_limit_ips,
                Instant::now(),
            )),
        });
        let limits = ConnLimits {
            max_connections: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            grouping: config.grouping,
            // A peer that leaves data unacknowledged this long is gone: never shorter than
            // 30 s.
            user_timeout: config.piping.idle_timeout.max(Duration::from_secs(30)),
            timeouts: Timeouts {
                header: config.header_timeout,
                idle: config.idle_timeout,
            },
        };
        let listener = listener::CappedListener::new(listener, limits, Arc::clone(&metrics));
        let weak = Arc::downgrade(&state);
        let state_ref = weak.clone();
        metrics.set_bootstrap_peers(Box::new(move || {
            weak.upgrade()
                .map_or(0, |state| state.bootstrap.len(Instant::now()))
        }));
        let app = router(state)
            .layer(middleware::from_fn_with_state(metrics, metrics::count_http))
            .into_make_service_with_connect_info::<ConnAddrs>();
        let served = Served::spawn(runtime, "http", supervisor, |stop| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        });
        tracing::info!(http = %local_addr, "HTTP bootstrap and piping listening");
        Ok(ControlPlane {
            served,
            piping,
            local_addr,
            state: state_ref,
        })
    }

    pub fn rate_control(&self) -> HttpRateControl {
        HttpRateControl(self.state.clone())
    }

    /// The bound address (with the port picked when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, ends requests still waiting for a partner, lets running
    /// transfers go on until `deadline`, then drops what is left. Returns by `deadline` plus
    /// a few milliseconds.
    pub fn stop(self, deadline: Instant) {
        self.piping.close();
        self.served.stop(deadline);
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/announce", post(bootstrap::announce))
        .route("/peers", get(bootstrap::peers))
        .fallback(piping::handle)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            rate_limit,
        ))
        // Outermost: even a refused request is one in progress until its answer is sent.
        .layer(middleware::from_fn(deadlines::track_requests))
        .with_state(state)
}

/// Answers 429 to a source IP over its request rate.
async fn rate_limit(
    State(state): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = state
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(conn.source, Instant::now());
    if allowed {
        return next.run(request).await;
    }
    let path = request.uri().path();
    let mut response = if path == "/announce" || path == "/peers" {
        json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address",
        )
    } else {
        text(
            StatusCode::TOO_MANY_REQUESTS,
            "[ERROR] Too many requests from this address; try again later.\n".to_owned(),
        )
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `{"error": message}` with `status`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

/// A plain-text answer as piping-server writes them: text/plain, any origin.
pub(crate) fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(udp: &str, public: Option<&str>) -> NodeSelf {
        NodeSelf {
            id40: "ab".repeat(20),
            udp: udp.parse().unwrap(),
            public_addr: public.map(|p| p.parse().unwrap()),
            relay: true,
            sessions: Arc::new(|_| None),
            lan_addrs: Arc::default(),
        }
    }

    #[test]
    fn dial_addr_prefers_public_then_bound_then_connection() {
        let conn: SocketAddr = "192.0.2.9:8737".parse().unwrap();
        assert_eq!(
            node("0.0.0.0:49737", Some("203.0.113.1:1000")).dial_addr(conn),
            Some("203.0.113.1:1000".parse().unwrap())
        );
        assert_eq!(
            node("127.0.0.1:5000", None).dial_addr(conn),
            Some("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(
            node("0.0.0.0:49737", None).dial_addr(conn),
            Some("192.0.2.9:49737".parse().unwrap())
        );
        let mapped: SocketAddr = "[::ffff:192.0.2.9]:8737".parse().unwrap();
        assert_eq!(
            node("0.0.0.0:49737", None).dial_addr(mapped),
            Some("192.0.2.9:49737".parse().unwrap())
        );
        let v6: SocketAddr = "[2001:db8::1]:8737".parse().unwrap();
        assert_eq!(node("0.0.0.0:49737", None).dial_addr(v6), None);
        assert_eq!(
            node("[::]:49737", None).dial_addr(v6),
            Some("[2001:db8::1]:49737".parse().unwrap())
        );
    }
}
