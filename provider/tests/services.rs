//! History sources and clone registration against real servers: a Prometheus (started on a
//! loopback port over a TSDB built by `promtool` from a real trace excerpt, `examples/data`) and
//! an in-process `predictive` controller serving its gRPC API (its recorded usage seeded from
//! the same excerpt). Terraform plans against both, and the plan's demand is checked against
//! the engine's forecast of the history each source gives.
//!
//! Prometheus is skipped locally when it is not installed and FAILS when `CI` is set.

use predictive_controller::clock::{Clock, VirtualClock};
use predictive_controller::config::ConfigParams;
use predictive_controller::run::Controller;
use predictive_controller::store::sqlite::SqliteStore;
use predictive_engine::cost::Catalog;
use predictive_test_support::Prometheus;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use terraform_provider_predictive::provider::config::{ControllerSettings, HistorySource};
use terraform_provider_predictive::provider::history;
use terraform_provider_predictive::provider::sizing::{
    self, History, HistoryCache, Sources, Usage,
};

mod common;

fn trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/nab_elb_request_count_8c0756.csv")
}

fn sources<'a>(h: &'a HistorySource, c: Option<&'a ControllerSettings>, now: i64) -> Sources<'a> {
    Sources {
        history: h,
        controller: c,
        env_token: None,
        catalog: Catalog::embedded(),
        now,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_history_should_be_the_recorded_samples_at_an_hourly_step() {
    let raw: Vec<(i64, f64)> =
        predictive_traces::read_samples(&trace(), predictive_traces::Metric::Cpu)
            .unwrap()
            .into_iter()
            .map(|s| (s.timestamp, s.value))
            .collect();
    let Some(prom) = Prometheus::start("cpu_cores", "workload=\"web\"", &raw) else {
        return;
    };
    let (first, last) = (raw[0].0, raw[raw.len() - 1].0);
    let end = last - last.rem_euclid(3600);
    let lookback = end - (first - first.rem_euclid(3600) + 3600);
    let src = HistorySource::Prometheus {
        url: prom.url().to_owned(),
        query: "sum(cpu_cores{workload=\"{workload}\"})".into(),
        lookback_secs: lookback,
    };
    // `now` inside the last hour: the window ends at the last full hour.
    let cache = HistoryCache::default();
    let h = sizing::load(
        &cache,
        sources(&src, None, end + 1800),
        &Usage::Workload("web".into()),
    )
    .await
    .unwrap();
    let History::Series { cpu, mem } = &*h;
    assert!(mem.is_none());
    assert_eq!(cpu.step(), 3600);
    assert_eq!(cpu.start(), end - lookback);
    // Expected: at each step, the latest sample of the 5 minutes before it (Prometheus's
    // staleness rule for instant values), computed here from the raw trace.
    let want: Vec<f64> = (0..cpu.len() as i64)
        .map(|k| {
            let t = end - lookback + k * 3600;
            raw.iter()
                .rev()
                .find(|(ts, _)| *ts <= t && *ts > t - 300)
                .map(|(_, v)| *v)
                .expect("a sample within 5 minutes of every hour of the excerpt")
        })
        .collect();
    assert_eq!(cpu.values(), &want[..]);
    assert!(cpu.len() >= 300, "{} hours", cpu.len());

    // The same trace through the file source forecasts on the same scale.
    let from_file = history::read_file(&trace(), "web").unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (a, b) = (mean(cpu.values()), mean(from_file.values()));
    assert!(
        (a - b).abs() / b < 0.25,
        "prometheus mean {a}, file mean {b}"
    );

    // Errors name Prometheus's reason.
    let bad = HistorySource::Prometheus {
        url: prom.url().to_owned(),
        query: "sum(cpu_cores{".into(),
        lookback_secs: lookback,
    };
    let e = sizing::load(
        &HistoryCache::default(),
        sources(&bad, None, end),
        &Usage::Workload("web".into()),
    )
    .await
    .unwrap_err();
    let text = terraform_provider_predictive::framework::diag::error_chain(&e);
    assert!(
        text.contains("answered 400") && text.contains("parse error"),
        "{text}"
    );
    let none = HistorySource::Prometheus {
        url: prom.url().to_owned(),
        query: "cpu_cores{workload=\"{workload}\"}".into(),
        lookback_secs: lookback,
    };
    let e = sizing::load(
        &HistoryCache::default(),
        sources(&none, None, end),
        &Usage::Workload("db".into()),
    )
    .await
    .unwrap_err();
    let text = terraform_provider_predictive::framework::diag::error_chain(&e);
    assert!(text.contains("returned 0 series"), "{text}");
}

/// The trace excerpt shifted so that its last sample falls in the last full hour before now.
fn trace_ending_now() -> (Vec<(i64, f64)>, i64) {
    let raw: Vec<(i64, f64)> =
        predictive_traces::read_samples(&trace(), predictive_traces::Metric::Cpu)
            .unwrap()
            .into_iter()
            .map(|s| (s.timestamp, s.value))
            .collect();
    let now = unix_now();
    let end = now - now.rem_euclid(3600);
    let shift = end - 1 - raw[raw.len() - 1].0;
    (raw.into_iter().map(|(t, v)| (t + shift, v)).collect(), now)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The demand the engine forecasts over `horizon_hours` from what `src` gives for `workload`
/// at `now`: `(quantile, cpu)` rounded as the plan shows them.
async fn expected_demand(
    src: &HistorySource,
    c: Option<&ControllerSettings>,
    workload: &str,
    now: i64,
    horizon_hours: f64,
) -> Vec<(f64, f64)> {
    let h = sizing::load(
        &HistoryCache::default(),
        sources(src, c, now),
        &Usage::Workload(workload.into()),
    )
    .await
    .unwrap();
    let History::Series { cpu, .. } = &*h;
    let p = sizing::peaks(&sizing::ForecastCache::default(), "cpu", cpu, horizon_hours).unwrap();
    p.levels
        .iter()
        .map(|(l, v)| (*l, (v * 1e6).round() / 1e6))
        .collect()
}

/// `(quantile, cpu)` of the planned `demand`.
fn planned_demand(planned: &serde_json::Value) -> Vec<(f64, f64)> {
    planned["demand"]
        .as_array()
        .expect("demand computed at plan")
        .iter()
        .map(|d| (d["quantile"].as_f64().unwrap(), d["cpu"].as_f64().unwrap()))
        .collect()
}

const PROVIDER_HEAD: &str = r#"
terraform {
  required_providers {
    predictive = { source = "predictive/predictive" }
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_should_size_a_clone_from_a_real_prometheus() {
    let Some(bin) = common::terraform_bin() else {
        return;
    };
    let (raw, now) = trace_ending_now();
    let Some(prom) = Prometheus::start("cpu_cores", "workload=\"web\"", &raw) else {
        return;
    };
    let query = "sum(cpu_cores{workload=\"{workload}\"})";
    let tf = common::Tf::new(bin);
    let state = tf.dir.join(".predictive/state.db");
    tf.write(&format!(
        r#"{PROVIDER_HEAD}
provider "predictive" {{
  state_path = "{state}"
  history {{
    prometheus_url   = "{url}"
    prometheus_query = "{q}"
    lookback         = "7d"
  }}
}}
resource "predictive_clone" "web" {{
  name = "web"
  source {{
    workload = "web"
  }}
  clouds    = ["aws"]
  regions   = ["us-east-1"]
  horizon   = "24h"
  max_count = 50
}}
"#,
        state = state.display(),
        url = prom.url(),
        q = query.replace('"', "\\\""),
    ));
    let (tf, planned) = tokio::task::spawn_blocking(move || {
        tf.ok(&["init", "-input=false", "-no-color"]);
        let plan = tf.plan_json();
        let v = common::resource(
            &plan["planned_values"]["root_module"],
            "predictive_clone.web",
        )["values"]
            .clone();
        (tf, v)
    })
    .await
    .unwrap();
    drop(tf);
    let src = HistorySource::Prometheus {
        url: prom.url().to_owned(),
        query: query.into(),
        lookback_secs: 7 * 86_400,
    };
    let got = planned_demand(&planned);
    // The plan ran within the hour of `now` (or the next one, if an hour turned meanwhile).
    let mut want = expected_demand(&src, None, "web", now, 24.0).await;
    if got != want {
        want = expected_demand(&src, None, "web", unix_now(), 24.0).await;
    }
    assert_eq!(
        got, want,
        "the plan's demand is the forecast of prometheus's series"
    );
    assert!(got.iter().all(|(_, c)| *c > 0.0), "{got:?}");
    let alloc = planned["allocation"].as_array().expect("sized at plan");
    assert!(
        !alloc.is_empty() && planned["hourly_cost"].as_f64().unwrap() > 0.0,
        "{planned}"
    );
}

/// An in-process controller with one `push` workload (m6i.xlarge serving 2 units per instance:
/// one unit is 2 vCPU), a few ticks in virtual time, its recorded usage seeded from the trace
/// excerpt (shifted to end now), and its API on a loopback port.
struct ControllerFixture {
    /// `http://127.0.0.1:PORT`.
    endpoint: String,
    /// The controller.
    ctl: Arc<Controller>,
    /// The seeded usage, in the workload's units.
    seeded: Vec<(i64, f64)>,
    /// Unix seconds when it was seeded.
    now: i64,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ControllerFixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The API token of the fixture.
const TOKEN: &str = "ctl-token-8e2a41";

/// Starts the fixture (the workload `batch`).
async fn controller() -> ControllerFixture {
    // Read as a config file is (fields left out take their defaults).
    let cfg: ConfigParams = serde_json::from_value(serde_json::json!({
        "interval": "5m",
        "mode": "act",
        "concurrency": 2,
        "owner": "tf-test",
        "store": null,
        "api": null,
        "metrics_listen": null,
    }))
    .unwrap();
    let cfg = cfg.check("<t>", Path::new(".")).unwrap();
    let clock = VirtualClock::new(1_000_200);
    let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
    let sim = predictive_controller::embedded::sim(clock_arc.clone(), None).unwrap();
    sim.cloud
        .create_group(predictive_clouds::sim::GroupSpec::new(
            "batch-asg",
            "m6i.xlarge",
            0,
            10,
        ))
        .unwrap();
    let mut clouds = BTreeMap::new();
    clouds.insert(
        "sim".to_string(),
        Arc::new(sim) as predictive_clouds::DynProvider,
    );
    let ctl = Arc::new(Controller::new(
        &cfg,
        Arc::new(SqliteStore::in_memory().unwrap()),
        clouds,
        clock_arc,
        "t",
    ));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", l.local_addr().unwrap());
    let server = tokio::spawn({
        let ctl = ctl.clone();
        async move {
            let _ = predictive_controller::api::serve(l, ctl, TOKEN).await;
        }
    });
    let mut c = predictive_controller::api::connect(&endpoint, TOKEN)
        .await
        .unwrap();
    use predictive_controller::api::pb;
    let spec = r#"{"name":"batch","group":"batch-asg","instance_type":"m6i.xlarge","capacity_per_instance":2,"min":1,"max":10,"metrics":{"kind":"push"}}"#;
    c.put_workload(pb::PutWorkloadRequest {
        spec_json: spec.into(),
    })
    .await
    .unwrap();
    for k in 0..3i64 {
        let ts = 1_000_200 + k * 300;
        c.push_metrics(pb::PushMetricsRequest {
            workload: "batch".into(),
            samples: vec![pb::Sample {
                ts: ts + 300,
                value: 10.0 + 2.0 * k as f64,
            }],
        })
        .await
        .unwrap();
        clock.advance(300);
        let r = ctl.tick().await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
    // The usage the controller recorded, as its loop stores it (one row per timestamp).
    let (seeded, now) = trace_ending_now();
    let rows: Vec<predictive_controller::store::Sample> = seeded
        .iter()
        .map(|(ts, value)| predictive_controller::store::Sample {
            ts: *ts,
            value: *value,
        })
        .collect();
    ctl.store().put_samples("batch", &rows).await.unwrap();
    ControllerFixture {
        endpoint,
        ctl,
        seeded,
        now,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_history_should_be_its_recorded_usage_in_hourly_vcpu() {
    let fx = controller().await;
    let settings = ControllerSettings {
        endpoint: fx.endpoint.clone(),
        token: TOKEN.into(),
    };
    let lookback = 3 * 86_400;
    let src = HistorySource::Controller {
        url: fx.endpoint.clone(),
        lookback_secs: lookback,
    };
    let h = sizing::load(
        &HistoryCache::default(),
        sources(&src, Some(&settings), fx.now),
        &Usage::Workload("batch".into()),
    )
    .await
    .unwrap();
    let History::Series { cpu, mem } = &*h;
    assert!(mem.is_none());
    assert_eq!(cpu.step(), 3600);
    // Expected from the seeded rows: hourly means over [end - lookback, end), in vCPU
    // (m6i.xlarge has 4 vCPU and serves 2 units).
    let vcpu = Catalog::embedded()
        .types()
        .iter()
        .find(|t| t.name == "m6i.xlarge")
        .unwrap()
        .vcpu;
    let factor = vcpu / 2.0;
    let end = fx.now - fx.now.rem_euclid(3600);
    let from = end - lookback;
    let mut want: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for (ts, v) in fx.seeded.iter().filter(|(t, _)| *t >= from && *t < end) {
        let e = want.entry(ts - (ts - from).rem_euclid(3600)).or_default();
        e.0 += v;
        e.1 += 1;
    }
    assert!(
        want.len() >= 48,
        "{} hours seeded in the window",
        want.len()
    );
    let (first, last) = (*want.keys().next().unwrap(), *want.keys().last().unwrap());
    assert_eq!(cpu.start(), first);
    assert_eq!(
        cpu.start() + (cpu.len() as i64 - 1) * 3600,
        last,
        "the series spans the recorded hours"
    );
    for (ts, (sum, n)) in &want {
        let got = cpu.values()[((ts - first) / 3600) as usize];
        let w = sum / f64::from(*n) * factor;
        assert!((got - w).abs() < 1e-9 * w.max(1.0), "{ts}: {got} vs {w}");
    }

    // A wrong token is refused, and the error does not carry it.
    let wrong = ControllerSettings {
        endpoint: fx.endpoint.clone(),
        token: "not-the-token".into(),
    };
    let e = sizing::load(
        &HistoryCache::default(),
        sources(&src, Some(&wrong), fx.now),
        &Usage::Workload("batch".into()),
    )
    .await
    .unwrap_err();
    let text = terraform_provider_predictive::framework::diag::error_chain(&e);
    assert!(text.contains("Unauthenticated"), "{text}");
    assert!(
        !text.contains("not-the-token") && !text.contains(TOKEN),
        "{text}"
    );
    // An unknown workload is named.
    let e = sizing::load(
        &HistoryCache::default(),
        sources(&src, Some(&settings), fx.now),
        &Usage::Workload("nope".into()),
    )
    .await
    .unwrap_err();
    let text = terraform_provider_predictive::framework::diag::error_chain(&e);
    assert!(text.contains("\"nope\" is not registered"), "{text}");
    // A window with nothing recorded says so.
    let e = sizing::load(
        &HistoryCache::default(),
        sources(&src, Some(&settings), fx.now - 400 * 86_400),
        &Usage::Workload("batch".into()),
    )
    .await
    .unwrap_err();
    let text = terraform_provider_predictive::framework::diag::error_chain(&e);
    assert!(text.contains("recorded no usage"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_should_register_a_clone_with_the_controller_and_size_it_from_its_history() {
    let Some(bin) = common::terraform_bin() else {
        return;
    };
    let fx = controller().await;
    let mut tf = common::Tf::new(bin);
    tf.env = vec![("TF_VAR_controller_token".into(), TOKEN.into())];
    let state = tf.dir.join(".predictive/state.db");
    tf.write(&format!(
        r#"{PROVIDER_HEAD}
variable "controller_token" {{
  type      = string
  sensitive = true
}}
provider "predictive" {{
  state_path = "{state}"
  controller {{
    endpoint = "{endpoint}"
    token    = var.controller_token
  }}
  history {{
    controller_url = "{endpoint}"
    lookback       = "7d"
  }}
}}
resource "predictive_clone" "copy" {{
  name = "batch-copy"
  source {{
    workload = "batch"
  }}
  clouds    = ["aws"]
  horizon   = "24h"
  max_count = 40
}}
"#,
        state = state.display(),
        endpoint = fx.endpoint,
    ));
    // Terraform runs as a child process; the API is served by this runtime's other worker.
    let tf = tokio::task::spawn_blocking(move || {
        tf.ok(&["init", "-input=false", "-no-color"]);
        let plan = tf.plan_json();
        let v = common::resource(
            &plan["planned_values"]["root_module"],
            "predictive_clone.copy",
        )["values"]
            .clone();
        tf.apply_plan();
        assert_eq!(tf.plan_exit_code(), 0, "a plan right after apply is empty");
        (tf, v)
    })
    .await
    .unwrap();
    let (tf, planned) = tf;
    let settings = ControllerSettings {
        endpoint: fx.endpoint.clone(),
        token: TOKEN.into(),
    };
    let src = HistorySource::Controller {
        url: fx.endpoint.clone(),
        lookback_secs: 7 * 86_400,
    };
    let got = planned_demand(&planned);
    let mut want = expected_demand(&src, Some(&settings), "batch", fx.now, 24.0).await;
    if got != want {
        want = expected_demand(&src, Some(&settings), "batch", unix_now(), 24.0).await;
    }
    assert_eq!(
        got, want,
        "the plan's demand is the forecast of the controller's history"
    );
    assert!(got.iter().all(|(_, c)| *c > 0.0), "{got:?}");
    let clones = fx.ctl.store().clones().await.unwrap();
    assert_eq!(clones.len(), 1, "{clones:?}");
    assert_eq!(
        (clones[0].name.as_str(), clones[0].source.as_str()),
        ("batch-copy", "batch")
    );
    let spec: serde_json::Value = serde_json::from_str(&clones[0].spec).unwrap();
    assert_eq!(spec["id"], "clone-batch-copy");
    assert_eq!(spec["hourly_cost"], planned["hourly_cost"]);
    // The features later clones learn drift from.
    assert_eq!(spec["app_type"], "web");
    assert_eq!(spec["user_role"], "normal");
    assert_eq!(spec["source_allocation"], planned["source_allocation"]);
    let created = spec["created_at"].as_i64().expect("created_at recorded");
    assert!((created - unix_now()).abs() < 3600, "{created}");
    assert_eq!(planned["drift_basis"], "none");
    assert_eq!(planned["drift_ratio"], 1.0);
    assert!(!clones[0].spec.contains(TOKEN));

    let tf = tokio::task::spawn_blocking(move || {
        let text = std::fs::read_to_string(tf.dir.join("terraform.tfstate")).unwrap();
        assert!(
            !text.contains(TOKEN),
            "the token leaked into terraform.tfstate"
        );
        tf.ok(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
        tf
    })
    .await
    .unwrap();
    assert!(
        fx.ctl.store().clones().await.unwrap().is_empty(),
        "destroy unregisters the clone"
    );
    drop(tf);
}

/// Earlier clones through the controller's real gRPC API: `ListClones` gives their features,
/// `GetHistory` of each clone's own name its usage since it was created (in vCPU by its workload
/// spec), and the engine learns the drift of each role from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_clones_should_be_learned_from_the_controller_history() {
    use predictive_controller::api::pb;
    use predictive_engine::policy::clone::{CloneFeatures, DriftModel};
    use terraform_provider_predictive::provider::drift;
    use terraform_provider_predictive::provider::store::Store;
    let fx = controller().await;
    let mut c = predictive_controller::api::connect(&fx.endpoint, TOKEN)
        .await
        .unwrap();
    let end = fx.now - fx.now.rem_euclid(3600);
    let created = end - 48 * 3600 + 600;
    // m6i.xlarge serving 2 units: one unit is 2 vCPU. Sources of 16 vCPU.
    let source_allocation = 16.0;
    for (name, role, share) in [
        ("qa-1", "qa", 0.28),
        ("qa-2", "qa", 0.32),
        ("dev-1", "dev", 0.9),
    ] {
        let spec = format!(
            r#"{{"name":"{name}","group":"batch-asg","instance_type":"m6i.xlarge","capacity_per_instance":2,"min":1,"max":10,"metrics":{{"kind":"push"}}}}"#
        );
        c.put_workload(pb::PutWorkloadRequest { spec_json: spec })
            .await
            .unwrap();
        let units = share * source_allocation / 2.0;
        let rows: Vec<predictive_controller::store::Sample> = (0..48 * 12)
            .map(|k| predictive_controller::store::Sample {
                ts: created + k * 300,
                value: units,
            })
            .collect();
        fx.ctl.store().put_samples(name, &rows).await.unwrap();
        c.put_clone(pb::PutCloneRequest {
            clone: Some(pb::Clone {
                name: name.into(),
                source: "batch".into(),
                spec_json: serde_json::json!({
                    "app_type": "web",
                    "user_role": role,
                    "source_allocation": source_allocation,
                    "created_at": created,
                })
                .to_string(),
            }),
        })
        .await
        .unwrap();
    }
    // Registered with a feature of the wrong type: left out, and named.
    c.put_clone(pb::PutCloneRequest {
        clone: Some(pb::Clone {
            name: "odd".into(),
            source: "batch".into(),
            spec_json:
                r#"{"app_type":"web","user_role":"qa","source_allocation":"big","created_at":1}"#
                    .into(),
        }),
    })
    .await
    .unwrap();
    let settings = ControllerSettings {
        endpoint: fx.endpoint.clone(),
        token: TOKEN.into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).unwrap();
    // The controller as the history source, and the controller only as the clones' registry:
    // both read each clone's usage by its name.
    let by_source = HistorySource::Controller {
        url: fx.endpoint.clone(),
        lookback_secs: 7 * 86_400,
    };
    for history in [by_source, HistorySource::None] {
        let g = drift::gather(
            sources(&history, Some(&settings), fx.now),
            &HistoryCache::default(),
            &store,
        )
        .await;
        assert_eq!(g.problems.len(), 1, "{:?}", g.problems);
        let text = terraform_provider_predictive::framework::diag::error_chain(&g.problems[0]);
        assert!(
            text.contains("clone \"odd\"") && text.contains("source_allocation"),
            "{text}"
        );
        let mut names: Vec<&str> = g.clones.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["dev-1", "qa-1", "qa-2"]);
        for e in &g.clones {
            let u = e.usage.as_ref().expect("usage since creation");
            assert_eq!(u.len(), 48, "{}: hours since creation", e.name);
        }
        let model = DriftModel::fit(&drift::histories(&g.clones, "new"));
        let f = |role: &str, age_hours: f64| CloneFeatures {
            age_hours,
            app_type: "web".into(),
            user_role: role.into(),
            source_allocation: 20.0,
        };
        for age in [0.0, 3.0, 30.0] {
            let (r, basis) = model.ratio(&f("qa", age));
            assert!(
                (r - 0.30).abs() < 1e-9 && basis == "size",
                "{age} h: {r} {basis}"
            );
            let (r, _) = model.ratio(&f("dev", age));
            assert!((r - 0.9).abs() < 1e-9, "{age} h: {r}");
        }
    }
}
