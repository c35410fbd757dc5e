//! Resource and data-source traits, and the schema-driven request logic shared by all of them:
//! validation, defaults, marking computed values unknown, plan modifiers, and state upgrades.

use super::diag::{AttrPath, Diagnostics};
use super::schema::{Block, ModifyPlanRequest, Nesting, Schema};
use crate::value::json::Json;
use crate::value::Value;
use async_trait::async_trait;

/// A managed resource type. `C` is the configured provider's data.
#[async_trait]
pub trait Resource<C>: Send + Sync {
    /// The resource type name, e.g. `predictive_clone`.
    fn type_name(&self) -> &'static str;
    /// The schema.
    fn schema(&self) -> Schema;
    /// Checks across attributes, after the per-attribute validators ran.
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    /// Fills computed values at plan time. `plan` already has defaults, unknown computed values and
    /// the attribute plan modifiers applied.
    async fn modify_plan(
        &self,
        _ctx: &C,
        _prior: Option<&Value>,
        _plan: &mut Value,
        _diags: &mut Diagnostics,
    ) {
    }
    /// Creates the resource; returns its new state.
    async fn create(&self, ctx: &C, plan: &Value, diags: &mut Diagnostics) -> Value;
    /// Reads the real state; `None` when the resource is gone.
    async fn read(&self, ctx: &C, state: &Value, diags: &mut Diagnostics) -> Option<Value>;
    /// Updates in place; returns the new state.
    async fn update(&self, ctx: &C, prior: &Value, plan: &Value, diags: &mut Diagnostics) -> Value;
    /// Deletes everything the resource created.
    async fn delete(&self, ctx: &C, prior: &Value, diags: &mut Diagnostics);
    /// The state of an existing resource by its id, for `terraform import`.
    async fn import(&self, ctx: &C, id: &str, diags: &mut Diagnostics) -> Option<Value>;
    /// Rewrites stored state of schema version `from` (as JSON) into the current version's shape.
    /// The default accepts no older versions.
    fn upgrade_state(&self, from: i64, _state: Json, diags: &mut Diagnostics) -> Option<Json> {
        diags.error(
            "Unsupported state version",
            format!("{} has no upgrade from schema version {from}; its state may come from a newer provider", self.type_name()),
        );
        None
    }
}

/// A data source type.
#[async_trait]
pub trait DataSource<C>: Send + Sync {
    /// The data source type name, e.g. `predictive_forecast`.
    fn type_name(&self) -> &'static str;
    /// The schema.
    fn schema(&self) -> Schema;
    /// Checks across attributes.
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    /// Reads the data: the configuration with its computed attributes filled in.
    async fn read(&self, ctx: &C, config: &Value, diags: &mut Diagnostics) -> Value;
}

