//! [`ConfigBuilder`]: the layering of the embedded defaults, a config file, the environment
//! and flags, remembering where each value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::constraints::check_combination;
use super::error::{ConfigError, Origin};
use super::keys::{build_config, check_key, key_spec, suggestion, KeySpec, KEYS};
use super::parse::RawValue;
use super::service_links::is_service_link;
use super::{NodeConfig, DEFAULT_CONFIG_TOML, ENV_ALLOWLIST, ENV_PREFIX};

/// Builds a [`NodeConfig`] from layers applied in order of increasing precedence:
/// [`ConfigBuilder::new`] starts from the embedded defaults, then call [`ConfigBuilder::file`],
/// [`ConfigBuilder::env`] and [`ConfigBuilder::set`] in that order. Each value is checked as it
/// is added; [`ConfigBuilder::build`] checks the keys against each other.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    values: BTreeMap<&'static str, (RawValue, Origin)>,
}

impl ConfigBuilder {
    /// The embedded defaults.
    ///
    /// # Panics
    ///
    /// If `config/node.toml` does not parse, which a unit test rules out.
    pub fn new() -> Self {
        let mut builder = ConfigBuilder {
            values: BTreeMap::new(),
        };
        if let Err(e) = builder.toml(DEFAULT_CONFIG_TOML, Origin::Defaults) {
            panic!("the embedded config/node.toml is invalid: {e}");
        }
        builder
    }

