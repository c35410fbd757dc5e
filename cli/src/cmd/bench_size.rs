//! `bench size` subcommand: sizing cost and solve time over JSONL cases (PROTOCOL.md §4).
//!
//! Each line of the cases file is one demand in the terms of `predictive size`
//! (`{"name", "cpu", "mem_gib", "gpu", "clouds", "regions", "purchase", "arch", ...}`), plus
//! `priority` and `floor` used with `--budget`. Without `--budget` one JSON line per case gives
//! its cost and solve time, then a summary line with the solve-time percentiles. With
//! `--budget USD/h` the cases are workloads sharing that cap: the priority plan and the
//! proportional baseline are printed, each with its weighted unmet demand.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use predictive_engine::cost::{
    allocate_budget, allocate_proportional, size, BudgetParams, BudgetPlan, WorkloadParams,
};

use super::size::SizeSpec;

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// JSONL file, one demand per line.
    #[arg(long)]
    cases: PathBuf,
    /// Shared hard cap in USD per hour: size the cases as workloads under one budget.
    #[arg(long)]
    budget: Option<f64>,
    /// Repeat every solve this many times and report the median time (default 1).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Use this catalog file instead of the embedded one.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// JSON lines (the default and only output format; accepted for symmetry with other benches).
    #[arg(long)]
    json: bool,
}

fn read_cases(path: &PathBuf) -> anyhow::Result<Vec<SizeSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("//") {
            continue;
        }
        let spec: SizeSpec = serde_json::from_str(t)
            .with_context(|| format!("{} line {}: not a sizing case", path.display(), i + 1))?;
        out.push(spec);
    }
    if out.is_empty() {
        anyhow::bail!("{}: no cases", path.display());
    }
    Ok(out)
}

/// CPU time this thread has run, in ms: the per-thread CPU clock
/// (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, nanosecond resolution) on Linux, None elsewhere.
/// Reported next to the wall time so that a solve time can be judged on a loaded machine.
/// (`/proc/thread-self/schedstat`, used before, only advances at scheduler ticks and context
/// switches, so most short solves read 0.)
#[cfg(target_os = "linux")]
fn thread_cpu_ms() -> Option<f64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6)
}

