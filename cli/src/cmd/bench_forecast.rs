//! `bench forecast`: forecast accuracy and speed, exactly as PROTOCOL.md §1.
//!
//! Each series is resampled to `--freq` by mean with gaps interpolated linearly, the last
//! `--horizon` points are held out, and series shorter than `3 * season + horizon` are skipped.
//! Every model is fitted on the training part only; `seconds` is the wall time of fit and
//! forecast of all series on this one thread (loading excluded). Series are streamed: one is
//! in memory at a time.

use anyhow::{bail, Context};
use predictive_engine::forecast::{forecast, pinball, ForecastParams, ModelKind};
use predictive_engine::series::Aggregation;
use predictive_traces::{discover, parse_duration, Metric, SeriesStream};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Trace files or directories (searched recursively).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Resampling step (`1h`, `5min`, `300s`, …).
    #[arg(long, default_value = "1h")]
    freq: String,
    /// Steps held out and forecast.
    #[arg(long, default_value_t = 48)]
    horizon: usize,
    /// Steps per season.
    #[arg(long, default_value_t = 24)]
    season: usize,
    /// Metric of multi-metric traces (cpu, mem, net-in, net-out, disk-read, disk-write).
    #[arg(long, default_value = "cpu")]
    metric: String,
    /// Comma-separated models (snaive, ets, vpa-hist, calendar-qr, auto).
    #[arg(long, default_value = "snaive,ets,vpa-hist,calendar-qr,auto")]
    models: String,
    /// Print only the JSON lines (otherwise a table follows them on stderr).
    #[arg(long)]
    json: bool,
    /// Also print each series' MASE per model on stderr.
    #[arg(long)]
    per_series: bool,
    /// Use only the first N series (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

/// One JSON line, field names as in PROTOCOL.md §1.
#[derive(Debug, Serialize)]
struct Line {
    model: String,
    series: usize,
    horizon: usize,
    season: usize,
    freq: String,
    mase_mean: f64,
    mase_median: f64,
    scaled_pinball: BTreeMap<&'static str, f64>,
    coverage: BTreeMap<&'static str, f64>,
    seconds: f64,
    series_per_second: f64,
}

