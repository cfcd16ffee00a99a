//! What SIGHUP reads: the configuration built again from the same command line and the
//! environment (so the same file), compared key by key with the running one. See
//! [`crate::runtime::reload`] for what the node does with the changes.

use std::ffi::OsString;

use super::cli::{self, CliAction};
use super::{NodeConfig, SECRET_KEYS};
use crate::runtime::reload::{Action, KeyChange, LiveChange, ReadChanges};

/// Reads the configuration again from `args` (the command line the node started with) on
/// every call and reports what differs from `running`, which then takes the live values.
/// `rust_log` is `RUST_LOG` as at start: when set, it decides the log filter.
pub fn reader(
    args: Vec<OsString>,
    mut running: NodeConfig,
    rust_log: Option<String>,
) -> ReadChanges {
    let rust_log = rust_log.filter(|s| !s.trim().is_empty()).is_some();
    Box::new(move || {
        let new = match cli::parse_cli(args.iter().cloned(), cli::process_env())? {
            CliAction::Run { config, .. } => config,
            // The node started from these arguments, so they asked to run it.
            CliAction::PrintConfig(_) => return Ok(Vec::new()),
        };
        let changes = changes(&running, &new, rust_log);
        for change in &changes {
            match &change.action {
                Action::Apply(LiveChange::LogFilter(filter)) => running.log_filter = filter.clone(),
                Action::Apply(LiveChange::HttpRatePerIp(_)) => {
                    running.http_rate_per_ip = new.http_rate_per_ip;
                    running.http_burst_per_ip = new.http_burst_per_ip;
                }
                Action::NeedsRestart | Action::Overridden(_) => {}
            }
        }
        Ok(changes)
    })
}

/// The keys whose values differ between `running` and `new`, in table order, and what the
/// node can do about each.
pub fn changes(running: &NodeConfig, new: &NodeConfig, rust_log: bool) -> Vec<KeyChange> {
    let before = running.to_values();
    new.to_values()
        .into_iter()
        .zip(before)
        .filter(|((_, after), (_, before))| after != before)
        .map(|((key, after), _)| {
            let action = match key {
                "log_filter" if rust_log => Action::Overridden("RUST_LOG is set and wins"),
                "log_filter" => Action::Apply(LiveChange::LogFilter(new.log_filter.clone())),
                "http_rate_per_ip" | "http_burst_per_ip" => {
                    Action::Apply(LiveChange::HttpRatePerIp(new.http_rate()))
                }
                _ => Action::NeedsRestart,
            };
            let value = (!SECRET_KEYS.contains(&key)).then(|| after.to_string());
            KeyChange { key, value, action }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_apply_and_the_others_need_a_restart() {
        let running = NodeConfig::defaults();
        let new = NodeConfig::from_toml(
            "log_filter = \"debug\"\nhttp_rate_per_ip = 3\nudp_listen = \"0.0.0.0:1\"\n\
             admin_token = \"s3cret\"\n",
        )
        .unwrap();
        let changes = changes(&running, &new, false);
        let rate = new.http_rate();
        assert_eq!(
            changes,
            [
                KeyChange {
                    key: "udp_listen",
                    value: Some("\"0.0.0.0:1\"".into()),
                    action: Action::NeedsRestart
                },
                KeyChange {
                    key: "http_rate_per_ip",
                    value: Some("3".into()),
                    action: Action::Apply(LiveChange::HttpRatePerIp(rate))
                },
                KeyChange {
                    key: "admin_token",
                    value: None,
                    action: Action::NeedsRestart
                },
                KeyChange {
                    key: "log_filter",
                    value: Some("\"debug\"".into()),
                    action: Action::Apply(LiveChange::LogFilter("debug".into()))
                },
            ]
        );
        let with_rust_log = super::changes(&running, &new, true);
        assert_eq!(
            with_rust_log.last().map(|c| &c.action),
            Some(&Action::Overridden("RUST_LOG is set and wins"))
        );
        assert!(super::changes(&new, &new, false).is_empty());
    }
}
