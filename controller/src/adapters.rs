//! The daemon's cloud accounts: the `[clouds.aws]`, `[clouds.azure]` and `[clouds.gcp]` sections
//! of the config file, built into [`DynProvider`]s wrapped in the production layer stack
//! (timeout, rate limit, metrics, retry, tracing).
//!
//! The sections are read by [`load`], which also checks the rest of the file with
//! [`crate::config`]; the lines of the `clouds` sections are blanked before that check, so line
//! numbers in its errors stay those of the file.
//!
//! Credentials come from each SDK's own chain (environment, profile, workload identity, metadata
//! server) unless a section names environment variables holding them; they are never logged,
//! and errors name the variable, never its value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use predictive_clouds::layer::metrics::MetricsRegistry;
use predictive_clouds::layer::Stack;
use predictive_clouds::CloudProvider;
use predictive_clouds::DynProvider;

use crate::config::{ConfigParams, ValidConfig, ValidWorkload};

/// Errors of reading the `clouds` sections and building the adapters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    ReadFailed {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The `clouds` sections are not valid TOML for their schema.
    #[error("cannot parse the `clouds` sections of {path} as TOML")]
    TomlInvalid {
        /// The file.
        path: PathBuf,
        /// Says the line, column and key.
        #[source]
        source: toml::de::Error,
    },
    /// The `clouds` sections are not valid YAML for their schema.
    #[error("cannot parse the `clouds` sections of {path} as YAML")]
    YamlInvalid {
        /// The file.
        path: PathBuf,
        /// Says the line, column and key.
        #[source]
        source: serde_yaml::Error,
    },
    /// The rest of the file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// A field of a `clouds` section is wrong.
    #[error("{file}: field `clouds.{cloud}.{field}`: {reason}")]
    FieldInvalid {
        /// The file.
        file: String,
        /// The section (`aws`, `azure`, `gcp`).
        cloud: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A workload cannot use its cloud.
    #[error("workload `{workload}`: field `{field}`: {reason}")]
    WorkloadCloud {
        /// The workload.
        workload: String,
        /// The field at fault (`cloud`, `region`, `price_per_hour`).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The adapter could not be built (credentials or client set-up).
    #[error("cloud `{cloud}`: the adapter cannot be set up")]
    Build {
        /// The cloud.
        cloud: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The EC2 / Auto Scaling account.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// Region (default: the region of the `aws` workloads, which must agree).
    pub region: Option<String>,
    /// Endpoint override for EC2 and Auto Scaling (a local emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Environment variable holding the access key id (default: the SDK's credential chain).
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the secret access key (with `access_key_id_env`).
    pub secret_access_key_env: Option<String>,
    /// Timeout of one HTTP attempt, e.g. `30s`.
    pub attempt_timeout: Option<String>,
}

/// The Azure account (VM scale sets).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AzureSection {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group of the scale sets.
    pub resource_group: String,
    /// Location of launches, e.g. `westeurope`.
    pub location: String,
    /// ARM endpoint override (a local fake, a sovereign cloud).
    pub endpoint: Option<String>,
    /// Environment variable holding a bearer token (default: the Azure credential chain).
    pub token_env: Option<String>,
    /// Largest capacity reported for scale sets (default 1000).
    pub group_max: Option<u32>,
}

/// The GCP project (managed instance groups).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GcpSection {
    /// Project id.
    pub project: String,
    /// Zone of zonal groups, e.g. `europe-west1-b`.
    pub zone: String,
    /// Compute Engine endpoint override (a local fake).
    pub endpoint: Option<String>,
    /// `default` (Application Default Credentials) or `anonymous` (local fakes).
    #[serde(default)]
    pub credentials: Option<String>,
    /// Largest target size reported for groups (default 1000).
    pub group_max: Option<u32>,
}

/// The `clouds` sections.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudSections {
    /// `[clouds.aws]`.
    pub aws: Option<AwsSection>,
    /// `[clouds.azure]`.
    pub azure: Option<AzureSection>,
    /// `[clouds.gcp]`.
    pub gcp: Option<GcpSection>,
}

#[derive(Debug, Default, Deserialize)]
struct Outer {
    #[serde(default)]
    clouds: CloudSections,
}

/// A checked config together with its cloud accounts.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The config the loop runs.
    pub config: ValidConfig,
    /// The cloud accounts.
    pub clouds: CloudSections,
    /// The file's name, for errors.
    pub file: String,
}