/// Per-model accumulators.
#[derive(Debug, Default)]
struct Acc {
    mase: Vec<f64>,
    pin: [Vec<f64>; 3],
    cov80: Vec<f64>,
    cov90: Vec<f64>,
    seconds: f64,
    chosen: BTreeMap<String, usize>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let step = parse_duration(&args.freq).with_context(|| {
        format!(
            "--freq `{}` is not a duration such as 1h or 5min",
            args.freq
        )
    })?;
    let metric: Metric = args.metric.parse()?;
    let models: Vec<ModelKind> = args
        .models
        .split(',')
        .map(|m| m.trim().parse::<ModelKind>())
        .collect::<Result<_, _>>()?;
    if args.horizon == 0 || args.season == 0 {
        bail!("--horizon and --season must be at least 1");
    }
    let (h, m) = (args.horizon, args.season);
    let params: Vec<_> = models
        .iter()
        .map(|&k| {
            ForecastParams::new(h)
                .season(m)
                .model(k)
                .check(step)
                .map(|p| (k, p))
        })
        .collect::<Result<_, _>>()?;
    let mut entries = discover(&args.dirs)?;
    if args.limit > 0 {
        entries.truncate(args.limit);
    }
    let mut acc: Vec<Acc> = models.iter().map(|_| Acc::default()).collect();
    let mut skipped = 0usize;
    for item in SeriesStream::new(entries, metric, step, Aggregation::Mean) {
        let (id, series, _report) = item?;
        if series.len() < 3 * m + h {
            skipped += 1;
            continue;
        }
        let Some((train, test)) = series.split_at(series.len() - h) else {
            skipped += 1;
            continue;
        };
        let (tr, te) = (train.values(), test.values());
        let scale = tr[m..]
            .iter()
            .zip(tr)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / (tr.len() - m) as f64;
        let scale = if scale > 0.0 { scale } else { 1e-9 };
        let mut row = Vec::new();
        for ((kind, p), a) in params.iter().zip(acc.iter_mut()) {
            let t0 = Instant::now();
            let f = forecast(&train, p).with_context(|| format!("model {kind} on {id}"))?;
            a.seconds += t0.elapsed().as_secs_f64();
            *a.chosen.entry(f.model().to_string()).or_default() += 1;
            let q = |l: f64| f.quantile(l).expect("provisioning levels are asked for");
            let (q05, q10, q50, q90, q95) = (q(0.05), q(0.1), q(0.5), q(0.9), q(0.95));
            let n = te.len() as f64;
            let mae = te.iter().zip(q50).map(|(y, p)| (y - p).abs()).sum::<f64>() / n;
            a.mase.push(mae / scale);
            row.push(format!("{kind}={:.3}({})", mae / scale, f.model()));
            for (slot, (lv, pred)) in a.pin.iter_mut().zip([(0.5, q50), (0.9, q90), (0.95, q95)]) {
                let l = te
                    .iter()
                    .zip(pred)
                    .map(|(y, p)| pinball(lv, *y, *p))
                    .sum::<f64>()
                    / n;
                slot.push(l / scale);
            }
            let inside = |lo: &[f64], hi: &[f64]| {
                te.iter()
                    .zip(lo.iter().zip(hi))
                    .filter(|(y, (l, u))| *y >= *l && *y <= *u)
                    .count() as f64
                    / n
            };
            a.cov80.push(inside(q10, q90));
            a.cov90.push(inside(q05, q95));
        }
        if args.per_series {
            eprintln!("{id}: {}", row.join(" "));
        }
    }
    let freq = args.freq.clone();
    for (kind, a) in models.iter().zip(&acc) {
        let line = Line {
            model: kind.name().to_owned(),
            series: a.mase.len(),
            horizon: h,
            season: m,
            freq: freq.clone(),
            mase_mean: mean(&a.mase),
            mase_median: median(&a.mase),
            scaled_pinball: [
                ("0.5", mean(&a.pin[0])),
                ("0.9", mean(&a.pin[1])),
                ("0.95", mean(&a.pin[2])),
            ]
            .into_iter()
            .collect(),
            coverage: [("80", mean(&a.cov80)), ("90", mean(&a.cov90))]
                .into_iter()
                .collect(),
            seconds: a.seconds,
            series_per_second: a.mase.len() as f64 / a.seconds.max(1e-12),
        };
        outln!("{}", serde_json::to_string(&line)?);
    }
    if !args.json {
        eprintln!("skipped {skipped} series shorter than 3*season+horizon");
        eprintln!(
            "{:<12} {:>6} {:>9} {:>9} {:>8} {:>8} {:>8} {:>6} {:>6} {:>10}",
            "model",
            "series",
            "mase",
            "mase_med",
            "pin.5",
            "pin.9",
            "pin.95",
            "cov80",
            "cov90",
            "series/s"
        );
        for (kind, a) in models.iter().zip(&acc) {
            eprintln!(
                "{:<12} {:>6} {:>9.3} {:>9.3} {:>8.3} {:>8.3} {:>8.3} {:>6.3} {:>6.3} {:>10.1}",
                kind.name(),
                a.mase.len(),
                mean(&a.mase),
                median(&a.mase),
                mean(&a.pin[0]),
                mean(&a.pin[1]),
                mean(&a.pin[2]),
                mean(&a.cov80),
                mean(&a.cov90),
                a.mase.len() as f64 / a.seconds.max(1e-12)
            );
            if *kind == ModelKind::Auto {
                eprintln!("  auto chose: {:?}", a.chosen);
            }
        }
    }
    Ok(())
}
