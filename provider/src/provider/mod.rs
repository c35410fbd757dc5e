//! The `predictive` provider: configuration, resources and data sources.
//!
//! The provider asks the engine (`predictive_engine`) for every number it shows and the clouds port
//! (`predictive_clouds`) for every action; it holds no business rules of its own.

#[cfg(feature = "azure")]
pub mod azure_auth;
pub mod budget;
pub mod clone;
pub mod cloud;
pub mod config;
pub mod controller;
pub mod data;
pub mod drift;
pub mod history;
pub mod sizing;
pub mod store;

use crate::framework::diag::error_chain;
use crate::framework::server::{DataSource, Resource};
use crate::framework::{AttrPath, Diagnostics, Schema};
use crate::proto::ProviderDef;
use crate::value::Value;
use async_trait::async_trait;
use predictive_engine::cost::Catalog;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The provider's description for the docs.
pub const DESCRIPTION: &str = "The `predictive` provider sizes capacity at plan time from a workload's forecast demand and the three-cloud price catalog, and pre-provisions it on apply.\n\nEvery number in a plan (demand quantiles, allocation, cost) comes from the `predictive` engine; apply acts through the clouds port (`sim` by default, an in-process cloud whose capacity persists beside the state store; `aws` acts on EC2 in the `aws` block's region, `azure` on virtual machines in the `azure` block's resource group and location, `gcp` on Compute Engine instances in the `gcp` block's project and zone, each in builds with the feature of that name). With a real cloud, every allocation line must be in that cloud and region: restrict the clone's `clouds` and `regions` to it.\n\nWorkload history comes from trace files, a Prometheus server or the usage the `predictive` controller recorded (the `history` block); every source is forecast by the same engine. With a `controller` block, apply also registers each clone with the controller and destroy unregisters it. Secrets (`aws.secret_key`, `azure.client_secret`, `azure.access_token`, `controller.token`) are sensitive: they never reach the state, logs or diagnostics; left unset, they come from the environment.";

/// The price catalog in use.
#[derive(Debug)]
pub enum CatalogRef {
    /// The catalog compiled into the provider.
    Embedded(&'static Catalog),
    /// A catalog read from `catalog_path`.
    File(Box<Catalog>),
}

impl std::ops::Deref for CatalogRef {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        match self {
            CatalogRef::Embedded(c) => c,
            CatalogRef::File(c) => c,
        }
    }
}

/// What configuring the provider produces.
#[derive(Debug)]
pub struct Configured {
    /// The checked configuration.
    pub config: config::ProviderConfig,
    /// The state store.
    pub store: store::Store,
    /// The price catalog.
    pub catalog: CatalogRef,
    /// The cloud that acts.
    pub cloud: predictive_clouds::DynProvider,
    /// Persists the cloud's state where it has any (the `sim` cloud).
    pub cloud_state: cloud::Persistence,
    /// History shared by the resources of this run.
    pub histories: sizing::HistoryCache,
    /// The clock (history windows end at its hour).
    pub clock: Arc<dyn predictive_clouds::clock::Clock>,
    /// The controller token from `$PREDICTIVE_CONTROLLER_TOKEN`.
    pub env_controller_token: Option<config::Secret>,
    /// Forecasts shared by the resources of this run.
    pub forecasts: sizing::ForecastCache,
    /// Sizings shared by the resources of this run.
    pub sizings: sizing::SizingCache,
    /// Earlier clones (features and usage) shared by the resources of this run.
    pub earlier_clones: drift::Cache,
}