/// Reads a config file with its `clouds` sections; `.yaml`/`.yml` is YAML, anything else TOML.
///
/// # Errors
/// [`Error`] naming the file, section, workload and field at fault.
pub fn load(path: &Path) -> Result<DaemonConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFailed { path: path.into(), source })?;
    let is_yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    let file = path.display().to_string();
    let (outer, params): (Outer, ConfigParams) = if is_yaml {
        let outer = serde_yaml::from_str::<Option<Outer>>(&text)
            .map_err(|source| Error::YamlInvalid { path: path.into(), source })?
            .unwrap_or_default();
        let rest = blank_section(&text, true);
        let params = serde_yaml::from_str(&rest).map_err(|source| crate::config::Error::YamlInvalid { path: path.into(), source })?;
        (outer, params)
    } else {
        let outer = toml::from_str::<Outer>(&text).map_err(|source| Error::TomlInvalid { path: path.into(), source })?;
        let rest = blank_section(&text, false);
        let params = toml::from_str(&rest).map_err(|source| crate::config::Error::TomlInvalid { path: path.into(), source })?;
        (outer, params)
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let config = params.check(&file, base)?;
    let clouds = outer.clouds;
    check_sections(&file, &clouds)?;
    Ok(DaemonConfig { config, clouds, file })
}

/// Replaces the lines of the top-level `clouds` section(s) by empty lines (line numbers stay).
fn blank_section(text: &str, yaml: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if yaml {
            let top = !line.starts_with([' ', '\t', '#', '\n', '\r']) && !t.is_empty();
            if top && !t.starts_with('-') {
                inside = t.starts_with("clouds:") || t.starts_with("\"clouds\":");
            }
        } else if t.starts_with('[') {
            let head = t.trim_start_matches('[').trim_start();
            inside = head.starts_with("clouds.") || head.starts_with("clouds]") || head.starts_with("clouds ");
        } else if !inside && (t.starts_with("clouds ") || t.starts_with("clouds=")) {
            // An inline `clouds = {...}` before any table header: one line.
            out.push_str(if line.ends_with('\n') { "\n" } else { "" });
            continue;
        }
        if inside {
            out.push_str(if line.ends_with('\n') { "\n" } else { "" });
        } else {
            out.push_str(line);
        }
    }
    out
}

fn check_sections(file: &str, c: &CloudSections) -> Result<()> {
    let bad = |cloud: &'static str, field: &'static str, reason: String| Error::FieldInvalid {
        file: file.to_string(),
        cloud,
        field,
        reason,
    };
    let url = |cloud, field, u: &Option<String>| match u {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => Err(bad(cloud, field, format!("`{u}` is not an http(s) URL"))),
        _ => Ok(()),
    };
    if let Some(a) = &c.aws {
        url("aws", "endpoint_url", &a.endpoint_url)?;
        if a.access_key_id_env.is_some() != a.secret_access_key_env.is_some() {
            return Err(bad(
                "aws",
                "secret_access_key_env",
                "access_key_id_env and secret_access_key_env go together".into(),
            ));
        }
        if let Some(t) = &a.attempt_timeout {
            crate::clock::parse_duration(t).map_err(|r| bad("aws", "attempt_timeout", r))?;
        }
    }
    if let Some(a) = &c.azure {
        for (field, v) in [
            ("subscription_id", &a.subscription_id),
            ("resource_group", &a.resource_group),
            ("location", &a.location),
        ] {
            if v.trim().is_empty() {
                return Err(bad("azure", field, "must not be empty".into()));
            }
        }
        url("azure", "endpoint", &a.endpoint)?;
    }
    if let Some(g) = &c.gcp {
        for (field, v) in [("project", &g.project), ("zone", &g.zone)] {
            if v.trim().is_empty() {
                return Err(bad("gcp", field, "must not be empty".into()));
            }
        }
        url("gcp", "endpoint", &g.endpoint)?;
        if let Some(cr) = &g.credentials {
            if !["default", "anonymous"].contains(&cr.as_str()) {
                return Err(bad("gcp", "credentials", format!("`{cr}` is not one of default, anonymous")));
            }
        }
    }
    Ok(())
}

/// Whether this binary was built with the adapter of `cloud` (`sim` and `fake` always are).
pub fn built(cloud: &str) -> bool {
    match cloud {
        "sim" | "fake" => true,
        "aws" => cfg!(feature = "aws"),
        "azure" => cfg!(feature = "azure"),
        "gcp" => cfg!(feature = "gcp"),
        _ => false,
    }
}

