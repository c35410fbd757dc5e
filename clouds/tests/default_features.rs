//! The default build of `predictive-clouds` pulls no cloud SDK and no HTTP client: the sim, the
//! fake, the layers and the conformance suite must stay cheap to build for the controller, the
//! provider and every test. Adapters come only with their cargo features.

use std::process::Command;

#[test]
fn default_features_should_pull_no_cloud_sdk() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "predictive-clouds",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("predictive-clouds"), "{tree}");
    let forbidden = [
        "aws-sdk-",
        "aws-config",
        "azure_",
        "google-cloud-",
        "reqwest",
        "hyper ",
    ];
    for name in forbidden {
        let hits: Vec<&str> = tree.lines().filter(|l| l.starts_with(name)).collect();
        assert!(hits.is_empty(), "default features pull {hits:?}");
    }
}
