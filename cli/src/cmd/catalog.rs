//! `catalog` subcommands: show the embedded price catalog, or rebuild one from source files.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use predictive_engine::cost::build::{Builder, SourceSet, SourceText};
use predictive_engine::cost::{Catalog, Cloud, Purchase};

/// The `catalog` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Show the catalog's version, sources with snapshot dates and validation counts, and sizes.
    Info(InfoArgs),
    /// Rebuild a catalog from price source files (the layout of ../shared/data/prices).
    Update(UpdateArgs),
}

/// Arguments of `catalog info`.
#[derive(Debug, clap::Args)]
pub(crate) struct InfoArgs {
    /// Read this catalog file instead of the embedded one.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `catalog update`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    /// Directory holding aws_karpenter/, aws_skypilot/, azure_skypilot/, gcp_cyclenerd/ (any subset).
    #[arg(long, required_unless_present = "from_api")]
    from: Option<PathBuf>,
    /// Also (or instead) read these clouds' public price APIs: aws, azure, gcp (comma-separated;
    /// needs the `price-api` feature). AWS signs with SigV4 from `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`); GCP reads its key from `GOOGLE_API_KEY`.
    #[arg(long = "from-api", value_delimiter = ',')]
    from_api: Vec<String>,
    /// Endpoint of the price API (default: the cloud's public endpoint; one cloud only).
    #[arg(long)]
    endpoint: Option<String>,
    /// Regions to fetch from the price APIs (comma-separated; default us-east-1 for AWS, eastus for
    /// Azure, every region for GCP).
    #[arg(long, value_delimiter = ',')]
    region: Vec<String>,
    /// Where to write the catalog (the embedded one lives at engine/data/catalog.tsv.txt).
    #[arg(long, default_value = "catalog.tsv.txt")]
    out: PathBuf,
    /// Version label (default: newest snapshot date + ".1").
    #[arg(long)]
    version: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Loads the catalog a command should use: a file when given, else the embedded one.
pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<std::borrow::Cow<'static, Catalog>> {
    match path {
        None => Ok(std::borrow::Cow::Borrowed(Catalog::embedded())),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading catalog {}", p.display()))?;
            let c = Catalog::from_text(&text)
                .with_context(|| format!("parsing catalog {}", p.display()))?;
            Ok(std::borrow::Cow::Owned(c))
        }
    }
}

/// Runs the subcommand.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Info(a) => info(a),
        Command::Update(a) => update(a),
    }
}

fn summary_json(c: &Catalog) -> serde_json::Value {
    let stats = c.stats();
    let clouds: Vec<serde_json::Value> = Cloud::ALL
        .iter()
        .map(|&cl| {
            let types = stats.types.iter().find(|x| x.0 == cl).map(|x| x.1).unwrap_or(0);
            let regions = stats.regions.iter().find(|x| x.0 == cl).map(|x| x.1).unwrap_or(0);
            let prices: serde_json::Map<String, serde_json::Value> = stats
                .prices
                .iter()
                .filter(|x| x.0 == cl)
                .map(|x| (x.1.as_str().to_string(), serde_json::json!(x.2)))
                .collect();
            serde_json::json!({"cloud": cl, "instance_types": types, "regions": regions, "prices": prices})
        })
        .collect();
    serde_json::json!({
        "version": c.version(),
        "format": predictive_engine::cost::catalog::FORMAT_VERSION,
        "sources": c.sources(),
        "clouds": clouds,
        "offers": c.offers().len(),
    })
}

