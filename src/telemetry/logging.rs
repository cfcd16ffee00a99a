//! The node's logs: `tracing` to stderr, filtered by `log_filter` (or `RUST_LOG`), pretty or
//! JSON as `log_format` says. Colour only when stderr is a terminal: a file, a pipe or
//! `docker logs` would keep the escape codes. JSON lines carry the message and the event's
//! fields at the top level, where log collectors look for `message`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl LogFormat {
    /// The config value: `pretty` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }
    }
}

/// Why a new log filter was not applied.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("invalid log filter {filter:?}: {reason}")]
    Invalid { filter: String, reason: String },
    #[error("the log subscriber is gone")]
    Gone,
}

/// Changes the installed subscriber's filter while the node runs.
pub struct FilterHandle(Box<dyn Fn(EnvFilter) -> Result<(), FilterError> + Send + Sync>);

impl FilterHandle {
    /// Replaces the filter with `filter` (an `EnvFilter` directive).
    pub fn set(&self, filter: &str) -> Result<(), FilterError> {
        let parsed = EnvFilter::try_new(filter).map_err(|e| FilterError::Invalid {
            filter: filter.to_owned(),
            reason: e.to_string(),
        })?;
        (self.0)(parsed)
    }
}

/// Installs the global subscriber; call once, before anything logs. `filter` is an
/// `EnvFilter` directive; when it does not parse, `fallback` is used. The handle changes
/// the filter later (on SIGHUP).
pub fn init(format: LogFormat, filter: &str, fallback: &str) -> FilterHandle {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(fallback));
    // Logs go to stderr: stdout belongs to the control interface.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Pretty => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            FilterHandle(Box::new(move |f| {
                handle.reload(f).map_err(|_| FilterError::Gone)
            }))
        }
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            FilterHandle(Box::new(move |f| {
                handle.reload(f).map_err(|_| FilterError::Gone)
            }))
        }
    }
}
