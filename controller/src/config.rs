//! The controller's configuration file (TOML or YAML), checked into a [`ValidConfig`].
//!
//! Every problem is reported with the file, the workload and the field it concerns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock::parse_duration;

/// Errors of reading and checking a configuration.
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
    /// The file is not valid TOML for this schema.
    #[error("cannot parse config file {path} as TOML")]
    TomlInvalid {
        /// The file.
        path: PathBuf,
        /// Says the line, column and key.
        #[source]
        source: toml::de::Error,
    },
    /// The file is not valid YAML for this schema.
    #[error("cannot parse config file {path} as YAML")]
    YamlInvalid {
        /// The file.
        path: PathBuf,
        /// Says the line, column and key.
        #[source]
        source: serde_yaml::Error,
    },
    /// A field of a workload is wrong.
    #[error("{file}: workload `{workload}`: field `{field}`: {reason}")]
    WorkloadFieldInvalid {
        /// The file (or `<inline>`).
        file: String,
        /// The workload's name (or its index when it has no name).
        workload: String,
        /// The field's path inside the workload.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A top-level field is wrong.
    #[error("{file}: field `{field}`: {reason}")]
    FieldInvalid {
        /// The file (or `<inline>`).
        file: String,
        /// The field's path.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the loop does with its decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Apply plans to the cloud.
    #[default]
    Act,
    /// Decide and record, but never call the cloud's mutating methods.
    DryRun,
    /// Observe and forecast only: no plans.
    ForecastOnly,
}

impl Mode {
    /// The mode's name as written in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Act => "act",
            Mode::DryRun => "dry-run",
            Mode::ForecastOnly => "forecast-only",
        }
    }
}

/// Where state lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StoreParams {
    /// One SQLite file (WAL); the default.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// PostgreSQL, for several replicas with leader election.
    Postgres {
        /// A libpq-style connection string; `${VAR}` is read from the environment.
        url: String,
    },
}

/// Where a workload's usage comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MetricsParams {
    /// Replays a trace file (NAB canonical CSV `timestamp,value`), mapped onto the clock.
    Replay {
        /// The trace file, relative to the config file.
        path: PathBuf,
    },
    /// Prometheus' HTTP `query_range`.
    Prometheus {
        /// The server, e.g. `http://127.0.0.1:9090`.
        url: String,
        /// A PromQL expression whose value is the workload's usage.
        query: String,
    },
    /// Samples pushed through the API.
    Push,
}

/// One managed workload, as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadParams {
    /// Unique name.
    pub name: String,
    /// `sim` (the in-process cloud), `fake`, `aws`, `azure` or `gcp`.
    #[serde(default = "default_cloud")]
    pub cloud: String,
    /// Region of the group.
    #[serde(default = "default_region")]
    pub region: String,
    /// The group in the cloud (Auto Scaling group, scale set, managed instance group, sim group).
    pub group: String,
    /// Instance type launched for this workload.
    pub instance_type: String,
    /// The resource that usage measures: cpu, memory, network, disk or gpu.
    #[serde(default = "default_resource")]
    pub resource: String,
    /// Units of `resource` one instance serves (e.g. 2 cores).
    pub capacity_per_instance: f64,
    /// Fewest instances.
    #[serde(default)]
    pub min: u32,
    /// Most instances.
    pub max: u32,
    /// Hourly budget in USD that the group's cost never exceeds.
    pub budget_per_hour: Option<f64>,
    /// Hourly price of one instance in USD (the catalog's price when absent).
    pub price_per_hour: Option<f64>,
    /// The forecast quantile capacity is planned for.
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    /// Time from a launch to capacity serving, e.g. `10m`.
    #[serde(default = "default_lead")]
    pub lead: String,
    /// Share of observations the forecast's interval must cover before it is trusted.
    #[serde(default = "default_accuracy")]
    pub accuracy_objective: f64,
    /// Where usage comes from.
    pub metrics: MetricsParams,
    /// Other metrics of the workload watched for anomalies beside `resource` (not planned on),
    /// by resource: `cpu`, `memory` or `network`, from a `replay` or `prometheus` source. CPU and
    /// network surging together are malware-like; a memory climb is a leak.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub watch: BTreeMap<String, MetricsParams>,
    /// Shadow pool of ready (stopped) instances kept ahead of predicted peaks (off by default).
    #[serde(default)]
    pub shadow: ShadowSettings,
    /// What the loop does about usage anomalies (alert only by default).
    #[serde(default)]
    pub remediation: RemediationSettings,
}