fn print_summary(c: &Catalog) {
    outln!(
        "catalog version {} (format {})",
        c.version(),
        predictive_engine::cost::catalog::FORMAT_VERSION
    );
    outln!("sources:");
    for s in c.sources() {
        outln!(
            "  {:<15} snapshot {:<17} rows {:>6}  accepted {:>6}  repaired {:>5}  rejected {:>5}  ({})",
            s.name, s.snapshot, s.rows, s.accepted, s.repaired, s.rejected, s.note
        );
    }
    let stats = c.stats();
    outln!("clouds:");
    for cl in Cloud::ALL {
        let types = stats
            .types
            .iter()
            .find(|x| x.0 == cl)
            .map(|x| x.1)
            .unwrap_or(0);
        let regions = stats
            .regions
            .iter()
            .find(|x| x.0 == cl)
            .map(|x| x.1)
            .unwrap_or(0);
        let prices: Vec<String> = Purchase::ALL
            .iter()
            .map(|p| {
                let n = stats
                    .prices
                    .iter()
                    .find(|x| x.0 == cl && x.1 == *p)
                    .map(|x| x.2)
                    .unwrap_or(0);
                format!("{p} {n}")
            })
            .collect();
        outln!(
            "  {:<6} {:>5} types  {:>3} regions  prices: {}",
            cl.as_str(),
            types,
            regions,
            prices.join(", ")
        );
    }
    outln!("offers (type x region): {}", c.offers().len());
}

fn info(a: InfoArgs) -> anyhow::Result<()> {
    let c = load(a.catalog.as_deref())?;
    if a.json {
        outln!("{}", summary_json(&c));
    } else {
        print_summary(&c);
    }
    Ok(())
}

fn read_opt(dir: &Path, rel: &str) -> anyhow::Result<Option<SourceText>> {
    let p = dir.join(rel);
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(Some(SourceText {
        path: p.display().to_string(),
        text,
    }))
}

/// Finds the directory that holds the source folders: DIR itself, or DIR/prices.
fn source_root(dir: &Path) -> PathBuf {
    let names = [
        "aws_karpenter",
        "aws_skypilot",
        "azure_skypilot",
        "gcp_cyclenerd",
    ];
    if names.iter().any(|n| dir.join(n).is_dir()) {
        dir.to_path_buf()
    } else if names.iter().any(|n| dir.join("prices").join(n).is_dir()) {
        dir.join("prices")
    } else {
        dir.to_path_buf()
    }
}

fn update(a: UpdateArgs) -> anyhow::Result<()> {
    let mut b = Builder::new();
    if let Some(from) = &a.from {
        let set = read_source_set(from)?;
        b.add_sources(&set).context("building the catalog")?;
    }
    if !a.from_api.is_empty() {
        if a.endpoint.is_some() && a.from_api.len() > 1 {
            anyhow::bail!(
                "--endpoint applies to one --from-api cloud, not {}",
                a.from_api.len()
            );
        }
        for api in &a.from_api {
            add_api(&mut b, api, a.endpoint.as_deref(), &a.region)?;
        }
    }
    let (catalog, unpriced) = b
        .finish_counted(a.version.as_deref())
        .context("building the catalog")?;
    write_catalog(&catalog, &a.out, a.json, unpriced)
}

#[cfg(not(feature = "price-api"))]
fn add_api(_: &mut Builder, api: &str, _: Option<&str>, _: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("--from-api {api}: this binary was built without the `price-api` feature")
}

