//! `predictive-engine` stays pure: no async runtime, RPC, SQL or cloud SDK in its dependency tree.

use std::process::Command;

#[test]
fn engine_dependency_tree_has_no_io_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "predictive-engine",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("utf-8 tree");
    let forbidden = [
        "tokio",
        "tonic",
        "hyper",
        "reqwest",
        "rusqlite",
        "sqlx",
        "postgres",
        "aws-sdk",
        "aws-config",
        "azure_",
        "google-cloud",
        "axum",
        "mio",
    ];
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        for bad in forbidden {
            assert!(
                !name.starts_with(bad),
                "predictive-engine depends on `{name}`, an IO crate"
            );
        }
    }
    assert!(
        tree.contains("predictive-engine"),
        "tree lists the engine itself:\n{tree}"
    );
}
