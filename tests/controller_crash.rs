//! Crash safety of the controller: a child process runs the loop over a persisted sim cloud and
//! a SQLite store and kills itself with `kill -9` at a chosen point (before or after the n-th
//! mutating cloud call); it is restarted until the run completes. The outcome must match an
//! uninterrupted run: the same desired capacities, the same number of instances ever launched
//! (nothing launched twice), no owned instance outside the managed group and the stored shadow
//! pool (nothing orphaned), and the budget never exceeded. The workload keeps a shadow pool, so
//! kills also land between its launches, stops, starts and releases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use predictive_clouds::{
    CloudProvider, DynProvider, Group, GroupId, Instance, InstanceId, InstanceType,
    InstanceTypeInfo, LaunchRequest, Owner, Price, StopMode,
};
use predictive_controller::clock::{Clock, VirtualClock};
use predictive_controller::config::{
    ConfigParams, MetricsParams, Mode, ShadowSettings, WorkloadParams,
};
use predictive_controller::run::Controller;
use predictive_controller::store::{sqlite::SqliteStore, Store};

const T0: i64 = 1_397_174_400; // 2014-04-11 00:00 UTC, inside the bundled trace
const TICKS: i64 = 72;
const PRICE: f64 = 0.096;
const BUDGET: f64 = 1.2; // 12 instances of m6i.large at most; the trace's peaks want more

fn trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/nab_elb_request_count_8c0756.csv")
}

/// Kills the process before or after the n-th mutating call.
#[derive(Debug)]
struct KillSwitch {
    inner: DynProvider,
    at: u64,
    after: bool,
    calls: AtomicU64,
}

impl KillSwitch {
    fn maybe_die(&self, phase_after: bool, n: u64) {
        if n == self.at && phase_after == self.after {
            let _ = Command::new("kill")
                .args(["-9", &std::process::id().to_string()])
                .status();
            std::thread::sleep(std::time::Duration::from_secs(5)); // never reached
        }
    }
    async fn mutate<T>(
        &self,
        f: impl std::future::Future<Output = predictive_clouds::Result<T>>,
    ) -> predictive_clouds::Result<T> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.maybe_die(false, n);
        let r = f.await;
        self.maybe_die(true, n);
        r
    }
}

#[async_trait::async_trait]
impl CloudProvider for KillSwitch {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn describe_group(&self, g: &GroupId) -> predictive_clouds::Result<Group> {
        self.inner.describe_group(g).await
    }
    async fn scale_group(&self, g: &GroupId, d: u32) -> predictive_clouds::Result<Group> {
        self.mutate(self.inner.scale_group(g, d)).await
    }
    async fn resize_group(
        &self,
        g: &GroupId,
        t: &InstanceType,
    ) -> predictive_clouds::Result<Group> {
        self.mutate(self.inner.resize_group(g, t)).await
    }
    async fn launch(&self, r: &LaunchRequest) -> predictive_clouds::Result<Vec<Instance>> {
        self.mutate(self.inner.launch(r)).await
    }
    async fn describe_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        self.inner.describe_instance(id).await
    }
    async fn stop_instance(
        &self,
        id: &InstanceId,
        m: StopMode,
    ) -> predictive_clouds::Result<Instance> {
        self.mutate(self.inner.stop_instance(id, m)).await
    }
    async fn start_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        self.mutate(self.inner.start_instance(id)).await
    }
    async fn resize_instance(
        &self,
        id: &InstanceId,
        t: &InstanceType,
    ) -> predictive_clouds::Result<Instance> {
        self.mutate(self.inner.resize_instance(id, t)).await
    }
    async fn terminate_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        self.mutate(self.inner.terminate_instance(id)).await
    }
    async fn list_instances(&self, o: &Owner) -> predictive_clouds::Result<Vec<Instance>> {
        self.inner.list_instances(o).await
    }
    async fn instance_types(&self) -> predictive_clouds::Result<Vec<InstanceTypeInfo>> {
        self.inner.instance_types().await
    }
    async fn prices(&self) -> predictive_clouds::Result<Vec<Price>> {
        self.inner.prices().await
    }
}

fn config(dir: &Path) -> predictive_controller::config::ValidConfig {
    ConfigParams {
        interval: "5m".into(),
        mode: Mode::Act,
        concurrency: 2,
        owner: "crash-test".into(),
        retention: "35d".into(),
        store: None,
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
            capacity_per_instance: 25.0,
            min: 1,
            max: 40,
            budget_per_hour: Some(BUDGET),
            price_per_hour: None,
            quantile: 0.95,
            lead: "10m".into(),
            accuracy_objective: 0.8,
            metrics: MetricsParams::Replay { path: trace() },
            shadow: ShadowSettings {
                max_units: 3,
                ..ShadowSettings::default()
            },
            remediation: Default::default(),
            watch: Default::default(),
        }],
    }
    .check("<crash-test>", dir)
    .expect("valid config")
}

