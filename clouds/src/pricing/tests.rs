//! The price fetchers against a local fake serving the documented response shapes, two pages each.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use predictive_engine::cost::build::Builder;
use serde_json::{json, Value};

use super::*;

fn aws_product(name: &str, vcpu: &str, mem: &str, os: &str, od: &str, ri: &str) -> String {
    json!({
        "product": {"productFamily": "Compute Instance", "sku": "SKU1", "attributes": {
            "instanceType": name, "vcpu": vcpu, "memory": mem, "regionCode": "us-east-1",
            "operatingSystem": os, "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
            "physicalProcessor": if name.contains("6g") { "AWS Graviton2 Processor" } else { "Intel Xeon Platinum 8175" }
        }},
        "terms": {
            "OnDemand": {"SKU1.JRTCKXETXF": {"priceDimensions": {"SKU1.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs", "pricePerUnit": {"USD": od}, "description": "per On Demand Linux hour"}},
                "termAttributes": {}}},
            "Reserved": {
                "SKU1.4NA7Y494T4": {"priceDimensions": {"a": {"unit": "Hrs", "pricePerUnit": {"USD": ri}}},
                    "termAttributes": {"LeaseContractLength": "1yr", "OfferingClass": "standard", "PurchaseOption": "No Upfront"}},
                "SKU1.6QCMYABX3D": {"priceDimensions": {"a": {"unit": "Quantity", "pricePerUnit": {"USD": "500"}}},
                    "termAttributes": {"LeaseContractLength": "1yr", "OfferingClass": "standard", "PurchaseOption": "All Upfront"}}
            }
        }
    })
    .to_string()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn aws_fetcher_should_follow_next_token_and_keep_linux_hourly_prices() {
    // The real API speaks `application/x-amz-json-1.1`, so the fake reads the raw body.
    async fn handler(headers: axum::http::HeaderMap, body: String) -> Json<Value> {
        assert_eq!(
            headers.get("x-amz-target").and_then(|v| v.to_str().ok()),
            Some("AWSPriceListService.GetProducts")
        );
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-amz-json-1.1")
        );
        let body: Value = serde_json::from_str(&body).expect("a JSON request body");
        assert_eq!(body["ServiceCode"], "AmazonEC2");
        if body.get("NextToken").is_none() {
            Json(
                json!({"FormatVersion": "aws_v1", "NextToken": "page2", "PriceList": [
                    aws_product("m5.large", "2", "8 GiB", "Linux", "0.0960000000", "0.0600000000"),
                    aws_product("m5.large", "2", "8 GiB", "Windows", "0.1880000000", "0.1"),
                ]}),
            )
        } else {
            Json(json!({"FormatVersion": "aws_v1", "PriceList": [
                aws_product("m6g.large", "2", "8 GiB", "Linux", "0.0770000000", "0.0480000000"),
            ]}))
        }
    }
    let base = serve(Router::new().route("/", post(handler))).await;
    let client = reqwest::Client::new();
    let f = fetch_aws(
        &client,
        &format!("{base}/"),
        "us-east-1",
        None,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(f.pages, 2);
    assert_eq!(f.skipped, 1 + 2, "windows product, two All Upfront terms");
    let od: Vec<_> = f
        .rows
        .iter()
        .filter(|r| r.purchase == Purchase::OnDemand)
        .collect();
    assert_eq!(od.len(), 2);
    assert!(f.rows.iter().any(|r| r.instance_type == "m5.large"
        && r.purchase == Purchase::Reserved1y
        && (r.usd_per_hour - 0.06).abs() < 1e-12));
    assert!(f
        .types
        .iter()
        .any(|t| t.name == "m6g.large" && t.arch == Arch::Arm64 && t.mem_gib == 8.0));
    // The rows go through the engine's builder like any source.
    let mut b = Builder::new();
    for t in f.types {
        b.add_type(t);
    }
    let src = b.begin_source("aws_pricing_api", "2026-11-26", "GetProducts");
    for r in f.rows {
        b.add_price(src, r);
    }
    let cat = b.finish(None).unwrap();
    assert_eq!(cat.offers().len(), 2);
    assert_eq!(cat.sources()[0].accepted, 4);
}

