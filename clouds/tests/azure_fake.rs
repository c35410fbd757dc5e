//! The Azure adapter against the local fake of the ARM REST paths (`fakes::azure_arm`).
#![cfg(feature = "azure")]

mod fakes;

use std::sync::Arc;
use std::time::Duration;

use fakes::azure_arm::{self, ArmFake, LOCATION, RG, SUB, TOKEN};
use fakes::faults::FaultPlan;
use predictive_clouds::azure::{AzureCredentials, AzureParams, AzureProvider};
use predictive_clouds::clock::TokioSleep;
use predictive_clouds::{
    CloudProvider, ErrorKind, GroupId, IdempotencyToken, InstanceId, InstanceState, InstanceType,
    LaunchRequest, Owner, StopMode, OWNER_TAG,
};
use serde_json::json;

fn provider(fake: &ArmFake) -> AzureProvider {
    let faults = fake.faults.rate() > 0.0;
    let mut p = AzureParams::new(SUB, RG, LOCATION);
    p.endpoint = Some(fake.endpoint.clone());
    p.credentials = AzureCredentials::FixedToken(TOKEN.into());
    p.attempt_timeout = Duration::from_millis(if faults { 800 } else { 20_000 });
    p.poll_interval = Duration::from_millis(1);
    p.lro_timeout = Duration::from_secs(20);
    p.vm_template = Some(json!({
        "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}},
        "osProfile": {"computerName": "pred", "adminUsername": "azureuser"},
    }));
    AzureProvider::with_sleep(p.check().unwrap(), Arc::new(TokioSleep)).unwrap()
}

fn owner() -> Owner {
    Owner::new("team-a").unwrap()
}

