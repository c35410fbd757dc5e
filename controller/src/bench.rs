//! `predictive controller bench`: the cost of one tick over many workloads, on one core.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use predictive_clouds::DynProvider;

use crate::clock::{Clock, VirtualClock};
use crate::config::{ConfigParams, MetricsParams, Mode, WorkloadParams};
use crate::run::Controller;
use crate::source::{MetricsSource, Replay};
use crate::store::{postgres::PostgresStore, sqlite::SqliteStore, Store};

/// Where the benchmark's controller keeps its state.
#[derive(Debug, Clone, Copy)]
pub enum BenchStore<'a> {
    /// SQLite in memory.
    Memory,
    /// SQLite in `bench.db` under this directory.
    Sqlite(&'a Path),
    /// PostgreSQL at this libpq-style connection string; the database should be empty (the
    /// workloads `w00000`... are written to it).
    Postgres(&'a str),
}

impl<'a> BenchStore<'a> {
    /// SQLite in `dir`, or in memory without one.
    pub fn sqlite(dir: Option<&'a Path>) -> Self {
        dir.map_or(Self::Memory, Self::Sqlite)
    }

    async fn open(self) -> Result<Arc<dyn Store>, crate::store::Error> {
        Ok(match self {
            Self::Memory => Arc::new(SqliteStore::in_memory()?),
            Self::Sqlite(d) => Arc::new(SqliteStore::open(&d.join("bench.db"))?),
            Self::Postgres(url) => Arc::new(PostgresStore::connect(url).await?),
        })
    }
}

/// Result of the benchmark (printed as one JSON line).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Always `controller_tick`.
    pub bench: &'static str,
    /// Workloads.
    pub workloads: usize,
    /// Warm-up ticks (not timed).
    pub warmup_ticks: usize,
    /// Timed ticks.
    pub ticks: usize,
    /// Mean wall time of one tick over all workloads.
    pub seconds_per_tick_mean: f64,
    /// Slowest timed tick.
    pub seconds_per_tick_max: f64,
    /// Mean CPU time of the loop's thread per tick (wall time inflates on a loaded machine).
    pub cpu_seconds_per_tick_mean: f64,
    /// Mean wall time per timed tick of the store round trips made for all workloads at once
    /// (leases, budgets, the batch write of samples, forecasts, decisions, calibrations).
    pub store_seconds_per_tick_mean: f64,
    /// Resident memory added by the workloads (controller state, store cache, sim), per workload.
    pub rss_bytes_per_workload: f64,
    /// CPU time of storing the history (0 without history).
    pub seed_cpu_seconds: f64,
    /// CPU time of registering the workloads, their models rebuilt from the stored history (a
    /// first start: no anomaly detector stored yet).
    pub register_cpu_seconds: f64,
    /// CPU time of registering them again on a new controller over the same store after the
    /// timed ticks, every workload's anomaly detector stored (what a restart costs).
    pub restart_cpu_seconds: f64,
    /// Worker threads of the runtime (1: one core).
    pub threads: usize,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Setup failed.
    #[error("benchmark setup failed: {0}")]
    Setup(String),
    /// A tick failed.
    #[error("a tick failed")]
    Tick(#[source] Box<crate::run::Error>),
}

impl From<crate::run::Error> for Error {
    fn from(e: crate::run::Error) -> Self {
        Error::Tick(Box::new(e))
    }
}

/// A cloud whose calls cost O(1): groups are counters. The sim settles its whole state on every
/// call (O(instances)), which would measure the sim rather than the controller at 10,000 groups;
/// real clouds are remote calls bounded by the loop's concurrency and timeouts.
#[derive(Debug, Default)]
struct CounterCloud {
    groups: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl CounterCloud {
    fn group(
        &self,
        id: &predictive_clouds::GroupId,
        desired: Option<u32>,
    ) -> predictive_clouds::Result<predictive_clouds::Group> {
        let mut g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let d = g.get_mut(id.as_str()).ok_or_else(|| {
            predictive_clouds::CloudError::not_found(
                predictive_clouds::Operation::DescribeGroup,
                id.as_str(),
            )
        })?;
        if let Some(x) = desired {
            *d = x;
        }
        Ok(predictive_clouds::Group {
            id: id.clone(),
            location: "bench".into(),
            instance_type: predictive_clouds::InstanceType::new("m6i.large"),
            min: 0,
            max: 40,
            desired: *d,
            instances: Vec::new(),
        })
    }
}

#[async_trait::async_trait]
impl predictive_clouds::CloudProvider for CounterCloud {
    fn name(&self) -> &str {
        "bench"
    }
    async fn describe_group(
        &self,
        g: &predictive_clouds::GroupId,
    ) -> predictive_clouds::Result<predictive_clouds::Group> {
        self.group(g, None)
    }
    async fn scale_group(
        &self,
        g: &predictive_clouds::GroupId,
        d: u32,
    ) -> predictive_clouds::Result<predictive_clouds::Group> {
        self.group(g, Some(d))
    }
    async fn resize_group(
        &self,
        g: &predictive_clouds::GroupId,
        _t: &predictive_clouds::InstanceType,
    ) -> predictive_clouds::Result<predictive_clouds::Group> {
        self.group(g, None)
    }
    async fn launch(
        &self,
        _r: &predictive_clouds::LaunchRequest,
    ) -> predictive_clouds::Result<Vec<predictive_clouds::Instance>> {
        Ok(Vec::new())
    }
    async fn describe_instance(
        &self,
        id: &predictive_clouds::InstanceId,
    ) -> predictive_clouds::Result<predictive_clouds::Instance> {
        Err(predictive_clouds::CloudError::not_found(
            predictive_clouds::Operation::DescribeInstance,
            id.as_str(),
        ))
    }
    async fn stop_instance(
        &self,
        id: &predictive_clouds::InstanceId,
        _m: predictive_clouds::StopMode,
    ) -> predictive_clouds::Result<predictive_clouds::Instance> {
        self.describe_instance(id).await
    }
    async fn start_instance(
        &self,
        id: &predictive_clouds::InstanceId,
    ) -> predictive_clouds::Result<predictive_clouds::Instance> {
        self.describe_instance(id).await
    }
    async fn resize_instance(
        &self,
        id: &predictive_clouds::InstanceId,
        _t: &predictive_clouds::InstanceType,
    ) -> predictive_clouds::Result<predictive_clouds::Instance> {
        self.describe_instance(id).await
    }
    async fn terminate_instance(
        &self,
        id: &predictive_clouds::InstanceId,
    ) -> predictive_clouds::Result<predictive_clouds::Instance> {
        self.describe_instance(id).await
    }
    async fn list_instances(
        &self,
        _o: &predictive_clouds::Owner,
    ) -> predictive_clouds::Result<Vec<predictive_clouds::Instance>> {
        Ok(Vec::new())
    }
    async fn instance_types(
        &self,
    ) -> predictive_clouds::Result<Vec<predictive_clouds::InstanceTypeInfo>> {
        Ok(Vec::new())
    }
    async fn prices(&self) -> predictive_clouds::Result<Vec<predictive_clouds::Price>> {
        Ok(Vec::new())
    }
}

/// CPU time (user + system) of the calling thread, from `/proc/thread-self/stat` (Linux; 0
/// elsewhere), in seconds at the usual 100 ticks per second.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at the last ')'.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn rss_bytes() -> f64 {
    // Linux: resident pages from /proc/self/statm; 0 elsewhere.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
        })
        .map(|pages| pages * 4096.0)
        .unwrap_or(0.0)
}

