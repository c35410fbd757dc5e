//! `predictive demo`: the controller on the embedded default (sim cloud, SQLite in a temp dir)
//! over a bundled real trace, in virtual time for a simulated week; then the quickstart's
//! `predictive_clone` through a real `terraform` when one is installed; then a report against the
//! baselines and a plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use predictive_engine::simulate::baselines::{allocate, Baseline, Geometry};

use crate::clock::{Clock, VirtualClock};
use crate::config::{ConfigParams, MetricsParams, Mode, StoreParams, WorkloadParams};
use crate::run::{chain, Controller};
use crate::source::{MetricsSource, Replay};
use crate::store::{sqlite::SqliteStore, Sample, Store};

/// The bundled trace: a real AWS ELB request count (NAB, 5-minute steps, 14 days).
pub const TRACE: &str = include_str!("../../examples/data/nab_elb_request_count_8c0756.csv");
/// Its name in reports.
pub const TRACE_NAME: &str = "examples/data/nab_elb_request_count_8c0756.csv";

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The trace is unusable.
    #[error("cannot read the demo trace")]
    Trace(#[from] crate::source::Error),
    /// The trace is shorter than warm-up plus run.
    #[error("the trace holds {have} steps; the demo needs {need}")]
    TraceTooShort {
        /// Steps in the trace.
        have: usize,
        /// Steps needed.
        need: usize,
    },
    /// Setting up or running the controller failed.
    #[error("the controller failed")]
    Controller(#[source] Box<crate::run::Error>),
    /// The config is invalid.
    #[error("the demo config is invalid")]
    Config(#[from] crate::config::Error),
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] crate::store::Error),
    /// The sim failed.
    #[error("the sim cloud failed")]
    Sim(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Writing outputs failed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl From<crate::run::Error> for Error {
    fn from(e: crate::run::Error) -> Self {
        Error::Controller(Box::new(e))
    }
}

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// A trace to use instead of the bundled one.
    pub trace: Option<PathBuf>,
    /// Simulated days to run (after as many days of warm-up history, when the trace has them).
    pub days: u32,
    /// Where the store, plot and report go (a new temp dir when absent).
    pub out: Option<PathBuf>,
    /// Run the quickstart through terraform when both terraform and the provider are found.
    pub terraform: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            trace: None,
            days: 7,
            out: None,
            terraform: true,
        }
    }
}

/// One policy's score over the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Policy name.
    pub policy: String,
    /// Dollars spent over the run.
    pub dollars: f64,
    /// Share of provisioned capacity left unused.
    pub slack: f64,
    /// Share of steps whose demand exceeded capacity.
    pub shortfall_steps: f64,
    /// Share of demand that found no capacity.
    pub shortfall_volume: f64,
}

/// What the demo produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The output directory.
    pub out: PathBuf,
    /// The plot.
    pub plot: PathBuf,
    /// Ticks run.
    pub ticks: usize,
    /// Per-tick errors (none expected).
    pub errors: usize,
    /// Scores: `predictive` first, then the baselines.
    pub scores: Vec<Score>,
    /// What terraform did (or why it was skipped).
    pub terraform: String,
    /// Whether `terraform apply` of the quickstart succeeded.
    pub terraform_applied: bool,
    /// The report text.
    pub text: String,
}

const STEP: i64 = 300;
const PER_INSTANCE: f64 = 25.0;
const PRICE: f64 = 0.096; // m6i.large in the sim catalog
const MIN: u32 = 1;
const MAX: u32 = 40;

fn score(policy: &str, usage: &[f64], instances: &[u32]) -> Score {
    let cap: Vec<f64> = instances.iter().map(|&n| n as f64 * PER_INSTANCE).collect();
    let (mut over, mut under, mut short) = (0.0, 0.0, 0usize);
    for (u, a) in usage.iter().zip(&cap) {
        over += (a - u).max(0.0);
        under += (u - a).max(0.0);
        if u > a {
            short += 1;
        }
    }
    let total_a: f64 = cap.iter().sum();
    let total_u: f64 = usage.iter().sum();
    Score {
        policy: policy.into(),
        dollars: instances
            .iter()
            .map(|&n| n as f64 * PRICE * STEP as f64 / 3600.0)
            .sum(),
        slack: if total_a > 0.0 { over / total_a } else { 0.0 },
        shortfall_steps: short as f64 / usage.len().max(1) as f64,
        shortfall_volume: if total_u > 0.0 { under / total_u } else { 0.0 },
    }
}

fn to_instances(a: f64) -> u32 {
    ((a / PER_INSTANCE - 1e-9).ceil().max(0.0) as u32).clamp(MIN, MAX)
}

/// Runs the demo.
///
/// # Errors
/// [`Error`].
pub fn run_blocking(opts: DemoOptions) -> Result<DemoReport, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    rt.block_on(run(opts))
}

