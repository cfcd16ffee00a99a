//! A rendezvous compatible with piping-server (nwtgck/piping-server) for one receiver per
//! transfer (`n = 1`): `POST`/`PUT` sends, `GET` receives, whichever comes first waits for the
//! other, and the sender's body streams to the receiver as it arrives — the node holds at most
//! what hyper has in flight, never a whole body.
//!
//! A sender that comes first is answered 200 at once with a progress log (`[INFO] Waiting for
//! 1 receiver(s)...` and so on, the lines piping-server writes); a receiver that comes first
//! gets nothing until a sender arrives. The receiver's response carries the sender's
//! Content-Type (text/html becomes text/plain), Content-Length, Content-Disposition and every
//! X-Piping header. A second sender or receiver on a path that already has one waiting, or
//! that is transferring, is refused with 400.
//!
//! Paths under the rendezvous prefix (`/p2p-` by default, where Setowire peers announce
//! themselves) behave differently: many peers post to one path at once, so waiting senders and
//! waiting receivers each queue in a bounded FIFO and are paired oldest first, and a transfer
//! in progress does not block the next pair. They are the only paths served unless the
//! operator opens generic piping (`piping_open`): every other path answers 404, so the node is
//! no open relay for files.
//!
//! Unlike piping-server, everything is capped: paths in use, requests waiting per path, body
//! size (small on rendezvous paths: Setowire peers post their address there), idle time and
//! bandwidth per IP and for the node ([`super::bandwidth`]), each refused, ended or slowed
//! with a clear status code or progress line.
//! Not supported: `n > 1`, multipart form uploads (piping-server sends the first part), and
//! the buffered progress log piping-server gives HTTP/1.0 senders.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};

use super::bandwidth::{Bandwidth, BandwidthConfig};
use super::body_limit::{closing, declared_length, expects_continue, refuse_body};
use super::bootstrap::form_pairs;
use super::metrics::HttpMetrics;
use super::{text, AppState, ConnAddrs};

/// Longest path served, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Progress lines queued for one sender (a transfer writes at most seven).
const PROGRESS_QUEUE: usize = 16;
/// How often a waiting request checks that its client is still connected. hyper notices a
/// receiver that leaves, but not a sender: it reads the sender's connection only when the
/// body is wanted, which is once a receiver comes.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Paths piping-server keeps for itself: pages on GET/HEAD, refused as send targets.
pub const RESERVED_PATHS: [&str; 6] = [
    "/",
    "/noscript",
    "/version",
    "/help",
    "/favicon.ico",
    "/robots.txt",
];

const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, OPTIONS";

#[derive(Debug, Clone)]
pub struct PipingConfig {
    /// Serve every path; false: only the rendezvous prefix.
    pub open: bool,
    /// Paths starting with this queue their waiting senders and receivers, and are served
    /// while piping is closed; empty: none do.
    pub rendezvous_prefix: String,
    /// Largest body sent to a rendezvous path, in bytes.
    pub rendezvous_max_body: u64,
    /// Paths with a waiting request or a transfer, at most.
    pub max_paths: usize,
    /// Waiting senders, and waiting receivers, per rendezvous path.
    pub max_waiting_per_path: usize,
    /// Largest body relayed on other paths, in bytes.
    pub max_body: u64,
    /// Bytes per second per IP and for the node.
    pub bandwidth: BandwidthConfig,
    /// How long a request waits for its partner, and how long a transfer may pass no data.
    pub idle_timeout: Duration,
}

/// The waiting senders and receivers of every path.
pub(crate) struct Rendezvous {
    config: PipingConfig,
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    bandwidth: Bandwidth,
    metrics: Arc<HttpMetrics>,
}

#[derive(Default)]
struct Inner {
    paths: HashMap<String, Slot>,
    closed: bool,
}

#[derive(Default)]
struct Slot {
    senders: VecDeque<WaitingSender>,
    receivers: VecDeque<WaitingReceiver>,
    transfers: usize,
}

impl Slot {
    fn is_unused(&self) -> bool {
        self.senders.is_empty() && self.receivers.is_empty() && self.transfers == 0
    }
}

struct WaitingSender {
    id: u64,
    ip: IpAddr,
    head: SenderHead,
    body: SenderBody,
    progress: Progress,
}

