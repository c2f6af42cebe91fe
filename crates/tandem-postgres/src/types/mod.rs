//! PostgreSQL types in tandem's canonical model, and the text format both ways.
//!
//! Both read paths — the initial snapshot (`COPY`/`SELECT` over a normal connection) and the
//! pgoutput stream — receive values in PostgreSQL's *text* output format and decode them
//! here, with [`decode_text`], so the two paths cannot disagree about a value. The writing
//! side (the sink) renders values with [`encode_text`] for `COPY` and literals.
//!
//! The text format depends on session settings; every connection tandem opens pins
//! `TimeZone=UTC` and `DateStyle=ISO` (and `bytea_output` defaults to `hex`), so a
//! `timestamptz` always reads like `2024-03-31 02:30:00.123456+00` and a date like
//! `0044-03-15 BC`. Offsets other than `+00` are still understood, so a mis-set session is
//! not a silent shift.
//!
//! Values the canonical model cannot hold — `infinity` dates and timestamps, `NaN` and
//! `±Infinity` numerics, `24:00:00`, dates outside chrono's ±262,000-year range, and every
//! type tandem does not map — decode to [`Value::Unsupported`] with the server's text. They
//! fail with a reason only if they have to cross to the other database.
//!
//! Type OIDs are PostgreSQL's fixed built-in ones (`pg_type.dat`). User-defined types
//! (OID ≥ 16384) are unknown to [`column_type`]; an enum needs its labels from the catalog
//! and is built with [`enum_type`].

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use tandem_core::value::{ColumnType, Value};

/// Built-in type OIDs tandem maps (`src/include/catalog/pg_type.dat`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    /// First OID handed to user-defined objects (`FirstNormalObjectId`).
    pub const FIRST_USER: u32 = 16384;
}

/// `VARHDRSZ`: type modifiers of `varchar(n)`, `char(n)` and `numeric(p,s)` are offset by it.
const VARHDRSZ: i32 = 4;
/// Fractional second digits when a temporal type has no explicit precision.
const DEFAULT_FSP: u8 = 6;

/// Why a value's text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Cannot decode {text:?} as {type_name}: expected {expected}")]
pub struct DecodeError {
    pub type_name: String,
    /// The offending text, shortened so one bad value cannot flood a log.
    pub text: String,
    pub expected: &'static str,
}

impl DecodeError {
    fn new(ty: &ColumnType, text: &str, expected: &'static str) -> Self {
        const MAX: usize = 120;
        let text = if text.chars().count() > MAX {
            let mut s: String = text.chars().take(MAX).collect();
            s.push('…');
            s
        } else {
            text.to_owned()
        };
        DecodeError {
            type_name: ty.to_string(),
            text,
            expected,
        }
    }
}