/// A workload's shadow pool, as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowSettings {
    /// Most ready instances kept (0: no shadow pool).
    pub max_units: u32,
    /// Time after which an idle ready instance's retention score has halved, e.g. `1h`.
    pub half_life: String,
    /// Retention score below which a ready instance is terminated, in (0, 1).
    pub release_threshold: f64,
    /// How far ahead predicted peaks are prepared for, e.g. `1h`.
    pub horizon: String,
    /// Hibernate ready instances where the cloud allows it (else plain stop).
    pub hibernate: bool,
}

impl Default for ShadowSettings {
    fn default() -> Self {
        Self {
            max_units: 0,
            half_life: "1h".into(),
            release_threshold: 0.25,
            horizon: "1h".into(),
            hibernate: false,
        }
    }
}

/// A workload's anomaly remediation, as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationSettings {
    /// `alert-only` (default), `isolate`, `stop` or `terminate`.
    pub policy: String,
    /// Decide and audit, but never act on the cloud.
    pub dry_run: bool,
    /// Cap the allocation when a leak is flagged, whatever the policy. Absent: on for the
    /// resources a leak fills (`memory`, `disk`), off for those whose steady climb is more
    /// often demand (`cpu`, `network`, `gpu`), which a leak verdict then only alerts about.
    pub cap_leaks: Option<bool>,
}

impl RemediationSettings {
    /// Whether a flagged leak caps the allocation of a workload measuring `resource`.
    pub fn caps_leaks(&self, resource: &str) -> bool {
        self.cap_leaks
            .unwrap_or(matches!(resource, "memory" | "disk"))
    }
}

impl Default for RemediationSettings {
    fn default() -> Self {
        Self {
            policy: "alert-only".into(),
            dry_run: false,
            cap_leaks: None,
        }
    }
}

fn default_cloud() -> String {
    "sim".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_resource() -> String {
    "cpu".into()
}
fn default_quantile() -> f64 {
    0.95
}
fn default_lead() -> String {
    "10m".into()
}
fn default_accuracy() -> f64 {
    0.8
}
fn default_interval() -> String {
    "5m".into()
}
fn default_concurrency() -> usize {
    8
}

/// The API server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiParams {
    /// gRPC listen address.
    pub listen: String,
    /// Environment variable holding the bearer token clients must present.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// TLS (and mTLS with `client_ca`) for the API; plaintext when absent.
    #[serde(default)]
    pub tls: Option<ApiTlsParams>,
}

/// TLS of the API server; paths are relative to the config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsParams {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// CA (PEM) that client certificates must chain to; when set, clients without one are refused.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn default_token_env() -> String {
    "PREDICTIVE_TOKEN".into()
}

/// The whole file, as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigParams {
    /// Time between ticks, e.g. `5m`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// `act`, `dry-run` or `forecast-only`.
    #[serde(default)]
    pub mode: Mode,
    /// How many workloads are worked on at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Identity of this controller in ownership tags and leases.
    #[serde(default = "default_owner")]
    pub owner: String,
    /// How long each workload's samples, forecasts and decisions are kept in the store, e.g.
    /// `35d` (the default); `off` keeps them for ever. At least 8 days: a restart rebuilds the
    /// models from the last week. The audit log is kept whatever this says.
    #[serde(default = "default_retention")]
    pub retention: String,
    /// Where state lives (SQLite `predictive.db` beside the config when absent).
    pub store: Option<StoreParams>,
    /// The gRPC API (off when absent).
    pub api: Option<ApiParams>,
    /// Address of the Prometheus `/metrics` endpoint (off when absent).
    pub metrics_listen: Option<String>,
    /// The managed workloads.
    #[serde(default)]
    pub workloads: Vec<WorkloadParams>,
    /// The cloud accounts: `[clouds.aws]`, `[clouds.azure]`, `[clouds.gcp]`, each with optional
    /// per-region accounts (`[clouds.aws.regions.eu-west-1]`). Absent: no cloud account (the
    /// `sim` and `fake` clouds need none).
    #[serde(default)]
    pub clouds: crate::adapters::CloudSections,
}

