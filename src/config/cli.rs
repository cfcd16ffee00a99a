//! The command line of `setowire-node`.
//!
//! Besides `--config`, `--print-config`, `--control`, `--help` and `--version`, every config
//! key of [`super::KEYS`] is a flag: `--max-peers N` for `max_peers`, `--flood[=BOOL]`
//! and `--no-flood` for booleans, repeatable `--bootstrap` and `--topic` for the lists. Flags
//! are generated from the key table, so they cannot drift from the config file.
//!
//! [`parse_cli`] takes the environment as an argument so tests need not touch the process
//! environment; the binary passes [`process_env`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{
    Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser, ValueEnum,
};

use super::{
    ConfigBuilder, ConfigError, KeyKind, KeySpec, NodeConfig, Origin, RawValue, ENV_CONFIG_FILE,
    KEYS,
};

const AFTER_HELP: &str = "\
Every config key can be set in a TOML file (--config), in the environment as SETOWIRE_<KEY> \
(e.g. SETOWIRE_MAX_PEERS, lists comma-separated) and by its flag. Flags beat the environment, \
which beats the file, which beats the built-in defaults (config/node.toml; see \
--print-config).

`setowire-node health [--ready] [FLAGS]` reads the same configuration and asks the running \
node's GET /healthz (with --ready, GET /readyz) on its admin listener: exit 0 when it answers \
200, else 1 (a container health check, a Kubernetes probe).

Exit status: 0 on a clean stop, 1 on a runtime failure, 2 on an invalid configuration or \
command line.";

/// The flags that are not config keys.
#[derive(Debug, Parser)]
#[command(name = "setowire-node", version, about, after_help = AFTER_HELP)]
#[command(args_override_self = true)]
struct Cli {
    /// TOML config file, read over the built-in defaults [env: SETOWIRE_CONFIG]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit
    #[arg(long)]
    print_config: bool,
    /// Run mode: `stdio` reads JSON commands on stdin and writes JSON events on stdout
    #[arg(long, value_enum, value_name = "MODE")]
    control: Option<Control>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Control {
    Stdio,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
// Made once per process: boxing the config would only make matching on it clumsier.
#[allow(clippy::large_enum_variant)]
pub enum CliAction {
    /// Run the node.
    Run {
        config: NodeConfig,
        /// `--control stdio`: JSON commands on stdin, JSON events on stdout.
        control_stdio: bool,
    },
    /// `--print-config`: print this text (the effective configuration as TOML, secrets left
    /// out) on stdout and exit 0.
    PrintConfig(String),
}

/// Parses the command line (`args` includes the program name, as [`std::env::args_os`]
/// does) and the environment into what to do.
///
/// Errors: [`ConfigError::Cli`] for usage errors and for `--help` / `--version` (its
/// [`ConfigError::exit_code`] is 0 for those; [`ConfigError::print`] shows them), and the
/// other [`ConfigError`] variants, exit code 2, for invalid configuration.
pub fn parse_cli<I, T>(
    args: I,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<CliAction, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let env: Vec<(String, String)> = env.into_iter().collect();

    let mut builder = ConfigBuilder::new();
    let file = cli.config.or_else(|| {
        env.iter()
            .find(|(name, value)| name == ENV_CONFIG_FILE && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value))
    });
    if let Some(path) = file {
        builder.file(&path)?;
    }
    builder.env(env)?;
    apply_flags(&mut builder, &matches)?;
    let config = builder.build()?;

    if cli.print_config {
        return Ok(CliAction::PrintConfig(config.to_toml_redacted()));
    }
    Ok(CliAction::Run {
        config,
        control_stdio: cli.control == Some(Control::Stdio),
    })
}

/// The process environment for [`parse_cli`]. Variables whose names are not UTF-8 are left
/// out; values that are not UTF-8 are converted lossily (and then fail validation).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            Some((
                name.into_string().ok()?,
                value.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

/// The full command: the fixed flags and one flag (two for booleans) per config key.
pub fn command() -> Command {
    let defaults = NodeConfig::defaults().to_values();
    let mut cmd = Cli::command().next_help_heading("Config keys");
    for spec in KEYS {
        let default = defaults
            .iter()
            .find(|(key, _)| *key == spec.name)
            .and_then(|(_, value)| describe_default(value));
        let mut help = spec.help.to_owned();
        if let Some(default) = default {
            help.push_str(&format!(" [default: {default}]"));
        }
        help.push_str(&format!(" [env: {}]", spec.env_var()));
        let arg = Arg::new(spec.name)
            .long(spec.flag)
            .value_name(spec.value_name)
            .help(help);
        cmd = match spec.kind {
            KeyKind::Scalar => cmd.arg(
                arg.action(ArgAction::Set)
                    .num_args(1)
                    .allow_negative_numbers(true),
            ),
            KeyKind::List => {
                let arg = arg.action(ArgAction::Append).value_delimiter(',');
                let arg = if spec.flag == spec.name {
                    arg
                } else {
                    arg.alias(spec.name)
                };
                cmd.arg(arg)
            }
            KeyKind::Bool => cmd
                .arg(
                    arg.action(ArgAction::Set)
                        .num_args(0..=1)
                        .default_missing_value("true"),
                )
                .arg(
                    Arg::new(negated_id(spec))
                        .long(format!("no-{}", spec.flag))
                        .action(ArgAction::SetTrue)
                        .conflicts_with(spec.name)
                        .help(format!("Same as --{}=false", spec.flag)),
                ),
        };
    }
    cmd
}

fn negated_id(spec: &KeySpec) -> String {
    format!("no_{}", spec.name)
}

/// A default for `--help`, or `None` when it is empty.
fn describe_default(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) if s.is_empty() => None,
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Array(items) if items.is_empty() => None,
        other => Some(other.to_string()),
    }
}

