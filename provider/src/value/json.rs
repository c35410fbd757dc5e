//! cty's JSON encoding: stored state handed back in `UpgradeResourceState`, and `DynamicValue.json`.
//!
//! Numbers keep their decimal text, so nothing is lost to binary floats. Unknown values cannot be
//! written in JSON (cty has no JSON form for them); encoding one writes null.

use super::{Error, Number, Result, Type, Value};
use std::collections::BTreeMap;

/// An untyped JSON document with numbers kept as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object.
    Object(BTreeMap<String, Json>),
}

/// Quotes and escapes a string for JSON.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Parses JSON text.
///
/// # Errors
/// When the text is not JSON.
pub fn parse(text: &[u8]) -> Result<Json> {
    let mut p = Parser { b: text, pos: 0 };
    let v = p.value()?;
    p.ws();
    if p.pos != text.len() {
        return Err(Error::Malformed(p.pos, "trailing characters".into()));
    }
    Ok(v)
}

/// Decodes a value of type `ty` from JSON text.
///
/// # Errors
/// When the text is not JSON or does not match `ty`.
pub fn decode(text: &[u8], ty: &Type) -> Result<Value> {
    from_json(&parse(text)?, ty, &mut String::new())
}

/// Converts an untyped JSON document into a value of type `ty`.
///
/// # Errors
/// When the document does not match `ty`.
pub fn from_json(j: &Json, ty: &Type, path: &mut String) -> Result<Value> {
    let mismatch = |path: &String| Error::TypeMismatch {
        expected: ty.friendly_name(),
        found: describe(j),
        path: if path.is_empty() {
            "the root".into()
        } else {
            path.clone()
        },
    };
    Ok(match (j, ty) {
        (Json::Null, _) => Value::Null,
        (Json::Bool(b), Type::Bool) => Value::Bool(*b),
        (Json::Number(n), Type::Number) => {
            Value::Number(Number::parse(n).ok_or_else(|| mismatch(path))?)
        }
        (Json::String(s), Type::Number) => {
            Value::Number(Number::parse(s).ok_or_else(|| mismatch(path))?)
        }
        (Json::String(s), Type::String) => Value::String(s.clone()),
        (Json::Number(n), Type::String) => Value::String(n.clone()),
        (Json::Bool(b), Type::String) => Value::String(b.to_string()),
        (Json::Array(items), Type::List(e) | Type::Set(e)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let before = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(from_json(item, e, path)?);
                path.truncate(before);
            }
            if matches!(ty, Type::List(_)) {
                Value::List(out)
            } else {
                Value::Set(out)
            }
        }
        (Json::Object(m), Type::Map(e)) => {
            let mut out = BTreeMap::new();
            for (k, item) in m {
                let before = path.len();
                path.push_str(&format!("[{k:?}]"));
                out.insert(k.clone(), from_json(item, e, path)?);
                path.truncate(before);
            }
            Value::Map(out)
        }
        (Json::Object(m), Type::Object(attrs)) => {
            let mut out = BTreeMap::new();
            for (k, at) in attrs {
                let before = path.len();
                path.push('.');
                path.push_str(k);
                out.insert(
                    k.clone(),
                    from_json(m.get(k).unwrap_or(&Json::Null), at, path)?,
                );
                path.truncate(before);
            }
            if let Some(extra) = m.keys().find(|k| !attrs.contains_key(*k)) {
                return Err(Error::TypeMismatch {
                    expected: "a known attribute".into(),
                    found: format!("attribute {extra:?}"),
                    path: if path.is_empty() {
                        "the root".into()
                    } else {
                        path.clone()
                    },
                });
            }
            Value::Object(out)
        }
        _ => return Err(mismatch(path)),
    })
}

/// Encodes a value of type `ty` as JSON text.
pub fn encode(v: &Value, ty: &Type) -> String {
    let mut out = String::new();
    write(&mut out, v, ty);
    out
}

