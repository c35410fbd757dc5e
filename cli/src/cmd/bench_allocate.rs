//! `bench allocate`: allocation efficiency of the policies, exactly as PROTOCOL.md §2.
//!
//! Each series is resampled to `--step` by mean (gaps interpolated linearly). Every policy
//! decides `a[t]` from usage up to `t − lead` only; the first `--warmup` is not scored. One JSON
//! line per policy holds the means over series of slack, shortfall_steps, shortfall_volume,
//! changes_per_day and cost_vs_oracle; `series` is the number of series scored. Series are
//! streamed: one is in memory at a time.

use anyhow::{bail, Context};
use predictive_engine::policy::{self, AllocatorSettings, PolicyParams};
use predictive_engine::series::Aggregation;
use predictive_engine::simulate::baselines::{allocate, Baseline, Geometry};
use predictive_engine::simulate::metrics::AllocationMetrics;
use predictive_traces::{discover, parse_duration, Metric, SeriesStream};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Trace files or directories (searched recursively).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Decision step (`5min`, `300s`, `1h`, …).
    #[arg(long, default_value = "5min")]
    step: String,
    /// Provisioning delay in steps: `a[t]` may use usage up to `t − lead` only.
    #[arg(long, default_value_t = 3)]
    lead: usize,
    /// Warm-up period, not scored (`7d`, `24h`, …).
    #[arg(long, default_value = "7d")]
    warmup: String,
    /// Metric of multi-metric traces (cpu, mem, net-in, net-out, disk-read, disk-write).
    #[arg(long, default_value = "cpu")]
    metric: String,
    /// Print only the JSON lines (otherwise a table and the replay speed follow on stderr).
    #[arg(long)]
    json: bool,
    /// Use only the first N series (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

/// One JSON line, field names as in PROTOCOL.md §2.
#[derive(Debug, Serialize)]
struct Line {
    policy: &'static str,
    series: usize,
    slack: f64,
    shortfall_steps: f64,
    shortfall_volume: f64,
    changes_per_day: f64,
    cost_vs_oracle: f64,
}

/// The policies in output order: the protocol's baselines, then ours.
const POLICIES: [&str; 6] = [
    "peak-static",
    "reactive",
    "vpa",
    "window-max",
    "oracle",
    "predictive",
];

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let step = parse_duration(&args.step)
        .with_context(|| format!("--step: cannot read `{}` as a duration", args.step))?;
    let warmup = parse_duration(&args.warmup)
        .with_context(|| format!("--warmup: cannot read `{}` as a duration", args.warmup))?;
    if args.lead == 0 {
        bail!("--lead: must be at least 1 step");
    }
    let metric: Metric = args.metric.parse().context("--metric")?;
    let day = usize::try_from((86_400 / step).max(1)).unwrap_or(1);
    let geometry = Geometry {
        lead: args.lead,
        warmup: usize::try_from(warmup / step).unwrap_or(0),
        day,
    };
    let params = PolicyParams::default().lead(args.lead);
    let policy = params.check().context("default policy")?;
    let settings = AllocatorSettings::for_step(step as u64);

    let mut entries = discover(&args.dirs).context("discovering traces")?;
    if args.limit > 0 {
        entries.truncate(args.limit);
    }
    if entries.is_empty() {
        bail!("no trace files (*.csv, *.csv.gz) under the given paths");
    }
    let mut scores: Vec<Vec<AllocationMetrics>> = vec![Vec::new(); POLICIES.len()];
    let (mut skipped, mut predictive_seconds, mut predictive_steps) = (0usize, 0.0f64, 0usize);
    for item in SeriesStream::new(entries, metric, step, Aggregation::Mean) {
        let (id, series, _report) = item?;
        let usage = series.values();
        if usage.len() <= geometry.warmup {
            skipped += 1;
            if !args.json {
                eprintln!(
                    "skipping {id}: {} steps, not longer than the warm-up",
                    usage.len()
                );
            }
            continue;
        }
        let mut row = Vec::with_capacity(POLICIES.len());
        for b in Baseline::ALL {
            row.push(allocate(b, usage, geometry));
        }
        let t0 = Instant::now();
        row.push(policy::replay(usage, &policy, settings));
        predictive_seconds += t0.elapsed().as_secs_f64();
        predictive_steps += usage.len();
        let per_day = day as f64;
        let scored: Option<Vec<_>> = row
            .iter()
            .map(|a| AllocationMetrics::score(usage, a, geometry.warmup, per_day))
            .collect();
        match scored {
            Some(ms) => ms
                .into_iter()
                .enumerate()
                .for_each(|(i, m)| scores[i].push(m)),
            None => {
                skipped += 1;
                if !args.json {
                    eprintln!("skipping {id}: no usage (or no allocation) after the warm-up");
                }
            }
        }
    }
    let mut table = Vec::new();
    for (i, name) in POLICIES.iter().enumerate() {
        let Some(m) = AllocationMetrics::mean(&scores[i]) else {
            continue;
        };
        let line = Line {
            policy: name,
            series: scores[i].len(),
            slack: m.slack,
            shortfall_steps: m.shortfall_steps,
            shortfall_volume: m.shortfall_volume,
            changes_per_day: m.changes_per_day,
            cost_vs_oracle: m.cost_vs_oracle,
        };
        println!("{}", serde_json::to_string(&line)?);
        table.push(line);
    }
    if table.is_empty() {
        bail!("no series could be scored ({skipped} skipped)");
    }
    if !args.json {
        eprintln!(
            "{:<12} {:>6} {:>8} {:>10} {:>10} {:>9} {:>9}",
            "policy", "series", "slack", "short_stp", "short_vol", "chg/day", "cost/orc"
        );
        for l in &table {
            eprintln!(
                "{:<12} {:>6} {:>8.4} {:>10.4} {:>10.4} {:>9.2} {:>9.4}",
                l.policy,
                l.series,
                l.slack,
                l.shortfall_steps,
                l.shortfall_volume,
                l.changes_per_day,
                l.cost_vs_oracle
            );
        }
        let per_series = predictive_seconds / table[0].series.max(1) as f64;
        eprintln!(
            "predictive replay: {predictive_seconds:.2} s in all, {per_series:.3} s per series, {:.2} µs per step; {skipped} skipped",
            predictive_seconds * 1e6 / predictive_steps.max(1) as f64
        );
    }
    Ok(())
}
