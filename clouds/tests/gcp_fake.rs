//! The GCP adapter against the local fake of the Compute Engine REST paths
//! (`fakes::gcp_compute`), with anonymous credentials and an endpoint override.
#![cfg(feature = "gcp")]

mod fakes;

use std::sync::Arc;
use std::time::Duration;

use fakes::faults::FaultPlan;
use fakes::gcp_compute::{self, ComputeFake, PROJECT, REGION, ZONE};
use predictive_clouds::clock::TokioSleep;
use predictive_clouds::gcp::{GcpCredentials, GcpParams, GcpProvider};
use predictive_clouds::{
    CloudProvider, ErrorKind, GroupId, IdempotencyToken, InstanceId, InstanceState, InstanceType,
    LaunchRequest, Owner, StopMode, OWNER_TAG,
};

async fn provider(fake: &ComputeFake) -> GcpProvider {
    let mut p = GcpParams::new(PROJECT, ZONE);
    p.endpoint = Some(fake.endpoint.clone());
    p.credentials = GcpCredentials::Anonymous;
    p.poll_interval = Duration::from_millis(1);
    p.operation_timeout = Duration::from_secs(20);
    GcpProvider::with_sleep(p.check().unwrap(), Arc::new(TokioSleep))
        .await
        .unwrap()
}

fn owner() -> Owner {
    Owner::new("team-a").unwrap()
}

async fn fake(plan: FaultPlan) -> ComputeFake {
    let fake = gcp_compute::start(plan).await;
    {
        let mut st = fake.state.lock().unwrap();
        st.add_template("web-tpl", "e2-standard-2");
        st.add_group(&format!("zones/{ZONE}"), "web", "web-tpl", 1);
        st.add_group(&format!("regions/{REGION}"), "api", "web-tpl", 2);
    }
    fake
}