/// The adapter clouds the workloads use (`aws`, `azure`, `gcp`), each once.
pub fn used(cfg: &ValidConfig) -> Vec<&'static str> {
    ["aws", "azure", "gcp"]
        .into_iter()
        .filter(|c| cfg.workloads.iter().any(|w| w.params.cloud == *c))
        .collect()
}

/// Checks that `w` can run on its cloud as configured: the adapter is built, the cloud's section
/// is there when it needs one, the region agrees and a price is given (the compute APIs publish
/// none).
///
/// # Errors
/// [`Error::WorkloadCloud`] naming the workload and field.
pub fn check_workload(w: &ValidWorkload, clouds: &CloudSections) -> Result<()> {
    let p = &w.params;
    let bad = |field: &'static str, reason: String| Error::WorkloadCloud {
        workload: p.name.clone(),
        field,
        reason,
    };
    let cloud = p.cloud.as_str();
    if !matches!(cloud, "aws" | "azure" | "gcp") {
        return Ok(());
    }
    if !built(cloud) {
        return Err(bad(
            "cloud",
            format!("`{cloud}` support is not built into this binary (build predictive with `--features {cloud}`, or `--all-features`)"),
        ));
    }
    match cloud {
        "azure" if clouds.azure.is_none() => {
            return Err(bad(
                "cloud",
                "`azure` needs a [clouds.azure] section (subscription_id, resource_group, location)".into(),
            ))
        }
        "gcp" if clouds.gcp.is_none() => {
            return Err(bad("cloud", "`gcp` needs a [clouds.gcp] section (project, zone)".into()))
        }
        "aws" => {
            if let Some(r) = clouds.aws.as_ref().and_then(|a| a.region.as_ref()) {
                if *r != p.region {
                    return Err(bad(
                        "region",
                        format!("`{}` differs from clouds.aws.region `{r}` (one AWS region per controller)", p.region),
                    ));
                }
            }
        }
        _ => {}
    }
    if p.price_per_hour.is_none() {
        return Err(bad(
            "price_per_hour",
            format!("must be set for `{cloud}` workloads: the compute API publishes no prices"),
        ));
    }
    Ok(())
}

#[cfg(any(feature = "aws", feature = "azure"))]
fn env_secret(cloud: &'static str, field: &'static str, var: &str, file: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::FieldInvalid {
            file: file.to_string(),
            cloud,
            field,
            reason: format!("environment variable `{var}` is unset or empty"),
        }),
    }
}

/// Builds the adapter named `cloud` from its section, wrapped in `stack`. `region` is the AWS
/// region when the section does not set one.
///
/// No call is made; a wrong endpoint or credential shows on the first call (see [`probe`]).
///
/// # Errors
/// [`Error::WorkloadCloud`] when the adapter is not built, [`Error::FieldInvalid`] for a missing
/// credential variable, [`Error::Build`] when the SDK client cannot be set up.
#[allow(unused_variables)]
pub async fn build(cloud: &'static str, cfg: &DaemonConfig, region: &str, stack: &Stack) -> Result<DynProvider> {
    let file = cfg.file.as_str();
    let inner: DynProvider = match cloud {
        #[cfg(feature = "aws")]
        "aws" => {
            use predictive_clouds::aws::{AwsCredentials, AwsParams, AwsProvider};
            let s = cfg.clouds.aws.clone().unwrap_or_default();
            let mut p = AwsParams::new(s.region.clone().unwrap_or_else(|| region.to_string()));
            p.endpoint_url = s.endpoint_url.clone();
            if let (Some(k), Some(sk)) = (&s.access_key_id_env, &s.secret_access_key_env) {
                p.credentials = AwsCredentials::Static {
                    access_key_id: env_secret("aws", "access_key_id_env", k, file)?,
                    secret_access_key: env_secret("aws", "secret_access_key_env", sk, file)?,
                };
            }
            if let Some(t) = &s.attempt_timeout {
                let secs = crate::clock::parse_duration(t).unwrap_or(30).max(1);
                p.attempt_timeout = Duration::from_secs(secs as u64);
            }
            let v = p.check().map_err(|e| Error::Build { cloud: "aws", source: Box::new(e) })?;
            std::sync::Arc::new(AwsProvider::connect(v).await)
        }
        #[cfg(feature = "azure")]
        "azure" => {
            use predictive_clouds::azure::{AzureCredentials, AzureParams, AzureProvider};
            let s = cfg.clouds.azure.clone().unwrap_or_default();
            let mut p = AzureParams::new(&s.subscription_id, &s.resource_group, &s.location);
            p.endpoint = s.endpoint.clone();
            if let Some(var) = &s.token_env {
                p.credentials = AzureCredentials::FixedToken(env_secret("azure", "token_env", var, file)?);
            }
            if let Some(m) = s.group_max {
                p.group_max = m;
            }
            let v = p.check().map_err(|e| Error::Build { cloud: "azure", source: Box::new(e) })?;
            std::sync::Arc::new(AzureProvider::new(v).map_err(|e| Error::Build { cloud: "azure", source: Box::new(e) })?)
        }
        #[cfg(feature = "gcp")]
        "gcp" => {
            use predictive_clouds::gcp::{GcpCredentials, GcpParams, GcpProvider};
            let s = cfg.clouds.gcp.clone().unwrap_or_default();
            let mut p = GcpParams::new(&s.project, &s.zone);
            p.endpoint = s.endpoint.clone();
            if s.credentials.as_deref() == Some("anonymous") {
                p.credentials = GcpCredentials::Anonymous;
            }
            if let Some(m) = s.group_max {
                p.group_max = m;
            }
            let v = p.check().map_err(|e| Error::Build { cloud: "gcp", source: Box::new(e) })?;
            std::sync::Arc::new(GcpProvider::new(v).await.map_err(|e| Error::Build { cloud: "gcp", source: Box::new(e) })?)
        }
        other => {
            return Err(Error::WorkloadCloud {
                workload: "*".into(),
                field: "cloud",
                reason: format!("`{other}` support is not built into this binary (build predictive with `--features {other}`)"),
            })
        }
    };
    Ok(stack.apply(inner))
}

