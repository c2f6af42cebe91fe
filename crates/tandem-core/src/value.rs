//! Typed values and canonical column types.
//!
//! Both databases' type systems map onto one canonical model so that a value read from one
//! side can be checked against the column it is written to on the other ([`crate::convert`]).
//! Exact types stay exact: decimals are arbitrary-precision (never a float), timestamps keep
//! microseconds, JSON keeps its text. What a decoder cannot represent faithfully (an
//! `infinity` timestamp, a `NaN` numeric, a MySQL zero date, a type tandem does not know)
//! becomes [`Value::Unsupported`] carrying the server's text, so that the row fails with a
//! definite reason when — and only when — it has to cross.

use std::fmt;

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

/// One column value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    Null,
    Bool(bool),
    /// Signed integers of any width.
    Int(i64),
    /// Unsigned integers above `i64::MAX` (MySQL `BIGINT UNSIGNED`); smaller unsigned values
    /// may arrive as either variant, comparisons treat them alike.
    UInt(u64),
    Float(f64),
    /// Exact decimal (`numeric`, `DECIMAL`).
    Decimal(BigDecimal),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    /// Time of day with microseconds.
    Time(NaiveTime),
    /// Date and time without zone (`timestamp`, `DATETIME`).
    Timestamp(NaiveDateTime),
    /// An instant (`timestamptz`, MySQL `TIMESTAMP`).
    TimestampTz(DateTime<Utc>),
    /// JSON document as text.
    Json(String),
    Uuid(uuid::Uuid),
    /// A value the canonical model cannot hold, with the server's type name and text.
    Unsupported {
        type_name: String,
        text: String,
    },
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Equality as a DBA means it when comparing two sides: numbers by value across integer,
    /// unsigned and decimal variants, JSON by document rather than by text, a naive timestamp
    /// equal to the instant it names in UTC.
    pub fn same_as(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Int(a), UInt(b)) | (UInt(b), Int(a)) => u64::try_from(*a).is_ok_and(|a| a == *b),
            (Int(a), Decimal(d)) | (Decimal(d), Int(a)) => &BigDecimal::from(*a) == d,
            (UInt(a), Decimal(d)) | (Decimal(d), UInt(a)) => &BigDecimal::from(*a) == d,
            (Bool(a), Int(b)) | (Int(b), Bool(a)) => i64::from(*a) == *b,
            (Float(a), Float(b)) => a == b || (a.is_nan() && b.is_nan()),
            (Json(a), Json(b)) => match (
                serde_json::from_str::<serde_json::Value>(a),
                serde_json::from_str::<serde_json::Value>(b),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => a == b,
            },
            (Timestamp(a), TimestampTz(b)) | (TimestampTz(b), Timestamp(a)) => a == &b.naive_utc(),
            (Text(a), Uuid(u)) | (Uuid(u), Text(a)) => {
                uuid::Uuid::parse_str(a).is_ok_and(|p| &p == u)
            }
            (a, b) => a == b,
        }
    }

    /// Short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::UInt(_) => "integer",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "binary",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Json(_) => "json",
            Value::Uuid(_) => "uuid",
            Value::Unsupported { .. } => "unsupported",
        }
    }
}

impl fmt::Display for Value {
    /// Human-readable form for messages, dead letters and `tandem verify` output. Long
    /// values are shortened so one bad row cannot flood a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 200;
        let shorten = |s: &str| -> String {
            if s.chars().count() > MAX {
                let head: String = s.chars().take(MAX).collect();
                format!("{head}…")
            } else {
                s.to_owned()
            }
        };
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Text(s) | Value::Json(s) => write!(f, "{:?}", shorten(s)),
            Value::Bytes(b) => {
                f.write_str("0x")?;
                for byte in b.iter().take(MAX / 2) {
                    write!(f, "{byte:02x}")?;
                }
                if b.len() > MAX / 2 {
                    f.write_str("…")?;
                }
                Ok(())
            }
            Value::Date(d) => write!(f, "{d}"),
            Value::Time(t) => write!(f, "{}", t.format("%H:%M:%S%.6f")),
            Value::Timestamp(t) => write!(f, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f")),
            Value::TimestampTz(t) => write!(f, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f+00")),
            Value::Uuid(u) => write!(f, "{u}"),
            Value::Unsupported { type_name, text } => write!(f, "{}::{type_name}", shorten(text)),
        }
    }
}

