//! `simulate`: replay traces through the whole loop in virtual time.
//!
//! Two paths:
//! - `--model port` (default): the traces drive the real `sim` cloud through the
//!   `CloudProvider` port ([`crate::replay`]): launches, stops, starts and terminations of a
//!   catalog instance type, boot delays, the shadow pool's stopped instances, billing from the
//!   sim's prices. Every policy can run, several traces can share a budget (`--budget`).
//! - `--model engine`: the engine's unit model of the cloud
//!   ([`predictive_engine::simulate::replay`]), predictive policy only, faster.
//!
//! Each run is made with and without the shadow pool (unless `--no-shadow`) so the report says
//! what the pool cost and what it saved. `--plot` draws usage, forecast band, active capacity
//! and shadow pool of the first trace.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use predictive_clouds::sim::{SimBilling, SimOffer};
use predictive_engine::cost::{size, Catalog, Cloud, Demand, Purchase, SizingParams, SpotRisk};
use predictive_engine::policy::budget::{BudgetShare, UnitBudget};
use predictive_engine::policy::purchase::SpotSplit;
use predictive_engine::policy::{AllocatorSettings, PolicyParams};
use predictive_engine::series::Aggregation;
use predictive_engine::shadow::ShadowParams;
use predictive_engine::simulate::replay::{simulate_with_progress, SimParams, SimPoint};
use predictive_traces::{discover, parse_duration, Metric, SeriesStream};
use serde::Serialize;

use crate::replay::{replay, LaneReport, PolicyKind, ReplayConfig, ReplayReport, Workload};

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Trace files or directories (searched recursively).
    #[arg(required = true)]
    traces: Vec<PathBuf>,
    /// Policies, comma-separated: predictive, vpa, window-max, reactive, peak-static, or `all`.
    #[arg(long, default_value = "predictive")]
    policy: String,
    /// Cloud (`sim`: the in-process cloud with boot delays, in virtual time).
    #[arg(long, default_value = "sim")]
    cloud: String,
    /// Cloud model: `port` drives the sim cloud through the CloudProvider port; `engine` uses
    /// the engine's faster unit model (predictive policy only, no budget).
    #[arg(long, default_value = "port")]
    model: String,
    /// Price catalog file (default: the embedded catalog).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Cloud whose catalog types and prices are used.
    #[arg(long, default_value = "aws")]
    price_cloud: String,
    /// Instance type of one unit (default: the cheapest type the cost engine finds for
    /// `--unit-vcpus` and `--unit-mem-gib`).
    #[arg(long)]
    instance_type: Option<String>,
    /// vCPUs of one unit, when the cost engine picks the type.
    #[arg(long, default_value_t = 2.0)]
    unit_vcpus: f64,
    /// Memory (GiB) of one unit, when the cost engine picks the type.
    #[arg(long, default_value_t = 8.0)]
    unit_mem_gib: f64,
    /// Region of the price.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// `--model engine` only: price of a ready (stopped/hibernated) unit as a share of its
    /// running price. The port model bills from the sim's ledger instead.
    #[arg(long, default_value_t = 0.05)]
    ready_fraction: f64,
    /// Root volume of every instance, GiB: what a stopped instance still pays for (port model).
    #[arg(long, default_value_t = 20.0)]
    root_volume_gib: f64,
    /// Block storage price, USD per GiB-month (default: EBS gp3, us-east-1): the root volume in
    /// every state and a hibernated instance's RAM image (port model).
    #[arg(long, default_value_t = 0.08)]
    storage_gib_month: f64,
    /// Usage one unit serves, in the trace's unit (default: an eighth of the warm-up peak).
    #[arg(long)]
    unit_capacity: Option<f64>,
    /// Fewest active units per trace.
    #[arg(long, default_value_t = 1)]
    min_units: u32,
    /// Most active units per trace.
    #[arg(long, default_value_t = 1000)]
    max_units: u32,
    /// Decision step.
    #[arg(long, default_value = "5min")]
    step: String,
    /// Steps from launching a unit to it serving (also the policy's lead).
    #[arg(long, default_value_t = 3)]
    boot_delay: usize,
    /// Steps from promoting a ready unit to it serving (`--model engine` only; the sim resumes
    /// within a step).
    #[arg(long, default_value_t = 0)]
    promote_delay: usize,
    /// Warm-up, not scored.
    #[arg(long, default_value = "7d")]
    warmup: String,
    /// Metric of multi-metric traces.
    #[arg(long, default_value = "cpu")]
    metric: String,
    /// Disable the shadow pool (one run per policy instead of two).
    #[arg(long)]
    no_shadow: bool,
    /// Shadow pool half-life in steps (default: learnt from the spacing of the warm-up's peaks
    /// with the port model, 12 with the engine model or when the warm-up has too few peaks).
    #[arg(long)]
    half_life: Option<f64>,
    /// Dollars one shortfall minute is worth avoiding: the pool keeps and launches only units
    /// whose expected avoided shortfall is worth more than their bill (port model).
    #[arg(long, default_value_t = DEFAULT_SHORTFALL_VALUE)]
    shortfall_value: f64,
    /// Most ready instances as a share of the active ones (port model).
    #[arg(long, default_value_t = DEFAULT_POOL_SHARE)]
    pool_share: f64,
    /// Hourly budget (USD) shared by all traces: capacity is cut by priority, never below floors.
    #[arg(long)]
    budget: Option<f64>,
    /// Priority weights, comma-separated, one per trace in order (or one for all). Default 1.
    #[arg(long)]
    priorities: Option<String>,
    /// Floors (shares of desired capacity always kept, 0..=1), comma-separated, one per trace
    /// in order (or one for all). Default 0.
    #[arg(long)]
    floors: Option<String>,
    /// Share (0..=1) of each step's units that may be bought as spot: the cost engine splits
    /// the units between on-demand and spot (spot priced with its interruption risk) within
    /// this cap. 0 (the default) buys on-demand only; above 0 each policy also runs
    /// on-demand only so the report gives the bill with and without spot (port model).
    #[arg(long, default_value_t = 0.0)]
    spot_share_cap: f64,
    /// Spot interruptions in the sim: the share of spot instances reclaimed per month of
    /// running (default: the cost engine's AWS rate, 10 %, the upper edge of the Spot Instance
    /// Advisor's "5-10 %" band). Also prices spot's risk in the split.
    #[arg(long)]
    spot_interruptions_per_month: Option<f64>,
    /// Keep and top up pool units at the stated `--shortfall-value` only, without discounting
    /// it by the pool's own record of avoided shortfall against its bill (port model).
    #[arg(long)]
    no_pool_record: bool,
    /// Seed of the sim cloud.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write a PNG plot of the first trace here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print one JSON object per trace and policy.
    #[arg(long)]
    json: bool,
}