/// Runs the attribute validators of `block` over a configuration value (unknowns are skipped).
pub fn validate_block(block: &Block, v: &Value, path: &AttrPath, diags: &mut Diagnostics) {
    if !matches!(v, Value::Object(_)) {
        return;
    }
    for a in &block.attributes {
        let av = v.get(&a.name);
        let p = if path.0.is_empty() {
            AttrPath::root(&a.name)
        } else {
            path.attr(&a.name)
        };
        if av.is_null() || !av.is_wholly_known() {
            continue;
        }
        for val in &a.validators {
            val.validate(&p, av, diags);
        }
    }
    for b in &block.blocks {
        let bv = v.get(&b.name);
        let p = if path.0.is_empty() {
            AttrPath::root(&b.name)
        } else {
            path.attr(&b.name)
        };
        match (b.nesting, bv) {
            (Nesting::Single, obj @ Value::Object(_)) => validate_block(&b.block, obj, &p, diags),
            (Nesting::List | Nesting::Set, Value::List(items) | Value::Set(items)) => {
                let n = items.len() as i64;
                if n < b.min_items || (b.max_items > 0 && n > b.max_items) {
                    diags.attr_error(
                        p.clone(),
                        "Wrong number of blocks",
                        format!(
                            "{p}: {n} block(s) given, between {} and {} allowed",
                            b.min_items, b.max_items
                        ),
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    validate_block(&b.block, item, &p.index(i), diags);
                }
            }
            _ => {}
        }
    }
}

/// The generic part of planning a create or update: applies defaults, marks computed values that
/// the configuration leaves unset as unknown when anything changes, and runs the attribute plan
/// modifiers. Returns the planned value and the paths whose change needs a replacement.
pub fn plan_block(
    block: &Block,
    prior: Option<&Value>,
    proposed: &Value,
    config: &Value,
) -> (Value, Vec<AttrPath>) {
    let mut plan = proposed.clone();
    let creating = prior.is_none();
    let null = Value::Null;
    // Defaults first, so that "is anything changing" compares against what will really be planned.
    for a in &block.attributes {
        if let Some(d) = &a.default {
            if config.get(&a.name).is_null() {
                plan.set(&a.name, d.clone());
            }
        }
    }
    apply_nested_defaults(block, &mut plan, config);
    let changing = match prior {
        None => true,
        Some(p) => &plan != p,
    };
    let mut replace = Vec::new();
    for a in &block.attributes {
        let cfg = config.get(&a.name);
        if changing && a.computed && a.default.is_none() && cfg.is_null() {
            plan.set(&a.name, Value::Unknown);
        }
        let state = prior.map(|p| p.get(&a.name)).unwrap_or(&null);
        let mut req = ModifyPlanRequest {
            config: cfg,
            state,
            creating,
            plan: plan.get(&a.name).clone(),
            requires_replace: false,
        };
        for m in &a.plan_modifiers {
            m.modify(&mut req);
        }
        if req.requires_replace {
            replace.push(AttrPath::root(&a.name));
        }
        plan.set(&a.name, req.plan);
    }
    (plan, replace)
}

/// Applies attribute defaults inside nested blocks (recursively), where the configuration leaves
/// the attribute null.
fn apply_nested_defaults(block: &Block, plan: &mut Value, config: &Value) {
    for b in &block.blocks {
        let cfg = config.get(&b.name).clone();
        let Value::Object(m) = plan else { return };
        let Some(pv) = m.get_mut(&b.name) else {
            continue;
        };
        let fill = |item: &mut Value, cfg_item: &Value| {
            for a in &b.block.attributes {
                if let Some(d) = &a.default {
                    if cfg_item.get(&a.name).is_null() {
                        item.set(&a.name, d.clone());
                    }
                }
            }
            apply_nested_defaults(&b.block, item, cfg_item);
        };
        match (pv, &cfg) {
            (item @ Value::Object(_), c) => fill(item, c),
            (Value::List(items) | Value::Set(items), Value::List(cs) | Value::Set(cs)) => {
                for (item, c) in items.iter_mut().zip(cs.iter()) {
                    fill(item, c);
                }
            }
            _ => {}
        }
    }
}

/// Upgrades stored JSON state of version `from` to the current schema and decodes it.
pub fn upgrade_state<C>(
    res: &dyn Resource<C>,
    from: i64,
    raw_json: &[u8],
    diags: &mut Diagnostics,
) -> Option<Value> {
    let schema = res.schema();
    let parsed = match crate::value::json::parse(raw_json) {
        Ok(j) => j,
        Err(e) => {
            diags.error(
                "Unreadable state",
                format!("the stored state of {} is not JSON: {e}", res.type_name()),
            );
            return None;
        }
    };
    let current = if from == schema.version {
        parsed
    } else if from < schema.version {
        res.upgrade_state(from, parsed, diags)?
    } else {
        diags.error(
            "State from a newer provider",
            format!(
                "{} state has schema version {from}, this provider knows up to {}",
                res.type_name(),
                schema.version
            ),
        );
        return None;
    };
    match crate::value::json::from_json(&current, &schema.block.value_type(), &mut String::new()) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error(
                "Unreadable state",
                format!(
                    "the stored state of {} does not match its schema: {e}",
                    res.type_name()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::modifiers::{RequiresReplace, UseStateForUnknown};
    use crate::framework::schema::Attribute;
    use crate::value::Type;

    fn block() -> Block {
        Block {
            description: "test".into(),
            attributes: vec![
                Attribute::computed("id", Type::String, "id").modifier(UseStateForUnknown),
                Attribute::required("name", Type::String, "name").modifier(RequiresReplace),
                Attribute::optional("size", Type::Number, "size"),
                Attribute::with_default("margin", Type::Number, Value::number(0.1), "margin"),
                Attribute::computed("cost", Type::Number, "cost"),
            ],
            blocks: vec![],
        }
    }

    fn obj(id: Value, name: &str, size: Value, margin: Value, cost: Value) -> Value {
        Value::object([
            ("id", id),
            ("name", Value::string(name)),
            ("size", size),
            ("margin", margin),
            ("cost", cost),
        ])
    }

    /// A resource at schema version 1 whose version 0 called `size` `count`.
    struct Versioned;

    #[async_trait]
    impl Resource<()> for Versioned {
        fn type_name(&self) -> &'static str {
            "test_versioned"
        }
        fn schema(&self) -> Schema {
            Schema {
                version: 1,
                block: block(),
            }
        }
        fn upgrade_state(&self, from: i64, state: Json, diags: &mut Diagnostics) -> Option<Json> {
            match (from, state) {
                (0, Json::Object(mut m)) => {
                    let count = m.remove("count").unwrap_or(Json::Null);
                    m.insert("size".into(), count);
                    Some(Json::Object(m))
                }
                (v, _) => {
                    diags.error("Unsupported state version", format!("version {v}"));
                    None
                }
            }
        }
        async fn create(&self, _: &(), p: &Value, _: &mut Diagnostics) -> Value {
            p.clone()
        }
        async fn read(&self, _: &(), s: &Value, _: &mut Diagnostics) -> Option<Value> {
            Some(s.clone())
        }
        async fn update(&self, _: &(), _: &Value, p: &Value, _: &mut Diagnostics) -> Value {
            p.clone()
        }
        async fn delete(&self, _: &(), _: &Value, _: &mut Diagnostics) {}
        async fn import(&self, _: &(), _: &str, _: &mut Diagnostics) -> Option<Value> {
            None
        }
    }

    #[test]
    fn state_should_upgrade_across_schema_versions() {
        let old = br#"{"id":"x","name":"a","count":3.072,"margin":0.1,"cost":1}"#;
        let mut d = Diagnostics::default();
        let v = upgrade_state(&Versioned, 0, old, &mut d).unwrap();
        assert!(d.0.is_empty(), "{d:?}");
        assert_eq!(
            v.get("size"),
            &Value::Number(crate::value::Number::Decimal("3.072".into()))
        );
        let current = br#"{"id":"x","name":"a","size":2,"margin":0.1,"cost":1}"#;
        assert!(upgrade_state(&Versioned, 1, current, &mut d).is_some());
        let mut d = Diagnostics::default();
        assert!(upgrade_state(&Versioned, 2, current, &mut d).is_none());
        assert!(d.has_error());
    }

    #[test]
    fn nested_block_defaults_should_be_planned() {
        let inner = Block {
            description: "s".into(),
            attributes: vec![
                Attribute::with_default("step", Type::Number, Value::number(60.0), "step"),
                Attribute::optional("w", Type::String, "w"),
            ],
            blocks: vec![],
        };
        let b = Block {
            description: "b".into(),
            attributes: vec![],
            blocks: vec![crate::framework::NestedBlock {
                name: "source".into(),
                block: inner,
                nesting: Nesting::List,
                min_items: 1,
                max_items: 1,
            }],
        };
        let cfg = Value::object([(
            "source",
            Value::List(vec![Value::object([
                ("step", Value::Null),
                ("w", Value::string("x")),
            ])]),
        )]);
        let (plan, _) = plan_block(&b, None, &cfg, &cfg);
        assert_eq!(
            plan.get("source").as_elements().unwrap()[0].get("step"),
            &Value::number(60.0)
        );
    }

    #[test]
    fn create_should_apply_defaults_and_mark_computed_unknown() {
        let cfg = obj(
            Value::Null,
            "a",
            Value::number(2.0),
            Value::Null,
            Value::Null,
        );
        let (plan, replace) = plan_block(&block(), None, &cfg, &cfg);
        assert_eq!(
            plan,
            obj(
                Value::Unknown,
                "a",
                Value::number(2.0),
                Value::number(0.1),
                Value::Unknown
            )
        );
        assert!(replace.is_empty());
    }

    #[test]
    fn an_unchanged_config_should_plan_the_prior_state() {
        let prior = obj(
            Value::string("id-1"),
            "a",
            Value::number(2.0),
            Value::number(0.1),
            Value::number(3.072),
        );
        let cfg = obj(
            Value::Null,
            "a",
            Value::number(2.0),
            Value::Null,
            Value::Null,
        );
        // Terraform's proposed state keeps prior values of computed attributes.
        let (plan, replace) = plan_block(&block(), Some(&prior), &prior, &cfg);
        assert_eq!(plan, prior);
        assert!(replace.is_empty());
    }

    #[test]
    fn an_update_should_keep_the_id_and_replace_on_name_change() {
        let prior = obj(
            Value::string("id-1"),
            "a",
            Value::number(2.0),
            Value::number(0.1),
            Value::number(3.0),
        );
        let cfg = obj(
            Value::Null,
            "a",
            Value::number(4.0),
            Value::Null,
            Value::Null,
        );
        let proposed = obj(
            Value::string("id-1"),
            "a",
            Value::number(4.0),
            Value::number(0.1),
            Value::number(3.0),
        );
        let (plan, replace) = plan_block(&block(), Some(&prior), &proposed, &cfg);
        assert_eq!(plan.get("id"), &Value::string("id-1"));
        assert_eq!(plan.get("cost"), &Value::Unknown);
        assert!(replace.is_empty());

        let cfg = obj(
            Value::Null,
            "b",
            Value::number(2.0),
            Value::Null,
            Value::Null,
        );
        let proposed = obj(
            Value::string("id-1"),
            "b",
            Value::number(2.0),
            Value::number(0.1),
            Value::number(3.0),
        );
        let (_, replace) = plan_block(&block(), Some(&prior), &proposed, &cfg);
        assert_eq!(replace, vec![AttrPath::root("name")]);
    }
}
