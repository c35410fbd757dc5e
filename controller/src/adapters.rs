//! The daemon's cloud accounts: the `[clouds.aws]`, `[clouds.azure]` and `[clouds.gcp]` sections
//! of the config file (the `clouds` field of [`ConfigParams`](crate::config::ConfigParams),
//! checked with the rest of the file), built into [`DynProvider`]s wrapped in the production
//! layer stack (timeout, rate limit, metrics, retry, tracing).
//!
//! # Accounts and regions
//! Each section is an account; `regions` names more accounts, one per workload region, whose
//! fields override the section's:
//!
//! ```toml
//! [clouds.aws]                       # credentials and settings shared by every region
//! access_key_id_env = "AWS_KEY_ID"
//! secret_access_key_env = "AWS_SECRET"
//! [clouds.aws.regions.eu-west-1]     # workloads with `region = "eu-west-1"`
//! endpoint_url = "https://ec2.eu-west-1.amazonaws.com"
//! ```
//!
//! A workload uses the account of its `region` when `regions` lists it, the section itself
//! otherwise. AWS builds one adapter per region in use (a section without `region` serves any
//! region; with `region`, only that one and the listed ones). Azure's `regions` keys are
//! locations and GCP's are zones (their `location` / `zone` default to the key). Several accounts
//! of one cloud are served to the loop as one [`Routed`] provider, which sends each call to the
//! account that owns the group or instance; group names must therefore differ across a cloud's
//! accounts.
//!
//! Credentials come from each SDK's own chain (environment, profile, workload identity, metadata
//! server) unless a section names environment variables holding them; they are never logged,
//! and errors name the variable, never its value.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use predictive_clouds::layer::metrics::MetricsRegistry;
use predictive_clouds::layer::Stack;
use predictive_clouds::{
    CloudError, CloudProvider, DynProvider, ErrorKind, Group, GroupId, Instance, InstanceId,
    InstanceType, InstanceTypeInfo, LaunchRequest, Operation, Owner, Price, StopMode,
};

use crate::config::{ValidConfig, ValidWorkload};

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
    /// The file is invalid (its `clouds` sections included).
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// A field of a `clouds` section is wrong.
    #[error("{file}: field `clouds.{cloud}.{field}`: {reason}")]
    FieldInvalid {
        /// The file.
        file: String,
        /// The section (`aws`, `azure`, `gcp`).
        cloud: &'static str,
        /// The field (`regions.<region>.<field>` inside a per-region account).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A workload cannot use its cloud.
    #[error("workload `{workload}`: field `{field}`: {reason}")]
    WorkloadCloud {
        /// The workload.
        workload: String,
        /// The field at fault (`cloud`, `region`, `group`, `price_per_hour`).
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// Region of this account (default: any region a workload names; one adapter per region).
    pub region: Option<String>,
    /// Endpoint override for EC2 and Auto Scaling (a local emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Environment variable holding the access key id (default: the SDK's credential chain).
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the secret access key (with `access_key_id_env`).
    pub secret_access_key_env: Option<String>,
    /// Timeout of one HTTP attempt, e.g. `30s`.
    pub attempt_timeout: Option<String>,
    /// AMI of the members of tagged groups (workloads whose `group` is `tag:KEY=VALUE`).
    pub image_id: Option<String>,
    /// Subnet of the members of tagged groups.
    pub subnet_id: Option<String>,
    /// Accounts of other regions, by region; their fields override these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, AwsAccount>,
}

/// The AWS account of one region: unset fields are the section's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsAccount {
    /// Endpoint override.
    pub endpoint_url: Option<String>,
    /// Environment variable holding the access key id.
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// Timeout of one HTTP attempt.
    pub attempt_timeout: Option<String>,
    /// AMI of the members of tagged groups (AMIs are regional).
    pub image_id: Option<String>,
    /// Subnet of the members of tagged groups.
    pub subnet_id: Option<String>,
}

/// The Azure account (VM scale sets).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    /// Accounts of other locations, by the workloads' `region`; their fields override these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, AzureAccount>,
}

/// The Azure account of one location: unset fields are the section's, and `location` is the
/// key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AzureAccount {
    /// Subscription id.
    pub subscription_id: Option<String>,
    /// Resource group of the scale sets.
    pub resource_group: Option<String>,
    /// Location of launches (default: the key).
    pub location: Option<String>,
    /// ARM endpoint override.
    pub endpoint: Option<String>,
    /// Environment variable holding a bearer token.
    pub token_env: Option<String>,
    /// Largest capacity reported for scale sets.
    pub group_max: Option<u32>,
}

/// The GCP project (managed instance groups).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    /// Environment variable holding a service-account key (the JSON key file's text); used
    /// instead of `credentials`. The key is never logged nor shown in errors.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Largest target size reported for groups (default 1000).
    pub group_max: Option<u32>,
    /// Accounts of other zones, by the workloads' `region`; their fields override these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, GcpAccount>,
}

/// The GCP account of one zone: unset fields are the section's, and `zone` is the key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GcpAccount {
    /// Project id.
    pub project: Option<String>,
    /// Zone of zonal groups (default: the key).
    pub zone: Option<String>,
    /// Compute Engine endpoint override.
    pub endpoint: Option<String>,
    /// `default` or `anonymous`.
    pub credentials: Option<String>,
    /// Environment variable holding a service-account key.
    pub key_env: Option<String>,
    /// Largest target size reported for groups.
    pub group_max: Option<u32>,
}

