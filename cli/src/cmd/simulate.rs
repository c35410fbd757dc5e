//! `simulate`: replay traces through the whole loop in virtual time.
//!
//! Each trace is resampled to `--step` by mean and replayed through the predictive policy, a
//! unit-based model of the sim cloud (cold boots take `--boot-delay` steps, promotions from the
//! shadow pool `--promote-delay`), catalog prices and the shadow pool. The report gives dollars,
//! slack, shortfall minutes, time to capacity, the pool's cost and what it saved (the same
//! replay without the pool is run for comparison), and churn. `--plot` draws usage, forecast
//! band, active capacity and shadow pool of the first trace.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use predictive_engine::cost::{Catalog, Cloud, Purchase};
use predictive_engine::policy::{AllocatorSettings, PolicyParams};
use predictive_engine::series::Aggregation;
use predictive_engine::simulate::replay::{simulate_with_progress, SimParams, SimPoint, SimReport};
use predictive_traces::{discover, parse_duration, Metric, SeriesStream};
use serde::Serialize;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Trace files or directories (searched recursively).
    #[arg(required = true)]
    traces: Vec<PathBuf>,
    /// Allocation policy (only `predictive` drives the full loop).
    #[arg(long, default_value = "predictive")]
    policy: String,
    /// Cloud model (`sim`: the in-process cloud with boot delays).
    #[arg(long, default_value = "sim")]
    cloud: String,
    /// Price catalog file (default: the embedded catalog).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Cloud whose prices are used.
    #[arg(long, default_value = "aws")]
    price_cloud: String,
    /// Instance type of one unit.
    #[arg(long, default_value = "m5.large")]
    instance_type: String,
    /// Region of the price.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Price of a ready (stopped/hibernated) unit as a share of its running price.
    #[arg(long, default_value_t = 0.05)]
    ready_fraction: f64,
    /// Usage one unit serves, in the trace's unit (default: an eighth of the warm-up peak).
    #[arg(long)]
    unit_capacity: Option<f64>,
    /// Decision step.
    #[arg(long, default_value = "5min")]
    step: String,
    /// Steps from launching a unit to it serving (also the policy's lead).
    #[arg(long, default_value_t = 3)]
    boot_delay: usize,
    /// Steps from promoting a ready unit to it serving.
    #[arg(long, default_value_t = 0)]
    promote_delay: usize,
    /// Warm-up, not scored.
    #[arg(long, default_value = "7d")]
    warmup: String,
    /// Metric of multi-metric traces.
    #[arg(long, default_value = "cpu")]
    metric: String,
    /// Disable the shadow pool.
    #[arg(long)]
    no_shadow: bool,
    /// Shadow pool half-life in steps.
    #[arg(long, default_value_t = 12.0)]
    half_life: f64,
    /// Write a PNG plot of the first trace here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print one JSON object per trace.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Line<'a> {
    series: &'a str,
    unit_capacity: f64,
    hourly_price: f64,
    dollars: f64,
    shadow_dollars: f64,
    slack: f64,
    shortfall_minutes: f64,
    shortfall_volume: f64,
    mean_time_to_capacity_minutes: f64,
    changes_per_day: f64,
    promoted: u64,
    released: u64,
    cold_boots: u64,
    shortfall_minutes_avoided: f64,
    time_to_capacity_saved_minutes: f64,
    dollars_vs_no_pool: f64,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.policy != "predictive" {
        bail!("--policy: `{}` is not supported here; the full loop runs `predictive` (compare baselines with `bench allocate`)", args.policy);
    }
    if args.cloud != "sim" {
        bail!(
            "--cloud: `{}` is not supported; only `sim` replays in virtual time",
            args.cloud
        );
    }
    let step = parse_duration(&args.step)
        .with_context(|| format!("--step: cannot read `{}` as a duration", args.step))?;
    let warmup = parse_duration(&args.warmup)
        .with_context(|| format!("--warmup: cannot read `{}` as a duration", args.warmup))?;
    let metric: Metric = args.metric.parse().context("--metric")?;
    if !(0.0..=1.0).contains(&args.ready_fraction) {
        bail!(
            "--ready-fraction: must lie in [0, 1], got {}",
            args.ready_fraction
        );
    }
    let hourly_price = price(&args)?;
    let policy = PolicyParams::default()
        .lead(args.boot_delay.max(1))
        .check()
        .context("policy")?;
    let settings = AllocatorSettings::for_step(step as u64);
    let shadow = if args.no_shadow {
        None
    } else {
        Some(
            predictive_engine::shadow::ShadowParams {
                half_life: args.half_life,
                ..Default::default()
            }
            .check()
            .context("--half-life")?,
        )
    };
    let entries = discover(&args.traces).context("discovering traces")?;
    if entries.is_empty() {
        bail!("no trace files (*.csv, *.csv.gz) under the given paths");
    }
    let warmup_steps = usize::try_from(warmup / step).unwrap_or(0);
    let mut plotted = false;
    for item in SeriesStream::new(entries, metric, step, Aggregation::Mean) {
        let (id, series, _) = item?;
        let usage = series.values();
        if usage.len() <= warmup_steps {
            eprintln!(
                "skipping {id}: {} steps, not longer than the warm-up",
                usage.len()
            );
            continue;
        }
        let unit = match args.unit_capacity {
            Some(u) => u,
            None => {
                let peak = usage[..warmup_steps.max(1)]
                    .iter()
                    .copied()
                    .fold(0.0, f64::max);
                if peak > 0.0 {
                    peak / 8.0
                } else {
                    1.0
                }
            }
        };
        let sim = SimParams {
            step_seconds: step as u64,
            boot_delay: args.boot_delay,
            promote_delay: args.promote_delay,
            unit_capacity: unit,
            hourly_price,
            ready_hourly_price: hourly_price * args.ready_fraction,
            min_units: 1,
            max_units: 10_000,
            warmup: warmup_steps,
        }
        .check()
        .context("simulation parameters")?;
        let bar = progress_bar(
            usage.len() as u64 * if shadow.is_some() { 2 } else { 1 },
            &id,
        );
        let mut done = 0u64;
        let base = simulate_with_progress(usage, &policy, settings, &sim, None, &mut |n| {
            bar.set_position(n as u64)
        })?;
        done += usage.len() as u64;
        let with = match &shadow {
            Some(s) => Some(simulate_with_progress(
                usage,
                &policy,
                settings,
                &sim,
                Some(s),
                &mut |n| bar.set_position(done + n as u64),
            )?),
            None => None,
        };
        bar.finish_and_clear();
        let r = with.as_ref().unwrap_or(&base);
        let line = Line {
            series: &id,
            unit_capacity: unit,
            hourly_price,
            dollars: r.dollars,
            shadow_dollars: r.shadow_dollars,
            slack: r.slack,
            shortfall_minutes: r.shortfall_minutes,
            shortfall_volume: r.shortfall_volume,
            mean_time_to_capacity_minutes: r.mean_time_to_capacity_minutes,
            changes_per_day: r.changes_per_day,
            promoted: r.pool.promoted,
            released: r.pool.released,
            cold_boots: r.cold_boots,
            shortfall_minutes_avoided: base.shortfall_minutes - r.shortfall_minutes,
            time_to_capacity_saved_minutes: base.mean_time_to_capacity_minutes
                - r.mean_time_to_capacity_minutes,
            dollars_vs_no_pool: r.dollars - base.dollars,
        };
        if args.json {
            println!("{}", serde_json::to_string(&line)?);
        } else {
            print_report(&line, r);
        }
        if let (Some(path), false) = (&args.plot, plotted) {
            plot(path, &id, &r.points, warmup_steps)
                .with_context(|| format!("writing the plot {}", path.display()))?;
            plotted = true;
            if !args.json {
                println!("  plot written to {}", path.display());
            }
        }
    }
    Ok(())
}

