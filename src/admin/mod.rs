//! The admin listener (config `admin_listen`, loopback by default): Prometheus metrics at
//! `/metrics`, `/healthz` and `/readyz`, the JSON API under `/api/v1/` (described by
//! `/api/v1/openapi.json`) and a status page at `/`. The metrics listener
//! ([`MetricsServer`], config `metrics_listen`) serves `/metrics` alone.
//!
//! It runs on a small tokio runtime of its own, off the shards' hot path: it reads the
//! shards' published atomics ([`crate::telemetry`]) and sends them commands through a
//! [`NodeHandle`]; anything that waits for a shard runs on the blocking pool.
//!
//! With `admin_token` set, every `/api/v1/` request needs `Authorization: Bearer <token>`
//! (compared in constant time); errors are `{"error": "..."}` with the status that fits.

// Handlers return their error responses directly, as axum handlers do.
#![allow(clippy::result_large_err)]

mod metrics_listener;

pub use metrics_listener::MetricsServer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::discovery::dht::SharedDht;
use crate::http::server::{self, ServeError, Served};
use crate::node::handle::{NodeHandle, RouteError};
use crate::node::shard::ShardCommand;
use crate::supervisor::Supervisor;
use crate::telemetry::{self, readiness, NodeMetrics, ShardMetrics};
use setowire_core::swarm::node_view::ShardId;
use setowire_core::swarm::peer::PeerInfo;

/// The status page.
const STATUS_HTML: &str = include_str!("../../assets/status.html");
/// The OpenAPI 3 description of the API.
pub const OPENAPI_JSON: &str = include_str!("../../assets/openapi.json");

/// Peers a page lists without `?limit=`, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// A fetch without `?timeout_ms=` waits this long; never longer than the maximum.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the API waits for the shards to list their peers.
const SHARD_ANSWER: Duration = Duration::from_secs(2);
/// Longest key the store takes.
const MAX_KEY_BYTES: usize = 255;

/// Why the admin listener could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("registering the metrics")]
    Metrics(#[from] prometheus::Error),
}

/// The admin listener's part of the configuration.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// The effective configuration as JSON, `admin_token` and `seed` redacted.
    pub config: Value,
}

/// What the API reports about the node itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id40: String,
    pub udp: SocketAddr,
    pub http: Option<SocketAddr>,
    pub public_addr: Option<SocketAddr>,
    pub relay: bool,
    pub flood: bool,
    pub store_forward: bool,
    pub store_max_value_bytes: usize,
}

struct AdminState {
    info: NodeInfo,
    admin: SocketAddr,
    token_hash: Option<[u8; 32]>,
    config: Value,
    node: Arc<NodeHandle>,
    metrics: Arc<NodeMetrics>,
    registry: prometheus::Registry,
    dht: Arc<SharedDht>,
    supervisor: Supervisor,
}

/// The running admin listener.
pub struct AdminServer {
    served: Served,
    local_addr: SocketAddr,
}

