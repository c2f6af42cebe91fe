//! The type mapping: a value crosses to a target column exactly, or not at all.
//!
//! [`convert`] takes a canonical value read from one database and the canonical type of the
//! column it is to be written to on the other, and returns the value the target will store —
//! identical in meaning — or a [`ConvertError`] naming why it cannot: out of range, too
//! precise, a NUL byte PostgreSQL text cannot hold, `NaN`, `infinity`, a MySQL zero date.
//! Nothing is rounded, truncated or clamped silently; the applier sends a failed row to the
//! dead-letter table with this error as its reason.

use bigdecimal::{BigDecimal, ToPrimitive, Zero};
use chrono::{NaiveDateTime, Timelike};

use crate::value::{ColumnType, Value};

/// Why a value cannot be written to a column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Column {column:?}: value {value} cannot be stored as {target}: {reason}")]
pub struct ConvertError {
    pub column: String,
    pub value: String,
    pub target: String,
    pub reason: String,
}

/// Convert `value` for a column `column` of type `target`.
pub fn convert(column: &str, value: &Value, target: &ColumnType) -> Result<Value, ConvertError> {
    convert_value(value, target).map_err(|reason| ConvertError {
        column: column.to_owned(),
        value: value.to_string(),
        target: target.to_string(),
        reason,
    })
}

fn int_range(bytes: u8, unsigned: bool) -> (i128, i128) {
    let bits = u32::from(bytes.clamp(1, 8)) * 8;
    if unsigned {
        (0, (1i128 << bits) - 1)
    } else {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    }
}

fn decimal_digits(d: &BigDecimal) -> (u64, i64) {
    // (integer digits, scale) of the normalised value; zero has no integer digits.
    // Up to 38 digits in integer arithmetic: `normalized` and printing the digits cost
    // an initial copy 5 % of its CPU, for every decimal of every row.
    let (int, scale) = d.as_bigint_and_scale();
    if let Some(mut m) = int.magnitude().to_u128() {
        if m == 0 {
            return (0, 0);
        }
        let mut scale = scale;
        while m % 10 == 0 {
            m /= 10;
            scale -= 1;
        }
        let total = i64::from(m.ilog10()) + 1;
        return ((total - scale).max(0) as u64, scale.max(0));
    }
    let n = d.normalized();
    let (digits, scale) = n.as_bigint_and_exponent();
    let total = if digits.is_zero() {
        0
    } else {
        digits.magnitude().to_string().len() as i64
    };
    let int_digits = (total - scale).max(0) as u64;
    (int_digits, scale.max(0))
}

