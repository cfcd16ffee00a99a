//! The `setowire-node` command.

use std::process::ExitCode;

use setowire_node::config::cli::{self, CliAction};
use setowire_node::config::{LogFormat, NodeConfig};
use setowire_node::node::runtime;

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
    init_logging(&config);
    let options = match config.node_options(control_stdio, unix_seconds()) {
        Ok(options) => options,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &NodeConfig) {
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

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
