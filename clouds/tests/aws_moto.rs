//! The AWS adapter against moto's server (started by the test on a free loopback port), through
//! a fault-injecting proxy. Skips when moto is missing, except under `CI` where it fails.
#![cfg(feature = "aws")]

mod fakes;

use std::collections::BTreeMap;
use std::time::Duration;

use fakes::faults::{FaultPlan, Injector};
use fakes::moto::{proxy, Moto};
use predictive_clouds::aws::{AwsCredentials, AwsParams, AwsProvider, TaggedGroup, WarmPoolState};
use predictive_clouds::{
    CloudProvider, ErrorKind, GroupId, IdempotencyToken, InstanceId, InstanceState, InstanceType,
    LaunchRequest, Owner, PurchaseOption, StopMode, OWNER_TAG, TOKEN_TAG,
};

const REGION: &str = "us-east-1";
const ZONE: &str = "us-east-1a";

/// One moto at a time: each test starts its own, and several Python servers at once on a small
/// machine slow each other down.
static ONE_MOTO: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_moto() -> std::sync::MutexGuard<'static, ()> {
    ONE_MOTO.lock().unwrap_or_else(|e| e.into_inner())
}

struct Env {
    provider: AwsProvider,
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    faults: std::sync::Arc<Injector>,
    image: String,
}

async fn env(moto: &Moto, plan: FaultPlan) -> Env {
    env_with(moto, plan, BTreeMap::new()).await
}

async fn env_with(
    moto: &Moto,
    plan: FaultPlan,
    tagged_groups: BTreeMap<GroupId, TaggedGroup>,
) -> Env {
    let (addr, faults) = proxy(moto, plan).await;
    let mut params = AwsParams::new(REGION);
    params.endpoint_url = Some(format!("http://{addr}"));
    params.credentials = AwsCredentials::Static {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "test-secret".into(),
    };
    // Short attempts only when timeouts are injected (the retry layer absorbs a slow moto then);
    // without faults, a slow moto on a loaded machine must not fail a call.
    params.attempt_timeout = if plan.rate > 0.0 {
        Duration::from_millis(800)
    } else {
        Duration::from_secs(20)
    };
    faults.set_enabled(false);
    // Raw SDK clients for the fixtures (groups and templates are created outside the port).
    let creds =
        aws_sdk_ec2::config::Credentials::new("AKIDTEST", "test-secret", None, None, "test");
    let region = aws_sdk_ec2::config::Region::new(REGION);
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .credentials_provider(creds.clone())
            .region(region.clone())
            .endpoint_url(format!("http://{}", moto.addr))
            .build(),
    );
    let asg = aws_sdk_autoscaling::Client::from_conf(
        aws_sdk_autoscaling::Config::builder()
            .behavior_version(aws_sdk_autoscaling::config::BehaviorVersion::latest())
            .credentials_provider(creds)
            .region(region)
            .endpoint_url(format!("http://{}", moto.addr))
            .build(),
    );
    let images = ec2
        .describe_images()
        .send()
        .await
        .expect("moto lists its images");
    let image = images
        .images()
        .iter()
        .find_map(|i| i.image_id())
        .expect("moto has an image")
        .to_owned();
    params.image_id = Some(image.clone());
    params.tagged_groups = tagged_groups;
    let provider = AwsProvider::connect(params.check().unwrap()).await;
    faults.set_enabled(true);
    Env {
        provider,
        ec2,
        asg,
        faults,
        image,
    }
}

/// Creates a launch template and an Auto Scaling group using it (no faults while doing so).
async fn group(env: &Env, name: &str, owner: &Owner, desired: i32) -> GroupId {
    use aws_sdk_autoscaling::types as at;
    use aws_sdk_ec2::types as et;
    env.faults.set_enabled(false);
    let lt = env
        .ec2
        .create_launch_template()
        .launch_template_name(format!("{name}-lt"))
        .launch_template_data(
            et::RequestLaunchTemplateData::builder()
                .image_id(&env.image)
                .instance_type(et::InstanceType::from("t3.micro"))
                .build(),
        )
        .send()
        .await
        .expect("create launch template");
    let lt_id = lt.launch_template().unwrap().launch_template_id().unwrap();
    env.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(
            at::LaunchTemplateSpecification::builder()
                .launch_template_id(lt_id)
                .version("$Default")
                .build(),
        )
        .min_size(0)
        .max_size(6)
        .desired_capacity(desired)
        .availability_zones(ZONE)
        .tags(
            at::Tag::builder()
                .key(OWNER_TAG)
                .value(owner.as_str())
                .propagate_at_launch(true)
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .build(),
        )
        .send()
        .await
        .expect("create auto scaling group");
    env.faults.set_enabled(true);
    GroupId::new(name)
}