/// A sender's request body, with the frame already read from it, if any.
struct SenderBody {
    first: Option<Frame<Bytes>>,
    rest: Body,
}

impl SenderBody {
    /// Reads nothing yet, but asks for the body: hyper answers `Expect: 100-continue` when the
    /// body is first wanted, and only before the response starts. The sender's response
    /// starts at once, so without this curl would wait a second before sending anything.
    async fn invite(mut rest: Body) -> Result<SenderBody, axum::Error> {
        let first =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut rest).poll_frame(cx))).await;
        let first = match first {
            Poll::Ready(Some(Ok(frame))) => Some(frame),
            Poll::Ready(Some(Err(e))) => return Err(e),
            Poll::Ready(None) | Poll::Pending => None,
        };
        // Let the connection's task run once: it writes the 100 Continue before our answer.
        tokio::task::yield_now().await;
        Ok(SenderBody { first, rest })
    }
}

struct WaitingReceiver {
    id: u64,
    ip: IpAddr,
    respond: oneshot::Sender<Response>,
}

/// The sender's headers the receiver gets.
struct SenderHead {
    content_type: Option<HeaderValue>,
    content_length: Option<HeaderValue>,
    content_disposition: Option<HeaderValue>,
    x_piping: Vec<HeaderValue>,
}

impl SenderHead {
    fn from_headers(headers: &HeaderMap) -> Self {
        SenderHead {
            content_type: headers.get(header::CONTENT_TYPE).map(html_as_plain),
            content_length: headers.get(header::CONTENT_LENGTH).cloned(),
            content_disposition: headers.get(header::CONTENT_DISPOSITION).cloned(),
            x_piping: headers.get_all("x-piping").iter().cloned().collect(),
        }
    }
}

/// `text/html; charset=x` as `text/plain; charset=x`, so a browser does not render what a
/// stranger sent; other types as they are.
fn html_as_plain(value: &HeaderValue) -> HeaderValue {
    let Ok(text) = value.to_str() else {
        return value.clone();
    };
    let trimmed = text.trim_start();
    let (mime, params) = trimmed.split_at(trimmed.find(';').unwrap_or(trimmed.len()));
    if mime.trim_end().eq_ignore_ascii_case("text/html") {
        HeaderValue::from_str(&format!("text/plain{params}")).unwrap_or_else(|_| value.clone())
    } else {
        value.clone()
    }
}

/// The sender's progress log: lines its response body streams.
#[derive(Clone)]
struct Progress(mpsc::Sender<Bytes>);

impl Progress {
    fn say(&self, line: impl Into<Bytes>) {
        // The queue outsizes what one transfer writes; a sender that left reads nothing.
        let _ = self.0.try_send(line.into());
    }
}

enum Role {
    Sender,
    Receiver,
}

impl Rendezvous {
    pub(crate) fn new(config: PipingConfig, metrics: Arc<HttpMetrics>) -> Self {
        Rendezvous {
            bandwidth: Bandwidth::new(config.bandwidth),
            config,
            inner: Mutex::new(Inner::default()),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_fifo(&self, path: &str) -> bool {
        let prefix = &self.config.rendezvous_prefix;
        !prefix.is_empty() && path.starts_with(prefix.as_str())
    }

    /// The largest body relayed on `path`.
    fn max_body(&self, path: &str) -> u64 {
        if self.is_fifo(path) {
            self.config.rendezvous_max_body
        } else {
            self.config.max_body
        }
    }

    /// Refuses new requests and ends every waiting one: senders read a last line, receivers
    /// get 503. Transfers already running go on.
    pub(crate) fn close(&self) {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        {
            let mut inner = self.lock();
            inner.closed = true;
            for slot in inner.paths.values_mut() {
                senders.extend(slot.senders.drain(..));
                receivers.extend(slot.receivers.drain(..));
            }
            inner.paths.retain(|_, slot| !slot.is_unused());
        }
        for sender in senders {
            sender
                .progress
                .say("[ERROR] The server is shutting down.\n");
        }
        for receiver in receivers {
            let _ = receiver.respond.send(shutting_down());
        }
    }

    /// Takes `path`'s slot for a new request, creating it within the path cap.
    fn slot<'a>(&self, inner: &'a mut Inner, path: &str) -> Option<&'a mut Slot> {
        let full = !inner.paths.contains_key(path) && inner.paths.len() >= self.config.max_paths;
        if inner.closed || full {
            return None;
        }
        Some(inner.paths.entry(path.to_owned()).or_default())
    }

