//! Opens the cloud that apply acts on, and persists the `sim` cloud's state beside the state
//! store (`<state_path>.sim.json`) so that separate terraform runs see the same capacity.

use super::config::ProviderConfig;
use crate::framework::diag::error_chain;
use crate::framework::{AttrPath, Diagnostics};
use predictive_clouds::clock::{SystemClock, TokioSleep};
use predictive_clouds::layer::retry::RetryPolicy;
use predictive_clouds::layer::Stack;
use predictive_clouds::sim::{PriceTable, SimCloud, SimConfig, SimOffer, SimStoreError};
use predictive_clouds::DynProvider;
use predictive_engine::cost::{Catalog, Purchase};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the cloud's state is kept between runs.
#[derive(Debug)]
pub enum Persistence {
    /// Real clouds keep their own state.
    None,
    /// The sim cloud, saved to a JSON file after every change.
    Sim {
        /// The cloud.
        cloud: SimCloud,
        /// Its state file.
        path: PathBuf,
    },
}

impl Persistence {
    /// Saves the state.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self) -> Result<(), SimStoreError> {
        match self {
            Persistence::None => Ok(()),
            Persistence::Sim { cloud, path } => cloud.save(path),
        }
    }
}

/// The sim's price table taken from the engine's catalog: every instance type at its lowest
/// on-demand price, so that any allocation the engine chooses can be launched on the sim.
struct CatalogPrices<'a>(&'a Catalog);

impl PriceTable for CatalogPrices<'_> {
    fn offers(&self) -> Vec<SimOffer> {
        let mut cheapest: BTreeMap<u32, f64> = BTreeMap::new();
        for o in self.0.offers() {
            if let Some(p) = o.price(Purchase::OnDemand) {
                let e = cheapest.entry(o.type_index).or_insert(p);
                *e = e.min(p);
            }
        }
        let types = self.0.types();
        cheapest
            .into_iter()
            .filter_map(|(i, price)| {
                let t = types.get(i as usize)?;
                Some(SimOffer::new(
                    &t.name,
                    t.vcpu.ceil() as u32,
                    (t.mem_gib * 1024.0).round() as u64,
                    price,
                ))
            })
            .collect()
    }
}

/// The sim configuration for a catalog: its regions as locations and its types as offers.
pub fn sim_config(catalog: &Catalog) -> SimConfig {
    let mut locations: Vec<String> = catalog.regions().iter().map(|r| r.name.clone()).collect();
    locations.sort();
    locations.dedup();
    let mut cfg = SimConfig::default().with_prices(&CatalogPrices(catalog));
    if !locations.is_empty() {
        cfg.locations = locations;
    }
    cfg
}

/// Every cloud call gets a deadline and retries of retryable errors (the clouds crate's shared
/// layers; the provider has no retry loop of its own).
fn layers() -> Stack {
    Stack {
        timeout: Some(Duration::from_secs(60)),
        retry: Some(RetryPolicy::default()),
        ..Stack::none(Arc::new(SystemClock), Arc::new(TokioSleep))
    }
}

/// The cloud named in the configuration.
pub async fn open(
    config: &ProviderConfig,
    catalog: &Catalog,
    diags: &mut Diagnostics,
) -> Option<(DynProvider, Persistence)> {
    match config.cloud.as_str() {
        "sim" => {
            let mut path = config.state_path.clone().into_os_string();
            path.push(".sim.json");
            let path = PathBuf::from(path);
            match SimCloud::load_or_new(&path, sim_config(catalog), Arc::new(SystemClock)) {
                Ok(cloud) => Some((
                    layers().apply(Arc::new(cloud.clone())),
                    Persistence::Sim { cloud, path },
                )),
                Err(e) => {
                    diags.attr_error(
                        AttrPath::root("state_path"),
                        "Cannot load the sim cloud's state",
                        error_chain(&e),
                    );
                    None
                }
            }
        }
        #[cfg(feature = "aws")]
        "aws" => open_aws(config, diags)
            .await
            .map(|c| (layers().apply(c), Persistence::None)),
        #[cfg(feature = "azure")]
        "azure" => open_azure(config, diags)
            .await
            .map(|c| (layers().apply(c), Persistence::None)),
        #[cfg(feature = "gcp")]
        "gcp" => open_gcp(config, diags)
            .await
            .map(|c| (layers().apply(c), Persistence::None)),
        other => {
            diags.attr_error(
                AttrPath::root("cloud"),
                "Cloud not available",
                format!("cloud: {other:?} has no adapter in this build of the provider (built without the `{other}` feature); use \"sim\""),
            );
            None
        }
    }
}

