//! `predictive_budget`: a shared hourly (or monthly) cap with named priority classes that clones
//! reference. The engine's budget allocation decides what each clone gets under the cap.

use super::store::Kind;
use super::Configured;
use crate::framework::diag::error_chain;
use crate::framework::modifiers::{AtLeast, NotEmpty, UseStateForUnknown};
use crate::framework::server::Resource;
use crate::framework::{AttrPath, Attribute, Block, Diagnostics, Schema};
use crate::value::{json, Type, Value};
use async_trait::async_trait;

/// The resource type.
#[derive(Debug, Default)]
pub struct BudgetResource;

/// The priority classes a budget has unless configured.
pub fn default_priorities() -> Value {
    Value::Map(
        [("critical", 100.0), ("vip", 10.0), ("normal", 1.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::number(v)))
            .collect(),
    )
}

/// The schema.
pub fn schema() -> Schema {
    Schema {
        version: 0,
        block: Block {
            description: "A budget shared by clones: a hard cap on their hourly list cost, and named priority classes. Clones that reference it are served by priority, highest first, each never below its floor.".into(),
            attributes: vec![
                Attribute::computed("id", Type::String, "Budget id (`budget-<name>`).").modifier(UseStateForUnknown),
                Attribute::required("name", Type::String, "Budget name, unique in the state store.").validate(NotEmpty),
                Attribute::optional("hourly_cap", Type::Number, "Cap in USD per hour. Set this or `monthly_cap`.").validate(AtLeast(0.0)),
                Attribute::optional("monthly_cap", Type::Number, "Cap in USD per month (730 hours). Set this or `hourly_cap`.").validate(AtLeast(0.0)),
                Attribute::with_default("priorities", Type::map(Type::Number), default_priorities(), "Priority classes and their weights (> 0); a clone names its class in `priority`."),
                Attribute::computed("effective_hourly_cap", Type::Number, "The cap in USD per hour, whichever way it was given."),
            ],
            blocks: vec![],
        },
    }
}

fn effective_cap(v: &Value) -> Option<f64> {
    match (v.get("hourly_cap").as_f64(), v.get("monthly_cap").as_f64()) {
        (Some(h), None) => Some(h),
        (None, Some(m)) => Some(m / predictive_engine::cost::HOURS_PER_MONTH),
        _ => None,
    }
}

fn save(ctx: &Configured, state: &Value, diags: &mut Diagnostics) {
    let id = state.get("id").as_str().unwrap_or_default();
    let name = state.get("name").as_str().unwrap_or_default();
    if let Err(e) = ctx.store.put(
        Kind::Budget,
        id,
        name,
        &json::encode(state, &schema().block.value_type()),
    ) {
        diags.error("Could not save the budget", error_chain(&e));
    }
}

/// Reads a stored budget by id.
pub fn load(ctx: &Configured, id: &str, diags: &mut Diagnostics) -> Option<Value> {
    match ctx.store.get(Kind::Budget, id) {
        Ok(Some(body)) => match json::decode(body.as_bytes(), &schema().block.value_type()) {
            Ok(v) => Some(v),
            Err(e) => {
                diags.error(
                    "Corrupt budget in the state store",
                    format!("budget {id}: {e}"),
                );
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            diags.error("Could not read the state store", error_chain(&e));
            None
        }
    }
}

#[async_trait]
impl Resource<Configured> for BudgetResource {
    fn type_name(&self) -> &'static str {
        "predictive_budget"
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        let h = config.get("hourly_cap");
        let m = config.get("monthly_cap");
        if h.is_unknown() || m.is_unknown() {
            return;
        }
        if h.is_null() == m.is_null() {
            diags.attr_error(
                AttrPath::root("hourly_cap"),
                "Invalid budget",
                "set exactly one of hourly_cap and monthly_cap",
            );
        }
        if let Value::Map(p) = config.get("priorities") {
            for (k, w) in p {
                if w.as_f64().is_some_and(|w| w <= 0.0) {
                    diags.attr_error(
                        AttrPath::root("priorities").key(k),
                        "Invalid priority weight",
                        format!("priorities[{k:?}]: the weight must be above 0"),
                    );
                }
            }
        }
    }
    async fn modify_plan(
        &self,
        _ctx: &Configured,
        _prior: Option<&Value>,
        plan: &mut Value,
        _diags: &mut Diagnostics,
    ) {
        // The id stays unknown until the budget exists, so that clones referencing it are sized
        // once it is in the state store.
        plan.set(
            "effective_hourly_cap",
            effective_cap(plan)
                .map(Value::number)
                .unwrap_or(Value::Unknown),
        );
    }
    async fn create(&self, ctx: &Configured, plan: &Value, diags: &mut Diagnostics) -> Value {
        let mut s = plan.clone();
        let name = plan.get("name").as_str().unwrap_or_default().to_string();
        s.set("id", Value::string(format!("budget-{name}")));
        s.set(
            "effective_hourly_cap",
            effective_cap(plan)
                .map(Value::number)
                .unwrap_or(Value::Null),
        );
        save(ctx, &s, diags);
        s
    }
    async fn read(
        &self,
        ctx: &Configured,
        state: &Value,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        load(ctx, state.get("id").as_str().unwrap_or_default(), diags)
    }
    async fn update(
        &self,
        ctx: &Configured,
        prior: &Value,
        plan: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        let mut s = plan.clone();
        s.set("id", prior.get("id").clone());
        s.set(
            "effective_hourly_cap",
            effective_cap(plan)
                .map(Value::number)
                .unwrap_or(Value::Null),
        );
        save(ctx, &s, diags);
        s
    }
    async fn delete(&self, ctx: &Configured, prior: &Value, diags: &mut Diagnostics) {
        if let Err(e) = ctx
            .store
            .delete(Kind::Budget, prior.get("id").as_str().unwrap_or_default())
        {
            diags.error("Could not delete the budget", error_chain(&e));
        }
    }
    async fn import(&self, ctx: &Configured, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        let v = load(ctx, id, diags);
        if v.is_none() && !diags.has_error() {
            diags.error(
                "Cannot import budget",
                format!(
                    "no budget with id {id:?} in the state store {}",
                    ctx.store.path().display()
                ),
            );
        }
        v
    }
}
