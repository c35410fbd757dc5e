//! Price-API fetchers (feature `price-api`): AWS Pricing `GetProducts`, Azure Retail Prices and
//! the GCP Cloud Billing Catalog, mapped to the engine's catalog rows
//! ([`predictive_engine::cost::build::PriceRow`]) so that every source goes through the same
//! validation rules of [`predictive_engine::cost::build::Builder`].
//!
//! Each cloud has a pure parser of one response page (`parse_*`, unit-tested on the documented
//! shapes) and an async fetcher that follows the pagination (`NextToken`, `NextPageLink`,
//! `nextPageToken`) with a per-request timeout and a page limit. The endpoint is a parameter, so
//! tests run the fetchers against a local fake server; nothing here reaches the real network
//! unless the caller passes the real endpoint.
//!
//! # Mapping rules
//! - Prices must be USD per hour. Other currencies and units are counted in
//!   [`Fetched::rejected`] and dropped.
//! - AWS: Linux, shared tenancy, no pre-installed software, `capacitystatus` Used; on-demand
//!   `Hrs` dimension; reserved = standard class, No Upfront, 1yr/3yr `Hrs` dimension. Specs come
//!   from the product attributes (`vcpu`, `memory` in GiB, Graviton processors are arm64).
//! - Azure: Linux only (product names with `Windows` are skipped), `Consumption` items are
//!   on-demand, or spot when the SKU name ends in ` Spot` (` Low Priority` is skipped);
//!   `Reservation` items give the price of the whole term, divided by the term's hours.
//! - GCP: per-resource SKUs (`<FAMILY> Instance Core|Ram running in <region>`), usage types
//!   `OnDemand`, `Preemptible` (spot), `Commit1Yr`, `Commit3Yr`; machine types are priced as
//!   `vcpu × core price + memory × GiB price` of their family. Machine types with GPUs are
//!   skipped (their accelerators are separate SKUs).
//!
//! Secrets: an API key (GCP) or signing headers (AWS) are passed in by the caller and never
//! appear in errors; error text shows the endpoint without its query string.

use std::collections::BTreeMap;
use std::time::Duration;

use predictive_engine::cost::build::{PriceRow, TypeSpec};
use predictive_engine::cost::{Arch, Catalog, Cloud, Purchase};
use serde_json::Value;

/// Errors of the price fetchers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The HTTP request failed (connect, timeout, body).
    #[error("price request to {endpoint} failed")]
    RequestFailed {
        /// Endpoint without query string.
        endpoint: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The API answered with an error status.
    #[error("price api {endpoint} answered with status {status}")]
    BadStatus {
        /// Endpoint without query string.
        endpoint: String,
        /// HTTP status.
        status: u16,
    },
    /// The response is not the documented shape.
    #[error("price api {endpoint} returned an unexpected response: {reason}")]
    ResponseInvalid {
        /// Endpoint without query string.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// Pagination did not end within the page limit.
    #[error("price api {endpoint} returned more than {limit} pages")]
    TooManyPages {
        /// Endpoint without query string.
        endpoint: String,
        /// The limit.
        limit: u32,
    },
}

/// Result of the price fetchers.
pub type Result<T, E = PricingError> = std::result::Result<T, E>;

/// What a fetch produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetched {
    /// Instance-type specs found (AWS only; Azure and GCP rows need a seed catalog).
    pub types: Vec<TypeSpec>,
    /// Price rows (USD per hour).
    pub rows: Vec<PriceRow>,
    /// Items skipped by the mapping rules (other OS, tenancy, low priority, GPU machine types...).
    pub skipped: u64,
    /// Items rejected: unknown unit or currency, unparsable price.
    pub rejected: u64,
    /// Pages read.
    pub pages: u32,
}

impl Fetched {
    fn merge(&mut self, other: Fetched) {
        self.types.extend(other.types);
        self.rows.extend(other.rows);
        self.skipped += other.skipped;
        self.rejected += other.rejected;
        self.pages += other.pages;
    }
}

/// Settings shared by the fetchers.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Timeout of each request.
    pub timeout: Duration,
    /// At most this many pages.
    pub max_pages: u32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            timeout: Duration::from_secs(30),
            max_pages: 10_000,
        }
    }
}

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