/// The demo, async.
///
/// # Errors
/// [`Error`].
pub async fn run(opts: DemoOptions) -> Result<DemoReport, Error> {
    let replay = match &opts.trace {
        Some(p) => Replay::from_csv(p)?,
        None => Replay::from_csv_text(TRACE, Path::new(TRACE_NAME))?,
    };
    let run_steps = (opts.days.max(1) as i64 * 86_400 / STEP) as usize;
    let trace_steps = replay.values().len();
    if trace_steps < run_steps + 2 {
        return Err(Error::TraceTooShort {
            have: trace_steps,
            need: run_steps + 2,
        });
    }
    // Warm-up: the part of the trace before the simulated week becomes stored history.
    let warm = (trace_steps - run_steps).min(run_steps);
    let out = match &opts.out {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("predictive-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&out).map_err(|source| Error::Write {
        path: out.clone(),
        source,
    })?;
    let db = out.join("predictive.db");
    let _ = std::fs::remove_file(&db);
    let start = replay.start() - replay.start().rem_euclid(STEP) + warm as i64 * STEP;
    let clock = VirtualClock::new(start);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db)?);
    let history: Vec<Sample> = (0..warm)
        .map(|i| {
            let ts = start - (warm - i) as i64 * STEP;
            Sample {
                ts,
                value: replay.at(ts),
            }
        })
        .collect();
    store.put_samples("web", &history).await?;

    let params = ConfigParams {
        interval: "5m".into(),
        mode: Mode::Act,
        concurrency: 4,
        owner: "predictive-demo".into(),
        retention: "35d".into(),
        store: Some(StoreParams::Sqlite { path: db.clone() }),
        api: None,
        metrics_listen: None,
        clouds: Default::default(),
        workloads: vec![WorkloadParams {
            name: "web".into(),
            cloud: "sim".into(),
            region: "sim-1a".into(),
            group: "web-asg".into(),
            instance_type: "m6i.large".into(),
            resource: "cpu".into(),
            capacity_per_instance: PER_INSTANCE,
            min: MIN,
            max: MAX,
            budget_per_hour: Some(MAX as f64 * PRICE),
            price_per_hour: None,
            quantile: 0.95,
            lead: "10m".into(),
            accuracy_objective: 0.8,
            metrics: MetricsParams::Push,
            shadow: Default::default(),
            remediation: Default::default(),
            watch: Default::default(),
        }],
    };
    let cfg = params.check("<demo>", &out)?;
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let sim = crate::embedded::sim(clock_arc.clone(), None).map_err(|e| Error::Sim(Box::new(e)))?;
    crate::embedded::ensure_groups(&sim, &cfg.owner, &cfg.workloads)
        .map_err(|e| Error::Sim(Box::new(e)))?;
    let sim_cloud = sim.cloud.clone();
    let sim_dyn: predictive_clouds::DynProvider = Arc::new(sim);
    let mut clouds = std::collections::BTreeMap::new();
    clouds.insert("sim".to_string(), sim_dyn.clone());
    let ctl = Arc::new(Controller::new(
        &cfg,
        store.clone(),
        clouds,
        clock_arc.clone(),
        "demo",
    ));
    let source: Arc<dyn MetricsSource> = Arc::new(replay.clone());
    ctl.upsert_with_source(cfg.workloads[0].clone(), source, sim_dyn)
        .await?;
    ctl.recover().await?;

    let mut usage = Vec::with_capacity(run_steps);
    let mut serving = Vec::with_capacity(run_steps);
    let mut errors = 0;
    for _ in 0..run_steps {
        clock.advance(STEP);
        let now = clock.now();
        // Capacity that served the step just ended: members running now (launched by earlier
        // ticks and booted since), before this tick acts.
        serving.push(sim_cloud_running(&sim_cloud, "web-asg").await);
        usage.push(replay.observe(now, STEP).await.unwrap_or(0.0));
        let r = ctl.tick().await?;
        errors += r.errors.len();
        for (w, e) in &r.errors {
            tracing::warn!(workload = %w, error = %e, "demo tick failed");
        }
    }
    let served = serving;
    let mut scores = vec![score("predictive", &usage, &served)];
    // Baselines see the same history (warm-up + run) and the same 2-step lead.
    let mut full: Vec<f64> = history.iter().map(|s| s.value).collect();
    full.extend_from_slice(&usage);
    let g = Geometry {
        lead: 2,
        warmup: warm,
        day: (86_400 / STEP) as usize,
    };
    for b in [
        Baseline::PeakStatic,
        Baseline::Reactive,
        Baseline::Vpa,
        Baseline::WindowMax,
        Baseline::Oracle,
    ] {
        let a = allocate(b, &full, g);
        let inst: Vec<u32> = a[warm..].iter().map(|&x| to_instances(x)).collect();
        scores.push(score(b.name(), &usage, &inst));
    }
    // The plot: usage (black), predictive capacity (blue), reactive (orange), peak-static (grey).
    let cap = |inst: &[u32]| {
        inst.iter()
            .map(|&n| n as f64 * PER_INSTANCE)
            .collect::<Vec<f64>>()
    };
    let trace_label = |o: &DemoOptions| {
        o.trace
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| TRACE_NAME.into())
    };
    let reactive: Vec<u32> = allocate(Baseline::Reactive, &full, g)[warm..]
        .iter()
        .map(|&x| to_instances(x))
        .collect();
    let peak: Vec<u32> = allocate(Baseline::PeakStatic, &full, g)[warm..]
        .iter()
        .map(|&x| to_instances(x))
        .collect();
    let (pc, rc, kc) = (cap(&served), cap(&reactive), cap(&peak));
    let plot = out.join("demo.png");
    let series = [
        ("peak-static capacity", &kc, [150, 150, 150], 1),
        ("reactive capacity", &rc, [230, 140, 20], 1),
        ("usage (ELB requests per 5 min)", &usage, [0, 0, 0], 1),
        ("predictive capacity", &pc, [30, 90, 220], 2),
    ];
    let caption = format!(
        "predictive demo: {} simulated days of {}",
        opts.days,
        trace_label(&opts)
    );
    if let Err(e) = draw_plot(&plot, &caption, &series) {
        // No usable font (plotters draws text with fontconfig/freetype): the same lines, no text.
        tracing::warn!(error = %e, "plot without text");
        let mut canvas = crate::png::Canvas::new(1400, 500);
        canvas.plot(
            &series
                .iter()
                .map(|(_, v, c, _)| (v.as_slice(), *c))
                .collect::<Vec<_>>(),
        );
        std::fs::write(&plot, canvas.to_png()).map_err(|source| Error::Write {
            path: plot.clone(),
            source,
        })?;
    }

    let (terraform_applied, terraform) = if opts.terraform {
        run_terraform(&out)
    } else {
        (false, "skipped (--no-terraform)".into())
    };

    let mut text = String::new();
    let _ = writeln!(
        text,
        "predictive demo: {} days of {} in virtual time ({} ticks of 5 min, {} days of warm-up history)",
        opts.days,
        opts.trace
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| TRACE_NAME.into()),
        run_steps,
        warm as i64 * STEP / 86_400
    );
    let _ = writeln!(text, "workload `web`: ELB requests per 5 min, one m6i.large (${PRICE}/h, sim cloud) serves {PER_INSTANCE}, bounds [{MIN}, {MAX}], lead 10 min");
    let _ = writeln!(
        text,
        "{:<12} {:>10} {:>8} {:>16} {:>17}",
        "policy", "dollars", "slack", "shortfall steps", "shortfall volume"
    );
    for s in &scores {
        let _ = writeln!(
            text,
            "{:<12} {:>10.2} {:>7.1}% {:>15.2}% {:>16.3}%",
            s.policy,
            s.dollars,
            s.slack * 100.0,
            s.shortfall_steps * 100.0,
            s.shortfall_volume * 100.0
        );
    }
    let ours = &scores[0];
    for other in scores.iter().skip(1).filter(|s| s.policy != "oracle") {
        let saved = if other.dollars > 0.0 {
            (1.0 - ours.dollars / other.dollars) * 100.0
        } else {
            0.0
        };
        let _ = writeln!(
            text,
            "predictive vs {:<11} {:>+7.1}% dollars ({}), slack {:.1}% vs {:.1}%, shortfall steps {:.2}% vs {:.2}%",
            format!("{}:", other.policy),
            -saved,
            if saved >= 0.0 { "cheaper" } else { "dearer" },
            ours.slack * 100.0,
            other.slack * 100.0,
            ours.shortfall_steps * 100.0,
            other.shortfall_steps * 100.0
        );
    }
    let _ = writeln!(
        text,
        "tick errors: {errors}; decisions with explanations: predictive explain web --db {}",
        db.display()
    );
    let latest = store.decisions(Some("web"), 1).await?;
    if let Some(d) = latest.first() {
        let _ = writeln!(
            text,
            "latest decision: {} -> {} instances ({}): {}",
            d.current, d.desired, d.action, d.explanation
        );
    }
    let _ = writeln!(text, "terraform: {terraform}");
    let _ = writeln!(
        text,
        "plot: {} (usage in black, predictive capacity in blue, reactive in orange, peak-static in grey)",
        plot.display()
    );
    let _ = writeln!(text, "store: {}", db.display());
    std::fs::write(out.join("report.txt"), &text).map_err(|source| Error::Write {
        path: out.join("report.txt"),
        source,
    })?;
    Ok(DemoReport {
        out,
        plot,
        ticks: run_steps,
        errors,
        scores,
        terraform,
        terraform_applied,
        text,
    })
}