fn apply_flags(builder: &mut ConfigBuilder, matches: &ArgMatches) -> Result<(), ConfigError> {
    for spec in KEYS {
        let origin = Origin::Flag(format!("--{}", spec.flag));
        match spec.kind {
            KeyKind::Scalar => {
                if let Some(value) = matches.get_one::<String>(spec.name) {
                    builder.set(spec.name, value, origin)?;
                }
            }
            KeyKind::Bool => {
                if let Some(value) = matches.get_one::<String>(spec.name) {
                    builder.set(spec.name, value, origin)?;
                } else if matches.get_flag(&negated_id(spec)) {
                    let origin = Origin::Flag(format!("--no-{}", spec.flag));
                    builder.set(spec.name, "false", origin)?;
                }
            }
            KeyKind::List => {
                if let Some(values) = matches.get_many::<String>(spec.name) {
                    let items = values.cloned().collect();
                    builder.set_raw(spec.name, RawValue::List(items), origin)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IoBackendChoice, Shards};
    use std::path::Path;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<CliAction, ConfigError> {
        let args = std::iter::once("setowire-node").chain(args.iter().copied());
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        parse_cli(args, env)
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> NodeConfig {
        match run(args, env) {
            Ok(CliAction::Run { config, .. }) => config,
            other => panic!("expected a config: {other:?}"),
        }
    }

    #[test]
    fn command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn no_arguments_run_on_the_defaults() {
        assert_eq!(
            run(&[], &[]).unwrap(),
            CliAction::Run {
                config: NodeConfig::defaults(),
                control_stdio: false
            }
        );
    }

    #[test]
    fn interop_flags_still_work() {
        let action = run(&["--udp-listen", "127.0.0.1:0", "--control", "stdio"], &[]).unwrap();
        let CliAction::Run {
            config,
            control_stdio,
        } = action
        else {
            panic!("{action:?}")
        };
        assert!(control_stdio);
        assert_eq!(config.udp_listen, "127.0.0.1:0".parse().unwrap());
    }

    #[test]
    fn every_key_has_a_flag() {
        let c = config(
            &[
                "--udp-listen=[::1]:1",
                "--http-listen=127.0.0.1:2",
                "--http-max-connections=30",
                "--http-max-connections-per-ip=42",
                "--http-header-timeout-secs=43",
                "--http-idle-timeout-secs=44",
                "--http-rate-per-ip=31",
                "--http-burst-per-ip=32",
                "--http-discard-max-bytes=45",
                "--http-announce-ttl-secs=33",
                "--http-max-announces=34",
                "--http-announces-per-ip=46",
                "--http-announce-max-bytes=350",
                "--no-http-announce-check-source",
                "--http-peers-list=announced",
                "--http-peers-default-limit=36",
                "--http-peers-max-limit=37",
                "--piping-open",
                "--piping-rendezvous-prefix=/rdv-",
                "--piping-rendezvous-max-body-bytes=47",
                "--piping-max-paths=38",
                "--piping-max-waiting-per-path=39",
                "--piping-max-body-bytes=40",
                "--piping-bytes-per-sec-per-ip=4800",
                "--piping-bytes-per-sec-total=4900",
                "--piping-idle-timeout-secs=41",
                "--admin-listen=127.0.0.1:3",
                "--metrics-listen=0.0.0.0:6",
                "--admin-token=tok",
                "--dht-listen=127.0.0.1:4",
                "--public-addr=192.0.2.1:5",
                "--bootstrap=a.example:6",
                "--topic=ab",
                "--lan",
                "--shards=3",
                "--io-backend=mmsg",
                "--identity=ephemeral",
                "--seed=01",
                "--state-dir=/var/lib/setowire",
                "--state-snapshot-interval-secs=29",
                "--state-values-max-bytes=30",
                "--state-peer-cache-size=31",
                "--max-peers=8",
                "--flood=false",
                "--relay",
                "false",
                "--no-store-forward",
                "--ping-interval-ms=9",
                "--peer-timeout-secs=10",
                "--pex-interval-secs=11",
                "--relay-announce-secs=12",
                "--gossip-fanout=13",
                "--mesh-degree=24",
                "--mesh-low=24",
                "--mesh-high=25",
                "--store-max-entries=14",
                "--store-max-bytes=15",
                "--store-max-value-bytes=15",
                "--reassembly-max-bytes=28",
                "--dht-value-ttl-secs=21",
                "--dht-max-values-bytes=22",
                "--dht-max-values-per-ip=23",
                "--dht-store-rate-per-ip=24",
                "--dht-store-burst-per-ip=25",
                "--dht-request-rate-per-ip=26",
                "--dht-request-burst-per-ip=27",
                "--unauth-rate-per-ip=16",
                "--unauth-burst-per-ip=17",
                "--session-rate=18",
                "--session-burst=19",
                "--handshake-rate-per-ip=26",
                "--handshake-burst-per-ip=27",
                "--rate-limit-ips=20",
                "--ipv6-prefix-len=48",
                "--shutdown-grace-secs=7",
                "--log-format=json",
                "--log-filter=warn",
            ],
            &[],
        );
        let defaults = NodeConfig::defaults();
        let changed: Vec<&str> = c
            .to_values()
            .into_iter()
            .zip(defaults.to_values())
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.0)
            .collect();
        let unchanged: Vec<&str> = KEYS
            .iter()
            .map(|k| k.name)
            .filter(|k| !changed.contains(k))
            .collect();
        assert_eq!(unchanged, ["identity"], "identity was set to its default");
        assert_eq!(c.shards, Shards::Count(3.try_into().unwrap()));
        assert_eq!(c.io_backend, IoBackendChoice::Mmsg);
        assert!(c.lan && !c.flood && !c.relay && !c.store_forward);
        assert_eq!(c.topics, [vec![0xab]]);
        assert_eq!(c.state_dir.as_deref(), Some(Path::new("/var/lib/setowire")));
    }

    #[test]
    fn lists_repeat_or_use_commas_and_flags_replace_lower_layers() {
        let c = config(
            &[
                "--bootstrap",
                "a.example:1",
                "--bootstrap",
                "b.example:2,c.example:3",
            ],
            &[("SETOWIRE_BOOTSTRAP", "env.example:9")],
        );
        assert_eq!(c.bootstrap, ["a.example:1", "b.example:2", "c.example:3"]);
        let c = config(&["--topic", "aa", "--topics", "bb"], &[]);
        assert_eq!(c.topics, [vec![0xaa], vec![0xbb]]);
        let c = config(
            &["--bootstrap", ""],
            &[("SETOWIRE_BOOTSTRAP", "env.example:9")],
        );
        assert!(c.bootstrap.is_empty());
    }

    #[test]
    fn flags_beat_env_and_the_last_flag_wins() {
        let c = config(
            &["--max-peers", "5", "--max-peers", "6"],
            &[("SETOWIRE_MAX_PEERS", "7"), ("SETOWIRE_GOSSIP_FANOUT", "1")],
        );
        assert_eq!((c.max_peers, c.gossip_fanout), (6, 1));
        let c = config(&["--no-flood"], &[("SETOWIRE_FLOOD", "true")]);
        assert!(!c.flood);
        let c = config(&["--flood"], &[("SETOWIRE_FLOOD", "false")]);
        assert!(c.flood);
    }

    #[test]
    fn config_file_from_flag_or_env() {
        let dir = std::env::temp_dir().join(format!("setowire-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(&path, "max_peers = 11\n").unwrap();
        let path_str = path.to_str().unwrap();
        assert_eq!(config(&["--config", path_str], &[]).max_peers, 11);
        assert_eq!(config(&[], &[("SETOWIRE_CONFIG", path_str)]).max_peers, 11);
        let e = run(&["--config", "/nonexistent/node.toml"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("/nonexistent/node.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn print_config_prints_the_effective_config() {
        let CliAction::PrintConfig(text) =
            run(&["--print-config", "--max-peers", "3"], &[]).unwrap()
        else {
            panic!("expected PrintConfig")
        };
        let mut expected = NodeConfig::defaults();
        expected.max_peers = 3;
        assert_eq!(text, expected.to_toml());
        assert_eq!(NodeConfig::from_toml(&text).unwrap(), expected);
    }

    #[test]
    fn errors_and_exit_codes() {
        let e = run(&["--shards", "0"], &[]).unwrap_err();
        assert_eq!((e.key(), e.exit_code()), (Some("shards"), 2));
        assert!(e.to_string().contains("(from flag --shards)"), "{e}");
        let e = run(&["--max-peers", "-1"], &[]).unwrap_err();
        assert_eq!((e.key(), e.exit_code()), (Some("max_peers"), 2));
        let e = run(&["--max-peers", "5"], &[("SETOWIRE_MAX_PEERS", "abc")]).unwrap_err();
        assert_eq!(
            e.key(),
            Some("max_peers"),
            "a bad value is refused even when overridden"
        );
        let e = run(&["--flood=maybe"], &[]).unwrap_err();
        assert_eq!(e.key(), Some("flood"));
        let e = run(&["--no-such-flag"], &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Cli(_)));
        assert_eq!(e.exit_code(), 2);
        let e = run(&["--flood", "--no-flood"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = run(&["--control", "tcp"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = run(&[], &[("SETOWIRE_DIAL", "a:1")]).unwrap_err();
        assert!(e.to_string().contains("SETOWIRE_DIAL"), "{e}");
        let e = run(&["--seed", "01", "--identity", "/tmp/x.key"], &[]).unwrap_err();
        assert_eq!(e.key(), Some("seed"));
    }

    #[test]
    fn help_and_version_exit_zero() {
        for flag in ["--help", "-h", "--version", "-V"] {
            let e = run(&[flag], &[]).unwrap_err();
            assert_eq!(e.exit_code(), 0, "{flag}");
        }
        let help = command().render_long_help().to_string();
        assert!(help.contains("--max-peers <N>"), "{help}");
        assert!(
            help.contains("[default: 100000] [env: SETOWIRE_MAX_PEERS]"),
            "{help}"
        );
        assert!(help.contains("--no-flood"), "{help}");
        assert!(help.contains("--topic <HEX>"), "{help}");
    }
}