impl Configured {
    /// Where history is loaded from.
    pub fn sources(&self) -> sizing::Sources<'_> {
        sizing::Sources {
            history: &self.config.history,
            controller: self.config.controller.as_ref(),
            env_token: self.env_controller_token.as_ref().map(|s| s.0.as_str()),
            catalog: &self.catalog,
            now: self
                .clock
                .now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    /// Saves the cloud's state (a no-op for real clouds); failures become diagnostics.
    pub fn save_cloud(&self, diags: &mut Diagnostics) {
        if let Err(e) = self.cloud_state.save() {
            diags.error("Could not save the sim cloud's state", error_chain(&e));
        }
    }
}

/// The predictive provider.
#[derive(Debug, Default)]
pub struct PredictiveProvider;

#[async_trait]
impl ProviderDef for PredictiveProvider {
    type Data = Configured;
    fn schema(&self) -> Schema {
        config::schema()
    }
    async fn configure(&self, v: &Value, diags: &mut Diagnostics) -> Option<Configured> {
        let config = config::parse_with_env(
            v,
            std::env::var("PREDICTIVE_STATE_PATH").ok(),
            std::env::var("PREDICTIVE_CONTROLLER_TOKEN").ok(),
            diags,
        )?;
        let store = match store::Store::open(&config.state_path) {
            Ok(s) => s,
            Err(e) => {
                diags.attr_error(
                    AttrPath::root("state_path"),
                    "Cannot open the state store",
                    error_chain(&e),
                );
                return None;
            }
        };
        let catalog = match &config.catalog_path {
            None => CatalogRef::Embedded(Catalog::embedded()),
            Some(p) => match std::fs::read_to_string(p)
                .map_err(|e| e.to_string())
                .and_then(|t| Catalog::from_text(&t).map_err(|e| error_chain(&e)))
            {
                Ok(c) => CatalogRef::File(Box::new(c)),
                Err(e) => {
                    diags.attr_error(
                        AttrPath::root("catalog_path"),
                        "Cannot read the price catalog",
                        format!("{}: {e}", p.display()),
                    );
                    return None;
                }
            },
        };
        let (cloud, cloud_state) = cloud::open(&config, &catalog, diags).await?;
        Some(Configured {
            config,
            store,
            catalog,
            cloud,
            cloud_state,
            histories: sizing::HistoryCache::default(),
            clock: Arc::new(predictive_clouds::clock::SystemClock),
            env_controller_token: std::env::var("PREDICTIVE_CONTROLLER_TOKEN")
                .ok()
                .map(config::Secret),
            forecasts: sizing::ForecastCache::default(),
            sizings: sizing::SizingCache::default(),
            earlier_clones: drift::Cache::default(),
        })
    }
    fn resources(&self) -> Vec<Arc<dyn Resource<Configured>>> {
        vec![
            Arc::new(clone::CloneResource),
            Arc::new(budget::BudgetResource),
        ]
    }
    fn data_sources(&self) -> Vec<Arc<dyn DataSource<Configured>>> {
        vec![
            Arc::new(data::ForecastData),
            Arc::new(data::SizingData),
            Arc::new(data::InstanceTypesData),
        ]
    }
}

/// Example HCL shown in the docs, by type name (the files under `examples/`).
fn example(name: &str) -> String {
    match name {
        "provider" => include_str!("../../../examples/provider/provider.tf").to_string(),
        "predictive_clone" => {
            include_str!("../../../examples/resources/predictive_clone/resource.tf").to_string()
        }
        "predictive_budget" => {
            include_str!("../../../examples/resources/predictive_budget/resource.tf").to_string()
        }
        "predictive_forecast" => {
            include_str!("../../../examples/data-sources/predictive_forecast/data-source.tf")
                .to_string()
        }
        "predictive_sizing" => {
            include_str!("../../../examples/data-sources/predictive_sizing/data-source.tf")
                .to_string()
        }
        "predictive_instance_types" => {
            include_str!("../../../examples/data-sources/predictive_instance_types/data-source.tf")
                .to_string()
        }
        _ => String::new(),
    }
}

/// The generated documentation pages: relative path → Markdown.
pub fn docs() -> BTreeMap<String, String> {
    let p = PredictiveProvider;
    let schema = p.schema();
    let input = crate::docs::DocsInput {
        provider: "predictive",
        description: DESCRIPTION,
        provider_schema: &schema,
        resources: p
            .resources()
            .iter()
            .map(|r| {
                (
                    r.type_name().to_string(),
                    (r.schema(), example(r.type_name())),
                )
            })
            .collect(),
        data_sources: p
            .data_sources()
            .iter()
            .map(|r| {
                (
                    r.type_name().to_string(),
                    (r.schema(), example(r.type_name())),
                )
            })
            .collect(),
        provider_example: example("provider"),
    };
    crate::docs::render(&input)
}
