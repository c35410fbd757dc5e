//! The daemon (`predictive controller run`) against EC2 Auto Scaling on moto's server: a workload
//! on an Auto Scaling group is scaled by the loop through the AWS adapter in the production layer
//! stack, while a workload on a cloud without a config section is refused with an error naming
//! it and a sim workload beside them is still served.
//!
//! moto is started here (`moto_server`, installed by `scripts/install-test-deps.sh`). When moto
//! or the `aws` feature is missing the test is skipped with a message, except under `CI`, where
//! it fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use predictive_controller::daemon::{run, RunOptions};
use predictive_controller::store::{sqlite::SqliteStore, Store};

const T0: i64 = 1_397_174_400; // 2014-04-11 00:00 UTC, inside the bundled trace

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
}

struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = port.to_string();
    let spawn = |prog: &str, pre: &[&str]| {
        Command::new(prog)
            .args(pre)
            .args(["-H", "127.0.0.1", "-p", &p])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    };
    let child = spawn("moto_server", &[]).or_else(|| {
        let has = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        has.then(|| spawn("python3", &["-m", "moto.server"]))
            .flatten()
    });
    let Some(child) = child else {
        skip_or_fail("moto is not installed (pip install 'moto[server]'; scripts/install-test-deps.sh does it)");
        return None;
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let moto = Moto { child, addr };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not start on {addr} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// One AWS Query API call to moto (which checks no signature, only the service in the scope).
async fn call(moto: &Moto, service: &str, form: &[(&str, &str)]) -> String {
    let auth = format!("AWS4-HMAC-SHA256 Credential=test/20140411/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00");
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('/', "%2F").replace(' ', "%20")))
        .collect::<Vec<_>>()
        .join("&");
    let r = reqwest::Client::new()
        .post(format!("http://{}/", moto.addr))
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("moto answers");
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(
        status.is_success(),
        "{service} {:?}: {status} {text}",
        form.first()
    );
    text
}

fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split(&close).next().map(str::to_string))
        .collect()
}

async fn desired(moto: &Moto, group: &str) -> u32 {
    let xml = call(
        moto,
        "autoscaling",
        &[
            ("Action", "DescribeAutoScalingGroups"),
            ("Version", "2011-01-01"),
            ("AutoScalingGroupNames.member.1", group),
        ],
    )
    .await;
    xml_values(&xml, "DesiredCapacity")[0].parse().unwrap()
}