#[tokio::test]
async fn gcp_adapter_should_follow_the_port_on_the_compute_fake() {
    let fake = fake(FaultPlan::none()).await;
    let p = provider(&fake).await;
    let g = GroupId::new("web");

    // zonal group: describe, scale up and down
    let view = p.describe_group(&g).await.unwrap();
    assert_eq!((view.desired, view.instances.len()), (1, 1));
    assert_eq!(view.instance_type, InstanceType::new("e2-standard-2"));
    let up = p.scale_group(&g, 3).await.unwrap();
    assert_eq!((up.desired, up.instances.len()), (3, 3));
    let down = p.scale_group(&g, 2).await.unwrap();
    assert_eq!((down.desired, down.instances.len()), (2, 2));

    // regional group
    let regional = GroupId::new(format!("regions/{REGION}/instanceGroupManagers/api"));
    assert_eq!(
        p.describe_group(&regional).await.unwrap().instances.len(),
        2
    );
    assert_eq!(
        p.scale_group(&regional, 4).await.unwrap().instances.len(),
        4
    );

    // resize the group: new instance template, set on the group
    let resized = p
        .resize_group(&g, &InstanceType::new("e2-standard-4"))
        .await
        .unwrap();
    assert_eq!(resized.instance_type, InstanceType::new("e2-standard-4"));
    let again = p
        .resize_group(&g, &InstanceType::new("e2-standard-4"))
        .await
        .unwrap();
    assert_eq!(again.instance_type, InstanceType::new("e2-standard-4"));
    let err = p
        .resize_group(&g, &InstanceType::new("x9-huge"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");

    // launch twice with the same token: created once
    let mut req = LaunchRequest::new(
        IdempotencyToken::new("Launch_1").unwrap(),
        owner(),
        "e2-small",
        2,
    );
    req.template_group = Some(g.clone());
    let first = p.launch(&req).await.unwrap();
    let second = p.launch(&req).await.unwrap();
    assert_eq!(first.len(), 2);
    let ids =
        |v: &[predictive_clouds::Instance]| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&second));
    assert_eq!(fake.state.lock().unwrap().labelled(OWNER_TAG, "team-a"), 2);
    let mut other = req.clone();
    other.instance_type = InstanceType::new("n2-standard-2");
    assert_eq!(
        p.launch(&other).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );

    // stop, resize only when stopped, start
    let id = first[0].id.clone();
    assert_eq!(
        p.describe_instance(&id).await.unwrap().state,
        InstanceState::Running
    );
    let err = p
        .resize_instance(&id, &InstanceType::new("e2-standard-2"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IncorrectState);
    assert_eq!(
        p.stop_instance(&id, StopMode::Hibernate)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        p.stop_instance(&id, StopMode::Stop).await.unwrap().state,
        InstanceState::Stopped
    );
    let resized = p
        .resize_instance(&id, &InstanceType::new("e2-standard-2"))
        .await
        .unwrap();
    assert_eq!(resized.instance_type, InstanceType::new("e2-standard-2"));
    assert_eq!(
        p.start_instance(&id).await.unwrap().state,
        InstanceState::Running
    );

    // orphan sweep by owner label
    assert_eq!(p.list_instances(&owner()).await.unwrap().len(), 2);
    assert!(p
        .list_instances(&Owner::new("other").unwrap())
        .await
        .unwrap()
        .is_empty());

    // a group member is removed through its group, which shrinks instead of recreating it
    let zonal_path = GroupId::new(format!("zones/{ZONE}/instanceGroupManagers/web"));
    remove_a_member_through_its_group(&p, &g, &zonal_path).await;

    // the same on the regional group, after a new template
    let resized = p
        .resize_group(&regional, &InstanceType::new("e2-standard-4"))
        .await
        .unwrap();
    assert_eq!(resized.instance_type, InstanceType::new("e2-standard-4"));
    remove_a_member_through_its_group(&p, &regional, &regional).await;

    // terminate, not found, catalog
    p.terminate_instance(&first[1].id).await.unwrap();
    assert!(p
        .describe_instance(&first[1].id)
        .await
        .unwrap_err()
        .is_not_found());
    let missing = InstanceId::new(format!("zones/{ZONE}/instances/nope"));
    assert!(p
        .describe_instance(&missing)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(p
        .describe_group(&GroupId::new("nope"))
        .await
        .unwrap_err()
        .is_not_found());
    assert_eq!(
        p.instance_types().await.unwrap().len(),
        gcp_compute::MACHINE_TYPES.len()
    );
    assert_eq!(p.prices().await.unwrap_err().kind(), ErrorKind::Unsupported);
}

/// Terminates the first member of `group` (whose members name it `path`): the group's target
/// drops by one and the member is gone, not recreated.
async fn remove_a_member_through_its_group(p: &GcpProvider, group: &GroupId, path: &GroupId) {
    let before = p.describe_group(group).await.unwrap();
    let member = before.instances[0].id.clone();
    assert_eq!(
        p.describe_instance(&member).await.unwrap().group.as_ref(),
        Some(path)
    );
    p.terminate_instance(&member).await.unwrap();
    let after = p.describe_group(group).await.unwrap();
    assert_eq!(
        (after.desired, after.instances.len()),
        (before.desired - 1, before.instances.len() - 1)
    );
    assert!(after.instances.iter().all(|i| i.id != member));
}

/// A spot instance template makes the instances of an on-demand launch spot; the token is still
/// bound to the option the launch asked for (the `predictive-purchase` label), not to what the
/// instance turned out to be.
#[tokio::test]
async fn gcp_tokens_should_be_bound_to_the_requested_purchase_option_with_a_spot_template() {
    use predictive_clouds::PurchaseOption;
    let fake = fake(FaultPlan::none()).await;
    fake.state
        .lock()
        .unwrap()
        .add_spot_template("spot-tpl", "e2-standard-2");
    let mut p = GcpParams::new(PROJECT, ZONE);
    p.endpoint = Some(fake.endpoint.clone());
    p.credentials = GcpCredentials::Anonymous;
    p.poll_interval = Duration::from_millis(1);
    p.instance_template = Some(format!(
        "projects/{PROJECT}/global/instanceTemplates/spot-tpl"
    ));
    let p = GcpProvider::with_sleep(p.check().unwrap(), Arc::new(TokioSleep))
        .await
        .unwrap();
    let token = |t: &str| IdempotencyToken::new(t).unwrap();

    let on_demand = LaunchRequest::new(token("od-1"), owner(), "e2-small", 1);
    let first = p.launch(&on_demand).await.unwrap();
    assert_eq!(
        first[0].purchase,
        PurchaseOption::Spot,
        "the template decides"
    );
    assert_eq!(
        first[0].tags.get("predictive-purchase").map(String::as_str),
        Some("on_demand")
    );
    let again = p.launch(&on_demand).await.unwrap();
    assert_eq!(
        again[0].id, first[0].id,
        "the same request is the same launch"
    );
    let err = p
        .launch(&on_demand.clone().with_purchase(PurchaseOption::Spot))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");

    let spot = LaunchRequest::new(token("spot-1"), owner(), "e2-small", 1)
        .with_purchase(PurchaseOption::Spot);
    let launched = p.launch(&spot).await.unwrap();
    assert_eq!(p.launch(&spot).await.unwrap()[0].id, launched[0].id);
    let err = p
        .launch(&spot.clone().with_purchase(PurchaseOption::OnDemand))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert_eq!(fake.state.lock().unwrap().labelled(OWNER_TAG, "team-a"), 2);
}

#[tokio::test]
async fn gcp_errors_should_map_injected_faults_onto_retryable_kinds() {
    let mut plan = FaultPlan::at(1.0, 5);
    plan.hang = Duration::from_millis(200);
    let fake = fake(plan).await;
    let p = provider(&fake).await;
    let mut throttled = 0;
    for _ in 0..12 {
        let err = p.describe_group(&GroupId::new("web")).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        if err.is_throttled() {
            throttled += 1;
            assert_eq!(
                err.retry_after(),
                Some(Duration::from_secs(1)),
                "the hint is kept"
            );
        }
    }
    assert!(throttled > 0, "some calls were throttled");
    assert!(
        fake.faults.counts().len() >= 3,
        "{:?}",
        fake.faults.counts()
    );
}

async fn conformance_run(plan: FaultPlan, seed: u64) {
    use predictive_clouds::conformance::{run_some, Scenario};
    let scenarios = Scenario::ALL.to_vec();
    let fake = fake(plan).await;
    fake.state
        .lock()
        .unwrap()
        .add_group(&format!("zones/{ZONE}"), "conformance", "web-tpl", 1);
    let mut p = GcpParams::new(PROJECT, ZONE);
    p.endpoint = Some(fake.endpoint.clone());
    p.credentials = GcpCredentials::Anonymous;
    p.poll_interval = Duration::from_millis(1);
    p.instance_template = Some(format!(
        "projects/{PROJECT}/global/instanceTemplates/web-tpl"
    ));
    let inner = GcpProvider::with_sleep(p.check().unwrap(), Arc::new(TokioSleep))
        .await
        .unwrap();
    let provider = fakes::retried(inner, seed);
    let cfg = fakes::conformance(
        "conformance",
        "e2-small",
        "e2-standard-2",
        &format!("gcp{seed}"),
    )
    .with_missing_ids(&format!("zones/{ZONE}/instances/missing"), "missing-group");
    let base = fake.state.lock().unwrap().created;
    let report = run_some(&provider, &cfg, &scenarios).await;
    assert!(report.passed(), "{report}");
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.created - base,
        report.expected_creations,
        "created vs asked"
    );
    for owner in &report.owners {
        assert_eq!(st.labelled(OWNER_TAG, owner.as_str()), 0, "{owner} leaked");
    }
    assert_eq!(
        st.members(&format!("zones/{ZONE}/conformance")),
        1,
        "the group is back to its size"
    );
}

#[tokio::test]
async fn gcp_should_pass_the_conformance_suite() {
    conformance_run(FaultPlan::none(), 1).await;
}

/// 20 % of requests get throttled, fail with 5xx, time out or lose their response (after being
/// applied); behind the shared retry layer every scenario still converges.
#[tokio::test]
async fn gcp_should_converge_under_twenty_percent_faults_behind_retry() {
    for seed in [3, 17] {
        let mut plan = FaultPlan::at(0.2, seed);
        plan.hang = Duration::from_millis(200);
        conformance_run(plan, seed).await;
    }
}