    /// Why [`Rendezvous::slot`] had none.
    fn no_slot(inner: &Inner) -> Response {
        if inner.closed {
            shutting_down()
        } else {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "[ERROR] Too many paths are in use; try again later.\n".to_owned(),
            )
        }
    }

    fn forget_if_unused(inner: &mut Inner, path: &str) {
        if inner.paths.get(path).is_some_and(Slot::is_unused) {
            inner.paths.remove(path);
        }
    }

    /// A sender arrives: it is paired with the oldest waiting receiver, or waits.
    fn send(
        self: &Arc<Self>,
        path: String,
        headers: &HeaderMap,
        body: SenderBody,
        conn: ConnAddrs,
    ) -> Response {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ip = conn.source;
        let (tx, messages) = mpsc::channel(PROGRESS_QUEUE);
        let progress = Progress(tx);
        let head = SenderHead::from_headers(headers);
        let fifo = self.is_fifo(&path);
        progress.say("[INFO] Waiting for 1 receiver(s)...\n");
        let paired = {
            let mut inner = self.lock();
            let Some(slot) = self.slot(&mut inner, &path) else {
                return Self::no_slot(&inner);
            };
            slot.receivers.retain(|r| !r.respond.is_closed());
            let refusal = if fifo {
                (slot.senders.len() >= self.config.max_waiting_per_path).then(|| {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("[ERROR] Too many senders are waiting on '{path}'.\n"),
                    )
                })
            } else if slot.transfers > 0 {
                Some(established(&path))
            } else if !slot.senders.is_empty() {
                Some(text(
                    StatusCode::BAD_REQUEST,
                    format!("[ERROR] Another sender has been connected on '{path}'.\n"),
                ))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                Self::forget_if_unused(&mut inner, &path);
                return refusal;
            }
            match slot.receivers.pop_front() {
                Some(receiver) => {
                    slot.transfers += 1;
                    Some((receiver, head, body, progress))
                }
                None => {
                    slot.senders.push_back(WaitingSender {
                        id,
                        ip,
                        head,
                        body,
                        progress,
                    });
                    None
                }
            }
        };
        if let Some((receiver, head, body, progress)) = paired {
            progress.say("[INFO] 1 receiver(s) has/have been connected.\n");
            let ips = [ip, receiver.ip];
            let response = self.transfer(path.clone(), head, body, progress, ips);
            // A receiver that left in the meantime drops the transfer, which tells the sender.
            let _ = receiver.respond.send(response);
        }
        let body = SenderLog {
            messages,
            wait: Some(Box::pin(tokio::time::sleep(self.config.idle_timeout))),
            probe: tokio::time::interval(PROBE_EVERY),
            conn,
            idle_timeout: self.config.idle_timeout,
            rendezvous: Arc::clone(self),
            path,
            id,
        };
        plain_response(StatusCode::OK, Body::new(body))
    }

    /// A receiver arrives: it is paired with the oldest waiting sender, or waits.
    async fn receive(self: &Arc<Self>, path: String, conn: ConnAddrs) -> Response {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ip = conn.source;
        let (respond, mut response) = oneshot::channel();
        let fifo = self.is_fifo(&path);
        let paired = {
            let mut inner = self.lock();
            let Some(slot) = self.slot(&mut inner, &path) else {
                return Self::no_slot(&inner);
            };
            slot.receivers.retain(|r| !r.respond.is_closed());
            let refusal = if fifo {
                (slot.receivers.len() >= self.config.max_waiting_per_path).then(|| {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("[ERROR] Too many receivers are waiting on '{path}'.\n"),
                    )
                })
            } else if slot.transfers > 0 {
                Some(established(&path))
            } else if !slot.receivers.is_empty() {
                Some(text(
                    StatusCode::BAD_REQUEST,
                    "[ERROR] The number of receivers has reached limits.\n".to_owned(),
                ))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                Self::forget_if_unused(&mut inner, &path);
                return refusal;
            }
            match slot.senders.pop_front() {
                Some(sender) => {
                    slot.transfers += 1;
                    Some(sender)
                }
                None => {
                    slot.receivers
                        .push_back(WaitingReceiver { id, ip, respond });
                    None
                }
            }
        };
        if let Some(sender) = paired {
            sender.progress.say("[INFO] A receiver was connected.\n");
            let ips = [sender.ip, ip];
            return self.transfer(path, sender.head, sender.body, sender.progress, ips);
        }
        let _waiting = WaitGuard {
            rendezvous: Arc::clone(self),
            path: path.clone(),
            id,
        };
        let deadline = Instant::now() + self.config.idle_timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "[ERROR] No sender came to '{path}' within {} s.\n",
                        self.config.idle_timeout.as_secs()
                    ),
                );
            }
            let wait = PROBE_EVERY.min(deadline - now);
            match tokio::time::timeout(wait, &mut response).await {
                Ok(Ok(response)) => return response,
                Ok(Err(_)) => return shutting_down(),
                // Nobody reads the answer to a receiver that left.
                Err(_) if conn.peer_has_closed() => return shutting_down(),
                Err(_) => {}
            }
        }
    }

    /// Takes a still-waiting request out of its queue and drops it (which ends a sender's
    /// log); false when it was paired meanwhile.
    fn remove(&self, path: &str, id: u64, role: Role) -> bool {
        let mut inner = self.lock();
        let Some(slot) = inner.paths.get_mut(path) else {
            return false;
        };
        let removed = match role {
            Role::Sender => slot
                .senders
                .iter()
                .position(|s| s.id == id)
                .and_then(|at| slot.senders.remove(at))
                .is_some(),
            Role::Receiver => slot
                .receivers
                .iter()
                .position(|r| r.id == id)
                .and_then(|at| slot.receivers.remove(at))
                .is_some(),
        };
        Self::forget_if_unused(&mut inner, path);
        removed
    }

    fn transfer_ended(&self, path: &str) {
        let mut inner = self.lock();
        if let Some(slot) = inner.paths.get_mut(path) {
            slot.transfers = slot.transfers.saturating_sub(1);
        }
        Self::forget_if_unused(&mut inner, path);
    }

    /// Starts streaming the sender's body to the receiver (`ips`: the sender's and the
    /// receiver's, whose bandwidth it uses); returns the receiver's response.
    fn transfer(
        self: &Arc<Self>,
        path: String,
        head: SenderHead,
        body: SenderBody,
        progress: Progress,
        ips: [IpAddr; 2],
    ) -> Response {
        progress.say("[INFO] Start sending to 1 receiver(s)!\n");
        self.metrics
            .piping_transfers
            .fetch_add(1, Ordering::Relaxed);
        let idle_timeout = self.config.idle_timeout;
        let body = TransferBody {
            first: body.first,
            inner: body.rest,
            progress: Some(progress),
            rendezvous: Arc::clone(self),
            max_body: self.max_body(&path),
            path,
            ips,
            received: 0,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            pause: None,
            outcome: Outcome::Streaming,
        };
        let mut response = Response::new(Body::new(body));
        let headers = response.headers_mut();
        if let Some(v) = head.content_length {
            headers.insert(header::CONTENT_LENGTH, v);
        }
        if let Some(v) = head.content_type {
            headers.insert(header::CONTENT_TYPE, v);
        }
        if let Some(v) = head.content_disposition {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        let exposes = !head.x_piping.is_empty();
        for v in head.x_piping {
            headers.append("x-piping", v);
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        if exposes {
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("X-Piping"),
            );
        }
        headers.insert("x-robots-tag", HeaderValue::from_static("none"));
        response
    }
}