fn convert_value(value: &Value, target: &ColumnType) -> Result<Value, String> {
    use ColumnType as T;
    if let Value::Unsupported { type_name, .. } = value {
        return Err(format!(
            "the source value of type {type_name} has no equivalent on the target"
        ));
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    match target {
        T::Unsupported { type_name } => {
            Err(format!("tandem does not write columns of type {type_name}"))
        }
        T::Bool => match value {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::Int(0) | Value::UInt(0) => Ok(Value::Bool(false)),
            Value::Int(1) | Value::UInt(1) => Ok(Value::Bool(true)),
            Value::Int(_) | Value::UInt(_) => Err("only 0 and 1 map to a boolean".into()),
            v => Err(format!("a {} is not a boolean", v.kind())),
        },
        T::Int { bytes, unsigned } => {
            let n: i128 = match value {
                Value::Bool(b) => i128::from(*b),
                Value::Int(i) => i128::from(*i),
                Value::UInt(u) => i128::from(*u),
                Value::Decimal(d) if d.is_integer() => {
                    d.to_i128().ok_or_else(|| "out of range".to_string())?
                }
                Value::Decimal(_) => return Err("has a fractional part".into()),
                v => return Err(format!("a {} is not an integer", v.kind())),
            };
            let (lo, hi) = int_range(*bytes, *unsigned);
            if n < lo || n > hi {
                return Err(format!("out of range {lo}..={hi}"));
            }
            Ok(if n > i128::from(i64::MAX) {
                Value::UInt(n as u64)
            } else {
                Value::Int(n as i64)
            })
        }
        T::Float32 | T::Float64 => {
            let x = match value {
                Value::Float(x) => *x,
                Value::Int(i) if i.unsigned_abs() <= 1 << 53 => *i as f64,
                Value::UInt(u) if *u <= 1 << 53 => *u as f64,
                Value::Int(_) | Value::UInt(_) => {
                    return Err("an integer this large is not exact as a float".into())
                }
                v => return Err(format!("a {} is not a number", v.kind())),
            };
            if x.is_nan() || x.is_infinite() {
                // PostgreSQL floats hold them, MySQL's do not; the applier of a PostgreSQL
                // target never asks, because float-to-float into PostgreSQL is checked below.
                return Err("NaN and infinity cannot be stored".into());
            }
            if matches!(target, T::Float32) && (x as f32) as f64 != x {
                return Err("not exact as a 4-byte float".into());
            }
            Ok(Value::Float(x))
        }
        T::Decimal { precision, scale } => {
            let d = match value {
                Value::Decimal(d) => d.clone(),
                Value::Int(i) => BigDecimal::from(*i),
                Value::UInt(u) => BigDecimal::from(*u),
                Value::Bool(b) => BigDecimal::from(i64::from(*b)),
                Value::Float(_) => {
                    return Err(
                        "floats are not converted to exact decimals (map a decimal column)".into(),
                    )
                }
                v => return Err(format!("a {} is not a number", v.kind())),
            };
            if let Some(p) = precision {
                let s = u64::from(scale.unwrap_or(0));
                let (int_digits, frac) = decimal_digits(&d);
                if frac as u64 > s {
                    return Err(format!(
                        "has {frac} fractional digits, the column keeps {s}"
                    ));
                }
                if int_digits > u64::from(*p).saturating_sub(s) {
                    return Err(format!(
                        "has {int_digits} integer digits, the column allows {}",
                        u64::from(*p).saturating_sub(s)
                    ));
                }
            }
            Ok(Value::Decimal(d))
        }
        T::Text {
            max_chars,
            allows_nul,
        } => {
            let s = match value {
                Value::Text(s) | Value::Json(s) => s.clone(),
                Value::Uuid(u) => u.to_string(),
                Value::Int(i) => i.to_string(),
                Value::UInt(u) => u.to_string(),
                Value::Decimal(d) => d.to_string(),
                Value::Bool(b) => b.to_string(),
                v => {
                    return Err(format!(
                        "a {} is not text; map it to a column of its own type",
                        v.kind()
                    ))
                }
            };
            if !allows_nul && s.contains('\0') {
                return Err("contains a NUL character, which PostgreSQL text cannot hold".into());
            }
            if let Some(max) = max_chars {
                let n = s.chars().count();
                if n > *max as usize {
                    return Err(format!("is {n} characters long, the column holds {max}"));
                }
            }
            Ok(Value::Text(s))
        }
        T::Bytes { max_len } => {
            let b = match value {
                Value::Bytes(b) => b.clone(),
                Value::Uuid(u) => u.as_bytes().to_vec(),
                Value::Text(s) => s.as_bytes().to_vec(),
                v => return Err(format!("a {} is not binary data", v.kind())),
            };
            if let Some(max) = max_len {
                if b.len() > *max as usize {
                    return Err(format!("is {} bytes long, the column holds {max}", b.len()));
                }
            }
            Ok(Value::Bytes(b))
        }
        T::Date { min, max } => match value {
            Value::Date(d) if d < min || d > max => Err(format!("outside {min}..={max}")),
            Value::Date(d) => Ok(Value::Date(*d)),
            v => Err(format!("a {} is not a date", v.kind())),
        },
        T::Time { fsp } => match value {
            Value::Time(t) => {
                check_fraction(t.nanosecond() / 1000, *fsp)?;
                Ok(Value::Time(*t))
            }
            v => Err(format!("a {} is not a time of day", v.kind())),
        },
        T::Timestamp { fsp, min, max } | T::TimestampTz { fsp, min, max } => {
            // Naive values are taken as UTC on both sides: tandem pins both sessions to UTC.
            let naive: NaiveDateTime = match value {
                Value::Timestamp(t) => *t,
                Value::TimestampTz(t) => t.naive_utc(),
                v => return Err(format!("a {} is not a timestamp", v.kind())),
            };
            if naive < *min || naive > *max {
                return Err(format!("outside {min}..={max}"));
            }
            check_fraction(naive.nanosecond() / 1000, *fsp)?;
            Ok(match target {
                T::TimestampTz { .. } => Value::TimestampTz(naive.and_utc()),
                _ => Value::Timestamp(naive),
            })
        }
        T::Json => match value {
            Value::Json(s) => Ok(Value::Json(s.clone())),
            Value::Text(s) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(_) => Ok(Value::Json(s.clone())),
                Err(e) => Err(format!("is not valid JSON ({e})")),
            },
            v => Err(format!("a {} is not JSON", v.kind())),
        },
        T::Uuid => match value {
            Value::Uuid(u) => Ok(Value::Uuid(*u)),
            Value::Text(s) => uuid::Uuid::parse_str(s)
                .map(Value::Uuid)
                .map_err(|_| "is not a UUID".to_string()),
            Value::Bytes(b) => uuid::Uuid::from_slice(b)
                .map(Value::Uuid)
                .map_err(|_| "is not 16 bytes".to_string()),
            v => Err(format!("a {} is not a UUID", v.kind())),
        },
        T::Enum { labels } => {
            let s = match value {
                Value::Text(s) => s,
                v => return Err(format!("a {} is not an enum label", v.kind())),
            };
            if labels.is_empty() || labels.iter().any(|l| l == s) {
                Ok(Value::Text(s.clone()))
            } else {
                Err(format!("is not one of the labels {}", labels.join(", ")))
            }
        }
    }
}