fn default_owner() -> String {
    "predictive".into()
}

fn default_retention() -> String {
    "35d".into()
}

/// The shortest retention: the week a restart replays, and a day to spare.
pub const MIN_RETENTION_SECS: i64 = 8 * 86_400;

/// A checked workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValidWorkload {
    /// The workload as written (kept for the store and the API).
    pub params: WorkloadParams,
    /// `lead` in seconds.
    pub lead_secs: i64,
}

impl ValidWorkload {
    /// The workload's name.
    pub fn name(&self) -> &str {
        &self.params.name
    }
}

/// A checked configuration: only this reaches the loop.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// Seconds between ticks.
    pub interval_secs: i64,
    /// What the loop does with decisions.
    pub mode: Mode,
    /// Workloads worked on at once (≥ 1).
    pub concurrency: usize,
    /// Identity in tags and leases.
    pub owner: String,
    /// Seconds each workload's history is kept (`None`: for ever).
    pub retention_secs: Option<i64>,
    /// The store.
    pub store: StoreParams,
    /// The API, when on.
    pub api: Option<ApiParams>,
    /// The `/metrics` address, when on.
    pub metrics_listen: Option<String>,
    /// The workloads, names unique.
    pub workloads: Vec<ValidWorkload>,
    /// The cloud accounts, checked field by field (endpoints are URLs, credential variables
    /// come in pairs, durations parse, required names are not empty).
    pub clouds: crate::adapters::CloudSections,
}

/// Reads and checks a config file; `.yaml`/`.yml` is YAML, anything else TOML.
///
/// # Errors
/// [`Error`] naming the file, workload and field at fault.
pub fn load(path: &Path) -> Result<ValidConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFailed {
        path: path.into(),
        source,
    })?;
    let is_yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let params: ConfigParams = if is_yaml {
        serde_yaml::from_str(&text).map_err(|source| Error::YamlInvalid {
            path: path.into(),
            source,
        })?
    } else {
        toml::from_str(&text).map_err(|source| Error::TomlInvalid {
            path: path.into(),
            source,
        })?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    params.check(&path.display().to_string(), base)
}

