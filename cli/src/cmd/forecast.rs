//! `forecast`: calibrated quantile forecast of one series, as a table, JSON, CSV or a PNG plot.

use anyhow::{bail, Context};
use predictive_engine::forecast::{forecast, Forecast, ForecastParams, ModelKind};
use predictive_engine::series::{Aggregation, Series};
use predictive_traces::{load, parse_duration, Entry, Metric};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A trace file: canonical `timestamp,value` CSV or Bitbrains, optionally `.gz`.
    file: PathBuf,
    /// Metric of multi-metric traces (cpu, mem, net-in, net-out, disk-read, disk-write).
    #[arg(long, default_value = "cpu")]
    metric: String,
    /// Resampling step (`1h`, `5min`, …); samples are averaged per step.
    #[arg(long, default_value = "1h")]
    freq: String,
    /// Steps to forecast.
    #[arg(long, default_value_t = 48)]
    horizon: usize,
    /// Steps per season (default: one day).
    #[arg(long)]
    season: Option<usize>,
    /// Comma-separated quantile levels.
    #[arg(long, default_value = "0.05,0.1,0.5,0.9,0.95,0.99")]
    quantiles: String,
    /// Model (snaive, ets, vpa-hist, calendar-qr, auto).
    #[arg(long, default_value = "auto")]
    model: String,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV (`timestamp,q0.05,…`).
    #[arg(long)]
    csv: bool,
    /// Also draw history, median and shaded intervals into this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// History steps shown in the plot (default: seven seasons).
    #[arg(long)]
    plot_history: Option<usize>,
}

