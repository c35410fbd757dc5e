//! The controller against real services started by the test itself: PostgreSQL (initdb + pg_ctl
//! on a temp dir and a loopback port) for the store and leader election, and Prometheus (recorded
//! data loaded with `promtool tsdb create-blocks-from openmetrics`) for the metrics source.
//! Both come from Debian's packages (`scripts/install-test-deps.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use predictive_clouds::DynProvider;
use predictive_controller::clock::{Clock, VirtualClock};
use predictive_controller::config::{ConfigParams, MetricsParams, Mode, WorkloadParams};
use predictive_controller::run::Controller;
use predictive_controller::source::{MetricsSource, Prometheus, Replay};
use predictive_controller::store::{conformance, postgres::PostgresStore, Store};

use predictive_test_support::{self as test_support, free_port};

fn find_tool(name: &str, extra: &[&str]) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for pattern in extra {
        if let Ok(rd) = std::fs::read_dir(pattern) {
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect();
            v.sort();
            v.reverse();
            dirs.extend(v);
        }
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found: run scripts/install-test-deps.sh"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL cluster on a temp dir, stopped on drop.
struct Postgres {
    dir: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    root: bool,
}

impl Postgres {
    fn cmd(&self, prog: &Path) -> Command {
        if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(prog);
            c
        } else {
            Command::new(prog)
        }
    }

    fn start() -> Self {
        let initdb = find_tool("initdb", &["/usr/lib/postgresql"]);
        let pg_ctl = initdb.with_file_name("pg_ctl");
        let root = is_root();
        let dir = std::env::temp_dir().join(format!(
            "predictive-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if root {
            assert!(Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success());
        }
        let pg = Postgres {
            dir: dir.clone(),
            port: free_port(),
            pg_ctl,
            root,
        };
        let data = dir.join("data");
        let out = pg
            .cmd(&initdb)
            .args(["-A", "trust", "-U", "predictive", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.port,
            dir.display()
        );
        let out = pg
            .cmd(&pg.pg_ctl)
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=predictive dbname={db}",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .cmd(&self.pg_ctl)
            .args(["-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/nab_elb_request_count_8c0756.csv")
}

fn workload(name: &str) -> WorkloadParams {
    WorkloadParams {
        name: name.into(),
        cloud: "sim".into(),
        region: "sim-1a".into(),
        group: format!("{name}-asg"),
        instance_type: "m6i.large".into(),
        resource: "cpu".into(),
        capacity_per_instance: 25.0,
        min: 1,
        max: 40,
        budget_per_hour: None,
        price_per_hour: None,
        quantile: 0.95,
        lead: "10m".into(),
        accuracy_objective: 0.8,
        metrics: MetricsParams::Replay { path: trace() },
        shadow: Default::default(),
        remediation: Default::default(),
        watch: Default::default(),
    }
}

/// `controller bench --postgres`: the tick benchmark with its state in a real PostgreSQL, whose
/// rows are then read back (history, every tick's samples and one decision per workload and
/// tick).
#[test]
fn the_controller_bench_should_keep_its_state_in_postgres() {
    use predictive_controller::bench::{run_blocking_with_history, BenchStore};
    let pg = Postgres::start();
    let url = pg.url("postgres");
    let (n, warmup, ticks) = (20, 1, 2);
    let r = run_blocking_with_history(n, warmup, ticks, BenchStore::Postgres(&url), 1)
        .expect("bench on postgres");
    assert_eq!((r.workloads, r.ticks), (n, ticks));
    assert!(r.store_seconds_per_tick_mean > 0.0, "{r:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = PostgresStore::connect(&url).await.expect("connect");
        for w in ["w00000", "w00019"] {
            let samples = store.samples(w, 0).await.unwrap();
            assert_eq!(
                samples.len(),
                288 + warmup + ticks,
                "{w}: a day of history and a sample per tick"
            );
            let decisions = store.decisions(Some(w), 100).await.unwrap();
            assert_eq!(
                decisions.len(),
                warmup + ticks,
                "{w}: one decision per tick"
            );
        }
        assert_eq!(store.workloads().await.unwrap().len(), n);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms_and_elects_one_leader_per_workload() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let admin = PostgresStore::connect(&pg.url("postgres"))
        .await
        .expect("connect");
    conformance::run(&admin).await;

    // Migrations are idempotent across replicas connecting at once.
    let url = pg.url("postgres");
    let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));

    // Two replicas over the same workloads: each tick every workload runs on exactly one.
    let names: Vec<String> = (0..6).map(|i| format!("w{i}")).collect();
    let cfg = ConfigParams {
        interval: "5m".into(),
        mode: Mode::Act,
        concurrency: 4,
        owner: "pg-test".into(),
        retention: "35d".into(),
        store: None,
        api: None,
        metrics_listen: None,
        clouds: Default::default(),
        workloads: names.iter().map(|n| workload(n)).collect(),
    }
    .check("<pg-test>", Path::new("."))
    .unwrap();
    let clock = VirtualClock::new(1_397_174_400);
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let sim = predictive_controller::embedded::sim(clock_arc.clone(), None).unwrap();
    predictive_controller::embedded::ensure_groups(&sim, &cfg.owner, &cfg.workloads).unwrap();
    let sim: DynProvider = Arc::new(sim);
    let mut replicas = Vec::new();
    for (store, id) in [(a, "replica-a"), (b, "replica-b")] {
        let mut clouds = BTreeMap::new();
        clouds.insert("sim".to_string(), sim.clone());
        let ctl = Arc::new(Controller::new(&cfg, store, clouds, clock_arc.clone(), id));
        for w in &cfg.workloads {
            ctl.upsert(w.clone()).await.unwrap();
        }
        replicas.push(ctl);
    }
    let mut served_by_b = 0;
    for _ in 0..5 {
        clock.advance(300);
        let (ra, rb) = tokio::join!(replicas[0].tick(), replicas[1].tick());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(
            ra.errors.is_empty() && rb.errors.is_empty(),
            "{:?} {:?}",
            ra.errors,
            rb.errors
        );
        assert_eq!(
            ra.ok + rb.ok,
            names.len(),
            "every workload runs once per tick"
        );
        assert_eq!(
            ra.not_leader + rb.not_leader,
            names.len(),
            "and is skipped by the other replica"
        );
        served_by_b += rb.ok;
    }
    // Leases stick: whichever replica took a workload keeps it while it renews.
    assert!(
        served_by_b % 5 == 0,
        "leases moved between replicas without expiring"
    );
    let decisions = admin.decisions(None, 1000).await.unwrap();
    let ours = decisions
        .iter()
        .filter(|d| names.contains(&d.workload))
        .count();
    assert_eq!(
        ours,
        5 * names.len(),
        "one decision per workload and tick, from one replica"
    );

    // A replica that stops renewing loses its workloads to the other after the lease expires.
    drop(replicas.remove(0));
    clock.advance(3 * 300 + 300);
    let r = replicas[0].tick().await.unwrap();
    assert_eq!(r.ok, names.len(), "the survivor takes over every workload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_source_reads_recorded_data_and_drives_the_loop() {
    let replay = Replay::from_csv(&trace()).unwrap();
    // Two days of the real trace, at its own (5-minute) timestamps.
    let samples: Vec<(i64, f64)> = (0..576)
        .map(|i| (replay.start() + i * 300, replay.values()[i as usize]))
        .collect();
    let server = test_support::Prometheus::start("web_requests", "job=\"web\"", &samples)
        .expect("promtool and prometheus are installed (scripts/install-test-deps.sh)");
    let url = server.url().to_owned();

    let src = Prometheus::new(&url, "web_requests", Duration::from_secs(10));
    let t = samples[300].0;
    let pts = src.query_range(t - 1500, t, 300).await.unwrap();
    let want: Vec<(i64, f64)> = samples[295..=300].to_vec();
    assert_eq!(pts, want, "query_range returns the recorded samples");
    assert_eq!(src.observe(t, 300).await.unwrap(), samples[300].1);
    // History at a 5-second step over 200 samples: 11,941 points, more than Prometheus answers
    // in one request (11,000), so it is asked for in pieces; each point is the latest sample.
    let (from, to) = (samples[0].0, samples[199].0);
    let hist = src.history(from, to, 5).await.unwrap();
    assert_eq!(hist.len() as i64, (to - from) / 5 + 1);
    for (t, v) in &hist {
        let want = samples.iter().rev().find(|(s, _)| s <= t).unwrap().1;
        assert_eq!(*v, want, "history at {t}");
    }

    // The loop reads it as a workload's source, in virtual time.
    let mut w = workload("web");
    w.metrics = MetricsParams::Prometheus {
        url: url.clone(),
        query: "web_requests".into(),
    };
    // Its network, watched for anomalies beside its CPU, is another query on the same server.
    w.watch = BTreeMap::from([(
        "network".to_string(),
        MetricsParams::Prometheus {
            url: url.clone(),
            query: "web_requests * 2".into(),
        },
    )]);
    let mut broken = workload("broken");
    broken.metrics = MetricsParams::Prometheus {
        url: format!("http://127.0.0.1:{}", free_port()),
        query: "up".into(),
    };
    let cfg = ConfigParams {
        interval: "5m".into(),
        mode: Mode::DryRun,
        concurrency: 2,
        owner: "prom-test".into(),
        retention: "35d".into(),
        store: None,
        api: None,
        metrics_listen: None,
        clouds: Default::default(),
        workloads: vec![w, broken],
    }
    .check("<prom-test>", Path::new("."))
    .unwrap();
    let clock = VirtualClock::new(samples[200].0 - samples[200].0.rem_euclid(300));
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let sim = predictive_controller::embedded::sim(clock_arc.clone(), None).unwrap();
    predictive_controller::embedded::ensure_groups(&sim, &cfg.owner, &cfg.workloads).unwrap();
    let mut clouds = BTreeMap::new();
    clouds.insert("sim".to_string(), Arc::new(sim) as DynProvider);
    let store: Arc<dyn Store> =
        Arc::new(predictive_controller::store::sqlite::SqliteStore::in_memory().unwrap());
    let ctl = Arc::new(Controller::new(
        &cfg,
        store.clone(),
        clouds,
        clock_arc,
        "prom-test",
    ));
    for w in &cfg.workloads {
        ctl.upsert(w.clone()).await.unwrap();
    }
    for _ in 0..6 {
        clock.advance(300);
        let r = ctl.tick().await.unwrap();
        assert_eq!(r.ok, 1, "the healthy workload is served");
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].0, "broken");
        assert!(
            r.errors[0].1.starts_with(
                "workload `broken`: metrics unavailable: prometheus at http://127.0.0.1:"
            ),
            "{}",
            r.errors[0].1
        );
    }
    // Registered 200 samples into the recording: the first tick filled in what Prometheus
    // holds before it (the broken source only logs a warning), one sample per tick.
    let got = store.samples("web", 0).await.unwrap();
    assert_eq!(
        got[0].ts, samples[0].0,
        "filled in from the recording's start"
    );
    assert_eq!(got.len() as i64, (clock.now() - samples[0].0) / 300 + 1);
    assert!(store.samples("broken", 0).await.unwrap().is_empty());
    let net = store.samples("watch:network:web", 0).await.unwrap();
    assert_eq!(
        net.iter().map(|s| (s.ts, s.value)).collect::<Vec<_>>(),
        got.iter()
            .map(|s| (s.ts, 2.0 * s.value))
            .collect::<Vec<_>>(),
        "the watched metric is filled in and observed like the workload's own"
    );
    for s in &got {
        let want = samples.iter().rev().find(|(t, _)| *t <= s.ts).unwrap().1;
        assert_eq!(
            s.value, want,
            "usage at {} is the latest recorded sample",
            s.ts
        );
    }
    let d = store.decisions(Some("web"), 10).await.unwrap();
    assert_eq!(d.len(), 6);
    assert!(d
        .iter()
        .all(|d| d.mode == "dry-run" && !d.explanation.is_empty()));
}
