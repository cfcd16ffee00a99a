//! The node's logs: `tracing` to stderr, filtered by `log_filter` (or `RUST_LOG`), pretty or
//! JSON as `log_format` says.

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

/// Installs the global subscriber; call once, before anything logs. `filter` is an
/// `EnvFilter` directive; when it does not parse, `fallback` is used.
pub fn init(format: LogFormat, filter: &str, fallback: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(fallback));
    // Logs go to stderr: stdout belongs to the control interface.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