/// Takes a waiting receiver out of its queue when its request ends unpaired (timeout, or the
/// client went away and hyper dropped the handler).
struct WaitGuard {
    rendezvous: Arc<Rendezvous>,
    path: String,
    id: u64,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.rendezvous.remove(&self.path, self.id, Role::Receiver);
    }
}

/// A sender's response body: its progress log. While the sender waits, it also enforces the
/// wait limit; when it is dropped unpaired (the sender went away), the sender leaves the queue.
struct SenderLog {
    messages: mpsc::Receiver<Bytes>,
    wait: Option<Pin<Box<Sleep>>>,
    probe: tokio::time::Interval,
    conn: ConnAddrs,
    idle_timeout: Duration,
    rendezvous: Arc<Rendezvous>,
    path: String,
    id: u64,
}

impl http_body::Body for SenderLog {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(wait) = this.wait.as_mut() {
            if wait.as_mut().poll(cx).is_ready() {
                this.wait = None;
                // Still queued: nobody came. Dropping the sender closes `messages`.
                if this.rendezvous.remove(&this.path, this.id, Role::Sender) {
                    let line = format!(
                        "[ERROR] No receiver came within {} s.\n",
                        this.idle_timeout.as_secs()
                    );
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))));
                }
            }
        }
        if this.wait.is_some() && this.probe.poll_tick(cx).is_ready() && this.conn.peer_has_closed()
        {
            this.wait = None;
            // Gone before a receiver came: leave the queue and end the (unread) log.
            if this.rendezvous.remove(&this.path, this.id, Role::Sender) {
                return Poll::Ready(None);
            }
        }
        this.messages
            .poll_recv(cx)
            .map(|line| line.map(|line| Ok(Frame::data(line))))
    }
}

