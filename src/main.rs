//! The `setowire-node` command.

use std::process::ExitCode;

use setowire_node::config::cli::{self, CliAction};
use setowire_node::runtime;
use setowire_node::telemetry::logging;

mod health;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == health::SUBCOMMAND)
    {
        return health::main(std::env::args_os().collect());
    }
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
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = config.effective_log_filter(rust_log.as_deref());
    logging::init(config.log_format, filter, &config.log_filter);
    let options = match config.node_options(control_stdio, unix_seconds()) {
        Ok(options) => options,
        Err(e) => {
            let code = e.exit_code();
            tracing::error!("{:#}", anyhow::Error::new(e));
            return ExitCode::from(code);
        }
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

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
