//! cty's msgpack encoding: what Terraform sends in `DynamicValue.msgpack`.
//!
//! Unknown values are msgpack extension values of type 0 (any extension code is read as unknown, so
//! that refined unknowns of newer Terraform versions decode too). Numbers are written as integers when
//! they are integers, as float64 when they came as float64, and otherwise as decimal strings, which
//! cty parses exactly.

use super::{Error, Number, Result, Type, Value};
use std::collections::BTreeMap;

/// Encodes `v` as a value of type `ty`; object attributes missing from `v` are written as null.
pub fn encode(v: &Value, ty: &Type) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, v, ty);
    out
}

/// Decodes a value of type `ty`.
///
/// # Errors
/// When the bytes are not msgpack or do not match `ty`.
pub fn decode(bytes: &[u8], ty: &Type) -> Result<Value> {
    let mut r = Reader { b: bytes, pos: 0 };
    let v = r.value(ty, &mut String::new())?;
    if r.pos != bytes.len() {
        return Err(Error::Malformed(r.pos, "trailing bytes".into()));
    }
    Ok(v)
}

fn write_value(out: &mut Vec<u8>, v: &Value, ty: &Type) {
    match (v, ty) {
        (Value::Unknown, _) => out.extend_from_slice(&[0xd4, 0, 0]),
        (Value::Null, _) => out.push(0xc0),
        (Value::Bool(b), _) => out.push(if *b { 0xc3 } else { 0xc2 }),
        (Value::Number(n), _) => write_number(out, n),
        (Value::String(s), _) => write_str(out, s),
        (Value::List(items) | Value::Set(items), Type::List(e) | Type::Set(e)) => {
            write_len(out, items.len(), 0x90, 0xdc);
            for i in items {
                write_value(out, i, e);
            }
        }
        (Value::Map(m), Type::Map(e)) => {
            write_len(out, m.len(), 0x80, 0xde);
            for (k, i) in m {
                write_str(out, k);
                write_value(out, i, e);
            }
        }
        (Value::Object(m), Type::Object(attrs)) => {
            write_len(out, attrs.len(), 0x80, 0xde);
            for (k, t) in attrs {
                write_str(out, k);
                write_value(out, m.get(k).unwrap_or(&Value::Null), t);
            }
        }
        // A value that does not fit its type is a provider bug; null keeps the encoding well-formed
        // and Terraform reports the inconsistency with the attribute's path.
        _ => out.push(0xc0),
    }
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    match n {
        Number::Int(i) => write_int(out, *i),
        Number::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Number::Decimal(s) => match n.as_i64() {
            Some(i) => write_int(out, i),
            None => write_str(out, s),
        },
    }
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    if (0..=0x7f).contains(&i) {
        out.push(i as u8);
    } else if (-32..0).contains(&i) {
        out.push(i as i8 as u8);
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn write_len(out: &mut Vec<u8>, n: usize, fix: u8, code16: u8) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(code16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(code16 + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8> {
        let v = *self.b.get(self.pos).ok_or(Error::UnexpectedEnd(self.pos))?;
        self.pos += 1;
        Ok(v)
    }
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(Error::UnexpectedEnd(self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn uint(&mut self, n: usize) -> Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn mismatch(&self, ty: &Type, code: u8, path: &str) -> Error {
        Error::TypeMismatch {
            expected: ty.friendly_name(),
            found: format!("msgpack code 0x{code:02x}"),
            path: if path.is_empty() {
                "the root".into()
            } else {
                path.to_string()
            },
        }
    }

    fn value(&mut self, ty: &Type, path: &mut String) -> Result<Value> {
        let code = *self.b.get(self.pos).ok_or(Error::UnexpectedEnd(self.pos))?;
        // Null and unknown are valid for every type.
        if code == 0xc0 {
            self.pos += 1;
            return Ok(Value::Null);
        }
        if let Some(len) = self.ext_len(code)? {
            self.take(len + 1)?; // the type byte and the data
            return Ok(Value::Unknown);
        }
        match ty {
            Type::Bool => match self.byte()? {
                0xc2 => Ok(Value::Bool(false)),
                0xc3 => Ok(Value::Bool(true)),
                c => Err(self.mismatch(ty, c, path)),
            },
            Type::Number => self.number(path).map(Value::Number),
            Type::String => self.string(ty, path).map(Value::String),
            Type::List(e) | Type::Set(e) => {
                let n = self.array_len(ty, path)?;
                let mut items = Vec::with_capacity(n.min(1024));
                for i in 0..n {
                    let before = path.len();
                    path.push_str(&format!("[{i}]"));
                    items.push(self.value(e, path)?);
                    path.truncate(before);
                }
                Ok(if matches!(ty, Type::List(_)) {
                    Value::List(items)
                } else {
                    Value::Set(items)
                })
            }
            Type::Map(e) => {
                let n = self.map_len(ty, path)?;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let k = self.string(&Type::String, path)?;
                    let before = path.len();
                    path.push_str(&format!("[{k:?}]"));
                    let v = self.value(e, path)?;
                    path.truncate(before);
                    m.insert(k, v);
                }
                Ok(Value::Map(m))
            }
            Type::Object(attrs) => {
                let n = self.map_len(ty, path)?;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let k = self.string(&Type::String, path)?;
                    let Some(at) = attrs.get(&k) else {
                        return Err(Error::TypeMismatch {
                            expected: "a known attribute".into(),
                            found: format!("attribute {k:?}"),
                            path: if path.is_empty() {
                                "the root".into()
                            } else {
                                path.clone()
                            },
                        });
                    };
                    let before = path.len();
                    path.push('.');
                    path.push_str(&k);
                    let v = self.value(at, path)?;
                    path.truncate(before);
                    m.insert(k, v);
                }
                for k in attrs.keys() {
                    m.entry(k.clone()).or_insert(Value::Null);
                }
                Ok(Value::Object(m))
            }
        }
    }

    /// The data length when `code` starts an extension value.
    fn ext_len(&mut self, code: u8) -> Result<Option<usize>> {
        let len = match code {
            0xd4 => 1,
            0xd5 => 2,
            0xd6 => 4,
            0xd7 => 8,
            0xd8 => 16,
            0xc7..=0xc9 => {
                self.pos += 1;
                let n = match code {
                    0xc7 => 1,
                    0xc8 => 2,
                    _ => 4,
                };
                return Ok(Some(self.uint(n)? as usize));
            }
            _ => return Ok(None),
        };
        self.pos += 1;
        Ok(Some(len))
    }

    fn number(&mut self, path: &str) -> Result<Number> {
        let start = self.pos;
        let c = self.byte()?;
        Ok(match c {
            0x00..=0x7f => Number::Int(i64::from(c)),
            0xe0..=0xff => Number::Int(i64::from(c as i8)),
            0xcc => Number::Int(self.uint(1)? as i64),
            0xcd => Number::Int(self.uint(2)? as i64),
            0xce => Number::Int(self.uint(4)? as i64),
            0xcf => {
                let u = self.uint(8)?;
                i64::try_from(u)
                    .map(Number::Int)
                    .unwrap_or_else(|_| Number::Decimal(u.to_string()))
            }
            0xd0 => Number::Int(i64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Number::Int(i64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Number::Int(i64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Number::Int(self.uint(8)? as i64),
            0xca => Number::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Number::Float(f64::from_bits(self.uint(8)?)),
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.pos = start;
                let s = self.string(&Type::Number, path)?;
                Number::parse(&s).ok_or_else(|| Error::TypeMismatch {
                    expected: "number".into(),
                    found: format!("the string {s:?}"),
                    path: if path.is_empty() {
                        "the root".into()
                    } else {
                        path.to_string()
                    },
                })?
            }
            c => return Err(self.mismatch(&Type::Number, c, path)),
        })
    }

    fn string(&mut self, ty: &Type, path: &str) -> Result<String> {
        let start = self.pos;
        let c = self.byte()?;
        let n = match c {
            0xa0..=0xbf => usize::from(c & 0x1f),
            0xd9 => self.uint(1)? as usize,
            0xda => self.uint(2)? as usize,
            0xdb => self.uint(4)? as usize,
            c => return Err(self.mismatch(ty, c, path)),
        };
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::Malformed(start, "string is not UTF-8".into()))
    }

    fn array_len(&mut self, ty: &Type, path: &str) -> Result<usize> {
        let c = self.byte()?;
        Ok(match c {
            0x90..=0x9f => usize::from(c & 0x0f),
            0xdc => self.uint(2)? as usize,
            0xdd => self.uint(4)? as usize,
            c => return Err(self.mismatch(ty, c, path)),
        })
    }

    fn map_len(&mut self, ty: &Type, path: &str) -> Result<usize> {
        let c = self.byte()?;
        Ok(match c {
            0x80..=0x8f => usize::from(c & 0x0f),
            0xde => self.uint(2)? as usize,
            0xdf => self.uint(4)? as usize,
            c => return Err(self.mismatch(ty, c, path)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_type() -> Type {
        Type::object([
            ("name", Type::String),
            ("cost", Type::Number),
            ("on", Type::Bool),
            ("tags", Type::map(Type::String)),
            ("regions", Type::set(Type::String)),
            ("items", Type::list(Type::object([("n", Type::Number)]))),
        ])
    }

    #[test]
    fn values_should_round_trip_with_unknowns_and_nulls() {
        let cases = [
            (
                "all known",
                Value::object([
                    ("name", Value::string("web")),
                    ("cost", Value::Number(Number::Decimal("3.072".into()))),
                    ("on", Value::Bool(true)),
                    (
                        "tags",
                        Value::Map([("a".to_string(), Value::string("b"))].into()),
                    ),
                    ("regions", Value::Set(vec![Value::string("us-east-1")])),
                    (
                        "items",
                        Value::List(vec![Value::object([(
                            "n",
                            Value::Number(Number::Int(-40000)),
                        )])]),
                    ),
                ]),
            ),
            (
                "unknowns and nulls",
                Value::object([
                    ("name", Value::Unknown),
                    ("cost", Value::Null),
                    ("on", Value::Unknown),
                    ("tags", Value::Null),
                    ("regions", Value::Set(vec![Value::Unknown])),
                    ("items", Value::Unknown),
                ]),
            ),
        ];
        for (name, v) in cases {
            let bytes = encode(&v, &sample_type());
            assert_eq!(decode(&bytes, &sample_type()).unwrap(), v, "{name}");
        }
    }

    #[test]
    fn a_decimal_should_travel_as_a_string_and_an_integer_as_an_integer() {
        assert_eq!(
            encode(
                &Value::Number(Number::Decimal("3.072".into())),
                &Type::Number
            ),
            b"\xa53.072"
        );
        assert_eq!(encode(&Value::number(7.0), &Type::Number), [7]);
        assert_eq!(
            encode(&Value::Number(Number::Decimal("1e3".into())), &Type::Number)[0],
            0xd3
        );
        // Terraform sends numbers as strings when they have no exact float64 form.
        let v = decode(b"\xa53.072", &Type::Number).unwrap();
        assert_eq!(v, Value::Number(Number::Decimal("3.072".into())));
    }

    #[test]
    fn any_extension_should_decode_as_unknown() {
        for bytes in [&[0xd4u8, 0, 0][..], &[0xc7, 0, 0], &[0xc7, 2, 12, 1, 2]] {
            assert_eq!(decode(bytes, &Type::String).unwrap(), Value::Unknown);
        }
    }

    #[test]
    fn a_type_mismatch_should_name_the_path() {
        let ty = Type::object([("count", Type::Number)]);
        let bytes = encode(
            &Value::object([("count", Value::string("x"))]),
            &Type::object([("count", Type::String)]),
        );
        let err = decode(&bytes, &ty).unwrap_err().to_string();
        assert!(err.contains(".count"), "{err}");
    }

    proptest! {
        #[test]
        fn numbers_should_round_trip_exactly(i in any::<i64>(), f in -1e12f64..1e12) {
            for n in [Number::Int(i), Number::from_f64(f), Number::Float(f)] {
                let v = Value::Number(n);
                prop_assert_eq!(decode(&encode(&v, &Type::Number), &Type::Number).unwrap(), v);
            }
        }

        #[test]
        fn strings_of_any_length_should_round_trip(s in ".{0,300}") {
            let v = Value::String(s);
            prop_assert_eq!(decode(&encode(&v, &Type::String), &Type::String).unwrap(), v);
        }
    }
}