impl Drop for SenderLog {
    fn drop(&mut self) {
        self.rendezvous.remove(&self.path, self.id, Role::Sender);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Streaming,
    Complete,
    Failed,
}

/// The receiver's response body: the sender's request body as it arrives, counted, held to
/// the bandwidth caps and watched for stalls. Reports the end of the transfer to the
/// sender's log.
struct TransferBody {
    first: Option<Frame<Bytes>>,
    inner: Body,
    progress: Option<Progress>,
    rendezvous: Arc<Rendezvous>,
    path: String,
    /// The sender's and the receiver's IPs.
    ips: [IpAddr; 2],
    received: u64,
    max_body: u64,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    /// Set while the transfer waits for its bandwidth caps.
    pause: Option<Pin<Box<Sleep>>>,
    outcome: Outcome,
}

impl TransferBody {
    fn say(&self, line: impl Into<Bytes>) {
        if let Some(progress) = &self.progress {
            progress.say(line);
        }
    }

    fn fail(&mut self, line: String) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.outcome = Outcome::Failed;
        self.say(line.clone());
        Poll::Ready(Some(Err(line.trim_end().into())))
    }

    /// Counts `len` bytes passed on and charges them to the bandwidth caps; when the caps
    /// are in debt, the next frame waits until they are not.
    fn pass_on(&mut self, len: u64) {
        let rendezvous = &self.rendezvous;
        let metrics = &rendezvous.metrics;
        metrics.piping_bytes.fetch_add(len, Ordering::Relaxed);
        let wait = rendezvous.bandwidth.charge(&self.ips, len, Instant::now());
        if !wait.is_zero() {
            metrics
                .piping_throttled_bytes
                .fetch_add(len, Ordering::Relaxed);
            self.pause = Some(Box::pin(tokio::time::sleep(wait)));
        }
    }
}

impl http_body::Body for TransferBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.outcome != Outcome::Streaming {
            return Poll::Ready(None);
        }
        if let Some(pause) = this.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
            // Waiting for the caps is no stall of the sender.
            let deadline = Instant::now() + this.idle_timeout;
            this.idle.as_mut().reset(deadline);
        }
        let next = match this.first.take() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        match next {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    this.received += len;
                    if this.received > this.max_body {
                        let line = format!(
                            "[ERROR] The body exceeds {} bytes; the transfer was stopped.\n",
                            this.max_body
                        );
                        return this.fail(line);
                    }
                    this.pass_on(len);
                }
                let deadline = Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                // With a Content-Length, hyper stops polling after the last byte.
                if this.inner.is_end_stream() {
                    this.outcome = Outcome::Complete;
                    this.say("[INFO] Sent successfully!\n");
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.outcome = Outcome::Failed;
                this.say("[ERROR] Failed to send.\n");
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.outcome = Outcome::Complete;
                this.say("[INFO] Sent successfully!\n");
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    let line = format!(
                        "[ERROR] No data for {} s; the transfer was stopped.\n",
                        this.idle_timeout.as_secs()
                    );
                    return this.fail(line);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.outcome != Outcome::Streaming
    }
}

impl Drop for TransferBody {
    fn drop(&mut self) {
        match self.outcome {
            Outcome::Complete => {
                self.say("[INFO] All receiver(s) was/were received successfully.\n");
            }
            Outcome::Streaming => {
                self.say("[INFO] A receiver aborted.\n");
                self.say("[INFO] All receiver(s) was/were aborted halfway.\n");
            }
            Outcome::Failed => {}
        }
        // Closing the log ends the sender's response.
        self.progress = None;
        self.rendezvous.transfer_ended(&self.path);
    }
}

