//! Acceptance against Azure and Compute Engine: real `terraform` drives the built provider with
//! `cloud = "azure"` / `cloud = "gcp"` and the endpoint override pointing at the local fakes of
//! the ARM and Compute Engine REST paths (`clouds/tests/fakes`, served by this test). Plan, apply
//! (the instances exist in the fake, with the planned types), an empty re-plan, destroy (gone).
//! The Azure run signs a service principal in at a fake token endpoint: its secret never reaches
//! the state, the provider's store or terraform's trace log.
//!
//! Skips locally without terraform; FAILS when `CI` is set and it is missing.
#![cfg(any(feature = "azure", feature = "gcp"))]

mod common;
#[path = "../../clouds/tests/fakes/mod.rs"]
// `dead_code` and `unreachable_pub` are allowed inside the module itself.
#[allow(unused_imports, missing_docs)]
mod fakes;

use common::{assert_absent, instance_ids, resource, terraform_bin, Tf};
use predictive_clouds::{CloudProvider, Owner};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

/// A multi-thread runtime serving the fakes while terraform runs as a child process.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `(id, type)` of `owner`'s live instances in `adapter`.
fn live_instances(
    rt: &tokio::runtime::Runtime,
    adapter: &dyn CloudProvider,
    owner: &Owner,
) -> Vec<(String, String)> {
    rt.block_on(adapter.list_instances(owner))
        .unwrap()
        .into_iter()
        .filter(|i| i.state.is_live())
        .map(|i| {
            (
                i.id.as_str().to_string(),
                i.instance_type.as_str().to_string(),
            )
        })
        .collect()
}

fn catalog() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fakes_catalog.tsv.txt")
        .display()
        .to_string()
}

/// The clone: an inline weekly profile (busy days, quiet nights), on `cloud` in `region`.
fn clone_tf(cloud: &str, region: &str) -> String {
    format!(
        r#"
resource "predictive_clone" "web" {{
  name = "web"
  source {{
    cpu = [for i in range(336) : (i % 24 >= 8 && i % 24 < 20) ? 7 + (i % 3) : 2 + (i % 2)]
  }}
  clouds           = ["{cloud}"]
  regions          = ["{region}"]
  purchase_options = ["on-demand"]
  max_count        = 12
}}
"#
    )
}

