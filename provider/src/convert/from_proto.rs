//! Protocol messages → framework types.

use crate::framework::{AttrPath, PathStep};
use crate::tfplugin6 as pb;
use crate::value::{json, msgpack, Result, Type, Value};

/// Decodes a `DynamicValue` (msgpack or JSON) of type `ty`; an absent value is null.
///
/// # Errors
/// When the encoding is malformed or does not match `ty`.
pub fn dynamic_value(dv: Option<&pb::DynamicValue>, ty: &Type) -> Result<Value> {
    match dv {
        None => Ok(Value::Null),
        Some(d) if !d.msgpack.is_empty() => msgpack::decode(&d.msgpack, ty),
        Some(d) if !d.json.is_empty() => json::decode(&d.json, ty),
        Some(_) => Ok(Value::Null),
    }
}

/// An attribute path.
pub fn attribute_path(p: &pb::AttributePath) -> AttrPath {
    use pb::attribute_path::step::Selector;
    AttrPath(
        p.steps
            .iter()
            .filter_map(|s| match s.selector.as_ref()? {
                Selector::AttributeName(a) => Some(PathStep::Attr(a.clone())),
                Selector::ElementKeyString(k) => Some(PathStep::Key(k.clone())),
                Selector::ElementKeyInt(i) => Some(PathStep::Index(*i)),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::to_proto;
    use crate::value::Number;

    #[test]
    fn dynamic_values_should_decode_from_either_encoding() {
        let ty = Type::object([("cost", Type::Number), ("name", Type::String)]);
        let cases = [
            (
                "msgpack",
                pb::DynamicValue {
                    msgpack: msgpack::encode(
                        &Value::object([
                            ("cost", Value::Number(Number::Decimal("3.072".into()))),
                            ("name", Value::Unknown),
                        ]),
                        &ty,
                    ),
                    json: vec![],
                },
            ),
            (
                "json",
                pb::DynamicValue {
                    msgpack: vec![],
                    json: br#"{"cost":3.072,"name":null}"#.to_vec(),
                },
            ),
        ];
        for (name, dv) in cases {
            let v = dynamic_value(Some(&dv), &ty).unwrap();
            assert_eq!(
                v.get("cost"),
                &Value::Number(Number::Decimal("3.072".into())),
                "{name}"
            );
        }
        assert_eq!(dynamic_value(None, &ty).unwrap(), Value::Null);
    }

    #[test]
    fn attribute_paths_should_round_trip() {
        let p = AttrPath::root("source").attr("profile").index(2).key("k");
        assert_eq!(attribute_path(&to_proto::attribute_path(&p)), p);
    }
}