/// The earliest date PostgreSQL stores: 4713-01-01 BC (astronomical year −4712).
pub fn pg_min_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(-4712, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// The latest date tandem can hold: PostgreSQL goes to 5874897 AD, chrono to year 262142,
/// so the range is clamped to chrono's; later dates decode as [`Value::Unsupported`].
pub fn pg_max_date() -> NaiveDate {
    NaiveDate::MAX
}

fn pg_min_timestamp() -> NaiveDateTime {
    pg_min_date().and_time(NaiveTime::MIN)
}

/// PostgreSQL timestamps end in 294276 AD, beyond chrono's range: clamp to chrono's.
fn pg_max_timestamp() -> NaiveDateTime {
    let end = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap_or(NaiveTime::MIN);
    NaiveDate::MAX.and_time(end)
}

/// Fractional second digits from a `time`/`timestamp` type modifier (−1: unspecified).
fn fsp(type_modifier: i32) -> u8 {
    match u8::try_from(type_modifier) {
        Ok(p) if p <= DEFAULT_FSP => p,
        _ => DEFAULT_FSP,
    }
}

/// The canonical type of a column with type `type_oid` and modifier `type_modifier`
/// (`pg_attribute.atttypmod`, as pgoutput's Relation message carries it). `type_name` is
/// only used to name types tandem does not map.
pub fn column_type(type_oid: u32, type_modifier: i32, type_name: &str) -> ColumnType {
    let text = |max_chars| ColumnType::Text {
        max_chars,
        allows_nul: false,
    };
    let length = || {
        u32::try_from(type_modifier - VARHDRSZ)
            .ok()
            .filter(|n| *n > 0)
    };
    match type_oid {
        oid::BOOL => ColumnType::Bool,
        oid::INT2 => ColumnType::Int {
            bytes: 2,
            unsigned: false,
        },
        oid::INT4 => ColumnType::Int {
            bytes: 4,
            unsigned: false,
        },
        oid::INT8 => ColumnType::Int {
            bytes: 8,
            unsigned: false,
        },
        oid::OID => ColumnType::Int {
            bytes: 4,
            unsigned: true,
        },
        oid::FLOAT4 => ColumnType::Float32,
        oid::FLOAT8 => ColumnType::Float64,
        oid::NUMERIC => numeric_type(type_modifier, type_name),
        oid::TEXT | oid::NAME => text(None),
        oid::VARCHAR | oid::BPCHAR => text(length()),
        oid::BYTEA => ColumnType::Bytes { max_len: None },
        oid::DATE => ColumnType::Date {
            min: pg_min_date(),
            max: pg_max_date(),
        },
        oid::TIME => ColumnType::Time {
            fsp: fsp(type_modifier),
        },
        oid::TIMESTAMP => ColumnType::Timestamp {
            fsp: fsp(type_modifier),
            min: pg_min_timestamp(),
            max: pg_max_timestamp(),
        },
        oid::TIMESTAMPTZ => ColumnType::TimestampTz {
            fsp: fsp(type_modifier),
            min: pg_min_timestamp(),
            max: pg_max_timestamp(),
        },
        oid::JSON | oid::JSONB => ColumnType::Json,
        oid::UUID => ColumnType::Uuid,
        _ => ColumnType::Unsupported {
            type_name: type_name.to_owned(),
        },
    }
}

/// PostgreSQL's own spelling of a built-in type (as `format_type` prints it), for
/// [`tandem_core::ColumnSchema::native_type`]; `None` for user-defined types.
pub fn builtin_type_name(type_oid: u32, type_modifier: i32) -> Option<String> {
    let len = u32::try_from(type_modifier - VARHDRSZ).ok();
    let prec = u32::try_from(type_modifier).ok();
    let with = |name: &str, n: Option<u32>| match n {
        Some(n) => format!("{name}({n})"),
        None => name.to_owned(),
    };
    Some(match type_oid {
        oid::BOOL => "boolean".into(),
        oid::BYTEA => "bytea".into(),
        oid::NAME => "name".into(),
        oid::INT8 => "bigint".into(),
        oid::INT2 => "smallint".into(),
        oid::INT4 => "integer".into(),
        oid::TEXT => "text".into(),
        oid::OID => "oid".into(),
        oid::JSON => "json".into(),
        oid::FLOAT4 => "real".into(),
        oid::FLOAT8 => "double precision".into(),
        oid::BPCHAR => with("character", len),
        oid::VARCHAR => with("character varying", len),
        oid::DATE => "date".into(),
        oid::TIME => with("time", prec) + " without time zone",
        oid::TIMESTAMP => with("timestamp", prec) + " without time zone",
        oid::TIMESTAMPTZ => with("timestamp", prec) + " with time zone",
        oid::NUMERIC => match numeric_type(type_modifier, "numeric") {
            ColumnType::Decimal {
                precision: Some(p),
                scale: Some(s),
            } => format!("numeric({p},{s})"),
            _ if type_modifier >= VARHDRSZ => {
                let m = type_modifier - VARHDRSZ;
                format!(
                    "numeric({},{})",
                    (m >> 16) & 0xffff,
                    ((m & 0x7ff) ^ 1024) - 1024
                )
            }
            _ => "numeric".into(),
        },
        oid::UUID => "uuid".into(),
        oid::JSONB => "jsonb".into(),
        18 => "\"char\"".into(),
        142 => "xml".into(),
        600 => "point".into(),
        650 => "cidr".into(),
        790 => "money".into(),
        829 => "macaddr".into(),
        869 => "inet".into(),
        1186 => "interval".into(),
        1266 => with("time", prec) + " with time zone",
        1560 => with("bit", prec),
        1562 => with("bit varying", prec),
        3614 => "tsvector".into(),
        3904 => "int4range".into(),
        3910 => "tstzrange".into(),
        1000 => "boolean[]".into(),
        1005 => "smallint[]".into(),
        1007 => "integer[]".into(),
        1009 => "text[]".into(),
        1015 => "character varying[]".into(),
        1016 => "bigint[]".into(),
        1231 => "numeric[]".into(),
        2951 => "uuid[]".into(),
        3807 => "jsonb[]".into(),
        _ => return None,
    })
}

/// The canonical type of a user-defined enum with `labels` in sort order. Pass an empty
/// list when the labels are not known (the pgoutput stream does not carry them).
pub fn enum_type(labels: Vec<String>) -> ColumnType {
    ColumnType::Enum { labels }
}

/// `numeric(p,s)`: the modifier is `((p << 16) | (s & 0x7ff)) + VARHDRSZ`, the scale an
/// 11-bit signed number since PostgreSQL 15. A negative scale (rounding left of the point)
/// has no canonical equivalent.
fn numeric_type(type_modifier: i32, type_name: &str) -> ColumnType {
    if type_modifier < VARHDRSZ {
        return ColumnType::Decimal {
            precision: None,
            scale: None,
        };
    }
    let m = type_modifier - VARHDRSZ;
    let precision = (m >> 16) & 0xffff;
    let scale = ((m & 0x7ff) ^ 1024) - 1024;
    match (u32::try_from(precision), u32::try_from(scale)) {
        (Ok(p), Ok(s)) => ColumnType::Decimal {
            precision: Some(p),
            scale: Some(s),
        },
        _ => ColumnType::Unsupported {
            type_name: type_name.to_owned(),
        },
    }
}

/// Decode one value in PostgreSQL's text output format as a value of `ty`. NULL never gets
/// here: the protocol marks it separately. The OID is accepted so that a type told apart
/// by OID alone can be decoded differently without changing every caller; none is yet.
pub fn decode_text(ty: &ColumnType, _type_oid: u32, text: &str) -> Result<Value, DecodeError> {
    let unsupported = || Value::Unsupported {
        type_name: ty.to_string(),
        text: text.to_owned(),
    };
    let bad = |expected| DecodeError::new(ty, text, expected);
    Ok(match ty {
        ColumnType::Bool => match text {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            _ => return Err(bad("t or f")),
        },
        ColumnType::Int {
            unsigned: false, ..
        } => Value::Int(text.parse().map_err(|_| bad("an integer"))?),
        ColumnType::Int { unsigned: true, .. } => {
            let u: u64 = text.parse().map_err(|_| bad("an unsigned integer"))?;
            i64::try_from(u).map_or(Value::UInt(u), Value::Int)
        }
        ColumnType::Float32 => {
            let x: f32 = parse_float(text).ok_or_else(|| bad("a float"))?;
            Value::Float(f64::from(x))
        }
        ColumnType::Float64 => Value::Float(parse_float(text).ok_or_else(|| bad("a float"))?),
        ColumnType::Decimal { .. } => match text {
            "NaN" | "Infinity" | "-Infinity" => unsupported(),
            _ => {
                // `BigDecimal` accepts exponents, PostgreSQL never prints them: reject, so a
                // corrupt value cannot make a decimal with a billion-digit scale.
                if !text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
                {
                    return Err(bad("a decimal number"));
                }
                Value::Decimal(BigDecimal::from_str(text).map_err(|_| bad("a decimal number"))?)
            }
        },
        ColumnType::Text { .. } | ColumnType::Enum { .. } => Value::Text(text.to_owned()),
        ColumnType::Bytes { .. } => Value::Bytes(decode_bytea(text).ok_or_else(|| bad("bytea"))?),
        ColumnType::Date { .. } => match text {
            "infinity" | "-infinity" => unsupported(),
            _ => match parse_date(text) {
                Ok(Some(d)) => Value::Date(d),
                Ok(None) => return Err(bad("a date like 2024-03-31")),
                Err(Unrepresentable) => unsupported(),
            },
        },
        ColumnType::Time { .. } => match parse_time(text) {
            Some(t) => Value::Time(t),
            // 24:00:00 is a valid PostgreSQL time chrono cannot hold.
            None if text.starts_with("24:00:00") => unsupported(),
            None => return Err(bad("a time like 12:34:56.789")),
        },
        ColumnType::Timestamp { .. } => match text {
            "infinity" | "-infinity" => unsupported(),
            _ => match parse_timestamp(text, false) {
                Ok(Some((ts, _))) => Value::Timestamp(ts),
                Ok(None) => return Err(bad("a timestamp like 2024-03-31 02:30:00")),
                Err(Unrepresentable) => unsupported(),
            },
        },
        ColumnType::TimestampTz { .. } => match text {
            "infinity" | "-infinity" => unsupported(),
            _ => match parse_timestamp(text, true) {
                Ok(Some((ts, offset))) => match ts.checked_sub_signed(offset) {
                    Some(utc) => {
                        Value::TimestampTz(DateTime::<Utc>::from_naive_utc_and_offset(utc, Utc))
                    }
                    None => unsupported(),
                },
                Ok(None) => return Err(bad("a timestamp like 2024-03-31 02:30:00+00")),
                Err(Unrepresentable) => unsupported(),
            },
        },
        ColumnType::Json => Value::Json(text.to_owned()),
        ColumnType::Uuid => Value::Uuid(uuid::Uuid::parse_str(text).map_err(|_| bad("a uuid"))?),
        ColumnType::Unsupported { type_name } => Value::Unsupported {
            type_name: type_name.clone(),
            text: text.to_owned(),
        },
    })
}

/// A well-formed value outside chrono's range: not an error, but not representable.
struct Unrepresentable;

/// PostgreSQL prints `NaN`, `Infinity`, `-Infinity`; Rust's parser reads all three.
fn parse_float<T: FromStr>(text: &str) -> Option<T> {
    // Rust also accepts "inf" and "+nan": require a digit or PostgreSQL's own spelling.
    let ok = matches!(text, "NaN" | "Infinity" | "-Infinity")
        || text.bytes().any(|b| b.is_ascii_digit())
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if ok {
        text.parse().ok()
    } else {
        None
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `bytea` in `hex` format (`\x0a0b`), or the older `escape` format (`a\012\\`).
fn decode_bytea(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if let Some(hex) = bytes.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return None;
        }
        return hex
            .chunks_exact(2)
            .map(|pair| match pair {
                [h, l] => Some(hex_val(*h)? << 4 | hex_val(*l)?),
                _ => None,
            })
            .collect();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&b, tail)) = rest.split_first() {
        if b != b'\\' {
            out.push(b);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', more @ ..] => {
                out.push(b'\\');
                rest = more;
            }
            [a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', more @ ..] => {
                out.push((a - b'0') << 6 | (b - b'0') << 3 | (c - b'0'));
                rest = more;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Parse a run of ASCII digits as a number; `None` for empty or non-digits.
fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD` (four or more year digits) with an optional ` BC` suffix: `Ok(None)` when
/// malformed, `Err` when well-formed but outside chrono's range.
fn parse_date(text: &str) -> Result<Option<NaiveDate>, Unrepresentable> {
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let mut it = body.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (it.next(), it.next(), it.next()) else {
        return Ok(None);
    };
    let (Some(y), Some(m), Some(d)) = (digits(y), digits(m), digits(d)) else {
        return Ok(None);
    };
    let Ok(y) = i32::try_from(y) else {
        return Err(Unrepresentable);
    };
    // Year N BC is astronomical year 1 − N; there is no year 0 in PostgreSQL's output.
    let year = if bc { 1 - y } else { y };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Ok(None);
    }
    match NaiveDate::from_ymd_opt(year, m, d) {
        Some(date) => Ok(Some(date)),
        None if !(-262_000..=262_000).contains(&year) => Err(Unrepresentable),
        None => Ok(None),
    }
}

/// `HH:MM:SS[.ffffff]`.
fn parse_time(text: &str) -> Option<NaiveTime> {
    let (hms, frac) = match text.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let mut it = hms.splitn(3, ':');
    let (h, m, s) = (
        digits(it.next()?)?,
        digits(it.next()?)?,
        digits(it.next()?)?,
    );
    let micros = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 6 => {
            let n = digits(f)?;
            let pad = 10u32.checked_pow(u32::try_from(6 - f.len()).ok()?)?;
            n.checked_mul(pad)?
        }
        Some(_) => return None,
    };
    if s >= 60 {
        return None;
    }
    NaiveTime::from_hms_micro_opt(h, m, s, micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]`. With `zoned`, the offset is
/// required and returned; the result is then local time at that offset.
fn parse_timestamp(
    text: &str,
    zoned: bool,
) -> Result<Option<(NaiveDateTime, Duration)>, Unrepresentable> {
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let Some((date, rest)) = body.split_once(' ') else {
        return Ok(None);
    };
    let (time, offset) = if zoned {
        let Some(i) = rest.rfind(['+', '-']) else {
            return Ok(None);
        };
        let (t, o) = rest.split_at(i);
        let Some(off) = parse_offset(o) else {
            return Ok(None);
        };
        (t, off)
    } else {
        (rest, Duration::zero())
    };
    let date_text = if bc {
        format!("{date} BC")
    } else {
        date.to_owned()
    };
    let Some(d) = parse_date(&date_text)? else {
        return Ok(None);
    };
    let Some(t) = parse_time(time) else {
        return Ok(None);
    };
    Ok(Some((d.and_time(t), offset)))
}

/// `+00`, `-05:30`, `+05:53:28` as a signed duration east of UTC.
fn parse_offset(text: &str) -> Option<Duration> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, text.get(1..)?),
        b'-' => (-1, text.get(1..)?),
        _ => return None,
    };
    let mut secs = 0i64;
    for (i, part) in rest.split(':').enumerate() {
        if i > 2 || part.len() != 2 {
            return None;
        }
        let n = i64::from(digits(part)?);
        secs += n * [3600, 60, 1].get(i)?;
    }
    Some(Duration::seconds(sign * secs))
}