#[tokio::test]
async fn azure_adapter_should_follow_the_port_on_the_arm_fake() {
    let fake = azure_arm::start(FaultPlan::none()).await;
    fake.state
        .lock()
        .unwrap()
        .add_scale_set("web", "Standard_D2s_v5", 1);
    let p = provider(&fake);
    let g = GroupId::new("web");

    // describe, scale up and down (one PATCH each, then polls of the status URL)
    let view = p.describe_group(&g).await.unwrap();
    assert_eq!((view.desired, view.instances.len()), (1, 1));
    assert_eq!(view.instance_type, InstanceType::new("Standard_D2s_v5"));
    let up = p.scale_group(&g, 3).await.unwrap();
    assert_eq!((up.desired, up.instances.len()), (3, 3));
    let down = p.scale_group(&g, 2).await.unwrap();
    assert_eq!((down.desired, down.instances.len()), (2, 2));
    p.scale_group(&g, 2).await.unwrap();
    {
        let st = fake.state.lock().unwrap();
        let patches: u32 = st
            .mutations
            .iter()
            .filter(|(k, _)| k.starts_with("PATCH") && k.ends_with("/virtualMachineScaleSets/web"))
            .map(|(_, n)| *n)
            .sum();
        assert_eq!(
            patches, 2,
            "one PATCH per change, never re-sent: {:?}",
            st.mutations
        );
        assert!(st.polls >= 2, "the status URL was polled");
    }
    let err = p.scale_group(&g, 5000).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);

    // resize the group
    let resized = p
        .resize_group(&g, &InstanceType::new("Standard_D4s_v5"))
        .await
        .unwrap();
    assert_eq!(resized.instance_type, InstanceType::new("Standard_D4s_v5"));
    let err = p
        .resize_group(&g, &InstanceType::new("Standard_Nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");

    // launch twice with the same token: created once
    let req = LaunchRequest::new(
        IdempotencyToken::new("launch-1").unwrap(),
        owner(),
        "Standard_B2s",
        2,
    );
    let first = p.launch(&req).await.unwrap();
    let second = p.launch(&req).await.unwrap();
    assert_eq!(first.len(), 2);
    let ids =
        |v: &[predictive_clouds::Instance]| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&second));
    assert_eq!(
        fake.state.lock().unwrap().vms_tagged(OWNER_TAG, "team-a"),
        2
    );
    let mut other = req.clone();
    other.instance_type = InstanceType::new("Standard_F2s_v2");
    assert_eq!(
        p.launch(&other).await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );

    // wait for creation, then stop (deallocate), resize only when stopped, start
    let id = first[0].id.clone();
    let mut state = p.describe_instance(&id).await.unwrap().state;
    for _ in 0..10 {
        if state == InstanceState::Running {
            break;
        }
        state = p.describe_instance(&id).await.unwrap().state;
    }
    assert_eq!(state, InstanceState::Running);
    let err = p
        .resize_instance(&id, &InstanceType::new("Standard_D2s_v5"))
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
    let stopped = p.stop_instance(&id, StopMode::Stop).await.unwrap();
    assert_eq!(
        stopped.state,
        InstanceState::Stopped,
        "the deallocation was awaited"
    );
    let resized = p
        .resize_instance(&id, &InstanceType::new("Standard_D2s_v5"))
        .await
        .unwrap();
    assert_eq!(resized.instance_type, InstanceType::new("Standard_D2s_v5"));
    let started = p.start_instance(&id).await.unwrap();
    assert_eq!(started.state, InstanceState::Running);

    // scale set members: stop and start one by id
    let member = p.describe_group(&g).await.unwrap().instances[0].id.clone();
    assert_eq!(
        p.stop_instance(&member, StopMode::Stop)
            .await
            .unwrap()
            .state,
        InstanceState::Stopped
    );
    assert_eq!(
        p.start_instance(&member).await.unwrap().state,
        InstanceState::Running
    );

    // orphan sweep by owner
    let owned = p.list_instances(&owner()).await.unwrap();
    assert_eq!(owned.len(), 2);
    assert!(p
        .list_instances(&Owner::new("other").unwrap())
        .await
        .unwrap()
        .is_empty());

    // terminate standalone and member (capacity follows)
    p.terminate_instance(&first[1].id).await.unwrap();
    assert!(
        p.describe_instance(&first[1].id)
            .await
            .unwrap_err()
            .is_not_found(),
        "the delete was awaited"
    );
    assert!(
        fake.state.lock().unwrap().location_polls >= 1,
        "the delete's Location status URL was polled"
    );
    assert!(p
        .terminate_instance(&first[1].id)
        .await
        .unwrap_err()
        .is_not_found());
    p.terminate_instance(&member).await.unwrap();
    let after = p.describe_group(&g).await.unwrap();
    assert_eq!((after.desired, after.instances.len()), (1, 1));

    // not found, catalog
    let missing = InstanceId::new("nope");
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
    let types = p.instance_types().await.unwrap();
    assert_eq!(types.len(), azure_arm::SIZES.len());
    assert_eq!(p.prices().await.unwrap_err().kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn azure_errors_should_map_injected_faults_onto_retryable_kinds() {
    let fake = azure_arm::start(FaultPlan::at(1.0, 11)).await;
    fake.state
        .lock()
        .unwrap()
        .add_scale_set("web", "Standard_D2s_v5", 1);
    let p = provider(&fake);
    for _ in 0..12 {
        let err = p.describe_group(&GroupId::new("web")).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }
    assert!(
        fake.faults.counts().len() >= 3,
        "{:?}",
        fake.faults.counts()
    );
}

#[tokio::test]
async fn azure_should_refuse_a_wrong_token() {
    let fake = azure_arm::start(FaultPlan::none()).await;
    fake.state
        .lock()
        .unwrap()
        .add_scale_set("web", "Standard_D2s_v5", 1);
    let mut p = AzureParams::new(SUB, RG, LOCATION);
    p.endpoint = Some(fake.endpoint.clone());
    p.credentials = AzureCredentials::FixedToken("wrong".into());
    let p = AzureProvider::new(p.check().unwrap()).unwrap();
    let err = p.describe_group(&GroupId::new("web")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        !format!("{err:?}").contains("wrong\""),
        "the token never shows: {err:?}"
    );
}

async fn conformance_run(plan: FaultPlan, seed: u64) {
    use predictive_clouds::conformance::{run_some, Scenario};
    let scenarios = Scenario::ALL.to_vec();
    let fake = azure_arm::start(plan).await;
    fake.state
        .lock()
        .unwrap()
        .add_scale_set("conformance", "Standard_D2s_v5", 1);
    let provider = fakes::retried(provider(&fake), seed);
    let cfg = fakes::conformance(
        "conformance",
        "Standard_B2s",
        "Standard_D2s_v5",
        &format!("az{seed}"),
    )
    .with_missing_ids("pred-missing", "missing-set");
    let base = fake.state.lock().unwrap().created;
    let report = run_some(&provider, &cfg, &scenarios).await;
    assert!(report.passed(), "{report}");
    // Ground truth from the fake: nothing created twice, nothing of the run left alive.
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.created - base,
        report.expected_creations,
        "created vs asked"
    );
    for owner in &report.owners {
        assert_eq!(
            st.vms_tagged(OWNER_TAG, owner.as_str()),
            0,
            "{owner} leaked"
        );
    }
    assert_eq!(
        st.members("conformance"),
        1,
        "the group is back to its size"
    );
}

#[tokio::test]
async fn azure_should_pass_the_conformance_suite() {
    conformance_run(FaultPlan::none(), 1).await;
}

/// 20 % of requests get throttled, fail with 5xx, time out or lose their response (after being
/// applied); behind the shared retry layer every scenario still converges.
#[tokio::test]
async fn azure_should_converge_under_twenty_percent_faults_behind_retry() {
    for seed in [3, 17, 29] {
        conformance_run(FaultPlan::at(0.2, seed), seed).await;
    }
}