/// Plan (sized in `cloud`/`region`), apply, checks of the live instances against the plan and
/// the state, an empty re-plan, destroy; `live` lists `(id, type)` of the clone's instances.
fn lifecycle(
    tf: &Tf,
    cloud: &str,
    region: &str,
    live: &dyn Fn() -> Vec<(String, String)>,
) -> Vec<Json> {
    tf.ok(&["init", "-input=false", "-no-color"]);
    let plan = tf.plan_json();
    let planned = &resource(
        &plan["planned_values"]["root_module"],
        "predictive_clone.web",
    )["values"];
    let alloc = planned["allocation"]
        .as_array()
        .expect("sized at plan")
        .clone();
    assert!(!alloc.is_empty());
    assert!(
        alloc
            .iter()
            .all(|a| a["cloud"] == cloud && a["region"] == region),
        "{alloc:?}"
    );
    assert!(planned["hourly_cost"].as_f64().unwrap() > 0.0, "{planned}");
    assert!(live().is_empty(), "nothing before apply");

    tf.apply_plan();
    let st = tf.state_json();
    let applied = &resource(&st["values"]["root_module"], "predictive_clone.web")["values"];
    let ids = instance_ids(applied);
    let now = live();
    let mut live_ids: Vec<String> = now.iter().map(|(i, _)| i.clone()).collect();
    live_ids.sort();
    assert_eq!(live_ids, ids, "the instances in state are the fake's");
    let mut by_type: BTreeMap<String, i64> = BTreeMap::new();
    for (_, t) in &now {
        *by_type.entry(t.clone()).or_default() += 1;
    }
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for a in &alloc {
        *want
            .entry(a["instance_type"].as_str().unwrap().to_string())
            .or_default() += a["count"].as_i64().unwrap();
    }
    assert_eq!(
        by_type, want,
        "the planned types and counts run in the fake"
    );

    assert_eq!(tf.plan_exit_code(), 0, "a plan right after apply is empty");

    tf.ok(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
    assert!(live().is_empty(), "destroy releases every instance");
    alloc
}

#[cfg(feature = "azure")]
mod azure {
    use super::*;
    use crate::fakes::azure_arm::{self, LOCATION, RG, SUB, TOKEN};
    use crate::fakes::faults::FaultPlan;
    use predictive_clouds::azure::{AzureCredentials, AzureParams, AzureProvider};

    const TENANT: &str = "tenant-7d1e";
    const CLIENT: &str = "client-42";
    const SECRET: &str = "sp-secret-0b9c47e2";

    /// A token endpoint issuing the ARM fake's token to the one service principal it knows.
    async fn token_endpoint() -> String {
        let app = axum::Router::new().route(
            &format!("/{TENANT}/oauth2/v2.0/token"),
            axum::routing::post(|body: String| async move {
                let ok = body.contains("grant_type=client_credentials")
                    && body.contains(&format!("client_id={CLIENT}"))
                    && body.contains(&format!("client_secret={SECRET}"))
                    && body.contains("scope=");
                if ok {
                    (
                        axum::http::StatusCode::OK,
                        format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{TOKEN}"}}"#),
                    )
                } else {
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        r#"{"error":"invalid_client"}"#.to_string(),
                    )
                }
            }),
        );
        format!("http://{}", crate::fakes::serve(app).await)
    }

    fn main_tf(state: &Path, arm: &str, authority: &str) -> String {
        format!(
            r#"
terraform {{
  required_providers {{
    predictive = {{ source = "predictive/predictive" }}
  }}
}}
variable "client_secret" {{
  type      = string
  sensitive = true
}}
provider "predictive" {{
  state_path   = "{state}"
  catalog_path = "{catalog}"
  cloud        = "azure"
  azure {{
    region          = "{LOCATION}"
    endpoint        = "{arm}"
    subscription_id = "{SUB}"
    resource_group  = "{RG}"
    tenant_id       = "{TENANT}"
    client_id       = "{CLIENT}"
    client_secret   = var.client_secret
    authority_host  = "{authority}"
    vm_template = jsonencode({{
      storageProfile = {{ imageReference = {{ publisher = "Canonical", offer = "ubuntu-24_04-lts", sku = "server", version = "latest" }} }}
      osProfile      = {{ computerName = "pred", adminUsername = "azureuser" }}
    }})
  }}
}}
{clone}"#,
            state = state.display(),
            catalog = catalog(),
            clone = clone_tf("azure", LOCATION),
        )
    }

    #[test]
    fn terraform_should_provision_and_release_a_clone_on_the_azure_fake() {
        let Some(bin) = terraform_bin() else { return };
        let rt = runtime();
        let (arm, authority) = rt.block_on(async {
            (
                azure_arm::start(FaultPlan::none()).await,
                token_endpoint().await,
            )
        });
        let adapter = {
            let mut p = AzureParams::new(SUB, RG, LOCATION);
            p.endpoint = Some(arm.endpoint.clone());
            p.credentials = AzureCredentials::FixedToken(TOKEN.into());
            AzureProvider::new(p.check().unwrap()).unwrap()
        };
        let owner = Owner::new("clone-web").unwrap();
        let live = || live_instances(&rt, &adapter, &owner);

        let mut tf = Tf::new(bin);
        let log = tf.dir.join("terraform.log");
        tf.env = vec![
            ("TF_VAR_client_secret".into(), SECRET.into()),
            ("TF_LOG".into(), "TRACE".into()),
            ("TF_LOG_PATH".into(), log.display().to_string()),
        ];
        let state = tf.dir.join(".predictive/state.db");
        tf.write(&main_tf(&state, &arm.endpoint, &authority));
        lifecycle(&tf, "azure", LOCATION, &live);
        assert_eq!(
            arm.state
                .lock()
                .unwrap()
                .vms_tagged(predictive_clouds::OWNER_TAG, "clone-web"),
            0
        );

        let files = [
            tf.dir.join("terraform.tfstate"),
            tf.dir.join("terraform.tfstate.backup"),
            state.clone(),
            log.clone(),
        ];
        assert_absent(&files, SECRET, "the secret");
        assert_absent(&files, TOKEN, "the token");

        // A refused sign-in is a diagnostic on client_secret, without the secret.
        tf.env = vec![("TF_VAR_client_secret".into(), "wrong-secret-31f".into())];
        let out = tf.fails(&["plan", "-input=false", "-no-color"]);
        assert!(out.contains("Azure sign-in failed"), "{out}");
        assert!(out.contains("invalid_client"), "{out}");
        assert!(!out.contains("wrong-secret-31f"), "{out}");
    }
}

#[cfg(feature = "gcp")]
mod gcp {
    use super::*;
    use crate::fakes::faults::FaultPlan;
    use crate::fakes::gcp_compute::{self, PROJECT, REGION, ZONE};
    use predictive_clouds::gcp::{GcpCredentials, GcpParams, GcpProvider};

