//! Acceptance against EC2 on moto: real `terraform` drives the built provider with
//! `cloud = "aws"` and the endpoint override pointing at a `moto_server` started by the test;
//! instances are checked in moto through its EC2 query API.
//!
//! Skips locally without terraform or moto; FAILS when `CI` is set and either is missing.
#![cfg(feature = "aws")]

mod common;

use common::{assert_absent, instance_ids, resource, terraform_bin, Tf};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `moto_server` on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port");
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        let why =
            "moto_server is not installed (scripts/install-test-deps.sh installs moto[server])";
        assert!(std::env::var_os("CI").is_none(), "CI is set but {why}");
        eprintln!("skipping: {why}");
        return None;
    };
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not listen within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// One EC2 query API call to moto (moto reads the region from the credential scope and does
/// not check signatures).
fn ec2(moto: &Moto, params: &[(&str, &str)]) -> String {
    let mut body = String::from("Version=2016-11-15");
    for (k, v) in params {
        body.push('&');
        body.push_str(k);
        body.push('=');
        body.push_str(&v.replace(':', "%3A"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/", moto.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=00",
            )
            .body(body)
            .send()
            .await
            .expect("moto answers");
        assert!(r.status().is_success(), "moto: {}", r.status());
        r.text().await.unwrap()
    })
}

/// Values of every `<tag>value</tag>` in an XML answer.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

/// The first machine image moto lists.
fn moto_image(moto: &Moto) -> String {
    let images = ec2(moto, &[("Action", "DescribeImages")]);
    xml_values(&images, "imageId")
        .into_iter()
        .next()
        .expect("moto lists an image")
}

/// moto's DescribeInstances answer for the live (pending or running) instances of `owner`.
fn describe_live(moto: &Moto, owner: &str) -> String {
    ec2(
        moto,
        &[
            ("Action", "DescribeInstances"),
            ("Filter.1.Name", "tag:predictive-owner"),
            ("Filter.1.Value.1", owner),
            ("Filter.2.Name", "instance-state-name"),
            ("Filter.2.Value.1", "pending"),
            ("Filter.2.Value.2", "running"),
        ],
    )
}

/// Live (pending or running) instances owned by `owner`, as moto reports them.
fn live_instances(moto: &Moto, owner: &str) -> Vec<String> {
    let mut ids: Vec<String> = xml_values(&describe_live(moto, owner), "instanceId");
    ids.sort();
    ids.dedup();
    ids
}

const SECRET: &str = "moto-secret-5f1c9e0d";

fn main_tf(state: &std::path::Path, moto: &Moto, image: &str, max_count: u32) -> String {
    clone_tf(state, moto, image, max_count, "on-demand")
}

/// The configuration of one clone whose allocation may only use `purchase`.
fn clone_tf(
    state: &std::path::Path,
    moto: &Moto,
    image: &str,
    max_count: u32,
    purchase: &str,
) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    predictive = {{ source = "predictive/predictive" }}
  }}
}}
variable "aws_secret" {{
  type      = string
  sensitive = true
}}
provider "predictive" {{
  state_path = "{state}"
  cloud      = "aws"
  aws {{
    region     = "us-east-1"
    endpoint   = "{url}"
    access_key = "AKIDTEST"
    secret_key = var.aws_secret
    image_id   = "{image}"
  }}
}}
resource "predictive_clone" "web" {{
  name = "web"
  source {{
    cpu = [for i in range(336) : (i % 24 >= 8 && i % 24 < 20) ? 12 + (i % 5) : 3 + (i % 3)]
  }}
  clouds    = ["aws"]
  regions   = ["us-east-1"]
  purchase_options = ["{purchase}"]
  max_count = {max_count}
}}
"#,
        state = state.display(),
        url = moto.url,
    )
}

