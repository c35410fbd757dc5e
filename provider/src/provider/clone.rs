//! `predictive_clone`: clones a workload's usage profile into a new account, region or cloud. Plan
//! sizes it (forecast → cost-optimal allocation, under a budget when one is referenced); apply
//! pre-provisions that allocation through the clouds port and registers the clone in the state
//! store for the controller; read observes the real capacity; delete releases all of it.

use super::drift::{self, Drift};
use super::sizing::{self, DemandForecast, Usage};
use super::store::Kind;
use super::Configured;
use crate::framework::diag::error_chain;
use crate::framework::modifiers::{
    AtLeast, Between, NotEmpty, OneOf, RequiresReplace, UseStateForUnknown, WholeNumber,
};
use crate::framework::schema::{NestedBlock, Nesting, Validator};
use crate::framework::server::Resource;
use crate::framework::{AttrPath, Attribute, Block, Diagnostics, Schema};
use crate::value::{json, Number, Type, Value};
use async_trait::async_trait;
use predictive_clouds::{IdempotencyToken, InstanceId, LaunchRequest, Owner, PurchaseOption};
use predictive_engine::cost::{self, Cloud, Purchase, Sizing, SizingParams};
use predictive_engine::policy::clone::{CloneFeatures, DriftModel};
use std::collections::BTreeMap;

/// Purchase options accepted in `purchase_options`.
pub const PURCHASE_OPTIONS: &[&str] = &["on-demand", "spot", "reserved-1y", "reserved-3y"];
/// Clouds accepted in `clouds`.
pub const TARGET_CLOUDS: &[&str] = &["aws", "azure", "gcp"];
/// Application types accepted in `app_type`.
pub const APP_TYPES: &[&str] = &["web", "api", "batch", "stream", "ml", "database", "cache"];

/// The resource type.
#[derive(Debug, Default)]
pub struct CloneResource;

/// Computed attributes that hold non-integer numbers (see [`computed_number`]).
const COMPUTED_NUMBERS: &[&str] = &[
    "demand",
    "allocation",
    "hourly_cost",
    "monthly_cost",
    "source_allocation",
    "drift_ratio",
    "own_history_weight",
];

/// A name usable as the owner label of the clone's instances.
#[derive(Debug, Clone, Copy)]
pub struct Label;

impl Validator for Label {
    fn description(&self) -> String {
        "Must be 1 to 50 characters of `a-z`, `0-9`, `-` and `_`.".into()
    }
    fn validate(&self, path: &AttrPath, v: &Value, diags: &mut Diagnostics) {
        if let Some(s) = v.as_str() {
            if s.is_empty()
                || s.len() > 50
                || !s
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                diags.attr_error(
                    path.clone(),
                    "Invalid name",
                    format!("{path}: {s:?} is not a valid name. {}", self.description()),
                );
            }
        }
    }
}

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

fn demand_type() -> Type {
    Type::object([
        ("quantile", Type::Number),
        ("cpu", Type::Number),
        ("mem_gib", Type::Number),
        ("gpu", Type::Number),
    ])
}

