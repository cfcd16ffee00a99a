//! The public listener's counters: requests by route and status class, piping transfers
//! and their bytes, and a way to ask how many bootstrap announcements are live. Handlers
//! count into atomics; the node's telemetry reads them at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::piping::RESERVED_PATHS;

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
    /// Piping transfers started (a sender paired with a receiver).
    pub piping_transfers: AtomicU64,
    /// Bytes passed from piping senders to receivers.
    pub piping_bytes: AtomicU64,
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

/// Counts every request on the public HTTP listener by route and status class, and piping
/// transfers and their bytes (a GET on a piping path answered 200 is a receiver paired with
/// a sender; its body is the piped data).
pub async fn count_http(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let route = match path {
        "/announce" => HttpRoute::Announce,
        "/peers" => HttpRoute::Peers,
        _ => HttpRoute::Piping,
    };
    let transfer = route == HttpRoute::Piping
        && request.method() == Method::GET
        && !RESERVED_PATHS.contains(&path);
    let response = next.run(request).await;
    metrics.count_request(route, response.status().as_u16());
    if !(transfer && response.status() == StatusCode::OK) {
        return response;
    }
    metrics.piping_transfers.fetch_add(1, Ordering::Relaxed);
    response.map(|inner| axum::body::Body::new(CountingBody { inner, metrics }))
}

/// A response body that adds the bytes passing through to `piping_bytes`.
struct CountingBody {
    inner: axum::body::Body,
    metrics: Arc<HttpMetrics>,
}

impl http_body::Body for CountingBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.metrics
                    .piping_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