/// The `clouds` sections.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudSections {
    /// `[clouds.aws]`.
    pub aws: Option<AwsSection>,
    /// `[clouds.azure]`.
    pub azure: Option<AzureSection>,
    /// `[clouds.gcp]`.
    pub gcp: Option<GcpSection>,
}

impl AwsSection {
    /// The account serving `region`: the section with the region's overrides applied.
    pub fn account(&self, region: &str) -> AwsSection {
        let mut a = self.clone();
        a.regions.clear();
        a.region = Some(region.to_string());
        if let Some(r) = self.regions.get(region) {
            let over = |base: &mut Option<String>, v: &Option<String>| {
                if v.is_some() {
                    *base = v.clone();
                }
            };
            over(&mut a.endpoint_url, &r.endpoint_url);
            over(&mut a.access_key_id_env, &r.access_key_id_env);
            over(&mut a.secret_access_key_env, &r.secret_access_key_env);
            over(&mut a.attempt_timeout, &r.attempt_timeout);
            over(&mut a.image_id, &r.image_id);
            over(&mut a.subnet_id, &r.subnet_id);
        }
        a
    }
}

impl AzureSection {
    /// The account serving workloads of `region`: the section, or its `regions` entry applied.
    pub fn account(&self, region: &str) -> AzureSection {
        let mut a = self.clone();
        a.regions.clear();
        if let Some(r) = self.regions.get(region) {
            a.subscription_id = r.subscription_id.clone().unwrap_or(a.subscription_id);
            a.resource_group = r.resource_group.clone().unwrap_or(a.resource_group);
            a.location = r.location.clone().unwrap_or_else(|| region.to_string());
            a.endpoint = r.endpoint.clone().or(a.endpoint);
            a.token_env = r.token_env.clone().or(a.token_env);
            a.group_max = r.group_max.or(a.group_max);
        }
        a
    }
}

impl GcpSection {
    /// The account serving workloads of `region`: the section, or its `regions` entry applied.
    pub fn account(&self, region: &str) -> GcpSection {
        let mut a = self.clone();
        a.regions.clear();
        if let Some(r) = self.regions.get(region) {
            a.project = r.project.clone().unwrap_or(a.project);
            a.zone = r.zone.clone().unwrap_or_else(|| region.to_string());
            a.endpoint = r.endpoint.clone().or(a.endpoint);
            a.credentials = r.credentials.clone().or(a.credentials);
            a.key_env = r.key_env.clone().or(a.key_env);
            a.group_max = r.group_max.or(a.group_max);
        }
        a
    }
}

/// The key of the account a workload of `cloud` in `region` uses: the region for AWS (one
/// adapter per region), the region for Azure and GCP when their `regions` list it, `""` (the
/// section itself) otherwise.
pub fn account_key(cloud: &str, region: &str, clouds: &CloudSections) -> String {
    let listed = match cloud {
        "aws" => true,
        "azure" => clouds
            .azure
            .as_ref()
            .is_some_and(|a| a.regions.contains_key(region)),
        "gcp" => clouds
            .gcp
            .as_ref()
            .is_some_and(|g| g.regions.contains_key(region)),
        _ => false,
    };
    if listed {
        region.to_string()
    } else {
        String::new()
    }
}

/// A checked config together with its cloud accounts.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The config the loop runs.
    pub config: ValidConfig,
    /// The cloud accounts (the same as `config.clouds`).
    pub clouds: CloudSections,
    /// The file's name, for errors.
    pub file: String,
}

/// Reads a config file with its `clouds` sections; `.yaml`/`.yml` is YAML, anything else TOML.
///
/// # Errors
/// [`Error`] naming the file, section, workload and field at fault.
pub fn load(path: &Path) -> Result<DaemonConfig> {
    let config = crate::config::load(path)?;
    Ok(DaemonConfig {
        clouds: config.clouds.clone(),
        config,
        file: path.display().to_string(),
    })
}

