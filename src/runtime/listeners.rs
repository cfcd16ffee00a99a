//! The control plane's TCP listeners, each on a runtime of its own and each optional: the
//! public one (HTTP bootstrap and piping), the admin one (metrics, API, status page) and
//! the metrics one (`/metrics` alone).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::RuntimeError;
use crate::admin::{AdminConfig, AdminServer, MetricsServer, NodeInfo};
use crate::control;
use crate::discovery::dht::SharedDht;
use crate::http::bootstrap::Registry;
use crate::http::{ControlPlane, HttpConfig, HttpRateControl, NodeSelf, SessionLookup};
use crate::node::handle::NodeHandle;
use crate::supervisor::Supervisor;
use crate::telemetry::NodeMetrics;
use setowire_core::swarm::config::EngineConfig;

/// What the listeners serve about the node.
pub struct ListenerParts<'a> {
    pub id40: &'a str,
    /// The bound UDP address.
    pub udp: SocketAddr,
    pub engine: &'a EngineConfig,
    pub node: &'a Arc<NodeHandle>,
    pub metrics: &'a Arc<NodeMetrics>,
    pub dht: &'a Arc<SharedDht>,
}

/// Finds the node's session with an announced id (a py-setowire id8 is its first 16 digits).
fn session_lookup(node: &Arc<NodeHandle>) -> SessionLookup {
    let node = Arc::clone(node);
    Arc::new(move |id40| {
        let id8 = control::peer_id(id40).ok()?;
        node.session_addr(&id8)
    })
}

pub struct Listeners {
    http: Option<ControlPlane>,
    admin: Option<AdminServer>,
    metrics: Option<MetricsServer>,
}

impl Listeners {
    /// Starts the listeners that are configured (the public one with the registry its
    /// announcements go to); any failing to bind fails the start.
    pub fn start(
        http: Option<(HttpConfig, Arc<Registry>)>,
        admin: Option<AdminConfig>,
        metrics: Option<SocketAddr>,
        parts: ListenerParts<'_>,
        supervisor: &Supervisor,
    ) -> Result<Listeners, RuntimeError> {
        let engine = parts.engine;
        let http = http
            .map(|(config, registry)| {
                let node = NodeSelf {
                    id40: parts.id40.to_owned(),
                    udp: parts.udp,
                    public_addr: engine.public_addr,
                    relay: engine.relay,
                    sessions: session_lookup(parts.node),
                    lan_addrs: parts.node.lan_addrs(),
                };
                let metrics = Arc::clone(&parts.metrics.http);
                ControlPlane::start(config, node, registry, metrics, supervisor)
            })
            .transpose()?;
        let admin = admin
            .map(|config| {
                let info = NodeInfo {
                    id40: parts.id40.to_owned(),
                    udp: parts.udp,
                    http: http.as_ref().map(ControlPlane::local_addr),
                    public_addr: engine.public_addr,
                    relay: engine.relay,
                    flood: engine.flood,
                    store_forward: engine.store_forward,
                    store_max_value_bytes: engine.store_max_value,
                };
                AdminServer::start(
                    config,
                    info,
                    Arc::clone(parts.node),
                    Arc::clone(parts.metrics),
                    Arc::clone(parts.dht),
                    supervisor,
                )
            })
            .transpose()?;
        let metrics = metrics
            .map(|listen| MetricsServer::start(listen, parts.metrics, supervisor))
            .transpose()?;
        Ok(Listeners {
            http,
            admin,
            metrics,
        })
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(ControlPlane::local_addr)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// Changes the public listener's per-IP request rate; `None` when it is off.
    pub fn http_rate_control(&self) -> Option<HttpRateControl> {
        self.http.as_ref().map(ControlPlane::rate_control)
    }

    /// Stops the public listener; its transfers get until `deadline`.
    pub fn stop_http(&mut self, deadline: Instant) {
        if let Some(http) = self.http.take() {
            http.stop(deadline);
        }
    }

    /// Stops the admin and metrics listeners (and the public one, if still running) by
    /// `deadline`.
    pub fn stop(mut self, deadline: Instant) {
        self.stop_http(deadline);
        if let Some(metrics) = self.metrics.take() {
            metrics.stop(deadline);
        }
        if let Some(admin) = self.admin.take() {
            admin.stop(deadline);
        }
    }
}
