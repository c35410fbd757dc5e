//! cty values and types, and their two wire encodings ([`msgpack`] and [`json`]).
//!
//! Values are decoded against a [`Type`], as Terraform does: the wire formats do not carry types.

pub mod json;
pub mod msgpack;
mod number;

pub use number::Number;

use std::collections::BTreeMap;

/// A cty type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// `bool`.
    Bool,
    /// `number`.
    Number,
    /// `string`.
    String,
    /// `list(T)`.
    List(Box<Type>),
    /// `set(T)`.
    Set(Box<Type>),
    /// `map(T)`.
    Map(Box<Type>),
    /// `object({...})`.
    Object(BTreeMap<String, Type>),
}

impl Type {
    /// `list(elem)`.
    pub fn list(elem: Type) -> Type {
        Type::List(Box::new(elem))
    }
    /// `set(elem)`.
    pub fn set(elem: Type) -> Type {
        Type::Set(Box::new(elem))
    }
    /// `map(elem)`.
    pub fn map(elem: Type) -> Type {
        Type::Map(Box::new(elem))
    }
    /// `object({...})` from `(name, type)` pairs.
    pub fn object<I: IntoIterator<Item = (S, Type)>, S: Into<String>>(attrs: I) -> Type {
        Type::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The JSON type encoding used in schemas, e.g. `"string"` or `["list","number"]`.
    pub fn to_json(&self) -> String {
        match self {
            Type::Bool => "\"bool\"".into(),
            Type::Number => "\"number\"".into(),
            Type::String => "\"string\"".into(),
            Type::List(e) => format!("[\"list\",{}]", e.to_json()),
            Type::Set(e) => format!("[\"set\",{}]", e.to_json()),
            Type::Map(e) => format!("[\"map\",{}]", e.to_json()),
            Type::Object(attrs) => {
                let inner: Vec<String> = attrs
                    .iter()
                    .map(|(k, t)| format!("{}:{}", json::quote(k), t.to_json()))
                    .collect();
                format!("[\"object\",{{{}}}]", inner.join(","))
            }
        }
    }

    /// A short name for messages and docs, e.g. `list(string)`.
    pub fn friendly_name(&self) -> String {
        match self {
            Type::Bool => "bool".into(),
            Type::Number => "number".into(),
            Type::String => "string".into(),
            Type::List(e) => format!("list({})", e.friendly_name()),
            Type::Set(e) => format!("set({})", e.friendly_name()),
            Type::Map(e) => format!("map({})", e.friendly_name()),
            Type::Object(_) => "object".into(),
        }
    }
}

/// A cty value. Nulls and unknowns take their type from context (the schema).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Not known until apply.
    Unknown,
    /// Absent.
    Null,
    /// A bool.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
    /// A list.
    List(Vec<Value>),
    /// A set, kept in the order received.
    Set(Vec<Value>),
    /// A map.
    Map(BTreeMap<String, Value>),
    /// An object.
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// Whether the value is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    /// Whether the value is unknown.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }
    /// Whether the value, and everything inside it, is known.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(v) | Value::Set(v) => v.iter().all(Value::is_wholly_known),
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }
    /// An attribute of an object value (null for anything else or a missing attribute).
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Value::Object(m) => m.get(name).unwrap_or(&Value::Null),
            _ => &Value::Null,
        }
    }
    /// Sets an attribute of an object value; does nothing on other values.
    pub fn set(&mut self, name: &str, v: Value) {
        if let Value::Object(m) = self {
            m.insert(name.to_string(), v);
        }
    }
    /// The string, when the value is a known string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// The number as `f64`, when the value is a known number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(n.as_f64()),
            _ => None,
        }
    }
    /// The number as `i64`, when the value is a known integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }
    /// The bool, when the value is a known bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// The elements of a known list or set.
    pub fn as_elements(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Set(v) => Some(v),
            _ => None,
        }
    }
    /// A number value from an `f64` (see [`Number::from_f64`]).
    pub fn number(x: f64) -> Value {
        Value::Number(Number::from_f64(x))
    }
    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
    /// An object value from `(name, value)` pairs.
    pub fn object<I: IntoIterator<Item = (S, Value)>, S: Into<String>>(attrs: I) -> Value {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
    /// A list of strings.
    pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::List(items.into_iter().map(|s| Value::String(s.into())).collect())
    }
}

/// Errors of decoding a value or a type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes ended before the value did.
    #[error("value ends early at byte {0}")]
    UnexpectedEnd(usize),
    /// The encoding holds something the type does not allow.
    #[error("expected {expected} at {path}, found {found}")]
    TypeMismatch {
        /// The expected type.
        expected: String,
        /// What was found.
        found: String,
        /// Where, as `.attr[0]`.
        path: String,
    },
    /// The encoding is not well-formed.
    #[error("malformed encoding at byte {0}: {1}")]
    Malformed(usize, String),
}

/// Result of decoding.
pub type Result<T, E = Error> = std::result::Result<T, E>;
