//! Shared helpers of the acceptance suites: the terraform binary, a working directory wired to
//! a filesystem mirror holding the built provider, and plan/state JSON lookups.
#![allow(dead_code, unreachable_pub)]

use serde_json::Value as Json;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The provider's registry address.
pub const ADDR: &str = "registry.terraform.io/predictive/predictive";

/// The terraform binary; `None` (skip) locally without it, a panic under `CI`.
pub fn terraform_bin() -> Option<PathBuf> {
    let tools = std::env::var_os("PREDICTIVE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/predictive-tools")
        });
    let tf = tools.join("terraform");
    if tf.is_file() {
        return Some(tf);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but terraform is missing at {}: run scripts/install-test-deps.sh",
        tf.display()
    );
    eprintln!(
        "skipping acceptance: no terraform at {} (run scripts/install-test-deps.sh)",
        tf.display()
    );
    None
}

/// A terraform working directory wired to a filesystem mirror holding the built provider.
pub struct Tf {
    bin: PathBuf,
    /// The working directory.
    pub dir: PathBuf,
    cli_config: PathBuf,
    /// Extra environment of every terraform run.
    pub env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

impl Tf {
    /// A fresh working directory.
    pub fn new(bin: PathBuf) -> Tf {
        let tmp = tempfile::tempdir().unwrap();
        let mirror = tmp.path().join("mirror");
        let version = env!("CARGO_PKG_VERSION");
        let pdir = mirror.join(ADDR).join(version).join("linux_amd64");
        std::fs::create_dir_all(&pdir).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_terraform-provider-predictive"),
            pdir.join(format!("terraform-provider-predictive_v{version}")),
        )
        .unwrap();
        let cli_config = tmp.path().join("terraformrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n    include = [\"{ADDR}\"]\n  }}\n  direct {{\n    exclude = [\"{ADDR}\"]\n  }}\n}}\n",
                mirror.display()
            ),
        )
        .unwrap();
        let dir = tmp.path().join("work");
        std::fs::create_dir_all(&dir).unwrap();
        Tf {
            bin,
            dir,
            cli_config,
            env: Vec::new(),
            _tmp: tmp,
        }
    }

    /// Runs terraform.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(&self.dir)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_INPUT", "0")
            .env_remove("TF_LOG")
            .env_remove("TF_LOG_PATH")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        out
    }

    /// Runs terraform; panics with its output on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "terraform {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs terraform expecting a failure; its output.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "terraform {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Writes `main.tf`.
    pub fn write(&self, main_tf: &str) {
        std::fs::write(self.dir.join("main.tf"), main_tf).unwrap();
    }

    /// Plans to `tfplan` and shows it as JSON.
    pub fn plan_json(&self) -> Json {
        self.ok(&["plan", "-input=false", "-out=tfplan", "-no-color"]);
        serde_json::from_str(&self.ok(&["show", "-json", "tfplan"])).unwrap()
    }

    /// Applies the plan that [`Tf::plan_json`] saved to `tfplan`.
    pub fn apply_plan(&self) -> String {
        self.ok(&[
            "apply",
            "-input=false",
            "-auto-approve",
            "-no-color",
            "tfplan",
        ])
    }

    /// The state as JSON.
    pub fn state_json(&self) -> Json {
        serde_json::from_str(&self.ok(&["show", "-json"])).unwrap()
    }

    /// `terraform plan -detailed-exitcode`: 0 no changes, 2 changes.
    pub fn plan_exit_code(&self) -> i32 {
        let out = self.run(&["plan", "-input=false", "-detailed-exitcode", "-no-color"]);
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 2,
            "plan failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if code == 2 {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        }
        code
    }
}

/// A resource by address in a module of `show -json`.
pub fn resource<'a>(root: &'a Json, address: &str) -> &'a Json {
    root["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["address"] == address))
        .unwrap_or_else(|| panic!("no {address} in {root}"))
}

/// The planned actions of a resource.
pub fn actions(plan: &Json, address: &str) -> Vec<String> {
    let rc = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == address)
        .unwrap();
    rc["change"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The `instance_ids` of a `predictive_clone`'s values, sorted.
pub fn instance_ids(values: &Json) -> Vec<String> {
    let mut ids: Vec<String> = values["instance_ids"]
        .as_array()
        .expect("instance_ids is a list")
        .iter()
        .map(|v| v.as_str().expect("an instance id").to_string())
        .collect();
    ids.sort();
    ids
}

/// Asserts that `needle` (a secret, called `what` in the failure) appears in none of `files`
/// that exist.
pub fn assert_absent(files: &[PathBuf], needle: &str, what: &str) {
    for f in files {
        if let Ok(bytes) = std::fs::read(f) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(needle),
                "{what} leaked into {}",
                f.display()
            );
        }
    }
}
