//! `setowire-sim`: a swarm of virtual Setowire peers for load-testing a node.

mod cli;
mod deadlines;
mod fleet;
mod net;
mod plot;
mod progress;
mod report;
mod run;
mod scenario;
mod swarm;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

use crate::cli::Options;
use crate::report::{Live, Report, RunInfo};
use crate::run::Ctx;

fn main() -> ExitCode {
    let checked = match Options::parse().check() {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("setowire-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let ctx = Ctx {
        opts: Arc::new(checked),
        live: Arc::new(Live::default()),
        stop: Arc::new(AtomicBool::new(false)),
    };
    match run(&ctx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("setowire-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let opts = &ctx.opts;
    let progress = progress::Progress::start(ctx);
    let recorders = scenario::run(ctx);
    progress.finish();
    let info = RunInfo {
        scenario: opts.options.scenario.name().to_string(),
        target: scenario::target_of(opts).to_string(),
        peers: opts.options.peers,
        offered_rate: opts.options.rate,
        warmup: opts.warmup,
        duration: opts.duration,
    };
    let report = Report::merge(info, recorders?);
    print!("{}", report.table());
    if let Some(path) = &opts.options.json {
        report.write_json(path)?;
    }
    if let Some(path) = &opts.options.plot {
        plot::write_svg(&report, path)?;
    }
    Ok(())
}
