//! `catalog` subcommands.

/// The `catalog` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Not available in this build yet.
    Unavailable,
}

/// Runs the subcommand.
pub(crate) fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("`catalog` is not available in this build yet")
}
