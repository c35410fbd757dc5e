//! History sources and clone registration against real servers: a Prometheus (started on a loopback port over a TSDB
//! built by `promtool` from a real trace excerpt, `examples/data`) and an in-process
//! `predictive` controller serving its gRPC API.
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
        24.0,
    )
    .await
    .unwrap();
    let History::Series { cpu, mem } = &*h else {
        panic!("prometheus gives samples")
    };
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
        24.0,
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
        24.0,
    )
    .await
    .unwrap_err();
    let text = terraform_provider_predictive::framework::diag::error_chain(&e);
    assert!(text.contains("returned 0 series"), "{text}");
}

/// An in-process controller with one `push` workload, forecasts made by a few ticks in
/// virtual time, and its API on a loopback port.
struct ControllerFixture {
    /// `http://127.0.0.1:PORT`.
    endpoint: String,
    /// The controller.
    ctl: Arc<Controller>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ControllerFixture {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The API token of the fixture.
const TOKEN: &str = "ctl-token-8e2a41";

/// Starts the fixture (the workload `batch`: m6i.xlarge, 4 units per instance).
async fn controller() -> ControllerFixture {
    let cfg = ConfigParams {
        interval: "5m".into(),
        mode: predictive_controller::config::Mode::Act,
        concurrency: 2,
        owner: "tf-test".into(),
        store: None,
        api: None,
        metrics_listen: None,
        workloads: vec![],
    }
    .check("<t>", Path::new("."))
    .unwrap();
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
    let spec = r#"{"name":"batch","group":"batch-asg","instance_type":"m6i.xlarge","capacity_per_instance":4,"min":1,"max":10,"metrics":{"kind":"push"}}"#;
    c.put_workload(pb::PutWorkloadRequest {
        spec_json: spec.into(),
    })
    .await
    .unwrap();
    for k in 0..6i64 {
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
    ControllerFixture {
        endpoint,
        ctl,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_history_should_be_its_latest_forecast_in_vcpu() {
    let fx = controller().await;
    let mut c = predictive_controller::api::connect(&fx.endpoint, TOKEN)
        .await
        .unwrap();
    let fs = c
        .get_forecasts(predictive_controller::api::pb::GetForecastsRequest {
            workload: "batch".into(),
            since: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .forecasts;
    let latest = fs.iter().max_by_key(|f| f.ts).unwrap();
    let settings = ControllerSettings {
        endpoint: fx.endpoint.clone(),
        token: TOKEN.into(),
    };
    let src = HistorySource::Controller(fx.endpoint.clone());
    let h = sizing::load(
        &HistoryCache::default(),
        sources(&src, Some(&settings), 0),
        &Usage::Workload("batch".into()),
        0.1,
    )
    .await
    .unwrap();
    let History::Forecast(p) = &*h else {
        panic!("the controller gives a forecast")
    };
    // m6i.xlarge has 4 vCPU and serves 4 units: one unit is one vCPU.
    let vcpu = Catalog::embedded()
        .types()
        .iter()
        .find(|t| t.name == "m6i.xlarge")
        .unwrap()
        .vcpu;
    let f = vcpu / 4.0;
    assert_eq!(
        p.levels,
        vec![(0.5, latest.p50 * f), (latest.quantile, latest.upper * f)]
    );
    assert_eq!(p.model, format!("controller/{}", latest.model));

    // A wrong token is refused, and the error does not carry it.
    let wrong = ControllerSettings {
        endpoint: fx.endpoint.clone(),
        token: "not-the-token".into(),
    };
    let e = sizing::load(
        &HistoryCache::default(),
        sources(&src, Some(&wrong), 0),
        &Usage::Workload("batch".into()),
        1.0,
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
        sources(&src, Some(&settings), 0),
        &Usage::Workload("nope".into()),
        1.0,
    )
    .await
    .unwrap_err();
    let text = terraform_provider_predictive::framework::diag::error_chain(&e);
    assert!(text.contains("\"nope\" is not registered"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_should_register_a_clone_with_the_controller_and_size_it_from_its_forecast() {
    let Some(bin) = common::terraform_bin() else {
        return;
    };
    let fx = controller().await;
    let mut tf = common::Tf::new(bin);
    tf.env = vec![("TF_VAR_controller_token".into(), TOKEN.into())];
    let state = tf.dir.join(".predictive/state.db");
    tf.write(&format!(
        r#"
terraform {{
  required_providers {{
    predictive = {{ source = "predictive/predictive" }}
  }}
}}
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
  }}
}}
resource "predictive_clone" "copy" {{
  name = "batch-copy"
  source {{
    workload = "batch"
  }}
  clouds    = ["aws"]
  max_count = 20
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
        tf.ok(&[
            "apply",
            "-input=false",
            "-auto-approve",
            "-no-color",
            "tfplan",
        ]);
        assert_eq!(tf.plan_exit_code(), 0, "a plan right after apply is empty");
        (tf, v)
    })
    .await
    .unwrap();
    let (tf, planned) = tf;
    assert!(
        planned["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("controller/")),
        "{planned}"
    );
    let clones = fx.ctl.store().clones().await.unwrap();
    assert_eq!(clones.len(), 1, "{clones:?}");
    assert_eq!(
        (clones[0].name.as_str(), clones[0].source.as_str()),
        ("batch-copy", "batch")
    );
    let spec: serde_json::Value = serde_json::from_str(&clones[0].spec).unwrap();
    assert_eq!(spec["id"], "clone-batch-copy");
    assert_eq!(spec["hourly_cost"], planned["hourly_cost"]);
    assert!(!clones[0].spec.contains(TOKEN));

    let tf = tokio::task::spawn_blocking(move || {
        for f in ["terraform.tfstate"] {
            let text = std::fs::read_to_string(tf.dir.join(f)).unwrap();
            assert!(!text.contains(TOKEN), "the token leaked into {f}");
        }
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