fn trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/nab_elb_request_count_8c0756.csv")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_scales_an_auto_scaling_group_on_moto_and_serves_the_other_workloads() {
    if !predictive_controller::adapters::built("aws") {
        skip_or_fail(
            "predictive-controller was built without the `aws` feature (test with --all-features)",
        );
        return;
    }
    let Some(moto) = tokio::task::spawn_blocking(start_moto).await.unwrap() else {
        return;
    };
    // A launch template and an Auto Scaling group of one instance.
    let images = call(
        &moto,
        "ec2",
        &[
            ("Action", "DescribeImages"),
            ("Version", "2016-11-15"),
            ("Owner.1", "amazon"),
        ],
    )
    .await;
    let image = xml_values(&images, "imageId")
        .into_iter()
        .next()
        .expect("moto has AMIs");
    call(
        &moto,
        "ec2",
        &[
            ("Action", "CreateLaunchTemplate"),
            ("Version", "2016-11-15"),
            ("LaunchTemplateName", "web-lt"),
            ("LaunchTemplateData.ImageId", &image),
            ("LaunchTemplateData.InstanceType", "m6i.large"),
        ],
    )
    .await;
    call(
        &moto,
        "autoscaling",
        &[
            ("Action", "CreateAutoScalingGroup"),
            ("Version", "2011-01-01"),
            ("AutoScalingGroupName", "web-asg"),
            ("LaunchTemplate.LaunchTemplateName", "web-lt"),
            ("MinSize", "0"),
            ("MaxSize", "30"),
            ("DesiredCapacity", "1"),
            ("AvailabilityZones.member.1", "us-east-1a"),
        ],
    )
    .await;
    assert_eq!(desired(&moto, "web-asg").await, 1);

    let dir = tempfile::tempdir().unwrap();
    // Credentials through variables named in the config; the secret must not reach the logs.
    std::env::set_var("DAEMON_TEST_AWS_KEY_ID", "testing");
    std::env::set_var("DAEMON_TEST_AWS_SECRET", "daemon-test-secret-value");
    let config = dir.path().join("controller.toml");
    let workload = |name: &str, cloud: &str, group: &str| {
        format!(
            r#"
[[workloads]]
name = "{name}"
cloud = "{cloud}"
group = "{group}"
instance_type = "m6i.large"
capacity_per_instance = 25.0
price_per_hour = 0.096
min = 1
max = 30
metrics = {{ kind = "replay", path = "{}" }}
"#,
            trace().display()
        )
    };
    let text = format!(
        r#"
interval = "5m"
owner = "daemon-moto-test"
store = {{ kind = "sqlite", path = "state.db" }}

[clouds.aws]
region = "us-east-1"
endpoint_url = "http://{}"
access_key_id_env = "DAEMON_TEST_AWS_KEY_ID"
secret_access_key_env = "DAEMON_TEST_AWS_SECRET"
image_id = "{image}"
{}{}{}{}"#,
        moto.addr,
        workload("web", "aws", "web-asg"),
        workload("batch", "sim", "batch-group"),
        workload("vmss", "azure", "vmss-1"),
        workload("tagged", "aws", "tag:app=tagged"),
    );
    std::fs::write(&config, text).unwrap();

    run(RunOptions {
        config: config.clone(),
        ticks: Some(6),
        virtual_start: Some(T0),
        ..Default::default()
    })
    .await
    .expect("the daemon runs its ticks");

    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let web = store.decisions(Some("web"), 10).await.unwrap();
    assert_eq!(
        web.len(),
        6,
        "one decision per tick for the aws workload: {web:?}"
    );
    let last = &web[0];
    let now = desired(&moto, "web-asg").await;
    assert_eq!(
        now, last.desired,
        "the group's desired capacity is the loop's last decision"
    );
    assert_ne!(now, 1, "the loop scaled the group: {web:?}");
    assert!(web.iter().any(|d| d.action != "hold"), "{web:?}");
    // The sim workload was served in the same ticks; the azure one (no [clouds.azure]) was not.
    assert_eq!(store.decisions(Some("batch"), 10).await.unwrap().len(), 6);
    // The workload on standalone instances tagged app=tagged: as many live tagged instances as
    // the last decision wants, each owned by the controller.
    let tagged = store.decisions(Some("tagged"), 10).await.unwrap();
    assert_eq!(tagged.len(), 6, "{tagged:?}");
    let xml = call(
        &moto,
        "ec2",
        &[
            ("Action", "DescribeInstances"),
            ("Version", "2016-11-15"),
            ("Filter.1.Name", "tag:app"),
            ("Filter.1.Value.1", "tagged"),
            ("Filter.2.Name", "instance-state-name"),
            ("Filter.2.Value.1", "pending"),
            ("Filter.2.Value.2", "running"),
        ],
    )
    .await;
    let live = xml.matches("<instanceId>").count() as u32;
    assert_eq!(live, tagged[0].desired, "{tagged:?}");
    assert!(live > 1, "the loop scaled the tagged group up: {tagged:?}");
    assert_eq!(
        xml.matches("<key>predictive-owner</key>").count() as u32,
        live
    );
    assert!(store.decisions(Some("vmss"), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn daemon_names_the_workload_and_field_of_a_cloud_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[workloads]]
name = "web"
cloud = "gcp"
group = "mig"
instance_type = "e2-standard-2"
capacity_per_instance = 2.0
price_per_hour = 0.07
max = 3
metrics = {{ kind = "replay", path = "{}" }}
"#,
            trace().display()
        ),
    )
    .unwrap();
    let d = predictive_controller::adapters::load(&config).unwrap();
    let err = predictive_controller::adapters::check_workload(&d.config.workloads[0], &d.clouds)
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("workload `web`: field `cloud`:"), "{text}");
    if predictive_controller::adapters::built("gcp") {
        assert!(text.contains("[clouds.gcp]"), "{text}");
    } else {
        assert!(text.contains("not built"), "{text}");
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_naming_the_workload_and_field() {
    if !predictive_controller::adapters::built("aws") {
        skip_or_fail(
            "predictive-controller was built without the `aws` feature (test with --all-features)",
        );
        return;
    }
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::env::set_var("DAEMON_TEST_AWS_KEY_ID2", "testing");
    std::env::set_var("DAEMON_TEST_AWS_SECRET2", "unreachable-test-secret");
    std::fs::write(
        &config,
        format!(
            r#"
[clouds.aws]
endpoint_url = "http://127.0.0.1:{port}"
access_key_id_env = "DAEMON_TEST_AWS_KEY_ID2"
secret_access_key_env = "DAEMON_TEST_AWS_SECRET2"

[[workloads]]
name = "web"
cloud = "aws"
group = "web-asg"
instance_type = "m6i.large"
capacity_per_instance = 2.0
price_per_hour = 0.096
max = 3
metrics = {{ kind = "push" }}
"#
        ),
    )
    .unwrap();
    let d = predictive_controller::adapters::load(&config).unwrap();
    let stack = predictive_clouds::layer::Stack::none(
        std::sync::Arc::new(predictive_clouds::clock::SystemClock),
        std::sync::Arc::new(predictive_clouds::clock::TokioSleep),
    );
    let p = predictive_controller::adapters::build("aws", &d, "us-east-1", &stack)
        .await
        .unwrap();
    let w = &d.config.workloads[0];
    let err = predictive_controller::adapters::probe(
        w,
        &p,
        predictive_controller::adapters::endpoint("aws", &d.clouds),
        Duration::from_secs(20),
    )
    .await
    .unwrap_err();
    let want = format!(
        "workload `web`: field `cloud`: cloud `aws` at http://127.0.0.1:{port} is unreachable"
    );
    assert!(err.starts_with(&want), "{err}");
    assert!(!err.contains("unreachable-test-secret"), "{err}");
}