fn price(args: &Args) -> anyhow::Result<f64> {
    let owned;
    let catalog = match &args.catalog {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the catalog {}", p.display()))?;
            owned = Catalog::from_text(&text)
                .with_context(|| format!("parsing the catalog {}", p.display()))?;
            &owned
        }
        None => Catalog::embedded(),
    };
    let cloud: Cloud = args.price_cloud.parse().context("--price-cloud")?;
    let ti = catalog
        .types()
        .iter()
        .position(|t| t.cloud == cloud && t.name == args.instance_type)
        .with_context(|| {
            format!(
                "--instance-type: `{}` is not in the {} catalog",
                args.instance_type, args.price_cloud
            )
        })?;
    let offer = catalog
        .offers()
        .iter()
        .find(|o| {
            o.type_index as usize == ti
                && catalog
                    .regions()
                    .get(o.region_index as usize)
                    .is_some_and(|r| r.cloud == cloud && r.name == args.region)
        })
        .with_context(|| {
            format!(
                "--region: no price for `{}` in `{}`",
                args.instance_type, args.region
            )
        })?;
    offer.price(Purchase::OnDemand).with_context(|| {
        format!(
            "no on-demand price for `{}` in `{}`",
            args.instance_type, args.region
        )
    })
}

fn progress_bar(len: u64, id: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} steps ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(id.to_owned());
    bar
}