/// The schema.
pub fn schema() -> Schema {
    let source = NestedBlock {
        name: "source".into(),
        nesting: Nesting::List,
        min_items: 1,
        max_items: 1,
        block: Block {
            description: "The usage to clone: a named `workload` from the provider's history source, or an inline profile (`cpu`, optionally `mem_gib`).".into(),
            attributes: vec![
                Attribute::optional("workload", Type::String, "Workload name in the provider's history source (for a file source: the file stem).").validate(NotEmpty),
                Attribute::optional("cpu", Type::list(Type::Number), "Inline profile: vCPUs in use, one sample per `step_seconds`, oldest first.").validate(NotEmpty),
                Attribute::optional("mem_gib", Type::list(Type::Number), "Inline profile: memory in use in GiB, same length and step as `cpu`. When unset, memory is `mem_gib_per_cpu` times the CPU demand.").validate(NotEmpty),
                Attribute::with_default("step_seconds", Type::Number, Value::number(3600.0), "Seconds between inline samples.").validate(AtLeast(1.0)).validate(WholeNumber),
                Attribute::with_default("mem_gib_per_cpu", Type::Number, Value::number(4.0), "GiB of memory per vCPU of demand when no memory history is given.").validate(AtLeast(0.0)),
                Attribute::with_default("gpu", Type::Number, Value::number(0.0), "GPUs needed, constant over the horizon.").validate(AtLeast(0.0)),
            ],
            blocks: vec![],
        },
    };
    Schema {
        version: 0,
        block: Block {
            description: "A clone of a workload's capacity profile in another account, region or cloud. The plan shows the forecast demand, the chosen allocation (cloud, region, instance type, count, purchase option) and its cost; apply pre-provisions that capacity, and destroy releases it.".into(),
            attributes: vec![
                Attribute::computed("id", Type::String, "Clone id (`clone-<name>`); also the owner label of its instances.").modifier(UseStateForUnknown),
                Attribute::required("name", Type::String, "Clone name, unique in the state store.").validate(Label).modifier(RequiresReplace),
                Attribute::optional("clouds", Type::list(Type::String), "Clouds the allocation may use; all priced clouds when unset.").validate(OneOf(TARGET_CLOUDS)),
                Attribute::optional("regions", Type::list(Type::String), "Regions the allocation may use; every priced region of the allowed clouds when unset."),
                Attribute::with_default("app_type", Type::String, Value::string("web"), "Kind of application, recorded with the clone for the controller.").validate(OneOf(APP_TYPES)),
                Attribute::with_default("user_role", Type::String, Value::string("normal"), "Priority class of the clone's users in the referenced budget (e.g. `critical`, `vip`, `normal`)."),
                Attribute::with_default("horizon", Type::String, Value::string("24h"), "How far ahead to forecast and provision, as `<n>h` or `<n>d`."),
                Attribute::with_default("quantile", Type::Number, Value::number(0.95), "Demand quantile to provision for.").validate(Between(0.5, 0.999)),
                Attribute::optional("budget_id", Type::String, "Id of a `predictive_budget` this clone shares."),
                Attribute::with_default("floor", Type::Number, Value::number(0.0), "Share of its demand the clone always gets under a budget.").validate(Between(0.0, 1.0)),
                Attribute::with_default("purchase_options", Type::list(Type::String), Value::strings(["on-demand"]), "Purchase options the allocation may use.").validate(OneOf(PURCHASE_OPTIONS)).validate(NotEmpty),
                Attribute::optional("families", Type::list(Type::String), "Instance families allowed (e.g. `m7i`, `Dsv5`, `n2`); all when unset."),
                Attribute::with_default("min_count", Type::Number, Value::number(1.0), "At least this many instances.").validate(AtLeast(0.0)).validate(WholeNumber),
                Attribute::with_default("max_count", Type::Number, Value::number(100.0), "At most this many instances.").validate(AtLeast(1.0)).validate(WholeNumber),
                Attribute::with_default("safety_margin", Type::Number, Value::number(0.1), "Extra share of demand to provision on top of the quantile.").validate(Between(0.0, 5.0)),
                Attribute::computed("model", Type::String, "Forecasting model the engine chose for the usage history."),
                Attribute::computed("demand", Type::list(demand_type()), "Forecast demand: the peak over the horizon of each quantile of the source's forecast, times `drift_ratio`, blended towards the forecast of the clone's own usage with weight `own_history_weight`."),
                Attribute::computed("source_allocation", Type::Number, "The source's forecast CPU demand at `quantile` (peak over the horizon, vCPU, before the safety margin) when the clone was first planned: the scale clone drift is measured against, recorded with the clone."),
                Attribute::computed("drift_ratio", Type::Number, "How much earlier clones used relative to their source's allocation: the median for clones of the same kind at this clone's age (hours since it was created, 0 before), 1 without earlier clones."),
                Attribute::computed("drift_basis", Type::String, "Which earlier clones `drift_ratio` comes from: `size` (same app type, user role and source size class), `group` (same app type and user role), `app` (same app type), `all`, or `none`."),
                Attribute::computed("own_history_weight", Type::Number, "Weight of the forecast of the clone's own recorded usage (under its name in the history source or the controller), `n / (n + 288)` for `n` five-minute samples of the last 7 days: 0.5 after one day."),
                Attribute::computed("allocation", Type::list(allocation_type()), "The chosen allocation, most expensive line first; `hourly_cost` is for all `count` instances (USD)."),
                Attribute::computed("hourly_cost", Type::Number, "Total list price of the allocation, USD per hour."),
                Attribute::computed("monthly_cost", Type::Number, "Total list price of the allocation, USD per month (730 hours)."),
                Attribute::computed("sizing_explanation", Type::String, "Why this allocation: the demand it covers (the quantile's demand plus the safety margin), whether it is proven cheapest, the binding constraints and the next-best alternative."),
                Attribute::computed("provisioned_count", Type::Number, "Instances running for this clone; differs from the allocation when capacity drifted, which the next plan corrects."),
                Attribute::computed("instance_ids", Type::list(Type::String), "Ids of the clone's live instances."),
            ],
            blocks: vec![source],
        },
    }
}

