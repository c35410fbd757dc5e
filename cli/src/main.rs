//! `predictive`: the command line of the predictive controller and its engine.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only dispatches.

/// `print!` for the command's output, without its panic. A reader that stops early
/// (`predictive bench anomaly … | head -1`) ends the command quietly and successfully, as a
/// Unix tool ends on a closed pipe; any other failure to write (a full disk) is an error that
/// says so, and the command exits with a failure.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

/// [`out!`] with a newline, as `println!`.
macro_rules! outln {
    () => {
        $crate::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod cmd;
mod replay;

/// Writes to stdout for [`out!`] and [`outln!`]: on a closed pipe the command has nobody left
/// to tell, so it ends with success; on any other error it ends with a failure that names it.
fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the output to stdout: {e}");
        std::process::exit(1);
    }
}

use clap::{Parser, Subcommand};

/// Make cloud capacity arrive before demand does, at the lowest price that still meets it.
#[derive(Debug, Parser)]
#[command(name = "predictive", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Forecast one series with calibrated quantiles.
    Forecast(cmd::forecast::Args),
    /// Size the cheapest capacity that covers a demand across clouds.
    Size(cmd::size::Args),
    /// Inspect or rebuild the embedded price catalog.
    #[command(subcommand)]
    Catalog(cmd::catalog::Command),
    /// Replay traces through the whole loop (policy, sim cloud, shadow pool) in virtual time.
    Simulate(cmd::simulate::Args),
    /// Benchmarks that print JSON lines comparable with reference implementations.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run the controller daemon.
    #[command(subcommand)]
    Controller(cmd::controller::Command),
    /// Show the controller's workloads and their latest decisions.
    Status(cmd::status::Args),
    /// Explain the latest decisions for one workload.
    Explain(cmd::explain::Args),
    /// End a workload's anomaly-remediation hold or halt (its history and models stay).
    Release(cmd::release::Args),
    /// Show the newest entries of one workload's audit log (anomaly alerts, remediations,
    /// releases).
    Audit(cmd::audit::Args),
    /// Run the end-to-end demo on the embedded default (sim cloud, SQLite, a bundled real trace).
    Demo(cmd::demo::Args),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Forecast accuracy and speed (PROTOCOL.md §1).
    Forecast(cmd::bench_forecast::Args),
    /// Allocation efficiency of the policies (PROTOCOL.md §2).
    Allocate(cmd::bench_allocate::Args),
    /// Online anomaly scores in NAB's results format (PROTOCOL.md §3).
    Anomaly(cmd::bench_anomaly::Args),
    /// Sizing cost and solve time over JSONL cases (PROTOCOL.md §4).
    Size(cmd::bench_size::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Forecast(a) => cmd::forecast::run(a),
        Command::Size(a) => cmd::size::run(a),
        Command::Catalog(c) => cmd::catalog::run(c),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Bench(BenchCommand::Forecast(a)) => cmd::bench_forecast::run(a),
        Command::Bench(BenchCommand::Allocate(a)) => cmd::bench_allocate::run(a),
        Command::Bench(BenchCommand::Anomaly(a)) => cmd::bench_anomaly::run(a),
        Command::Bench(BenchCommand::Size(a)) => cmd::bench_size::run(a),
        Command::Controller(c) => cmd::controller::run(c),
        Command::Status(a) => cmd::status::run(a),
        Command::Explain(a) => cmd::explain::run(a),
        Command::Release(a) => cmd::release::run(a),
        Command::Audit(a) => cmd::audit::run(a),
        Command::Demo(a) => cmd::demo::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The full cause chain, once, at the edge.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
