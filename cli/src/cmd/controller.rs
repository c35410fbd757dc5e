//! `controller` subcommands.

/// The `controller` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Not available in this build yet.
    Unavailable,
}

/// Runs the subcommand.
pub(crate) fn run(_command: Command) -> anyhow::Result<()> {
    anyhow::bail!("`controller` is not available in this build yet")
}
