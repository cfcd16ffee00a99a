//! The node's logs: `tracing` to stderr, filtered by `log_filter` (or `RUST_LOG`), pretty or
//! JSON as `log_format` says.

use crate::config::{LogFormat, NodeConfig};

/// Installs the global subscriber; call once, before anything logs.
pub fn init(config: &NodeConfig) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter =
        tracing_subscriber::EnvFilter::try_new(config.effective_log_filter(rust_log.as_deref()))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_filter));
    // Logs go to stderr: stdout belongs to the control interface.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