    fn main_tf(state: &Path, endpoint: &str, template: &str) -> String {
        format!(
            r#"
terraform {{
  required_providers {{
    predictive = {{ source = "predictive/predictive" }}
  }}
}}
provider "predictive" {{
  state_path   = "{state}"
  catalog_path = "{catalog}"
  cloud        = "gcp"
  gcp {{
    project           = "{PROJECT}"
    region            = "{REGION}"
    zone              = "{ZONE}"
    endpoint          = "{endpoint}"
    instance_template = "{template}"
    anonymous         = true
  }}
}}
{clone}"#,
            state = state.display(),
            catalog = catalog(),
            clone = clone_tf("gcp", REGION),
        )
    }

    #[test]
    fn terraform_should_provision_and_release_a_clone_on_the_compute_fake() {
        let Some(bin) = terraform_bin() else { return };
        let rt = runtime();
        let fake = rt.block_on(gcp_compute::start(FaultPlan::none()));
        fake.state
            .lock()
            .unwrap()
            .add_template("pred-tpl", "e2-standard-2");
        let adapter = rt.block_on(async {
            let mut p = GcpParams::new(PROJECT, ZONE);
            p.endpoint = Some(fake.endpoint.clone());
            p.credentials = GcpCredentials::Anonymous;
            GcpProvider::new(p.check().unwrap()).await.unwrap()
        });
        let owner = Owner::new("clone-web").unwrap();
        let live = || live_instances(&rt, &adapter, &owner);
        let tf = Tf::new(bin);
        let state = tf.dir.join(".predictive/state.db");
        tf.write(&main_tf(&state, &fake.endpoint, "pred-tpl"));
        lifecycle(&tf, "gcp", REGION, &live);
        assert_eq!(
            fake.state
                .lock()
                .unwrap()
                .labelled(predictive_clouds::OWNER_TAG, "clone-web"),
            0
        );

        // A zone outside the region is a diagnostic naming gcp.zone.
        tf.write(&main_tf(&state, &fake.endpoint, "pred-tpl").replace(
            &format!("zone              = \"{ZONE}\""),
            "zone = \"us-east1-b\"",
        ));
        let out = tf.fails(&["plan", "-input=false", "-no-color"]);
        assert!(out.contains("gcp.zone"), "{out}");
    }

    /// A service-account key whose `private_key` is not a PEM key, with a marker to look for.
    const BAD_KEY_MARK: &str = "KEY-MATERIAL-9c4e2a";

    #[test]
    fn a_bad_service_account_key_should_be_a_diagnostic_on_gcp_credentials_without_the_key() {
        let Some(bin) = terraform_bin() else { return };
        let rt = runtime();
        let fake = rt.block_on(gcp_compute::start(FaultPlan::none()));
        let mut tf = Tf::new(bin);
        let log = tf.dir.join("terraform.log");
        let key = format!(
            r#"{{"type":"service_account","project_id":"{PROJECT}","private_key_id":"k1","private_key":"{BAD_KEY_MARK}","client_email":"sa@{PROJECT}.iam.gserviceaccount.com","token_uri":"https://oauth2.googleapis.com/token"}}"#
        );
        tf.env = vec![
            ("TF_VAR_gcp_key".into(), key),
            ("TF_LOG".into(), "TRACE".into()),
            ("TF_LOG_PATH".into(), log.display().to_string()),
        ];
        let state = tf.dir.join(".predictive/state.db");
        let config = main_tf(&state, &fake.endpoint, "pred-tpl")
            .replace(
                "    anonymous         = true\n",
                "    credentials       = var.gcp_key\n",
            )
            .replace(
                "provider \"predictive\" {",
                "variable \"gcp_key\" {\n  type      = string\n  sensitive = true\n}\nprovider \"predictive\" {",
            );
        assert!(
            config.contains("credentials       = var.gcp_key"),
            "{config}"
        );
        tf.write(&config);
        tf.ok(&["init", "-input=false", "-no-color"]);
        let out = tf.fails(&["plan", "-input=false", "-no-color"]);
        assert!(out.contains("gcp.credentials"), "{out}");
        assert!(out.contains("private_key"), "names the field: {out}");
        assert!(!out.contains(BAD_KEY_MARK), "{out}");
        let out = tf.fails(&["apply", "-input=false", "-auto-approve", "-no-color"]);
        assert!(out.contains("gcp.credentials"), "{out}");
        assert!(!out.contains(BAD_KEY_MARK), "{out}");
        let files = [
            tf.dir.join("terraform.tfstate"),
            tf.dir.join("terraform.tfstate.backup"),
            state.clone(),
            log.clone(),
        ];
        assert_absent(&files, BAD_KEY_MARK, "the service-account key");
        assert!(
            std::fs::metadata(&log)
                .map(|m| m.len() > 0)
                .unwrap_or(false),
            "terraform wrote its trace log"
        );
    }
}