/// Fetches one cloud's price API and adds its rows to `b` as one source.
#[cfg(feature = "price-api")]
fn add_api(
    b: &mut Builder,
    api: &str,
    endpoint: Option<&str>,
    regions: &[String],
) -> anyhow::Result<()> {
    use predictive_clouds::pricing::{self, sigv4, FetchOptions};
    let opts = &FetchOptions::default();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let d = sigv4::amz_date(secs);
    let today = format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8]);
    let cloud: Cloud = api
        .parse()
        .with_context(|| format!("--from-api {api:?}: expected aws, azure or gcp"))?;
    let mut all = pricing::Fetched::default();
    let (name, note) = match cloud {
        Cloud::Aws => {
            let ep = endpoint.unwrap_or("https://api.pricing.us-east-1.amazonaws.com/");
            // The Pricing API region is in its host name (api.pricing.<region>.amazonaws.com).
            let api_region = ep
                .split("api.pricing.")
                .nth(1)
                .and_then(|r| r.split('.').next())
                .unwrap_or("us-east-1");
            let signer = sigv4::SigV4Credentials::from_env()
                .map(|c| sigv4::SigV4Signer::new(c, ep, api_region));
            let regions: Vec<String> = if regions.is_empty() {
                vec!["us-east-1".into()]
            } else {
                regions.to_vec()
            };
            for r in &regions {
                let s = signer.as_ref().map(|s| s as &dyn pricing::AwsSigner);
                let f = pricing::block_on_fetch(ep, |client| async move {
                    pricing::fetch_aws(&client, ep, r, s, opts).await
                })
                .with_context(|| format!("--from-api aws, region {r}"))?;
                merge(&mut all, f);
            }
            (
                "aws_pricing_api",
                format!("AWS Pricing GetProducts, regions {}", regions.join(" ")),
            )
        }
        Cloud::Azure => {
            let ep = endpoint.unwrap_or("https://prices.azure.com/api/retail/prices");
            let regions: Vec<String> = if regions.is_empty() {
                vec!["eastus".into()]
            } else {
                regions.to_vec()
            };
            for r in &regions {
                let url = format!(
                    "{ep}?$filter=serviceName%20eq%20%27Virtual%20Machines%27%20and%20armRegionName%20eq%20%27{r}%27"
                );
                let u = url.as_str();
                let f = pricing::block_on_fetch(u, |client| async move {
                    pricing::fetch_azure(&client, u, opts).await
                })
                .with_context(|| format!("--from-api azure, region {r}"))?;
                merge(&mut all, f);
            }
            (
                "azure_retail_api",
                format!("Azure Retail Prices, regions {}", regions.join(" ")),
            )
        }
        Cloud::Gcp => {
            let ep = endpoint
                .unwrap_or("https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus");
            let key = std::env::var("GOOGLE_API_KEY")
                .ok()
                .filter(|k| !k.is_empty());
            let k = key.as_deref();
            let seed = Catalog::embedded();
            let mut f = pricing::block_on_fetch(ep, |client| async move {
                pricing::fetch_gcp(&client, ep, k, seed, opts).await
            })
            .context("--from-api gcp")?;
            if !regions.is_empty() {
                f.rows.retain(|r| regions.contains(&r.region));
            }
            merge(&mut all, f);
            ("gcp_billing_api", "GCP Cloud Billing Catalog".to_string())
        }
    };
    // Specs from the API first (AWS), then the embedded catalog's, for rows that carry none.
    for t in all.types {
        b.add_type(t);
    }
    b.add_catalog_types(Catalog::embedded());
    let src = b.begin_source(
        name,
        &today,
        &format!(
            "{note}; {} pages, {} items skipped, {} rejected by the fetcher",
            all.pages, all.skipped, all.rejected
        ),
    );
    for r in all.rows {
        b.add_price(src, r);
    }
    Ok(())
}

#[cfg(feature = "price-api")]
fn merge(all: &mut predictive_clouds::pricing::Fetched, f: predictive_clouds::pricing::Fetched) {
    all.types.extend(f.types);
    all.rows.extend(f.rows);
    all.skipped += f.skipped;
    all.rejected += f.rejected;
    all.pages += f.pages;
}

fn read_source_set(from: &Path) -> anyhow::Result<SourceSet> {
    let dir = source_root(from);
    if !dir.is_dir() {
        anyhow::bail!("--from {}: not a directory", from.display());
    }
    let mut set = SourceSet {
        aws_karpenter_specs: read_opt(&dir, "aws_karpenter/ec2_instance_specs.csv")?,
        aws_karpenter_prices: read_opt(&dir, "aws_karpenter/ec2_ondemand_prices.csv")?,
        aws_skypilot: read_opt(&dir, "aws_skypilot/vms.csv")?,
        azure_skypilot: read_opt(&dir, "azure_skypilot/vms.csv")?,
        gcp_flat: read_opt(&dir, "gcp_cyclenerd/gcp_compute_instance_prices_flat.csv")?,
        gcp_pricing_header: None,
        source_notes: Default::default(),
    };
    if let Some(y) = read_opt(&dir, "gcp_cyclenerd/pricing.yml")? {
        set.gcp_pricing_header = Some(y.text.lines().take(40).collect::<Vec<_>>().join("\n"));
    }
    for n in [
        "aws_karpenter",
        "aws_skypilot",
        "azure_skypilot",
        "gcp_cyclenerd",
    ] {
        if let Some(s) = read_opt(&dir, &format!("{n}/SOURCE.md"))? {
            set.source_notes.insert(n.to_string(), s.text);
        }
    }
    let found = [
        set.aws_karpenter_prices.is_some(),
        set.aws_skypilot.is_some(),
        set.azure_skypilot.is_some(),
        set.gcp_flat.is_some(),
    ];
    if !found.iter().any(|x| *x) {
        anyhow::bail!(
            "--from {}: no known source file (expected aws_karpenter/ec2_ondemand_prices.csv, aws_skypilot/vms.csv, azure_skypilot/vms.csv or gcp_cyclenerd/gcp_compute_instance_prices_flat.csv)",
            dir.display()
        );
    }
    Ok(set)
}

