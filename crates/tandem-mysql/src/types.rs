//! MySQL/MariaDB column types and values in tandem's canonical model.
//!
//! Three ways in and one way out, and they must agree value for value:
//! - [`column_type_from_sql`] reads an `information_schema.COLUMNS.COLUMN_TYPE` string
//!   (`int(10) unsigned`, `enum('a','b')`, `datetime(6)`) into a [`ColumnType`];
//! - [`decode_text`] decodes a text-protocol value (snapshot reads, catalog checks);
//!   [`from_mysql_value`] also accepts binary-protocol values from prepared statements;
//! - the binlog row decoder (`crate::binlog::rows`) decodes the same columns from row
//!   events, and a test compares both paths for every type family;
//! - [`to_mysql_value`] turns a canonical value into a statement parameter.
//!
//! The limits in each [`ColumnType`] are MySQL's documented ranges, so that
//! `tandem_core::convert` can refuse a value the target would otherwise silently clip.
//! What the canonical model cannot hold — zero dates (`0000-00-00`), `TIME` values outside a
//! day, `BIT` — becomes [`Value::Unsupported`] with the server's text, never a substitute.
//! Temporal text is read as UTC: tandem pins its MySQL sessions to `time_zone='+00:00'`.
//!
//! Spellings differ between servers (MySQL 8 drops integer display widths except
//! `tinyint(1)`; MariaDB keeps them; MariaDB reports `JSON` as `longtext` plus a
//! `json_valid` check), so the parser keys on the base type name and reads only the
//! arguments that change meaning.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use tandem_core::{ColumnType, Value};

/// Why a server value could not be decoded into a canonical value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("Value {text:?} of a {type_name} column is not valid: {reason}")]
    Malformed {
        type_name: String,
        text: String,
        reason: &'static str,
    },
    #[error("Value of a {type_name} column is not valid UTF-8")]
    InvalidUtf8 { type_name: String },
    #[error("A {found} protocol value cannot be read as {type_name}")]
    WrongKind {
        type_name: String,
        found: &'static str,
    },
}

/// Lowest `DATE`/`DATETIME` MySQL documents as supported.
pub fn mysql_min_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1000, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// Highest `DATE`/`DATETIME` day.
pub fn mysql_max_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX)
}

fn datetime_range() -> (NaiveDateTime, NaiveDateTime) {
    let min = mysql_min_date().and_time(NaiveTime::MIN);
    let max = mysql_max_date()
        .and_hms_micro_opt(23, 59, 59, 999_999)
        .unwrap_or(NaiveDateTime::MAX);
    (min, max)
}

/// `TIMESTAMP` is a 32-bit count of seconds since the epoch: 1970-01-01 00:00:01 UTC
/// (0 is the zero timestamp) to 2038-01-19 03:14:07.999999 UTC.
fn timestamp_range() -> (NaiveDateTime, NaiveDateTime) {
    let min = DateTime::from_timestamp(1, 0).map_or(NaiveDateTime::MIN, |t| t.naive_utc());
    let max = DateTime::from_timestamp(i64::from(i32::MAX), 999_999_000)
        .map_or(NaiveDateTime::MAX, |t| t.naive_utc());
    (min, max)
}

fn fsp_of(args: &[String]) -> u8 {
    args.first()
        .and_then(|a| a.trim().parse::<u8>().ok())
        .unwrap_or(0)
        .min(6)
}

/// Split `name(args) modifiers` into its parts; quoted arguments keep their text.
fn split_type(column_type: &str) -> (String, Vec<String>, String) {
    let s = column_type.trim();
    let (head, rest) = match s.find('(') {
        Some(i) => (&s[..i], &s[i..]),
        None => match s.find(' ') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        },
    };
    let base = head.trim().to_ascii_lowercase();
    let mut args = Vec::new();
    let mut modifiers = rest;
    if rest.starts_with('(') {
        let mut cur = String::new();
        let mut in_quote = false;
        let mut chars = rest.char_indices().skip(1).peekable();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            if in_quote {
                if c == '\'' {
                    if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                        cur.push('\'');
                        chars.next();
                    } else {
                        in_quote = false;
                    }
                } else if c == '\\' {
                    if let Some((_, n)) = chars.next() {
                        cur.push(n);
                    }
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    '\'' => in_quote = true,
                    ',' => args.push(std::mem::take(&mut cur)),
                    ')' => {
                        end = i + 1;
                        break;
                    }
                    c if c.is_whitespace() => {}
                    c => cur.push(c),
                }
            }
        }
        args.push(cur);
        modifiers = rest.get(end..).unwrap_or("");
    }
    (base, args, modifiers.to_ascii_lowercase())
}

