//! An HTTP listener bound before anything is served (so port 0 resolves and a failed bind
//! stops the node at start), served by axum on a tokio runtime of its own, and stopped
//! gracefully within a deadline. The public and the admin listeners both run this way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::supervisor::{panic_message, Cause, Failure, Supervisor};

/// Why a listener could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding the {name} listener {addr}")]
    Bind {
        name: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("starting the {name} runtime")]
    Runtime {
        name: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Binds `addr` and builds a runtime of `workers` threads named `name` for serving it.
pub fn bind(
    addr: SocketAddr,
    name: &'static str,
    workers: usize,
) -> Result<(Runtime, tokio::net::TcpListener, SocketAddr), ServeError> {
    let bind_error = |source| ServeError::Bind { name, addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    std_listener.set_nonblocking(true).map_err(bind_error)?;
    let local_addr = std_listener.local_addr().map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(8)
        .thread_name(name)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| ServeError::Runtime { name, source })?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener).map_err(bind_error)?
    };
    Ok((runtime, listener, local_addr))
}

/// Resolves when the server is asked to stop.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server running on its own runtime.
pub struct Served {
    name: &'static str,
    runtime: Option<Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    /// The task watching the server's; it ends when the server's does.
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Runs the future `serve` builds on `runtime`; the signal it is given resolves when
    /// [`Served::stop`] is called (pass it to axum's graceful shutdown). A server that
    /// panics, or ends before the node stops, is a failure reported to `supervisor`.
    pub fn spawn<F>(
        runtime: Runtime,
        name: &'static str,
        supervisor: &Supervisor,
        serve: impl FnOnce(StopSignal) -> F,
    ) -> Served
    where
        F: Future<Output = io::Result<()>> + Send + 'static,
    {
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = runtime.spawn(serve(Box::pin(async move {
            // A dropped sender stops the server too.
            let _ = signal.await;
        })));
        let supervisor = supervisor.clone();
        let watcher = runtime.spawn(async move {
            let cause = match server.await {
                Err(e) if e.is_panic() => Cause::Panicked(panic_message(&*e.into_panic())),
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
                Ok(_) if supervisor.is_stopping() => return,
                Ok(result) => Cause::Exited(result.err().map(|e| e.to_string())),
            };
            supervisor.fail(Failure {
                thread: name.to_owned(),
                cause,
            });
        });
        Served {
            name,
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            watcher: Some(watcher),
        }
    }

    /// Stops accepting, lets requests in flight finish until `deadline`, then drops them.
    pub fn stop(mut self, deadline: Instant) {
        if let Some(shutdown) = self.shutdown.take() {
            // Nobody listening: the server has already ended (and was reported).
            let _ = shutdown.send(());
        }
        if let (Some(runtime), Some(watcher)) = (self.runtime.as_ref(), self.watcher.take()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if runtime
                .block_on(async { tokio::time::timeout(left, watcher).await })
                .is_err()
            {
                tracing::debug!(
                    server = self.name,
                    "requests still running at the deadline are dropped"
                );
            }
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
