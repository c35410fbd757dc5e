//! The tfplugin6 service driven in-process, as Terraform would call it: schema, validation
//! diagnostics with attribute paths, configure, plan/apply/read/import/delete of a budget, and a
//! decimal number that must round-trip exactly.

use terraform_provider_predictive::convert::{from_proto, to_proto};
use terraform_provider_predictive::proto::ProviderServer;
use terraform_provider_predictive::provider::PredictiveProvider;
use terraform_provider_predictive::tfplugin6 as pb;
use terraform_provider_predictive::tfplugin6::provider_server::Provider as _;
use terraform_provider_predictive::value::{msgpack, Number, Type, Value};
use tonic::Request;

fn server() -> ProviderServer<PredictiveProvider> {
    ProviderServer::new(PredictiveProvider, Default::default())
}

fn ty(s: &pb::Schema) -> Type {
    // Rebuild the object type from the wire schema, as Terraform does.
    fn block(b: &pb::schema::Block) -> Type {
        let mut attrs: Vec<(String, Type)> = b
            .attributes
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    parse(&serde_json::from_slice(&a.r#type).unwrap()),
                )
            })
            .collect();
        for n in &b.block_types {
            let inner = block(n.block.as_ref().unwrap());
            attrs.push((
                n.type_name.clone(),
                if n.nesting == pb::schema::nested_block::NestingMode::Single as i32 {
                    inner
                } else {
                    Type::list(inner)
                },
            ));
        }
        Type::object(attrs)
    }
    fn parse(j: &serde_json::Value) -> Type {
        match j {
            serde_json::Value::String(s) if s == "string" => Type::String,
            serde_json::Value::String(s) if s == "number" => Type::Number,
            serde_json::Value::String(s) if s == "bool" => Type::Bool,
            serde_json::Value::Array(a) => match a[0].as_str().unwrap() {
                "list" => Type::list(parse(&a[1])),
                "set" => Type::set(parse(&a[1])),
                "map" => Type::map(parse(&a[1])),
                "object" => Type::object(
                    a[1].as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), parse(v))),
                ),
                other => panic!("type {other}"),
            },
            other => panic!("type {other}"),
        }
    }
    block(s.block.as_ref().unwrap())
}

fn dv(v: &Value, t: &Type) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: msgpack::encode(v, t),
        json: vec![],
    })
}

fn with(base: &Type, pairs: Vec<(&str, Value)>) -> Value {
    let Type::Object(attrs) = base else { panic!() };
    let mut v = Value::Object(attrs.keys().map(|k| (k.clone(), Value::Null)).collect());
    for (k, x) in pairs {
        v.set(k, x);
    }
    v
}

/// The provider's schema, as Terraform fetches it first.
async fn schema(srv: &ProviderServer<PredictiveProvider>) -> pb::get_provider_schema::Response {
    srv.get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner()
}

/// Configures `srv` with its state store at `state`, the given `history` blocks and no cloud
/// blocks; the response's diagnostics.
async fn configure(
    srv: &ProviderServer<PredictiveProvider>,
    pt: &Type,
    state: &std::path::Path,
    history: Vec<Value>,
) -> Vec<pb::Diagnostic> {
    let pcfg = with(
        pt,
        vec![
            ("state_path", Value::string(state.display().to_string())),
            ("history", Value::List(history)),
            ("aws", Value::List(vec![])),
            ("azure", Value::List(vec![])),
            ("gcp", Value::List(vec![])),
        ],
    );
    srv.configure_provider(Request::new(pb::configure_provider::Request {
        terraform_version: "1.0.3".into(),
        config: dv(&pcfg, pt),
    }))
    .await
    .unwrap()
    .into_inner()
    .diagnostics
}

#[tokio::test]
async fn schema_should_list_every_resource_and_data_source() {
    let s = schema(&server()).await;
    let mut r: Vec<_> = s.resource_schemas.keys().cloned().collect();
    r.sort();
    assert_eq!(r, ["predictive_budget", "predictive_clone"]);
    let mut d: Vec<_> = s.data_source_schemas.keys().cloned().collect();
    d.sort();
    assert_eq!(
        d,
        [
            "predictive_forecast",
            "predictive_instance_types",
            "predictive_sizing"
        ]
    );
    let p = s.provider.unwrap();
    let aws = p
        .block
        .as_ref()
        .unwrap()
        .block_types
        .iter()
        .find(|b| b.type_name == "aws")
        .unwrap();
    let secret = aws
        .block
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|a| a.name == "secret_key")
        .unwrap();
    assert!(secret.sensitive);
}