fn write(out: &mut String, v: &Value, ty: &Type) {
    match (v, ty) {
        (Value::Unknown | Value::Null, _) => out.push_str("null"),
        (Value::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
        (Value::Number(n), _) => out.push_str(&n.to_string()),
        (Value::String(s), _) => out.push_str(&quote(s)),
        (Value::List(items) | Value::Set(items), Type::List(e) | Type::Set(e)) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item, e);
            }
            out.push(']');
        }
        (Value::Map(m), Type::Map(e)) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(k));
                out.push(':');
                write(out, item, e);
            }
            out.push('}');
        }
        (Value::Object(m), Type::Object(attrs)) => {
            out.push('{');
            for (i, (k, at)) in attrs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(k));
                out.push(':');
                write(out, m.get(k).unwrap_or(&Value::Null), at);
            }
            out.push('}');
        }
        _ => out.push_str("null"),
    }
}

fn describe(j: &Json) -> String {
    match j {
        Json::Null => "null".into(),
        Json::Bool(_) => "a bool".into(),
        Json::Number(n) => format!("the number {n}"),
        Json::String(_) => "a string".into(),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.pos < self.b.len() && matches!(self.b[self.pos], b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Result<u8> {
        self.ws();
        self.b
            .get(self.pos)
            .copied()
            .ok_or(Error::UnexpectedEnd(self.pos))
    }
    fn expect(&mut self, lit: &str) -> Result<()> {
        if self.b[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(Error::Malformed(self.pos, format!("expected {lit}")))
        }
    }
    fn value(&mut self) -> Result<Json> {
        match self.peek()? {
            b'n' => self.expect("null").map(|_| Json::Null),
            b't' => self.expect("true").map(|_| Json::Bool(true)),
            b'f' => self.expect("false").map(|_| Json::Bool(false)),
            b'"' => self.string().map(Json::String),
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value()?);
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(Error::Malformed(self.pos, "expected , or ]".into())),
                    }
                }
            }
            b'{' => {
                self.pos += 1;
                let mut m = BTreeMap::new();
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Ok(Json::Object(m));
                }
                loop {
                    if self.peek()? != b'"' {
                        return Err(Error::Malformed(self.pos, "expected a key".into()));
                    }
                    let k = self.string()?;
                    if self.peek()? != b':' {
                        return Err(Error::Malformed(self.pos, "expected :".into()));
                    }
                    self.pos += 1;
                    let v = self.value()?;
                    m.insert(k, v);
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Ok(Json::Object(m));
                        }
                        _ => return Err(Error::Malformed(self.pos, "expected , or }".into())),
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.pos;
                while self.pos < self.b.len()
                    && matches!(
                        self.b[self.pos],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.b[start..self.pos])
                    .unwrap_or_default()
                    .to_string();
                Number::parse(&text)
                    .ok_or_else(|| Error::Malformed(start, format!("bad number {text}")))?;
                Ok(Json::Number(text))
            }
            c => Err(Error::Malformed(
                self.pos,
                format!("unexpected character {:?}", c as char),
            )),
        }
    }
    fn string(&mut self) -> Result<String> {
        // Find the closing quote, then let serde_json handle the escapes.
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.b.len() {
            match self.b[self.pos] {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return serde_json::from_slice(&self.b[start..self.pos])
                        .map_err(|e| Error::Malformed(start, e.to_string()));
                }
                _ => self.pos += 1,
            }
        }
        Err(Error::UnexpectedEnd(self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_should_keep_their_text_through_json() {
        let ty = Type::object([("cost", Type::Number), ("tags", Type::list(Type::String))]);
        let v = decode(br#"{"cost": 3.072, "tags": ["a", "b\"c"]}"#, &ty).unwrap();
        assert_eq!(
            v.get("cost"),
            &Value::Number(Number::Decimal("3.072".into()))
        );
        assert_eq!(encode(&v, &ty), r#"{"cost":3.072,"tags":["a","b\"c"]}"#);
    }

    #[test]
    fn missing_attributes_should_read_as_null_and_unknown_ones_should_fail() {
        let ty = Type::object([("a", Type::String), ("b", Type::Bool)]);
        assert_eq!(decode(br#"{"a":"x"}"#, &ty).unwrap().get("b"), &Value::Null);
        let err = decode(br#"{"a":"x","zzz":1}"#, &ty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("zzz"), "{err}");
        let err = decode(br#"{"a":[1]}"#, &ty).unwrap_err().to_string();
        assert!(err.contains(".a"), "{err}");
    }

    #[test]
    fn malformed_json_should_fail() {
        for bad in [&b"{"[..], b"[1,", b"{\"a\" 1}", b"nul", b"1 2"] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
