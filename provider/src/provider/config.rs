//! The provider block: state store, price catalog, workload history, which cloud acts, and the
//! aws/azure/gcp blocks (credentials are sensitive and may come from the environment instead).

use crate::framework::modifiers::{NotEmpty, OneOf};
use crate::framework::{AttrPath, Attribute, Block, Diagnostics, NestedBlock, Nesting, Schema};
use crate::value::{Type, Value};
use std::path::PathBuf;

/// The default PromQL query of a workload's CPU usage in cores.
pub const DEFAULT_PROM_QUERY: &str =
    "sum(rate(container_cpu_usage_seconds_total{workload=\"{workload}\"}[5m]))";

/// Clouds the provider can act on.
pub const CLOUDS: &[&str] = &["sim", "aws", "azure", "gcp"];

/// The provider block schema.
pub fn schema() -> Schema {
    let cloud_block = |name: &str, what: &str, extra: Vec<Attribute>| {
        NestedBlock {
        name: name.into(),
        nesting: Nesting::List,
        min_items: 0,
        max_items: 1,
        block: Block {
            description: format!("Settings for {what}. Credentials left unset come from the environment, as {what}'s own SDK finds them."),
            attributes: [
                vec![
                    Attribute::optional("region", Type::String, "Default region (or location) for capacity in this cloud."),
                    Attribute::optional("endpoint", Type::String, "Endpoint override, e.g. a local emulator's URL."),
                ],
                extra,
            ]
            .concat(),
            blocks: vec![],
        },
    }
    };
    Schema {
        version: 0,
        block: Block {
            description: "Configures where `predictive` keeps its state, which prices it uses, where workload history comes from and which cloud it provisions on.".into(),
            attributes: vec![
                Attribute::optional("state_path", Type::String, "SQLite file holding clones and budgets, and the `sim` cloud's capacity beside it (`<state_path>.sim.json`). Defaults to `$PREDICTIVE_STATE_PATH`, else `.predictive/state.db` in the working directory.").validate(NotEmpty),
                Attribute::optional("catalog_path", Type::String, "Price catalog file (the engine's catalog text format, as `predictive catalog update --out` writes it) replacing the embedded catalog.").validate(NotEmpty),
                Attribute::optional("cloud", Type::String, "The cloud that apply provisions on. `sim` (the default) is an in-process cloud whose capacity persists next to the state store.").validate(OneOf(CLOUDS)),
            ],
            blocks: vec![
                NestedBlock {
                    name: "history".into(),
                    nesting: Nesting::List,
                    min_items: 0,
                    max_items: 1,
                    block: Block {
                        description: "Where the usage history of named workloads comes from. Set one of the attributes.".into(),
                        attributes: vec![
                            Attribute::optional("file", Type::String, "A trace or metrics file (canonical `timestamp,value` CSV of CPU cores, optionally gzipped) or a directory of them; the workload name is the file stem.").validate(NotEmpty),
                            Attribute::optional("prometheus_url", Type::String, "Base URL of a Prometheus server (`http://HOST:9090`); a workload's history is the `query_range` of `prometheus_query` over `lookback` at a 1 h step.").validate(NotEmpty),
                            Attribute::optional("controller_url", Type::String, "Base URL of the `predictive` controller's gRPC API (`http://HOST:PORT`); a workload's history is the usage the controller recorded for it over `lookback` (`GetHistory`, hourly means), turned into vCPU by the workload's `capacity_per_instance` and `instance_type`. The bearer token is the `controller` block's `token`, else `$PREDICTIVE_CONTROLLER_TOKEN`.").validate(NotEmpty),
                            Attribute::with_default("prometheus_query", Type::String, Value::string(DEFAULT_PROM_QUERY), "PromQL query giving a workload's CPU usage in cores; `{workload}` is replaced by the workload name.").validate(NotEmpty),
                            Attribute::with_default("lookback", Type::String, Value::string("14d"), "How much Prometheus or controller history to read, like `14d` or `36h`."),
                        ],
                        blocks: vec![],
                    },
                },
                NestedBlock {
                    name: "controller".into(),
                    nesting: Nesting::List,
                    min_items: 0,
                    max_items: 1,
                    block: Block {
                        description: "The `predictive` controller's gRPC API. When set, apply registers each clone with the controller (and destroy unregisters it) instead of only in the local state store.".into(),
                        attributes: vec![
                            Attribute::required("endpoint", Type::String, "API address, `http://HOST:PORT`.").validate(NotEmpty),
                            Attribute::optional("token", Type::String, "Bearer token of the API; defaults to `$PREDICTIVE_CONTROLLER_TOKEN`.").sensitive(),
                        ],
                        blocks: vec![],
                    },
                },
                cloud_block("aws", "AWS", vec![
                    Attribute::optional("access_key", Type::String, "Access key id; set with `secret_key`, or leave both unset for the SDK's chain (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, web identity, instance metadata).").sensitive(),
                    Attribute::optional("secret_key", Type::String, "Secret access key.").sensitive(),
                    Attribute::optional("image_id", Type::String, "AMI that pre-provisioned instances boot."),
                    Attribute::optional("subnet_id", Type::String, "Subnet of pre-provisioned instances (the default VPC when unset)."),
                ]),
                cloud_block("azure", "Azure", vec![
                    Attribute::optional("subscription_id", Type::String, "Subscription id; defaults to `$AZURE_SUBSCRIPTION_ID`.").validate(NotEmpty),
                    Attribute::optional("resource_group", Type::String, "Resource group the VMs are created in.").validate(NotEmpty),
                    Attribute::optional("vm_template", Type::String, "VM `properties` as JSON (storage, OS and network profiles) for pre-provisioned VMs; the VM size is set from the allocation. Required to launch VMs.").validate(NotEmpty),
                    Attribute::optional("tenant_id", Type::String, "Tenant id of the service principal; defaults to `$AZURE_TENANT_ID`."),
                    Attribute::optional("client_id", Type::String, "Service principal client id; set with `client_secret` and `tenant_id`, or leave unset for the SDK's chain (`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`/`AZURE_TENANT_ID`, workload identity, managed identity, Azure CLI)."),
                    Attribute::optional("client_secret", Type::String, "Service principal secret, exchanged for a token at `authority_host` when the provider is configured.").sensitive(),
                    Attribute::optional("authority_host", Type::String, "Microsoft Entra authority the service principal signs in at. Defaults to `https://login.microsoftonline.com`.").validate(NotEmpty),
                    Attribute::optional("access_token", Type::String, "A bearer token for Azure Resource Manager, used as is instead of any other credential.").sensitive(),
                ]),
                cloud_block("gcp", "Google Cloud", vec![
                    Attribute::optional("project", Type::String, "Project id; defaults to `$GOOGLE_CLOUD_PROJECT`.").validate(NotEmpty),
                    Attribute::optional("zone", Type::String, "Zone of pre-provisioned instances, in `region` when both are set; defaults to `<region>-b`.").validate(NotEmpty),
                    Attribute::optional("instance_template", Type::String, "Instance template (name or URL) that pre-provisioned instances are created from; the machine type is set from the allocation. Required to launch instances.").validate(NotEmpty),
                    Attribute::optional("anonymous", Type::Bool, "Send no credentials (a local emulator). Otherwise credentials are `credentials` when set, else Application Default Credentials from the environment (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud, the metadata server)."),
                    Attribute::optional("credentials", Type::String, "A service-account key: the text of its JSON key file (e.g. `file(\"key.json\")`), used with the `cloud-platform` scope instead of Application Default Credentials. Never written to state, logs or diagnostics.").sensitive().validate(NotEmpty),
                ]),
            ],
        },
    }
}