/// Draws the run: one line per series on time (days) against requests per 5 minutes, with
/// axes, their labels, a caption and a legend.
///
/// # Errors
/// The drawing error as text (no usable font, for example).
fn draw_plot(
    path: &Path,
    caption: &str,
    series: &[(&str, &Vec<f64>, [u8; 3], u32)],
) -> Result<(), String> {
    use plotters::prelude::*;
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    if n < 2 {
        return Err("nothing to plot".into());
    }
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        * 1.08;
    let days = |i: usize| i as f64 * STEP as f64 / 86_400.0;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..days(n - 1), 0.0..ymax.max(1.0))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("simulated time (days)")
        .y_desc("requests per 5 min (capacity: 25 per instance)")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|x| e(&x))?;
    for (label, values, [r, g, b], width) in series {
        let color = RGBColor(*r, *g, *b);
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, v)| (days(i), *v)),
                color.stroke_width(*width),
            ))
            .map_err(|x| e(&x))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

async fn sim_cloud_running(sim: &predictive_clouds::sim::SimCloud, group: &str) -> u32 {
    use predictive_clouds::CloudProvider;
    sim.describe_group(&predictive_clouds::GroupId::new(group))
        .await
        .map(|g| g.count_in(predictive_clouds::InstanceState::Running) as u32)
        .unwrap_or(0)
}

