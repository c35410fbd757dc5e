//! `explain` subcommand: the latest decisions of one workload, with why.

use predictive_controller::inspect::explain;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The workload.
    workload: String,
    /// How many decisions, newest first.
    #[arg(long, default_value_t = 5)]
    limit: u32,
    #[command(flatten)]
    controller: super::status::ControllerArgs,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    out!(
        "{}",
        explain(&args.controller.target()?, &args.workload, args.limit)?
    );
    Ok(())
}