/// Credentials and endpoints of one cloud. `Debug` never prints secrets.
#[derive(Clone, Default)]
pub struct CloudSettings {
    /// Region or location.
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// Other settings, secrets included.
    pub values: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for CloudSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudSettings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("settings", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where workload history comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum HistorySource {
    /// No source configured: only inline profiles can be sized.
    None,
    /// A file or a directory of files.
    File(PathBuf),
    /// A Prometheus server.
    Prometheus {
        /// Base URL.
        url: String,
        /// Query template (`{workload}` is replaced).
        query: String,
        /// Seconds of history to read.
        lookback_secs: i64,
    },
    /// The controller's recorded usage (`GetHistory`; token in [`ProviderConfig::controller`] or
    /// the environment).
    Controller {
        /// Base URL of the API.
        url: String,
        /// Seconds of history to read.
        lookback_secs: i64,
    },
}

/// A secret whose `Debug` output is `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The controller's API endpoint and token. `Debug` never prints the token.
#[derive(Clone, PartialEq)]
pub struct ControllerSettings {
    /// `http://HOST:PORT`.
    pub endpoint: String,
    /// Bearer token.
    pub token: String,
}

impl std::fmt::Debug for ControllerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerSettings")
            .field("endpoint", &self.endpoint)
            .field("token", &"***")
            .finish()
    }
}