fn print_report(l: &Line<'_>, r: &SimReport) {
    println!(
        "{} ({} scored steps, unit = {:.4} at ${:.4}/h)",
        l.series, r.steps, l.unit_capacity, l.hourly_price
    );
    println!(
        "  dollars            {:>12.2}  (shadow pool {:.2}, {:+.2} vs no pool)",
        l.dollars, l.shadow_dollars, l.dollars_vs_no_pool
    );
    println!("  slack              {:>12.4}", l.slack);
    println!(
        "  shortfall minutes  {:>12.0}  ({:.0} avoided by the pool)",
        l.shortfall_minutes, l.shortfall_minutes_avoided
    );
    println!("  shortfall volume   {:>12.4}", l.shortfall_volume);
    println!(
        "  time to capacity   {:>12.2} min  ({:.2} min saved by the pool)",
        l.mean_time_to_capacity_minutes, l.time_to_capacity_saved_minutes
    );
    println!(
        "  pool               {:>12} promoted, {} released, {} cold boots",
        l.promoted, l.released, l.cold_boots
    );
    println!(
        "  churn              {:>12.2} changes/day",
        l.changes_per_day
    );
}

fn plot(
    path: &std::path::Path,
    id: &str,
    points: &[SimPoint],
    warmup: usize,
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    // Show up to the last two weeks after the warm-up, one pixel column per step at most.
    let from = warmup.max(points.len().saturating_sub(14 * 288));
    let pts = &points[from..];
    if pts.is_empty() {
        bail!("nothing to plot after the warm-up");
    }
    let ymax = pts
        .iter()
        .flat_map(|p| [p.usage, p.active + p.shadow, p.forecast_high])
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        * 1.05;
    let root = BitMapBackend::new(path, (1600, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{id}: usage, forecast band, allocation and shadow pool"),
            ("sans-serif", 22),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0..pts.len(), 0.0..ymax.max(1e-9))?;
    chart
        .configure_mesh()
        .x_desc("step after warm-up (5 min)")
        .y_desc("usage")
        .draw()?;
    let band: Vec<(usize, f64, f64)> = pts
        .iter()
        .enumerate()
        .filter(|(_, p)| p.forecast_low.is_finite() && p.forecast_high.is_finite())
        .map(|(i, p)| (i, p.forecast_low.max(0.0), p.forecast_high))
        .collect();
    for w in band.windows(2) {
        let (a, b) = (w[0], w[1]);
        chart.draw_series(std::iter::once(Polygon::new(
            vec![(a.0, a.1), (b.0, b.1), (b.0, b.2), (a.0, a.2)],
            RGBColor(200, 215, 240).mix(0.6).filled(),
        )))?;
    }
    let shadow = RGBColor(230, 140, 30);
    chart
        .draw_series(LineSeries::new(
            pts.iter()
                .enumerate()
                .map(|(i, p)| (i, p.active + p.shadow)),
            shadow.stroke_width(1),
        ))?
        .label("allocation + shadow pool")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], shadow));
    chart
        .draw_series(LineSeries::new(
            pts.iter().enumerate().map(|(i, p)| (i, p.usage)),
            BLACK.stroke_width(1),
        ))?
        .label("usage")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .draw_series(LineSeries::new(
            pts.iter().enumerate().map(|(i, p)| (i, p.active)),
            BLUE.stroke_width(2),
        ))?
        .label("active allocation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0, 0.0), (0, 0.0)],
            RGBColor(200, 215, 240).filled(),
        )))?
        .label("forecast band (q0.1 .. quantile used)")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 20, y + 5)],
                RGBColor(200, 215, 240).filled(),
            )
        });
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