fn token(s: &str) -> IdempotencyToken {
    IdempotencyToken::new(s).unwrap()
}

fn owner() -> Owner {
    Owner::new("team-a").unwrap()
}

#[test]
fn aws_adapter_should_follow_the_port_on_moto() {
    let _one = one_moto();
    let Some(moto) = Moto::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let env = env(&moto, FaultPlan::none()).await;
        let p = &env.provider;
        let g = group(&env, "web", &owner(), 1).await;

        // describe, scale up and down
        let view = p.describe_group(&g).await.unwrap();
        assert_eq!((view.desired, view.min, view.max), (1, 0, 6));
        assert_eq!(view.instance_type, InstanceType::new("t3.micro"));
        assert_eq!(view.instances.len(), 1);
        let up = p.scale_group(&g, 4).await.unwrap();
        assert_eq!(up.desired, 4);
        assert_eq!(p.describe_group(&g).await.unwrap().instances.len(), 4);
        let again = p.scale_group(&g, 4).await.unwrap();
        assert_eq!(
            again.instances.len(),
            4,
            "scaling to the same number is a no-op"
        );
        let down = p.scale_group(&g, 2).await.unwrap();
        assert_eq!((down.desired, down.instances.len()), (2, 2));
        let err = p.scale_group(&g, 7).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");

        // resize the group: a new launch template version
        let resized = p
            .resize_group(&g, &InstanceType::new("m5.large"))
            .await
            .unwrap();
        assert_eq!(resized.instance_type, InstanceType::new("m5.large"));
        let err = p
            .resize_group(&g, &InstanceType::new("nope.huge"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
        p.scale_group(&g, 3).await.unwrap();
        let grown = p.describe_group(&g).await.unwrap();
        assert!(grown
            .instances
            .iter()
            .any(|i| i.instance_type == InstanceType::new("m5.large")));

        // launch twice with the same token: created once
        let req = LaunchRequest::new(token("launch-1"), owner(), "t3.small", 2);
        let first = p.launch(&req).await.unwrap();
        assert_eq!(first.len(), 2);
        let second = p.launch(&req).await.unwrap();
        let ids =
            |v: &[predictive_clouds::Instance]| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&second));
        let mut other = req.clone();
        other.instance_type = InstanceType::new("t3.large");
        let err = p.launch(&other).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");

        // spot: InstanceMarketOptions on RunInstances; EC2 (and moto) report the lifecycle
        assert!(first.iter().all(|i| i.purchase == PurchaseOption::OnDemand));
        let spot_req = LaunchRequest::new(token("spot-1"), owner(), "t3.small", 1)
            .with_purchase(PurchaseOption::Spot);
        let spot = p.launch(&spot_req).await.unwrap();
        assert_eq!(spot[0].purchase, PurchaseOption::Spot);
        let raw = env
            .ec2
            .describe_instances()
            .instance_ids(spot[0].id.as_str())
            .instance_ids(first[0].id.as_str())
            .send()
            .await
            .unwrap();
        let lifecycle = |id: &InstanceId| {
            raw.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id.as_str()))
                .map(|i| i.instance_lifecycle().cloned())
                .expect("described")
        };
        assert_eq!(
            lifecycle(&spot[0].id),
            Some(aws_sdk_ec2::types::InstanceLifecycleType::Spot)
        );
        assert_eq!(lifecycle(&first[0].id), None, "on-demand has no lifecycle");
        assert_eq!(
            p.describe_instance(&spot[0].id).await.unwrap().purchase,
            PurchaseOption::Spot
        );
        let err = p
            .launch(&spot_req.clone().with_purchase(PurchaseOption::OnDemand))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidRequest,
            "same token, other purchase: {err}"
        );
        p.terminate_instance(&spot[0].id).await.unwrap();

        // stop, resize only when stopped, start
        let id = first[0].id.clone();
        let running = p.describe_instance(&id).await.unwrap();
        assert_eq!(running.state, InstanceState::Running);
        let err = p
            .resize_instance(&id, &InstanceType::new("t3.medium"))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::IncorrectState,
            "EC2 resizes stopped instances only"
        );
        let err = p.stop_instance(&id, StopMode::Hibernate).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
        let stopped = p.stop_instance(&id, StopMode::Stop).await.unwrap();
        assert!(matches!(
            stopped.state,
            InstanceState::Stopped | InstanceState::Stopping
        ));
        let resized = p
            .resize_instance(&id, &InstanceType::new("t3.medium"))
            .await
            .unwrap();
        assert_eq!(resized.instance_type, InstanceType::new("t3.medium"));
        let started = p.start_instance(&id).await.unwrap();
        assert!(started.state.is_active());
        assert_eq!(p.start_instance(&id).await.unwrap().state, started.state);

        // orphan sweep by owner: group members and standalone instances
        let owned = p.list_instances(&owner()).await.unwrap();
        assert_eq!(owned.iter().filter(|i| i.state.is_live()).count(), 3 + 2);
        let stranger = p
            .list_instances(&Owner::new("someone-else").unwrap())
            .await
            .unwrap();
        assert!(stranger.is_empty());

        // terminate: standalone, then a group member (desired capacity follows)
        let gone = p.terminate_instance(&first[1].id).await.unwrap();
        assert!(matches!(
            gone.state,
            InstanceState::Terminated | InstanceState::Stopping
        ));
        p.terminate_instance(&first[1].id).await.unwrap();
        let member = p.describe_group(&g).await.unwrap().instances[0].id.clone();
        p.terminate_instance(&member).await.unwrap();
        assert_eq!(p.describe_group(&g).await.unwrap().desired, 2);

        // not found
        let missing = InstanceId::new("i-0123456789abcdef0");
        assert!(p
            .describe_instance(&missing)
            .await
            .unwrap_err()
            .is_not_found());
        assert!(p
            .describe_group(&GroupId::new("no-such-group"))
            .await
            .unwrap_err()
            .is_not_found());

        // warm pool
        let pool = p
            .put_warm_pool(&g, 1, Some(4), WarmPoolState::Stopped)
            .await
            .unwrap();
        assert_eq!(
            (pool.min_size, pool.state),
            (1, Some(WarmPoolState::Stopped))
        );
        assert!(p.warm_pool(&g).await.unwrap().is_some());

        // catalog (moto lists its ~1,300 types slowly: a client with a longer attempt timeout)
        let mut slow = AwsParams::new(REGION);
        slow.endpoint_url = Some(format!("http://{}", moto.addr));
        slow.credentials = AwsCredentials::Static {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "test-secret".into(),
        };
        slow.attempt_timeout = Duration::from_secs(30);
        let slow = AwsProvider::connect(slow.check().unwrap()).await;
        let types = slow.instance_types().await.unwrap();
        assert!(types
            .iter()
            .any(|t| t.name.as_str() == "m5.large" && t.vcpus == 2));
        assert_eq!(p.prices().await.unwrap_err().kind(), ErrorKind::Unsupported);
    });
}