/// Finds `terraform`: on `PATH`, or where `scripts/install-test-deps.sh` puts it.
pub fn find_terraform() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cache/predictive-tools"));
        dirs.push(
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/predictive-tools/bin"),
        );
    }
    dirs.into_iter()
        .map(|d| d.join("terraform"))
        .find(|p| p.is_file())
}

/// Finds the directory of the `terraform-provider-predictive` binary: `PREDICTIVE_PROVIDER_DIR`,
/// else beside the running executable, else one level up (a test binary in `target/*/deps`).
pub fn find_provider_dir() -> Option<PathBuf> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    std::env::var_os("PREDICTIVE_PROVIDER_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(exe_dir.clone())
        .chain(exe_dir.and_then(|d| d.parent().map(Path::to_path_buf)))
        .find(|d| d.join("terraform-provider-predictive").is_file())
}

/// Applies `examples/quickstart` (copied into `out`) with the provider binary found by
/// [`find_provider_dir`], through a dev override; returns whether it applied and what happened
/// in one line.
fn run_terraform(out: &Path) -> (bool, String) {
    let Some(tf) = find_terraform() else {
        return (
            false,
            "skipped: terraform not found (scripts/install-test-deps.sh installs it)".into(),
        );
    };
    let Some(provider_dir) = find_provider_dir() else {
        return (
            false,
            "skipped: terraform-provider-predictive is not built beside this binary (cargo build --release --bins)".into(),
        );
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    if !src.join("main.tf").is_file() {
        return (false, format!("skipped: {} not found", src.display()));
    }
    let dst = out.join("quickstart");
    let _ = std::fs::remove_dir_all(&dst);
    if let Err(e) = copy_dir(&src, &dst) {
        return (false, format!("skipped: cannot copy the quickstart: {e}"));
    }
    let rc = out.join("terraformrc");
    let conf = format!(
        "provider_installation {{\n  dev_overrides {{\n    \"predictive/predictive\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
        provider_dir.display()
    );
    if let Err(e) = std::fs::write(&rc, conf) {
        return (
            false,
            format!("skipped: cannot write {}: {e}", rc.display()),
        );
    }
    let res = std::process::Command::new(&tf)
        .args(["apply", "-auto-approve", "-no-color", "-input=false"])
        .current_dir(&dst)
        .env("TF_CLI_CONFIG_FILE", &rc)
        .env("TF_IN_AUTOMATION", "1")
        .output();
    match res {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let summary = text
                .lines()
                .filter(|l| l.contains("Apply complete") || l.starts_with("hourly_cost"))
                .collect::<Vec<_>>()
                .join("; ");
            (
                true,
                format!(
                    "applied {} with predictive_clone.web: {summary}",
                    dst.display()
                ),
            )
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            (
                false,
                format!(
                    "terraform apply failed in {}: {}",
                    dst.display(),
                    err.lines()
                        .filter(|l| !l.trim().is_empty())
                        .take(6)
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
            )
        }
        Err(e) => (false, format!("cannot run {}: {e}", tf.display())),
    }
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with(".terraform") || name == ".predictive" {
            continue;
        }
        let t = dst.join(&name);
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &t)?;
        } else {
            std::fs::copy(e.path(), t)?;
        }
    }
    Ok(())
}

/// Reports a failure with its full chain (for callers printing it).
pub fn describe(e: &Error) -> String {
    chain(e)
}