/// The region a cloud's instance location belongs to: EC2 reports availability zones
/// (`us-east-1a`), the catalog and the allocation speak of regions (`us-east-1`).
pub fn region_of(cloud: &str, location: &str) -> String {
    if cloud == "gcp" {
        // Compute Engine reports zones (`europe-west1-b`).
        return super::config::gcp_region_of_zone(location);
    }
    let b = location.as_bytes();
    if cloud == "aws"
        && b.len() > 1
        && b[b.len() - 1].is_ascii_lowercase()
        && b[b.len() - 2].is_ascii_digit()
    {
        location[..location.len() - 1].to_string()
    } else {
        location.to_string()
    }
}

/// The region a real cloud's adapter acts in (`None` for the sim, which hosts every region).
pub fn adapter_region(config: &ProviderConfig) -> Option<String> {
    match config.cloud.as_str() {
        "sim" => None,
        "gcp" => Some(super::config::gcp_region_of_zone(&gcp_zone(config))),
        c => Some(
            config
                .clouds
                .get(c)
                .and_then(|s| s.region.clone())
                .unwrap_or_else(|| default_region(c).to_string()),
        ),
    }
}

fn default_region(cloud: &str) -> &'static str {
    match cloud {
        "aws" => "us-east-1",
        "azure" => "eastus",
        _ => "us-central1",
    }
}

/// The Compute Engine zone the gcp adapter acts in: the block's `zone`, else `<region>-b`.
pub fn gcp_zone(config: &ProviderConfig) -> String {
    let settings = config.clouds.get("gcp");
    if let Some(z) = settings.and_then(|s| s.values.get("zone")) {
        return z.clone();
    }
    let region = settings
        .and_then(|s| s.region.clone())
        .unwrap_or_else(|| default_region("gcp").to_string());
    format!("{region}-b")
}

/// A setting from the block, else from the environment.
#[cfg(any(feature = "azure", feature = "gcp"))]
fn setting_or_env(settings: &super::config::CloudSettings, key: &str, env: &str) -> Option<String> {
    settings
        .values
        .get(key)
        .cloned()
        .or_else(|| std::env::var(env).ok())
        .filter(|v| !v.trim().is_empty())
}

/// The Azure adapter from the `azure` block: subscription, resource group, location (`region`),
/// endpoint override, VM template and credentials (`access_token`, else the service principal
/// in the block exchanged for a token, else the SDK's environment chain).
#[cfg(feature = "azure")]
async fn open_azure(config: &ProviderConfig, diags: &mut Diagnostics) -> Option<DynProvider> {
    use predictive_clouds::azure::{AzureCredentials, AzureParams, AzureProvider};
    let settings = config.clouds.get("azure").cloned().unwrap_or_default();
    let at = |attr: &str| AttrPath::root("azure").index(0).attr(attr);
    let Some(subscription) = setting_or_env(&settings, "subscription_id", "AZURE_SUBSCRIPTION_ID")
    else {
        diags.attr_error(
            at("subscription_id"),
            "Missing Azure subscription",
            "azure.subscription_id: set it or $AZURE_SUBSCRIPTION_ID",
        );
        return None;
    };
    let Some(resource_group) = settings.values.get("resource_group").cloned() else {
        diags.attr_error(
            at("resource_group"),
            "Missing Azure resource group",
            "azure.resource_group: the resource group of the VMs must be set",
        );
        return None;
    };
    let mut params = AzureParams::new(
        subscription,
        resource_group,
        adapter_region(config).unwrap_or_default(),
    );
    params.endpoint = settings.endpoint.clone();
    if let Some(t) = settings.values.get("vm_template") {
        match serde_json::from_str::<serde_json::Value>(t) {
            Ok(v) if v.is_object() => params.vm_template = Some(v),
            Ok(_) => {
                diags.attr_error(
                    at("vm_template"),
                    "Invalid VM template",
                    "azure.vm_template: must be a JSON object (the VM's `properties`)",
                );
                return None;
            }
            Err(e) => {
                diags.attr_error(
                    at("vm_template"),
                    "Invalid VM template",
                    format!("azure.vm_template: not JSON: {e}"),
                );
                return None;
            }
        }
    }
    if let Some(token) = settings.values.get("access_token") {
        params.credentials = AzureCredentials::FixedToken(token.clone());
    } else if let (Some(client_id), Some(secret)) = (
        settings.values.get("client_id"),
        settings.values.get("client_secret"),
    ) {
        let Some(tenant) = setting_or_env(&settings, "tenant_id", "AZURE_TENANT_ID") else {
            diags.attr_error(
                at("tenant_id"),
                "Missing Azure tenant",
                "azure.tenant_id: a service principal needs its tenant; set it or $AZURE_TENANT_ID",
            );
            return None;
        };
        let authority = settings
            .values
            .get("authority_host")
            .map_or("https://login.microsoftonline.com", String::as_str);
        let resource = settings
            .endpoint
            .as_deref()
            .unwrap_or("https://management.azure.com");
        match super::azure_auth::client_credentials_token(
            authority, &tenant, client_id, secret, resource,
        )
        .await
        {
            Ok(token) => params.credentials = AzureCredentials::FixedToken(token),
            Err(e) => {
                diags.attr_error(
                    at("client_secret"),
                    "Azure sign-in failed",
                    format!("azure: {}", error_chain(&e)),
                );
                return None;
            }
        }
    }
    let built = params
        .check()
        .map_err(|e| error_chain(&e))
        .and_then(|valid| AzureProvider::new(valid).map_err(|e| error_chain(&e)));
    match built {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            // The adapter's errors name the field, never a credential's value.
            diags.attr_error(
                AttrPath::root("azure").index(0),
                "Invalid azure block",
                format!("azure: {e}"),
            );
            None
        }
    }
}

