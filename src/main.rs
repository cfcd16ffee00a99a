//! The `setowire-node` command.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use setowire_node::proto::identity::Identity;
use setowire_node::proto::session::restart_safe_counter_base;
use setowire_node::standalone::{self, StandaloneOptions};
use setowire_node::swarm::config::EngineConfig;

/// A relay and seed node for the Setowire peer-to-peer protocol.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// UDP address to serve Setowire on.
    #[arg(long, env = "SETOWIRE_UDP_LISTEN", default_value = "0.0.0.0:49737")]
    udp_listen: SocketAddr,
    /// Derive the identity from this hex seed, as py-setowire's `seed` option does
    /// (default: a fresh random identity each run).
    #[arg(long, env = "SETOWIRE_SEED")]
    seed: Option<String>,
    /// Peers to dial at start (repeatable).
    #[arg(long = "dial", env = "SETOWIRE_DIAL", value_delimiter = ',')]
    dial: Vec<SocketAddr>,
    /// Seed-only mode: never re-flood application data to the mesh.
    #[arg(long)]
    no_flood: bool,
    /// Maximum number of connected peers.
    #[arg(long, env = "SETOWIRE_MAX_PEERS", default_value_t = EngineConfig::default().max_peers)]
    max_peers: usize,
    /// Read JSON commands on stdin and write JSON events on stdout.
    #[arg(long, value_enum)]
    control: Option<Control>,
    /// Log line format.
    #[arg(
        long,
        env = "SETOWIRE_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Control {
    Stdio,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let identity = match cli.seed.as_deref().map(Identity::from_seed_hex) {
        None => Identity::generate(),
        Some(Some(identity)) => identity,
        Some(None) => {
            eprintln!("error: --seed must be hex");
            return ExitCode::from(2);
        }
    };
    let options = StandaloneOptions {
        listen: cli.udp_listen,
        identity,
        engine: EngineConfig {
            flood: !cli.no_flood,
            max_peers: cli.max_peers,
            // A seeded identity is the same in every run: never restart its nonce counters.
            first_send_counter: restart_safe_counter_base(unix_seconds()),
            ..EngineConfig::default()
        },
        dial: cli.dial,
        control_stdio: cli.control.is_some(),
    };
    match standalone::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout belongs to the control interface.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
