//! Schemas: attributes, nested blocks, descriptions, validators, plan modifiers and defaults.

use super::diag::{AttrPath, Diagnostics};
use crate::value::{Type, Value};
use std::sync::Arc;

/// Checks a known, non-null configuration value.
pub trait Validator: Send + Sync + std::fmt::Debug {
    /// A sentence for the docs, e.g. "must be between 0.5 and 0.999".
    fn description(&self) -> String;
    /// Adds a diagnostic at `path` when `v` is not acceptable.
    fn validate(&self, path: &AttrPath, v: &Value, diags: &mut Diagnostics);
}

/// What a plan modifier sees and changes for one attribute.
#[derive(Debug)]
pub struct ModifyPlanRequest<'a> {
    /// The attribute's value in the configuration.
    pub config: &'a Value,
    /// The attribute's value in the prior state (null when creating).
    pub state: &'a Value,
    /// Whether the resource is being created.
    pub creating: bool,
    /// The attribute's planned value; the modifier may change it.
    pub plan: Value,
    /// Set to true when a change of this attribute needs a new resource.
    pub requires_replace: bool,
}

/// Adjusts the planned value of one attribute.
pub trait PlanModifier: Send + Sync + std::fmt::Debug {
    /// A sentence for the docs.
    fn description(&self) -> String;
    /// Changes `req.plan` or sets `req.requires_replace`.
    fn modify(&self, req: &mut ModifyPlanRequest<'_>);
}

/// One attribute of a block.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// Name in HCL.
    pub name: String,
    /// The cty type.
    pub ty: Type,
    /// Markdown description; feeds the generated docs.
    pub description: String,
    /// Must be set in configuration.
    pub required: bool,
    /// May be set in configuration.
    pub optional: bool,
    /// Set by the provider when not configured.
    pub computed: bool,
    /// Hidden from plan output and logs.
    pub sensitive: bool,
    /// Value used when the configuration leaves it null (the attribute is then optional+computed).
    pub default: Option<Value>,
    /// Checks on configured values.
    pub validators: Vec<Arc<dyn Validator>>,
    /// Plan adjustments.
    pub plan_modifiers: Vec<Arc<dyn PlanModifier>>,
}

impl Attribute {
    fn new(name: &str, ty: Type, description: &str) -> Attribute {
        Attribute {
            name: name.into(),
            ty,
            description: description.into(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            default: None,
            validators: Vec::new(),
            plan_modifiers: Vec::new(),
        }
    }
    /// A required attribute.
    pub fn required(name: &str, ty: Type, description: &str) -> Attribute {
        Attribute {
            required: true,
            ..Attribute::new(name, ty, description)
        }
    }
    /// An optional attribute.
    pub fn optional(name: &str, ty: Type, description: &str) -> Attribute {
        Attribute {
            optional: true,
            ..Attribute::new(name, ty, description)
        }
    }
    /// A computed (read-only) attribute.
    pub fn computed(name: &str, ty: Type, description: &str) -> Attribute {
        Attribute {
            computed: true,
            ..Attribute::new(name, ty, description)
        }
    }
    /// An optional attribute with a default, which makes it optional+computed.
    pub fn with_default(name: &str, ty: Type, default: Value, description: &str) -> Attribute {
        Attribute {
            optional: true,
            computed: true,
            default: Some(default),
            ..Attribute::new(name, ty, description)
        }
    }
    /// Marks the attribute sensitive.
    pub fn sensitive(mut self) -> Attribute {
        self.sensitive = true;
        self
    }
    /// Adds a validator.
    pub fn validate(mut self, v: impl Validator + 'static) -> Attribute {
        self.validators.push(Arc::new(v));
        self
    }
    /// Adds a plan modifier.
    pub fn modifier(mut self, m: impl PlanModifier + 'static) -> Attribute {
        self.plan_modifiers.push(Arc::new(m));
        self
    }
}

/// How a nested block repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// At most one block; its value is an object.
    Single,
    /// An ordered list of blocks.
    List,
    /// A set of blocks.
    Set,
}

/// A nested block type.
#[derive(Debug, Clone)]
pub struct NestedBlock {
    /// Block type name in HCL.
    pub name: String,
    /// Its content.
    pub block: Block,
    /// How it repeats.
    pub nesting: Nesting,
    /// Minimum number of blocks.
    pub min_items: i64,
    /// Maximum number of blocks (0: no limit).
    pub max_items: i64,
}

/// A block: attributes and nested blocks.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// Markdown description.
    pub description: String,
    /// Attributes, in documentation order.
    pub attributes: Vec<Attribute>,
    /// Nested block types.
    pub blocks: Vec<NestedBlock>,
}

impl Block {
    /// The object type of this block's values.
    pub fn value_type(&self) -> Type {
        let mut attrs: Vec<(String, Type)> = self
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.ty.clone()))
            .collect();
        for b in &self.blocks {
            let obj = b.block.value_type();
            attrs.push((
                b.name.clone(),
                match b.nesting {
                    Nesting::Single => obj,
                    Nesting::List => Type::list(obj),
                    Nesting::Set => Type::set(obj),
                },
            ));
        }
        Type::object(attrs)
    }

    /// The attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

/// A versioned schema of a provider, resource or data source.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Bumped when stored state needs an upgrade.
    pub version: i64,
    /// The top-level block.
    pub block: Block,
}
