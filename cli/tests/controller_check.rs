//! `predictive controller check`: what a valid config will do, and where a bad one is wrong.

use std::process::Command;

fn check(config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_predictive"))
        .args(["controller", "check", "--config"])
        .arg(&path)
        .output()
        .expect("predictive starts")
}

const WORKLOADS: &str = r#"
[[workloads]]
name = "web"
group = "web-asg"
instance_type = "m6i.large"
capacity_per_instance = 2.0
max = 10
metrics = { kind = "push" }

[[workloads]]
name = "cache"
group = "cache-asg"
instance_type = "r6i.large"
resource = "memory"
capacity_per_instance = 16.0
max = 10
metrics = { kind = "push" }
remediation = { policy = "isolate", dry_run = true }
watch = { cpu = { kind = "prometheus", url = "http://127.0.0.1:9090", query = "cpu" }, network = { kind = "prometheus", url = "http://127.0.0.1:9090", query = "net" } }
"#;

#[test]
fn check_should_say_how_long_history_is_kept_which_leaks_are_capped_and_what_is_watched() {
    let out = check(&format!("retention = \"60d\"\n{WORKLOADS}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("history kept 60d, 2 workload(s)"), "{text}");
    assert!(
        text.contains("web (sim group web-asg, m6i.large x 2 cpu, [0, 10]; anomalies: alert-only, leaks alerted, not capped)"),
        "{text}"
    );
    assert!(
        text.contains("anomalies: isolate (dry run), leaks capped, watching cpu and network)"),
        "{text}"
    );
    let out = check(&format!("retention = \"off\"\n{WORKLOADS}"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("history kept for ever"));
}

#[test]
fn a_retention_shorter_than_the_replayed_week_should_be_refused() {
    let out = check(&format!("retention = \"3d\"\n{WORKLOADS}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("field `retention`: `3d` is shorter than 8d"),
        "{err}"
    );
}