/// The labels of an `enum(...)` or `set(...)` column type, unquoted; empty for other types.
pub fn enum_or_set_labels(column_type: &str) -> Vec<String> {
    let (base, args, _) = split_type(column_type);
    match base.as_str() {
        "enum" | "set" => args,
        _ => Vec::new(),
    }
}

/// The canonical type of a MySQL/MariaDB column, from `information_schema` `COLUMN_TYPE`.
///
/// MariaDB spells `JSON` as `longtext`; use [`column_type_from_sql_json`] when the column
/// has a `json_valid` check constraint.
pub fn column_type_from_sql(column_type: &str) -> ColumnType {
    let (base, args, modifiers) = split_type(column_type);
    let unsigned = modifiers
        .split_whitespace()
        .any(|m| m == "unsigned" || m == "zerofill");
    let len = || args.first().and_then(|a| a.parse::<u32>().ok());
    let int = |bytes| ColumnType::Int { bytes, unsigned };
    match base.as_str() {
        "bool" | "boolean" => ColumnType::Bool,
        "tinyint" if !unsigned && args.first().is_some_and(|a| a == "1") => ColumnType::Bool,
        "tinyint" | "int1" => int(1),
        "smallint" | "int2" => int(2),
        "mediumint" | "int3" | "middleint" => int(3),
        "int" | "integer" | "int4" => int(4),
        "bigint" | "int8" | "serial" => ColumnType::Int {
            bytes: 8,
            unsigned: unsigned || base == "serial",
        },
        "year" => ColumnType::Int {
            bytes: 2,
            unsigned: false,
        },
        "decimal" | "numeric" | "dec" | "fixed" => {
            let p = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
            let s = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
            ColumnType::Decimal {
                precision: Some(p),
                scale: Some(s),
            }
        }
        // FLOAT(p) with p > 24 is a DOUBLE; FLOAT(m,d) is a FLOAT.
        "float" if args.len() == 1 && len().is_some_and(|p| p > 24) => ColumnType::Float64,
        "float" | "float4" => ColumnType::Float32,
        "double" | "real" | "float8" | "double precision" => ColumnType::Float64,
        "char" | "varchar" | "nchar" | "nvarchar" | "character" => ColumnType::Text {
            max_chars: len().or(Some(1)),
            allows_nul: true,
        },
        "tinytext" | "text" | "mediumtext" | "longtext" | "long" => ColumnType::Text {
            max_chars: None,
            allows_nul: true,
        },
        "binary" => ColumnType::Bytes {
            max_len: len().or(Some(1)),
        },
        "varbinary" => ColumnType::Bytes { max_len: len() },
        "tinyblob" => ColumnType::Bytes { max_len: Some(255) },
        "blob" => ColumnType::Bytes {
            max_len: Some(65_535),
        },
        "mediumblob" => ColumnType::Bytes {
            max_len: Some(16_777_215),
        },
        "longblob" => ColumnType::Bytes {
            max_len: Some(u32::MAX),
        },
        "date" => ColumnType::Date {
            min: mysql_min_date(),
            max: mysql_max_date(),
        },
        "time" => ColumnType::Time { fsp: fsp_of(&args) },
        "datetime" => {
            let (min, max) = datetime_range();
            ColumnType::Timestamp {
                fsp: fsp_of(&args),
                min,
                max,
            }
        }
        "timestamp" => {
            let (min, max) = timestamp_range();
            ColumnType::TimestampTz {
                fsp: fsp_of(&args),
                min,
                max,
            }
        }
        "json" => ColumnType::Json,
        "uuid" => ColumnType::Uuid,
        "enum" => ColumnType::Enum { labels: args },
        // A SET value is a comma list of its members: text on the wire and in the model.
        "set" => ColumnType::Text {
            max_chars: None,
            allows_nul: true,
        },
        _ => ColumnType::Unsupported {
            type_name: column_type.trim().to_ascii_lowercase(),
        },
    }
}