#[tokio::test]
async fn azure_fetcher_should_follow_next_page_link_and_map_spot_and_reservations() {
    #[derive(Clone)]
    struct Base(Arc<std::sync::Mutex<String>>);
    async fn handler(
        State(base): State<Base>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> Json<Value> {
        let item = |sku: &str,
                    sku_name: &str,
                    price: f64,
                    ty: &str,
                    term: Option<&str>,
                    product: &str,
                    unit: &str| {
            json!({
                "currencyCode": "USD", "retailPrice": price, "unitPrice": price, "armRegionName": "eastus",
                "armSkuName": sku, "skuName": sku_name, "productName": product, "serviceName": "Virtual Machines",
                "unitOfMeasure": unit, "type": ty, "reservationTerm": term,
            })
        };
        if !q.contains_key("page") {
            let next = format!("{}/prices?page=2", base.0.lock().unwrap());
            Json(
                json!({"BillingCurrency": "USD", "Count": 3, "NextPageLink": next, "Items": [
                    item("Standard_D2s_v5", "D2s v5", 0.096, "Consumption", None, "Virtual Machines Dsv5 Series", "1 Hour"),
                    item("Standard_D2s_v5", "D2s v5 Spot", 0.01056, "Consumption", None, "Virtual Machines Dsv5 Series", "1 Hour"),
                    item("Standard_D2s_v5", "D2s v5", 0.188, "Consumption", None, "Virtual Machines Dsv5 Series Windows", "1 Hour"),
                ]}),
            )
        } else {
            Json(
                json!({"BillingCurrency": "USD", "Count": 3, "NextPageLink": null, "Items": [
                    item("Standard_D2s_v5", "D2s v5", 525.6, "Reservation", Some("1 Year"), "Virtual Machines Dsv5 Series", "1 Hour"),
                    item("Standard_D2s_v5", "D2s v5 Low Priority", 0.02, "Consumption", None, "Virtual Machines Dsv5 Series", "1 Hour"),
                    item("Standard_D4s_v5", "D4s v5", 1.0, "Consumption", None, "Virtual Machines Dsv5 Series", "1 Month"),
                ]}),
            )
        }
    }
    let base = Base(Arc::new(std::sync::Mutex::new(String::new())));
    let url = serve(
        Router::new()
            .route("/prices", get(handler))
            .with_state(base.clone()),
    )
    .await;
    *base.0.lock().unwrap() = url.clone();
    let f = fetch_azure(
        &reqwest::Client::new(),
        &format!("{url}/prices"),
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((f.pages, f.skipped, f.rejected), (2, 2, 1), "{f:?}");
    let p = |pu: Purchase| {
        f.rows
            .iter()
            .find(|r| r.purchase == pu)
            .map(|r| r.usd_per_hour)
    };
    assert_eq!(p(Purchase::OnDemand), Some(0.096));
    assert_eq!(p(Purchase::Spot), Some(0.01056));
    assert!(
        (p(Purchase::Reserved1y).unwrap() - 0.06).abs() < 1e-12,
        "525.6 USD per year = 0.06 USD/h"
    );
}

#[tokio::test]
async fn gcp_fetcher_should_price_machine_types_from_resource_skus() {
    fn sku(desc: &str, usage: &str, unit: &str, units: &str, nanos: i64) -> Value {
        json!({"name": "services/6F81-5844-456A/skus/X", "skuId": "X", "description": desc,
            "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute", "resourceGroup": "CPU", "usageType": usage},
            "serviceRegions": ["us-central1"],
            "pricingInfo": [{"pricingExpression": {"usageUnit": unit, "tieredRates": [
                {"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": units, "nanos": nanos}}]}}]})
    }
    async fn handler(Query(q): Query<std::collections::HashMap<String, String>>) -> Json<Value> {
        assert_eq!(q.get("key").map(String::as_str), Some("secret-key"));
        if !q.contains_key("pageToken") {
            Json(json!({"nextPageToken": "t2", "skus": [
                sku("N2 Instance Core running in Americas", "OnDemand", "h", "0", 31_611_000),
                sku("N2 Instance Ram running in Americas", "OnDemand", "GiBy.h", "0", 4_237_000),
            ]}))
        } else {
            Json(json!({"nextPageToken": "", "skus": [
                sku("Spot Preemptible N2 Instance Core running in Americas", "Preemptible", "h", "0", 7_000_000),
                sku("Spot Preemptible N2 Instance Ram running in Americas", "Preemptible", "GiBy.h", "0", 1_000_000),
                sku("N2 Instance Core running in Americas", "OnDemand", "GiBy.mo", "0", 1),
            ]}))
        }
    }
    let url = serve(Router::new().route("/v1/services/6F81-5844-456A/skus", get(handler))).await;
    let endpoint = format!("{url}/v1/services/6F81-5844-456A/skus");
    let text = "format\t1\nversion\tseed\nregion\tgcp\tus-central1\n\
        type\tgcp\tn2-standard-2\tn2\tx86_64\t2\t8\t0\t\t0\t\t\t\n";
    let seed = Catalog::from_text(text).unwrap();
    let f = fetch_gcp(
        &reqwest::Client::new(),
        &endpoint,
        Some("secret-key"),
        &seed,
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        f.rejected, 1,
        "a core SKU priced per GiB-month is an unknown unit"
    );
    let od = f
        .rows
        .iter()
        .find(|r| r.purchase == Purchase::OnDemand)
        .unwrap();
    assert!(
        (od.usd_per_hour - (2.0 * 0.031611 + 8.0 * 0.004237)).abs() < 1e-9,
        "{od:?}"
    );
    let spot = f
        .rows
        .iter()
        .find(|r| r.purchase == Purchase::Spot)
        .unwrap();
    assert!((spot.usd_per_hour - (2.0 * 0.007 + 8.0 * 0.001)).abs() < 1e-9);
}

#[tokio::test]
async fn errors_should_not_leak_the_api_key() {
    async fn handler() -> (axum::http::StatusCode, &'static str) {
        (axum::http::StatusCode::FORBIDDEN, "denied")
    }
    let url = serve(Router::new().route("/skus", get(handler))).await;
    let seed = Catalog::from_text("format\t1\n").unwrap();
    let e = fetch_gcp(
        &reqwest::Client::new(),
        &format!("{url}/skus"),
        Some("secret-key"),
        &seed,
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(matches!(e, PricingError::BadStatus { status: 403, .. }));
    assert!(!text.contains("secret-key"), "{text}");
}