fn invalid(endpoint: &str, reason: impl Into<String>) -> PricingError {
    PricingError::ResponseInvalid {
        endpoint: strip_query(endpoint),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// AWS Pricing GetProducts
// ---------------------------------------------------------------------------------------------

/// Parses one `GetProducts` response (`{"FormatVersion", "PriceList": ["<product json>"...],
/// "NextToken"}`). Returns the rows and the next token.
///
/// # Errors
/// [`PricingError::ResponseInvalid`] when the page or a product is not JSON of that shape.
pub fn parse_aws_get_products(endpoint: &str, body: &str) -> Result<(Fetched, Option<String>)> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| invalid(endpoint, format!("not JSON: {e}")))?;
    let list = v
        .get("PriceList")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(endpoint, "missing `PriceList` array"))?;
    let mut out = Fetched {
        pages: 1,
        ..Fetched::default()
    };
    for item in list {
        // Each entry is a JSON document serialised as a string (aws_v1 format).
        let doc: Value = match item {
            Value::String(s) => serde_json::from_str(s)
                .map_err(|e| invalid(endpoint, format!("PriceList entry is not JSON: {e}")))?,
            other => other.clone(),
        };
        let attrs = &doc["product"]["attributes"];
        let a = |k: &str| attrs.get(k).and_then(Value::as_str).unwrap_or("");
        if a("operatingSystem") != "Linux"
            || a("tenancy") != "Shared"
            || (!a("preInstalledSw").is_empty() && a("preInstalledSw") != "NA")
            || (!a("capacitystatus").is_empty() && a("capacitystatus") != "Used")
            || a("instanceType").is_empty()
        {
            out.skipped += 1;
            continue;
        }
        let (name, region) = (a("instanceType").to_string(), a("regionCode").to_string());
        let vcpu = a("vcpu").parse::<f64>().ok();
        let mem = a("memory")
            .strip_suffix(" GiB")
            .and_then(|m| m.replace(',', "").trim().parse::<f64>().ok());
        let (Some(vcpu), Some(mem)) = (vcpu, mem) else {
            out.rejected += 1;
            continue;
        };
        let gpu = a("gpu").parse::<f64>().unwrap_or(0.0);
        let arch = if a("physicalProcessor").contains("Graviton") {
            Arch::Arm64
        } else {
            Arch::X86_64
        };
        out.types.push(TypeSpec {
            cloud: Cloud::Aws,
            name: name.clone(),
            family: None,
            arch,
            vcpu,
            mem_gib: mem,
            gpu,
            gpu_model: None,
            gpu_mem_gib: 0.0,
            network_gbps: None,
        });
        let hourly = |term: &Value| -> std::result::Result<Option<f64>, ()> {
            let dims = term
                .get("priceDimensions")
                .and_then(Value::as_object)
                .ok_or(())?;
            for d in dims.values() {
                let unit = d.get("unit").and_then(Value::as_str).unwrap_or("");
                if unit == "Hrs" {
                    let usd = d["pricePerUnit"]
                        .get("USD")
                        .and_then(Value::as_str)
                        .ok_or(())?;
                    return usd.parse::<f64>().map(Some).map_err(|_| ());
                }
            }
            Err(())
        };
        if let Some(terms) = doc["terms"]["OnDemand"].as_object() {
            for t in terms.values() {
                match hourly(t) {
                    Ok(Some(p)) if p > 0.0 => out.rows.push(PriceRow {
                        cloud: Cloud::Aws,
                        instance_type: name.clone(),
                        region: region.clone(),
                        purchase: Purchase::OnDemand,
                        usd_per_hour: p,
                    }),
                    _ => out.rejected += 1,
                }
            }
        }
        if let Some(terms) = doc["terms"]["Reserved"].as_object() {
            for t in terms.values() {
                let ta = &t["termAttributes"];
                let s = |k: &str| ta.get(k).and_then(Value::as_str).unwrap_or("");
                if s("PurchaseOption") != "No Upfront" || s("OfferingClass") != "standard" {
                    out.skipped += 1;
                    continue;
                }
                let purchase = match s("LeaseContractLength") {
                    "1yr" => Purchase::Reserved1y,
                    "3yr" => Purchase::Reserved3y,
                    _ => {
                        out.rejected += 1;
                        continue;
                    }
                };
                match hourly(t) {
                    Ok(Some(p)) if p > 0.0 => out.rows.push(PriceRow {
                        cloud: Cloud::Aws,
                        instance_type: name.clone(),
                        region: region.clone(),
                        purchase,
                        usd_per_hour: p,
                    }),
                    _ => out.rejected += 1,
                }
            }
        }
    }
    let next = v
        .get("NextToken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok((out, next))
}

