//! `size` subcommand: the cheapest capacity that covers a demand (PROTOCOL.md §4).

use std::path::PathBuf;

use anyhow::Context as _;
use predictive_engine::cost::{
    allocate_budget, size, Arch, BudgetParams, Catalog, Cloud, Demand, Purchase, QuantileDemand,
    Sizing, SizingParams, WorkloadParams,
};
use serde::Deserialize;

/// A list given either as `"a,b"` or as `["a", "b"]` in JSON cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StrOrList {
    /// Comma-separated.
    Str(String),
    /// A JSON array.
    List(Vec<String>),
}

impl StrOrList {
    fn items(&self) -> Vec<String> {
        match self {
            StrOrList::Str(s) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            StrOrList::List(v) => v
                .iter()
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
        }
    }
}

/// One sizing request in the terms of `size`'s flags; also one line of a `bench size` cases file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SizeSpec {
    /// Case name (bench only).
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) cpu: f64,
    #[serde(default)]
    pub(crate) mem_gib: f64,
    #[serde(default)]
    pub(crate) gpu: f64,
    #[serde(default)]
    pub(crate) network_gbps: f64,
    #[serde(default)]
    pub(crate) clouds: Option<StrOrList>,
    #[serde(default)]
    pub(crate) deny_clouds: Option<StrOrList>,
    #[serde(default)]
    pub(crate) regions: Option<StrOrList>,
    #[serde(default)]
    pub(crate) deny_regions: Option<StrOrList>,
    #[serde(default)]
    pub(crate) families: Option<StrOrList>,
    #[serde(default)]
    pub(crate) deny_families: Option<StrOrList>,
    #[serde(default)]
    pub(crate) purchase: Option<StrOrList>,
    #[serde(default)]
    pub(crate) arch: Option<StrOrList>,
    #[serde(default)]
    pub(crate) max_types: Option<u32>,
    #[serde(default)]
    pub(crate) min_count: Option<u32>,
    #[serde(default)]
    pub(crate) max_count: Option<u32>,
    #[serde(default)]
    pub(crate) spot_share: Option<f64>,
    #[serde(default)]
    pub(crate) horizon_hours: Option<f64>,
    #[serde(default)]
    pub(crate) utilisation: Option<f64>,
    #[serde(default)]
    pub(crate) include_burstable: bool,
    #[serde(default)]
    pub(crate) include_promo: bool,
    /// Budget priority weight (bench with `--budget`).
    #[serde(default)]
    pub(crate) priority: Option<f64>,
    /// Budget floor share (bench with `--budget`).
    #[serde(default)]
    pub(crate) floor: Option<f64>,
    /// Demand as quantiles over the horizon, e.g. `{"0.5": {"cpu": 8, "mem_gib": 32}, "0.95": {...}}`
    /// (replaces `cpu`/`mem_gib`/`gpu`).
    #[serde(default)]
    pub(crate) quantiles: Option<std::collections::BTreeMap<String, Demand>>,
    /// The quantile to provision at (default 0.95).
    #[serde(default)]
    pub(crate) provision_at: Option<f64>,
}

fn parse_each<T>(
    flag: &str,
    list: &Option<StrOrList>,
    f: impl Fn(&str) -> predictive_engine::cost::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for item in list.as_ref().map(StrOrList::items).unwrap_or_default() {
        out.push(f(&item).with_context(|| format!("constraint `{flag}`"))?);
    }
    Ok(out)
}