fn check_fraction(micros: u32, fsp: u8) -> Result<(), String> {
    let keep = 10u32.pow(6u32.saturating_sub(u32::from(fsp.min(6))));
    if !micros.is_multiple_of(keep) {
        return Err(format!("has sub-second digits beyond the column's {fsp}"));
    }
    Ok(())
}

/// Sum of `a - b + t` for `delta` resolution, exact for integers and decimals.
pub fn apply_delta(before: &Value, after: &Value, current: &Value) -> Option<Value> {
    let as_dec = |v: &Value| -> Option<BigDecimal> {
        match v {
            Value::Null => Some(BigDecimal::zero()),
            Value::Int(i) => Some(BigDecimal::from(*i)),
            Value::UInt(u) => Some(BigDecimal::from(*u)),
            Value::Decimal(d) => Some(d.clone()),
            _ => None,
        }
    };
    if let (
        Value::Float(_) | Value::Null,
        Value::Float(_) | Value::Null,
        Value::Float(_) | Value::Null,
    ) = (before, after, current)
    {
        let f = |v: &Value| if let Value::Float(x) = v { *x } else { 0.0 };
        if [before, after, current]
            .iter()
            .any(|v| matches!(v, Value::Float(_)))
        {
            return Some(Value::Float(f(after) - f(before) + f(current)));
        }
    }
    let sum = as_dec(after)? - as_dec(before)? + as_dec(current)?;
    let all_int = [before, after, current]
        .iter()
        .all(|v| matches!(v, Value::Null | Value::Int(_) | Value::UInt(_)));
    if all_int && sum.is_integer() {
        if let Some(i) = sum.to_i64() {
            return Some(Value::Int(i));
        }
        if let Some(u) = sum.to_u64() {
            return Some(Value::UInt(u));
        }
    }
    Some(Value::Decimal(sum))
}

#[cfg(test)]
mod tests {
    /// The integer fast path of `decimal_digits` agrees with the general one.
    #[test]
    fn decimal_digits_fast_path_matches_normalising() {
        let slow = |d: &BigDecimal| {
            let n = d.normalized();
            let (digits, scale) = n.as_bigint_and_exponent();
            let total = if digits.is_zero() {
                0
            } else {
                digits.magnitude().to_string().len() as i64
            };
            (((total - scale).max(0)) as u64, scale.max(0))
        };
        for text in [
            "0",
            "0.00",
            "-0.0",
            "1",
            "10",
            "1000",
            "1e5",
            "1.5e-3",
            "123.45",
            "-123.450",
            "0.001",
            "99999999999999999999999999999999999999",
            "1e-40",
            "120e2",
            "-7.0100",
        ] {
            let d: BigDecimal = text.parse().unwrap_or_default();
            assert_eq!(decimal_digits(&d), slow(&d), "{text}");
        }
    }
    use super::*;
    use chrono::NaiveDate;
    use std::str::FromStr;