impl AdminServer {
    /// Binds `config.listen` (port 0 picks a free port) and serves on a runtime of its own.
    /// `/readyz` tells the failures `supervisor` records; the listener reports its own to it.
    pub fn start(
        config: AdminConfig,
        info: NodeInfo,
        node: Arc<NodeHandle>,
        metrics: Arc<NodeMetrics>,
        dht: Arc<SharedDht>,
        supervisor: &Supervisor,
    ) -> Result<AdminServer, AdminError> {
        let (runtime, listener, local_addr) = server::bind(config.listen, "admin", 1)?;
        let registry = metrics.registry()?;
        let state = Arc::new(AdminState {
            info,
            admin: local_addr,
            token_hash: config.token.as_deref().map(hash),
            config: config.config,
            node,
            metrics,
            registry,
            dht,
            supervisor: supervisor.clone(),
        });
        let app = router(state);
        let served = Served::spawn(runtime, "admin", supervisor, |stop| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        });
        tracing::info!(
            admin = %local_addr,
            token = config.token.is_some(),
            "admin API, metrics and status page listening"
        );
        Ok(AdminServer { served, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish until `deadline`, then drops them.
    pub fn stop(self, deadline: Instant) {
        self.served.stop(deadline);
    }
}

fn router(state: Arc<AdminState>) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/peers", get(peers))
        .route("/api/v1/peers/{id}", get(peer).delete(disconnect))
        .route("/api/v1/dht", get(dht))
        .route("/api/v1/config", get(config))
        .route("/api/v1/broadcast", post(broadcast))
        .route("/api/v1/store/{key}", put(store))
        .route("/api/v1/fetch/{key}", get(fetch))
        .route("/api/v1/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ));
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        // One byte over the largest value, so that a value too large gets the JSON error.
        .layer(axum::extract::DefaultBodyLimit::max(
            state.info.store_max_value_bytes.max(64 << 10) + 1,
        ))
        .with_state(state)
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

/// 503 for a command the shards could not take or answer.
fn unavailable(e: &RouteError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

async fn authorize(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.token_hash {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| hash(t.trim()));
        if !given.is_some_and(|given| constant_time_eq(&given, expected)) {
            let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such path")
}

async fn status_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        STATUS_HTML,
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match readiness::check(&state.metrics, &state.supervisor, Instant::now()) {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(not_ready) => error(StatusCode::SERVICE_UNAVAILABLE, &not_ready.to_string()),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    match blocking(move || telemetry::render(&state.registry)).await {
        Ok(text) => ([(header::CONTENT_TYPE, telemetry::CONTENT_TYPE)], text).into_response(),
        Err(e) => e,
    }
}

fn ok(value: Value) -> Response {
    json_response(StatusCode::OK, &value)
}

/// The value of `name` in a query string, percent-decoded.
fn query_param(query: &Option<String>, name: &str) -> Option<String> {
    let query = query.as_deref()?;
    crate::http::bootstrap::form_pairs(query)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Runs `f` (which may wait for shards) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "the request failed"))
}

async fn status(State(state): State<Arc<AdminState>>) -> Response {
    let m = &state.metrics;
    let now = Instant::now();
    let (dht_id, dht_nodes, dht_values) = {
        let dht = state.dht.lock();
        (dht.id().to_string(), dht.table().len(), dht.storage().len())
    };
    let shards: Vec<Value> = m
        .shards
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            json!({
                "shard": i,
                "healthy": s.healthy(m.epoch, now),
                "last_publish_ms_ago": s.since_publish(m.epoch, now).map(|d| d.as_millis() as u64),
                "peers": load(&s.peers),
                "handshakes": load(&s.handshakes),
                "datagrams_received": load(&s.datagrams_received),
                "datagrams_sent": load(&s.datagrams_sent),
                "bytes_received": load(&s.bytes_received),
                "bytes_sent": load(&s.bytes_sent),
                "drops": s.total_drops(),
            })
        })
        .collect();
    let total = |f: fn(&ShardMetrics) -> &std::sync::atomic::AtomicU64| m.total(f);
    let http = &m.http;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let info = &state.info;
    ok(json!({
        "id": info.id40,
        "id8": &info.id40[..16.min(info.id40.len())],
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": now.saturating_duration_since(m.epoch).as_secs_f64(),
        "start_time": m.start_unix,
        "listeners": {
            "udp": info.udp.to_string(),
            "public_addr": info.public_addr.map(|a| a.to_string()),
            "http": info.http.map(|a| a.to_string()),
            "admin": state.admin.to_string(),
        },
        "io_backend": m.backend.to_string(),
        "shard_count": m.shards.len(),
        "shards": shards,
        "peers": m.peer_count(),
        "max_peers": m.max_peers,
        "traffic": {
            "datagrams_received": total(|s| &s.datagrams_received),
            "datagrams_sent": total(|s| &s.datagrams_sent),
            "bytes_received": total(|s| &s.bytes_received),
            "bytes_sent": total(|s| &s.bytes_sent),
            "handshakes": total(|s| &s.handshakes),
            "data_delivered": total(|s| &s.data_delivered),
        },
        "relay": {
            "enabled": info.relay,
            "forwards": total(|s| &s.relay_forwards),
        },
        "flood": info.flood,
        "store_forward": info.store_forward,
        "dht": {"id": dht_id, "nodes": dht_nodes, "values": dht_values},
        "stun_responses": total(|s| &s.stun_responses),
        "bootstrap": {"enabled": info.http.is_some(), "peers": http.bootstrap_peers()},
        "piping": {
            "enabled": info.http.is_some(),
            "transfers": load(&http.piping_transfers),
            "bytes": load(&http.piping_bytes),
        },
    }))
}

fn render_peer(shard: ShardId, p: &PeerInfo, now: Instant) -> Value {
    let id = hex(&p.id);
    json!({
        "id": id,
        "id8": &id[..16],
        "address": p.addr.to_string(),
        "rtt_ms": p.rtt_ms,
        "in_mesh": p.in_mesh,
        "connected_secs": now.saturating_duration_since(p.connected_at).as_secs_f64(),
        "last_seen_secs_ago": now.saturating_duration_since(p.last_seen).as_secs_f64(),
        "bytes_in": p.bytes_in,
        "bytes_out": p.bytes_out,
        "shard": shard,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// All peers, ordered by id (a stable order for paging).
async fn all_peers(state: &Arc<AdminState>) -> Result<Vec<(ShardId, PeerInfo)>, Response> {
    let node = Arc::clone(&state.node);
    let mut peers = blocking(move || node.peers(SHARD_ANSWER))
        .await?
        .map_err(|e| unavailable(&e))?;
    peers.sort_by_key(|(_, p)| p.id);
    Ok(peers)
}

fn parse_number(name: &str, value: Option<&str>, default: usize) -> Result<usize, Response> {
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("{name} must be a non-negative integer"),
            )
        }),
    }
}