/// The child: runs (or resumes) the loop until tick `TICKS`, possibly killing itself.
async fn child(dir: &Path, kill: Option<(u64, bool)>) {
    let cfg = config(dir);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    let start = store
        .decisions(Some("web"), 1)
        .await
        .unwrap()
        .first()
        .map(|d| d.ts)
        .unwrap_or(T0);
    let clock = VirtualClock::new(start);
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let sim = predictive_controller::embedded::sim(clock_arc.clone(), Some(dir.join("sim.json")))
        .unwrap();
    predictive_controller::embedded::ensure_groups(&sim, &cfg.owner, &cfg.workloads).unwrap();
    let (at, after) = kill.unwrap_or((u64::MAX, false));
    let cloud: DynProvider = Arc::new(KillSwitch {
        inner: Arc::new(sim),
        at,
        after,
        calls: AtomicU64::new(0),
    });
    let mut clouds = BTreeMap::new();
    clouds.insert("sim".to_string(), cloud);
    let ctl = Arc::new(Controller::new(
        &cfg,
        store.clone(),
        clouds,
        clock_arc,
        "crash-test",
    ));
    ctl.upsert(cfg.workloads[0].clone()).await.unwrap();
    let problems = ctl.recover().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    while clock.now() < T0 + TICKS * 300 {
        clock.advance(300);
        let r = ctl.tick().await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
}

#[test]
fn crash_child_entry() {
    // Runs only as the child process of the test below.
    let Ok(dir) = std::env::var("PREDICTIVE_CRASH_CHILD_DIR") else {
        return;
    };
    let kill = std::env::var("PREDICTIVE_CRASH_KILL").ok().map(|s| {
        let (n, after) = s.split_once(':').unwrap();
        (n.parse().unwrap(), after == "after")
    });
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(child(Path::new(&dir), kill));
}

/// Runs the child once; `true` when it completed, `false` when it was killed.
fn spawn_child(dir: &Path, kill: Option<(u64, bool)>) -> bool {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "crash_child_entry",
        "--test-threads",
        "1",
        "--nocapture",
    ])
    .env("PREDICTIVE_CRASH_CHILD_DIR", dir);
    if let Some((n, after)) = kill {
        c.env(
            "PREDICTIVE_CRASH_KILL",
            format!("{n}:{}", if after { "after" } else { "before" }),
        );
    }
    let out = c.output().unwrap();
    if out.status.success() {
        return true;
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "child failed without being killed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

struct Outcome {
    desired: Vec<(i64, u32)>,
    launches: u64,
    group_desired: u32,
    orphans: usize,
    shadow: predictive_controller::shadow::Pool,
}

fn outcome(dir: &Path) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&dir.join("state.db")).unwrap();
        let mut d: Vec<(i64, u32)> = store
            .decisions(Some("web"), 10_000)
            .await
            .unwrap()
            .iter()
            .map(|d| (d.ts, d.desired))
            .collect();
        d.sort();
        let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(T0 + TICKS * 300 + 600));
        let sim = predictive_controller::embedded::sim(clock, Some(dir.join("sim.json"))).unwrap();
        let g = sim
            .cloud
            .describe_group(&GroupId::new("web-asg"))
            .await
            .unwrap();
        let owned = sim
            .cloud
            .list_instances(&Owner::new("crash-test").unwrap())
            .await
            .unwrap();
        let shadow = predictive_controller::shadow::Pool::decode(
            store
                .loop_state("web", predictive_controller::shadow::STATE_KIND)
                .await
                .unwrap()
                .as_deref(),
        )
        .unwrap();
        let orphans = owned
            .iter()
            .filter(|i| i.state.is_live() && i.group.is_none() && !shadow.contains(i.id.as_str()))
            .count();
        Outcome {
            desired: d,
            launches: sim.cloud.launches(),
            group_desired: g.desired,
            orphans,
            shadow,
        }
    })
}

#[test]
fn controller_survives_kill_9_at_many_points() {
    let reference = tempfile::tempdir().unwrap();
    assert!(spawn_child(reference.path(), None));
    let want = outcome(reference.path());
    assert_eq!(want.desired.len(), TICKS as usize);
    let changes = want.desired.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(
        changes >= 4,
        "the reference run should scale several times, got {changes}"
    );
    assert!(want
        .desired
        .iter()
        .all(|d| d.1 as f64 * PRICE <= BUDGET + 1e-9));
    assert!(
        want.desired
            .iter()
            .any(|d| d.1 as f64 * PRICE > BUDGET - PRICE - 1e-9),
        "the budget should bind at the peaks"
    );

    assert!(
        want.shadow.launched > 0,
        "the reference run should use its shadow pool: {:?}",
        want.shadow
    );
    assert!(
        want.shadow.promoted > 0,
        "ready units should be promoted: {:?}",
        want.shadow
    );
    assert_eq!(want.orphans, 0);

    // Deterministic kill schedule: several runs, each killed at several points.
    let mut seed = predictive_engine::noise::XorShift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move || seed.next_u64();
    let mut kills = 0;
    for run in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let mut done = false;
        for attempt in 0..8 {
            // After a few kills let it finish, so every run completes.
            let kill = (attempt < 5).then(|| (1 + next() % 4, next() % 2 == 0));
            if spawn_child(dir.path(), kill) {
                done = true;
                break;
            }
            kills += 1;
        }
        assert!(done, "run {run} never completed");
        let got = outcome(dir.path());
        assert_eq!(
            got.desired, want.desired,
            "run {run}: decisions differ from the uninterrupted run"
        );
        assert_eq!(
            got.launches, want.launches,
            "run {run}: instances launched twice (or lost)"
        );
        assert_eq!(got.group_desired, want.group_desired, "run {run}");
        assert_eq!(got.orphans, 0, "run {run}: orphaned instances");
        assert_eq!(
            (got.shadow.launched, got.shadow.units.len()),
            (want.shadow.launched, want.shadow.units.len()),
            "run {run}: shadow pool differs"
        );
    }
    assert!(
        kills >= 10,
        "the schedule should kill the child many times, killed {kills}"
    );
}
