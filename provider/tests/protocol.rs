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

#[tokio::test]
async fn schema_should_list_every_resource_and_data_source() {
    let s = server()
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
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
    let schema = srv
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
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
    let schema = srv
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
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
    let schema = srv
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
    let pt = ty(schema.provider.as_ref().unwrap());
    let pcfg = with(
        &pt,
        vec![
            (
                "state_path",
                Value::string(dir.path().join("s.db").display().to_string()),
            ),
            ("history", Value::List(vec![])),
            ("aws", Value::List(vec![])),
            ("azure", Value::List(vec![])),
            ("gcp", Value::List(vec![])),
        ],
    );
    let resp = srv
        .configure_provider(Request::new(pb::configure_provider::Request {
            terraform_version: "1.0.3".into(),
            config: dv(&pcfg, &pt),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.diagnostics.is_empty(), "{:?}", resp.diagnostics);

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
    let schema = srv
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
    let pt = ty(schema.provider.as_ref().unwrap());
    let pcfg = with(
        &pt,
        vec![
            (
                "state_path",
                Value::string(dir.path().join("s.db").display().to_string()),
            ),
            ("history", Value::List(vec![])),
            ("aws", Value::List(vec![])),
            ("azure", Value::List(vec![])),
            ("gcp", Value::List(vec![])),
        ],
    );
    srv.configure_provider(Request::new(pb::configure_provider::Request {
        terraform_version: "1.0.3".into(),
        config: dv(&pcfg, &pt),
    }))
    .await
    .unwrap();
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
    let schema = srv
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
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
    let path =
        from_proto::attribute_path(c.diagnostics[0].attribute.as_ref().unwrap()).to_string();
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