    fn dec(s: &str) -> Value {
        Value::Decimal(BigDecimal::from_str(s).unwrap())
    }

    #[test]
    fn integers_are_range_checked() {
        let t = ColumnType::Int {
            bytes: 1,
            unsigned: true,
        };
        assert_eq!(convert("c", &Value::Int(255), &t).unwrap(), Value::Int(255));
        let e = convert("qty", &Value::Int(256), &t).unwrap_err();
        assert_eq!(e.column, "qty");
        assert!(e.to_string().contains("out of range 0..=255"), "{e}");
        let big = ColumnType::Int {
            bytes: 8,
            unsigned: true,
        };
        assert_eq!(
            convert("c", &Value::UInt(u64::MAX), &big).unwrap(),
            Value::UInt(u64::MAX)
        );
        let signed = ColumnType::Int {
            bytes: 8,
            unsigned: false,
        };
        assert!(convert("c", &Value::UInt(u64::MAX), &signed).is_err());
        assert!(convert("c", &Value::Int(-1), &big).is_err());
    }

    #[test]
    fn decimals_keep_every_digit_or_fail() {
        let t = ColumnType::Decimal {
            precision: Some(65),
            scale: Some(30),
        };
        let v = dec("12345678901234567890123456789012345.123456789012345678901234567890");
        assert_eq!(convert("c", &v, &t).unwrap(), v);
        let e = convert("price", &dec("1.0000000000000000000000000000001"), &t).unwrap_err();
        assert!(e.reason.contains("fractional digits"), "{e}");
        let small = ColumnType::Decimal {
            precision: Some(5),
            scale: Some(2),
        };
        assert!(convert("c", &dec("999.99"), &small).is_ok());
        assert!(convert("c", &dec("1000.00"), &small).is_err());
        assert!(convert("c", &dec("-0.5"), &small).is_ok());
    }

    #[test]
    fn nul_in_text_is_refused_for_postgres_only() {
        let pg = ColumnType::Text {
            max_chars: None,
            allows_nul: false,
        };
        let my = ColumnType::Text {
            max_chars: None,
            allows_nul: true,
        };
        let v = Value::Text("a\0b".into());
        assert!(convert("name", &v, &pg).unwrap_err().reason.contains("NUL"));
        assert_eq!(convert("name", &v, &my).unwrap(), v);
    }

    #[test]
    fn unsupported_values_never_cross() {
        let t = ColumnType::Timestamp {
            fsp: 6,
            min: NaiveDate::from_ymd_opt(1000, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
            max: NaiveDate::from_ymd_opt(9999, 12, 31)
                .unwrap()
                .and_hms_opt(23, 59, 59)
                .unwrap(),
        };
        let v = Value::Unsupported {
            type_name: "timestamptz".into(),
            text: "infinity".into(),
        };
        let e = convert("shipped_at", &v, &t).unwrap_err();
        assert!(
            e.to_string().contains("shipped_at") && e.to_string().contains("infinity"),
            "{e}"
        );
        assert!(convert("x", &Value::Float(f64::NAN), &ColumnType::Float64).is_err());
    }

    #[test]
    fn delta_is_exact() {
        assert_eq!(
            apply_delta(&Value::Int(10), &Value::Int(7), &Value::Int(25)),
            Some(Value::Int(22))
        );
        assert_eq!(
            apply_delta(&Value::Null, &Value::Int(5), &Value::Int(10)),
            Some(Value::Int(15))
        );
        assert_eq!(
            apply_delta(&dec("1.10"), &dec("1.30"), &dec("2.00")).unwrap(),
            dec("2.20")
        );
    }
}