/// Checks the `clouds` sections field by field (called by
/// [`ConfigParams::check`](crate::config::ConfigParams::check)).
///
/// # Errors
/// [`crate::config::Error::FieldInvalid`] naming the file and the field, such as
/// `clouds.aws.regions.eu-west-1.endpoint_url`.
pub fn check_sections(file: &str, c: &CloudSections) -> Result<(), crate::config::Error> {
    let bad = |field: String, reason: String| crate::config::Error::FieldInvalid {
        file: file.to_string(),
        field,
        reason,
    };
    let url = |field: String, u: &Option<String>| match u {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            Err(bad(field, format!("`{u}` is not an http(s) URL")))
        }
        _ => Ok(()),
    };
    let nonempty = |field: String, v: &str| {
        if v.trim().is_empty() {
            Err(bad(field, "must not be empty".into()))
        } else {
            Ok(())
        }
    };
    let gcp_credentials = |field: String, cr: &Option<String>| match cr {
        Some(cr) if !["default", "anonymous"].contains(&cr.as_str()) => Err(bad(
            field,
            format!("`{cr}` is not one of default, anonymous"),
        )),
        _ => Ok(()),
    };
    if let Some(a) = &c.aws {
        if let Some(r) = &a.region {
            nonempty("clouds.aws.region".into(), r)?;
        }
        let mut accounts = vec![("clouds.aws".to_string(), a.clone())];
        for r in a.regions.keys() {
            nonempty(format!("clouds.aws.regions.{r}"), r)?;
            accounts.push((format!("clouds.aws.regions.{r}"), a.account(r)));
        }
        for (at, a) in accounts {
            url(format!("{at}.endpoint_url"), &a.endpoint_url)?;
            if a.access_key_id_env.is_some() != a.secret_access_key_env.is_some() {
                return Err(bad(
                    format!("{at}.secret_access_key_env"),
                    "access_key_id_env and secret_access_key_env go together".into(),
                ));
            }
            if let Some(t) = &a.attempt_timeout {
                crate::clock::parse_duration(t)
                    .map_err(|r| bad(format!("{at}.attempt_timeout"), r))?;
            }
        }
    }
    if let Some(a) = &c.azure {
        let mut accounts = vec![("clouds.azure".to_string(), a.clone())];
        accounts.extend(
            a.regions
                .keys()
                .map(|r| (format!("clouds.azure.regions.{r}"), a.account(r))),
        );
        for (at, a) in accounts {
            nonempty(format!("{at}.subscription_id"), &a.subscription_id)?;
            nonempty(format!("{at}.resource_group"), &a.resource_group)?;
            nonempty(format!("{at}.location"), &a.location)?;
            url(format!("{at}.endpoint"), &a.endpoint)?;
        }
    }
    if let Some(g) = &c.gcp {
        let mut accounts = vec![("clouds.gcp".to_string(), g.clone())];
        accounts.extend(
            g.regions
                .keys()
                .map(|r| (format!("clouds.gcp.regions.{r}"), g.account(r))),
        );
        for (at, g) in accounts {
            nonempty(format!("{at}.project"), &g.project)?;
            nonempty(format!("{at}.zone"), &g.zone)?;
            url(format!("{at}.endpoint"), &g.endpoint)?;
            gcp_credentials(format!("{at}.credentials"), &g.credentials)?;
            if let (Some(var), Some(cr)) = (&g.key_env, &g.credentials) {
                if cr == "anonymous" {
                    return Err(bad(
                        format!("{at}.key_env"),
                        format!("`{var}` and credentials = \"anonymous\" exclude each other"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether this binary was built with the adapter of `cloud` (`sim` and `fake` always are).
pub fn built(cloud: &str) -> bool {
    matches!(cloud, "sim" | "fake")
        || (cloud == "aws" && cfg!(feature = "aws"))
        || (cloud == "azure" && cfg!(feature = "azure"))
        || (cloud == "gcp" && cfg!(feature = "gcp"))
}

/// The adapter clouds the workloads use (`aws`, `azure`, `gcp`), each once.
pub fn used(cfg: &ValidConfig) -> Vec<&'static str> {
    ["aws", "azure", "gcp"]
        .into_iter()
        .filter(|c| cfg.workloads.iter().any(|w| w.params.cloud == *c))
        .collect()
}

/// Checks that `w` can run on its cloud as configured: the adapter is built, the cloud's section
/// is there when it needs one, an account serves its region and a price is given (the compute
/// APIs publish none).
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
        "azure" if clouds.azure.is_none() => return Err(bad(
            "cloud",
            "`azure` needs a [clouds.azure] section (subscription_id, resource_group, location)"
                .into(),
        )),
        "gcp" if clouds.gcp.is_none() => {
            return Err(bad(
                "cloud",
                "`gcp` needs a [clouds.gcp] section (project, zone)".into(),
            ))
        }
        "aws" => {
            if p.group.starts_with("tag:") {
                let parsed = p.group["tag:".len()..]
                    .split_once('=')
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty());
                if parsed.is_none() {
                    return Err(bad(
                        "group",
                        format!("`{}` is not a tagged group: write tag:KEY=VALUE", p.group),
                    ));
                }
                let image = clouds
                    .aws
                    .as_ref()
                    .and_then(|a| a.account(&p.region).image_id);
                if image.is_none() {
                    return Err(bad(
                        "group",
                        format!("the tagged group `{}` launches instances itself: set clouds.aws.image_id (or clouds.aws.regions.{}.image_id)", p.group, p.region),
                    ));
                }
            }
            if let Some(a) = &clouds.aws {
                if let Some(r) = &a.region {
                    if *r != p.region && !a.regions.contains_key(&p.region) {
                        return Err(bad(
                            "region",
                            format!(
                                "no AWS account serves `{}`: clouds.aws.region is `{r}` and clouds.aws.regions has no `{}`",
                                p.region, p.region
                            ),
                        ));
                    }
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

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
fn env_secret(cloud: &'static str, field: String, var: &str, file: &str) -> Result<String> {
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

/// The field path of `field` in the account serving `region` (`regions.<region>.<field>` when
/// the region has an account of its own), for errors.
#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
fn account_field(listed: bool, region: &str, field: &str) -> String {
    if listed {
        format!("regions.{region}.{field}")
    } else {
        field.to_string()
    }
}

/// Builds the adapter of `cloud` for the account serving workloads of `region`, wrapped in
/// `stack`.
///
/// No call is made; a wrong endpoint or credential shows on the first call (see [`probe`]).
///
/// # Errors
/// [`Error::WorkloadCloud`] when the adapter is not built, [`Error::FieldInvalid`] for a missing
/// credential variable, [`Error::Build`] when the SDK client cannot be set up.
#[allow(unused_variables)]
// Without any adapter feature every arm returns an error, so the wrapping is unreachable.
#[cfg_attr(
    not(any(feature = "aws", feature = "azure", feature = "gcp")),
    allow(unreachable_code)
)]
pub async fn build(
    cloud: &'static str,
    cfg: &DaemonConfig,
    region: &str,
    stack: &Stack,
) -> Result<DynProvider> {
    let file = cfg.file.as_str();
    let inner: DynProvider = match cloud {
        #[cfg(feature = "aws")]
        "aws" => {
            use predictive_clouds::aws::{AwsCredentials, AwsParams, AwsProvider};
            let section = cfg.clouds.aws.clone().unwrap_or_default();
            let listed = section.regions.contains_key(region);
            let region = match (&section.region, listed) {
                (Some(r), false) => r.clone(),
                _ => region.to_string(),
            };
            let s = section.account(&region);
            let mut p = AwsParams::new(region.clone());
            p.endpoint_url = s.endpoint_url.clone();
            if let (Some(k), Some(sk)) = (&s.access_key_id_env, &s.secret_access_key_env) {
                p.credentials = AwsCredentials::Static {
                    access_key_id: env_secret("aws", account_field(listed, &region, "access_key_id_env"), k, file)?,
                    secret_access_key: env_secret("aws", account_field(listed, &region, "secret_access_key_env"), sk, file)?,
                };
            }
            if let Some(t) = &s.attempt_timeout {
                let secs = crate::clock::parse_duration(t).unwrap_or(30).max(1);
                p.attempt_timeout = Duration::from_secs(secs as u64);
            }
            p.image_id = s.image_id.clone();
            p.subnet_id = s.subnet_id.clone();
            // Workloads on tagged groups: the group is defined by the workload's type and bounds.
            let owner = Owner::new(cfg.config.owner.clone()).map_err(|e| Error::Build { cloud: "aws", source: Box::new(e) })?;
            for w in cfg.config.workloads.iter().filter(|w| w.params.cloud == "aws" && w.params.group.starts_with("tag:")) {
                if account_key("aws", &w.params.region, &cfg.clouds) != account_key("aws", &region, &cfg.clouds) {
                    continue;
                }
                let g = predictive_clouds::aws::TaggedGroup::new(w.params.instance_type.as_str(), w.params.min, w.params.max, owner.clone());
                p.tagged_groups.insert(GroupId::new(w.params.group.clone()), g);
            }
            let v = p.check().map_err(|e| Error::Build { cloud: "aws", source: Box::new(e) })?;
            std::sync::Arc::new(AwsProvider::connect(v).await)
        }
        #[cfg(feature = "azure")]
        "azure" => {
            use predictive_clouds::azure::{AzureCredentials, AzureParams, AzureProvider};
            let section = cfg.clouds.azure.clone().unwrap_or_default();
            let listed = section.regions.contains_key(region);
            let s = section.account(region);
            let mut p = AzureParams::new(&s.subscription_id, &s.resource_group, &s.location);
            p.endpoint = s.endpoint.clone();
            if let Some(var) = &s.token_env {
                p.credentials = AzureCredentials::FixedToken(env_secret("azure", account_field(listed, region, "token_env"), var, file)?);
            }
            if let Some(m) = s.group_max {
                p.group_max = m;
            }
            let v = p.check().map_err(|e| Error::Build { cloud: "azure", source: Box::new(e) })?;
            std::sync::Arc::new(AzureProvider::new(v).map_err(|e| Error::Build { cloud: "azure", source: Box::new(e) })?)
        }
        #[cfg(feature = "gcp")]
        "gcp" => {
            use predictive_clouds::gcp::{GcpCredentials, GcpParams, GcpProvider, GcpServiceAccountKey};
            let s = cfg.clouds.gcp.clone().unwrap_or_default().account(region);
            let mut p = GcpParams::new(&s.project, &s.zone);
            p.endpoint = s.endpoint.clone();
            if s.credentials.as_deref() == Some("anonymous") {
                p.credentials = GcpCredentials::Anonymous;
            }
            if let Some(var) = &s.key_env {
                let listed = cfg.clouds.gcp.as_ref().is_some_and(|g| g.regions.contains_key(region));
                let field = account_field(listed, region, "key_env");
                let key = GcpServiceAccountKey::new(env_secret("gcp", field.clone(), var, file)?);
                p.credentials = GcpCredentials::ServiceAccountKey(key);
                // The key is checked here so that the error names the field and variable.
                if let Err(e) = p.clone().check() {
                    return Err(Error::FieldInvalid {
                        file: file.to_string(),
                        cloud: "gcp",
                        field,
                        reason: format!("environment variable `{var}`: {e}"),
                    });
                }
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
pub async fn probe(
    w: &ValidWorkload,
    provider: &DynProvider,
    endpoint: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let p = &w.params;
    let at = endpoint.map(|e| format!(" at {e}")).unwrap_or_default();
    let gid = GroupId::new(p.group.clone());
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

/// The endpoint override of `cloud`'s section, for messages.
pub fn endpoint<'a>(cloud: &str, c: &'a CloudSections) -> Option<&'a str> {
    match cloud {
        "aws" => c.aws.as_ref().and_then(|s| s.endpoint_url.as_deref()),
        "azure" => c.azure.as_ref().and_then(|s| s.endpoint.as_deref()),
        "gcp" => c.gcp.as_ref().and_then(|s| s.endpoint.as_deref()),
        _ => None,
    }
}

/// The endpoint override of the account serving workloads of `cloud` in `region`, for messages.
pub fn endpoint_for(cloud: &str, region: &str, c: &CloudSections) -> Option<String> {
    match cloud {
        "aws" => c.aws.as_ref().and_then(|s| s.account(region).endpoint_url),
        "azure" => c.azure.as_ref().and_then(|s| s.account(region).endpoint),
        "gcp" => c.gcp.as_ref().and_then(|s| s.account(region).endpoint),
        _ => None,
    }
}

/// The AWS region of the section's own account: its `region`, else the first `aws` workload's.
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

/// Builds every account the workloads use. A cloud with several accounts is served as one
/// [`Routed`] provider. An account that cannot be built is left out and its workloads are
/// returned with the error, as are workloads whose group name another account of the same
/// cloud also uses, so that the daemon serves the others.
pub async fn build_all(
    cfg: &DaemonConfig,
    stack: &Stack,
) -> (BTreeMap<String, DynProvider>, Vec<(String, String)>) {
    let mut clouds = BTreeMap::new();
    let mut failed = Vec::new();
    for cloud in used(&cfg.config) {
        if !built(cloud) {
            continue; // reported per workload by check_workload
        }
        let workloads: Vec<&ValidWorkload> = cfg
            .config
            .workloads
            .iter()
            .filter(|w| w.params.cloud == cloud)
            .collect();
        // Accounts by key, in first-use order, each with the region that selects it.
        let mut keys: Vec<(String, String)> = Vec::new();
        for w in &workloads {
            let key = account_key(cloud, &w.params.region, &cfg.clouds);
            if !keys.iter().any(|(k, _)| *k == key) {
                keys.push((key, w.params.region.clone()));
            }
        }
        let mut accounts: Vec<(String, DynProvider)> = Vec::new();
        for (key, region) in &keys {
            match build(cloud, cfg, region, stack).await {
                Ok(p) => accounts.push((key.clone(), p)),
                Err(e) => {
                    let text = crate::run::chain(&e);
                    for w in workloads
                        .iter()
                        .filter(|w| account_key(cloud, &w.params.region, &cfg.clouds) == *key)
                    {
                        failed.push((w.name().to_string(), text.clone()));
                    }
                }
            }
        }
        if accounts.len() == 1 && keys.len() == 1 {
            let (_, p) = accounts.pop().expect("one account");
            clouds.insert(cloud.to_string(), p);
            continue;
        }
        // Several accounts: groups route the calls, so a group name may belong to one only.
        let mut groups: BTreeMap<GroupId, (usize, String)> = BTreeMap::new();
        for w in &workloads {
            let key = account_key(cloud, &w.params.region, &cfg.clouds);
            let Some(i) = accounts.iter().position(|(k, _)| *k == key) else {
                continue;
            };
            let g = GroupId::new(w.params.group.clone());
            match groups.get(&g) {
                Some((j, other)) if *j != i => failed.push((
                    w.name().to_string(),
                    format!(
                        "workload `{}`: field `group`: `{}` is also the group of workload `{other}` in another account of `{cloud}`; group names must differ across a cloud's regions",
                        w.name(),
                        w.params.group
                    ),
                )),
                Some(_) => {}
                None => {
                    groups.insert(g, (i, w.name().to_string()));
                }
            }
        }
        if !accounts.is_empty() {
            let groups = groups.into_iter().map(|(g, (i, _))| (g, i)).collect();
            clouds.insert(
                cloud.to_string(),
                std::sync::Arc::new(Routed::new(cloud, accounts, groups)) as DynProvider,
            );
        }
    }
    (clouds, failed)
}

/// One cloud served by several accounts (regions, subscriptions, projects) behind the port:
/// each call goes to the account that owns its group or instance.
///
/// - Group calls go to the account the group was assigned to; an unknown group is asked of
///   each account in turn until one does not answer `NotFound`.
/// - Instance calls go to the account the instance was last seen in (launch, group and
///   listing answers are remembered); an unknown instance is looked for in each account.
/// - `launch` goes to the account of its `template_group`, else to the account whose key
///   starts its `location` (zone `eu-west-1a` → region `eu-west-1`), else to the first.
/// - `list_instances`, `instance_types` and `prices` merge every account's answers.
///
/// # Guarantees
/// Adds no retries or state of its own beyond the id → account memory: each call is one call
/// of one account (or a `NotFound`-driven search), so the layers' idempotency holds.
#[derive(Debug)]
pub struct Routed {
    name: &'static str,
    accounts: Vec<(String, DynProvider)>,
    groups: BTreeMap<GroupId, usize>,
    seen: Mutex<HashMap<InstanceId, usize>>,
}

impl Routed {
    /// A router over `accounts` (key, provider), with `groups` assigned to account indexes.
    ///
    /// # Panics
    /// When `accounts` is empty.
    pub fn new(
        name: &'static str,
        accounts: Vec<(String, DynProvider)>,
        groups: BTreeMap<GroupId, usize>,
    ) -> Self {
        assert!(!accounts.is_empty(), "a routed provider needs an account");
        Routed {
            name,
            accounts,
            groups,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The account keys, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.accounts.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn remember<'a>(&self, i: usize, instances: impl IntoIterator<Item = &'a Instance>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for inst in instances {
            seen.insert(inst.id.clone(), i);
        }
    }

    /// Account indexes to try for `group`: its own, or all.
    fn for_group(&self, group: &GroupId) -> Vec<usize> {
        match self.groups.get(group) {
            Some(i) => vec![*i],
            None => (0..self.accounts.len()).collect(),
        }
    }

    /// Account indexes to try for `id`: where it was seen first, then the others.
    fn for_instance(&self, id: &InstanceId) -> Vec<usize> {
        let known = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied();
        let mut order: Vec<usize> = known.into_iter().collect();
        order.extend((0..self.accounts.len()).filter(|i| Some(*i) != known));
        order
    }

    async fn group_call<'a, F, Fut>(
        &'a self,
        group: &GroupId,
        f: F,
    ) -> predictive_clouds::Result<Group>
    where
        F: Fn(&'a DynProvider) -> Fut,
        Fut: std::future::Future<Output = predictive_clouds::Result<Group>>,
    {
        let mut last = None;
        for i in self.for_group(group) {
            match f(&self.accounts[i].1).await {
                Ok(g) => {
                    self.remember(i, &g.instances);
                    return Ok(g);
                }
                Err(e) if e.is_not_found() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            CloudError::not_found(Operation::DescribeGroup, format!("group {group}"))
        }))
    }

    async fn instance_call<'a, F, Fut>(
        &'a self,
        id: &InstanceId,
        f: F,
    ) -> predictive_clouds::Result<Instance>
    where
        F: Fn(&'a DynProvider) -> Fut,
        Fut: std::future::Future<Output = predictive_clouds::Result<Instance>>,
    {
        let mut last = None;
        for i in self.for_instance(id) {
            match f(&self.accounts[i].1).await {
                Ok(inst) => {
                    self.remember(i, [&inst]);
                    return Ok(inst);
                }
                // Ids of another account may be malformed here (Azure and GCP paths).
                Err(e)
                    if e.is_not_found()
                        || (e.kind() == ErrorKind::InvalidRequest && self.accounts.len() > 1) =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            CloudError::not_found(Operation::DescribeInstance, format!("instance {id}"))
        }))
    }
}

#[async_trait]
impl CloudProvider for Routed {
    fn name(&self) -> &str {
        self.name
    }

    async fn describe_group(&self, group: &GroupId) -> predictive_clouds::Result<Group> {
        self.group_call(group, |p| p.describe_group(group)).await
    }

    async fn scale_group(&self, group: &GroupId, desired: u32) -> predictive_clouds::Result<Group> {
        self.group_call(group, |p| p.scale_group(group, desired))
            .await
    }

    async fn resize_group(
        &self,
        group: &GroupId,
        instance_type: &InstanceType,
    ) -> predictive_clouds::Result<Group> {
        self.group_call(group, |p| p.resize_group(group, instance_type))
            .await
    }

    async fn launch(&self, request: &LaunchRequest) -> predictive_clouds::Result<Vec<Instance>> {
        let by_group = request
            .template_group
            .as_ref()
            .and_then(|g| self.groups.get(g).copied());
        let by_location = request.location.as_ref().and_then(|l| {
            self.accounts
                .iter()
                .position(|(k, _)| !k.is_empty() && l.starts_with(k.as_str()))
        });
        let i = by_group.or(by_location).unwrap_or(0);
        let out = self.accounts[i].1.launch(request).await?;
        self.remember(i, &out);
        Ok(out)
    }

    async fn describe_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        self.instance_call(id, |p| p.describe_instance(id)).await
    }

    async fn stop_instance(
        &self,
        id: &InstanceId,
        mode: StopMode,
    ) -> predictive_clouds::Result<Instance> {
        self.instance_call(id, |p| p.stop_instance(id, mode)).await
    }

    async fn start_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        self.instance_call(id, |p| p.start_instance(id)).await
    }

    async fn resize_instance(
        &self,
        id: &InstanceId,
        instance_type: &InstanceType,
    ) -> predictive_clouds::Result<Instance> {
        self.instance_call(id, |p| p.resize_instance(id, instance_type))
            .await
    }

    async fn terminate_instance(&self, id: &InstanceId) -> predictive_clouds::Result<Instance> {
        self.instance_call(id, |p| p.terminate_instance(id)).await
    }

    async fn list_instances(&self, owner: &Owner) -> predictive_clouds::Result<Vec<Instance>> {
        let mut all = Vec::new();
        for (i, (_, p)) in self.accounts.iter().enumerate() {
            let list = p.list_instances(owner).await?;
            self.remember(i, &list);
            all.extend(list);
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn instance_types(&self) -> predictive_clouds::Result<Vec<InstanceTypeInfo>> {
        let mut all = Vec::new();
        for (_, p) in &self.accounts {
            all.extend(p.instance_types().await?);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.dedup_by(|a, b| a.name == b.name);
        Ok(all)
    }

    async fn prices(&self) -> predictive_clouds::Result<Vec<Price>> {
        let mut all = Vec::new();
        for (_, p) in &self.accounts {
            all.extend(p.prices().await?);
        }
        all.sort_by(|a, b| (&a.instance_type, &a.location).cmp(&(&b.instance_type, &b.location)));
        Ok(all)
    }
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
        assert_eq!(
            c.clouds.aws.as_ref().unwrap().endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
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
            (
                "endpoint_url = \"http://127.0.0.1:5000\"",
                "endpoint_url = \"ftp://x\"",
                "field `clouds.aws.endpoint_url`",
            ),
            (
                "region = \"us-east-1\"",
                "region = \"us-east-1\"\nbogus = 1",
                "line 6",
            ),
            (
                "resource_group = \"rg\"",
                "resource_group = \"\"",
                "field `clouds.azure.resource_group`",
            ),
            (
                "[clouds.azure]",
                "[clouds.oracle]",
                "unknown field `oracle`",
            ),
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
            assert!(
                e.contains("workload `web`: field `region`: no AWS account serves `eu-west-1`"),
                "{e}"
            );
            // An account for the region lifts it.
            let mut more = c.clouds.clone();
            more.aws
                .as_mut()
                .unwrap()
                .regions
                .insert("eu-west-1".into(), AwsAccount::default());
            check_workload(&w, &more).unwrap();
            w.params.region = "us-east-1".into();
            // Tagged groups: a well-formed id, and an image for the members.
            let mut t = w.clone();
            t.params.group = "tag:app".into();
            let e = check_workload(&t, &c.clouds).unwrap_err().to_string();
            assert!(e.contains("workload `web`: field `group`: `tag:app` is not a tagged group: write tag:KEY=VALUE"), "{e}");
            t.params.group = "tag:app=web".into();
            let e = check_workload(&t, &c.clouds).unwrap_err().to_string();
            assert!(e.contains("workload `web`: field `group`: the tagged group `tag:app=web` launches instances itself: set clouds.aws.image_id"), "{e}");
            let mut with_image = c.clouds.clone();
            with_image.aws.as_mut().unwrap().image_id = Some("ami-1".into());
            check_workload(&t, &with_image).unwrap();
            w.params.price_per_hour = None;
            let e = check_workload(&w, &c.clouds).unwrap_err().to_string();
            assert!(e.contains("workload `web`: field `price_per_hour`"), "{e}");
        } else {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("workload `web`: field `cloud`: `aws` support is not built"),
                "{e}"
            );
        }
        let mut g = w.clone();
        g.params.cloud = "gcp".into();
        g.params.price_per_hour = Some(1.0);
        let e = check_workload(&g, &c.clouds).unwrap_err().to_string();
        assert!(e.contains("workload `web`: field `cloud`"), "{e}");
    }

    /// A service-account key from `key_env`: a bad key is refused naming the field, the
    /// variable and what is wrong, never the key; `anonymous` with a key is refused at load.
    #[cfg(feature = "gcp")]
    #[tokio::test]
    async fn gcp_key_env_errors_name_the_field_and_variable_never_the_key() {
        let d = tempfile::tempdir().unwrap();
        let gcp = "[clouds.gcp]\nproject = \"p\"\nzone = \"europe-west1-b\"\nkey_env = \"PREDICTIVE_TEST_GCP_KEY\"\n\n[clouds.azure]";
        let c = load(&write(
            d.path(),
            "c.toml",
            &TOML.replace("[clouds.azure]", gcp),
        ))
        .unwrap();
        std::env::set_var(
            "PREDICTIVE_TEST_GCP_KEY",
            r#"{"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": "SECRET-MATERIAL", "client_email": "sa@p.iam.gserviceaccount.com"}"#,
        );
        let stack = production_stack(Default::default());
        let e = build("gcp", &c, "europe-west1-b", &stack)
            .await
            .expect_err("a bad key");
        let text = crate::run::chain(&e);
        assert!(
            text.contains(
                "field `clouds.gcp.key_env`: environment variable `PREDICTIVE_TEST_GCP_KEY`"
            ),
            "{text}"
        );
        assert!(
            text.contains("field `private_key` is not a PEM PKCS#8 key"),
            "{text}"
        );
        assert!(
            !text.contains("SECRET-MATERIAL") && !format!("{e:?}").contains("SECRET-MATERIAL"),
            "{text}"
        );
        let pem = "-----BEGIN PRIVATE KEY-----\\nU0VDUkVU\\n-----END PRIVATE KEY-----\\n";
        std::env::set_var(
            "PREDICTIVE_TEST_GCP_KEY",
            format!(
                r#"{{"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": "{pem}", "client_email": "sa@p.iam.gserviceaccount.com"}}"#
            ),
        );
        build("gcp", &c, "europe-west1-b", &stack)
            .await
            .expect("a well-formed key builds");
        let both = gcp.replace("key_env", "credentials = \"anonymous\"\nkey_env");
        let e = load(&write(
            d.path(),
            "c.toml",
            &TOML.replace("[clouds.azure]", &both),
        ))
        .unwrap_err();
        let text = crate::run::chain(&e);
        assert!(text.contains("field `clouds.gcp.key_env`"), "{text}");
    }

    #[test]
    fn per_region_accounts_override_the_section_and_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let text = TOML.replace(
            "[clouds.azure]",
            "[clouds.aws.regions.eu-west-1]\nendpoint_url = \"http://127.0.0.1:5001\"\n\n[clouds.azure.regions.northeurope]\nresource_group = \"rg-ne\"\n\n[clouds.azure]",
        );
        let c = load(&write(d.path(), "c.toml", &text)).unwrap();
        let aws = c.clouds.aws.as_ref().unwrap();
        assert_eq!(
            aws.account("eu-west-1").endpoint_url.as_deref(),
            Some("http://127.0.0.1:5001")
        );
        assert_eq!(
            aws.account("us-east-1").endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        let az = c.clouds.azure.as_ref().unwrap();
        let ne = az.account("northeurope");
        assert_eq!(
            (
                ne.resource_group.as_str(),
                ne.location.as_str(),
                ne.subscription_id.as_str()
            ),
            ("rg-ne", "northeurope", "sub")
        );
        assert_eq!(az.account("elsewhere").location, "westeurope");
        assert_eq!(
            account_key("azure", "northeurope", &c.clouds),
            "northeurope"
        );
        assert_eq!(account_key("azure", "us-east-1", &c.clouds), "");
        assert_eq!(account_key("aws", "eu-west-1", &c.clouds), "eu-west-1");
        assert_eq!(
            endpoint_for("aws", "eu-west-1", &c.clouds).as_deref(),
            Some("http://127.0.0.1:5001")
        );
        let bad = text.replace("\"http://127.0.0.1:5001\"", "\"127.0.0.1:5001\"");
        let e = crate::run::chain(&load(&write(d.path(), "c.toml", &bad)).unwrap_err());
        assert!(e.contains("c.toml: field `clouds.aws.regions.eu-west-1.endpoint_url`: `127.0.0.1:5001` is not an http(s) URL"), "{e}");
    }

    fn sim(region: &str, group: &str) -> (predictive_clouds::sim::SimCloud, DynProvider) {
        use predictive_clouds::sim::{GroupSpec, SimCloud, SimConfig};
        let (s, _) = SimCloud::with_manual_clock(SimConfig {
            locations: vec![format!("{region}a")],
            // Distinct ids in each account, as in real regions.
            seed: region.len() as u64 * 7919 + u64::from(region.as_bytes()[0]),
            ..SimConfig::default()
        });
        s.create_group(GroupSpec {
            desired: 1,
            ..GroupSpec::new(group, "m6i.large", 0, 5)
        })
        .unwrap();
        (s.clone(), std::sync::Arc::new(s))
    }

    #[tokio::test]
    async fn routed_should_send_each_call_to_the_account_of_its_group_or_instance() {
        let (us_sim, us) = sim("us-east-1", "web-us");
        let (eu_sim, eu) = sim("eu-west-1", "web-eu");
        let groups = [(GroupId::new("web-us"), 0), (GroupId::new("web-eu"), 1)]
            .into_iter()
            .collect();
        let r = Routed::new(
            "aws",
            vec![("us-east-1".into(), us), ("eu-west-1".into(), eu)],
            groups,
        );
        assert_eq!(r.keys(), vec!["us-east-1", "eu-west-1"]);
        r.scale_group(&GroupId::new("web-eu"), 3).await.unwrap();
        assert_eq!(
            eu_sim
                .describe_group(&GroupId::new("web-eu"))
                .await
                .unwrap()
                .desired,
            3
        );
        assert_eq!(
            us_sim
                .describe_group(&GroupId::new("web-us"))
                .await
                .unwrap()
                .desired,
            1
        );
        assert!(r
            .describe_group(&GroupId::new("nowhere"))
            .await
            .unwrap_err()
            .is_not_found());
        // A launch from the eu group's template lands in eu; its instance is found there.
        let owner = Owner::new("t").unwrap();
        let mut req = LaunchRequest::new(
            predictive_clouds::IdempotencyToken::new("x1").unwrap(),
            owner.clone(),
            "m6i.large",
            1,
        );
        req.template_group = Some(GroupId::new("web-eu"));
        let id = r.launch(&req).await.unwrap()[0].id.clone();
        assert_eq!(eu_sim.list_instances(&owner).await.unwrap().len(), 1);
        assert!(us_sim.list_instances(&owner).await.unwrap().is_empty());
        // A fresh router (no memory) still finds the instance by asking each account.
        let groups = [(GroupId::new("web-us"), 0), (GroupId::new("web-eu"), 1)]
            .into_iter()
            .collect();
        let fresh = Routed::new(
            "aws",
            vec![
                (
                    "us-east-1".into(),
                    std::sync::Arc::new(us_sim.clone()) as DynProvider,
                ),
                (
                    "eu-west-1".into(),
                    std::sync::Arc::new(eu_sim.clone()) as DynProvider,
                ),
            ],
            groups,
        );
        fresh.terminate_instance(&id).await.unwrap();
        assert!(!eu_sim
            .describe_instance(&id)
            .await
            .unwrap()
            .state
            .is_active());
        // A launch by location goes to the account whose region starts it.
        let mut req = LaunchRequest::new(
            predictive_clouds::IdempotencyToken::new("x2").unwrap(),
            owner.clone(),
            "m6i.large",
            1,
        );
        req.location = Some("us-east-1a".into());
        r.launch(&req).await.unwrap();
        assert_eq!(
            r.list_instances(&owner).await.unwrap().len(),
            2,
            "listing merges both accounts"
        );
    }

    #[tokio::test]
    async fn build_all_refuses_a_group_name_shared_by_two_regions() {
        let d = tempfile::tempdir().unwrap();
        let two = format!(
            "{}\n{}",
            TOML.replace("region = \"us-east-1\"\n", ""),
            &TOML[TOML.find("[[workloads]]").unwrap()..].replace(
                "name = \"web\"",
                "name = \"web-eu\"\nregion = \"eu-west-1\""
            )
        );
        let c = load(&write(d.path(), "c.toml", &two)).unwrap();
        let stack = Stack::none(
            std::sync::Arc::new(predictive_clouds::clock::SystemClock),
            std::sync::Arc::new(predictive_clouds::clock::TokioSleep),
        );
        let (clouds, failed) = build_all(&c, &stack).await;
        if built("aws") {
            assert!(clouds.contains_key("aws"));
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert_eq!(failed[0].0, "web-eu");
            assert!(failed[0].1.contains("workload `web-eu`: field `group`: `web-asg` is also the group of workload `web`"), "{}", failed[0].1);
        } else {
            assert!(clouds.is_empty());
        }
    }
}