/// The Compute Engine adapter from the `gcp` block: project, zone, endpoint override, instance
/// template and credentials (a service-account key, Application Default Credentials, or none
/// for an emulator).
#[cfg(feature = "gcp")]
async fn open_gcp(config: &ProviderConfig, diags: &mut Diagnostics) -> Option<DynProvider> {
    use predictive_clouds::gcp::{GcpCredentials, GcpParams, GcpProvider, GcpServiceAccountKey};
    let settings = config.clouds.get("gcp").cloned().unwrap_or_default();
    let Some(project) = setting_or_env(&settings, "project", "GOOGLE_CLOUD_PROJECT") else {
        diags.attr_error(
            AttrPath::root("gcp").index(0).attr("project"),
            "Missing Google Cloud project",
            "gcp.project: set it or $GOOGLE_CLOUD_PROJECT",
        );
        return None;
    };
    let mut params = GcpParams::new(project.clone(), gcp_zone(config));
    params.endpoint = settings.endpoint.clone();
    params.instance_template = settings.values.get("instance_template").map(|t| {
        if t.contains('/') {
            t.clone()
        } else {
            format!("projects/{project}/global/instanceTemplates/{t}")
        }
    });
    let anonymous = settings.values.get("anonymous").map(String::as_str) == Some("true");
    let key = settings.values.get("credentials");
    if anonymous && key.is_some() {
        diags.attr_error(
            AttrPath::root("gcp").index(0).attr("credentials"),
            "Conflicting gcp credentials",
            "gcp.credentials: set either credentials (a service-account key) or anonymous = true, not both",
        );
        return None;
    }
    if anonymous {
        params.credentials = GcpCredentials::Anonymous;
    }
    if let Some(k) = key {
        params.credentials =
            GcpCredentials::ServiceAccountKey(GcpServiceAccountKey::new(k.clone()));
    }
    let built = match params.check() {
        Ok(valid) => GcpProvider::new(valid).await,
        Err(e) => Err(e),
    };
    match built {
        Ok(p) => Some(Arc::new(p)),
        // The adapter's key errors name a field or a JSON position, never the key's text.
        Err(e @ predictive_clouds::gcp::Error::ServiceAccountKey { .. }) => {
            diags.attr_error(
                AttrPath::root("gcp").index(0).attr("credentials"),
                "Invalid gcp credentials",
                format!("gcp.credentials: {}", error_chain(&e)),
            );
            None
        }
        Err(e) => {
            diags.attr_error(
                AttrPath::root("gcp").index(0),
                "Invalid gcp block",
                format!("gcp: {}", error_chain(&e)),
            );
            None
        }
    }
}

/// The EC2 adapter from the `aws` block: its region, endpoint override and credentials (the
/// block's pair, else the SDK's environment chain).
#[cfg(feature = "aws")]
async fn open_aws(config: &ProviderConfig, diags: &mut Diagnostics) -> Option<DynProvider> {
    use predictive_clouds::aws::{AwsCredentials, AwsParams, AwsProvider};
    let settings = config.clouds.get("aws").cloned().unwrap_or_default();
    let mut params = AwsParams::new(adapter_region(config).unwrap_or_default());
    params.endpoint_url = settings.endpoint.clone();
    params.image_id = settings.values.get("image_id").cloned();
    params.subnet_id = settings.values.get("subnet_id").cloned();
    if let (Some(k), Some(s)) = (
        settings.values.get("access_key"),
        settings.values.get("secret_key"),
    ) {
        params.credentials = AwsCredentials::Static {
            access_key_id: k.clone(),
            secret_access_key: s.clone(),
        };
    }
    match params.check() {
        Ok(valid) => Some(Arc::new(AwsProvider::connect(valid).await)),
        Err(e) => {
            // The adapter's errors name the field, never a credential's value.
            diags.attr_error(
                AttrPath::root("aws").index(0),
                "Invalid aws block",
                format!("aws: {}", error_chain(&e)),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_should_map_to_their_region_on_aws_only() {
        let cases = [
            ("aws", "us-east-1a", "us-east-1"),
            ("aws", "us-east-1", "us-east-1"),
            ("aws", "eu-west-3c", "eu-west-3"),
            ("sim", "us-east-1a", "us-east-1a"),
        ];
        for (cloud, loc, want) in cases {
            assert_eq!(region_of(cloud, loc), want, "{cloud} {loc}");
        }
    }
}