/// The checked provider configuration.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// SQLite state file.
    pub state_path: PathBuf,
    /// Catalog override.
    pub catalog_path: Option<PathBuf>,
    /// The cloud that acts.
    pub cloud: String,
    /// History source.
    pub history: HistorySource,
    /// Per-cloud settings.
    pub clouds: std::collections::BTreeMap<String, CloudSettings>,
    /// Where clones are registered for the controller (`None`: the local state store only).
    pub controller: Option<ControllerSettings>,
}

/// Reads the provider block; problems become diagnostics naming the attribute.
pub fn parse(
    v: &Value,
    env_state_path: Option<String>,
    diags: &mut Diagnostics,
) -> Option<ProviderConfig> {
    parse_with_env(v, env_state_path, None, diags)
}

/// [`parse`] with the controller token from the environment (`$PREDICTIVE_CONTROLLER_TOKEN`).
pub fn parse_with_env(
    v: &Value,
    env_state_path: Option<String>,
    env_controller_token: Option<String>,
    diags: &mut Diagnostics,
) -> Option<ProviderConfig> {
    let state_path = v
        .get("state_path")
        .as_str()
        .map(PathBuf::from)
        .or_else(|| env_state_path.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".predictive/state.db"));
    let cloud = v.get("cloud").as_str().unwrap_or("sim").to_string();
    let history = match v.get("history").as_elements().and_then(|e| e.first()) {
        None => HistorySource::None,
        Some(h) => {
            let set: Vec<&str> = ["file", "prometheus_url", "controller_url"]
                .into_iter()
                .filter(|k| !h.get(k).is_null())
                .collect();
            if set.len() != 1 {
                diags.attr_error(
                    AttrPath::root("history").index(0),
                    "Invalid history block",
                    format!("history: set exactly one of file, prometheus_url, controller_url (found {})", if set.is_empty() { "none".into() } else { set.join(", ") }),
                );
                return None;
            }
            let lookback = h.get("lookback").as_str().unwrap_or("14d");
            let Some(lookback_secs) = predictive_traces::parse_duration(lookback) else {
                diags.attr_error(
                    AttrPath::root("history").index(0).attr("lookback"),
                    "Invalid lookback",
                    format!(
                        "history.lookback: {lookback:?} is not a duration like \"14d\" or \"36h\""
                    ),
                );
                return None;
            };
            match set[0] {
                "file" => {
                    HistorySource::File(PathBuf::from(h.get("file").as_str().unwrap_or_default()))
                }
                "prometheus_url" => HistorySource::Prometheus {
                    url: h
                        .get("prometheus_url")
                        .as_str()
                        .unwrap_or_default()
                        .trim_end_matches('/')
                        .to_string(),
                    query: h
                        .get("prometheus_query")
                        .as_str()
                        .unwrap_or(DEFAULT_PROM_QUERY)
                        .to_string(),
                    lookback_secs,
                },
                _ => HistorySource::Controller {
                    url: h
                        .get("controller_url")
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    lookback_secs,
                },
            }
        }
    };
    let mut clouds = std::collections::BTreeMap::new();
    for name in ["aws", "azure", "gcp"] {
        if let Some(b) = v.get(name).as_elements().and_then(|e| e.first()) {
            let mut s = CloudSettings {
                region: b.get("region").as_str().map(String::from),
                endpoint: b.get("endpoint").as_str().map(String::from),
                ..Default::default()
            };
            if let Value::Object(m) = b {
                for (k, val) in m {
                    if k == "region" || k == "endpoint" {
                        continue;
                    }
                    if let Some(x) = val.as_str() {
                        s.values.insert(k.clone(), x.to_string());
                    } else if let Some(b) = val.as_bool() {
                        s.values.insert(k.clone(), b.to_string());
                    }
                }
            }
            clouds.insert(name.to_string(), s);
        }
    }
    let controller = match v.get("controller").as_elements().and_then(|e| e.first()) {
        None => None,
        Some(c) => {
            let token = c
                .get("token")
                .as_str()
                .map(String::from)
                .or(env_controller_token.clone());
            let Some(token) = token.filter(|t| !t.is_empty()) else {
                diags.attr_error(
                    AttrPath::root("controller").index(0).attr("token"),
                    "Missing controller token",
                    "controller.token: set it or $PREDICTIVE_CONTROLLER_TOKEN",
                );
                return None;
            };
            Some(ControllerSettings {
                endpoint: c.get("endpoint").as_str().unwrap_or_default().to_string(),
                token,
            })
        }
    };
    if let HistorySource::Controller { .. } = &history {
        if controller.is_none() && env_controller_token.as_deref().unwrap_or("").is_empty() {
            diags.attr_error(
                AttrPath::root("history").index(0).attr("controller_url"),
                "Missing controller token",
                "history.controller_url: the API needs a bearer token: set the controller block's token or $PREDICTIVE_CONTROLLER_TOKEN",
            );
            return None;
        }
    }
    if let Some(aws) = clouds.get("aws") {
        if aws.values.contains_key("access_key") != aws.values.contains_key("secret_key") {
            diags.attr_error(
                AttrPath::root("aws").index(0).attr("secret_key"),
                "Incomplete AWS credentials",
                "aws: set both access_key and secret_key, or neither (the SDK's environment chain)",
            );
            return None;
        }
    }
    if let Some(az) = clouds.get("azure") {
        let (id, secret) = (
            az.values.contains_key("client_id"),
            az.values.contains_key("client_secret"),
        );
        if id != secret {
            let (missing, other) = if id {
                ("client_secret", "client_id")
            } else {
                ("client_id", "client_secret")
            };
            diags.attr_error(
                AttrPath::root("azure").index(0).attr(missing),
                "Incomplete Azure credentials",
                format!("azure: {other} needs {missing}; set both, or neither (the SDK's environment chain)"),
            );
            return None;
        }
    }
    if let Some(g) = clouds.get("gcp") {
        if let (Some(region), Some(zone)) = (&g.region, g.values.get("zone")) {
            if &gcp_region_of_zone(zone) != region {
                diags.attr_error(
                    AttrPath::root("gcp").index(0).attr("zone"),
                    "Zone outside the region",
                    format!("gcp.zone: {zone:?} is not in region {region:?}"),
                );
                return None;
            }
        }
    }
    Some(ProviderConfig {
        controller,
        state_path,
        catalog_path: v.get("catalog_path").as_str().map(PathBuf::from),
        cloud,
        history,
        clouds,
    })
}