#[test]
fn terraform_should_provision_and_release_a_clone_on_ec2_in_moto() {
    let Some(bin) = terraform_bin() else { return };
    let Some(moto) = start_moto() else { return };
    let image = moto_image(&moto);

    let mut tf = Tf::new(bin);
    let log = tf.dir.join("terraform.log");
    tf.env = vec![
        ("TF_VAR_aws_secret".into(), SECRET.into()),
        ("TF_LOG".into(), "TRACE".into()),
        ("TF_LOG_PATH".into(), log.display().to_string()),
    ];
    let state = tf.dir.join(".predictive/state.db");
    tf.write(&main_tf(&state, &moto, &image, 20));
    tf.ok(&["init", "-input=false", "-no-color"]);

    let plan = tf.plan_json();
    let planned = &resource(
        &plan["planned_values"]["root_module"],
        "predictive_clone.web",
    )["values"];
    let alloc = planned["allocation"].as_array().expect("sized at plan");
    assert!(
        alloc
            .iter()
            .all(|a| a["cloud"] == "aws" && a["region"] == "us-east-1"),
        "{alloc:?}"
    );
    let count: i64 = alloc.iter().map(|a| a["count"].as_i64().unwrap()).sum();
    assert!(count >= 1, "{alloc:?}");
    assert!(live_instances(&moto, "clone-web").is_empty());

    tf.apply_plan();
    let st = tf.state_json();
    let applied = &resource(&st["values"]["root_module"], "predictive_clone.web")["values"];
    let ids = instance_ids(applied);
    assert_eq!(ids.len() as i64, count);
    assert_eq!(
        live_instances(&moto, "clone-web"),
        ids,
        "the instances in state are the ones running in moto"
    );
    assert!(
        lifecycles(&moto, "clone-web").is_empty(),
        "on-demand lines launch on-demand instances"
    );
    // The instance types launched are the planned ones.
    let xml = ec2(
        &moto,
        &[
            ("Action", "DescribeInstances"),
            ("Filter.1.Name", "tag:predictive-owner"),
            ("Filter.1.Value.1", "clone-web"),
        ],
    );
    let types = xml_values(&xml, "instanceType");
    for a in alloc {
        let t = a["instance_type"].as_str().unwrap();
        let n = types.iter().filter(|x| *x == t).count() as i64;
        assert_eq!(n, a["count"].as_i64().unwrap(), "{t} in {types:?}");
    }

    assert_eq!(tf.plan_exit_code(), 0, "a plan right after apply is empty");

    // Capacity removed behind terraform's back shows as drift and apply restores it.
    let gone = &ids[0];
    ec2(
        &moto,
        &[("Action", "TerminateInstances"), ("InstanceId.1", gone)],
    );
    assert_eq!(tf.plan_exit_code(), 2, "drift shows in the plan");
    tf.ok(&["apply", "-input=false", "-auto-approve", "-no-color"]);
    assert_eq!(live_instances(&moto, "clone-web").len() as i64, count);

    tf.ok(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
    assert!(
        live_instances(&moto, "clone-web").is_empty(),
        "destroy releases every instance"
    );

    // The secret key never reaches the state, the provider's state store or the logs.
    let files = [
        tf.dir.join("terraform.tfstate"),
        tf.dir.join("terraform.tfstate.backup"),
        state.clone(),
        log.clone(),
    ];
    assert_absent(&files, SECRET, "the secret key");
    assert!(
        std::fs::metadata(&log)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "terraform wrote its trace log"
    );
}

/// The `instanceLifecycle` values moto reports for `owner`'s live instances: EC2 gives one per
/// spot instance (`spot`) and none for an on-demand one.
fn lifecycles(moto: &Moto, owner: &str) -> Vec<String> {
    xml_values(&describe_live(moto, owner), "instanceLifecycle")
}

#[test]
fn a_spot_only_clone_should_run_as_spot_instances_in_moto() {
    let Some(bin) = terraform_bin() else { return };
    let Some(moto) = start_moto() else { return };
    let image = moto_image(&moto);
    let mut tf = Tf::new(bin);
    tf.env = vec![("TF_VAR_aws_secret".into(), SECRET.into())];
    let state = tf.dir.join(".predictive/state.db");
    tf.write(&clone_tf(&state, &moto, &image, 20, "spot"));
    tf.ok(&["init", "-input=false", "-no-color"]);

    // Sizing uses the catalog's spot prices (moto's are not real) and only spot is allowed.
    let plan = tf.plan_json();
    let planned = &resource(
        &plan["planned_values"]["root_module"],
        "predictive_clone.web",
    )["values"];
    let alloc = planned["allocation"].as_array().expect("sized at plan");
    assert!(!alloc.is_empty());
    assert!(
        alloc
            .iter()
            .all(|a| a["purchase"] == "spot" && a["cloud"] == "aws" && a["region"] == "us-east-1"),
        "{alloc:?}"
    );
    let count: i64 = alloc.iter().map(|a| a["count"].as_i64().unwrap()).sum();

    tf.apply_plan();
    let st = tf.state_json();
    let applied = &resource(&st["values"]["root_module"], "predictive_clone.web")["values"];
    assert!(
        applied["allocation"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["purchase"] == "spot"),
        "the state's allocation says spot: {applied}"
    );
    let ids = instance_ids(applied);
    assert_eq!(ids.len() as i64, count);
    assert_eq!(
        live_instances(&moto, "clone-web"),
        ids,
        "the instances in state are the ones running in moto"
    );
    let life = lifecycles(&moto, "clone-web");
    assert!(
        life.len() == ids.len() && life.iter().all(|l| l == "spot"),
        "every instance is InstanceLifecycle spot: {life:?} for {ids:?}"
    );
    assert_eq!(
        tf.plan_exit_code(),
        0,
        "a plan right after apply is empty (spot instances match the spot lines)"
    );

    tf.ok(&["destroy", "-input=false", "-auto-approve", "-no-color"]);
    assert!(
        live_instances(&moto, "clone-web").is_empty(),
        "destroy releases every spot instance"
    );
}

#[test]
fn a_wrong_endpoint_should_fail_with_a_diagnostic_without_the_secret() {
    let Some(bin) = terraform_bin() else { return };
    let mut tf = Tf::new(bin);
    tf.env = vec![("TF_VAR_aws_secret".into(), SECRET.into())];
    let state = tf.dir.join(".predictive/state.db");
    let moto = Moto {
        child: Command::new("true").spawn().unwrap(),
        url: "ftp://127.0.0.1:1".into(),
    };
    tf.write(&main_tf(&state, &moto, "ami-00000000", 20));
    tf.ok(&["init", "-input=false", "-no-color"]);
    let out = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(out.contains("Invalid aws block"), "{out}");
    assert!(out.contains("ftp://127.0.0.1:1"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
}
