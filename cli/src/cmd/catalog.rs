//! `catalog` subcommands: show the embedded price catalog, or rebuild one from source files.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use predictive_engine::cost::build::{build_catalog, SourceSet, SourceText};
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
    #[arg(long)]
    from: PathBuf,
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
    println!(
        "catalog version {} (format {})",
        c.version(),
        predictive_engine::cost::catalog::FORMAT_VERSION
    );
    println!("sources:");
    for s in c.sources() {
        println!(
            "  {:<15} snapshot {:<17} rows {:>6}  accepted {:>6}  repaired {:>5}  rejected {:>5}  ({})",
            s.name, s.snapshot, s.rows, s.accepted, s.repaired, s.rejected, s.note
        );
    }
    let stats = c.stats();
    println!("clouds:");
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
        println!(
            "  {:<6} {:>5} types  {:>3} regions  prices: {}",
            cl.as_str(),
            types,
            regions,
            prices.join(", ")
        );
    }
    println!("offers (type x region): {}", c.offers().len());
}

fn info(a: InfoArgs) -> anyhow::Result<()> {
    let c = load(a.catalog.as_deref())?;
    if a.json {
        println!("{}", summary_json(&c));
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
    let dir = source_root(&a.from);
    if !dir.is_dir() {
        anyhow::bail!("--from {}: not a directory", a.from.display());
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
    let catalog = build_catalog(&set, a.version.as_deref()).context("building the catalog")?;
    let text = catalog.to_text();
    std::fs::write(&a.out, &text).with_context(|| format!("writing {}", a.out.display()))?;
    if a.json {
        let mut v = summary_json(&catalog);
        v["out"] = serde_json::json!(a.out.display().to_string());
        v["bytes"] = serde_json::json!(text.len());
        println!("{v}");
    } else {
        print_summary(&catalog);
        println!("wrote {} ({} bytes)", a.out.display(), text.len());
    }
    Ok(())
}
