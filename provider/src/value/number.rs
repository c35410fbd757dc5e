//! Exact decimal numbers as cty carries them.
//!
//! Terraform keeps numbers as arbitrary-precision decimals. On the wire a number arrives as a msgpack
//! integer, a float64 (only when the value is exactly that binary float) or a decimal string. Each
//! form is kept as it came, so that a value sent back is bit-for-bit the value Terraform holds: a cost
//! of `3.072` travels as the string `"3.072"`, never as the nearest float64, and produces no diff.

use std::fmt;

/// A cty number.
#[derive(Debug, Clone)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A binary float that Terraform holds exactly.
    Float(f64),
    /// A decimal in text form, e.g. `3.072` or `-1e-3`.
    Decimal(String),
}

impl Number {
    /// The number nearest to `x` that a person would write: integers stay integers, other values use
    /// the shortest decimal that reads back as `x`.
    pub fn from_f64(x: f64) -> Number {
        if x.fract() == 0.0 && x.abs() < 9.0e15 {
            Number::Int(x as i64)
        } else {
            Number::Decimal(format!("{x}"))
        }
    }

    /// Parses decimal text (JSON number syntax, with optional leading `+`).
    pub fn parse(text: &str) -> Option<Number> {
        let t = text.trim();
        canonical_decimal(t)?;
        if let Ok(i) = t.parse::<i64>() {
            return Some(Number::Int(i));
        }
        Some(Number::Decimal(t.trim_start_matches('+').to_string()))
    }

    /// The value as an `f64` (rounded for decimals that have no exact binary form).
    pub fn as_f64(&self) -> f64 {
        match self {
            Number::Int(i) => *i as f64,
            Number::Float(f) => *f,
            Number::Decimal(s) => s.parse().unwrap_or(f64::NAN),
        }
    }

    /// The value as an `i64` when it is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            _ => {
                let (neg, digits, exp) = canonical_decimal(&self.to_string())?;
                if exp < 0 {
                    return None;
                }
                let mut s = digits;
                s.extend(std::iter::repeat_n('0', exp as usize));
                let v: i64 = s.parse().ok()?;
                Some(if neg { -v } else { v })
            }
        }
    }

    /// A canonical form: sign, significant digits without leading/trailing zeros, and exponent.
    fn canonical(&self) -> Option<(bool, String, i64)> {
        canonical_decimal(&self.to_string())
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        match (self.canonical(), other.canonical()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
            Number::Decimal(s) => f.write_str(s),
        }
    }
}

/// Splits decimal text into (negative, significant digits, exponent) with `value = digits * 10^exp`;
/// zero is `(false, "0", 0)`. Returns `None` when the text is not a decimal number.
fn canonical_decimal(text: &str) -> Option<(bool, String, i64)> {
    let mut s = text;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = match mant.find('.') {
        Some(i) => (&mant[..i], &mant[i + 1..]),
        None => (mant, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = format!("{int}{frac}");
    let mut exp = exp - frac.len() as i64;
    let trimmed = digits.trim_start_matches('0').to_string();
    digits = trimmed;
    if digits.is_empty() {
        return Some((false, "0".into(), 0));
    }
    while digits.ends_with('0') {
        digits.pop();
        exp += 1;
    }
    Some((neg, digits, exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_should_compare_by_value_not_by_spelling() {
        let cases = [
            ("3.072", "3.0720", true),
            ("3.072", "3072e-3", true),
            ("100", "1e2", true),
            ("0", "-0.000", true),
            ("3.072", "3.0721", false),
            ("-1", "1", false),
        ];
        for (a, b, eq) in cases {
            assert_eq!(
                Number::parse(a).unwrap() == Number::parse(b).unwrap(),
                eq,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn from_f64_should_use_the_shortest_decimal() {
        assert_eq!(Number::from_f64(3.072).to_string(), "3.072");
        assert_eq!(Number::from_f64(2.0).to_string(), "2");
        assert!(matches!(Number::from_f64(2.0), Number::Int(2)));
        assert_eq!(
            Number::from_f64(0.1 + 0.2).to_string(),
            "0.30000000000000004"
        );
    }

    #[test]
    fn parse_should_reject_non_numbers() {
        for bad in ["", "abc", "1.2.3", "--1", "1e", "."] {
            assert!(Number::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Number::parse("1e3").unwrap().as_i64(), Some(1000));
        assert_eq!(Number::parse("1.5").unwrap().as_i64(), None);
    }
}
