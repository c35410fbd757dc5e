//! The daemon (`predictive controller run`) on Azure and GCP, against the local fakes of the ARM
//! and Compute Engine REST paths (`clouds/tests/fakes`): a workload on a VM scale set and two on
//! managed instance groups in two zones (two GCP accounts, one `[clouds.gcp.regions.*]` entry)
//! are scaled by the loop through the adapters in the production layer stack.
//!
//! When the `azure` or `gcp` feature is missing the test is skipped with a message, except under
//! `CI`, where it fails.

#[path = "../clouds/tests/fakes/mod.rs"]
mod fakes;

use std::path::{Path, PathBuf};

use fakes::faults::FaultPlan;
use fakes::{azure_arm, gcp_compute};
use predictive_controller::daemon::{run, RunOptions};
use predictive_controller::store::{sqlite::SqliteStore, Store};

const T0: i64 = 1_397_174_400; // 2014-04-11 00:00 UTC, inside the bundled trace
const OTHER_ZONE: &str = "europe-west1-c";

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
}

fn trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/nab_elb_request_count_8c0756.csv")
}

fn workload(name: &str, cloud: &str, group: &str, region: &str, instance_type: &str) -> String {
    format!(
        r#"
[[workloads]]
name = "{name}"
cloud = "{cloud}"
region = "{region}"
group = "{group}"
instance_type = "{instance_type}"
capacity_per_instance = 25.0
price_per_hour = 0.096
min = 1
max = 30
metrics = {{ kind = "replay", path = "{}" }}
"#,
        trace().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_scales_a_scale_set_and_managed_instance_groups_in_two_zones_on_the_fakes() {
    for cloud in ["azure", "gcp"] {
        if !predictive_controller::adapters::built(cloud) {
            skip_or_fail(&format!(
                "predictive-controller was built without the `{cloud}` feature (test with --all-features)"
            ));
            return;
        }
    }
    let arm = azure_arm::start(FaultPlan::none()).await;
    arm.state
        .lock()
        .unwrap()
        .add_scale_set("web-vmss", "Standard_D2s_v5", 1);
    let gce = gcp_compute::start(FaultPlan::none()).await;
    {
        let mut st = gce.state.lock().unwrap();
        st.add_template("web-tpl", "e2-standard-2");
        st.add_group(
            &format!("zones/{}", gcp_compute::ZONE),
            "web-mig",
            "web-tpl",
            1,
        );
        st.add_group(&format!("zones/{OTHER_ZONE}"), "api-mig", "web-tpl", 1);
    }

    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("DAEMON_TEST_ARM_TOKEN", azure_arm::TOKEN);
    let config = dir.path().join("controller.toml");
    let text = format!(
        r#"
interval = "5m"
owner = "daemon-fakes-test"
store = {{ kind = "sqlite", path = "state.db" }}

[clouds.azure]
subscription_id = "{sub}"
resource_group = "{rg}"
location = "{location}"
endpoint = "{arm}"
token_env = "DAEMON_TEST_ARM_TOKEN"

[clouds.gcp]
project = "{project}"
zone = "{zone}"
endpoint = "{gce}"
credentials = "anonymous"

[clouds.gcp.regions.{other}]
{}{}{}"#,
        workload(
            "vmss",
            "azure",
            "web-vmss",
            azure_arm::LOCATION,
            "Standard_D2s_v5"
        ),
        workload("mig", "gcp", "web-mig", gcp_compute::ZONE, "e2-standard-2"),
        workload("api", "gcp", "api-mig", OTHER_ZONE, "e2-standard-2"),
        sub = azure_arm::SUB,
        rg = azure_arm::RG,
        location = azure_arm::LOCATION,
        arm = arm.endpoint,
        project = gcp_compute::PROJECT,
        zone = gcp_compute::ZONE,
        gce = gce.endpoint,
        other = OTHER_ZONE,
    );
    std::fs::write(&config, text).unwrap();

    run(RunOptions {
        config: config.clone(),
        ticks: Some(4),
        virtual_start: Some(T0),
        ..Default::default()
    })
    .await
    .expect("the daemon runs its ticks");

    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    // One statement per lock: guards in one array expression would all live to its end, and
    // the second lock of the same fake would wait for the first forever.
    let vmss = arm.state.lock().unwrap().members("web-vmss");
    let mig = gce
        .state
        .lock()
        .unwrap()
        .members(&format!("zones/{}/web-mig", gcp_compute::ZONE));
    let api = gce
        .state
        .lock()
        .unwrap()
        .members(&format!("zones/{OTHER_ZONE}/api-mig"));
    let members = [("vmss", vmss), ("mig", mig), ("api", api)];
    for (name, members) in members {
        let d = store.decisions(Some(name), 10).await.unwrap();
        assert_eq!(d.len(), 4, "one decision per tick for {name}: {d:?}");
        assert!(d.iter().any(|d| d.action != "hold"), "{name}: {d:?}");
        let last = &d[0];
        assert_eq!(
            members as u32, last.desired,
            "{name}: the group's members are the loop's last decision"
        );
        assert_ne!(members, 1, "{name}: the loop scaled the group: {d:?}");
    }
}