    /// Reads a TOML config file over the current values.
    pub fn file(&mut self, path: &Path) -> Result<&mut Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: format!("cannot read it: {e}"),
        })?;
        self.toml(&text, Origin::File(path.to_owned()))
    }

    /// Applies TOML text over the current values. Every top-level entry must be a known key.
    pub fn toml(&mut self, text: &str, origin: Origin) -> Result<&mut Self, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let path = match &origin {
                Origin::File(path) => path.clone(),
                Origin::Defaults => PathBuf::from("<embedded defaults>"),
                _ => PathBuf::from("<toml text>"),
            };
            ConfigError::File {
                path,
                reason: format!("not valid TOML: {}", e.to_string().trim_end()),
            }
        })?;
        for (key, value) in table {
            let Some(spec) = key_spec(&key) else {
                let hint = if value.is_table() {
                    ": tables are not supported, all keys are top-level".to_owned()
                } else {
                    suggestion(&key, KEYS.iter().map(|k| k.name))
                        .map(|s| format!(", did you mean \"{s}\"?"))
                        .unwrap_or_default()
                };
                return Err(ConfigError::UnknownKey { key, hint, origin });
            };
            self.insert(spec.name, RawValue::Toml(value), origin.clone())?;
        }
        Ok(self)
    }

    /// Applies the `SETOWIRE_*` variables of `env` (other variables are ignored). A variable
    /// with the prefix that names no key is an error, unless it is in [`ENV_ALLOWLIST`] or is
    /// a Kubernetes service link (see [`super::service_links`]).
    pub fn env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<&mut Self, ConfigError> {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .filter(|(name, _)| !ENV_ALLOWLIST.contains(&name.as_str()))
            .collect();
        // The first error reported does not depend on the order of the environment.
        vars.sort();
        for (var, value) in vars {
            let spec = KEYS.iter().find(|spec| spec.env_var() == var);
            let Some(spec) = spec else {
                if is_service_link(&var, &value) {
                    continue;
                }
                let known = KEYS.iter().map(KeySpec::env_var);
                let hint = suggestion(&var, known)
                    .map(|s| format!(", did you mean {s}?"))
                    .unwrap_or_default();
                return Err(ConfigError::UnknownEnvVar { var, hint });
            };
            self.insert(spec.name, RawValue::Text(value), Origin::Env(var))?;
        }
        Ok(self)
    }

    /// Sets one key from text (lists comma-separated), as a flag or variable would.
    pub fn set(
        &mut self,
        key: &str,
        value: &str,
        origin: Origin,
    ) -> Result<&mut Self, ConfigError> {
        self.set_raw(key, RawValue::Text(value.to_owned()), origin)
    }

    /// Sets one key from a raw value.
    pub fn set_raw(
        &mut self,
        key: &str,
        value: RawValue,
        origin: Origin,
    ) -> Result<&mut Self, ConfigError> {
        let Some(spec) = key_spec(key) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_owned(),
                hint: String::new(),
                origin,
            });
        };
        self.insert(spec.name, value, origin)
    }

    fn insert(
        &mut self,
        key: &'static str,
        value: RawValue,
        origin: Origin,
    ) -> Result<&mut Self, ConfigError> {
        check_key(key, &value)
            .map_err(|reason| ConfigError::invalid_value(key, &value, reason, &origin))?;
        self.values.insert(key, (value, origin));
        Ok(self)
    }

    /// Where the current value of `key` comes from.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.values.get(key).map(|(_, origin)| origin)
    }

    /// The typed configuration.
    pub fn build(&self) -> Result<NodeConfig, ConfigError> {
        let config = build_config(&self.values)?;
        check_combination(&config)?;
        Ok(config)
    }
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err_text(result: Result<impl std::fmt::Debug, ConfigError>) -> String {
        result.expect_err("expected an error").to_string()
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let dir = std::env::temp_dir().join(format!("setowire-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("precedence.toml");
        std::fs::write(&path, "max_peers = 10\ngossip_fanout = 3\nflood = false\n").unwrap();

        let mut builder = ConfigBuilder::new();
        builder.file(&path).unwrap();
        builder
            .env(env(&[
                ("SETOWIRE_MAX_PEERS", "20"),
                ("SETOWIRE_GOSSIP_FANOUT", "4"),
                ("PATH", "/bin"),
                ("SETOWIRE_TEST_NETNS", "off"),
            ]))
            .unwrap();
        builder
            .set("max_peers", "30", Origin::Flag("--max-peers".into()))
            .unwrap();
        let config = builder.build().unwrap();
        assert_eq!(config.max_peers, 30, "flag beats env");
        assert_eq!(config.gossip_fanout, 4, "env beats file");
        assert!(!config.flood, "file beats defaults");
        assert_eq!(config.relay, NodeConfig::defaults().relay);
        assert_eq!(
            builder.origin("max_peers"),
            Some(&Origin::Flag("--max-peers".into()))
        );
        assert_eq!(
            builder.origin("gossip_fanout"),
            Some(&Origin::Env("SETOWIRE_GOSSIP_FANOUT".into()))
        );
        assert_eq!(builder.origin("flood"), Some(&Origin::File(path.clone())));
        assert_eq!(builder.origin("relay"), Some(&Origin::Defaults));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_values_name_key_value_reason_and_origin() {
        let e = ConfigBuilder::new()
            .env(env(&[("SETOWIRE_MAX_PEERS", "abc")]))
            .unwrap_err();
        assert_eq!(e.key(), Some("max_peers"));
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "config key \"max_peers\": invalid value \"abc\": expected a positive integer \
             (from environment variable SETOWIRE_MAX_PEERS)"
        );

        let e = err_text(NodeConfig::from_toml("max_peers = 0"));
        assert!(
            e.contains("\"max_peers\": invalid value 0: expected a positive integer"),
            "{e}"
        );
        let e = err_text(NodeConfig::from_toml("max_peers = \"5\""));
        assert!(e.contains("expected a positive integer"), "{e}");
        let e = err_text(NodeConfig::from_toml("ping_interval_ms = 3600001"));
        assert!(e.contains("expected an integer from 1 to 3600000"), "{e}");
        let e = err_text(NodeConfig::from_toml("flood = \"yes\""));
        assert!(
            e.contains("\"flood\"") && e.contains("expected true or false"),
            "{e}"
        );
    }

    #[test]
    fn invalid_secrets_are_not_shown_in_the_error() {
        let e = ConfigBuilder::new()
            .env(env(&[("SETOWIRE_SEED", "abcxyz")]))
            .unwrap_err();
        assert_eq!(e.key(), Some("seed"));
        assert!(!e.to_string().contains("abcxyz"), "{e}");
        let e = NodeConfig::from_toml("admin_token = \"qqz\\nqqz\"").unwrap_err();
        assert_eq!(e.key(), Some("admin_token"));
        assert!(!e.to_string().contains("qqz"), "{e}");
    }

    #[test]
    fn invalid_values_are_refused_even_when_overridden() {
        // Each layer is checked as it is added, before a later layer could hide it.
        let mut builder = ConfigBuilder::new();
        let e = builder
            .toml("shards = 0", Origin::Text)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.key(), Some("shards"));
        builder
            .set("shards", "2", Origin::Flag("--shards".into()))
            .unwrap();
        assert_eq!(
            builder.origin("shards"),
            Some(&Origin::Flag("--shards".into()))
        );
        let e = builder
            .env(env(&[("SETOWIRE_SHARDS", "0")]))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.key(), Some("shards"));
        let e = NodeConfig::from_toml("shards = 0\nshards = 2").unwrap_err();
        assert!(matches!(e, ConfigError::File { .. }), "duplicate key: {e}");
    }

    #[test]
    fn unknown_file_keys_and_tables_are_refused() {
        let e = NodeConfig::from_toml("max_pers = 5").unwrap_err();
        assert_eq!(e.key(), Some("max_pers"));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("did you mean \"max_peers\"?"), "{e}");
        let e = err_text(NodeConfig::from_toml(
            "[network]\nudp_listen = \"0.0.0.0:1\"",
        ));
        assert!(e.contains("\"network\"") && e.contains("top-level"), "{e}");
        let e = err_text(NodeConfig::from_toml("max_peers = "));
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn unknown_prefixed_variables_are_refused_except_the_allowlist() {
        let e = ConfigBuilder::new()
            .env(env(&[("SETOWIRE_MAX_PERS", "5")]))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("SETOWIRE_MAX_PERS"), "{text}");
        assert!(text.contains("did you mean SETOWIRE_MAX_PEERS?"), "{text}");
        assert_eq!(e.exit_code(), 2);
        // Keys must be written in upper case.
        assert!(ConfigBuilder::new()
            .env(env(&[("SETOWIRE_max_peers", "5")]))
            .is_err());
        let config = ConfigBuilder::new()
            .env(env(&[
                ("SETOWIRE_TEST_NETNS", "off"),
                ("SETOWIRE_TEST_PYTHON", "python3"),
                ("SETOWIRE_CONFIG", "/nonexistent"),
                ("SETOWIREX", "1"),
                ("HOME", "/root"),
            ]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config, NodeConfig::defaults());
    }

    #[test]
    fn kubernetes_service_links_are_ignored_but_typos_are_not() {
        let links = env(&[
            ("SETOWIRE_NODE_PORT", "udp://10.0.0.1:49737"),
            ("SETOWIRE_NODE_PORT_49737_UDP", "udp://10.0.0.1:49737"),
            ("SETOWIRE_NODE_SERVICE_HOST", "10.0.0.1"),
            ("SETOWIRE_NODE_SERVICE_PORT", "49737"),
        ]);
        let config = ConfigBuilder::new().env(links).unwrap().build().unwrap();
        assert_eq!(config, NodeConfig::defaults());
        let e = ConfigBuilder::new()
            .env(env(&[("SETOWIRE_NODE_PORT", "49737")]))
            .unwrap_err();
        assert!(e.to_string().contains("SETOWIRE_NODE_PORT"), "{e}");
    }

    #[test]
    fn env_lists_are_comma_separated() {
        let mut builder = ConfigBuilder::new();
        builder
            .env(env(&[
                ("SETOWIRE_BOOTSTRAP", "a.example:1, b.example:2"),
                ("SETOWIRE_TOPICS", "aa,bbcc"),
            ]))
            .unwrap();
        let config = builder.build().unwrap();
        assert_eq!(config.bootstrap, ["a.example:1", "b.example:2"]);
        assert_eq!(config.topics, [vec![0xaa], vec![0xbb, 0xcc]]);
    }
}