async fn peers(State(state): State<Arc<AdminState>>, RawQuery(query): RawQuery) -> Response {
    let offset = match parse_number("offset", query_param(&query, "offset").as_deref(), 0) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let limit = match parse_number(
        "limit",
        query_param(&query, "limit").as_deref(),
        DEFAULT_LIMIT,
    ) {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Ok(_) => {
            let message = format!("limit must be between 1 and {MAX_LIMIT}");
            return error(StatusCode::BAD_REQUEST, &message);
        }
        Err(e) => return e,
    };
    let list = match all_peers(&state).await {
        Ok(list) => list,
        Err(e) => return e,
    };
    let now = Instant::now();
    let page: Vec<Value> = list
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(shard, p)| render_peer(*shard, p, now))
        .collect();
    ok(json!({
        "total": list.len(),
        "offset": offset,
        "limit": limit,
        "peers": page,
    }))
}

/// A peer id in a path: 16 to 40 hex digits (an id8 or more of the full id).
fn parse_peer_id(id: &str) -> Result<String, Response> {
    let valid = (16..=40).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            "a peer id is 16 to 40 hex digits",
        ))
    }
}

async fn peer(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let id = match parse_peer_id(&id) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let list = match all_peers(&state).await {
        Ok(list) => list,
        Err(e) => return e,
    };
    let now = Instant::now();
    match list.iter().find(|(_, p)| hex(&p.id).starts_with(&id)) {
        Some((shard, p)) => ok(render_peer(*shard, p, now)),
        None => error(StatusCode::NOT_FOUND, "no such peer"),
    }
}

