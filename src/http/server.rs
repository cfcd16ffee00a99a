//! An HTTP listener bound before anything is served (so port 0 resolves and a failed bind
//! stops the node at start), served by axum on a tokio runtime of its own, and stopped
//! gracefully within a deadline. The public and the admin listeners both run this way.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// Binds `addr` and builds a runtime of `workers` threads named `name` for serving it.
pub fn bind(
    addr: SocketAddr,
    name: &str,
    workers: usize,
) -> anyhow::Result<(Runtime, tokio::net::TcpListener, SocketAddr)> {
    let std_listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the {name} listener {addr}"))?;
    std_listener.set_nonblocking(true)?;
    let local_addr = std_listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(8)
        .thread_name(name)
        .enable_io()
        .enable_time()
        .build()
        .with_context(|| format!("starting the {name} runtime"))?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    Ok((runtime, listener, local_addr))
}

/// Resolves when the server is asked to stop.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server running on its own runtime.
pub struct Served {
    runtime: Option<Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Runs the future `serve` builds on `runtime`; the signal it is given resolves when
    /// [`Served::stop`] is called (pass it to axum's graceful shutdown).
    pub fn spawn<F>(runtime: Runtime, serve: impl FnOnce(StopSignal) -> F) -> Served
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (shutdown, signal) = oneshot::channel::<()>();
        let served = runtime.spawn(serve(Box::pin(async move {
            let _ = signal.await;
        })));
        Served {
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            served: Some(served),
        }
    }

    /// Stops accepting, lets requests in flight finish until `deadline`, then drops them.
    pub fn stop(mut self, deadline: Instant) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let (Some(runtime), Some(served)) = (self.runtime.as_ref(), self.served.take()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = runtime.block_on(async { tokio::time::timeout(left, served).await });
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
