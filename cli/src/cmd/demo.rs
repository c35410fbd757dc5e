//! `demo` subcommand.

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs the subcommand.
pub(crate) fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`demo` is not available in this build yet")
}