/// Render a value in PostgreSQL's text input format, as `COPY … FROM STDIN` (text format)
/// and literals take it; `None` for NULL. Escaping for the COPY framing (backslash, tab,
/// newline) or for a quoted literal is the caller's, because it differs between the two.
pub fn encode_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => if *b { "t" } else { "f" }.to_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(x) if x.is_nan() => "NaN".to_owned(),
        Value::Float(x) if x.is_infinite() => {
            if *x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
        }
        // Rust prints the shortest text that parses back to the same float, sign of zero
        // included, which is what PostgreSQL's `extra_float_digits = 1` also guarantees.
        Value::Float(x) => format!("{x:?}"),
        Value::Decimal(d) => d.to_plain_string(),
        Value::Text(s) | Value::Json(s) => s.clone(),
        Value::Bytes(b) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
        Value::Date(d) => format_date(*d),
        Value::Time(t) => format_time(*t),
        Value::Timestamp(ts) => format_timestamp(*ts, ""),
        Value::TimestampTz(ts) => format_timestamp(ts.naive_utc(), "+00"),
        Value::Uuid(u) => u.hyphenated().to_string(),
        Value::Unsupported { text, .. } => text.clone(),
    })
}

/// Year, month and day with PostgreSQL's ` BC` convention; returns (text, is_bc).
fn date_parts(d: NaiveDate) -> (String, bool) {
    use chrono::Datelike;
    let y = d.year();
    let (year, bc) = if y <= 0 {
        (1 - i64::from(y), true)
    } else {
        (i64::from(y), false)
    };
    (format!("{year:04}-{:02}-{:02}", d.month(), d.day()), bc)
}

fn format_date(d: NaiveDate) -> String {
    match date_parts(d) {
        (s, true) => format!("{s} BC"),
        (s, false) => s,
    }
}

/// `HH:MM:SS.ffffff`, as chrono's `%H:%M:%S%.6f` prints it (a leap second as `:60`), but
/// without parsing that format string again for every value: a profile of the sink showed
/// chrono's `StrftimeItems` parser on every timestamp it wrote.
fn format_time(t: NaiveTime) -> String {
    use chrono::Timelike;
    let nano = t.nanosecond();
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        t.hour(),
        t.minute(),
        t.second() + nano / 1_000_000_000,
        (nano % 1_000_000_000) / 1000
    )
}

fn format_timestamp(ts: NaiveDateTime, zone: &str) -> String {
    let (date, bc) = date_parts(ts.date());
    let time = format_time(ts.time());
    format!("{date} {time}{zone}{}", if bc { " BC" } else { "" })
}

#[cfg(test)]
mod tests;