/// Runs `workloads` workloads (phase-shifted copies of the bundled real trace, each on its own
/// group of an O(1) counter cloud, state in `store`) for `warmup + ticks` ticks on a single-threaded
/// runtime and times the last `ticks`.
///
/// # Errors
/// [`Error`].
pub fn run_blocking(
    workloads: usize,
    warmup: usize,
    ticks: usize,
    store: BenchStore<'_>,
) -> Result<BenchResult, Error> {
    run_blocking_with_history(workloads, warmup, ticks, store, 0)
}

/// Like [`run_blocking`], after storing `history_days` days of 5-minute history per workload
/// first, so the models are rebuilt at their steady-state size (memory per workload is then
/// the figure that matters for a long-running daemon).
///
/// # Errors
/// [`Error`].
pub fn run_blocking_with_history(
    workloads: usize,
    warmup: usize,
    ticks: usize,
    store: BenchStore<'_>,
    history_days: usize,
) -> Result<BenchResult, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Setup(e.to_string()))?;
    rt.block_on(run(workloads, warmup, ticks, store, history_days))
}

/// Registers workloads `0..n` (`params(i)`, each on the trace shifted by `i` steps within a
/// day) and returns the CPU time it took.
async fn register_all(
    ctl: &Controller,
    n: usize,
    params: &dyn Fn(usize) -> WorkloadParams,
    base: &Replay,
    cloud: &DynProvider,
) -> Result<f64, Error> {
    let start = thread_cpu_seconds();
    for i in 0..n {
        let w = crate::config::check_workload("<bench>", &params(i), Path::new("."))
            .map_err(|e| Error::Setup(e.to_string()))?;
        let shifted = base.shifted((i as i64 % 288) * 300);
        let src: Arc<dyn MetricsSource> = Arc::new(shifted);
        ctl.upsert_with_source(w, src, cloud.clone()).await?;
    }
    Ok(thread_cpu_seconds() - start)
}