/// The region of a Compute Engine zone (`europe-west1-b` → `europe-west1`); a name without a
/// zone suffix is returned as is.
pub fn gcp_region_of_zone(zone: &str) -> String {
    match zone.rsplit_once('-') {
        Some((region, suffix))
            if suffix.len() == 1 && suffix.bytes().all(|b| b.is_ascii_lowercase()) =>
        {
            region.to_string()
        }
        _ => zone.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: Vec<(&str, Value)>) -> Value {
        let ty = schema().block.value_type();
        let mut v = crate::value::msgpack::decode(
            &crate::value::msgpack::encode(&Value::object(Vec::<(String, Value)>::new()), &ty),
            &ty,
        )
        .unwrap();
        for (k, x) in pairs {
            v.set(k, x);
        }
        v
    }

    #[test]
    fn defaults_should_be_the_sim_cloud_and_a_local_state_file() {
        let mut d = Diagnostics::default();
        let c = parse(&cfg(vec![]), None, &mut d).unwrap();
        assert_eq!(c.cloud, "sim");
        assert_eq!(c.state_path, PathBuf::from(".predictive/state.db"));
        assert_eq!(c.history, HistorySource::None);
        let c = parse(&cfg(vec![]), Some("/tmp/x.db".into()), &mut d).unwrap();
        assert_eq!(c.state_path, PathBuf::from("/tmp/x.db"));
    }

    #[test]
    fn a_history_block_with_two_sources_should_name_the_block() {
        let h = Value::List(vec![Value::object([
            ("file", Value::string("a.csv")),
            ("prometheus_url", Value::string("http://p")),
            ("controller_url", Value::Null),
            ("prometheus_query", Value::Null),
            ("lookback", Value::Null),
        ])]);
        let mut d = Diagnostics::default();
        assert!(parse(&cfg(vec![("history", h)]), None, &mut d).is_none());
        assert_eq!(d.0[0].path, Some(AttrPath::root("history").index(0)));
    }

    #[test]
    fn secrets_should_not_show_in_debug_output() {
        let aws = Value::List(vec![Value::object([
            ("region", Value::string("us-east-1")),
            ("endpoint", Value::Null),
            ("access_key", Value::string("AKIDEXAMPLE")),
            ("secret_key", Value::string("s3cr3t-value")),
            ("image_id", Value::Null),
            ("subnet_id", Value::Null),
        ])]);
        let mut d = Diagnostics::default();
        let c = parse(&cfg(vec![("aws", aws)]), None, &mut d).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("s3cr3t-value") && !dbg.contains("AKIDEXAMPLE"),
            "{dbg}"
        );
        assert_eq!(c.clouds["aws"].values["secret_key"], "s3cr3t-value");
    }
}