/// Writes the catalog and prints its summary; `unpriced` is the number of instance types with
/// specs but no price that were left out.
fn write_catalog(catalog: &Catalog, out: &Path, json: bool, unpriced: usize) -> anyhow::Result<()> {
    let text = catalog.to_text();
    std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    if json {
        let mut v = summary_json(catalog);
        v["out"] = serde_json::json!(out.display().to_string());
        v["bytes"] = serde_json::json!(text.len());
        v["unpriced_types_left_out"] = serde_json::json!(unpriced);
        outln!("{v}");
    } else {
        print_summary(catalog);
        outln!("instance types with specs but no price, left out: {unpriced}");
        outln!("wrote {} ({} bytes)", out.display(), text.len());
    }
    Ok(())
}

#[cfg(all(test, feature = "price-api"))]
mod api_tests {
    //! `catalog update --from-api` end to end against a local fake serving the documented
    //! shapes (a plain HTTP/1.1 responder on a local port, one thread).

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use predictive_clouds::pricing::sigv4;

    use super::*;

    /// Serves `n` requests with `answer(method, path, headers, body)`; returns the base URL.
    fn fake(
        n: usize,
        answer: impl Fn(&str, &str, &[(String, String)], &str) -> String + Send + 'static,
    ) -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", l.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for stream in l.incoming().take(n) {
                let mut s = stream.expect("accept");
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut line = String::new();
                r.read_line(&mut line).expect("request line");
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).expect("header");
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).expect("body");
                let out = answer(&method, &path, &headers, &String::from_utf8_lossy(&body));
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{out}",
                    out.len()
                );
            }
        });
        base
    }

    fn args(api: &str, endpoint: String, out: &Path) -> UpdateArgs {
        UpdateArgs {
            from: None,
            from_api: vec![api.into()],
            endpoint: Some(endpoint),
            region: vec![],
            out: out.to_path_buf(),
            version: Some("test.1".into()),
            json: true,
        }
    }

    #[test]
    fn update_from_azure_api_should_write_a_validated_catalog() {
        let item = |sku: &str, name: &str, price: f64| {
            serde_json::json!({"currencyCode": "USD", "retailPrice": price, "unitPrice": price,
                "armRegionName": "eastus", "armSkuName": sku, "skuName": name,
                "productName": "Virtual Machines Dsv5 Series", "serviceName": "Virtual Machines",
                "unitOfMeasure": "1 Hour", "type": "Consumption", "reservationTerm": null})
        };
        let base = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let b2 = base.clone();
        let url = fake(2, move |_, path, _, _| {
            if path.contains("page=2") {
                serde_json::json!({"Items": [item("Standard_D4s_v5", "D4s v5", 0.192),
                    item("Standard_D4s_v5", "D4s v5 Spot", 0.5)], "NextPageLink": null})
            } else {
                assert!(path.contains("armRegionName%20eq%20%27eastus%27"), "{path}");
                let next = format!("{}/prices?page=2", b2.lock().unwrap());
                serde_json::json!({"Items": [item("Standard_D2s_v5", "D2s v5", 0.096),
                    item("Standard_D2s_v5", "D2s v5 Spot", 0.0106)], "NextPageLink": next})
            }
            .to_string()
        });
        *base.lock().unwrap() = url.clone();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("cat.tsv.txt");
        update(args("azure", format!("{url}/prices"), &out)).unwrap();
        let c = load(Some(&out)).unwrap();
        assert_eq!(c.offers().len(), 2);
        // Only the priced types, not the embedded ones the builder was seeded with.
        assert_eq!(c.types().len(), 2);
        let src = &c.sources()[0];
        assert_eq!(src.name, "azure_retail_api");
        assert_eq!(src.rows, 4, "{src:?}");
        // Spot above on-demand (0.5 > 0.192) is dropped by the same rule as for files.
        let spot = c.offers().iter().filter(|o| o.spot.is_some()).count();
        assert_eq!(spot, 1);
    }

    #[test]
    fn update_from_aws_api_should_sign_with_sigv4() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
        std::env::set_var(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        );
        let product = serde_json::json!({
            "product": {"productFamily": "Compute Instance", "attributes": {
                "instanceType": "m5.large", "vcpu": "2", "memory": "8 GiB", "regionCode": "us-east-1",
                "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                "capacitystatus": "Used", "physicalProcessor": "Intel Xeon Platinum 8175"}},
            "terms": {"OnDemand": {"A.B": {"priceDimensions": {"A.B.C": {"unit": "Hrs",
                "pricePerUnit": {"USD": "0.0960000000"}}}, "termAttributes": {}}}}
        })
        .to_string();
        let url = fake(1, move |method, path, headers, body| {
            // The fake checks the signature the way AWS does: recompute it over the request.
            let auth = headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.clone())
                .expect("an Authorization header");
            let signed: Vec<String> = auth
                .split("SignedHeaders=")
                .nth(1)
                .and_then(|x| x.split(',').next())
                .unwrap()
                .split(';')
                .map(str::to_string)
                .collect();
            let hs: Vec<(String, String)> = headers
                .iter()
                .filter(|(k, _)| signed.contains(k))
                .cloned()
                .collect();
            let date = &hs.iter().find(|(k, _)| k == "x-amz-date").unwrap().1;
            let creds = sigv4::SigV4Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: None,
            };
            let req = sigv4::SignRequest {
                method,
                path,
                query: "",
                headers: &hs,
                body: body.as_bytes(),
            };
            assert_eq!(
                auth,
                sigv4::authorization(&creds, "us-east-1", "pricing", date, &req)
            );
            serde_json::json!({"FormatVersion": "aws_v1", "PriceList": [product]}).to_string()
        });
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("cat.tsv.txt");
        update(args("aws", format!("{url}/"), &out)).unwrap();
        let c = load(Some(&out)).unwrap();
        assert_eq!(c.offers().len(), 1);
        assert_eq!(c.types().len(), 1);
        assert_eq!(c.offers()[0].on_demand, Some(0.096));
        assert_eq!(c.sources()[0].name, "aws_pricing_api");
    }

    #[test]
    fn update_from_gcp_api_should_price_machine_types_and_size_on_the_result() {
        fn sku(desc: &str, usage: &str, unit: &str, nanos: i64) -> serde_json::Value {
            serde_json::json!({"name": "services/6F81-5844-456A/skus/X", "skuId": "X",
                "description": desc,
                "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute",
                    "resourceGroup": "N1Standard", "usageType": usage},
                "serviceRegions": ["us-central1"],
                "pricingInfo": [{"pricingExpression": {"usageUnit": unit, "tieredRates": [
                    {"startUsageAmount": 0,
                     "unitPrice": {"currencyCode": "USD", "units": "0", "nanos": nanos}}]}}]})
        }
        let url = fake(2, move |method, path, _, _| {
            assert_eq!(method, "GET");
            assert!(
                path.starts_with("/v1/services/6F81-5844-456A/skus?"),
                "{path}"
            );
            assert!(path.contains("currencyCode=USD"), "{path}");
            if path.contains("pageToken=t2") {
                serde_json::json!({"nextPageToken": "", "skus": [
                    sku("Spot Preemptible N2 Instance Core running in Americas", "Preemptible", "h", 7_000_000),
                    sku("Spot Preemptible N2 Instance Ram running in Americas", "Preemptible", "GiBy.h", 1_000_000),
                    // Unknown unit for a core price: rejected by the fetcher.
                    sku("N2D AMD Instance Core running in Americas", "OnDemand", "GiBy.mo", 1),
                ]})
            } else {
                serde_json::json!({"nextPageToken": "t2", "skus": [
                    sku("N2 Instance Core running in Americas", "OnDemand", "h", 31_611_000),
                    sku("N2 Instance Ram running in Americas", "OnDemand", "GiBy.h", 4_237_000),
                    sku("Network Internet Egress", "OnDemand", "GiBy", 1_000),
                ]})
            }
            .to_string()
        });
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("cat.tsv.txt");
        update(args(
            "gcp",
            format!("{url}/v1/services/6F81-5844-456A/skus"),
            &out,
        ))
        .unwrap();
        let c = load(Some(&out)).unwrap();
        // Only N2 machine types are priced, only in us-central1; no embedded type leaks in.
        assert!(!c.types().is_empty());
        assert!(
            c.types()
                .iter()
                .all(|t| t.cloud == Cloud::Gcp && t.family == "n2"),
            "{:?}",
            c.types().iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        assert!(c.regions().iter().all(|r| r.name == "us-central1"));
        let n2 = c
            .types()
            .iter()
            .filter(|t| !t.burstable && t.gpu == 0.0)
            .count();
        assert_eq!(c.offers().len(), n2);
        for o in c.offers() {
            let t = &c.types()[o.type_index as usize];
            let od = t.vcpu * 0.031611 + t.mem_gib * 0.004237;
            let spot = t.vcpu * 0.007 + t.mem_gib * 0.001;
            assert!((o.on_demand.unwrap() - od).abs() < 1e-6, "{} {o:?}", t.name);
            assert!((o.spot.unwrap() - spot).abs() < 1e-6, "{} {o:?}", t.name);
        }
        let src = &c.sources()[0];
        assert_eq!(src.name, "gcp_billing_api");
        assert_eq!(src.rows as usize, 2 * n2, "{src:?}");
        assert!(src.note.contains("2 pages"), "{src:?}");
        assert!(src.note.contains(" 1 rejected by the fetcher"), "{src:?}");
        // `catalog info` on the result.
        let info_json = summary_json(&c);
        assert_eq!(info_json["offers"], serde_json::json!(n2));
        info(InfoArgs {
            catalog: Some(out.clone()),
            json: true,
        })
        .unwrap();
        // `size --catalog` on the result: the cheapest N2 cover of 16 vCPU / 64 GiB.
        #[derive(clap::Parser)]
        struct W {
            #[command(flatten)]
            a: super::super::size::Args,
        }
        let path = out.display().to_string();
        let w = <W as clap::Parser>::try_parse_from([
            "size",
            "--cpu",
            "16",
            "--mem-gib",
            "64",
            "--catalog",
            &path,
            "--json",
        ])
        .unwrap();
        super::super::size::run(w.a).unwrap();
        let v = predictive_engine::cost::SizingParams::new(predictive_engine::cost::Demand::new(
            16.0, 64.0,
        ))
        .check(&c)
        .unwrap();
        let s = predictive_engine::cost::size(&c, &v).unwrap();
        assert!(s.capacity.cpu >= 16.0 && s.capacity.mem_gib >= 64.0);
        for l in &s.allocation {
            assert_eq!((l.cloud, l.region.as_str()), (Cloud::Gcp, "us-central1"));
            assert!(l.instance_type.starts_with("n2-"), "{l:?}");
        }
        // n2-standard-16 (16 vCPU, 64 GiB) at 16 × 0.031611 + 64 × 0.004237 is the optimum.
        assert!(
            (s.total_hourly_cost - (16.0 * 0.031611 + 64.0 * 0.004237)).abs() < 1e-4,
            "{s:?}"
        );
    }
}