/// Like [`column_type_from_sql`], for MariaDB, where a `JSON` column is a `longtext` with
/// a `json_valid(col)` check: `is_json` says the check is there.
pub fn column_type_from_sql_json(column_type: &str, is_json: bool) -> ColumnType {
    let ty = column_type_from_sql(column_type);
    match ty {
        ColumnType::Text {
            max_chars: None, ..
        } if is_json => ColumnType::Json,
        other => other,
    }
}

/// The name a type is reported under in errors and `Value::Unsupported`.
fn type_name(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Date { .. } => "date".into(),
        ColumnType::Time { .. } => "time".into(),
        ColumnType::Timestamp { .. } => "datetime".into(),
        ColumnType::TimestampTz { .. } => "timestamp".into(),
        ColumnType::Unsupported { type_name } => type_name.clone(),
        other => other.to_string(),
    }
}

fn utf8<'a>(ty: &ColumnType, bytes: &'a [u8]) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 {
        type_name: type_name(ty),
    })
}

fn malformed(ty: &ColumnType, text: &str, reason: &'static str) -> DecodeError {
    DecodeError::Malformed {
        type_name: type_name(ty),
        text: text.to_owned(),
        reason,
    }
}

/// An unsigned integer as the canonical model prefers it: `Int` when it fits.
pub(crate) fn uint_value(u: u64) -> Value {
    match i64::try_from(u) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::UInt(u),
    }
}

/// A `TINYINT(1)` holds -128..=127; only 0 and 1 are booleans, anything else stays an
/// integer so that writing it to a boolean column fails visibly.
pub(crate) fn bool_value(i: i64) -> Value {
    match i {
        0 => Value::Bool(false),
        1 => Value::Bool(true),
        n => Value::Int(n),
    }
}

/// Text for a value of a type tandem does not map: the bytes as text if they are UTF-8,
/// hex otherwise, identical whichever protocol delivered them.
pub(crate) fn unsupported_value(type_name: &str, bytes: &[u8]) -> Value {
    let text = match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => s.to_owned(),
        _ => {
            let mut s = String::with_capacity(2 + bytes.len() * 2);
            s.push_str("0x");
            for b in bytes {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    };
    Value::Unsupported {
        type_name: type_name.to_owned(),
        text,
    }
}

/// Parse `HH:MM:SS[.ffffff]` (no sign, hours < 24).
fn parse_time_of_day(s: &str) -> Option<NaiveTime> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let mut it = hms.split(':');
    let h: u32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let sec: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    let micros = match frac {
        None => 0,
        Some(f) if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) => {
            return None
        }
        Some(f) => {
            let n: u32 = f.parse().ok()?;
            n * 10u32.pow(6 - u32::try_from(f.len()).ok()?)
        }
    };
    NaiveTime::from_hms_micro_opt(h, m, sec, micros)
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let mut it = s.split('-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    NaiveDate::from_ymd_opt(y, m, d)
}

fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let (d, t) = s.split_once(' ').or_else(|| s.split_once('T'))?;
    Some(parse_date(d)?.and_time(parse_time_of_day(t)?))
}