impl SizeSpec {
    /// Converts to engine parameters; unknown names fail here, naming the constraint.
    pub(crate) fn to_params(&self) -> anyhow::Result<SizingParams> {
        let mut p = SizingParams::new(
            Demand::new(self.cpu, self.mem_gib)
                .with_gpu(self.gpu)
                .with_network(self.network_gbps),
        );
        p.clouds = parse_each("clouds", &self.clouds, |s| s.parse::<Cloud>())?;
        p.deny_clouds = parse_each("deny_clouds", &self.deny_clouds, |s| s.parse::<Cloud>())?;
        p.arch = parse_each("arch", &self.arch, |s| s.parse::<Arch>())?;
        if let Some(pu) = &self.purchase {
            let mut all = Vec::new();
            for item in pu.items() {
                for x in Purchase::parse_list(&item).context("constraint `purchase`")? {
                    if !all.contains(&x) {
                        all.push(x);
                    }
                }
            }
            p.purchase = all;
        }
        p.regions = self
            .regions
            .as_ref()
            .map(StrOrList::items)
            .unwrap_or_default();
        p.deny_regions = self
            .deny_regions
            .as_ref()
            .map(StrOrList::items)
            .unwrap_or_default();
        p.families = self
            .families
            .as_ref()
            .map(StrOrList::items)
            .unwrap_or_default();
        p.deny_families = self
            .deny_families
            .as_ref()
            .map(StrOrList::items)
            .unwrap_or_default();
        p.max_types = self.max_types;
        if let Some(v) = self.min_count {
            p.min_count = v;
        }
        if let Some(v) = self.max_count {
            p.max_count = v;
        }
        if let Some(v) = self.spot_share {
            p.spot_share_cap = v;
        }
        if let Some(v) = self.horizon_hours {
            p.horizon_hours = v;
        }
        if let Some(v) = self.utilisation {
            p.utilisation = v;
        }
        if let Some(q) = &self.quantiles {
            let mut levels = Vec::new();
            for (k, d) in q {
                let level: f64 = k.parse().with_context(|| {
                    format!("constraint `quantiles`: level {k:?} is not a number")
                })?;
                levels.push((level, *d));
            }
            p.quantiles = Some(QuantileDemand {
                levels,
                provision_at: self.provision_at.unwrap_or(0.95),
            });
        }
        p.include_burstable = self.include_burstable;
        p.include_promo = self.include_promo;
        Ok(p)
    }
}

/// Arguments of this subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// vCPUs to cover.
    #[arg(long, allow_negative_numbers = true)]
    cpu: f64,
    /// Memory to cover, GiB.
    #[arg(long = "mem-gib", allow_negative_numbers = true)]
    mem_gib: f64,
    /// GPUs to cover.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    gpu: f64,
    /// Network bandwidth to cover, Gbit/s (only types with a known bandwidth count).
    #[arg(long = "network-gbps", default_value_t = 0.0)]
    network_gbps: f64,
    /// Clouds allowed (aws,azure,gcp; default all).
    #[arg(long)]
    clouds: Option<String>,
    /// Clouds denied.
    #[arg(long = "deny-clouds")]
    deny_clouds: Option<String>,
    /// Regions allowed (default every priced region).
    #[arg(long)]
    regions: Option<String>,
    /// Regions denied.
    #[arg(long = "deny-regions")]
    deny_regions: Option<String>,
    /// Families allowed (m7g, n2, Dsv5...).
    #[arg(long)]
    families: Option<String>,
    /// Families denied.
    #[arg(long = "deny-families")]
    deny_families: Option<String>,
    /// Purchase options: on-demand,spot,reserved (reserved = 1y and 3y; default on-demand).
    #[arg(long)]
    purchase: Option<String>,
    /// Architectures allowed: x86_64,arm64 (default any).
    #[arg(long)]
    arch: Option<String>,
    /// At most this many distinct instance types.
    #[arg(long = "max-types")]
    max_types: Option<u32>,
    /// At least this many instances.
    #[arg(long = "min-count")]
    min_count: Option<u32>,
    /// At most this many instances (default 100).
    #[arg(long = "max-count")]
    max_count: Option<u32>,
    /// At most this share (0..1) of each resource on spot.
    #[arg(long = "spot-share")]
    spot_share: Option<f64>,
    /// Hours the capacity is needed (prices committed terms; default 730).
    #[arg(long = "horizon-hours")]
    horizon_hours: Option<f64>,
    /// Share of the horizon the capacity is used (0..1; default 1).
    #[arg(long)]
    utilisation: Option<f64>,
    /// Allow burstable and shared-core types.
    #[arg(long = "include-burstable")]
    include_burstable: bool,
    /// Allow promotional and retired SKUs.
    #[arg(long = "include-promo")]
    include_promo: bool,
    /// Hard hourly cap in USD: when the demand costs more, serve the largest share that fits.
    #[arg(long)]
    budget: Option<f64>,
    /// Use this catalog file instead of the embedded one.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Print one JSON object (PROTOCOL.md §4).
    #[arg(long)]
    json: bool,
}