/// The horizon in hours from `<n>h` / `<n>d`.
pub fn parse_horizon(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix('h') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 24.0)
    } else {
        return None;
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|h| h * mult)
        .filter(|h| *h > 0.0 && *h <= 24.0 * 366.0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_elements()
        .map(|e| {
            e.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn numbers(v: &Value) -> Option<Vec<f64>> {
    v.as_elements()
        .map(|e| e.iter().filter_map(Value::as_f64).collect())
}

/// Reads the usage source from a (known) configuration or plan.
fn usage(v: &Value, diags: &mut Diagnostics) -> Option<(Usage, f64, f64)> {
    let src = v
        .get("source")
        .as_elements()
        .and_then(|e| e.first())
        .cloned()
        .unwrap_or(Value::Null);
    let p = AttrPath::root("source").index(0);
    let workload = src.get("workload");
    let cpu = src.get("cpu");
    if workload.is_null() == cpu.is_null() {
        diags.attr_error(
            p,
            "Invalid source",
            "source: set exactly one of workload and cpu (an inline profile)",
        );
        return None;
    }
    let per_cpu = src.get("mem_gib_per_cpu").as_f64().unwrap_or(4.0);
    let gpu = src.get("gpu").as_f64().unwrap_or(0.0);
    if let Some(w) = workload.as_str() {
        return Some((Usage::Workload(w.to_string()), per_cpu, gpu));
    }
    let cpu = numbers(cpu)?;
    let mem = numbers(src.get("mem_gib"));
    if let Some(m) = &mem {
        if m.len() != cpu.len() {
            diags.attr_error(
                p.attr("mem_gib"),
                "Invalid source",
                format!(
                    "source[0].mem_gib has {} samples but cpu has {}",
                    m.len(),
                    cpu.len()
                ),
            );
            return None;
        }
    }
    let step = src.get("step_seconds").as_i64().unwrap_or(3600);
    Some((
        Usage::Inline {
            cpu,
            mem_gib: mem,
            step_seconds: step,
        },
        per_cpu,
        gpu,
    ))
}

/// Sizing constraints from the clone's attributes; problems are reported on the attribute.
fn constraints(v: &Value, horizon_hours: f64, diags: &mut Diagnostics) -> Option<SizingParams> {
    let mut p = SizingParams::default();
    for c in strings(v.get("clouds")) {
        match c.parse::<Cloud>() {
            Ok(c) => p.clouds.push(c),
            Err(e) => diags.attr_error(AttrPath::root("clouds"), "Invalid cloud", error_chain(&e)),
        }
    }
    p.regions = strings(v.get("regions"));
    p.families = strings(v.get("families"));
    let purchases = strings(v.get("purchase_options"));
    match Purchase::parse_list(&purchases.join(",")) {
        Ok(list) => p.purchase = list,
        Err(e) => diags.attr_error(
            AttrPath::root("purchase_options"),
            "Invalid purchase option",
            error_chain(&e),
        ),
    }
    p.min_count = v.get("min_count").as_i64().unwrap_or(1).max(0) as u32;
    p.max_count = v.get("max_count").as_i64().unwrap_or(100).max(0) as u32;
    p.horizon_hours = horizon_hours;
    (!diags.has_error()).then_some(p)
}

/// Maps an engine error to the attribute it is about.
fn sizing_error_path(e: &sizing::Error) -> AttrPath {
    use std::error::Error as _;
    let text = e.source().map(|s| s.to_string()).unwrap_or_default();
    for (needle, attr) in [
        ("region", "regions"),
        ("famil", "families"),
        ("min_count", "min_count"),
        ("max_count", "max_count"),
        ("purchase", "purchase_options"),
        ("quantile", "quantile"),
        ("budget", "budget_id"),
        ("priority", "user_role"),
    ] {
        if text.contains(needle) {
            return AttrPath::root(attr);
        }
    }
    AttrPath::root("source")
}

/// Everything plan computes for a clone.
#[derive(Debug, Clone)]
struct Computed {
    demand: DemandForecast,
    sizing: Sizing,
    params: SizingParams,
    /// How much of the demand a shared budget serves, when less than all of it.
    budget_note: Option<String>,
    /// How drift and the clone's own usage shaped the demand.
    drift: Drift,
}

/// Runs the sizing of a clone whose inputs are known; `None` with diagnostics on failure.
async fn compute(ctx: &Configured, v: &Value, diags: &mut Diagnostics) -> Option<Computed> {
    let horizon_s = v.get("horizon").as_str().unwrap_or("24h");
    let Some(horizon) = parse_horizon(horizon_s) else {
        diags.attr_error(
            AttrPath::root("horizon"),
            "Invalid horizon",
            format!("horizon: {horizon_s:?} is not like \"24h\" or \"7d\" (at most a year)"),
        );
        return None;
    };
    let (usage, per_cpu, gpu) = usage(v, diags)?;
    let base = constraints(v, horizon, diags)?;
    let report = |e: sizing::Error, diags: &mut Diagnostics| {
        diags.attr_error(sizing_error_path(&e), "Sizing failed", error_chain(&e))
    };
    let hist = match sizing::load(&ctx.histories, ctx.sources(), &usage).await {
        Ok(h) => h,
        Err(e) => {
            diags.attr_error(
                AttrPath::root("source").index(0),
                "Cannot read the usage history",
                error_chain(&e),
            );
            return None;
        }
    };
    let key = format!("{usage:?}");
    let sizing::History::Series {
        cpu: cpu_s,
        mem: mem_s,
    } = &*hist;
    let cpu = match sizing::peaks(&ctx.forecasts, &format!("cpu|{key}"), cpu_s, horizon) {
        Ok(p) => p,
        Err(e) => {
            diags.attr_error(
                AttrPath::root("source").index(0),
                "Forecast failed",
                error_chain(&e),
            );
            return None;
        }
    };
    let mem = match mem_s {
        Some(m) => match sizing::peaks(&ctx.forecasts, &format!("mem|{key}"), m, horizon) {
            Ok(p) => Some(p),
            Err(e) => {
                diags.attr_error(
                    AttrPath::root("source").index(0).attr("mem_gib"),
                    "Forecast failed",
                    error_chain(&e),
                );
                return None;
            }
        },
        None => None,
    };
    let demand = sizing::demand_forecast(&cpu, mem.as_deref(), per_cpu, gpu);
    let quantile = v.get("quantile").as_f64().unwrap_or(0.95);
    let (demand, drift) = drifted(ctx, v, demand, quantile, horizon, diags).await;
    let margin = v.get("safety_margin").as_f64().unwrap_or(0.1);
    let params = sizing::sizing_params(&demand, quantile, margin, &base);
    let sizing = match v.get("budget_id").as_str() {
        None => sizing::size(&ctx.sizings, &ctx.catalog, &demand, quantile, margin, &base)
            .map(|s| (*s).clone()),
        Some(budget_id) => return budgeted(ctx, v, budget_id, demand, params, drift, diags),
    };
    match sizing {
        Ok(s) => Some(Computed {
            demand,
            sizing: s,
            params,
            budget_note: None,
            drift,
        }),
        Err(e) => {
            report(e, diags);
            None
        }
    }
}

/// The clone's demand after drift: the source's demand × the ratio learned from earlier clones
/// for this clone's features, blended towards the forecast of its own usage (see
/// [`super::drift`]). Earlier clones that cannot be read are left out with a warning naming them.
async fn drifted(
    ctx: &Configured,
    v: &Value,
    source: DemandForecast,
    quantile: f64,
    horizon: f64,
    diags: &mut Diagnostics,
) -> (DemandForecast, Drift) {
    let name = v.get("name").as_str().unwrap_or_default();
    let src = ctx.sources();
    let gathered = drift::cached(&ctx.earlier_clones, src, &ctx.histories, &ctx.store).await;
    for p in &gathered.problems {
        diags.warning(
            None,
            "Earlier clone left out of drift learning",
            error_chain(p),
        );
    }
    let me = gathered.clones.iter().find(|c| c.name == name);
    let (source_allocation, age_hours) = match me {
        Some(c) => (
            c.features.source_allocation,
            ((src.now - c.features.created_at) as f64 / 3600.0).max(0.0),
        ),
        None => (drift::source_allocation(&source, quantile), 0.0),
    };
    let learn = drift::histories(&gathered.clones, name);
    let model = DriftModel::fit(&learn);
    let (ratio, basis) = model.ratio(&CloneFeatures {
        age_hours,
        app_type: v.get("app_type").as_str().unwrap_or("web").to_string(),
        user_role: v.get("user_role").as_str().unwrap_or("normal").to_string(),
        source_allocation,
    });
    let mut d = Drift {
        ratio,
        basis,
        learned_from: learn.len(),
        ..Drift::none(source_allocation, age_hours)
    };
    let mut own = None;
    if let Some(usage) = me.and_then(|c| c.usage.as_ref()) {
        let (window, samples) = drift::own_window(usage);
        match sizing::peaks(&ctx.forecasts, &format!("own|{name}"), &window, horizon) {
            Ok(p) => {
                own = Some(p);
                d.own_weight = drift::own_weight(samples);
                d.own_hours = window.len();
            }
            Err(e) => diags.warning(
                Some(AttrPath::root("name")),
                "The clone's own usage is not used",
                format!(
                    "forecasting the recorded usage of clone {name:?}: {}",
                    error_chain(&e)
                ),
            ),
        }
    }
    (
        drift::apply(&source, ratio, own.as_deref(), d.own_weight),
        d,
    )
}

/// Sizing under a shared budget: this clone and every other clone registered on the budget are
/// handed to the engine's priority allocation.
fn budgeted(
    ctx: &Configured,
    v: &Value,
    budget_id: &str,
    demand: DemandForecast,
    params: SizingParams,
    drift: Drift,
    diags: &mut Diagnostics,
) -> Option<Computed> {
    let Some(budget) = super::budget::load(ctx, budget_id, diags) else {
        if !diags.has_error() {
            diags.attr_error(AttrPath::root("budget_id"), "Unknown budget", format!("budget_id: no budget {budget_id:?} in the state store; create the predictive_budget first (reference its id)"));
        }
        return None;
    };
    let role = v.get("user_role").as_str().unwrap_or("normal");
    let weight = match budget.get("priorities") {
        Value::Map(m) => m.get(role).and_then(Value::as_f64),
        _ => None,
    };
    let Some(priority) = weight else {
        diags.attr_error(
            AttrPath::root("user_role"),
            "Unknown priority class",
            format!("user_role: budget {budget_id:?} has no priority class {role:?}"),
        );
        return None;
    };
    let name = v.get("name").as_str().unwrap_or_default().to_string();
    let mut workloads = vec![cost::WorkloadParams {
        name: name.clone(),
        sizing: params.clone(),
        priority,
        floor: v.get("floor").as_f64().unwrap_or(0.0),
    }];
    match ctx.store.list(Kind::Clone) {
        Ok(list) => {
            for (_, other, body) in list {
                if other == name {
                    continue;
                }
                if let Ok(rec) = serde_json::from_str::<Registration>(&body) {
                    if rec.budget_id.as_deref() == Some(budget_id) {
                        workloads.push(cost::WorkloadParams {
                            name: other,
                            sizing: rec.sizing,
                            priority: rec.priority,
                            floor: rec.floor,
                        });
                    }
                }
            }
        }
        Err(e) => {
            diags.error("Could not read the state store", error_chain(&e));
            return None;
        }
    }
    let cap = budget.get("effective_hourly_cap").as_f64().unwrap_or(0.0);
    let plan = cost::BudgetParams::hourly(cap, workloads)
        .check(&ctx.catalog)
        .and_then(|b| cost::allocate_budget(&ctx.catalog, &b));
    match plan {
        Ok(p) => {
            let mine = p.workloads.into_iter().find(|w| w.name == name)?;
            match mine.sizing {
                Some(s) => {
                    let budget_note = (mine.served < 1.0).then(|| {
                        format!(
                            "Budget {budget_id}: {:.0}% of the demand is served (priority {priority}).",
                            mine.served * 100.0
                        )
                    });
                    Some(Computed {
                        demand,
                        sizing: s,
                        params,
                        budget_note,
                        drift,
                    })
                }
                None => {
                    diags.attr_error(AttrPath::root("budget_id"), "Budget leaves nothing for this clone", format!("budget_id: budget {budget_id:?} serves none of this clone's demand at priority {role:?}"));
                    None
                }
            }
        }
        Err(e) => {
            diags.attr_error(
                AttrPath::root("budget_id"),
                "Budget allocation failed",
                error_chain(&e),
            );
            None
        }
    }
}

/// What the state store keeps for the controller (and for budget allocation and import).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// The clone's Terraform state, as cty JSON.
    pub state: String,
    /// Sizing parameters it was sized with.
    pub sizing: SizingParams,
    /// Referenced budget.
    pub budget_id: Option<String>,
    /// Budget priority weight.
    pub priority: f64,
    /// Budget floor.
    pub floor: f64,
    /// Application type.
    pub app_type: String,
    /// Cloud it is provisioned on.
    pub cloud: String,
    /// How many times its capacity was (re)provisioned; part of launch tokens.
    pub generation: u64,
    /// Role of its users (records written before it was kept lack it).
    #[serde(default)]
    pub user_role: Option<String>,
    /// The source allocation when it was first planned, vCPU (see [`drift::source_allocation`]).
    #[serde(default)]
    pub source_allocation: Option<f64>,
    /// Unix seconds when it was created.
    #[serde(default)]
    pub created_at: Option<i64>,
}

fn set_computed(plan: &mut Value, c: &Computed) {
    plan.set("model", Value::string(&c.demand.model));
    plan.set(
        "demand",
        Value::List(
            c.demand
                .levels
                .iter()
                .map(|(l, d)| {
                    Value::object([
                        ("quantile", computed_number(*l)),
                        ("cpu", computed_number(d.cpu)),
                        ("mem_gib", computed_number(d.mem_gib)),
                        ("gpu", computed_number(d.gpu)),
                    ])
                })
                .collect(),
        ),
    );
    plan.set(
        "allocation",
        Value::List(
            c.sizing
                .allocation
                .iter()
                .map(|a| {
                    Value::object([
                        ("cloud", Value::string(a.cloud.as_str())),
                        ("region", Value::string(&a.region)),
                        ("instance_type", Value::string(&a.instance_type)),
                        ("count", Value::number(f64::from(a.count))),
                        ("purchase", Value::string(a.purchase.as_str())),
                        ("hourly_cost", computed_number(a.hourly_cost)),
                    ])
                })
                .collect(),
        ),
    );
    plan.set(
        "source_allocation",
        computed_number(c.drift.source_allocation),
    );
    plan.set("drift_ratio", computed_number(c.drift.ratio));
    plan.set("drift_basis", Value::string(c.drift.basis));
    plan.set("own_history_weight", computed_number(c.drift.own_weight));
    plan.set("hourly_cost", computed_number(c.sizing.total_hourly_cost));
    plan.set("monthly_cost", computed_number(c.sizing.total_monthly_cost));
    plan.set("sizing_explanation", Value::string(explanation(c)));
    plan.set(
        "provisioned_count",
        Value::number(f64::from(
            c.sizing.allocation.iter().map(|a| a.count).sum::<u32>(),
        )),
    );
}

/// `sizing_explanation`: what the allocation covers, how sure the optimum is, the binding
/// constraints and the next-best alternative, from the engine's explanation. It leaves out what
/// other attributes already show (model, quantile, allocation lines, costs), which keeps plans of
/// many clones short to print and to store.
fn explanation(c: &Computed) -> String {
    let s = &c.sizing;
    let e = &s.explanation;
    let d = &s.demand;
    let mut out = format!("Covers cpu {}, mem {} GiB", round(d.cpu), round(d.mem_gib));
    if d.gpu > 0.0 {
        out.push_str(&format!(", gpu {}", round(d.gpu)));
    }
    if d.network_gbps > 0.0 {
        out.push_str(&format!(", network {} Gbit/s", round(d.network_gbps)));
    }
    out.push_str(&format!(
        " (demand at the quantile plus safety margin); cheapest of {} offers",
        e.candidates
    ));
    if e.optimal {
        out.push_str(", proven optimal");
    } else {
        let gap = (s.effective_hourly_cost / e.lower_bound.max(1e-12) - 1.0) * 100.0;
        out.push_str(&format!(", within {gap:.2} % of the lower bound"));
    }
    let binding = if e.binding.is_empty() {
        "none".to_string()
    } else {
        e.binding.join(", ")
    };
    out.push_str(&format!("; binding: {binding}."));
    match &e.next_best {
        Some(alt) => out.push_str(&format!(" Next best, {}.", alt.description)),
        None => {
            // The engine says so when no allocation without the main type meets the constraints.
            if let Some(i) = e.summary.find(" No allocation without ") {
                out.push_str(&e.summary[i..]);
            }
        }
    }
    if let Some(note) = &c.budget_note {
        out.push(' ');
        out.push_str(note);
    }
    if c.drift.changes_demand() {
        out.push(' ');
        out.push_str(&c.drift.sentence());
    }
    out
}

/// A real cloud's adapter acts in one cloud and one region: every allocation line must be
/// there (the sim hosts every cloud and region). `false` with a diagnostic otherwise.
fn check_placement(ctx: &Configured, plan: &Value, diags: &mut Diagnostics) -> bool {
    let Some(region) = super::cloud::adapter_region(&ctx.config) else {
        return true;
    };
    let cloud_name = &ctx.config.cloud;
    for a in plan.get("allocation").as_elements().unwrap_or_default() {
        let (c, r) = (
            a.get("cloud").as_str().unwrap_or_default(),
            a.get("region").as_str().unwrap_or_default(),
        );
        if c != cloud_name || r != region {
            diags.attr_error(
                AttrPath::root("regions"),
                "Allocation outside the provider's cloud",
                format!("the plan places capacity in {c} {r}, but the provider acts on {cloud_name} {region}; restrict `clouds` to [\"{cloud_name}\"] and `regions` to [\"{region}\"]"),
            );
            return false;
        }
    }
    true
}

/// The plan with its sizing filled in: a plan whose inputs were unknown at plan time (e.g. a
/// budget created in the same run) is sized now, at apply.
async fn sized(ctx: &Configured, plan: &Value, diags: &mut Diagnostics) -> Option<Value> {
    if !plan.get("allocation").is_unknown() {
        return Some(plan.clone());
    }
    let c = compute(ctx, plan, diags).await?;
    let mut p = plan.clone();
    set_computed(&mut p, &c);
    Some(p)
}

/// Rounds to 6 decimals (micro-dollars, micro-vCPUs) so values read as people write them; the
/// decimal text is what Terraform stores, so the same sizing always yields the same state.
fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A computed number, rounded by [`round`]: an integer when it is one, otherwise a float64.
///
/// Terraform holds a float64 from the provider as a 53-bit number, which it encodes, compares
/// and prints far more cheaply than the 512-bit number it parses from decimal text (a plan of
/// many clones spends much of its CPU formatting those). The state file keeps the shortest
/// decimal text of the float64, which Terraform reads back at 512 bits: [`keep_prior_numbers`]
/// then plans the prior value itself, so an unchanged sizing still plans no diff.
fn computed_number(x: f64) -> Value {
    match Number::from_f64(round(x)) {
        n @ Number::Int(_) => Value::Number(n),
        _ => Value::Number(Number::Float(round(x))),
    }
}

/// Replaces each number of `planned` that equals (as a decimal) the number at the same place in
/// `prior` by the prior's own form, so that Terraform, which compares numbers bit for bit,
/// sees the unchanged value it holds rather than the same decimal at another precision.
fn keep_prior_numbers(planned: &mut Value, prior: &Value) {
    match (planned, prior) {
        (Value::Number(a), Value::Number(b)) if a == b => *a = b.clone(),
        (Value::List(a), Value::List(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                keep_prior_numbers(x, y);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in a.iter_mut() {
                if let Some(y) = b.get(k) {
                    keep_prior_numbers(x, y);
                }
            }
        }
        _ => {}
    }
}

/// What an allocation line's purchase option launches as.
fn launch_purchase(purchase: &str) -> PurchaseOption {
    if purchase == "spot" {
        PurchaseOption::Spot
    } else {
        PurchaseOption::OnDemand
    }
}

fn owner_of(id: &str) -> Option<Owner> {
    Owner::new(id).ok()
}

#[async_trait]
impl Resource<Configured> for CloneResource {
    fn type_name(&self) -> &'static str {
        "predictive_clone"
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        if let Some(h) = config.get("horizon").as_str() {
            if parse_horizon(h).is_none() {
                diags.attr_error(
                    AttrPath::root("horizon"),
                    "Invalid horizon",
                    format!("horizon: {h:?} is not like \"24h\" or \"7d\" (at most a year)"),
                );
            }
        }
        if let (Some(lo), Some(hi)) = (
            config.get("min_count").as_i64(),
            config.get("max_count").as_i64(),
        ) {
            if lo > hi {
                diags.attr_error(
                    AttrPath::root("min_count"),
                    "Invalid counts",
                    format!("min_count {lo} is above max_count {hi}"),
                );
            }
        }
        if let Some(src) = config.get("source").as_elements().and_then(|e| e.first()) {
            let (w, c) = (src.get("workload"), src.get("cpu"));
            if !w.is_unknown() && !c.is_unknown() && w.is_null() == c.is_null() {
                diags.attr_error(
                    AttrPath::root("source").index(0),
                    "Invalid source",
                    "source: set exactly one of workload and cpu (an inline profile)",
                );
            }
        }
    }

    async fn modify_plan(
        &self,
        ctx: &Configured,
        prior: Option<&Value>,
        plan: &mut Value,
        diags: &mut Diagnostics,
    ) {
        if prior.is_none() {
            if let Some(n) = plan.get("name").as_str() {
                plan.set("id", Value::string(format!("clone-{n}")));
            }
        }
        // Sizing needs every input; with unknown inputs the computed values stay unknown.
        let schema = schema();
        let inputs_known = match plan {
            Value::Object(m) => m
                .iter()
                .filter(|(k, _)| {
                    schema
                        .block
                        .attribute(k)
                        .is_none_or(|a| !a.computed || a.optional)
                })
                .all(|(_, v)| v.is_wholly_known()),
            _ => false,
        };
        if !inputs_known {
            return;
        }
        let Some(c) = compute(ctx, plan, diags).await else {
            return;
        };
        set_computed(plan, &c);
        if let Some(p) = prior {
            for attr in COMPUTED_NUMBERS {
                let mut v = plan.get(attr).clone();
                keep_prior_numbers(&mut v, p.get(attr));
                plan.set(attr, v);
            }
        }
        if !check_placement(ctx, plan, diags) {
            return;
        }
        match prior {
            // Same allocation and capacity as in state: keep the observed instance ids.
            Some(p)
                if p.get("allocation") == plan.get("allocation")
                    && p.get("provisioned_count") == plan.get("provisioned_count") =>
            {
                plan.set("instance_ids", p.get("instance_ids").clone());
            }
            _ => plan.set("instance_ids", Value::Unknown),
        }
    }

    async fn create(&self, ctx: &Configured, plan: &Value, diags: &mut Diagnostics) -> Value {
        let id = format!("clone-{}", plan.get("name").as_str().unwrap_or_default());
        let Some(plan) = sized(ctx, plan, diags).await else {
            return Value::Null;
        };
        let mut state = plan.clone();
        state.set("id", Value::string(&id));
        self.provision(ctx, &id, &plan, 1, diags).await;
        self.finish(ctx, &id, state, &plan, 1, diags).await
    }

    async fn read(
        &self,
        ctx: &Configured,
        state: &Value,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let id = state.get("id").as_str()?.to_string();
        let registered = ctx.store.get(Kind::Clone, &id);
        let live = self.live(ctx, &id, diags).await;
        let mut s = state.clone();
        match (registered, live) {
            (Ok(None), Some(l)) if l.is_empty() => None,
            (Err(e), _) => {
                diags.error("Could not read the state store", error_chain(&e));
                Some(s)
            }
            (_, Some(l)) => {
                s.set("provisioned_count", Value::number(l.len() as f64));
                s.set(
                    "instance_ids",
                    Value::strings(l.iter().map(|i| i.as_str().to_string())),
                );
                Some(s)
            }
            (_, None) => Some(s),
        }
    }

    async fn update(
        &self,
        ctx: &Configured,
        prior: &Value,
        plan: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let id = prior.get("id").as_str().unwrap_or_default().to_string();
        let generation = self
            .registration(ctx, &id)
            .map(|r| r.generation + 1)
            .unwrap_or(1);
        let Some(plan) = sized(ctx, plan, diags).await else {
            return prior.clone();
        };
        let mut state = plan.clone();
        state.set("id", Value::string(&id));
        self.provision(ctx, &id, &plan, generation, diags).await;
        self.finish(ctx, &id, state, &plan, generation, diags).await
    }

    async fn delete(&self, ctx: &Configured, prior: &Value, diags: &mut Diagnostics) {
        let id = prior.get("id").as_str().unwrap_or_default().to_string();
        if let Some(live) = self.live(ctx, &id, diags).await {
            Self::release(ctx, live, diags).await;
        }
        ctx.save_cloud(diags);
        if !diags.has_error() {
            if let Some(c) = &ctx.config.controller {
                let name = prior.get("name").as_str().unwrap_or_default();
                let r = match super::controller::Client::connect(&c.endpoint, &c.token).await {
                    Ok(client) => client.delete_clone(name).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    diags.error(
                        "Could not unregister the clone from the controller",
                        error_chain(&e),
                    );
                    return;
                }
            }
            if let Err(e) = ctx.store.delete(Kind::Clone, &id) {
                diags.error("Could not unregister the clone", error_chain(&e));
            }
        }
    }

    async fn import(&self, ctx: &Configured, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        match self.registration(ctx, id) {
            Some(r) => match json::decode(r.state.as_bytes(), &schema().block.value_type()) {
                Ok(v) => Some(v),
                Err(e) => {
                    diags.error(
                        "Corrupt clone in the state store",
                        format!("clone {id}: {e}"),
                    );
                    None
                }
            },
            None => {
                diags.error(
                    "Cannot import clone",
                    format!(
                        "no clone with id {id:?} in the state store {}",
                        ctx.store.path().display()
                    ),
                );
                None
            }
        }
    }
}

impl CloneResource {
    fn registration(&self, ctx: &Configured, id: &str) -> Option<Registration> {
        ctx.store
            .get(Kind::Clone, id)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_str(&b).ok())
    }

    /// Live instances of the clone, sorted by id; `None` (with a diagnostic) when the cloud fails.
    async fn live(
        &self,
        ctx: &Configured,
        id: &str,
        diags: &mut Diagnostics,
    ) -> Option<Vec<InstanceId>> {
        let owner = owner_of(id)?;
        match ctx.cloud.list_instances(&owner).await {
            Ok(list) => {
                let mut ids: Vec<InstanceId> = list
                    .into_iter()
                    .filter(|i| i.state.is_live())
                    .map(|i| i.id)
                    .collect();
                ids.sort();
                Some(ids)
            }
            Err(e) => {
                diags.error(
                    "Could not observe capacity",
                    format!(
                        "listing instances of {id} on {}: {}",
                        ctx.cloud.name(),
                        error_chain(&e)
                    ),
                );
                None
            }
        }
    }

    /// Brings the live capacity to the planned allocation: launches what is missing (one
    /// idempotent launch per line and generation) and terminates what is no longer planned.
    async fn provision(
        &self,
        ctx: &Configured,
        id: &str,
        plan: &Value,
        generation: u64,
        diags: &mut Diagnostics,
    ) {
        let Some(owner) = owner_of(id) else {
            diags.attr_error(
                AttrPath::root("name"),
                "Invalid name",
                format!("{id:?} is not a valid owner label"),
            );
            return;
        };
        let lines = plan.get("allocation").as_elements().unwrap_or_default();
        // Spot lines launch spot capacity; on-demand and reserved lines launch on-demand
        // instances (a reservation is a billing commitment, not a kind of instance).
        let want: Vec<(String, String, PurchaseOption, u32)> = lines
            .iter()
            .map(|a| {
                (
                    a.get("instance_type")
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    a.get("region").as_str().unwrap_or_default().to_string(),
                    launch_purchase(a.get("purchase").as_str().unwrap_or_default()),
                    a.get("count").as_i64().unwrap_or(0).max(0) as u32,
                )
            })
            .collect();
        let cloud_name = ctx.config.cloud.clone();
        let adapter_region = super::cloud::adapter_region(&ctx.config);
        if !check_placement(ctx, plan, diags) {
            return;
        }
        let existing = match ctx.cloud.list_instances(&owner).await {
            Ok(l) => l
                .into_iter()
                .filter(|i| i.state.is_live())
                .collect::<Vec<_>>(),
            Err(e) => {
                diags.error(
                    "Could not observe capacity",
                    format!(
                        "listing instances of {id} on {}: {}",
                        ctx.cloud.name(),
                        error_chain(&e)
                    ),
                );
                return;
            }
        };
        type Key = (String, String, PurchaseOption);
        let mut by_key: BTreeMap<Key, Vec<InstanceId>> = BTreeMap::new();
        for i in existing {
            by_key
                .entry((
                    i.instance_type.as_str().to_string(),
                    super::cloud::region_of(&cloud_name, &i.location),
                    i.purchase,
                ))
                .or_default()
                .push(i.id);
        }
        let mut surplus: Vec<InstanceId> = Vec::new();
        let planned: BTreeMap<Key, u32> =
            want.iter().fold(BTreeMap::new(), |mut m, (t, r, p, n)| {
                *m.entry((t.clone(), r.clone(), *p)).or_insert(0) += n;
                m
            });
        for (key, ids) in &mut by_key {
            let keep = planned.get(key).copied().unwrap_or(0) as usize;
            if ids.len() > keep {
                ids.sort();
                surplus.extend(ids.split_off(keep));
            }
        }
        for (n, ((itype, region, purchase), count)) in planned.iter().enumerate() {
            let have = by_key
                .get(&(itype.clone(), region.clone(), *purchase))
                .map_or(0, Vec::len) as u32;
            if *count <= have {
                continue;
            }
            let token = match IdempotencyToken::new(
                format!("{id}-g{generation}-{n}")
                    .chars()
                    .rev()
                    .take(64)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>(),
            ) {
                Ok(t) => t,
                Err(e) => {
                    diags.error("Could not launch capacity", error_chain(&e));
                    return;
                }
            };
            let mut req = LaunchRequest::new(token, owner.clone(), itype.as_str(), count - have)
                .with_purchase(*purchase);
            // The sim hosts every region; a real adapter places in its own region.
            if adapter_region.is_none() {
                req.location = Some(region.clone());
            }
            req.tags.insert("predictive-clone".into(), id.to_string());
            // The controller's orphan sweep keeps instances tagged with a registered name.
            if let Some(name) = plan.get("name").as_str() {
                req.tags
                    .insert("predictive-workload".into(), name.to_string());
            }
            if let Err(e) = ctx.cloud.launch(&req).await {
                diags.error(
                    "Could not pre-provision capacity",
                    format!(
                        "launching {} x {itype} ({}) in {region} on {}: {}",
                        count - have,
                        purchase.as_str(),
                        ctx.cloud.name(),
                        error_chain(&e)
                    ),
                );
                ctx.save_cloud(diags);
                return;
            }
        }
        Self::release(ctx, surplus, diags).await;
        ctx.save_cloud(diags);
    }

    /// Terminates `instances`; one already gone is released, any other failure is an error
    /// naming the instance and the cloud.
    async fn release(ctx: &Configured, instances: Vec<InstanceId>, diags: &mut Diagnostics) {
        for inst in instances {
            if let Err(e) = ctx.cloud.terminate_instance(&inst).await {
                if !e.is_not_found() {
                    diags.error(
                        "Could not release capacity",
                        format!(
                            "terminating {} on {}: {}",
                            inst.as_str(),
                            ctx.cloud.name(),
                            error_chain(&e)
                        ),
                    );
                }
            }
        }
    }

    /// Records the observed capacity in the new state and registers the clone.
    async fn finish(
        &self,
        ctx: &Configured,
        id: &str,
        mut state: Value,
        plan: &Value,
        generation: u64,
        diags: &mut Diagnostics,
    ) -> Value {
        if let Some(l) = self.live(ctx, id, diags).await {
            state.set("provisioned_count", Value::number(l.len() as f64));
            state.set(
                "instance_ids",
                Value::strings(l.iter().map(|i| i.as_str().to_string())),
            );
        }
        if state.get("instance_ids").is_unknown() {
            state.set("instance_ids", Value::List(vec![]));
        }
        let mut d = Diagnostics::default();
        let computed = compute(ctx, plan, &mut d).await;
        // Recorded as the plan shows it.
        let source_allocation = computed.as_ref().map(|c| round(c.drift.source_allocation));
        let params = computed.map(|c| c.params).unwrap_or_default();
        let earlier = self.registration(ctx, id);
        let created_at = earlier
            .as_ref()
            .and_then(|r| r.created_at)
            .unwrap_or(ctx.sources().now);
        let source_allocation = earlier
            .as_ref()
            .and_then(|r| r.source_allocation)
            .or(source_allocation);
        let budget_id = plan.get("budget_id").as_str().map(String::from);
        let priority = budget_id
            .as_deref()
            .and_then(|b| super::budget::load(ctx, b, &mut d))
            .and_then(|b| match b.get("priorities") {
                Value::Map(m) => m
                    .get(plan.get("user_role").as_str().unwrap_or("normal"))
                    .and_then(Value::as_f64),
                _ => None,
            })
            .unwrap_or(1.0);
        let reg = Registration {
            state: json::encode(&state, &schema().block.value_type()),
            sizing: params,
            budget_id,
            priority,
            floor: plan.get("floor").as_f64().unwrap_or(0.0),
            app_type: plan.get("app_type").as_str().unwrap_or("web").to_string(),
            cloud: ctx.cloud.name().to_string(),
            generation,
            user_role: plan.get("user_role").as_str().map(String::from),
            source_allocation,
            created_at: Some(created_at),
        };
        match serde_json::to_string(&reg) {
            Ok(body) => {
                if let Err(e) = ctx.store.put(
                    Kind::Clone,
                    id,
                    plan.get("name").as_str().unwrap_or_default(),
                    &body,
                ) {
                    diags.error("Could not register the clone", error_chain(&e));
                }
            }
            Err(e) => diags.error("Could not register the clone", e.to_string()),
        }
        if let Some(c) = &ctx.config.controller {
            let source = plan
                .get("source")
                .as_elements()
                .and_then(|e| e.first().cloned())
                .and_then(|s| s.get("workload").as_str().map(String::from))
                .unwrap_or_else(|| "inline".to_string());
            let spec = serde_json::json!({
                "id": id,
                "cloud": reg.cloud,
                "app_type": reg.app_type,
                "user_role": reg.user_role,
                "source_allocation": reg.source_allocation,
                "created_at": reg.created_at,
                "budget_id": reg.budget_id,
                "priority": reg.priority,
                "floor": reg.floor,
                "hourly_cost": state.get("hourly_cost").as_f64(),
                "instance_ids": state.get("instance_ids").as_elements().unwrap_or_default().iter().filter_map(|v| v.as_str().map(String::from)).collect::<Vec<_>>(),
                "sizing": reg.sizing,
            });
            let name = plan.get("name").as_str().unwrap_or_default();
            let r = match super::controller::Client::connect(&c.endpoint, &c.token).await {
                Ok(client) => client.put_clone(name, &source, &spec.to_string()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                diags.attr_error(
                    AttrPath::root("name"),
                    "Could not register the clone with the controller",
                    error_chain(&e),
                );
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_should_parse_hours_and_days() {
        let cases = [
            ("24h", Some(24.0)),
            ("7d", Some(168.0)),
            ("1.5h", Some(1.5)),
            ("0h", None),
            ("24", None),
            ("x d", None),
            ("400d", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_horizon(s), want, "{s}");
        }
    }

    #[test]
    fn names_should_be_owner_labels() {
        let mut d = Diagnostics::default();
        Label.validate(&AttrPath::root("name"), &Value::string("Web App"), &mut d);
        assert_eq!(d.0.len(), 1);
        assert!(d.0[0].detail.starts_with("name:"));
        let mut d = Diagnostics::default();
        Label.validate(&AttrPath::root("name"), &Value::string("web-eu_2"), &mut d);
        assert!(d.0.is_empty());
    }
}