/// Decode a non-NULL text-protocol value of a column of type `ty`.
pub fn decode_text(ty: &ColumnType, bytes: &[u8]) -> Result<Value, DecodeError> {
    use ColumnType as T;
    match ty {
        T::Bool => {
            let s = utf8(ty, bytes)?;
            s.parse::<i64>()
                .map(bool_value)
                .map_err(|_| malformed(ty, s, "not an integer"))
        }
        T::Int { unsigned: true, .. } => {
            let s = utf8(ty, bytes)?;
            s.parse::<u64>()
                .map(uint_value)
                .map_err(|_| malformed(ty, s, "not an integer"))
        }
        T::Int { .. } => {
            let s = utf8(ty, bytes)?;
            s.parse::<i64>()
                .map(Value::Int)
                .map_err(|_| malformed(ty, s, "not an integer"))
        }
        T::Float32 => {
            let s = utf8(ty, bytes)?;
            s.parse::<f32>()
                .map(|f| Value::Float(f64::from(f)))
                .map_err(|_| malformed(ty, s, "not a number"))
        }
        T::Float64 => {
            let s = utf8(ty, bytes)?;
            s.parse::<f64>()
                .map(Value::Float)
                .map_err(|_| malformed(ty, s, "not a number"))
        }
        T::Decimal { .. } => {
            let s = utf8(ty, bytes)?;
            BigDecimal::from_str(s)
                .map(Value::Decimal)
                .map_err(|_| malformed(ty, s, "not a decimal"))
        }
        T::Text { .. } | T::Enum { .. } => Ok(Value::Text(utf8(ty, bytes)?.to_owned())),
        T::Json => Ok(Value::Json(utf8(ty, bytes)?.to_owned())),
        T::Bytes { .. } => Ok(Value::Bytes(bytes.to_vec())),
        T::Uuid => {
            if bytes.len() == 16 {
                return uuid::Uuid::from_slice(bytes)
                    .map(Value::Uuid)
                    .map_err(|_| malformed(ty, "", "not 16 bytes"));
            }
            let s = utf8(ty, bytes)?;
            uuid::Uuid::parse_str(s)
                .map(Value::Uuid)
                .map_err(|_| malformed(ty, s, "not a UUID"))
        }
        T::Date { .. } => {
            let s = utf8(ty, bytes)?;
            Ok(parse_date(s).map_or_else(|| unsupported_value("date", bytes), Value::Date))
        }
        T::Time { .. } => {
            // Negative or ≥ 24 h durations are valid MySQL TIMEs but not times of day.
            let s = utf8(ty, bytes)?;
            Ok(parse_time_of_day(s).map_or_else(|| unsupported_value("time", bytes), Value::Time))
        }
        T::Timestamp { .. } => {
            let s = utf8(ty, bytes)?;
            Ok(parse_datetime(s)
                .map_or_else(|| unsupported_value("datetime", bytes), Value::Timestamp))
        }
        T::TimestampTz { .. } => {
            let s = utf8(ty, bytes)?;
            Ok(parse_datetime(s).map_or_else(
                || unsupported_value("timestamp", bytes),
                |t| Value::TimestampTz(t.and_utc()),
            ))
        }
        T::Unsupported { type_name } => Ok(unsupported_value(type_name, bytes)),
    }
}

/// Decode a value as `mysql_async` returns it: `Bytes` from the text protocol, typed
/// variants from the binary protocol (prepared statements), `NULL`.
pub fn from_mysql_value(ty: &ColumnType, v: &mysql_async::Value) -> Result<Value, DecodeError> {
    use mysql_async::Value as M;
    use ColumnType as T;
    let wrong = |found| DecodeError::WrongKind {
        type_name: type_name(ty),
        found,
    };
    match v {
        M::NULL => Ok(Value::Null),
        M::Bytes(b) => decode_text(ty, b),
        M::Int(i) => match ty {
            T::Bool => Ok(bool_value(*i)),
            T::Int { .. } => Ok(Value::Int(*i)),
            _ => decode_text(ty, i.to_string().as_bytes()),
        },
        M::UInt(u) => match ty {
            T::Bool => Ok(i64::try_from(*u).map_or(Value::UInt(*u), bool_value)),
            T::Int { .. } => Ok(uint_value(*u)),
            _ => decode_text(ty, u.to_string().as_bytes()),
        },
        M::Float(f) => match ty {
            T::Float32 | T::Float64 => Ok(Value::Float(f64::from(*f))),
            _ => Err(wrong("float")),
        },
        M::Double(f) => match ty {
            T::Float32 | T::Float64 => Ok(Value::Float(*f)),
            _ => Err(wrong("double")),
        },
        M::Date(y, mo, d, h, mi, s, us) => {
            let text = match ty {
                T::Timestamp { fsp, .. } | T::TimestampTz { fsp, .. } => format!(
                    "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                    fraction_text(*us, *fsp)
                ),
                _ => format!("{y:04}-{mo:02}-{d:02}"),
            };
            match ty {
                T::Date { .. } | T::Timestamp { .. } | T::TimestampTz { .. } => {
                    decode_text(ty, text.as_bytes())
                }
                _ => Err(wrong("date")),
            }
        }
        M::Time(neg, days, h, mi, s, us) => match ty {
            T::Time { fsp } => {
                let hours = u64::from(*days) * 24 + u64::from(*h);
                let sign = if *neg { "-" } else { "" };
                let text = format!(
                    "{sign}{hours:02}:{mi:02}:{s:02}{}",
                    fraction_text(*us, *fsp)
                );
                decode_text(ty, text.as_bytes())
            }
            _ => Err(wrong("time")),
        },
    }
}

