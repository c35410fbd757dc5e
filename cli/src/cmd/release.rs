//! `release` subcommand: ends a workload's anomaly-remediation hold or halt.

use std::path::PathBuf;

use predictive_controller::inspect::release;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The workload.
    workload: String,
    /// The controller's API address (http://HOST:PORT, or https://HOST:PORT for TLS).
    #[arg(long, env = "PREDICTIVE_ADDR", default_value = "http://127.0.0.1:7070")]
    addr: String,
    /// Release it in a local SQLite store instead (a stopped controller reads it at its start).
    #[arg(long)]
    db: Option<PathBuf>,
    #[command(flatten)]
    tls: super::status::TlsArgs,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    out!(
        "{}",
        release(
            &super::status::target(&args.addr, args.db, &args.tls)?,
            &args.workload
        )?
    );
    Ok(())
}