#[tokio::test]
async fn invalid_clone_config_should_yield_diagnostics_with_attribute_paths() {
    let srv = server();
    let schema = schema(&srv).await;
    let t = ty(&schema.resource_schemas["predictive_clone"]);
    let cfg = with(
        &t,
        vec![
            ("name", Value::string("Bad Name")),
            ("quantile", Value::number(1.5)),
            ("purchase_options", Value::strings(["on-demand", "lease"])),
            ("horizon", Value::string("3 weeks")),
            ("source", Value::List(vec![])),
        ],
    );
    let resp = srv
        .validate_resource_config(Request::new(pb::validate_resource_config::Request {
            type_name: "predictive_clone".into(),
            config: dv(&cfg, &t),
        }))
        .await
        .unwrap()
        .into_inner();
    let paths: Vec<String> = resp
        .diagnostics
        .iter()
        .filter_map(|d| d.attribute.as_ref())
        .map(|p| from_proto::attribute_path(p).to_string())
        .collect();
    for want in [
        "name",
        "quantile",
        "purchase_options[1]",
        "horizon",
        "source",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "no diagnostic at {want}: {paths:?}"
        );
    }
    assert!(resp
        .diagnostics
        .iter()
        .all(|d| d.severity == pb::diagnostic::Severity::Error as i32));
}

