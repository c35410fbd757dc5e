//! `status` subcommand: the controller's workloads and their latest decisions.

use std::path::PathBuf;

use predictive_controller::inspect::{status, Target};

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The controller's API address.
    #[arg(long, env = "PREDICTIVE_ADDR", default_value = "http://127.0.0.1:7070")]
    pub(crate) addr: String,
    /// Read a local SQLite store instead of calling the API.
    #[arg(long)]
    pub(crate) db: Option<PathBuf>,
}

/// Where to read from: the store file, or the API with the token from `PREDICTIVE_TOKEN`.
pub(crate) fn target(addr: &str, db: Option<PathBuf>) -> Target {
    match db {
        Some(p) => Target::Db(p),
        None => Target::Api {
            addr: addr.to_string(),
            token: std::env::var("PREDICTIVE_TOKEN").unwrap_or_default(),
        },
    }
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    print!("{}", status(&target(&args.addr, args.db))?);
    Ok(())
}