/// Headers that authorise an AWS Pricing request (SigV4), computed by the caller per body.
pub trait AwsSigner: Send + Sync {
    /// Returns the headers (e.g. `Authorization`, `X-Amz-Date`) for a POST of `body`.
    fn sign(&self, body: &[u8]) -> Vec<(String, String)>;
}

/// Fetches every EC2 product of `region` from `GetProducts` at `endpoint`
/// (`https://api.pricing.us-east-1.amazonaws.com/` for the real API, which needs a `signer`).
///
/// # Errors
/// Transport, status, shape and page-limit errors as [`PricingError`].
pub async fn fetch_aws(
    client: &reqwest::Client,
    endpoint: &str,
    region: &str,
    signer: Option<&dyn AwsSigner>,
    opts: &FetchOptions,
) -> Result<Fetched> {
    let mut all = Fetched::default();
    let mut token: Option<String> = None;
    for _ in 0..opts.max_pages {
        let mut req = serde_json::json!({
            "ServiceCode": "AmazonEC2",
            "FormatVersion": "aws_v1",
            "MaxResults": 100,
            "Filters": [
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
                {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
                {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
                {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
                {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
            ],
        });
        if let Some(t) = &token {
            req["NextToken"] = Value::String(t.clone());
        }
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let mut rb = client
            .post(endpoint)
            .timeout(opts.timeout)
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("X-Amz-Target", "AWSPriceListService.GetProducts");
        if let Some(s) = signer {
            for (k, v) in s.sign(&body) {
                rb = rb.header(k, v);
            }
        }
        let text = send(rb.body(body), endpoint).await?;
        let (page, next) = parse_aws_get_products(endpoint, &text)?;
        all.merge(page);
        match next {
            Some(t) => token = Some(t),
            None => return Ok(all),
        }
    }
    Err(PricingError::TooManyPages {
        endpoint: strip_query(endpoint),
        limit: opts.max_pages,
    })
}

async fn send(rb: reqwest::RequestBuilder, endpoint: &str) -> Result<String> {
    let resp = rb.send().await.map_err(|e| PricingError::RequestFailed {
        endpoint: strip_query(endpoint),
        source: Box::new(e.without_url()),
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(PricingError::BadStatus {
            endpoint: strip_query(endpoint),
            status: status.as_u16(),
        });
    }
    resp.text().await.map_err(|e| PricingError::RequestFailed {
        endpoint: strip_query(endpoint),
        source: Box::new(e.without_url()),
    })
}

// ---------------------------------------------------------------------------------------------
// Azure Retail Prices
// ---------------------------------------------------------------------------------------------

/// Parses one Azure Retail Prices page (`{"Items": [...], "NextPageLink", "Count"}`).
///
/// # Errors
/// [`PricingError::ResponseInvalid`] when the page is not of that shape.
pub fn parse_azure_retail(endpoint: &str, body: &str) -> Result<(Fetched, Option<String>)> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| invalid(endpoint, format!("not JSON: {e}")))?;
    let items = v
        .get("Items")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(endpoint, "missing `Items` array"))?;
    let mut out = Fetched {
        pages: 1,
        ..Fetched::default()
    };
    for it in items {
        let s = |k: &str| it.get(k).and_then(Value::as_str).unwrap_or("");
        if s("serviceName") != "Virtual Machines"
            || s("productName").contains("Windows")
            || s("skuName").ends_with("Low Priority")
        {
            out.skipped += 1;
            continue;
        }
        if s("currencyCode") != "USD" {
            out.rejected += 1;
            continue;
        }
        let Some(price) = it
            .get("retailPrice")
            .and_then(Value::as_f64)
            .filter(|p| p.is_finite() && *p > 0.0)
        else {
            out.rejected += 1;
            continue;
        };
        let (purchase, hourly) = match s("type") {
            "Consumption" => {
                if s("unitOfMeasure") != "1 Hour" {
                    out.rejected += 1;
                    continue;
                }
                (
                    if s("skuName").ends_with(" Spot") {
                        Purchase::Spot
                    } else {
                        Purchase::OnDemand
                    },
                    price,
                )
            }
            "Reservation" => match s("reservationTerm") {
                "1 Year" => (
                    Purchase::Reserved1y,
                    price / Purchase::Reserved1y.term_hours(),
                ),
                "3 Years" => (
                    Purchase::Reserved3y,
                    price / Purchase::Reserved3y.term_hours(),
                ),
                _ => {
                    out.rejected += 1;
                    continue;
                }
            },
            _ => {
                out.skipped += 1;
                continue;
            }
        };
        out.rows.push(PriceRow {
            cloud: Cloud::Azure,
            instance_type: s("armSkuName").to_string(),
            region: s("armRegionName").to_string(),
            purchase,
            usd_per_hour: hourly,
        });
    }
    let next = v
        .get("NextPageLink")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok((out, next))
}

/// Fetches Azure VM prices from `url` (the real one is
/// `https://prices.azure.com/api/retail/prices?$filter=serviceName eq 'Virtual Machines'`),
/// following `NextPageLink`.
///
/// # Errors
/// Transport, status, shape and page-limit errors as [`PricingError`].
pub async fn fetch_azure(
    client: &reqwest::Client,
    url: &str,
    opts: &FetchOptions,
) -> Result<Fetched> {
    let mut all = Fetched::default();
    let mut next = url.to_string();
    for _ in 0..opts.max_pages {
        let text = send(client.get(&next).timeout(opts.timeout), &next).await?;
        let (page, link) = parse_azure_retail(&next, &text)?;
        all.merge(page);
        match link {
            Some(l) => next = l,
            None => return Ok(all),
        }
    }
    Err(PricingError::TooManyPages {
        endpoint: strip_query(url),
        limit: opts.max_pages,
    })
}

// ---------------------------------------------------------------------------------------------
// GCP Cloud Billing Catalog
// ---------------------------------------------------------------------------------------------

/// Per-resource GCP prices: (family, region, purchase) → (USD per vCPU-hour, USD per GiB-hour).
pub type GcpResourcePrices = BTreeMap<(String, String, Purchase), (Option<f64>, Option<f64>)>;

/// Parses one Cloud Billing Catalog `services.skus.list` page (`{"skus": [...],
/// "nextPageToken"}`) into per-resource prices added to `acc`.
///
/// # Errors
/// [`PricingError::ResponseInvalid`] when the page is not of that shape.
pub fn parse_gcp_skus(
    endpoint: &str,
    body: &str,
    acc: &mut GcpResourcePrices,
) -> Result<(Fetched, Option<String>)> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| invalid(endpoint, format!("not JSON: {e}")))?;
    let skus = v
        .get("skus")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(endpoint, "missing `skus` array"))?;
    let mut out = Fetched {
        pages: 1,
        ..Fetched::default()
    };
    for sku in skus {
        let cat = &sku["category"];
        let desc = sku.get("description").and_then(Value::as_str).unwrap_or("");
        if cat.get("resourceFamily").and_then(Value::as_str) != Some("Compute") {
            out.skipped += 1;
            continue;
        }
        let purchase = match cat.get("usageType").and_then(Value::as_str).unwrap_or("") {
            "OnDemand" => Purchase::OnDemand,
            "Preemptible" => Purchase::Spot,
            "Commit1Yr" => Purchase::Reserved1y,
            "Commit3Yr" => Purchase::Reserved3y,
            _ => {
                out.skipped += 1;
                continue;
            }
        };
        // "N2 Instance Core running in Americas", "Spot Preemptible N2D AMD Instance Ram running in ...",
        // "Commitment v1: N2 Cpu in Americas for 1 Year".
        let d = desc
            .trim_start_matches("Spot Preemptible ")
            .trim_start_matches("Preemptible ")
            .trim_start_matches("Commitment v1: ");
        let family = d
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let is_core = d.contains(" Instance Core ") || d.contains(" Cpu ");
        let is_ram = d.contains(" Instance Ram ") || d.contains(" Ram ");
        if family.is_empty() || !(is_core || is_ram) {
            out.skipped += 1;
            continue;
        }
        let Some(info) = sku["pricingInfo"].as_array().and_then(|a| a.last()) else {
            out.rejected += 1;
            continue;
        };
        let expr = &info["pricingExpression"];
        let unit = expr.get("usageUnit").and_then(Value::as_str).unwrap_or("");
        let unit_ok = if is_core {
            unit == "h"
        } else {
            unit == "GiBy.h"
        };
        let rate = expr["tieredRates"]
            .as_array()
            .and_then(|r| r.last())
            .map(|r| &r["unitPrice"]);
        let Some(rate) = rate.filter(|_| unit_ok) else {
            out.rejected += 1;
            continue;
        };
        if rate.get("currencyCode").and_then(Value::as_str) != Some("USD") {
            out.rejected += 1;
            continue;
        }
        let units = rate
            .get("units")
            .and_then(|u| {
                u.as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .or_else(|| u.as_f64())
            })
            .unwrap_or(0.0);
        let nanos = rate.get("nanos").and_then(Value::as_f64).unwrap_or(0.0);
        let price = units + nanos * 1e-9;
        // Not a positive number (zero, negative or NaN).
        if price.is_nan() || price <= 0.0 {
            out.rejected += 1;
            continue;
        }
        for r in sku["serviceRegions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let e = acc
                .entry((family.clone(), r.to_string(), purchase))
                .or_insert((None, None));
            if is_core {
                e.0 = Some(price);
            } else {
                e.1 = Some(price);
            }
        }
    }
    let next = v
        .get("nextPageToken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok((out, next))
}

