//! Acceptance: real `terraform` (1.0.3, installed by scripts/install-test-deps.sh into
//! `$PREDICTIVE_TOOLS`, default `$HOME/.cache/predictive-tools`) drives the built provider binary
//! through a filesystem mirror, against the `sim` cloud.
//!
//! Without terraform the test is skipped locally and FAILS when `CI` is set.

mod common;

use common::{actions, resource, terraform_bin, Tf};
use std::path::Path;

/// A day-shaped inline profile: 14 days hourly, busier 08:00-20:00.
fn profile() -> String {
    "[for i in range(336) : (i % 24 >= 8 && i % 24 < 20) ? 12 + (i % 5) : 3 + (i % 3)]".into()
}

fn clone_tf(state: &Path, name: &str, quantile: &str, extra: &str) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    predictive = {{ source = "predictive/predictive" }}
  }}
}}
provider "predictive" {{
  state_path = "{state}"
}}
resource "predictive_clone" "web" {{
  name = "{name}"
  source {{
    cpu = {profile}
  }}
  clouds    = ["aws"]
  quantile  = {quantile}
  max_count = 50
  {extra}
}}
"#,
        state = state.display(),
        profile = profile()
    )
}

#[test]
fn terraform_should_plan_apply_import_update_replace_and_destroy_a_clone() {
    let Some(bin) = terraform_bin() else { return };
    let tf = Tf::new(bin);
    let state = tf.dir.join(".predictive/state.db");
    tf.write(&clone_tf(&state, "web", "0.95", ""));
    tf.ok(&["init", "-input=false", "-no-color"]);

    // Plan: the sizing is computed at plan time and visible in the plan.
    let plan = tf.plan_json();
    let planned = &resource(
        &plan["planned_values"]["root_module"],
        "predictive_clone.web",
    )["values"];
    let alloc = planned["allocation"]
        .as_array()
        .expect("allocation known at plan");
    assert!(!alloc.is_empty(), "{planned}");
    let sum: f64 = alloc
        .iter()
        .map(|a| a["hourly_cost"].as_f64().unwrap())
        .sum();
    let total = planned["hourly_cost"].as_f64().unwrap();
    assert!(
        total > 0.0 && (sum - total).abs() < 1e-5,
        "line costs {sum} vs total {total}"
    );
    assert!(alloc.iter().all(|a| a["cloud"] == "aws"), "{alloc:?}");
    let count: i64 = alloc.iter().map(|a| a["count"].as_i64().unwrap()).sum();
    assert!((1..=50).contains(&count));
    assert!(planned["sizing_explanation"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let demand = planned["demand"].as_array().unwrap();
    assert!(
        demand.iter().any(|d| d["quantile"].as_f64() == Some(0.95)),
        "{demand:?}"
    );

    // Apply, then an empty plan.
    tf.apply_plan();
    let st = tf.state_json();
    let applied = &resource(&st["values"]["root_module"], "predictive_clone.web")["values"];
    assert_eq!(applied["id"], "clone-web");
    assert_eq!(applied["provisioned_count"].as_i64(), Some(count));
    assert_eq!(
        applied["instance_ids"].as_array().unwrap().len() as i64,
        count
    );
    assert_eq!(applied["hourly_cost"], planned["hourly_cost"]);
    assert_eq!(
        live_instances(&state, "clone-web") as i64,
        count,
        "apply pre-provisions the allocation on the sim cloud"
    );
    assert_eq!(
        tf.plan_exit_code(),
        0,
        "a plan right after apply must be empty"
    );

    // Import: forget it, import by id, and the plan is empty again.
    tf.ok(&["state", "rm", "-no-color", "predictive_clone.web"]);
    tf.ok(&[
        "import",
        "-input=false",
        "-no-color",
        "predictive_clone.web",
        "clone-web",
    ]);
    let imported = tf.state_json();
    assert_eq!(
        resource(&imported["values"]["root_module"], "predictive_clone.web")["values"]
            ["instance_ids"],
        applied["instance_ids"]
    );
    assert_eq!(
        tf.plan_exit_code(),
        0,
        "a plan right after import must be empty"
    );

    // Drift: an instance terminated outside Terraform shows in the next plan, which restores it.
    terminate_one(&state, "clone-web");
    let plan = tf.plan_json();
    assert_eq!(actions(&plan, "predictive_clone.web"), vec!["update"]);
    tf.apply_plan();
    assert_eq!(
        live_instances(&state, "clone-web") as i64,
        count,
        "the drift is corrected"
    );
    assert_eq!(tf.plan_exit_code(), 0);

    // In-place update: a lower quantile resizes without replacing.
    tf.write(&clone_tf(&state, "web", "0.5", ""));
    let plan = tf.plan_json();
    assert_eq!(actions(&plan, "predictive_clone.web"), vec!["update"]);
    tf.apply_plan();
    let after = tf.state_json();
    let v = &resource(&after["values"]["root_module"], "predictive_clone.web")["values"];
    assert_eq!(v["id"], "clone-web");
    let n: i64 = v["allocation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["count"].as_i64().unwrap())
        .sum();
    assert_eq!(v["provisioned_count"].as_i64(), Some(n));
    assert_eq!(tf.plan_exit_code(), 0);

    // Replace: a new name is a new clone; the old one is released.
    tf.write(&clone_tf(&state, "web2", "0.5", ""));
    let plan = tf.plan_json();
    let acts = actions(&plan, "predictive_clone.web");
    assert!(
        acts.contains(&"delete".to_string()) && acts.contains(&"create".to_string()),
        "{acts:?}"
    );
    tf.apply_plan();
    let after = tf.state_json();
    assert_eq!(
        resource(&after["values"]["root_module"], "predictive_clone.web")["values"]["id"],
        "clone-web2"
    );
    assert_eq!(
        live_instances(&state, "clone-web"),
        0,
        "the replaced clone's capacity is released"
    );
    let n2: i64 = resource(&after["values"]["root_module"], "predictive_clone.web")["values"]
        ["provisioned_count"]
        .as_i64()
        .unwrap();
    assert_eq!(live_instances(&state, "clone-web2") as i64, n2);

    // Errors name the attribute.
    for (extra, quantile, attr) in [
        ("", "1.5", "quantile"),
        ("horizon = \"3 weeks\"", "0.9", "horizon"),
        ("regions = [\"mars-north-1\"]", "0.9", "regions"),
    ] {
        tf.write(&clone_tf(&state, "web2", quantile, extra));
        let err = tf.fails(&["plan", "-input=false", "-no-color"]);
        assert!(err.contains(attr), "diagnostic should name {attr}:\n{err}");
    }

    // Destroy releases everything.
    tf.write(&clone_tf(&state, "web2", "0.5", ""));
    tf.ok(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
    assert_eq!(
        live_instances(&state, "clone-web2"),
        0,
        "destroy releases the capacity"
    );
    let err = tf.fails(&[
        "import",
        "-input=false",
        "-no-color",
        "predictive_clone.web",
        "clone-web2",
    ]);
    assert!(err.contains("clone-web2"), "{err}");
}

/// Live instances of an owner in the sim cloud's persisted state, observed through the port.
fn live_instances(state_db: &Path, owner: &str) -> usize {
    use predictive_clouds::CloudProvider as _;
    let mut p = state_db.as_os_str().to_owned();
    p.push(".sim.json");
    let sim = predictive_clouds::sim::SimCloud::load(
        Path::new(&p),
        std::sync::Arc::new(predictive_clouds::clock::SystemClock),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let list = rt
        .block_on(sim.list_instances(&predictive_clouds::Owner::new(owner).unwrap()))
        .unwrap();
    list.iter().filter(|i| i.state.is_live()).count()
}

/// Several clones in one configuration: terraform applies them side by side in one provider
/// process, each apply saves the sim cloud's state, and every clone's instances are in the saved
/// state afterwards (the saves themselves are tested under contention in the sim cloud's unit
/// tests); destroy releases them all.
#[test]
fn terraform_should_apply_and_destroy_several_clones_at_once_on_the_sim() {
    let Some(bin) = terraform_bin() else { return };
    let tf = Tf::new(bin);
    let state = tf.dir.join("state.db");
    let mut main_tf = format!(
        r#"
terraform {{
  required_providers {{
    predictive = {{ source = "predictive/predictive" }}
  }}
}}
provider "predictive" {{
  state_path = "{}"
}}
"#,
        state.display()
    );
    let names: Vec<String> = (0..8).map(|i| format!("many{i}")).collect();
    for name in &names {
        main_tf.push_str(&format!(
            r#"
resource "predictive_clone" "{name}" {{
  name = "{name}"
  source {{
    cpu = {profile}
  }}
  clouds    = ["aws"]
  max_count = 20
}}
"#,
            profile = profile()
        ));
    }
    tf.write(&main_tf);
    tf.ok(&["init", "-input=false", "-no-color"]);
    tf.ok(&["apply", "-input=false", "-auto-approve", "-no-color"]);
    let st = tf.state_json();
    for name in &names {
        let v = &resource(
            &st["values"]["root_module"],
            &format!("predictive_clone.{name}"),
        )["values"];
        let count = v["provisioned_count"].as_i64().expect("provisioned_count");
        assert!(count > 0, "{name}: {v}");
        assert_eq!(
            live_instances(&state, &format!("clone-{name}")) as i64,
            count,
            "{name}'s instances in the saved sim state"
        );
    }
    assert_eq!(tf.plan_exit_code(), 0, "a plan right after apply is empty");
    tf.ok(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
    for name in &names {
        assert_eq!(
            live_instances(&state, &format!("clone-{name}")),
            0,
            "{name} after destroy"
        );
    }
}

#[test]
fn terraform_should_apply_the_quickstart_example_as_it_is() {
    let Some(bin) = terraform_bin() else { return };
    let tf = Tf::new(bin);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    std::fs::copy(src.join("main.tf"), tf.dir.join("main.tf")).unwrap();
    std::fs::create_dir_all(tf.dir.join("history")).unwrap();
    std::fs::copy(src.join("history/web.csv"), tf.dir.join("history/web.csv")).unwrap();
    tf.ok(&["init", "-input=false", "-no-color"]);
    tf.ok(&["apply", "-input=false", "-auto-approve", "-no-color"]);
    let st = tf.state_json();
    let v = &resource(&st["values"]["root_module"], "predictive_clone.web")["values"];
    assert!(v["hourly_cost"].as_f64().unwrap() > 0.0);
    assert_eq!(tf.plan_exit_code(), 0);
    tf.ok(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
}

#[test]
fn terraform_should_share_a_budget_and_read_the_data_sources() {
    let Some(bin) = terraform_bin() else { return };
    let tf = Tf::new(bin);
    let state = tf.dir.join("state.db");
    tf.write(&format!(
        r#"
terraform {{
  required_providers {{
    predictive = {{ source = "predictive/predictive" }}
  }}
}}
provider "predictive" {{
  state_path = "{state}"
}}
resource "predictive_budget" "team" {{
  name        = "team"
  monthly_cap = 100000
}}
resource "predictive_clone" "api" {{
  name      = "api"
  budget_id = predictive_budget.team.id
  user_role = "critical"
  clouds    = ["gcp"]
  source {{
    cpu = {profile}
  }}
}}
data "predictive_sizing" "db" {{
  cpu     = 16
  mem_gib = 64
  clouds  = ["azure"]
}}
data "predictive_instance_types" "big" {{
  cloud    = "aws"
  min_vcpu = 64
}}
data "predictive_forecast" "api" {{
  cpu     = {profile}
  horizon = "12h"
}}
output "db_cost" {{
  value = data.predictive_sizing.db.hourly_cost
}}
output "big_types" {{
  value = length(data.predictive_instance_types.big.instance_types)
}}
output "p95_peak" {{
  value = data.predictive_forecast.api.peaks["0.95"]
}}
output "steps" {{
  value = length(data.predictive_forecast.api.quantiles["0.5"])
}}
"#,
        state = state.display(),
        profile = profile()
    ));
    tf.ok(&["init", "-input=false", "-no-color"]);
    tf.ok(&["apply", "-input=false", "-auto-approve", "-no-color"]);
    let st = tf.state_json();
    let out = &st["values"]["outputs"];
    assert!(out["db_cost"]["value"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["big_types"]["value"].as_i64().unwrap() > 0, "{out}");
    assert!(out["p95_peak"]["value"].as_f64().unwrap() > 3.0, "{out}");
    assert_eq!(out["steps"]["value"].as_i64(), Some(12));
    let budget = &resource(&st["values"]["root_module"], "predictive_budget.team")["values"];
    assert_eq!(budget["id"], "budget-team");
    let clone = &resource(&st["values"]["root_module"], "predictive_clone.api")["values"];
    assert!(clone["allocation"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["cloud"] == "gcp"));
    assert!(clone["hourly_cost"].as_f64().unwrap() * 730.0 <= 100000.0 + 1e-6);
    assert_eq!(
        tf.plan_exit_code(),
        0,
        "a plan right after apply must be empty"
    );

    // A budget that does not exist is named in the diagnostic.
    let tf_text = std::fs::read_to_string(tf.dir.join("main.tf")).unwrap();
    tf.write(&tf_text.replace(
        "budget_id = predictive_budget.team.id",
        "budget_id = \"budget-nope\"",
    ));
    let err = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(err.contains("budget_id"), "{err}");
    tf.write(&tf_text);
    tf.ok(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
}

/// Terminates one live instance of `owner` in the sim cloud, outside Terraform.
fn terminate_one(state_db: &Path, owner: &str) {
    use predictive_clouds::CloudProvider as _;
    let mut p = state_db.as_os_str().to_owned();
    p.push(".sim.json");
    let path = Path::new(&p);
    let sim = predictive_clouds::sim::SimCloud::load(
        path,
        std::sync::Arc::new(predictive_clouds::clock::SystemClock),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let list = rt
        .block_on(sim.list_instances(&predictive_clouds::Owner::new(owner).unwrap()))
        .unwrap();
    let victim = list
        .iter()
        .find(|i| i.state.is_live())
        .expect("a live instance");
    rt.block_on(sim.terminate_instance(&victim.id)).unwrap();
    sim.save(path).unwrap();
}
