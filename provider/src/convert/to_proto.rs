//! Framework types → protocol messages.

use crate::framework::schema::{Attribute, Block, NestedBlock, Nesting, Schema};
use crate::framework::{AttrPath, Diagnostic, Diagnostics, PathStep, Severity};
use crate::tfplugin6 as pb;
use crate::value::{msgpack, Type, Value};

/// A value as a msgpack `DynamicValue`.
pub fn dynamic_value(v: &Value, ty: &Type) -> pb::DynamicValue {
    pb::DynamicValue {
        msgpack: msgpack::encode(v, ty),
        json: Vec::new(),
    }
}

/// An attribute path.
pub fn attribute_path(p: &AttrPath) -> pb::AttributePath {
    use pb::attribute_path::step::Selector;
    pb::AttributePath {
        steps: p
            .0
            .iter()
            .map(|s| pb::attribute_path::Step {
                selector: Some(match s {
                    PathStep::Attr(a) => Selector::AttributeName(a.clone()),
                    PathStep::Key(k) => Selector::ElementKeyString(k.clone()),
                    PathStep::Index(i) => Selector::ElementKeyInt(*i),
                }),
            })
            .collect(),
    }
}

/// One diagnostic.
pub fn diagnostic(d: &Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        severity: match d.severity {
            Severity::Error => pb::diagnostic::Severity::Error as i32,
            Severity::Warning => pb::diagnostic::Severity::Warning as i32,
        },
        summary: d.summary.clone(),
        detail: d.detail.clone(),
        attribute: d.path.as_ref().map(attribute_path),
    }
}

/// All diagnostics.
pub fn diagnostics(d: &Diagnostics) -> Vec<pb::Diagnostic> {
    d.0.iter().map(diagnostic).collect()
}

/// A schema.
pub fn schema(s: &Schema) -> pb::Schema {
    pb::Schema {
        version: s.version,
        block: Some(block(&s.block, s.version)),
    }
}

fn block(b: &Block, version: i64) -> pb::schema::Block {
    pb::schema::Block {
        version,
        attributes: b.attributes.iter().map(attribute).collect(),
        block_types: b.blocks.iter().map(nested_block).collect(),
        description: b.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: false,
    }
}

fn attribute(a: &Attribute) -> pb::schema::Attribute {
    pb::schema::Attribute {
        name: a.name.clone(),
        r#type: a.ty.to_json().into_bytes(),
        nested_type: None,
        description: a.description.clone(),
        required: a.required,
        optional: a.optional,
        computed: a.computed,
        sensitive: a.sensitive,
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: false,
    }
}

fn nested_block(n: &NestedBlock) -> pb::schema::NestedBlock {
    use pb::schema::nested_block::NestingMode;
    pb::schema::NestedBlock {
        type_name: n.name.clone(),
        block: Some(block(&n.block, 0)),
        nesting: match n.nesting {
            Nesting::Single => NestingMode::Single,
            Nesting::List => NestingMode::List,
            Nesting::Set => NestingMode::Set,
        } as i32,
        min_items: n.min_items,
        max_items: n.max_items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_attributes_should_carry_flags_and_json_types() {
        let s = Schema {
            version: 2,
            block: Block {
                description: "d".into(),
                attributes: vec![
                    Attribute::required("regions", Type::list(Type::String), "r"),
                    Attribute::optional("secret", Type::String, "s").sensitive(),
                ],
                blocks: vec![],
            },
        };
        let p = schema(&s);
        let b = p.block.unwrap();
        assert_eq!(p.version, 2);
        assert_eq!(b.attributes[0].r#type, br#"["list","string"]"#);
        assert!(b.attributes[0].required && !b.attributes[0].optional);
        assert!(b.attributes[1].sensitive && b.attributes[1].optional);
    }

    #[test]
    fn diagnostics_should_keep_severity_and_path() {
        let mut d = Diagnostics::default();
        d.attr_error(AttrPath::root("horizon"), "bad", "horizon: too long");
        d.warning(None, "w", "");
        let p = diagnostics(&d);
        assert_eq!(p[0].severity, pb::diagnostic::Severity::Error as i32);
        assert!(p[0].attribute.is_some());
        assert_eq!(p[1].severity, pb::diagnostic::Severity::Warning as i32);
        assert!(p[1].attribute.is_none());
    }
}