/// A column's type in the canonical model, with the limits a value must fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ColumnType {
    Bool,
    /// Integer of `bytes` width (1, 2, 3, 4 or 8).
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float32,
    Float64,
    /// Exact decimal; `None` precision means unconstrained (PostgreSQL `numeric`).
    Decimal {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    /// Character data. `max_chars` from `varchar(n)`/`char(n)`; `allows_nul` is false on
    /// PostgreSQL, whose text types cannot hold U+0000.
    Text {
        max_chars: Option<u32>,
        allows_nul: bool,
    },
    Bytes {
        max_len: Option<u32>,
    },
    Date {
        min: NaiveDate,
        max: NaiveDate,
    },
    /// Time of day; `fsp` fractional second digits kept (0–6).
    Time {
        fsp: u8,
    },
    /// Naive timestamp (`timestamp`, `DATETIME`); range and fractional digits.
    Timestamp {
        fsp: u8,
        min: NaiveDateTime,
        max: NaiveDateTime,
    },
    /// Instant (`timestamptz`, MySQL `TIMESTAMP`).
    TimestampTz {
        fsp: u8,
        min: NaiveDateTime,
        max: NaiveDateTime,
    },
    Json,
    /// UUID stored natively (`uuid`).
    Uuid,
    /// Enumeration: the allowed labels (PostgreSQL enum, MySQL `ENUM`).
    Enum {
        labels: Vec<String>,
    },
    /// A type tandem does not map; values of it can not cross.
    Unsupported {
        type_name: String,
    },
}

impl ColumnType {
    /// Whether values of this type can be compared and summed as numbers (for `delta`,
    /// `max`, `min`).
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            ColumnType::Int { .. }
                | ColumnType::Float32
                | ColumnType::Float64
                | ColumnType::Decimal { .. }
        )
    }

    /// Whether values of this type order in time (for `last_writer_wins`).
    pub fn is_temporal(&self) -> bool {
        matches!(
            self,
            ColumnType::Timestamp { .. } | ColumnType::TimestampTz { .. } | ColumnType::Date { .. }
        )
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Bool => f.write_str("boolean"),
            ColumnType::Int { bytes, unsigned } => {
                write!(
                    f,
                    "{}-byte {}integer",
                    bytes,
                    if *unsigned { "unsigned " } else { "" }
                )
            }
            ColumnType::Float32 => f.write_str("float4"),
            ColumnType::Float64 => f.write_str("float8"),
            ColumnType::Decimal {
                precision: Some(p),
                scale,
            } => {
                write!(f, "decimal({p},{})", scale.unwrap_or(0))
            }
            ColumnType::Decimal { .. } => f.write_str("decimal"),
            ColumnType::Text {
                max_chars: Some(n), ..
            } => write!(f, "varchar({n})"),
            ColumnType::Text { .. } => f.write_str("text"),
            ColumnType::Bytes { max_len: Some(n) } => write!(f, "varbinary({n})"),
            ColumnType::Bytes { .. } => f.write_str("binary"),
            ColumnType::Date { .. } => f.write_str("date"),
            ColumnType::Time { fsp } => write!(f, "time({fsp})"),
            ColumnType::Timestamp { fsp, .. } => write!(f, "timestamp({fsp})"),
            ColumnType::TimestampTz { fsp, .. } => write!(f, "timestamptz({fsp})"),
            ColumnType::Json => f.write_str("json"),
            ColumnType::Uuid => f.write_str("uuid"),
            ColumnType::Enum { labels } => write!(f, "enum({})", labels.join(",")),
            ColumnType::Unsupported { type_name } => write!(f, "{type_name} (unsupported)"),
        }
    }
}

impl Value {
    /// Plain JSON for tables DBAs read (`tandem_conflicts`, `tandem_dead_letters`):
    /// numbers stay numbers where JSON can hold them exactly, decimals become strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::UInt(u) => J::from(*u),
            Value::Float(x) => {
                serde_json::Number::from_f64(*x).map_or_else(|| J::String(x.to_string()), J::Number)
            }
            Value::Decimal(d) => J::String(d.to_string()),
            // JSON text cannot carry U+0000 into PostgreSQL's jsonb: show it escaped.
            Value::Text(s) if s.contains('\0') => J::String(s.replace('\0', "\\u0000")),
            Value::Text(s) => J::String(s.clone()),
            Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
            Value::Bytes(b) => J::String(b.iter().fold(String::from("\\x"), |mut s, byte| {
                s.push_str(&format!("{byte:02x}"));
                s
            })),
            other => J::String(other.to_string()),
        }
    }
}