/// Checks one workload on its own (used by the API too).
///
/// # Errors
/// [`Error::WorkloadFieldInvalid`] naming the field.
pub fn check_workload(file: &str, w: &WorkloadParams, base: &Path) -> Result<ValidWorkload> {
    let name = if w.name.trim().is_empty() {
        "<unnamed>".to_string()
    } else {
        w.name.clone()
    };
    let bad = |field: &str, reason: String| Error::WorkloadFieldInvalid {
        file: file.to_string(),
        workload: name.clone(),
        field: field.to_string(),
        reason,
    };
    if w.name.trim().is_empty() {
        return Err(bad("name", "must not be empty".into()));
    }
    if !w
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(bad(
            "name",
            "may hold only letters, digits, `-`, `_` and `.`".into(),
        ));
    }
    if !["sim", "fake", "aws", "azure", "gcp"].contains(&w.cloud.as_str()) {
        return Err(bad(
            "cloud",
            format!("`{}` is not one of sim, fake, aws, azure, gcp", w.cloud),
        ));
    }
    if w.group.trim().is_empty() {
        return Err(bad("group", "must not be empty".into()));
    }
    if w.instance_type.trim().is_empty() {
        return Err(bad("instance_type", "must not be empty".into()));
    }
    if !["cpu", "memory", "network", "disk", "gpu"].contains(&w.resource.as_str()) {
        return Err(bad(
            "resource",
            format!(
                "`{}` is not one of cpu, memory, network, disk, gpu",
                w.resource
            ),
        ));
    }
    if !(w.capacity_per_instance.is_finite() && w.capacity_per_instance > 0.0) {
        return Err(bad(
            "capacity_per_instance",
            format!("must be a positive number, got {}", w.capacity_per_instance),
        ));
    }
    if w.max == 0 {
        return Err(bad("max", "must be at least 1".into()));
    }
    if w.min > w.max {
        return Err(bad("min", format!("{} is above max ({})", w.min, w.max)));
    }
    if let Some(b) = w.budget_per_hour {
        if !(b.is_finite() && b >= 0.0) {
            return Err(bad(
                "budget_per_hour",
                format!("must be a non-negative number, got {b}"),
            ));
        }
    }
    if let Some(p) = w.price_per_hour {
        if !(p.is_finite() && p > 0.0) {
            return Err(bad(
                "price_per_hour",
                format!("must be a positive number, got {p}"),
            ));
        }
    }
    if !(w.quantile > 0.5 && w.quantile < 1.0) {
        return Err(bad(
            "quantile",
            format!("must be in (0.5, 1), got {}", w.quantile),
        ));
    }
    if !(w.accuracy_objective > 0.0 && w.accuracy_objective <= 1.0) {
        return Err(bad(
            "accuracy_objective",
            format!("must be in (0, 1], got {}", w.accuracy_objective),
        ));
    }
    let lead_secs = parse_duration(&w.lead).map_err(|r| bad("lead", r))?;
    for (field, v) in [
        ("shadow.half_life", &w.shadow.half_life),
        ("shadow.horizon", &w.shadow.horizon),
    ] {
        if parse_duration(v).map_err(|r| bad(field, r))? <= 0 {
            return Err(bad(field, "must be positive".into()));
        }
    }
    if !(w.shadow.release_threshold > 0.0 && w.shadow.release_threshold < 1.0) {
        return Err(bad(
            "shadow.release_threshold",
            format!("must be in (0, 1), got {}", w.shadow.release_threshold),
        ));
    }
    if w.shadow.max_units > w.max {
        return Err(bad(
            "shadow.max_units",
            format!("{} is above max ({})", w.shadow.max_units, w.max),
        ));
    }
    w.remediation
        .policy
        .parse::<predictive_engine::anomaly::RemediationPolicy>()
        .map_err(|r| bad("remediation.policy", r))?;
    let mut params = w.clone();
    check_metrics("metrics", &mut params.metrics, base).map_err(|(f, r)| bad(&f, r))?;
    for (resource, m) in &mut params.watch {
        let field = format!("watch.{resource}");
        if !WATCHABLE.contains(&resource.as_str()) {
            return Err(bad(
                &field,
                format!("`{resource}` is not one of cpu, memory, network"),
            ));
        }
        if *resource == params.resource {
            return Err(bad(
                &field,
                format!("`{resource}` is the workload's own resource, read from `metrics`"),
            ));
        }
        if *m == MetricsParams::Push {
            return Err(bad(
                &field,
                "pushed samples are the workload's own resource; watch a `replay` or `prometheus` source".into(),
            ));
        }
        check_metrics(&field, m, base).map_err(|(f, r)| bad(&f, r))?;
    }
    Ok(ValidWorkload { params, lead_secs })
}

/// Resources a workload may watch beside its own (`watch`).
pub const WATCHABLE: [&str; 3] = ["cpu", "memory", "network"];