#[test]
fn aws_errors_should_map_injected_faults_onto_retryable_kinds() {
    let _one = one_moto();
    let Some(moto) = Moto::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let env = env(&moto, FaultPlan::at(1.0, 7)).await;
        let p = &env.provider;
        let g = group(&env, "faulty", &owner(), 0).await;
        // Every request gets a fault: every call fails, and always with a retryable kind.
        let mut throttled = 0;
        for _ in 0..12 {
            let err = p.describe_group(&g).await.unwrap_err();
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
        let counts = env.faults.counts();
        assert!(
            counts.len() >= 3,
            "several fault kinds were drawn: {counts:?}"
        );
        let _ = InstanceState::Running;
    });
}

/// Every instance moto ever created (any state): the ground truth for duplicates.
async fn all_instances(env: &Env) -> u64 {
    env.faults.set_enabled(false);
    let out = env.ec2.describe_instances().send().await.unwrap();
    env.faults.set_enabled(true);
    out.reservations()
        .iter()
        .map(|r| r.instances().len() as u64)
        .sum()
}

fn conformance_run(plan: FaultPlan, seed: u64) {
    use predictive_clouds::conformance::run_all;
    let _one = one_moto();
    let Some(moto) = Moto::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let env = env(&moto, plan).await;
        let g = group(&env, "conformance", &Owner::new("fixture").unwrap(), 1).await;
        let provider = fakes::retried(env.provider.clone(), seed);
        let cfg = fakes::conformance(g.as_str(), "t3.micro", "t3.small", &format!("aws{seed}"));
        let base = all_instances(&env).await;
        let report = run_all(&provider, &cfg).await;
        assert!(report.passed(), "{report}");
        assert_eq!(
            all_instances(&env).await - base,
            report.expected_creations,
            "created vs asked"
        );
        env.faults.set_enabled(false);
        for owner in &report.owners {
            let live: Vec<_> = env
                .provider
                .list_instances(owner)
                .await
                .unwrap()
                .into_iter()
                .filter(|i| i.state.is_live())
                .collect();
            assert!(live.is_empty(), "{owner} leaked {live:?}");
        }
        let g = env.provider.describe_group(&g).await.unwrap();
        assert_eq!(
            (g.desired, g.instances.len()),
            (1, 1),
            "the group is back to its size"
        );
    });
}

#[test]
fn aws_should_pass_the_conformance_suite_on_moto() {
    conformance_run(FaultPlan::none(), 1);
}

