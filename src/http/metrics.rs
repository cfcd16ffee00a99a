//! The public listener's counters: requests by route and status class, piping transfers
//! and their bytes, what the listener refused or closed (connections over the per-IP cap,
//! slow or idle connections, announcements of someone else's id or over the per-IP cap,
//! oversized bodies, piping on a closed path, throttled piped bytes), and a way to ask how
//! many bootstrap announcements are live. Handlers count into atomics; the node's telemetry
//! reads them at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

/// Routes of the public HTTP listener, as the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRoute {
    Announce,
    Peers,
    Piping,
}

impl HttpRoute {
    pub const ALL: [HttpRoute; 3] = [HttpRoute::Announce, HttpRoute::Peers, HttpRoute::Piping];

    pub fn name(self) -> &'static str {
        match self {
            HttpRoute::Announce => "announce",
            HttpRoute::Peers => "peers",
            HttpRoute::Piping => "piping",
        }
    }
}

/// Status classes, as the `code_class` label.
pub const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters of the public HTTP listener.
#[derive(Default)]
pub struct HttpMetrics {
    requests: [[AtomicU64; CODE_CLASSES.len()]; HttpRoute::ALL.len()],
    /// Requests answered 413, by route.
    too_large: [AtomicU64; HttpRoute::ALL.len()],
    /// Piping transfers started (a sender paired with a receiver).
    pub piping_transfers: AtomicU64,
    /// Bytes passed from piping senders to receivers.
    pub piping_bytes: AtomicU64,
    /// Piped bytes that had to wait for a bandwidth cap.
    pub piping_throttled_bytes: AtomicU64,
    /// Piping requests refused (404) on a path outside the rendezvous prefix while closed.
    pub piping_closed: AtomicU64,
    /// Connections closed at accept: their IP had `max_connections_per_ip` open already.
    pub connections_refused: AtomicU64,
    /// Connections closed for not sending a whole request head in time.
    pub header_timeouts: AtomicU64,
    /// Kept-alive connections closed for waiting too long with no request.
    pub idle_timeouts: AtomicU64,
    /// Announcements refused: the id is held by another source IP.
    pub announces_refused_owned: AtomicU64,
    /// Announcements refused: their source IP has as many ids listed as it may.
    pub announces_refused_per_ip: AtomicU64,
    /// Live HTTP bootstrap announcements, asked at scrape time.
    bootstrap_peers: Mutex<Option<Box<dyn Fn() -> usize + Send + Sync>>>,
}

impl HttpMetrics {
    pub fn count_request(&self, route: HttpRoute, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[route as usize][class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self, route: HttpRoute, class: &str) -> u64 {
        CODE_CLASSES
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| {
                self.requests[route as usize][i].load(Ordering::Relaxed)
            })
    }

    /// Requests on `route` answered 413.
    pub fn too_large(&self, route: HttpRoute) -> u64 {
        self.too_large[route as usize].load(Ordering::Relaxed)
    }

    /// Sets how the number of live bootstrap announcements is found.
    pub fn set_bootstrap_peers(&self, count: Box<dyn Fn() -> usize + Send + Sync>) {
        *self
            .bootstrap_peers
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(count);
    }

    pub fn bootstrap_peers(&self) -> usize {
        self.bootstrap_peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |f| f())
    }
}

/// Counts every request on the public HTTP listener by route and status class, and the
/// 413s by route.
pub async fn count_http(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = match request.uri().path() {
        "/announce" => HttpRoute::Announce,
        "/peers" => HttpRoute::Peers,
        _ => HttpRoute::Piping,
    };
    let response = next.run(request).await;
    let status = response.status();
    metrics.count_request(route, status.as_u16());
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        metrics.too_large[route as usize].fetch_add(1, Ordering::Relaxed);
    }
    response
}