#[tokio::test]
async fn unknown_values_should_pass_validation_untouched() {
    let srv = server();
    let schema = schema(&srv).await;
    let t = ty(&schema.resource_schemas["predictive_clone"]);
    let cfg = with(
        &t,
        vec![
            ("name", Value::Unknown),
            ("quantile", Value::Unknown),
            ("horizon", Value::Unknown),
        ],
    );
    let resp = srv
        .validate_resource_config(Request::new(pb::validate_resource_config::Request {
            type_name: "predictive_clone".into(),
            config: dv(&cfg, &t),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.diagnostics.iter().all(|d| d
        .attribute
        .as_ref()
        .map(|p| from_proto::attribute_path(p).to_string())
        != Some("quantile".into())));
}

#[tokio::test]
async fn a_budget_should_plan_apply_read_import_and_delete_with_exact_decimals() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server();
    let schema = schema(&srv).await;
    let pt = ty(schema.provider.as_ref().unwrap());
    let diagnostics = configure(&srv, &pt, &dir.path().join("s.db"), vec![]).await;
    assert!(diagnostics.is_empty(), "{diagnostics:?}");

    let t = ty(&schema.resource_schemas["predictive_budget"]);
    let cap = Value::Number(Number::Decimal("3.072".into()));
    let cfg = with(
        &t,
        vec![("name", Value::string("team")), ("hourly_cap", cap.clone())],
    );
    let plan = srv
        .plan_resource_change(Request::new(pb::plan_resource_change::Request {
            type_name: "predictive_budget".into(),
            prior_state: dv(&Value::Null, &t),
            proposed_new_state: dv(&cfg, &t),
            config: dv(&cfg, &t),
            prior_private: vec![],
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(plan.diagnostics.is_empty(), "{:?}", plan.diagnostics);
    let planned = from_proto::dynamic_value(plan.planned_state.as_ref(), &t).unwrap();
    assert_eq!(
        planned.get("id"),
        &Value::Unknown,
        "the id is known once the budget exists"
    );
    assert_eq!(planned.get("effective_hourly_cap"), &cap);
    // 3.072 travels as the decimal string, never as the nearest float64.
    assert!(plan
        .planned_state
        .as_ref()
        .unwrap()
        .msgpack
        .windows(5)
        .any(|w| w == b"3.072"));

    let applied = srv
        .apply_resource_change(Request::new(pb::apply_resource_change::Request {
            type_name: "predictive_budget".into(),
            prior_state: dv(&Value::Null, &t),
            planned_state: plan.planned_state.clone(),
            config: dv(&cfg, &t),
            planned_private: vec![],
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(applied.diagnostics.is_empty(), "{:?}", applied.diagnostics);
    let state = from_proto::dynamic_value(applied.new_state.as_ref(), &t).unwrap();
    assert_eq!(state.get("id"), &Value::string("budget-team"));
    let mut expected = planned.clone();
    expected.set("id", Value::string("budget-team"));
    assert_eq!(state, expected);

    // Re-plan with the same config: the plan equals the state.
    let replan = srv
        .plan_resource_change(Request::new(pb::plan_resource_change::Request {
            type_name: "predictive_budget".into(),
            prior_state: applied.new_state.clone(),
            proposed_new_state: applied.new_state.clone(),
            config: dv(&cfg, &t),
            prior_private: vec![],
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        from_proto::dynamic_value(replan.planned_state.as_ref(), &t).unwrap(),
        state
    );
    assert!(replan.requires_replace.is_empty());

    let imported = srv
        .import_resource_state(Request::new(pb::import_resource_state::Request {
            type_name: "predictive_budget".into(),
            id: "budget-team".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        from_proto::dynamic_value(imported.imported_resources[0].state.as_ref(), &t).unwrap(),
        state
    );

    let deleted = srv
        .apply_resource_change(Request::new(pb::apply_resource_change::Request {
            type_name: "predictive_budget".into(),
            prior_state: applied.new_state.clone(),
            planned_state: dv(&Value::Null, &t),
            config: dv(&Value::Null, &t),
            planned_private: vec![],
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.diagnostics.is_empty());
    let read = srv
        .read_resource(Request::new(pb::read_resource::Request {
            type_name: "predictive_budget".into(),
            current_state: applied.new_state.clone(),
            private: vec![],
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        from_proto::dynamic_value(read.new_state.as_ref(), &t).unwrap(),
        Value::Null,
        "a deleted budget reads as gone"
    );
    let _ = to_proto::dynamic_value(&Value::Null, &t);
}

#[tokio::test]
async fn no_change_should_start_after_stop_provider() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server();
    let schema = schema(&srv).await;
    let pt = ty(schema.provider.as_ref().unwrap());
    configure(&srv, &pt, &dir.path().join("s.db"), vec![]).await;
    srv.stop_provider(Request::new(pb::stop_provider::Request {}))
        .await
        .unwrap();
    let t = ty(&schema.resource_schemas["predictive_budget"]);
    let planned = with(
        &t,
        vec![
            ("name", Value::string("x")),
            ("hourly_cap", Value::number(1.0)),
            ("id", Value::Unknown),
            ("effective_hourly_cap", Value::number(1.0)),
        ],
    );
    let resp = srv
        .apply_resource_change(Request::new(pb::apply_resource_change::Request {
            type_name: "predictive_budget".into(),
            prior_state: dv(&Value::Null, &t),
            planned_state: dv(&planned, &t),
            config: dv(&planned, &t),
            planned_private: vec![],
            provider_meta: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.diagnostics.len(), 1);
    assert!(resp.diagnostics[0].summary.contains("stopping"));
    let imported = srv
        .import_resource_state(Request::new(pb::import_resource_state::Request {
            type_name: "predictive_budget".into(),
            id: "budget-x".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        imported.imported_resources.is_empty(),
        "nothing was created after StopProvider"
    );
}

#[tokio::test]
async fn a_cloud_without_an_adapter_should_be_named_in_the_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server();
    let schema = schema(&srv).await;
    let pt = ty(schema.provider.as_ref().unwrap());
    let base = vec![
        (
            "state_path",
            Value::string(dir.path().join("s.db").display().to_string()),
        ),
        ("history", Value::List(vec![])),
        ("aws", Value::List(vec![])),
        ("azure", Value::List(vec![])),
        ("gcp", Value::List(vec![])),
    ];
    let mut bad = base.clone();
    bad.push(("cloud", Value::string("mars")));
    let v = srv
        .validate_provider_config(Request::new(pb::validate_provider_config::Request {
            config: dv(&with(&pt, bad), &pt),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.diagnostics.len(), 1);
    assert_eq!(
        from_proto::attribute_path(v.diagnostics[0].attribute.as_ref().unwrap()).to_string(),
        "cloud"
    );
    let mut gcp = base.clone();
    gcp.push(("cloud", Value::string("gcp")));
    let c = srv
        .configure_provider(Request::new(pb::configure_provider::Request {
            terraform_version: "1.0.3".into(),
            config: dv(&with(&pt, gcp), &pt),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.diagnostics.len(), 1);
    let path = from_proto::attribute_path(c.diagnostics[0].attribute.as_ref().unwrap()).to_string();
    if cfg!(feature = "gcp") {
        // Built with the gcp adapter: the missing gcp block's project is what is named.
        assert!(path.starts_with("gcp"), "{path}");
    } else {
        assert_eq!(path, "cloud");
        assert!(
            c.diagnostics[0].detail.contains("gcp"),
            "{}",
            c.diagnostics[0].detail
        );
    }
}

/// Clone drift through the plugin protocol, over a file history source and the state store.
mod drift {
    use super::*;
    use std::path::{Path, PathBuf};
    use terraform_provider_predictive::provider::clone::Registration;
    use terraform_provider_predictive::provider::sizing;
    use terraform_provider_predictive::provider::store::{Kind, Store};

    const HOUR: i64 = 3600;

    fn now_hour() -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now - now.rem_euclid(HOUR)
    }

    /// Writes `<dir>/<name>.csv`: hourly samples from `start`.
    fn write_csv(dir: &Path, name: &str, start: i64, values: &[f64]) {
        let mut text = String::from("timestamp,value\n");
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format!("{},{v}\n", start + i as i64 * HOUR));
        }
        std::fs::write(dir.join(format!("{name}.csv")), text).unwrap();
    }

    /// The source `web`: 14 days around 10 vCPU with a daily wave, ending in the last hour.
    fn write_source(dir: &Path) {
        let n = 14 * 24;
        let v: Vec<f64> = (0..n)
            .map(|i| 10.0 + (i as f64 * std::f64::consts::TAU / 24.0).sin())
            .collect();
        write_csv(dir, "web", now_hour() - n as i64 * HOUR, &v);
    }

    /// The usage history directory `h` under `dir`, created, with the source `web` in it.
    fn history_dir(dir: &Path) -> PathBuf {
        let h = dir.join("h");
        std::fs::create_dir_all(&h).unwrap();
        write_source(&h);
        h
    }

    /// Registers an earlier clone in the state store as `finish` records it.
    fn register(store: &Store, name: &str, role: &str, source_allocation: f64, created_at: i64) {
        let reg = Registration {
            state: "{}".into(),
            sizing: Default::default(),
            budget_id: None,
            priority: 1.0,
            floor: 0.0,
            app_type: "web".into(),
            cloud: "sim".into(),
            generation: 1,
            user_role: Some(role.into()),
            source_allocation: Some(source_allocation),
            created_at: Some(created_at),
        };
        store
            .put(
                Kind::Clone,
                &format!("clone-{name}"),
                name,
                &serde_json::to_string(&reg).unwrap(),
            )
            .unwrap();
    }

    /// A provider configured on `dir` (state store `dir/s.db`, history files in `dir/h`).
    async fn provider(dir: &Path) -> (ProviderServer<PredictiveProvider>, Type) {
        let srv = server();
        let schema = schema(&srv).await;
        let pt = ty(schema.provider.as_ref().unwrap());
        let Type::Object(attrs) = &pt else { panic!() };
        let Type::List(ht) = &attrs["history"] else {
            panic!()
        };
        let history = with(
            ht,
            vec![
                ("file", Value::string(dir.join("h").display().to_string())),
                ("prometheus_query", Value::string("cpu{w=\"{workload}\"}")),
                ("lookback", Value::string("14d")),
            ],
        );
        let diagnostics = configure(&srv, &pt, &dir.join("s.db"), vec![history]).await;
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let t = ty(&schema.resource_schemas["predictive_clone"]);
        (srv, t)
    }

    /// Plans a new clone `name` of `web` for `role`; the planned state and the diagnostics.
    async fn plan(
        srv: &ProviderServer<PredictiveProvider>,
        t: &Type,
        name: &str,
        role: &str,
    ) -> (Value, Vec<pb::Diagnostic>) {
        let Type::Object(attrs) = t else { panic!() };
        let Type::List(st) = &attrs["source"] else {
            panic!()
        };
        let cfg = with(
            t,
            vec![
                ("name", Value::string(name)),
                ("user_role", Value::string(role)),
                ("clouds", Value::strings(["aws"])),
                ("regions", Value::strings(["us-east-1"])),
                ("max_count", Value::number(100.0)),
                (
                    "source",
                    Value::List(vec![with(st, vec![("workload", Value::string("web"))])]),
                ),
            ],
        );
        let r = srv
            .plan_resource_change(Request::new(pb::plan_resource_change::Request {
                type_name: "predictive_clone".into(),
                prior_state: dv(&Value::Null, t),
                proposed_new_state: dv(&cfg, t),
                config: dv(&cfg, t),
                prior_private: vec![],
                provider_meta: None,
            }))
            .await
            .unwrap()
            .into_inner();
        let planned = from_proto::dynamic_value(r.planned_state.as_ref(), t).unwrap();
        (planned, r.diagnostics)
    }

    fn cpu(planned: &Value) -> Vec<(f64, f64)> {
        planned
            .get("demand")
            .as_elements()
            .expect("demand computed at plan")
            .iter()
            .map(|d| {
                (
                    d.get("quantile").as_f64().unwrap(),
                    d.get("cpu").as_f64().unwrap(),
                )
            })
            .collect()
    }

    fn num(v: &Value, attr: &str) -> f64 {
        v.get(attr)
            .as_f64()
            .unwrap_or_else(|| panic!("{attr}: {:?}", v.get(attr)))
    }

    /// The engine's forecast of the source file, as a plan without drift shows it.
    fn source_forecast(dir: &Path) -> Vec<(f64, f64)> {
        let s = terraform_provider_predictive::provider::history::read_file(&dir.join("h"), "web")
            .unwrap();
        let p = sizing::peaks(&sizing::ForecastCache::default(), "cpu", &s, 24.0).unwrap();
        p.levels
            .iter()
            .map(|(l, v)| (*l, (v * 1e6).round() / 1e6))
            .collect()
    }

    #[tokio::test]
    async fn without_earlier_clones_the_plan_should_be_the_source_forecast() {
        let dir = tempfile::tempdir().unwrap();
        history_dir(dir.path());
        // An old record without the features stays readable and teaches nothing.
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .put(
                Kind::Clone,
                "clone-old",
                "old",
                r#"{"state":"{}","sizing":{},"budget_id":null,"priority":1,"floor":0,"app_type":"web","cloud":"sim","generation":1}"#,
            )
            .unwrap();
        drop(store);
        let (srv, t) = provider(dir.path()).await;
        let (planned, diags) = plan(&srv, &t, "fresh", "qa").await;
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(cpu(&planned), source_forecast(dir.path()));
        assert_eq!(num(&planned, "drift_ratio"), 1.0);
        assert_eq!(planned.get("drift_basis"), &Value::string("none"));
        assert_eq!(num(&planned, "own_history_weight"), 0.0);
        let p95 = cpu(&planned).iter().find(|(l, _)| *l == 0.95).unwrap().1;
        assert!((num(&planned, "source_allocation") - p95).abs() < 1e-5);
        let why = planned.get("sizing_explanation").as_str().unwrap();
        assert!(!why.contains("drift"), "{why}");
    }

    #[tokio::test]
    async fn earlier_clones_of_a_role_should_scale_a_new_clone_of_that_role_only() {
        let dir = tempfile::tempdir().unwrap();
        let h = history_dir(dir.path());
        let source = source_forecast(dir.path());
        let p95 = source.iter().find(|(l, _)| *l == 0.95).unwrap().1;
        // Earlier clones of the same source, created 10 days ago, recorded with the same source
        // allocation: testers used about 30 % of it, developers all of it.
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let created = now_hour() - 240 * HOUR;
        for (name, role, share) in [
            ("qa-1", "qa", 0.28),
            ("qa-2", "qa", 0.30),
            ("qa-3", "qa", 0.32),
            ("dev-1", "dev", 1.0),
        ] {
            register(&store, name, role, p95, created);
            write_csv(&h, name, created, &vec![share * p95; 240]);
        }
        // A clone registered by a version that did not record features: nothing learnt.
        store
            .put(Kind::Clone, "clone-legacy", "legacy", r#"{"state":"{}","sizing":{},"budget_id":null,"priority":1,"floor":0,"app_type":"web","cloud":"sim","generation":1}"#)
            .unwrap();
        write_csv(&h, "legacy", created, &vec![50.0; 240]);
        drop(store);
        let (srv, t) = provider(dir.path()).await;

        let (qa, diags) = plan(&srv, &t, "new-qa", "qa").await;
        assert!(diags.is_empty(), "{diags:?}");
        assert!((num(&qa, "drift_ratio") - 0.30).abs() < 1e-9, "{qa:?}");
        assert_eq!(qa.get("drift_basis"), &Value::string("size"));
        assert_eq!(num(&qa, "own_history_weight"), 0.0);
        for ((l, got), (_, src)) in cpu(&qa).iter().zip(&source) {
            assert!(
                (got - 0.30 * src).abs() < 1e-5,
                "q{l}: {got} vs 0.3 × {src}"
            );
        }
        let why = qa.get("sizing_explanation").as_str().unwrap();
        assert!(
            why.contains("× 0.3 (same app type, user role and source size, 4 earlier clones"),
            "{why}"
        );
        let (dev, _) = plan(&srv, &t, "new-dev", "dev").await;
        assert_eq!(num(&dev, "drift_ratio"), 1.0);
        assert_eq!(dev.get("drift_basis"), &Value::string("size"));
        assert_eq!(cpu(&dev), source);
        assert!(
            num(&qa, "hourly_cost") < 0.5 * num(&dev, "hourly_cost"),
            "the tester's clone costs less"
        );
        // A role no earlier clone had falls back to the app type's clones (median of all four).
        let (ops, _) = plan(&srv, &t, "new-ops", "ops").await;
        assert_eq!(ops.get("drift_basis"), &Value::string("app"));
        assert!((num(&ops, "drift_ratio") - 0.31).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_clone_own_usage_should_weigh_more_as_it_grows() {
        let mut last: Option<(f64, f64)> = None;
        for hours in [6usize, 24, 72] {
            let dir = tempfile::tempdir().unwrap();
            let h = history_dir(dir.path());
            let source = source_forecast(dir.path());
            let p95 = source.iter().find(|(l, _)| *l == 0.95).unwrap().1;
            // The clone itself, created `hours` ago, has used 2 vCPU since.
            let created = now_hour() - hours as i64 * HOUR;
            let store = Store::open(&dir.path().join("s.db")).unwrap();
            register(&store, "grow", "qa", p95, created);
            write_csv(&h, "grow", created, &vec![2.0; hours]);
            drop(store);
            let (srv, t) = provider(dir.path()).await;
            let (planned, diags) = plan(&srv, &t, "grow", "qa").await;
            assert!(diags.is_empty(), "{diags:?}");
            let w = num(&planned, "own_history_weight");
            // n five-minute samples (12 an hour) against the engine's 288.
            let n = (hours * 12) as f64;
            assert!((w - n / (n + 288.0)).abs() < 1e-6, "{hours} h: {w}");
            assert_eq!(planned.get("drift_basis"), &Value::string("none"));
            let got = cpu(&planned).iter().find(|(l, _)| *l == 0.95).unwrap().1;
            assert!(got < p95, "{hours} h: {got} vs source {p95}");
            if let Some((lw, lc)) = last {
                assert!(w > lw && got < lc, "{hours} h: weight {w} cpu {got}");
            }
            let why = planned.get("sizing_explanation").as_str().unwrap();
            assert!(
                why.contains(&format!("its own {} h of usage", hours.min(168))),
                "{why}"
            );
            last = Some((w, got));
        }
    }

    #[tokio::test]
    async fn an_unreadable_usage_file_should_warn_naming_the_clone() {
        let dir = tempfile::tempdir().unwrap();
        let h = history_dir(dir.path());
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        register(&store, "broken", "qa", 10.0, now_hour() - 48 * HOUR);
        std::fs::write(h.join("broken.csv"), "timestamp,value\n1,2\n2,x\n").unwrap();
        drop(store);
        let (srv, t) = provider(dir.path()).await;
        let (planned, diags) = plan(&srv, &t, "other", "qa").await;
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(diags[0].severity, pb::diagnostic::Severity::Warning as i32);
        assert!(
            diags[0].detail.contains("clone \"broken\"")
                && diags[0].detail.contains("broken.csv:3"),
            "{}",
            diags[0].detail
        );
        assert_eq!(num(&planned, "drift_ratio"), 1.0);
    }
}
