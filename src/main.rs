//! The `setowire-node` command.

use std::ffi::OsString;
use std::process::ExitCode;

use setowire_node::config::cli::{self, CliAction};
use setowire_node::config::{reload, service_links};
use setowire_node::runtime::{self, reload::Reload};
use setowire_node::telemetry::logging;

mod health;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == health::SUBCOMMAND) {
        return health::main(args);
    }
    let env = cli::process_env();
    let (config, control_stdio) = match cli::parse_cli(args.iter().cloned(), env.clone()) {
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
    let log = logging::init(config.log_format, filter, &config.log_filter);
    let links = service_links::ignored(&env);
    if !links.is_empty() {
        tracing::info!(
            variables = %links.join(","),
            "ignoring Kubernetes service-link variables: they are not config keys"
        );
    }
    let mut options = match config.node_options(control_stdio, unix_seconds()) {
        Ok(options) => options,
        Err(e) => {
            let code = e.exit_code();
            tracing::error!("{:#}", anyhow::Error::new(e));
            return ExitCode::from(code);
        }
    };
    options.reload = Some(Reload {
        read: reload::reader(args, config, rust_log),
        log,
    });
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