async fn disconnect(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Response {
    let id = match parse_peer_id(&id) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let Ok(id8) = crate::control::peer_id(&id) else {
        return error(StatusCode::BAD_REQUEST, "a peer id is 16 to 40 hex digits");
    };
    let Some(shard) = state.node.locate(&id8) else {
        return error(StatusCode::NOT_FOUND, "no such peer");
    };
    let node = Arc::clone(&state.node);
    let sent = blocking(move || node.to_shard(shard, ShardCommand::Disconnect(id8))).await;
    match sent {
        Ok(Ok(())) => ok(json!({"disconnected": &id[..16], "shard": shard})),
        Ok(Err(e)) => unavailable(&e),
        Err(e) => e,
    }
}

async fn dht(State(state): State<Arc<AdminState>>) -> Response {
    let dht = state.dht.lock();
    let s = dht.stats();
    let routing: Vec<Value> = dht
        .table()
        .iter()
        .take(200)
        .map(|e| json!({"id": e.contact.id.to_string(), "address": e.contact.addr.to_string(), "failures": e.failures}))
        .collect();
    ok(json!({
        "id": dht.id().to_string(),
        "nodes": dht.table().len(),
        "values": dht.storage().len(),
        "values_bytes": dht.storage().bytes(),
        "pending_requests": dht.pending_requests(),
        "requests": {
            "ping": s.pings,
            "store": s.stores,
            "find_node": s.find_nodes,
            "find_value": s.find_values,
        },
        "datagrams_received": s.datagrams_received,
        "datagrams_sent": s.datagrams_sent,
        "malformed": s.malformed,
        "rate_limited": s.rate_limited,
        "values_stored": s.values_stored,
        "values_found": s.values_found,
        "requests_sent": s.requests_sent,
        "responses": s.responses,
        "routing": routing,
    }))
}

async fn config(State(state): State<Arc<AdminState>>) -> Response {
    ok(state.config.clone())
}

async fn broadcast(State(state): State<Arc<AdminState>>, body: Bytes) -> Response {
    if body.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "the body is the payload; it is empty",
        );
    }
    let node = Arc::clone(&state.node);
    let payload: Arc<[u8]> = body.to_vec().into();
    match blocking(move || node.broadcast_counted(payload, SHARD_ANSWER)).await {
        Ok(Ok(peers)) => ok(json!({"peers": peers})),
        Ok(Err(e)) => unavailable(&e),
        Err(e) => e,
    }
}

fn check_key(key: &str) -> Result<(), Response> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        let message = format!("a key is 1 to {MAX_KEY_BYTES} bytes");
        return Err(error(StatusCode::BAD_REQUEST, &message));
    }
    Ok(())
}

async fn store(
    State(state): State<Arc<AdminState>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(e) = check_key(&key) {
        return e;
    }
    let max = state.info.store_max_value_bytes;
    if body.len() > max {
        let message = format!("a value is at most {max} bytes (store_max_value_bytes)");
        return error(StatusCode::PAYLOAD_TOO_LARGE, &message);
    }
    let node = Arc::clone(&state.node);
    let value = body.to_vec();
    let bytes = value.len();
    let stored_key = key.clone();
    let sent = blocking(move || {
        node.to_all(|| ShardCommand::Store {
            key: stored_key.clone(),
            value: value.clone(),
        })
    })
    .await;
    match sent {
        Ok(Ok(())) => ok(json!({"key": key, "bytes": bytes})),
        Ok(Err(e)) => unavailable(&e),
        Err(e) => e,
    }
}

async fn fetch(
    State(state): State<Arc<AdminState>>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(e) = check_key(&key) {
        return e;
    }
    let timeout = match query_param(&query, "timeout_ms").map(|v| v.parse::<u64>()) {
        None => DEFAULT_FETCH_TIMEOUT,
        Some(Ok(ms)) if (1..=MAX_FETCH_TIMEOUT.as_millis() as u64).contains(&ms) => {
            Duration::from_millis(ms)
        }
        Some(_) => {
            let message = format!(
                "timeout_ms must be between 1 and {}",
                MAX_FETCH_TIMEOUT.as_millis()
            );
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let node = Arc::clone(&state.node);
    match blocking(move || node.fetch(key, timeout)).await {
        Ok(Ok(Some(value))) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()
        }
        Ok(Ok(None) | Err(RouteError::NoAnswer)) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "no peer provided the value in time",
        ),
        Ok(Err(e)) => unavailable(&e),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_hash() {
        assert!(constant_time_eq(&hash("a"), &hash("a")));
        assert!(!constant_time_eq(&hash("a"), &hash("b")));
    }

    #[test]
    fn peer_ids_are_checked() {
        assert!(parse_peer_id(&"ab".repeat(8)).is_ok());
        assert!(parse_peer_id(&"AB".repeat(20)).is_ok());
        assert!(parse_peer_id("abc").is_err());
        assert!(parse_peer_id(&"zz".repeat(8)).is_err());
        assert!(parse_peer_id(&"ab".repeat(21)).is_err());
    }

    #[test]
    fn openapi_is_json_with_paths() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["paths"].as_object().unwrap().len() >= 10);
    }
}