/// A canonical value as a statement parameter.
///
/// Temporal values are sent in UTC (the session's time zone is `+00:00`); decimals as
/// plain text so that no digit passes through a float.
pub fn to_mysql_value(v: &Value) -> mysql_async::Value {
    use mysql_async::Value as M;
    let date = |d: NaiveDate, t: NaiveTime| -> M {
        match (
            u16::try_from(d.year()),
            u8::try_from(d.month()),
            u8::try_from(d.day()),
        ) {
            (Ok(y), Ok(mo), Ok(day)) => M::Date(
                y,
                mo,
                day,
                u8::try_from(t.hour()).unwrap_or(0),
                u8::try_from(t.minute()).unwrap_or(0),
                u8::try_from(t.second()).unwrap_or(0),
                (t.nanosecond() / 1000).min(999_999),
            ),
            // A year MySQL cannot hold: let the server reject the text.
            _ => M::Bytes(
                d.and_time(t)
                    .format("%Y-%m-%d %H:%M:%S%.6f")
                    .to_string()
                    .into_bytes(),
            ),
        }
    };
    match v {
        Value::Null => M::NULL,
        Value::Bool(b) => M::Int(i64::from(*b)),
        Value::Int(i) => M::Int(*i),
        Value::UInt(u) => M::UInt(*u),
        Value::Float(f) => M::Double(*f),
        Value::Decimal(d) => M::Bytes(d.to_plain_string().into_bytes()),
        Value::Text(s) | Value::Json(s) => M::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => M::Bytes(b.clone()),
        Value::Date(d) => date(*d, NaiveTime::MIN),
        Value::Time(t) => M::Time(
            false,
            0,
            u8::try_from(t.hour()).unwrap_or(0),
            u8::try_from(t.minute()).unwrap_or(0),
            u8::try_from(t.second()).unwrap_or(0),
            (t.nanosecond() / 1000).min(999_999),
        ),
        Value::Timestamp(t) => date(t.date(), t.time()),
        Value::TimestampTz(t) => {
            let n = t.naive_utc();
            date(n.date(), n.time())
        }
        Value::Uuid(u) => M::Bytes(u.hyphenated().to_string().into_bytes()),
        Value::Unsupported { text, .. } => M::Bytes(text.as_bytes().to_vec()),
    }
}

/// `.ffffff` cut to `fsp` digits, as the server prints fractional seconds.
pub(crate) fn fraction_text(micros: u32, fsp: u8) -> String {
    if fsp == 0 {
        return String::new();
    }
    let digits = format!("{:06}", micros.min(999_999));
    format!(
        ".{}",
        digits.get(..usize::from(fsp.min(6))).unwrap_or(&digits)
    )
}

