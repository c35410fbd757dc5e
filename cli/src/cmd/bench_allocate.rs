//! `bench allocate`: allocation efficiency of the policies, exactly as PROTOCOL.md §2.
//!
//! Each series is resampled to `--step` by mean (gaps interpolated linearly). Every policy
//! decides `a[t]` from usage up to `t − lead` only; the first `--warmup` is not scored. One JSON
//! line per policy holds the means over series of slack, shortfall_steps, shortfall_volume,
//! changes_per_day and cost_vs_oracle; `series` is the number of series scored. Series are
//! streamed: one is in memory at a time.
//!
//! `--hindsight` adds, after the policies, one JSON line per hindsight reference
//! (`engine::simulate::hindsight`): the least mean slack over the same series at `vpa`'s mean
//! shortfall rate for an allocation that knows each series' distribution in advance. They are
//! not policies; they tell how far the targets are from what the series allow.

use anyhow::{bail, Context};
use predictive_engine::policy::{self, AllocatorSettings, PolicyParams};
use predictive_engine::series::Aggregation;
use predictive_engine::simulate::baselines::{allocate, Baseline, Geometry};
use predictive_engine::simulate::hindsight::{self, Fit, Frontier, Knowledge};
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
    /// Also print the hindsight references (not policies: they know each series'
    /// distribution in advance) at `vpa`'s mean shortfall rate.
    #[arg(long)]
    hindsight: bool,
}

/// One JSON line of a hindsight reference.
#[derive(Debug, Serialize)]
struct ReferenceLine {
    reference: &'static str,
    series: usize,
    /// The mean shortfall rate it may spend (`vpa`'s).
    shortfall_budget: f64,
    slack: f64,
    shortfall_steps: f64,
}

/// The hindsight references in output order: name, what it knows, where it reads it.
const REFERENCES: [(&str, Knowledge, Fit); 3] = [
    ("hindsight-constant", Knowledge::Constant, Fit::InSample),
    ("hindsight-recent", Knowledge::Recent, Fit::InSample),
    (
        "hindsight-recent-crossfit",
        Knowledge::Recent,
        Fit::CrossFit,
    ),
];

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

/// What a run measured: one line per policy, one per hindsight reference (with
/// `--hindsight`), and the predictive replay's timing.
struct Evaluation {
    table: Vec<Line>,
    references: Vec<ReferenceLine>,
    skipped: usize,
    predictive_seconds: f64,
    predictive_steps: usize,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let Evaluation {
        table,
        references,
        skipped,
        predictive_seconds,
        predictive_steps,
    } = evaluate(&args)?;
    for line in &table {
        outln!("{}", serde_json::to_string(line)?);
    }
    for line in &references {
        outln!("{}", serde_json::to_string(line)?);
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
        for r in &references {
            eprintln!(
                "{:<26} {:>6} slack {:.4} at shortfall_steps {:.4} (budget: vpa's {:.4})",
                r.reference, r.series, r.slack, r.shortfall_steps, r.shortfall_budget
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

/// Scores every policy (and with `--hindsight` every reference) on the series of `args`.
fn evaluate(args: &Args) -> anyhow::Result<Evaluation> {
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
    let mut frontiers: Vec<Vec<Frontier>> = vec![Vec::new(); REFERENCES.len()];
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
            Some(ms) => {
                ms.into_iter()
                    .enumerate()
                    .for_each(|(i, m)| scores[i].push(m));
                if args.hindsight {
                    for (i, (_, knowledge, fit)) in REFERENCES.iter().enumerate() {
                        // A series too short for a reference is left out of that reference.
                        frontiers[i].extend(hindsight::frontier(usage, geometry, *knowledge, *fit));
                    }
                }
            }
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
        table.push(Line {
            policy: name,
            series: scores[i].len(),
            slack: m.slack,
            shortfall_steps: m.shortfall_steps,
            shortfall_volume: m.shortfall_volume,
            changes_per_day: m.changes_per_day,
            cost_vs_oracle: m.cost_vs_oracle,
        });
    }
    if table.is_empty() {
        bail!("no series could be scored ({skipped} skipped)");
    }
    let mut references = Vec::new();
    if args.hindsight {
        let vpa = POLICIES
            .iter()
            .position(|p| *p == "vpa")
            .expect("vpa is a policy");
        let budget = AllocationMetrics::mean(&scores[vpa]).map_or(0.0, |m| m.shortfall_steps);
        for ((name, _, _), f) in REFERENCES.iter().zip(&frontiers) {
            if let Some(best) = hindsight::best_mean(f, budget) {
                references.push(ReferenceLine {
                    reference: name,
                    series: f.len(),
                    shortfall_budget: budget,
                    slack: best.slack,
                    shortfall_steps: best.shortfall_steps,
                });
            }
        }
    }
    Ok(Evaluation {
        table,
        references,
        skipped,
        predictive_seconds,
        predictive_steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn evaluate_excerpts(extra: &[&str]) -> Evaluation {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/allocate");
        let mut argv = vec!["bench", dir, "--json"];
        argv.extend(extra);
        evaluate(&Cli::try_parse_from(argv).unwrap().args).unwrap()
    }

    #[test]
    fn hindsight_references_should_spend_no_more_than_vpas_shortfall_rate() {
        let e = evaluate_excerpts(&["--hindsight"]);
        let vpa = e.table.iter().find(|l| l.policy == "vpa").unwrap();
        let names: Vec<&str> = e.references.iter().map(|r| r.reference).collect();
        assert_eq!(names, REFERENCES.map(|r| r.0));
        for r in &e.references {
            assert_eq!(r.series, 2, "{}", r.reference);
            assert_eq!(r.shortfall_budget, vpa.shortfall_steps);
            assert!(
                r.shortfall_steps <= r.shortfall_budget + 1e-12,
                "{}",
                r.reference
            );
            assert!((0.0..1.0).contains(&r.slack), "{}", r.reference);
        }
        // Knowing the next value's distribution given the recent past, read from the same
        // steps, leaves less slack than knowing only the whole period's distribution.
        assert!(e.references[1].slack < e.references[0].slack);
        // Without the flag the output is the protocol's alone.
        assert!(evaluate_excerpts(&[]).references.is_empty());
    }
}