/// Every path but `/announce` and `/peers`.
pub(crate) async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnAddrs>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    if path.len() > MAX_PATH_BYTES {
        return text(
            StatusCode::URI_TOO_LONG,
            format!("[ERROR] Paths are at most {MAX_PATH_BYTES} bytes long.\n"),
        );
    }
    let reserved = RESERVED_PATHS.contains(&path.as_str());
    let rendezvous = &state.piping;
    let config = &rendezvous.config;
    if !config.open && !reserved && !rendezvous.is_fifo(&path) {
        rendezvous
            .metrics
            .piping_closed
            .fetch_add(1, Ordering::Relaxed);
        refuse_body(body, &parts.headers, state.bodies).await;
        return closing(text(
            StatusCode::NOT_FOUND,
            format!(
                "[ERROR] This node pipes only rendezvous paths ('{}...').\n",
                config.rendezvous_prefix
            ),
        ));
    }
    match parts.method {
        Method::GET | Method::HEAD if reserved => reserved_page(&path, &parts, config),
        Method::POST | Method::PUT => {
            if reserved {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "[ERROR] Cannot send to the reserved path '{path}'. (e.g. '/mypath123')\n"
                    ),
                );
            }
            if parts.headers.contains_key(header::CONTENT_RANGE) {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "[ERROR] Content-Range is not supported for now in {}\n",
                        parts.method
                    ),
                );
            }
            if let Err(refused) = check_n(parts.uri.query()) {
                return text(StatusCode::BAD_REQUEST, refused.to_string());
            }
            let max_body = rendezvous.max_body(&path);
            if declared_length(&parts.headers).is_some_and(|n| n > max_body) {
                refuse_body(body, &parts.headers, state.bodies).await;
                return closing(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("[ERROR] The body is larger than {max_body} bytes, the most this server relays on '{path}'.\n"),
                ));
            }
            let body = if expects_continue(&parts.headers) {
                match SenderBody::invite(body).await {
                    Ok(body) => body,
                    Err(_) => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            "[ERROR] Failed to read the body.\n".to_owned(),
                        )
                    }
                }
            } else {
                SenderBody {
                    first: None,
                    rest: body,
                }
            };
            rendezvous.send(path, &parts.headers, body, conn)
        }
        Method::GET => {
            if parts
                .headers
                .get("service-worker")
                .is_some_and(|v| v == "script")
            {
                return text(
                    StatusCode::BAD_REQUEST,
                    "[ERROR] Service Worker registration is rejected.\n".to_owned(),
                );
            }
            if let Err(refused) = check_n(parts.uri.query()) {
                return text(StatusCode::BAD_REQUEST, refused.to_string());
            }
            rendezvous.receive(path, conn).await
        }
        Method::OPTIONS => preflight(&parts.headers),
        method => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("[ERROR] Unsupported method: {method}.\n"),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            response
        }
    }
}

/// An `n` query parameter (receivers per transfer) other than 1; its message is the line the
/// request is refused with (400).
#[derive(Debug, thiserror::Error)]
enum BadReceiverCount {
    #[error("[ERROR] Invalid \"n\" query parameter\n")]
    NotANumber,
    #[error("[ERROR] n should > 0, but n = {0}.\n")]
    NotPositive(i64),
    #[error("[ERROR] This server sends to one receiver at a time (n = 1), not n = {0}.\n")]
    MoreThanOne(i64),
}

/// The `n` query parameter: absent or 1.
fn check_n(query: Option<&str>) -> Result<(), BadReceiverCount> {
    let Some((_, value)) = form_pairs(query.unwrap_or("")).find(|(key, _)| key == "n") else {
        return Ok(());
    };
    match value.trim().parse::<i64>() {
        Err(_) => Err(BadReceiverCount::NotANumber),
        Ok(n) if n <= 0 => Err(BadReceiverCount::NotPositive(n)),
        Ok(1) => Ok(()),
        Ok(n) => Err(BadReceiverCount::MoreThanOne(n)),
    }
}

