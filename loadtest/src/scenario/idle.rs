//! `idle`: connect the peers and hold them for the run with nothing but keep-alives, so the
//! target's memory per connected peer can be read (RSS before and during, ÷ peers).

use super::{run_swarm, Setup};
use crate::report::Recorder;
use crate::run::Ctx;
use crate::swarm::Idle;

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    run_swarm(ctx, Setup::RawConnected, |_| Idle)
}