/// CPU time this thread has run: not measured outside Linux.
#[cfg(not(target_os = "linux"))]
fn thread_cpu_ms() -> Option<f64> {
    None
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let catalog = super::catalog::load(args.catalog.as_deref())?;
    let cases = read_cases(&args.cases)?;
    if let Some(cap) = args.budget {
        return run_budget(&catalog, &cases, cap);
    }
    let mut times = Vec::new();
    let mut cpu_times = Vec::new();
    let mut failed = 0usize;
    let mut proven = 0usize;
    let mut gaps: Vec<f64> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("case-{}", i + 1));
        let mut params = case.to_params().with_context(|| format!("case {name}"))?;
        params.explain_alternative = false;
        let result = params.check(&catalog);
        let valid = match result {
            Ok(v) => v,
            Err(e) => {
                failed += 1;
                outln!(
                    "{}",
                    serde_json::json!({"case": name, "error": format!("{:#}", anyhow::Error::from(e))})
                );
                continue;
            }
        };
        let mut runs = Vec::new();
        let mut cpu_runs = Vec::new();
        let mut last = None;
        for _ in 0..args.repeat.max(1) {
            let c0 = thread_cpu_ms();
            let t0 = Instant::now();
            let r = size(&catalog, &valid);
            runs.push(t0.elapsed().as_secs_f64() * 1e3);
            if let (Some(a), Some(b)) = (c0, thread_cpu_ms()) {
                cpu_runs.push(b - a);
            }
            last = Some(r);
        }
        runs.sort_by(f64::total_cmp);
        cpu_runs.sort_by(f64::total_cmp);
        let ms = runs[runs.len() / 2];
        let cpu_ms = cpu_runs.get(cpu_runs.len() / 2).copied();
        if let Some(c) = cpu_ms {
            cpu_times.push(c);
        }
        match last.expect("at least one run") {
            Ok(s) => {
                times.push(ms);
                // Proven gap: the answer over the lower bound the search proved.
                let lb = s.explanation.lower_bound;
                let gap = if lb > 0.0 {
                    (s.effective_hourly_cost / lb - 1.0).max(0.0)
                } else {
                    0.0
                };
                if s.explanation.optimal && gap <= 0.01 + 1e-9 {
                    proven += 1;
                }
                gaps.push(gap);
                outln!(
                    "{}",
                    serde_json::json!({
                        "case": name,
                        "total_hourly_cost": s.total_hourly_cost,
                        "effective_hourly_cost": s.effective_hourly_cost,
                        "instances": s.allocation.iter().map(|l| l.count).sum::<u32>(),
                        "types": s.allocation.len(),
                        "candidates": s.explanation.candidates,
                        "pareto": s.explanation.pareto,
                        "nodes": s.explanation.nodes,
                        "optimal": s.explanation.optimal,
                        "lower_bound": lb,
                        "proven_gap": gap,
                        "solve_ms": ms,
                        "cpu_ms": cpu_ms,
                        "allocation": s.allocation,
                    })
                );
            }
            Err(e) => {
                failed += 1;
                outln!(
                    "{}",
                    serde_json::json!({"case": name, "error": format!("{:#}", anyhow::Error::from(e)), "solve_ms": ms})
                );
            }
        }
    }
    times.sort_by(f64::total_cmp);
    cpu_times.sort_by(f64::total_cmp);
    gaps.sort_by(f64::total_cmp);
    let cpu = |q: f64| (!cpu_times.is_empty()).then(|| percentile(&cpu_times, q));
    outln!(
        "{}",
        serde_json::json!({
            "summary": "size",
            "cases": cases.len(),
            "solved": times.len(),
            "failed": failed,
            "p50_ms": percentile(&times, 0.5),
            "p90_ms": percentile(&times, 0.9),
            "p99_ms": percentile(&times, 0.99),
            "max_ms": times.last().copied().unwrap_or(0.0),
            "cpu_p50_ms": cpu(0.5),
            "cpu_p99_ms": cpu(0.99),
            "cpu_max_ms": cpu(1.0),
            "proven_within_1pct": proven,
            "gap_p50": percentile(&gaps, 0.5),
            "gap_p90": percentile(&gaps, 0.9),
            "gap_max": gaps.last().copied().unwrap_or(0.0),
            "threads": 1,
        })
    );
    Ok(())
}

fn plan_json(plan: &BudgetPlan, ms: f64) -> serde_json::Value {
    serde_json::json!({
        "rule": plan.rule,
        "hourly_cap": plan.hourly_cap,
        "total_hourly_cost": plan.total_hourly_cost,
        "weighted_unmet": plan.weighted_unmet,
        "solve_ms": ms,
        "workloads": plan.workloads.iter().map(|w| serde_json::json!({
            "name": w.name,
            "priority": w.priority,
            "floor": w.floor,
            "served": w.served,
            "hourly_cost": w.hourly_cost,
            "unmet": w.unmet,
            "allocation": w.sizing.as_ref().map(|s| s.allocation.clone()).unwrap_or_default(),
        })).collect::<Vec<_>>(),
    })
}

fn run_budget(
    catalog: &predictive_engine::cost::Catalog,
    cases: &[SizeSpec],
    cap: f64,
) -> anyhow::Result<()> {
    let mut ws = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let name = c.name.clone().unwrap_or_else(|| format!("case-{}", i + 1));
        let mut sizing = c.to_params().with_context(|| format!("case {name}"))?;
        sizing.explain_alternative = false;
        ws.push(WorkloadParams {
            name,
            sizing,
            priority: c.priority.unwrap_or(1.0),
            floor: c.floor.unwrap_or(0.0),
        });
    }
    let valid = BudgetParams::hourly(cap, ws).check(catalog)?;
    let t0 = Instant::now();
    let pri = allocate_budget(catalog, &valid)?;
    let t_pri = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let prop = allocate_proportional(catalog, &valid)?;
    let t_prop = t1.elapsed().as_secs_f64() * 1e3;
    outln!("{}", plan_json(&pri, t_pri));
    outln!("{}", plan_json(&prop, t_prop));
    outln!(
        "{}",
        serde_json::json!({
            "summary": "budget",
            "hourly_cap": cap,
            "priority_weighted_unmet": pri.weighted_unmet,
            "proportional_weighted_unmet": prop.weighted_unmet,
            "priority_beats_proportional": pri.weighted_unmet < prop.weighted_unmet,
        })
    );
    Ok(())
}
