//! `demo` subcommand: the controller end to end on the embedded default.

use std::path::PathBuf;

use predictive_controller::demo::{run_blocking, DemoOptions};

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A trace (NAB canonical CSV `timestamp,value`) instead of the bundled one.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Simulated days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Output directory for the store, the plot and the report (default: a new temp dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not run the quickstart through terraform.
    #[arg(long)]
    no_terraform: bool,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let report = run_blocking(DemoOptions {
        trace: args.trace,
        days: args.days,
        out: args.out,
        terraform: !args.no_terraform,
    })?;
    out!("{}", report.text);
    Ok(())
}
