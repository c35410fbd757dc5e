//! `release` subcommand: ends a workload's anomaly-remediation hold or halt.

use predictive_controller::inspect::release;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The workload.
    workload: String,
    #[command(flatten)]
    controller: super::status::ControllerArgs,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    out!("{}", release(&args.controller.target()?, &args.workload)?);
    Ok(())
}
