//! `controller` subcommands: run the daemon, check a config.

use std::path::PathBuf;

use predictive_controller::config::Mode;
use predictive_controller::daemon::{run_blocking, RunOptions};

/// The `controller` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run the scaling loop (observe, forecast, decide, act) on the workloads of a config file.
    Run(RunArgs),
    /// Time one tick over many workloads on one core and report memory per workload (JSON line).
    Bench {
        /// Number of workloads.
        #[arg(long, default_value_t = 10_000)]
        workloads: usize,
        /// Untimed ticks first (the model warms up).
        #[arg(long, default_value_t = 12)]
        warmup: usize,
        /// Timed ticks.
        #[arg(long, default_value_t = 5)]
        ticks: usize,
        /// Keep the SQLite store in this directory (default: in memory).
        #[arg(long, conflicts_with = "postgres")]
        dir: Option<PathBuf>,
        /// Keep the state in PostgreSQL instead: a libpq-style connection string of an empty
        /// database (`host=... port=... user=... dbname=...`; from the environment variable
        /// so a password stays off the command line).
        #[arg(long, env = "PREDICTIVE_BENCH_POSTGRES", hide_env_values = true)]
        postgres: Option<String>,
    },
    /// Check a config file and list its workloads.
    Check {
        /// The config file (TOML, or YAML when it ends in .yaml/.yml).
        #[arg(long)]
        config: PathBuf,
    },
}

/// Arguments of `controller run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The config file (TOML, or YAML when it ends in .yaml/.yml).
    #[arg(long)]
    config: PathBuf,
    /// Stop after this many ticks (default: run forever).
    #[arg(long)]
    ticks: Option<u64>,
    /// Run in virtual time from this unix time: ticks follow each other without waiting.
    #[arg(long)]
    virtual_start: Option<i64>,
    /// Keep the embedded sim cloud's state in this JSON file across restarts.
    #[arg(long)]
    sim_state: Option<PathBuf>,
    /// Decide and record, but never change the cloud.
    #[arg(long, conflicts_with = "forecast_only")]
    dry_run: bool,
    /// Observe and forecast only.
    #[arg(long)]
    forecast_only: bool,
    /// Identity of this replica in leader election (default: owner and process id).
    #[arg(long)]
    replica: Option<String>,
}

/// Runs the subcommand.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(a) => {
            let mode = if a.dry_run {
                Some(Mode::DryRun)
            } else if a.forecast_only {
                Some(Mode::ForecastOnly)
            } else {
                None
            };
            run_blocking(RunOptions {
                config: a.config,
                ticks: a.ticks,
                virtual_start: a.virtual_start,
                sim_state: a.sim_state,
                mode,
                replica: a.replica,
            })?;
            Ok(())
        }
        Command::Bench {
            workloads,
            warmup,
            ticks,
            dir,
            postgres,
        } => {
            use predictive_controller::bench::{run_blocking, BenchStore};
            let store = match postgres.as_deref() {
                Some(url) => BenchStore::Postgres(url),
                None => BenchStore::sqlite(dir.as_deref()),
            };
            let r = run_blocking(workloads, warmup, ticks, store)?;
            outln!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Command::Check { config } => {
            let d = predictive_controller::adapters::load(&config)?;
            for w in &d.config.workloads {
                predictive_controller::adapters::check_workload(w, &d.clouds)?;
            }
            let c = d.config;
            outln!(
                "{}: ok, interval {}s, mode {}, history kept {}, {} workload(s)",
                config.display(),
                c.interval_secs,
                c.mode.as_str(),
                c.retention_secs
                    .map_or("for ever".to_owned(), |s| format!("{}d", s / 86_400)),
                c.workloads.len()
            );
            for w in &c.workloads {
                let r = &w.params.remediation;
                outln!(
                    "  {} ({} group {}, {} x {} {}, [{}, {}]; anomalies: {}{}, leaks {}{})",
                    w.name(),
                    w.params.cloud,
                    w.params.group,
                    w.params.instance_type,
                    w.params.capacity_per_instance,
                    w.params.resource,
                    w.params.min,
                    w.params.max,
                    r.policy,
                    if r.dry_run { " (dry run)" } else { "" },
                    if r.caps_leaks(&w.params.resource) {
                        "capped"
                    } else {
                        "alerted, not capped"
                    },
                    if w.params.watch.is_empty() {
                        String::new()
                    } else {
                        let names: Vec<&str> = w.params.watch.keys().map(String::as_str).collect();
                        format!(", watching {}", names.join(" and "))
                    }
                );
            }
            Ok(())
        }
    }
}