/// Prices the GCP machine types of `seed` from per-resource prices: `vcpu × core + mem × GiB`.
/// Machine types with GPUs and shared-core types are skipped.
pub fn price_gcp_types(seed: &Catalog, prices: &GcpResourcePrices) -> Fetched {
    let mut out = Fetched::default();
    for t in seed.types().iter().filter(|t| t.cloud == Cloud::Gcp) {
        if t.gpu > 0.0 || t.burstable {
            out.skipped += 1;
            continue;
        }
        for ((fam, region, purchase), (core, ram)) in
            prices.range((t.family.clone(), String::new(), Purchase::OnDemand)..)
        {
            if *fam != t.family {
                break;
            }
            if let (Some(c), Some(r)) = (core, ram) {
                out.rows.push(PriceRow {
                    cloud: Cloud::Gcp,
                    instance_type: t.name.clone(),
                    region: region.clone(),
                    purchase: *purchase,
                    usd_per_hour: t.vcpu * c + t.mem_gib * r,
                });
            }
        }
    }
    out
}

/// Fetches the Compute Engine SKUs from `endpoint` (the real one is
/// `https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus`), following
/// `nextPageToken`, and prices the GCP machine types of `seed`.
///
/// # Errors
/// Transport, status, shape and page-limit errors as [`PricingError`]. The API key never appears
/// in them.
pub async fn fetch_gcp(
    client: &reqwest::Client,
    endpoint: &str,
    api_key: Option<&str>,
    seed: &Catalog,
    opts: &FetchOptions,
) -> Result<Fetched> {
    let mut acc = GcpResourcePrices::new();
    let mut all = Fetched::default();
    let mut token: Option<String> = None;
    for _ in 0..opts.max_pages {
        let mut q: Vec<(&str, String)> =
            vec![("pageSize", "5000".into()), ("currencyCode", "USD".into())];
        if let Some(t) = &token {
            q.push(("pageToken", t.clone()));
        }
        if let Some(k) = api_key {
            q.push(("key", k.to_string()));
        }
        let text = send(
            client.get(endpoint).query(&q).timeout(opts.timeout),
            endpoint,
        )
        .await?;
        let (page, next) = parse_gcp_skus(endpoint, &text, &mut acc)?;
        all.merge(page);
        match next {
            Some(t) => token = Some(t),
            None => {
                all.merge(price_gcp_types(seed, &acc));
                return Ok(all);
            }
        }
    }
    Err(PricingError::TooManyPages {
        endpoint: strip_query(endpoint),
        limit: opts.max_pages,
    })
}

/// Runs a fetch to completion on a current-thread runtime, for synchronous callers (the CLI).
///
/// # Errors
/// The fetch's errors, or [`PricingError::RequestFailed`] when the runtime or the HTTP client
/// cannot be built.
pub fn block_on_fetch<F, Fut>(endpoint: &str, fetch: F) -> Result<Fetched>
where
    F: FnOnce(reqwest::Client) -> Fut,
    Fut: std::future::Future<Output = Result<Fetched>>,
{
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| PricingError::RequestFailed {
        endpoint: strip_query(endpoint),
        source: e,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(Box::new(e)))?;
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| failed(Box::new(e.without_url())))?;
    rt.block_on(fetch(client))
}

pub mod sigv4;

#[cfg(test)]
mod tests;