/// Convenience for callers holding a UTC instant from a binlog header.
pub(crate) fn utc_from_epoch(secs: i64, micros: u32) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, micros.checked_mul(1000)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(max: Option<u32>) -> ColumnType {
        ColumnType::Text {
            max_chars: max,
            allows_nul: true,
        }
    }

    #[test]
    fn integer_spellings_of_both_servers_parse() {
        assert_eq!(column_type_from_sql("tinyint(1)"), ColumnType::Bool);
        assert_eq!(
            column_type_from_sql("tinyint(1) unsigned"),
            ColumnType::Int {
                bytes: 1,
                unsigned: true
            }
        );
        assert_eq!(
            column_type_from_sql("tinyint(4)"),
            ColumnType::Int {
                bytes: 1,
                unsigned: false
            }
        );
        assert_eq!(
            column_type_from_sql("int(10) unsigned"),
            ColumnType::Int {
                bytes: 4,
                unsigned: true
            }
        );
        assert_eq!(
            column_type_from_sql("INT UNSIGNED ZEROFILL"),
            ColumnType::Int {
                bytes: 4,
                unsigned: true
            }
        );
        assert_eq!(
            column_type_from_sql("bigint unsigned"),
            ColumnType::Int {
                bytes: 8,
                unsigned: true
            }
        );
        assert_eq!(
            column_type_from_sql("bigint(20)"),
            ColumnType::Int {
                bytes: 8,
                unsigned: false
            }
        );
        assert_eq!(
            column_type_from_sql("mediumint(8) unsigned"),
            ColumnType::Int {
                bytes: 3,
                unsigned: true
            }
        );
        assert_eq!(
            column_type_from_sql("year(4)"),
            ColumnType::Int {
                bytes: 2,
                unsigned: false
            }
        );
    }

    #[test]
    fn decimals_floats_strings_and_binaries_parse() {
        assert_eq!(
            column_type_from_sql("decimal(65,30)"),
            ColumnType::Decimal {
                precision: Some(65),
                scale: Some(30)
            }
        );
        assert_eq!(
            column_type_from_sql("decimal(10,2) unsigned"),
            ColumnType::Decimal {
                precision: Some(10),
                scale: Some(2)
            }
        );
        assert_eq!(column_type_from_sql("float"), ColumnType::Float32);
        assert_eq!(column_type_from_sql("float(30)"), ColumnType::Float64);
        assert_eq!(column_type_from_sql("double"), ColumnType::Float64);
        assert_eq!(column_type_from_sql("varchar(255)"), text(Some(255)));
        assert_eq!(column_type_from_sql("char(36)"), text(Some(36)));
        assert_eq!(column_type_from_sql("longtext"), text(None));
        assert_eq!(column_type_from_sql("set('a','b')"), text(None));
        assert_eq!(
            column_type_from_sql("binary(16)"),
            ColumnType::Bytes { max_len: Some(16) }
        );
        assert_eq!(
            column_type_from_sql("varbinary(40)"),
            ColumnType::Bytes { max_len: Some(40) }
        );
        assert_eq!(
            column_type_from_sql("blob"),
            ColumnType::Bytes {
                max_len: Some(65_535)
            }
        );
        assert_eq!(column_type_from_sql("json"), ColumnType::Json);
        assert_eq!(
            column_type_from_sql_json("longtext", true),
            ColumnType::Json
        );
        assert_eq!(column_type_from_sql_json("longtext", false), text(None));
        assert_eq!(
            column_type_from_sql("bit(3)"),
            ColumnType::Unsupported {
                type_name: "bit(3)".into()
            }
        );
    }

    #[test]
    fn enum_labels_keep_quotes_commas_and_parentheses() {
        assert_eq!(
            column_type_from_sql("enum('a','it''s','x,y','(z)')"),
            ColumnType::Enum {
                labels: vec!["a".into(), "it's".into(), "x,y".into(), "(z)".into()]
            }
        );
    }

    #[test]
    fn temporal_ranges_are_mysqls() {
        match column_type_from_sql("timestamp(6)") {
            ColumnType::TimestampTz { fsp, min, max } => {
                assert_eq!(fsp, 6);
                assert_eq!(min.to_string(), "1970-01-01 00:00:01");
                assert_eq!(max.to_string(), "2038-01-19 03:14:07.999999");
            }
            other => panic!("{other:?}"),
        }
        match column_type_from_sql("datetime(3)") {
            ColumnType::Timestamp { fsp, min, max } => {
                assert_eq!(fsp, 3);
                assert_eq!(min.to_string(), "1000-01-01 00:00:00");
                assert_eq!(max.to_string(), "9999-12-31 23:59:59.999999");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(column_type_from_sql("time(6)"), ColumnType::Time { fsp: 6 });
        assert!(matches!(
            column_type_from_sql("date"),
            ColumnType::Date { .. }
        ));
    }

    #[test]
    fn zero_dates_and_long_times_are_unsupported_not_substituted() {
        let date = column_type_from_sql("date");
        assert_eq!(
            decode_text(&date, b"0000-00-00").unwrap(),
            Value::Unsupported {
                type_name: "date".into(),
                text: "0000-00-00".into()
            }
        );
        let dt = column_type_from_sql("datetime");
        assert!(matches!(
            decode_text(&dt, b"0000-00-00 00:00:00").unwrap(),
            Value::Unsupported { .. }
        ));
        let time = column_type_from_sql("time");
        assert!(matches!(
            decode_text(&time, b"-01:00:00").unwrap(),
            Value::Unsupported { .. }
        ));
        assert!(matches!(
            decode_text(&time, b"838:59:59").unwrap(),
            Value::Unsupported { .. }
        ));
        assert_eq!(
            decode_text(&column_type_from_sql("time(6)"), b"23:59:59.5").unwrap(),
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 500_000).unwrap())
        );
    }

    #[test]
    fn edge_values_decode_exactly() {
        let ubig = column_type_from_sql("bigint unsigned");
        assert_eq!(
            decode_text(&ubig, b"18446744073709551615").unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(decode_text(&ubig, b"7").unwrap(), Value::Int(7));
        let big = column_type_from_sql("bigint");
        assert_eq!(
            decode_text(&big, b"-9223372036854775808").unwrap(),
            Value::Int(i64::MIN)
        );
        let b = ColumnType::Bool;
        assert_eq!(decode_text(&b, b"1").unwrap(), Value::Bool(true));
        assert_eq!(decode_text(&b, b"-128").unwrap(), Value::Int(-128));
        let d = column_type_from_sql("decimal(65,30)");
        let s = "-99999999999999999999999999999999999.999999999999999999999999999999";
        assert_eq!(
            decode_text(&d, s.as_bytes()).unwrap(),
            Value::Decimal(BigDecimal::from_str(s).unwrap())
        );
        let ts = column_type_from_sql("timestamp(6)");
        assert_eq!(
            decode_text(&ts, b"2038-01-19 03:14:07.999999")
                .unwrap()
                .to_string(),
            "2038-01-19 03:14:07.999999+00"
        );
        assert!(decode_text(&big, b"12x").is_err());
        assert!(matches!(
            decode_text(&text(None), &[0xff, 0xfe]),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn parameters_keep_decimals_and_times_exact() {
        let d = BigDecimal::from_str("12345678901234567890.000000000000000000001").unwrap();
        assert_eq!(
            to_mysql_value(&Value::Decimal(d)),
            mysql_async::Value::Bytes(b"12345678901234567890.000000000000000000001".to_vec())
        );
        let t = NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_micro_opt(1, 2, 3, 4)
            .unwrap();
        assert_eq!(
            to_mysql_value(&Value::TimestampTz(t.and_utc())),
            mysql_async::Value::Date(2024, 2, 29, 1, 2, 3, 4)
        );
        assert_eq!(
            to_mysql_value(&Value::Bool(true)),
            mysql_async::Value::Int(1)
        );
        assert_eq!(
            to_mysql_value(&Value::UInt(u64::MAX)),
            mysql_async::Value::UInt(u64::MAX)
        );
        // Binary-protocol values read back as the same canonical values.
        let ty = column_type_from_sql("datetime(6)");
        assert_eq!(
            from_mysql_value(&ty, &mysql_async::Value::Date(2024, 2, 29, 1, 2, 3, 4)).unwrap(),
            Value::Timestamp(t)
        );
    }
}
