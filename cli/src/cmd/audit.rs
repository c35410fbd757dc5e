//! `audit` subcommand: the newest entries of one workload's audit log.

use predictive_controller::inspect::audit;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The workload.
    workload: String,
    /// How many entries, the newest (printed oldest first).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[command(flatten)]
    controller: super::status::ControllerArgs,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    out!(
        "{}",
        audit(&args.controller.target()?, &args.workload, args.limit)?
    );
    Ok(())
}