/// The production layers (30 s timeout, retries with backoff, rate limit, call metrics,
/// tracing) recording into `registry`.
pub fn production_stack(registry: MetricsRegistry) -> Stack {
    Stack::production(registry, u64::from(std::process::id()))
}

/// Asks the cloud for the workload's group once, bounded by `timeout`, so that a wrong
/// endpoint, credential or group name is reported at start-up, naming the workload.
///
/// # Errors
/// A message naming the workload, the cloud, its endpoint and the group (never a credential).
pub async fn probe(w: &ValidWorkload, provider: &DynProvider, endpoint: Option<&str>, timeout: Duration) -> Result<(), String> {
    let p = &w.params;
    let at = endpoint.map(|e| format!(" at {e}")).unwrap_or_default();
    let gid = predictive_clouds::GroupId::new(p.group.clone());
    let call = provider.describe_group(&gid);
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.is_not_found() => Err(format!(
            "workload `{}`: field `group`: cloud `{}`{at} has no group `{}`",
            p.name, p.cloud, p.group
        )),
        Ok(Err(e)) => Err(format!(
            "workload `{}`: field `cloud`: cloud `{}`{at} is unreachable or refused the call: {}",
            p.name,
            p.cloud,
            crate::run::chain(&e)
        )),
        Err(_) => Err(format!(
            "workload `{}`: field `cloud`: cloud `{}`{at} is unreachable (no answer within {timeout:?})",
            p.name, p.cloud
        )),
    }
}

/// The endpoint override of `cloud`, for messages.
pub fn endpoint<'a>(cloud: &str, c: &'a CloudSections) -> Option<&'a str> {
    match cloud {
        "aws" => c.aws.as_ref().and_then(|s| s.endpoint_url.as_deref()),
        "azure" => c.azure.as_ref().and_then(|s| s.endpoint.as_deref()),
        "gcp" => c.gcp.as_ref().and_then(|s| s.endpoint.as_deref()),
        _ => None,
    }
}

/// The AWS region the adapter uses: the section's, else the first `aws` workload's.
pub fn aws_region(cfg: &DaemonConfig) -> String {
    cfg.clouds
        .aws
        .as_ref()
        .and_then(|a| a.region.clone())
        .or_else(|| {
            cfg.config
                .workloads
                .iter()
                .find(|w| w.params.cloud == "aws")
                .map(|w| w.params.region.clone())
        })
        .unwrap_or_else(|| "us-east-1".into())
}

