//! The `setowire-node` command.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use setowire_core::swarm::config::EngineConfig;
use setowire_node::admin::AdminConfig;
use setowire_node::cli::{self, CliAction};
use setowire_node::config::NodeConfig;
use setowire_node::discovery::dht::DiscoveryOptions;
use setowire_node::http::HttpConfig;
use setowire_node::runtime::{self, NodeOptions};
use setowire_node::telemetry::logging;

fn main() -> ExitCode {
    let (config, control_stdio) = match cli::parse_cli(std::env::args_os(), cli::process_env()) {
        Ok(CliAction::Run {
            config,
            control_stdio,
        }) => (config, control_stdio),
        Ok(CliAction::PrintConfig(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            e.print();
            return ExitCode::from(e.exit_code());
        }
    };
    logging::init(&config);
    let identity = match config.load_identity() {
        Ok(identity) => identity,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    // A seeded or key-file identity is the same in every run: never restart its counters.
    let first_send_counter = match config.counter_base(unix_seconds()) {
        Ok(base) => base,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let options = NodeOptions {
        udp_listen: config.udp_listen,
        shards: config.shards.count().get(),
        io_backend: config.io_backend,
        pin_cores: true,
        identity,
        engine: EngineConfig {
            first_send_counter,
            ..config.engine_config()
        },
        dial: resolve_bootstrap(&config),
        control_stdio,
        discovery: DiscoveryOptions::from_config(&config),
        http: HttpConfig::from_node_config(&config),
        admin: AdminConfig::from_node_config(&config),
    };
    match runtime::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // With its causes, as anyhow renders the chain.
            tracing::error!("{:#}", anyhow::Error::new(e));
            ExitCode::FAILURE
        }
    }
}

/// The bootstrap nodes' addresses, preferring the address family of `udp_listen`. A name
/// that does not resolve is logged and skipped: the node still serves its own peers.
fn resolve_bootstrap(config: &NodeConfig) -> Vec<SocketAddr> {
    let mut dial = Vec::new();
    for host_port in &config.bootstrap {
        match host_port.to_socket_addrs() {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                let same_family: Vec<SocketAddr> = addrs
                    .iter()
                    .copied()
                    .filter(|a| a.is_ipv4() == config.udp_listen.is_ipv4())
                    .collect();
                dial.extend(if same_family.is_empty() {
                    addrs
                } else {
                    same_family
                });
            }
            Err(e) => tracing::warn!(bootstrap = %host_port, "cannot resolve: {e}"),
        }
    }
    dial
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
