//! SIGHUP: the configuration is read again as at start (the same file, environment and
//! flags) and compared with the running one. The keys that can change live are applied at
//! once: `log_filter` (unless `RUST_LOG` is set, which wins) and the public listener's
//! per-IP request rate (`http_rate_per_ip`, `http_burst_per_ip`). Every other key that
//! changed is logged as needing a restart and keeps its running value. A configuration that
//! no longer validates changes nothing; the node goes on as it was.
//!
//! Secrets are named when they change, never shown.

use std::error::Error;

use setowire_core::ratelimit::Rate;
use signal_hook::iterator::Signals;

use super::RuntimeError;
use crate::http::HttpRateControl;
use crate::telemetry::logging::FilterHandle;

/// A change the running node can take without a restart.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveChange {
    LogFilter(String),
    HttpRatePerIp(Rate),
}

/// What the node does about a key whose value changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Apply(LiveChange),
    /// Read at start only.
    NeedsRestart,
    /// The key is live but something else decides its value (`RUST_LOG` over `log_filter`).
    Overridden(&'static str),
}

/// A key whose value in the configuration read again differs from the running one.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyChange {
    pub key: &'static str,
    /// The new value as written in TOML; `None` for a secret.
    pub value: Option<String>,
    pub action: Action,
}

/// Reads the configuration again and tells which keys differ from the running
/// configuration; the keys it reports as applied are then the running values.
pub type ReadChanges =
    Box<dyn FnMut() -> Result<Vec<KeyChange>, Box<dyn Error + Send + Sync>> + Send>;

/// What SIGHUP needs: how to read the changes, and the log filter to change.
pub struct Reload {
    pub read: ReadChanges,
    pub log: FilterHandle,
}

/// Registers for SIGHUP now, so that from here on it no longer ends the process (its default
/// action); [`spawn`] later starts acting on it.
pub fn register() -> Result<Signals, RuntimeError> {
    Signals::new([signal_hook::consts::SIGHUP]).map_err(RuntimeError::Signals)
}

/// Acts on every SIGHUP in a thread of its own (a signal handler must not log or allocate).
/// Without a `reload` the signal is logged and ignored.
pub fn spawn(
    mut signals: Signals,
    mut reload: Option<Reload>,
    http: Option<HttpRateControl>,
) -> Result<(), RuntimeError> {
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                match &mut reload {
                    Some(reload) => reload_once(reload, http.as_ref()),
                    None => tracing::warn!(
                        "SIGHUP ignored: this node has no configuration to read again"
                    ),
                }
            }
        })
        .map_err(|source| RuntimeError::Spawn {
            thread: "sighup".into(),
            source,
        })?;
    Ok(())
}

fn reload_once(reload: &mut Reload, http: Option<&HttpRateControl>) {
    let changes = match (reload.read)() {
        Ok(changes) => changes,
        Err(e) => {
            tracing::error!("SIGHUP: configuration not reloaded, nothing changed: {e}");
            return;
        }
    };
    // The log filter first, so that what follows is logged under the new one.
    for change in &changes {
        if let Action::Apply(LiveChange::LogFilter(filter)) = &change.action {
            if let Err(e) = reload.log.set(filter) {
                tracing::error!(key = change.key, "SIGHUP: log filter not changed: {e}");
            }
        }
    }
    if changes.is_empty() {
        tracing::info!("SIGHUP: configuration read again; nothing changed");
    }
    for change in &changes {
        let key = change.key;
        let value = change.value.as_deref().unwrap_or("(secret, not shown)");
        match &change.action {
            Action::Apply(live) => {
                if let LiveChange::HttpRatePerIp(rate) = live {
                    if let Some(http) = http {
                        http.set(*rate);
                    }
                }
                tracing::info!(key, value, "SIGHUP: applied");
            }
            Action::NeedsRestart => tracing::warn!(
                key,
                value,
                "SIGHUP: changed, but needs a restart; the node keeps the running value"
            ),
            Action::Overridden(why) => {
                tracing::warn!(key, value, "SIGHUP: changed, but not applied: {why}")
            }
        }
    }
}