/// Builds every adapter the workloads use. A cloud that cannot be built is left out and its
/// workloads are returned with the error, so that the daemon serves the others.
pub async fn build_all(cfg: &DaemonConfig, stack: &Stack) -> (BTreeMap<String, DynProvider>, Vec<(String, String)>) {
    let mut clouds = BTreeMap::new();
    let mut failed = Vec::new();
    let region = aws_region(cfg);
    for cloud in used(&cfg.config) {
        if !built(cloud) {
            continue; // reported per workload by check_workload
        }
        match build(cloud, cfg, &region, stack).await {
            Ok(p) => {
                clouds.insert(cloud.to_string(), p);
            }
            Err(e) => {
                let text = crate::run::chain(&e);
                for w in cfg.config.workloads.iter().filter(|w| w.params.cloud == cloud) {
                    failed.push((w.name().to_string(), text.clone()));
                }
            }
        }
    }
    (clouds, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
interval = "5m"

[clouds.aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:5000"

[clouds.azure]
subscription_id = "sub"
resource_group = "rg"
location = "westeurope"

[[workloads]]
name = "web"
cloud = "aws"
group = "web-asg"
instance_type = "m6i.large"
capacity_per_instance = 2.0
price_per_hour = 0.096
max = 10
metrics = { kind = "push" }
"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn clouds_sections_load_beside_the_config() {
        let d = tempfile::tempdir().unwrap();
        let c = load(&write(d.path(), "c.toml", TOML)).unwrap();
        assert_eq!(c.clouds.aws.as_ref().unwrap().endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.clouds.azure.as_ref().unwrap().resource_group, "rg");
        assert_eq!(c.config.workloads[0].params.cloud, "aws");
        assert_eq!(used(&c.config), vec!["aws"]);
    }

    #[test]
    fn yaml_clouds_sections_load_too() {
        let d = tempfile::tempdir().unwrap();
        let y = "interval: 1m\nclouds:\n  gcp:\n    project: p\n    zone: europe-west1-b\n    credentials: anonymous\nworkloads:\n- name: api\n  cloud: gcp\n  group: mig\n  instance_type: e2-standard-2\n  capacity_per_instance: 2\n  price_per_hour: 0.07\n  max: 3\n  metrics: {kind: push}\n";
        let c = load(&write(d.path(), "c.yaml", y)).unwrap();
        assert_eq!(c.clouds.gcp.as_ref().unwrap().zone, "europe-west1-b");
        assert_eq!(c.config.workloads[0].name(), "api");
    }

    #[test]
    fn errors_name_the_section_field_and_line() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("endpoint_url = \"http://127.0.0.1:5000\"", "endpoint_url = \"ftp://x\"", "field `clouds.aws.endpoint_url`"),
            ("region = \"us-east-1\"", "region = \"us-east-1\"\nbogus = 1", "line 6"),
            ("resource_group = \"rg\"", "resource_group = \"\"", "field `clouds.azure.resource_group`"),
            ("[clouds.azure]", "[clouds.oracle]", "unknown field `oracle`"),
            // Errors of the rest of the file keep their line numbers.
            ("max = 10", "max = \"ten\"", "line 20"),
        ];
        for (from, to, want) in cases {
            let text = TOML.replace(from, to);
            let err = load(&write(d.path(), "c.toml", &text)).unwrap_err();
            let chain = crate::run::chain(&err);
            assert!(chain.contains(want), "{chain} should contain {want}");
        }
    }

    #[test]
    fn workloads_get_errors_naming_their_field() {
        let d = tempfile::tempdir().unwrap();
        let c = load(&write(d.path(), "c.toml", TOML)).unwrap();
        let mut w = c.config.workloads[0].clone();
        let r = check_workload(&w, &c.clouds);
        if built("aws") {
            r.unwrap();
            w.params.region = "eu-west-1".into();
            let e = check_workload(&w, &c.clouds).unwrap_err().to_string();
            assert!(e.contains("workload `web`: field `region`"), "{e}");
            w.params.region = "us-east-1".into();
            w.params.price_per_hour = None;
            let e = check_workload(&w, &c.clouds).unwrap_err().to_string();
            assert!(e.contains("workload `web`: field `price_per_hour`"), "{e}");
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("workload `web`: field `cloud`: `aws` support is not built"), "{e}");
        }
        let mut g = w.clone();
        g.params.cloud = "gcp".into();
        g.params.price_per_hour = Some(1.0);
        let e = check_workload(&g, &c.clouds).unwrap_err().to_string();
        assert!(e.contains("workload `web`: field `cloud`"), "{e}");
    }

    #[test]
    fn blanking_keeps_line_numbers_and_other_tables() {
        let t = "a = 1\n[clouds.aws]\nregion = \"x\"\n[[workloads]]\nname = \"w\"\n";
        assert_eq!(blank_section(t, false), "a = 1\n\n\n[[workloads]]\nname = \"w\"\n");
        let y = "a: 1\nclouds:\n  aws:\n    region: x\nworkloads:\n- name: w\n";
        assert_eq!(blank_section(y, true), "a: 1\n\n\n\nworkloads:\n- name: w\n");
    }
}
