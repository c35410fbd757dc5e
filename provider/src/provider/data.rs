//! Data sources: `predictive_forecast`, `predictive_sizing` and `predictive_instance_types`.

use super::clone::{parse_horizon, PURCHASE_OPTIONS, TARGET_CLOUDS};
use super::sizing::{self, Usage};
use super::Configured;
use crate::framework::diag::error_chain;
use crate::framework::modifiers::{AtLeast, NotEmpty, OneOf, WholeNumber};
use crate::framework::server::DataSource;
use crate::framework::{AttrPath, Attribute, Block, Diagnostics, Schema};
use crate::value::{Type, Value};
use async_trait::async_trait;
use predictive_engine::cost::{self, Cloud, Demand, Purchase, SizingParams};
use predictive_engine::forecast::{self, ForecastParams, ModelKind};

fn strings(v: &Value) -> Vec<String> {
    v.as_elements()
        .map(|e| {
            e.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// `predictive_forecast`.
#[derive(Debug, Default)]
pub struct ForecastData;

#[async_trait]
impl DataSource<Configured> for ForecastData {
    fn type_name(&self) -> &'static str {
        "predictive_forecast"
    }
    fn schema(&self) -> Schema {
        Schema {
            version: 0,
            block: Block {
                description: "Calibrated quantile forecast of a workload's CPU usage, from the provider's history source or an inline profile.".into(),
                attributes: vec![
                    Attribute::optional("workload", Type::String, "Workload name in the provider's history source. Set this or `cpu`.").validate(NotEmpty),
                    Attribute::optional("cpu", Type::list(Type::Number), "Inline profile: vCPUs in use, one sample per `step_seconds`, oldest first.").validate(NotEmpty),
                    Attribute::optional("step_seconds", Type::Number, "Seconds between inline samples (default 3600).").validate(AtLeast(1.0)).validate(WholeNumber),
                    Attribute::optional("horizon", Type::String, "How far ahead, as `<n>h` or `<n>d` (default `24h`)."),
                    Attribute::computed("model", Type::String, "Forecasting model chosen by the engine."),
                    Attribute::computed("step", Type::Number, "Seconds between forecast points."),
                    Attribute::computed("quantiles", Type::map(Type::list(Type::Number)), "Forecast per quantile level (keys like `0.95`), one value per step of the horizon."),
                    Attribute::computed("peaks", Type::map(Type::Number), "Peak over the horizon of each quantile."),
                ],
                blocks: vec![],
            },
        }
    }
    async fn read(&self, ctx: &Configured, config: &Value, diags: &mut Diagnostics) -> Value {
        let mut out = config.clone();
        let usage = match (
            config.get("workload").as_str(),
            config.get("cpu").as_elements(),
        ) {
            (Some(w), None) => Usage::Workload(w.to_string()),
            (None, Some(c)) => Usage::Inline {
                cpu: c.iter().filter_map(Value::as_f64).collect(),
                mem_gib: None,
                step_seconds: config.get("step_seconds").as_i64().unwrap_or(3600),
            },
            _ => {
                diags.attr_error(
                    AttrPath::root("workload"),
                    "Invalid source",
                    "set exactly one of workload and cpu",
                );
                return out;
            }
        };
        let h = config.get("horizon").as_str().unwrap_or("24h");
        let Some(hours) = parse_horizon(h) else {
            diags.attr_error(
                AttrPath::root("horizon"),
                "Invalid horizon",
                format!("horizon: {h:?} is not like \"24h\" or \"7d\""),
            );
            return out;
        };
        let series = match sizing::load(&ctx.histories, ctx.sources(), &usage).await {
            Ok(h) => {
                let sizing::History::Series { cpu, .. } = &*h;
                cpu.clone()
            }
            Err(e) => {
                diags.attr_error(
                    AttrPath::root("workload"),
                    "Cannot read the usage history",
                    error_chain(&e),
                );
                return out;
            }
        };
        let steps = ((hours * 3600.0) / series.step() as f64).ceil().max(1.0) as usize;
        let f = ForecastParams::new(steps)
            .model(ModelKind::Auto)
            .check(series.step())
            .and_then(|p| forecast::forecast(&series, &p));
        match f {
            Ok(f) => {
                out.set("model", Value::string(f.model().name()));
                out.set("step", Value::number(f.step() as f64));
                let levels = f.levels().as_slice().to_vec();
                out.set(
                    "quantiles",
                    Value::Map(
                        levels
                            .iter()
                            .zip(f.values())
                            .map(|(l, v)| {
                                (
                                    format!("{l}"),
                                    Value::List(
                                        v.iter().map(|x| Value::number(round(*x))).collect(),
                                    ),
                                )
                            })
                            .collect(),
                    ),
                );
                out.set(
                    "peaks",
                    Value::Map(
                        levels
                            .iter()
                            .zip(f.values())
                            .map(|(l, v)| {
                                (
                                    format!("{l}"),
                                    Value::number(round(v.iter().copied().fold(0.0, f64::max))),
                                )
                            })
                            .collect(),
                    ),
                );
            }
            Err(e) => diags.attr_error(
                AttrPath::root("workload"),
                "Forecast failed",
                error_chain(&e),
            ),
        }
        out
    }
}

/// `predictive_sizing`.
#[derive(Debug, Default)]
pub struct SizingData;

fn allocation_type() -> Type {
    Type::object([
        ("cloud", Type::String),
        ("region", Type::String),
        ("instance_type", Type::String),
        ("count", Type::Number),
        ("purchase", Type::String),
        ("hourly_cost", Type::Number),
    ])
}

#[async_trait]
impl DataSource<Configured> for SizingData {
    fn type_name(&self) -> &'static str {
        "predictive_sizing"
    }
    fn schema(&self) -> Schema {
        Schema {
            version: 0,
            block: Block {
                description: "The cheapest allocation that covers a fixed demand under constraints, as the engine's sizing finds it.".into(),
                attributes: vec![
                    Attribute::required("cpu", Type::Number, "vCPUs to cover.").validate(AtLeast(0.0)),
                    Attribute::required("mem_gib", Type::Number, "Memory to cover, GiB.").validate(AtLeast(0.0)),
                    Attribute::optional("gpu", Type::Number, "GPUs to cover.").validate(AtLeast(0.0)),
                    Attribute::optional("clouds", Type::list(Type::String), "Clouds allowed; all when unset.").validate(OneOf(TARGET_CLOUDS)),
                    Attribute::optional("regions", Type::list(Type::String), "Regions allowed; all priced regions when unset."),
                    Attribute::optional("purchase_options", Type::list(Type::String), "Purchase options allowed (default on-demand).").validate(OneOf(PURCHASE_OPTIONS)),
                    Attribute::optional("families", Type::list(Type::String), "Instance families allowed; all when unset."),
                    Attribute::optional("max_count", Type::Number, "At most this many instances (default 100).").validate(AtLeast(1.0)).validate(WholeNumber),
                    Attribute::computed("allocation", Type::list(allocation_type()), "The allocation, most expensive line first."),
                    Attribute::computed("hourly_cost", Type::Number, "Total list price, USD per hour."),
                    Attribute::computed("monthly_cost", Type::Number, "Total list price, USD per month (730 hours)."),
                    Attribute::computed("explanation", Type::String, "Why this allocation."),
                ],
                blocks: vec![],
            },
        }
    }
    async fn read(&self, ctx: &Configured, config: &Value, diags: &mut Diagnostics) -> Value {
        let mut out = config.clone();
        let mut p = SizingParams::new(
            Demand::new(
                config.get("cpu").as_f64().unwrap_or(0.0),
                config.get("mem_gib").as_f64().unwrap_or(0.0),
            )
            .with_gpu(config.get("gpu").as_f64().unwrap_or(0.0)),
        );
        for c in strings(config.get("clouds")) {
            match c.parse::<Cloud>() {
                Ok(c) => p.clouds.push(c),
                Err(e) => {
                    diags.attr_error(AttrPath::root("clouds"), "Invalid cloud", error_chain(&e))
                }
            }
        }
        p.regions = strings(config.get("regions"));
        p.families = strings(config.get("families"));
        let purchases = strings(config.get("purchase_options"));
        if !purchases.is_empty() {
            match Purchase::parse_list(&purchases.join(",")) {
                Ok(l) => p.purchase = l,
                Err(e) => diags.attr_error(
                    AttrPath::root("purchase_options"),
                    "Invalid purchase option",
                    error_chain(&e),
                ),
            }
        }
        if let Some(m) = config.get("max_count").as_i64() {
            p.max_count = m.max(1) as u32;
        }
        if diags.has_error() {
            return out;
        }
        match p
            .check(&ctx.catalog)
            .and_then(|v| cost::size(&ctx.catalog, &v))
        {
            Ok(s) => {
                out.set(
                    "allocation",
                    Value::List(
                        s.allocation
                            .iter()
                            .map(|a| {
                                Value::object([
                                    ("cloud", Value::string(a.cloud.as_str())),
                                    ("region", Value::string(&a.region)),
                                    ("instance_type", Value::string(&a.instance_type)),
                                    ("count", Value::number(f64::from(a.count))),
                                    ("purchase", Value::string(a.purchase.as_str())),
                                    ("hourly_cost", Value::number(round(a.hourly_cost))),
                                ])
                            })
                            .collect(),
                    ),
                );
                out.set("hourly_cost", Value::number(round(s.total_hourly_cost)));
                out.set("monthly_cost", Value::number(round(s.total_monthly_cost)));
                out.set("explanation", Value::string(&s.explanation.summary));
            }
            Err(e) => {
                let text = error_chain(&e);
                let attr = if text.contains("region") {
                    "regions"
                } else if text.contains("famil") {
                    "families"
                } else {
                    "cpu"
                };
                diags.attr_error(AttrPath::root(attr), "Sizing failed", text);
            }
        }
        out
    }
}

/// `predictive_instance_types`.
#[derive(Debug, Default)]
pub struct InstanceTypesData;

#[async_trait]
impl DataSource<Configured> for InstanceTypesData {
    fn type_name(&self) -> &'static str {
        "predictive_instance_types"
    }
    fn schema(&self) -> Schema {
        Schema {
            version: 0,
            block: Block {
                description: "Instance types of the price catalog, filtered.".into(),
                attributes: vec![
                    Attribute::required("cloud", Type::String, "Cloud whose types to list.")
                        .validate(OneOf(TARGET_CLOUDS)),
                    Attribute::optional(
                        "families",
                        Type::list(Type::String),
                        "Only these families.",
                    ),
                    Attribute::optional(
                        "min_vcpu",
                        Type::Number,
                        "Only types with at least this many vCPUs.",
                    )
                    .validate(AtLeast(0.0)),
                    Attribute::optional(
                        "min_mem_gib",
                        Type::Number,
                        "Only types with at least this much memory, GiB.",
                    )
                    .validate(AtLeast(0.0)),
                    Attribute::optional(
                        "include_burstable",
                        Type::Bool,
                        "Include burstable and shared-core types (default false).",
                    ),
                    Attribute::computed(
                        "instance_types",
                        Type::list(Type::object([
                            ("name", Type::String),
                            ("family", Type::String),
                            ("arch", Type::String),
                            ("vcpu", Type::Number),
                            ("mem_gib", Type::Number),
                            ("gpu", Type::Number),
                        ])),
                        "Matching types, by name.",
                    ),
                ],
                blocks: vec![],
            },
        }
    }
    async fn read(&self, ctx: &Configured, config: &Value, diags: &mut Diagnostics) -> Value {
        let mut out = config.clone();
        let cloud = match config
            .get("cloud")
            .as_str()
            .unwrap_or_default()
            .parse::<Cloud>()
        {
            Ok(c) => c,
            Err(e) => {
                diags.attr_error(AttrPath::root("cloud"), "Invalid cloud", error_chain(&e));
                return out;
            }
        };
        let families = strings(config.get("families"));
        let min_vcpu = config.get("min_vcpu").as_f64().unwrap_or(0.0);
        let min_mem = config.get("min_mem_gib").as_f64().unwrap_or(0.0);
        let burst = config.get("include_burstable").as_bool().unwrap_or(false);
        let mut types: Vec<_> = ctx
            .catalog
            .types()
            .iter()
            .filter(|t| {
                t.cloud == cloud
                    && t.vcpu >= min_vcpu
                    && t.mem_gib >= min_mem
                    && (burst || !t.burstable)
                    && !t.promo
            })
            .filter(|t| {
                families.is_empty() || families.iter().any(|f| f.eq_ignore_ascii_case(&t.family))
            })
            .collect();
        types.sort_by(|a, b| a.name.cmp(&b.name));
        out.set(
            "instance_types",
            Value::List(
                types
                    .iter()
                    .map(|t| {
                        Value::object([
                            ("name", Value::string(&t.name)),
                            ("family", Value::string(&t.family)),
                            ("arch", Value::string(t.arch.as_str())),
                            ("vcpu", Value::number(t.vcpu)),
                            ("mem_gib", Value::number(t.mem_gib)),
                            ("gpu", Value::number(t.gpu)),
                        ])
                    })
                    .collect(),
            ),
        );
        out
    }
}