async fn run(
    n: usize,
    warmup: usize,
    ticks: usize,
    store: BenchStore<'_>,
    history_days: usize,
) -> Result<BenchResult, Error> {
    let setup = |e: &dyn std::fmt::Display| Error::Setup(e.to_string());
    let base = Replay::from_csv_text(crate::demo::TRACE, Path::new(crate::demo::TRACE_NAME))
        .map_err(|e| setup(&e))?;
    let rss0 = rss_bytes();
    let store = store.open().await.map_err(|e| setup(&e))?;
    let start = base.start() - base.start().rem_euclid(300) + 86_400 * (1 + history_days as i64);
    let clock = VirtualClock::new(start);
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let bench_cloud = CounterCloud::default();
    let params = |i: usize| WorkloadParams {
        name: format!("w{i:05}"),
        cloud: "sim".into(),
        region: "sim-1a".into(),
        group: format!("g{i:05}"),
        instance_type: "m6i.large".into(),
        resource: "cpu".into(),
        capacity_per_instance: 25.0,
        min: 1,
        max: 40,
        budget_per_hour: Some(3.0),
        price_per_hour: Some(0.096),
        quantile: 0.95,
        lead: "10m".into(),
        accuracy_objective: 0.8,
        metrics: MetricsParams::Push,
        shadow: Default::default(),
        remediation: Default::default(),
        watch: Default::default(),
    };
    // From TOML, so fields added to the config keep their defaults here.
    let mut cfg: ConfigParams = toml::from_str("owner = \"bench\"\n").map_err(|e| setup(&e))?;
    cfg.interval = "5m".into();
    cfg.mode = Mode::Act;
    cfg.concurrency = 64;
    let cfg = cfg
        .check("<bench>", Path::new("."))
        .map_err(|e| setup(&e))?;
    for i in 0..n {
        bench_cloud
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(format!("g{i:05}"), 1);
    }
    let cloud: DynProvider = Arc::new(bench_cloud);
    let mut clouds = BTreeMap::new();
    clouds.insert("sim".to_string(), cloud.clone());
    let ctl = Arc::new(Controller::new(
        &cfg,
        store,
        clouds.clone(),
        clock_arc,
        "bench",
    ));
    // Stored history first (the store's memory is not the controller's): the models are
    // rebuilt from it at registration, at their steady-state size. The copies are shifted by
    // whole steps, so each is a rotation of one series read once.
    let seed_cpu = thread_cpu_seconds();
    let len = history_days * 288;
    let mut one = Vec::with_capacity(len + 288);
    for k in 0..(len + 288) as i64 {
        let ts = start - len as i64 * 300 + (k - 288) * 300;
        one.push(base.observe(ts, 300).await.unwrap_or(0.0));
    }
    for i in 0..n.min(if history_days > 0 { n } else { 0 }) {
        // shifted by s steps: the value at ts is the base's at ts - s steps.
        let s = i % 288;
        let hist: Vec<crate::store::Sample> = (0..len)
            .map(|k| crate::store::Sample {
                ts: start - (len - k) as i64 * 300,
                value: one[k + 288 - s],
            })
            .collect();
        ctl.store()
            .put_samples(&format!("w{i:05}"), &hist)
            .await
            .map_err(|e| setup(&e))?;
    }
    let seed_cpu = thread_cpu_seconds() - seed_cpu;
    eprintln!("bench: {n} workloads x {len} samples stored in {seed_cpu:.1} s of CPU");
    let rss0 = if history_days > 0 { rss_bytes() } else { rss0 };
    let register_cpu = register_all(&ctl, n, &params, &base, &cloud).await?;
    eprintln!("bench: {n} workloads registered (models rebuilt) in {register_cpu:.1} s of CPU");
    let mut times = Vec::with_capacity(ticks);
    let mut cpu = 0.0;
    let mut store_secs = 0.0;
    for k in 0..warmup + ticks {
        clock.advance(300);
        let t = Instant::now();
        let c = thread_cpu_seconds();
        let r = ctl.tick().await?;
        let c = thread_cpu_seconds() - c;
        if !r.errors.is_empty() {
            return Err(Error::Setup(format!(
                "{} workloads failed, first: {:?}",
                r.errors.len(),
                r.errors[0]
            )));
        }
        eprintln!(
            "bench: tick {k}: {:.3} s wall, {c:.3} s CPU, store {:.3} s",
            t.elapsed().as_secs_f64(),
            r.store_seconds
        );
        if k >= warmup {
            times.push(t.elapsed().as_secs_f64());
            cpu += c;
            store_secs += r.store_seconds;
        }
    }
    let rss = (rss_bytes() - rss0).max(0.0);
    // A restart: every detector stored, then a new controller over the same store.
    ctl.store_detectors().await?;
    let store = ctl.store().clone();
    drop(ctl);
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let ctl = Controller::new(&cfg, store, clouds, clock_arc, "bench");
    let restart_cpu = register_all(&ctl, n, &params, &base, &cloud).await?;
    eprintln!(
        "bench: {n} workloads registered again (detectors restored) in {restart_cpu:.1} s of CPU"
    );
    Ok(BenchResult {
        bench: "controller_tick",
        workloads: n,
        warmup_ticks: warmup,
        ticks,
        seconds_per_tick_mean: times.iter().sum::<f64>() / times.len().max(1) as f64,
        seconds_per_tick_max: times.iter().copied().fold(0.0, f64::max),
        cpu_seconds_per_tick_mean: cpu / times.len().max(1) as f64,
        store_seconds_per_tick_mean: store_secs / times.len().max(1) as f64,
        rss_bytes_per_workload: rss / n.max(1) as f64,
        seed_cpu_seconds: seed_cpu,
        register_cpu_seconds: register_cpu,
        restart_cpu_seconds: restart_cpu,
        threads: 1,
    })
}

#[cfg(test)]
mod tests {
    /// The steady-state measurement (a week of history per workload):
    /// `PREDICTIVE_BENCH_WORKLOADS=1000 cargo test --release -p predictive-controller steady_state -- --ignored --nocapture`.
    #[test]
    #[ignore = "a benchmark: run by hand"]
    fn steady_state() {
        let n = std::env::var("PREDICTIVE_BENCH_WORKLOADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let days = std::env::var("PREDICTIVE_BENCH_HISTORY_DAYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(7);
        let r = super::run_blocking_with_history(n, 3, 3, super::BenchStore::Memory, days).unwrap();
        println!("{}", serde_json::to_string(&r).unwrap());
    }
}