/// Checks a metrics source written at `field` and resolves a replay's path against `base`;
/// the error names the field and why.
fn check_metrics(
    field: &str,
    m: &mut MetricsParams,
    base: &Path,
) -> std::result::Result<(), (String, String)> {
    match m {
        MetricsParams::Replay { path } => {
            if path.is_relative() {
                *path = base.join(&*path);
            }
            if !path.is_file() {
                return Err((
                    format!("{field}.path"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        MetricsParams::Prometheus { url, query } => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    format!("{field}.url"),
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
            if query.trim().is_empty() {
                return Err((format!("{field}.query"), "must not be empty".into()));
            }
        }
        MetricsParams::Push => {}
    }
    Ok(())
}

impl ConfigParams {
    /// Checks the whole configuration; `file` names it in errors and `base` resolves relative paths.
    ///
    /// # Errors
    /// The first problem found, naming the field (and workload).
    pub fn check(self, file: &str, base: &Path) -> Result<ValidConfig> {
        let top = |field: &str, reason: String| Error::FieldInvalid {
            file: file.to_string(),
            field: field.into(),
            reason,
        };
        let interval_secs = parse_duration(&self.interval).map_err(|r| top("interval", r))?;
        if interval_secs <= 0 {
            return Err(top("interval", "must be positive".into()));
        }
        if self.concurrency == 0 {
            return Err(top("concurrency", "must be at least 1".into()));
        }
        let retention_secs = match self.retention.trim() {
            "off" => None,
            text => {
                let secs = parse_duration(text).map_err(|r| top("retention", r))?;
                if secs < MIN_RETENTION_SECS {
                    return Err(top(
                        "retention",
                        format!(
                            "`{text}` is shorter than 8d (a restart rebuilds the models from the last 7 days); write at least 8d, or `off` to keep everything"
                        ),
                    ));
                }
                Some(secs)
            }
        };
        let mut seen = std::collections::HashSet::new();
        let mut workloads = Vec::with_capacity(self.workloads.len());
        for w in &self.workloads {
            let v = check_workload(file, w, base)?;
            if !seen.insert(w.name.clone()) {
                return Err(Error::WorkloadFieldInvalid {
                    file: file.into(),
                    workload: w.name.clone(),
                    field: "name".into(),
                    reason: "appears more than once".into(),
                });
            }
            workloads.push(v);
        }
        crate::adapters::check_sections(file, &self.clouds)?;
        let store = match self.store {
            Some(StoreParams::Sqlite { path }) => StoreParams::Sqlite {
                path: if path.is_relative() {
                    base.join(path)
                } else {
                    path
                },
            },
            Some(StoreParams::Postgres { url }) => StoreParams::Postgres { url },
            None => StoreParams::Sqlite {
                path: base.join("predictive.db"),
            },
        };
        Ok(ValidConfig {
            interval_secs,
            mode: self.mode,
            concurrency: self.concurrency,
            owner: self.owner,
            retention_secs,
            store,
            api: self.api,
            metrics_listen: self.metrics_listen,
            workloads,
            clouds: self.clouds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = r#"
interval = "5m"
mode = "dry-run"
[[workloads]]
name = "web"
group = "web-asg"
instance_type = "m5.large"
capacity_per_instance = 2.0
max = 10
metrics = { kind = "push" }
"#;

    #[test]
    fn good_toml_loads() {
        let d = tempfile::tempdir().unwrap();
        let c = load(&write(d.path(), "c.toml", GOOD)).unwrap();
        assert_eq!(c.interval_secs, 300);
        assert_eq!(c.mode, Mode::DryRun);
        assert_eq!(c.workloads[0].name(), "web");
        assert_eq!(c.workloads[0].lead_secs, 600);
    }

    #[test]
    fn yaml_loads_the_same() {
        let d = tempfile::tempdir().unwrap();
        let y = "interval: 1m\nworkloads:\n  - name: api\n    group: g\n    instance_type: m5.large\n    capacity_per_instance: 4\n    max: 3\n    metrics: {kind: push}\n";
        let c = load(&write(d.path(), "c.yaml", y)).unwrap();
        assert_eq!(c.interval_secs, 60);
        assert_eq!(c.workloads[0].params.capacity_per_instance, 4.0);
    }

    #[test]
    fn bad_fields_name_the_workload_and_field() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            (
                "max = 10",
                "max = 10\nmin = 11",
                "workload `web`: field `min`: 11 is above max (10)",
            ),
            (
                "capacity_per_instance = 2.0",
                "capacity_per_instance = -1.0",
                "field `capacity_per_instance`",
            ),
            (
                "metrics = { kind = \"push\" }",
                "metrics = { kind = \"replay\", path = \"nope.csv\" }",
                "field `metrics.path`",
            ),
            (
                "metrics = { kind = \"push\" }",
                "metrics = { kind = \"prometheus\", url = \"ftp://x\", query = \"up\" }",
                "field `metrics.url`",
            ),
            (
                "max = 10",
                "max = 10\nlead = \"5 parsecs\"",
                "workload `web`: field `lead`",
            ),
            (
                "max = 10",
                "max = 10\nwatch = { gpu = { kind = \"replay\", path = \"c.toml\" } }",
                "field `watch.gpu`: `gpu` is not one of cpu, memory, network",
            ),
            (
                "max = 10",
                "max = 10\nwatch = { cpu = { kind = \"replay\", path = \"c.toml\" } }",
                "field `watch.cpu`: `cpu` is the workload's own resource",
            ),
            (
                "max = 10",
                "max = 10\nwatch = { network = { kind = \"push\" } }",
                "field `watch.network`: pushed samples",
            ),
            (
                "max = 10",
                "max = 10\nwatch = { network = { kind = \"prometheus\", url = \"http://p\", query = \" \" } }",
                "field `watch.network.query`: must not be empty",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replace(from, to);
            let err = load(&write(d.path(), "c.toml", &text))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn watched_metrics_resolve_their_paths_like_the_workloads_own() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "net.csv", "timestamp,value\n");
        let text = GOOD.replace(
            "max = 10",
            "max = 10\nwatch = { network = { kind = \"replay\", path = \"net.csv\" } }",
        );
        let c = load(&write(d.path(), "c.toml", &text)).unwrap();
        assert_eq!(
            c.workloads[0].params.watch["network"],
            MetricsParams::Replay {
                path: d.path().join("net.csv")
            }
        );
    }

    #[test]
    fn type_errors_carry_the_line() {
        let d = tempfile::tempdir().unwrap();
        let text = GOOD.replace("max = 10", "max = \"ten\"");
        let err = load(&write(d.path(), "c.toml", &text)).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("line 9"), "{chain}");
        assert!(chain.contains("max"), "{chain}");
    }

    #[test]
    fn cloud_sections_are_a_checked_field_of_the_config() {
        let d = tempfile::tempdir().unwrap();
        let text = format!("{GOOD}\n[clouds.aws]\nregion = \"us-east-1\"\n[clouds.aws.regions.eu-west-1]\nattempt_timeout = \"10s\"\n");
        let c = load(&write(d.path(), "c.toml", &text)).unwrap();
        let aws = c.clouds.aws.as_ref().unwrap();
        assert_eq!(aws.region.as_deref(), Some("us-east-1"));
        assert_eq!(
            aws.regions["eu-west-1"].attempt_timeout.as_deref(),
            Some("10s")
        );
        let bad = text.replace("\"10s\"", "\"soon\"");
        let err = load(&write(d.path(), "c.toml", &bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.toml: field `clouds.aws.regions.eu-west-1.attempt_timeout`"),
            "{err}"
        );
        // A config without clouds still loads, with no account.
        assert_eq!(
            load(&write(d.path(), "c.toml", GOOD)).unwrap().clouds,
            Default::default()
        );
    }

    #[test]
    fn retention_defaults_to_five_weeks_and_is_never_shorter_than_the_replayed_week() {
        let d = tempfile::tempdir().unwrap();
        let with = |r: &str| GOOD.replace("mode = ", &format!("retention = \"{r}\"\nmode = "));
        let c = load(&write(d.path(), "c.toml", GOOD)).unwrap();
        assert_eq!(c.retention_secs, Some(35 * 86_400));
        let c = load(&write(d.path(), "c.toml", &with("90d"))).unwrap();
        assert_eq!(c.retention_secs, Some(90 * 86_400));
        let c = load(&write(d.path(), "c.toml", &with("off"))).unwrap();
        assert_eq!(c.retention_secs, None);
        for (r, want) in [
            ("2d", "c.toml: field `retention`: `2d` is shorter than 8d"),
            ("a month", "c.toml: field `retention`: `a month`"),
        ] {
            let err = load(&write(d.path(), "c.toml", &with(r)))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let d = tempfile::tempdir().unwrap();
        let text = format!("{GOOD}{}", &GOOD[GOOD.find("[[workloads]]").unwrap()..]);
        let err = load(&write(d.path(), "c.toml", &text))
            .unwrap_err()
            .to_string();
        assert!(err.contains("appears more than once"), "{err}");
    }
}
