//! The metrics listener (config `metrics_listen`): `GET /metrics` alone, the same text the
//! admin listener serves, so that Prometheus in another container or on another host can
//! scrape the node while the admin API stays on loopback. Every other path is 404.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{blocking, not_found, AdminError};
use crate::http::server::{self, Served};
use crate::supervisor::Supervisor;
use crate::telemetry::{self, NodeMetrics};

/// The running metrics listener.
pub struct MetricsServer {
    served: Served,
    local_addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `listen` (port 0 picks a free port) and serves on a runtime of its own.
    pub fn start(
        listen: SocketAddr,
        metrics: &Arc<NodeMetrics>,
        supervisor: &Supervisor,
    ) -> Result<MetricsServer, AdminError> {
        let (runtime, listener, local_addr) = server::bind(listen, "metrics", 1)?;
        let registry = Arc::new(metrics.registry()?);
        let app = Router::new()
            .route("/metrics", get(scrape))
            .fallback(not_found)
            .with_state(registry);
        let served = Served::spawn(runtime, "metrics", supervisor, |stop| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        });
        tracing::info!(metrics = %local_addr, "metrics listening");
        Ok(MetricsServer { served, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets scrapes in flight finish until `deadline`, then drops them.
    pub fn stop(self, deadline: Instant) {
        self.served.stop(deadline);
    }
}

async fn scrape(State(registry): State<Arc<prometheus::Registry>>) -> Response {
    match blocking(move || telemetry::render(&registry)).await {
        Ok(text) => ([(header::CONTENT_TYPE, telemetry::CONTENT_TYPE)], text).into_response(),
        Err(e) => e,
    }
}