impl Args {
    fn spec(&self) -> SizeSpec {
        let s = |o: &Option<String>| o.clone().map(StrOrList::Str);
        SizeSpec {
            name: None,
            cpu: self.cpu,
            mem_gib: self.mem_gib,
            gpu: self.gpu,
            network_gbps: self.network_gbps,
            clouds: s(&self.clouds),
            deny_clouds: s(&self.deny_clouds),
            regions: s(&self.regions),
            deny_regions: s(&self.deny_regions),
            families: s(&self.families),
            deny_families: s(&self.deny_families),
            purchase: s(&self.purchase),
            arch: s(&self.arch),
            max_types: self.max_types,
            min_count: self.min_count,
            max_count: self.max_count,
            spot_share: self.spot_share,
            horizon_hours: self.horizon_hours,
            utilisation: self.utilisation,
            include_burstable: self.include_burstable,
            include_promo: self.include_promo,
            priority: None,
            floor: None,
            quantiles: None,
            provision_at: None,
        }
    }
}

/// The JSON object of PROTOCOL.md §4 for one sizing.
pub(crate) fn sizing_json(s: &Sizing) -> serde_json::Value {
    serde_json::json!({
        "allocation": s.allocation.iter().map(|l| serde_json::json!({
            "cloud": l.cloud,
            "region": l.region,
            "instance_type": l.instance_type,
            "count": l.count,
            "purchase": l.purchase,
            "hourly_cost": l.hourly_cost,
            "effective_hourly_cost": l.effective_hourly_cost,
        })).collect::<Vec<_>>(),
        "total_hourly_cost": s.total_hourly_cost,
        "total_monthly_cost": s.total_monthly_cost,
        "effective_hourly_cost": s.effective_hourly_cost,
        "capacity": {"cpu": s.capacity.cpu, "mem_gib": s.capacity.mem_gib, "gpu": s.capacity.gpu, "network_gbps": s.capacity.network_gbps},
        "explanation": s.explanation.summary,
        "explanation_detail": s.explanation,
    })
}

fn print_text(s: &Sizing) {
    outln!(
        "{:<6} {:<16} {:<28} {:>5} {:<12} {:>12}",
        "cloud",
        "region",
        "instance_type",
        "count",
        "purchase",
        "USD/h"
    );
    for l in &s.allocation {
        outln!(
            "{:<6} {:<16} {:<28} {:>5} {:<12} {:>12.4}",
            l.cloud.as_str(),
            l.region,
            l.instance_type,
            l.count,
            l.purchase.as_str(),
            l.hourly_cost
        );
    }
    outln!(
        "total {:.4} USD/h, {:.2} USD/month; capacity cpu {}, mem {} GiB, gpu {}",
        s.total_hourly_cost,
        s.total_monthly_cost,
        s.capacity.cpu,
        s.capacity.mem_gib,
        s.capacity.gpu
    );
    outln!("{}", s.explanation.summary);
}

/// Runs the subcommand.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let catalog = super::catalog::load(args.catalog.as_deref())?;
    let params = args.spec().to_params()?;
    if let Some(cap) = args.budget {
        return run_budget(&catalog, params, cap, args.json);
    }
    let valid = params.check(&catalog)?;
    let sizing = size(&catalog, &valid)?;
    if args.json {
        outln!("{}", sizing_json(&sizing));
    } else {
        print_text(&sizing);
    }
    Ok(())
}

