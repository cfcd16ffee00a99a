//! Why a configuration was refused, and where the refused value came from.

use std::fmt;
use std::path::PathBuf;

use super::parse::{RawValue, ValueError};
use super::SECRET_KEYS;

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The embedded `config/node.toml`.
    Defaults,
    /// A config file.
    File(PathBuf),
    /// TOML text given to [`super::NodeConfig::from_toml`] or [`super::ConfigBuilder::toml`].
    Text,
    /// An environment variable (its name).
    Env(String),
    /// A command-line flag (as written, with its dashes).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Defaults => f.write_str("the embedded defaults"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Text => f.write_str("TOML text"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the configuration (or the command line) was refused.
///
/// `Display` names the key, the value and the reason, without an `error:` prefix;
/// [`ConfigError::print`] writes it the way the binary reports it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config key \"{key}\": invalid value {value}: {reason} (from {origin})")]
    InvalidValue {
        key: String,
        /// The value as given, quoted.
        value: String,
        reason: ValueError,
        origin: Origin,
    },
    #[error("config key \"{key}\": unknown key{hint} (in {origin})")]
    UnknownKey {
        key: String,
        /// `, did you mean "..."?` or an explanation; may be empty.
        hint: String,
        origin: Origin,
    },
    #[error("environment variable {var}: matches no config key{hint}")]
    UnknownEnvVar {
        var: String,
        /// `, did you mean ...?`; may be empty.
        hint: String,
    },
    #[error("config keys \"{key}\" and \"{other}\": {reason}")]
    Conflict {
        key: &'static str,
        other: &'static str,
        reason: String,
    },
    #[error("config key \"{key}\": missing from the embedded defaults")]
    MissingDefault { key: &'static str },
    #[error("config file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// A command-line usage error, or `--help` / `--version` (exit code 0). Its `Display` is
    /// clap's rendering, which has its own `error:` prefix.
    #[error("{0}")]
    Cli(#[from] clap::Error),
}

impl ConfigError {
    pub(super) fn invalid_value(
        key: &str,
        raw: &RawValue,
        reason: ValueError,
        origin: &Origin,
    ) -> ConfigError {
        // A secret is not shown even when it is wrong: the error goes to logs and terminals.
        let value = if SECRET_KEYS.contains(&key) {
            "<redacted>".to_owned()
        } else {
            raw.to_string()
        };
        ConfigError::InvalidValue {
            key: key.to_owned(),
            value,
            reason,
            origin: origin.clone(),
        }
    }

    /// The process exit code: 2 for configuration and usage errors, 0 for `--help` and
    /// `--version`.
    pub fn exit_code(&self) -> u8 {
        match self {
            ConfigError::Cli(e) => u8::try_from(e.exit_code()).unwrap_or(2),
            _ => 2,
        }
    }

    /// The config key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::InvalidValue { key, .. } | ConfigError::UnknownKey { key, .. } => {
                Some(key)
            }
            ConfigError::Conflict { key, .. } | ConfigError::MissingDefault { key } => Some(key),
            _ => None,
        }
    }

    /// Writes the error as the binary reports it: help and version on stdout, everything else
    /// on stderr prefixed with `error: `.
    pub fn print(&self) {
        match self {
            ConfigError::Cli(e) => {
                let _ = e.print();
            }
            other => eprintln!("error: {other}"),
        }
    }
}