/// Default value of a shortfall minute, USD (chosen on half of the NAB files, see
/// docs/policy.md).
const DEFAULT_SHORTFALL_VALUE: f64 = 0.02;
/// Default cap of the pool as a share of the active instances.
const DEFAULT_POOL_SHARE: f64 = 0.5;

/// The instance type of one unit and its on-demand price.
struct Unit {
    offer: SimOffer,
    cloud: Cloud,
    price: f64,
    catalog: Catalog,
}

#[derive(Debug, Serialize)]
struct Line<'a> {
    model: &'static str,
    instance_type: &'a str,
    #[serde(flatten)]
    lane: &'a LaneReport,
    /// Shortfall minutes without the pool minus with it.
    shortfall_minutes_avoided: Option<f64>,
    /// Mean time to capacity without the pool minus with it.
    time_to_capacity_saved_minutes: Option<f64>,
    /// Dollars with the pool minus without it.
    dollars_vs_no_pool: Option<f64>,
    /// The spot share cap of the run (0: on-demand only).
    spot_share_cap: f64,
    /// Spot interruptions per instance-month in the sim.
    spot_interruptions_per_month: f64,
    /// With spot allowed: the same run's dollars with on-demand only.
    dollars_without_spot: Option<f64>,
    /// With spot allowed: the same run's shortfall minutes with on-demand only.
    shortfall_minutes_without_spot: Option<f64>,
    instances_requested: u64,
    sim_launches: u64,
    orphans: usize,
    /// Attempts resent after a retryable error.
    retries: u64,
    /// Launch attempts that failed.
    failed_launch_attempts: u64,
    budget_cap: Option<f64>,
    peak_hourly_bill: f64,
    budget_exceeded_steps: u64,
    replay_seconds: f64,
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.cloud != "sim" {
        bail!(
            "--cloud: `{}` is not supported; only `sim` replays in virtual time",
            args.cloud
        );
    }
    let policies = parse_policies(&args.policy)?;
    let engine_model = match args.model.as_str() {
        "port" => false,
        "engine" => true,
        other => bail!("--model: `{other}` is not a model (expected `port` or `engine`)"),
    };
    if engine_model
        && (policies != [PolicyKind::Predictive]
            || args.budget.is_some()
            || args.spot_share_cap > 0.0)
    {
        bail!("--model engine: runs the predictive policy only and takes no --budget or --spot-share-cap; use --model port");
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
    for (flag, v) in [
        ("--root-volume-gib", args.root_volume_gib),
        ("--storage-gib-month", args.storage_gib_month),
        ("--shortfall-value", args.shortfall_value),
        ("--pool-share", args.pool_share),
        (
            "--spot-interruptions-per-month",
            args.spot_interruptions_per_month.unwrap_or(0.0),
        ),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            bail!("{flag}: must be a non-negative number, got {v}");
        }
    }
    if args.boot_delay == 0 {
        bail!("--boot-delay: must be at least 1 step");
    }
    if args.min_units > args.max_units {
        bail!(
            "--min-units: {} is above --max-units {}",
            args.min_units,
            args.max_units
        );
    }
    if let Some(u) = args.unit_capacity {
        if !(u > 0.0 && u.is_finite()) {
            bail!("--unit-capacity: must be a positive number, got {u}");
        }
    }
    if let Some(b) = args.budget {
        if !(b > 0.0 && b.is_finite()) {
            bail!("--budget: must be a positive amount per hour, got {b}");
        }
    }
    if !(0.0..=1.0).contains(&args.spot_share_cap) {
        bail!(
            "--spot-share-cap: must lie in [0, 1], got {}",
            args.spot_share_cap
        );
    }
    let unit = unit(&args)?;
    let per_month = args
        .spot_interruptions_per_month
        .unwrap_or(SpotRisk::default().aws_per_month);
    let spot = if args.spot_share_cap > 0.0 {
        if unit.offer.spot_per_hour.is_none() {
            bail!(
                "--spot-share-cap: the catalog has no spot price for `{}` in `{}`",
                unit.offer.info.name,
                args.region
            );
        }
        let risk = SpotRisk {
            aws_per_month: per_month,
            azure_per_month: per_month,
            gcp_per_month: per_month,
            ..SpotRisk::default()
        };
        Some(
            SpotSplit::new(
                &unit.catalog,
                unit.cloud,
                unit.offer.info.name.as_str(),
                &args.region,
                args.spot_share_cap,
                risk,
            )
            .context("--spot-share-cap")?,
        )
    } else {
        None
    };
    let policy = PolicyParams::default()
        .lead(args.boot_delay)
        .check()
        .context("policy")?;
    let settings = AllocatorSettings::for_step(step as u64);
    let shadow = if args.no_shadow {
        None
    } else {
        Some(
            ShadowParams {
                half_life: args.half_life.unwrap_or(ShadowParams::default().half_life),
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
    let mut workloads = Vec::new();
    for item in SeriesStream::new(entries, metric, step, Aggregation::Mean) {
        let (id, series, _) = item?;
        let usage = series.values().to_vec();
        if usage.len() <= warmup_steps {
            eprintln!(
                "skipping {id}: {} steps, not longer than the warm-up",
                usage.len()
            );
            continue;
        }
        let unit_capacity = match args.unit_capacity {
            Some(u) => u,
            None => {
                let peak = usage[..warmup_steps.max(1)]
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .fold(0.0, f64::max);
                if peak > 0.0 {
                    peak / 8.0
                } else {
                    1.0
                }
            }
        };
        workloads.push(Workload {
            name: id,
            usage,
            unit_capacity,
            min_units: args.min_units,
            max_units: args.max_units,
        });
    }
    if workloads.is_empty() {
        bail!(
            "no trace is longer than the warm-up (--warmup {})",
            args.warmup
        );
    }
    let budget = match args.budget {
        Some(cap) => Some(budget(&args, &unit, cap, &workloads)?),
        None => None,
    };
    if engine_model {
        return run_engine(&args, &unit, &workloads, step as u64, warmup_steps, shadow);
    }
    let total: u64 = workloads.iter().map(|w| w.usage.len() as u64).sum::<u64>()
        * policies.len() as u64
        * (u64::from(shadow.is_some()) + 1 + u64::from(spot.is_some()));
    let bar = progress_bar(total, "simulate");
    let mut done = 0u64;
    let mut plotted = false;
    let mut summary = Vec::new();
    for &kind in &policies {
        let cfg = ReplayConfig {
            policy: kind,
            params: policy.clone(),
            settings,
            step_seconds: step as u64,
            boot_steps: args.boot_delay,
            warmup: warmup_steps,
            offer: unit.offer.clone(),
            billing: SimBilling {
                root_volume_gib: args.root_volume_gib,
                storage_per_gib_month: args.storage_gib_month,
                ..SimBilling::default()
            },
            shadow: None,
            learn_half_life: args.half_life.is_none(),
            shortfall_value: args.shortfall_value,
            pool_share: args.pool_share,
            seed: args.seed,
            spot: spot.clone(),
            spot_interruptions_per_month: per_month,
            pool_record: !args.no_pool_record,
        };
        // Under a budget all traces run together on one cloud; otherwise one at a time.
        let groups: Vec<&[Workload]> = if budget.is_some() {
            vec![&workloads[..]]
        } else {
            workloads.chunks(1).collect()
        };
        for group in groups {
            let mut run_once = |cfg: &ReplayConfig| -> anyhow::Result<(ReplayReport, f64)> {
                let t0 = Instant::now();
                let len = group.iter().map(|w| w.usage.len()).max().unwrap_or(0) as u64;
                let base = done;
                let r = replay(group, cfg, budget.as_ref(), &mut |n| {
                    bar.set_position(base + n as u64 * group.len() as u64)
                })
                .with_context(|| format!("replaying {} on the sim cloud", names(group)))?;
                done += len * group.len() as u64;
                Ok((r, t0.elapsed().as_secs_f64()))
            };
            let (without, t_without) = run_once(&cfg)?;
            let with = match &shadow {
                Some(s) => {
                    let cfg = ReplayConfig {
                        shadow: Some(s.clone()),
                        ..cfg.clone()
                    };
                    Some(run_once(&cfg)?)
                }
                None => None,
            };
            let (main, secs) = with
                .as_ref()
                .map_or((&without, t_without), |(r, t)| (r, *t));
            // With spot allowed, the same run (pool or not) with on-demand only.
            let on_demand = match &spot {
                Some(_) => {
                    let cfg = ReplayConfig {
                        spot: None,
                        shadow: with.as_ref().and(shadow.clone()),
                        ..cfg.clone()
                    };
                    Some(run_once(&cfg)?.0)
                }
                None => None,
            };
            for (i, lane) in main.lanes.iter().enumerate() {
                let base = with.as_ref().map(|_| &without.lanes[i]);
                let line = Line {
                    model: "port",
                    instance_type: unit.offer.info.name.as_str(),
                    lane,
                    shortfall_minutes_avoided: base
                        .map(|b| b.shortfall_minutes - lane.shortfall_minutes),
                    time_to_capacity_saved_minutes: base.map(|b| {
                        b.mean_time_to_capacity_minutes - lane.mean_time_to_capacity_minutes
                    }),
                    dollars_vs_no_pool: base.map(|b| lane.dollars - b.dollars),
                    spot_share_cap: args.spot_share_cap,
                    spot_interruptions_per_month: per_month,
                    dollars_without_spot: on_demand.as_ref().map(|r| r.lanes[i].dollars),
                    shortfall_minutes_without_spot: on_demand
                        .as_ref()
                        .map(|r| r.lanes[i].shortfall_minutes),
                    instances_requested: main.instances_requested,
                    sim_launches: main.sim_launches,
                    orphans: main.orphans,
                    retries: main.retries,
                    failed_launch_attempts: main.failed_launch_attempts,
                    budget_cap: main.budget_cap,
                    peak_hourly_bill: main.peak_hourly_bill,
                    budget_exceeded_steps: main.budget_exceeded_steps,
                    replay_seconds: secs / main.lanes.len() as f64,
                };
                bar.suspend(|| -> anyhow::Result<()> {
                    if args.json {
                        outln!("{}", serde_json::to_string(&line)?);
                    } else {
                        print_report(&line);
                    }
                    Ok(())
                })?;
                summary.push((
                    kind.name(),
                    lane.clone(),
                    base.map_or(0.0, |b| b.shortfall_minutes - lane.shortfall_minutes),
                ));
            }
            if let (Some(path), false) = (&args.plot, plotted) {
                if kind == PolicyKind::Predictive || policies.len() == 1 {
                    let lane = &main.lanes[0];
                    plot(path, &lane.series, &lane.points, warmup_steps)
                        .with_context(|| format!("--plot: writing {}", path.display()))?;
                    plotted = true;
                    if !args.json {
                        bar.suspend(|| outln!("  plot written to {}", path.display()));
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    if !args.json && (policies.len() > 1 || workloads.len() > 1) {
        print_summary(&policies, &summary);
    }
    Ok(())
}

fn names(ws: &[Workload]) -> String {
    let mut s: Vec<&str> = ws.iter().take(3).map(|w| w.name.as_str()).collect();
    if ws.len() > 3 {
        s.push("…");
    }
    s.join(", ")
}

fn parse_policies(s: &str) -> anyhow::Result<Vec<PolicyKind>> {
    if s == "all" {
        return Ok(PolicyKind::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim) {
        let p = PolicyKind::parse(name).with_context(|| {
            format!(
                "--policy: unknown policy `{name}` (expected {} or all)",
                PolicyKind::ALL.map(PolicyKind::name).join(", ")
            )
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Values of a comma-separated per-trace flag: one per trace, or one for all.
fn per_trace(flag: &str, text: Option<&str>, n: usize, default: f64) -> anyhow::Result<Vec<f64>> {
    let Some(text) = text else {
        return Ok(vec![default; n]);
    };
    let vals = text
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .with_context(|| format!("{flag}: `{}` is not a number", v.trim()))
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    match vals.len() {
        1 => Ok(vec![vals[0]; n]),
        k if k == n => Ok(vals),
        k => bail!(
            "{flag}: {k} values for {n} traces (give one per trace, in order, or one for all)"
        ),
    }
}

fn budget(args: &Args, unit: &Unit, cap: f64, ws: &[Workload]) -> anyhow::Result<UnitBudget> {
    let prio = per_trace("--priorities", args.priorities.as_deref(), ws.len(), 1.0)?;
    let floors = per_trace("--floors", args.floors.as_deref(), ws.len(), 0.0)?;
    let shares = ws
        .iter()
        .zip(prio)
        .zip(floors)
        .map(|((w, priority), floor)| BudgetShare {
            name: w.name.clone(),
            priority,
            floor,
            min_units: w.min_units,
            max_units: w.max_units,
        })
        .collect();
    let b = UnitBudget::new(
        &unit.catalog,
        unit.cloud,
        unit.offer.info.name.as_str(),
        &args.region,
        cap,
        shares,
    )
    .context("--budget")?;
    let mins: f64 = ws.iter().map(|w| w.min_units as f64).sum::<f64>() * unit.price;
    if mins > cap {
        bail!("--budget: {cap} $/h is below the minimum units of all traces ({mins:.4} $/h at --min-units {})", args.min_units);
    }
    Ok(b)
}

/// The unit's instance type: `--instance-type`, or the cheapest type the cost engine sizes for
/// one unit of `--unit-vcpus` and `--unit-mem-gib` (one instance).
fn unit(args: &Args) -> anyhow::Result<Unit> {
    let catalog = match &args.catalog {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--catalog: reading {}", p.display()))?;
            Catalog::from_text(&text)
                .with_context(|| format!("--catalog: parsing {}", p.display()))?
        }
        None => Catalog::embedded().clone(),
    };
    let cloud: Cloud = args.price_cloud.parse().context("--price-cloud")?;
    let name = match &args.instance_type {
        Some(t) => t.clone(),
        None => {
            let mut p = SizingParams::new(Demand::new(args.unit_vcpus, args.unit_mem_gib));
            p.clouds = vec![cloud];
            p.regions = vec![args.region.clone()];
            p.max_count = 1;
            p.explain_alternative = false;
            let v = p
                .check(&catalog)
                .context("--unit-vcpus/--unit-mem-gib: sizing one unit")?;
            let s = size(&catalog, &v).context("--unit-vcpus/--unit-mem-gib: sizing one unit")?;
            s.allocation
                .first()
                .map(|l| l.instance_type.clone())
                .context("the cost engine returned no instance type for one unit")?
        }
    };
    let t = catalog
        .find_type(cloud, &name)
        .with_context(|| {
            format!(
                "--instance-type: `{name}` is not in the {} catalog",
                args.price_cloud
            )
        })?
        .clone();
    let price = catalog
        .find_offer(cloud, &name, &args.region)
        .map(|o| (o.price(Purchase::OnDemand), o.price(Purchase::Spot)))
        .and_then(|(od, spot)| od.map(|od| (od, spot)))
        .with_context(|| {
            format!(
                "--region: no on-demand price for `{name}` in `{}`",
                args.region
            )
        })?;
    let (price, spot_price) = price;
    let offer = SimOffer {
        // The catalog's spot price (none when it has none), not the sim's default share.
        spot_per_hour: spot_price,
        ..SimOffer::new(
            &name,
            t.vcpu.round().max(1.0) as u32,
            (t.mem_gib * 1024.0).round() as u64,
            price,
        )
    };
    Ok(Unit {
        offer,
        cloud,
        price,
        catalog,
    })
}

/// The engine's unit model: predictive only, with and without the pool.
fn run_engine(
    args: &Args,
    unit: &Unit,
    workloads: &[Workload],
    step: u64,
    warmup: usize,
    shadow: Option<predictive_engine::shadow::ValidShadow>,
) -> anyhow::Result<()> {
    let policy = PolicyParams::default()
        .lead(args.boot_delay)
        .check()
        .context("policy")?;
    let settings = AllocatorSettings::for_step(step);
    let mut plotted = false;
    for w in workloads {
        let sim = SimParams {
            step_seconds: step,
            boot_delay: args.boot_delay,
            promote_delay: args.promote_delay,
            unit_capacity: w.unit_capacity,
            hourly_price: unit.price,
            ready_hourly_price: unit.price * args.ready_fraction,
            min_units: w.min_units as usize,
            max_units: w.max_units as usize,
            warmup,
        }
        .check()
        .context("simulation parameters")?;
        let t0 = Instant::now();
        let base = simulate_with_progress(&w.usage, &policy, settings, &sim, None, &mut |_| {})?;
        let with = match &shadow {
            Some(s) => Some(simulate_with_progress(
                &w.usage,
                &policy,
                settings,
                &sim,
                Some(s),
                &mut |_| {},
            )?),
            None => None,
        };
        let secs = t0.elapsed().as_secs_f64();
        let r = with.as_ref().unwrap_or(&base);
        let lane = LaneReport {
            series: w.name.clone(),
            policy: "predictive",
            shadow_pool: with.is_some(),
            steps: r.steps,
            unit_capacity: w.unit_capacity,
            hourly_price: unit.price,
            ready_hourly_price: unit.price * args.ready_fraction,
            dollars: r.dollars,
            active_dollars: r.running_dollars,
            shadow_dollars: r.shadow_dollars,
            slack: r.slack,
            shortfall_minutes: r.shortfall_minutes,
            shortfall_volume: r.shortfall_volume,
            mean_time_to_capacity_minutes: r.mean_time_to_capacity_minutes,
            changes_per_day: r.changes_per_day,
            launches: r.cold_boots,
            pool_launches: 0,
            starts: r.pool.promoted,
            stops: 0,
            terminations: r.pool.released,
            refused_launches: 0,
            spot_launches: 0,
            interruptions: 0,
            pool_avoided_minutes: 0.0,
            pool_value_factor: 1.0,
            pool: r.pool,
            budget_cut_steps: 0,
            points: Vec::new(),
        };
        let has_pool = with.is_some();
        let line = Line {
            model: "engine",
            instance_type: unit.offer.info.name.as_str(),
            lane: &lane,
            shortfall_minutes_avoided: has_pool
                .then_some(base.shortfall_minutes - r.shortfall_minutes),
            time_to_capacity_saved_minutes: has_pool
                .then_some(base.mean_time_to_capacity_minutes - r.mean_time_to_capacity_minutes),
            dollars_vs_no_pool: has_pool.then_some(r.dollars - base.dollars),
            spot_share_cap: 0.0,
            spot_interruptions_per_month: 0.0,
            dollars_without_spot: None,
            shortfall_minutes_without_spot: None,
            instances_requested: 0,
            sim_launches: 0,
            orphans: 0,
            retries: 0,
            failed_launch_attempts: 0,
            budget_cap: None,
            peak_hourly_bill: 0.0,
            budget_exceeded_steps: 0,
            replay_seconds: secs,
        };
        if args.json {
            outln!("{}", serde_json::to_string(&line)?);
        } else {
            print_report(&line);
        }
        if let (Some(path), false) = (&args.plot, plotted) {
            plot(path, &w.name, &r.points, warmup)
                .with_context(|| format!("--plot: writing {}", path.display()))?;
            plotted = true;
        }
    }
    Ok(())
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

fn print_report(l: &Line<'_>) {
    let r = l.lane;
    outln!(
        "{} · {}{} ({} scored steps, {} model, unit = {:.4} on {} at ${:.4}/h)",
        r.series,
        r.policy,
        if r.shadow_pool { " + shadow pool" } else { "" },
        r.steps,
        l.model,
        r.unit_capacity,
        l.instance_type,
        r.hourly_price
    );
    let opt = |v: Option<f64>, unit: &str, what: &str| {
        v.map_or(String::new(), |v| format!("  ({v:+.2}{unit} {what})"))
    };
    outln!(
        "  dollars            {:>12.2}  (shadow pool {:.2}){}",
        r.dollars,
        r.shadow_dollars,
        opt(l.dollars_vs_no_pool, "", "vs no pool")
    );
    outln!(
        "  prices             {:>12.4} $/h running, {:.5} $/h ready{}",
        r.hourly_price,
        r.ready_hourly_price,
        if l.model == "port" {
            " (the sim's ledger: compute + root volume; hibernated: root volume + RAM image)"
        } else {
            " (--ready-fraction)"
        }
    );
    if let Some(d) = l.dollars_without_spot {
        outln!(
            "  spot               {:>12} launched as spot (cap {:.2}), {} interrupted at {:.2}/month; on-demand only: {:.2} dollars ({:+.2}), {:.0} shortfall minutes",
            r.spot_launches,
            l.spot_share_cap,
            r.interruptions,
            l.spot_interruptions_per_month,
            d,
            r.dollars - d,
            l.shortfall_minutes_without_spot.unwrap_or(0.0)
        );
    }
    outln!("  slack              {:>12.4}", r.slack);
    outln!(
        "  shortfall minutes  {:>12.0}{}",
        r.shortfall_minutes,
        opt(l.shortfall_minutes_avoided, "", "avoided by the pool")
    );
    if r.shadow_pool {
        outln!(
            "  pool record        {:>12.0} minutes avoided (measured online), value factor {:.2}",
            r.pool_avoided_minutes,
            r.pool_value_factor
        );
    }
    outln!("  shortfall volume   {:>12.4}", r.shortfall_volume);
    outln!(
        "  time to capacity   {:>12.2} min{}",
        r.mean_time_to_capacity_minutes,
        opt(
            l.time_to_capacity_saved_minutes,
            " min",
            "saved by the pool"
        )
    );
    outln!(
        "  churn              {:>12.2} changes/day, {} launches, {} starts, {} stops, {} terminations",
        r.changes_per_day, r.launches + r.pool_launches, r.starts, r.stops, r.terminations
    );
    if l.model == "port" {
        outln!(
            "  cloud              {:>12} instances requested, {} created by the sim, {} orphans",
            l.instances_requested,
            l.sim_launches,
            l.orphans
        );
        outln!(
            "  calls              {:>12} retries, {} failed launch attempts, {} launches refused (capacity or quota)",
            l.retries, l.failed_launch_attempts, r.refused_launches
        );
    }
    if let Some(cap) = l.budget_cap {
        outln!(
            "  budget             {:>12.4} $/h cap, peak bill {:.4} $/h, cut in {} steps, exceeded in {}",
            cap, l.peak_hourly_bill, r.budget_cut_steps, l.budget_exceeded_steps
        );
    }
}

fn print_summary(policies: &[PolicyKind], rows: &[(&'static str, LaneReport, f64)]) {
    outln!();
    outln!(
        "{:<12} {:>8} {:>12} {:>8} {:>12} {:>10} {:>12} {:>10} {:>10}",
        "policy",
        "traces",
        "dollars",
        "slack",
        "short min",
        "ttc min",
        "pool $",
        "avoided",
        "chg/day"
    );
    for p in policies {
        let sel: Vec<&(&str, LaneReport, f64)> = rows.iter().filter(|r| r.0 == p.name()).collect();
        if sel.is_empty() {
            continue;
        }
        let n = sel.len() as f64;
        let sum = |f: &dyn Fn(&LaneReport) -> f64| sel.iter().map(|r| f(&r.1)).sum::<f64>();
        outln!(
            "{:<12} {:>8} {:>12.2} {:>8.4} {:>12.0} {:>10.2} {:>12.2} {:>10.0} {:>10.2}",
            p.name(),
            sel.len(),
            sum(&|r| r.dollars),
            sum(&|r| r.slack) / n,
            sum(&|r| r.shortfall_minutes),
            sum(&|r| r.mean_time_to_capacity_minutes) / n,
            sum(&|r| r.shadow_dollars),
            sel.iter().map(|r| r.2).sum::<f64>(),
            sum(&|r| r.changes_per_day) / n,
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    fn excerpt() -> String {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/allocate/nab_rds_cpu_utilization_e47b3b_10d.csv")
            .display()
            .to_string()
    }

    fn run_with(argv: &[&str]) -> anyhow::Result<()> {
        let cmd = Cmd::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied()))?;
        run(cmd.args)
    }

    #[test]
    fn errors_should_name_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("broken_trace.csv");
        std::fs::write(&bad, "timestamp,value\n2014-04-10 00:02:00,1\nnot a line\n").unwrap();
        let bad = bad.display().to_string();
        let x = excerpt();
        let cases: [(&[&str], &str); 11] = [
            (&["no_such_trace.csv"], "no_such_trace.csv"),
            (&[&bad, "--warmup", "1min"], "broken_trace.csv"),
            (&[&x, "--policy", "predictive,oracle"], "--policy"),
            (&[&x, "--budget=-1"], "--budget"),
            (&[&x, "--model", "fast"], "--model"),
            (&[&x, "--cloud", "aws"], "--cloud"),
            (&[&x, "--instance-type", "no.such"], "--instance-type"),
            (
                &[&x, "--catalog", "no_such_catalog.txt"],
                "no_such_catalog.txt",
            ),
            (
                &[&x, "--budget", "1", "--priorities", "1,2"],
                "--priorities",
            ),
            (&[&x, "--warmup", "30d"], "--warmup"),
            (
                &[&x, "--model", "engine", "--policy", "vpa"],
                "--model engine",
            ),
        ];
        for (argv, needle) in cases {
            let e = format!("{:#}", run_with(argv).unwrap_err());
            assert!(e.contains(needle), "{argv:?}: `{e}` does not name {needle}");
        }
    }

    #[test]
    fn simulate_should_compare_policies_and_draw_a_png_on_a_real_excerpt() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("sim.png");
        let p = png.display().to_string();
        let x = excerpt();
        run_with(&[
            &x,
            "--policy",
            "predictive,vpa",
            "--warmup",
            "3d",
            "--unit-capacity",
            "2",
            "--json",
            "--plot",
            &p,
        ])
        .unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        assert!(bytes.len() > 1000);
        // The cost engine picks the unit's type when none is given.
        let cmd = Cmd::try_parse_from(["simulate", &x]).unwrap();
        let unit = unit(&cmd.args).unwrap();
        assert!(unit.price > 0.0);
        assert!(unit.offer.info.vcpus >= 2 && unit.offer.info.memory_mib >= 8 * 1024);
    }
}