fn run_budget(catalog: &Catalog, params: SizingParams, cap: f64, json: bool) -> anyhow::Result<()> {
    let budget = BudgetParams::hourly(
        cap,
        vec![WorkloadParams {
            name: "demand".into(),
            sizing: params,
            priority: 1.0,
            floor: 0.0,
        }],
    );
    let plan = allocate_budget(catalog, &budget.check(catalog)?)?;
    let w = &plan.workloads[0];
    if json {
        let mut v = w
            .sizing
            .as_ref()
            .map(sizing_json)
            .unwrap_or_else(|| serde_json::json!({"allocation": [], "total_hourly_cost": 0.0}));
        v["budget_hourly"] = serde_json::json!(cap);
        v["served"] = serde_json::json!(w.served);
        v["unmet"] = serde_json::json!(w.unmet);
        outln!("{v}");
    } else {
        if let Some(s) = &w.sizing {
            print_text(s);
        }
        outln!(
            "budget {cap:.4} USD/h: served {:.1} % of the demand; unmet cpu {:.2}, mem {:.2} GiB, gpu {:.2}",
            w.served * 100.0,
            w.unmet.cpu,
            w.unmet.mem_gib,
            w.unmet.gpu
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> SizeSpec {
        serde_json::from_str(json).expect("a valid case line")
    }

    #[test]
    fn case_lines_should_accept_lists_as_strings_or_arrays() {
        let a = spec(r#"{"cpu": 8, "mem_gib": 32, "clouds": "aws,gcp", "purchase": ["on-demand", "spot"], "priority": 10}"#)
            .to_params()
            .unwrap();
        assert_eq!(a.clouds, vec![Cloud::Aws, Cloud::Gcp]);
        assert_eq!(a.purchase, vec![Purchase::OnDemand, Purchase::Spot]);
    }

    #[test]
    fn quantile_cases_should_provision_at_the_requested_level() {
        let p = spec(r#"{"quantiles": {"0.5": {"cpu": 8, "mem_gib": 32}, "0.9": {"cpu": 16, "mem_gib": 64}}, "provision_at": 0.7}"#)
            .to_params()
            .unwrap();
        let v = p.check(Catalog::embedded()).unwrap();
        assert_eq!(v.demand(), Demand::new(12.0, 48.0));
    }

    #[test]
    fn unknown_names_should_name_the_constraint() {
        let e = spec(r#"{"cpu": 8, "mem_gib": 32, "clouds": "aws,mars"}"#)
            .to_params()
            .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "constraint `clouds`: unknown cloud `mars` (expected aws, azure or gcp)"
        );
        let e = spec(r#"{"cpu": 8, "mem_gib": 32, "arch": "sparc"}"#)
            .to_params()
            .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "constraint `arch`: unknown architecture `sparc` (expected x86_64 or arm64)"
        );
        assert!(
            serde_json::from_str::<SizeSpec>(r#"{"cpu": 8, "mem_gib": 32, "colud": "aws"}"#)
                .is_err()
        );
    }

    #[test]
    fn json_output_should_carry_the_protocol_fields() {
        let cat = Catalog::embedded();
        let mut p = spec(r#"{"cpu": 4, "mem_gib": 16, "clouds": "gcp"}"#)
            .to_params()
            .unwrap();
        p.explain_alternative = false;
        let s = size(cat, &p.check(cat).unwrap()).unwrap();
        let v = sizing_json(&s);
        for k in ["allocation", "total_hourly_cost", "capacity", "explanation"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        let line = &v["allocation"][0];
        for k in [
            "cloud",
            "region",
            "instance_type",
            "count",
            "purchase",
            "hourly_cost",
        ] {
            assert!(line.get(k).is_some(), "missing allocation.{k}");
        }
        for k in ["cpu", "mem_gib", "gpu"] {
            assert!(v["capacity"].get(k).is_some(), "missing capacity.{k}");
        }
        assert_eq!(line["cloud"], "gcp");
    }
}