fn established(path: &str) -> Response {
    text(
        StatusCode::BAD_REQUEST,
        format!("[ERROR] Connection on '{path}' has been established already.\n"),
    )
}

fn shutting_down() -> Response {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "[ERROR] The server is shutting down.\n".to_owned(),
    )
}

fn plain_response(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The CORS preflight answer.
fn preflight(request: &HeaderMap) -> Response {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Content-Disposition, X-Piping"),
    );
    if request
        .get("access-control-request-private-network")
        .is_some_and(|v| v == "true")
    {
        headers.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

const INDEX_HTML: &str = "<!DOCTYPE html>
<html><head><meta charset=\"utf-8\"><title>setowire-node</title></head>
<body>
<h1>setowire-node</h1>
<p>A Setowire relay and seed node. Its HTTP side offers:</p>
<ul>
<li><code>POST /announce</code> and <code>GET /peers</code>: Setowire HTTP bootstrap.</li>
<li>A piping-server compatible rendezvous, where Setowire peers meet and, if the operator
allows it, on every other path. Send with <code>POST</code> or <code>PUT</code>, receive with
<code>GET</code> on the same path; the first to arrive waits for the other. See
<a href=\"/help\">/help</a>.</li>
</ul>
</body></html>
";

const NOSCRIPT_HTML: &str = "<!DOCTYPE html>
<html><head><meta charset=\"utf-8\"><title>setowire-node</title></head>
<body><p>Sending from a form is not offered here: send with <code>curl -T FILE</code> to a
path, and open the same path to receive. See <a href=\"/help\">/help</a>.</p></body></html>
";

fn reserved_page(path: &str, parts: &Parts, config: &PipingConfig) -> Response {
    let html = |page: &'static str, csp: bool| {
        let mut response = (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/html"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            page,
        )
            .into_response();
        if csp {
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'"),
            );
        }
        response
    };
    match path {
        "/" => html(INDEX_HTML, false),
        "/noscript" => html(NOSCRIPT_HTML, true),
        "/version" => text(
            StatusCode::OK,
            format!("setowire-node {}\n", env!("CARGO_PKG_VERSION")),
        ),
        "/help" => {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
                .unwrap_or("hostname");
            text(StatusCode::OK, help(&format!("http://{host}"), config))
        }
        "/favicon.ico" => StatusCode::NO_CONTENT.into_response(),
        _ => (StatusCode::NOT_FOUND, [(header::CONTENT_LENGTH, "0")]).into_response(),
    }
}

fn help(base: &str, config: &PipingConfig) -> String {
    let prefix = &config.rendezvous_prefix;
    let (path, scope) = if config.open {
        ("/mypath".to_owned(), "on any path".to_owned())
    } else {
        (
            format!("{prefix}mypath"),
            format!(
                "only on paths starting with '{prefix}', for bodies of at most {} bytes",
                config.rendezvous_max_body
            ),
        )
    };
    format!(
        "Send and receive through this node (piping-server protocol, one receiver), {scope}:

  Send a file:        curl -T myfile {base}{path}
  Send a stream:      seq 10 | curl -T - {base}{path}
  Receive:            curl {base}{path} > myfile

The sender and the receiver may come in either order; the first one waits. The data streams
from sender to receiver and is not stored. Content-Type, Content-Length, Content-Disposition
and X-Piping headers reach the receiver.

Setowire HTTP bootstrap: POST {base}/announce with {{\"id\",\"ip\",\"port\"}}, GET {base}/peers.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_served_as_plain_text() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(html_as_plain(&v("text/html")), v("text/plain"));
        assert_eq!(
            html_as_plain(&v("TEXT/HTML; charset=utf-8")),
            v("text/plain; charset=utf-8")
        );
        assert_eq!(html_as_plain(&v("text/htmlx")), v("text/htmlx"));
        assert_eq!(html_as_plain(&v("application/json")), v("application/json"));
    }

    #[test]
    fn n_must_be_one() {
        assert!(check_n(None).is_ok());
        assert!(check_n(Some("x=2")).is_ok());
        assert!(check_n(Some("n=1")).is_ok());
        for bad in ["n=0", "n=-3", "n=2", "n=abc", "n="] {
            let line = check_n(Some(bad)).expect_err(bad).to_string();
            assert!(line.starts_with("[ERROR] "), "{bad}: {line}");
        }
    }
}