/// The JSON output.
#[derive(Debug, Serialize)]
struct Out<'a> {
    file: String,
    model: &'a str,
    step: i64,
    history_points: usize,
    levels: &'a [f64],
    timestamps: Vec<String>,
    quantiles: BTreeMap<String, &'a [f64]>,
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
    let model: ModelKind = args.model.parse()?;
    let levels: Vec<f64> = args
        .quantiles
        .split(',')
        .map(|q| {
            q.trim()
                .parse::<f64>()
                .with_context(|| format!("--quantiles: `{q}` is not a number"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut p = ForecastParams::new(args.horizon)
        .model(model)
        .levels(levels);
    if let Some(s) = args.season {
        p = p.season(s);
    }
    let params = p.check(step).context("invalid forecast parameters")?;
    let entry = Entry {
        id: args.file.display().to_string(),
        files: vec![args.file.clone()],
    };
    let (series, report) = load(&entry, metric, step, Aggregation::Mean)?;
    if !report.is_clean() {
        eprintln!(
            "note: {} samples: {} non-finite dropped, {} out of order sorted, {} duplicates dropped, {} empty steps interpolated, {} negative kept",
            report.samples, report.non_finite, report.out_of_order, report.duplicates, report.gaps_filled, report.negatives
        );
    }
    let f = forecast(&series, &params)?;
    if args.json {
        let out = Out {
            file: args.file.display().to_string(),
            model: f.model().name(),
            step,
            history_points: series.len(),
            levels: f.levels().as_slice(),
            timestamps: (0..f.horizon()).map(|i| fmt_ts(f.timestamp(i))).collect(),
            quantiles: f
                .levels()
                .as_slice()
                .iter()
                .zip(f.values())
                .map(|(l, v)| (l.to_string(), &v[..]))
                .collect(),
        };
        outln!("{}", serde_json::to_string(&out)?);
    } else {
        let sep = if args.csv { "," } else { "  " };
        let head: Vec<String> = f
            .levels()
            .as_slice()
            .iter()
            .map(|l| format!("q{l}"))
            .collect();
        if args.csv {
            outln!("timestamp,{}", head.join(","));
        } else {
            outln!(
                "# {} steps of {} s after {} history points, model {}",
                f.horizon(),
                step,
                series.len(),
                f.model()
            );
            outln!(
                "{:<19}{sep}{}",
                "timestamp",
                head.iter()
                    .map(|h| format!("{h:>12}"))
                    .collect::<Vec<_>>()
                    .join(sep)
            );
        }
        for i in 0..f.horizon() {
            let vals: Vec<String> = f
                .values()
                .iter()
                .map(|r| {
                    if args.csv {
                        format!("{}", r[i])
                    } else {
                        format!("{:>12.4}", r[i])
                    }
                })
                .collect();
            outln!("{}{sep}{}", fmt_ts(f.timestamp(i)), vals.join(sep));
        }
    }
    if let Some(path) = &args.plot {
        let shown = args.plot_history.unwrap_or(7 * params.season());
        plot(path, &series, &f, shown)
            .with_context(|| format!("cannot draw {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a unix timestamp.
fn fmt_ts(ts: i64) -> String {
    predictive_engine::civil::CivilTime::from_unix(ts).to_sql()
}

/// Draws the last `shown` history points (black), the median (blue line) and the intervals
/// between symmetric pairs of levels (shaded, lighter for wider). No text is drawn, so no
/// font is needed; the time axis has a faint line at each midnight UTC and the value axis one
/// at zero.
fn plot(path: &Path, history: &Series, f: &Forecast, shown: usize) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let hist = history.tail(shown.max(1)).context("empty history")?;
    let hv: Vec<(i64, f64)> = hist.iter().collect();
    let fx: Vec<i64> = (0..f.horizon()).map(|i| f.timestamp(i)).collect();
    let all = f.values().iter().flatten().chain(hv.iter().map(|p| &p.1));
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
        (a.min(v), b.max(v))
    });
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let (y0, y1) = (lo - pad, hi + pad);
    let (x0, x1) = (hv[0].0, *fx.last().unwrap_or(&hv[0].0));
    if x1 <= x0 {
        bail!("nothing to plot");
    }
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(15)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let grid = RGBColor(225, 225, 225);
    let mut day = x0.div_euclid(86_400) * 86_400;
    while day <= x1 {
        if day >= x0 {
            chart.draw_series(LineSeries::new([(day, y0), (day, y1)], grid))?;
        }
        day += 86_400;
    }
    if y0 < 0.0 && y1 > 0.0 {
        chart.draw_series(LineSeries::new([(x0, 0.0), (x1, 0.0)], grid))?;
    }
    chart.draw_series(LineSeries::new(
        [(fx[0], y0), (fx[0], y1)],
        RGBColor(160, 160, 160),
    ))?;
    let vals = f.values();
    let n = vals.len();
    for k in 0..n / 2 {
        let (low, high) = (&vals[k], &vals[n - 1 - k]);
        let mut poly: Vec<(i64, f64)> = fx.iter().copied().zip(high.iter().copied()).collect();
        poly.extend(fx.iter().rev().copied().zip(low.iter().rev().copied()));
        let alpha = 0.15 + 0.2 * k as f64;
        chart.draw_series(std::iter::once(Polygon::new(
            poly,
            RGBColor(30, 100, 200).mix(alpha.min(0.6)).filled(),
        )))?;
    }
    chart.draw_series(LineSeries::new(hv.iter().copied(), BLACK.stroke_width(1)))?;
    let mid = f.median().unwrap_or(&vals[n / 2]);
    chart.draw_series(LineSeries::new(
        fx.iter().copied().zip(mid.iter().copied()),
        RGBColor(20, 60, 160).stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_should_draw_a_png_from_a_real_excerpt() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("f.png");
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/traces/nab/realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv");
        let args = Args {
            file,
            metric: "cpu".into(),
            freq: "5min".into(),
            horizon: 24,
            season: Some(72),
            quantiles: "0.1,0.5,0.9".into(),
            model: "auto".into(),
            json: false,
            csv: true,
            plot: Some(png.clone()),
            plot_history: None,
        };
        run(args).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        assert!(bytes.len() > 1000);
    }

    #[test]
    fn a_bad_quantile_should_be_reported() {
        let args = Args {
            file: PathBuf::from("unused.csv"),
            metric: "cpu".into(),
            freq: "1h".into(),
            horizon: 4,
            season: None,
            quantiles: "0.5,1.5".into(),
            model: "auto".into(),
            json: false,
            csv: false,
            plot: None,
            plot_history: None,
        };
        let err = format!("{:#}", run(args).unwrap_err());
        assert!(err.contains("quantile level 1.5"), "{err}");
    }

    #[test]
    fn timestamps_should_format_as_utc() {
        assert_eq!(fmt_ts(0), "1970-01-01 00:00:00");
        assert_eq!(fmt_ts(1_392_388_200), "2014-02-14 14:30:00");
        assert_eq!(fmt_ts(951_868_800), "2000-03-01 00:00:00");
    }
}
