//! The provider block: state store, price catalog, workload history, which cloud acts, and the
//! aws/azure/gcp blocks (credentials are sensitive and may come from the environment instead).

use crate::framework::modifiers::{NotEmpty, OneOf};
use crate::framework::{AttrPath, Attribute, Block, Diagnostics, NestedBlock, Nesting, Schema};
use crate::value::{Type, Value};
use std::path::PathBuf;

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
                Attribute::optional("catalog_path", Type::String, "Price catalog JSON file replacing the embedded catalog.").validate(NotEmpty),
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
                            Attribute::optional("prometheus_url", Type::String, "Base URL of a Prometheus server to query for usage.").validate(NotEmpty),
                            Attribute::optional("controller_url", Type::String, "Base URL of the `predictive` controller's API.").validate(NotEmpty),
                        ],
                        blocks: vec![],
                    },
                },
                cloud_block("aws", "AWS", vec![
                    Attribute::optional("access_key", Type::String, "Access key id.").sensitive(),
                    Attribute::optional("secret_key", Type::String, "Secret access key.").sensitive(),
                    Attribute::optional("profile", Type::String, "Shared config profile."),
                ]),
                cloud_block("azure", "Azure", vec![
                    Attribute::optional("subscription_id", Type::String, "Subscription id."),
                    Attribute::optional("tenant_id", Type::String, "Tenant id."),
                    Attribute::optional("client_id", Type::String, "Service principal client id."),
                    Attribute::optional("client_secret", Type::String, "Service principal secret.").sensitive(),
                ]),
                cloud_block("gcp", "Google Cloud", vec![
                    Attribute::optional("project", Type::String, "Project id."),
                    Attribute::optional("credentials", Type::String, "Service account key JSON.").sensitive(),
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
    Prometheus(String),
    /// The controller's API.
    Controller(String),
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
}

/// Reads the provider block; problems become diagnostics naming the attribute.
pub fn parse(
    v: &Value,
    env_state_path: Option<String>,
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
            match set[0] {
                "file" => {
                    HistorySource::File(PathBuf::from(h.get("file").as_str().unwrap_or_default()))
                }
                "prometheus_url" => HistorySource::Prometheus(
                    h.get("prometheus_url")
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
                _ => HistorySource::Controller(
                    h.get("controller_url")
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
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
                    if let (Some(x), false) = (val.as_str(), k == "region" || k == "endpoint") {
                        s.values.insert(k.clone(), x.to_string());
                    }
                }
            }
            clouds.insert(name.to_string(), s);
        }
    }
    Some(ProviderConfig {
        state_path,
        catalog_path: v.get("catalog_path").as_str().map(PathBuf::from),
        cloud,
        history,
        clouds,
    })
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
            ("profile", Value::Null),
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
