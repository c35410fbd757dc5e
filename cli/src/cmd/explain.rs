//! `explain` subcommand: the latest decisions of one workload, with why.

use std::path::PathBuf;

use predictive_controller::inspect::explain;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The workload.
    workload: String,
    /// How many decisions, newest first.
    #[arg(long, default_value_t = 5)]
    limit: u32,
    /// The controller's API address (http://HOST:PORT, or https://HOST:PORT for TLS).
    #[arg(long, env = "PREDICTIVE_ADDR", default_value = "http://127.0.0.1:7070")]
    addr: String,
    /// Read a local SQLite store instead of calling the API.
    #[arg(long)]
    db: Option<PathBuf>,
    #[command(flatten)]
    tls: super::status::TlsArgs,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    out!(
        "{}",
        explain(
            &super::status::target(&args.addr, args.db, &args.tls)?,
            &args.workload,
            args.limit
        )?
    );
    Ok(())
}