/// 20 % of requests get throttled, fail with 5xx, time out or lose their response (after being
/// applied); behind the shared retry layer every scenario still converges.
#[test]
fn aws_should_converge_under_twenty_percent_faults_behind_retry() {
    conformance_run(FaultPlan::at(0.2, 3), 3);
}

fn tagged_web() -> BTreeMap<GroupId, TaggedGroup> {
    let mut g = TaggedGroup::new("t3.micro", 0, 5, owner());
    g.location = Some(ZONE.into());
    [(GroupId::new("tag:app=web"), g)].into_iter().collect()
}

/// A group of standalone instances tagged `app=web` instead of an Auto Scaling group: scaled
/// by launching and terminating tagged, owned instances, idempotently.
#[test]
fn aws_tagged_group_should_scale_tagged_standalone_instances_on_moto() {
    let _one = one_moto();
    let Some(moto) = Moto::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let env = env_with(&moto, FaultPlan::none(), tagged_web()).await;
        let p = &env.provider;
        let g = GroupId::new("tag:app=web");
        let view = p.describe_group(&g).await.unwrap();
        assert_eq!((view.desired, view.min, view.max), (0, 0, 5));
        assert_eq!(view.instance_type, InstanceType::new("t3.micro"));

        let up = p.scale_group(&g, 3).await.unwrap();
        assert_eq!((up.desired, up.instances.len()), (3, 3));
        for i in &up.instances {
            assert_eq!(i.tags["app"], "web");
            assert_eq!(i.owner(), Some("team-a"));
            assert!(i.tags[TOKEN_TAG].starts_with("grp-"), "{:?}", i.tags);
            assert_eq!(i.group.as_ref(), Some(&g), "members name their group");
            assert_eq!(i.location, ZONE);
        }
        // Scaling to the same size (a retry after a lost answer) creates nothing.
        let before = all_instances(&env).await;
        let again = p.scale_group(&g, 3).await.unwrap();
        let ids =
            |v: &[predictive_clouds::Instance]| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&again.instances), ids(&up.instances));
        assert_eq!(all_instances(&env).await, before);
        let err = p.scale_group(&g, 6).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");

        // Resize: later members get the new type.
        let resized = p
            .resize_group(&g, &InstanceType::new("t3.small"))
            .await
            .unwrap();
        assert_eq!(resized.instance_type, InstanceType::new("t3.small"));
        let four = p.scale_group(&g, 4).await.unwrap();
        assert_eq!(
            four.instances
                .iter()
                .filter(|i| i.instance_type == InstanceType::new("t3.small"))
                .count(),
            1
        );

        // Scale down terminates the newest (one member stays), and back up from one member
        // launches anew each time (a spent token is not reused).
        for _ in 0..2 {
            let one = p.scale_group(&g, 1).await.unwrap();
            assert_eq!(one.instances.len(), 1);
            let before = all_instances(&env).await;
            let three = p.scale_group(&g, 3).await.unwrap();
            assert_eq!(three.instances.len(), 3);
            assert!(three.instances.iter().all(|i| i.state.is_active()));
            assert_eq!(all_instances(&env).await, before + 2);
        }
        // The orphan sweep's listing shows members with their group.
        let listed = p.list_instances(&owner()).await.unwrap();
        assert!(listed
            .iter()
            .filter(|i| i.state.is_active())
            .all(|i| i.group.as_ref() == Some(&g)));
        // An unconfigured tag group does not exist.
        let err = p
            .describe_group(&GroupId::new("tag:app=other"))
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
    });
}

/// The scale and resize scenarios of the suite on the tagged group, at a 20 % fault rate behind
/// the retry layer: no instance is created twice.
#[test]
fn aws_tagged_group_should_pass_the_scale_scenarios_under_faults() {
    use predictive_clouds::conformance::{run_some, Scenario};
    let _one = one_moto();
    let Some(moto) = Moto::start() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let env = env_with(&moto, FaultPlan::at(0.2, 5), tagged_web()).await;
        env.faults.set_enabled(false);
        env.provider
            .scale_group(&GroupId::new("tag:app=web"), 1)
            .await
            .unwrap();
        env.faults.set_enabled(true);
        let provider = fakes::retried(env.provider.clone(), 5);
        let cfg = fakes::conformance("tag:app=web", "t3.micro", "t3.small", "awstag");
        let base = all_instances(&env).await;
        let report = run_some(
            &provider,
            &cfg,
            &[
                Scenario::ScaleUpDown,
                Scenario::Resize,
                Scenario::SpotLaunch,
            ],
        )
        .await;
        assert!(report.passed(), "{report}");
        assert_eq!(
            all_instances(&env).await - base,
            report.expected_creations,
            "created vs asked"
        );
        assert!(env.faults.total() > 0, "faults were injected");
    });
}
