//! The ledger: what tandem recorded for a DBA (conflicts, dead letters), read back and acted
//! on by the operator commands `tandem conflicts` and `tandem dead-letters`.
//!
//! The applier writes these rows through [`crate::sink::Sink::record`]; this module is the
//! other end. Each endpoint crate implements [`Ledger`] over its own tables, so the commands
//! treat both databases alike and show one list.
//!
//! Row images are stored as plain JSON ([`Value::to_json`]): numbers where JSON holds them
//! exactly, decimals and temporals as text. [`value_from_json`] is its inverse *given the
//! column's type*: the JSON alone does not say whether `"12.50"` is text or a decimal, the
//! catalog does. A value that cannot be read back for the column is an error naming it,
//! never a guess.
//!
//! Writes go out in one of two [`WriteMode`]s. A DBA's resolution of a conflict is an
//! ordinary application write: tandem replicates it to the other side, where the value is
//! already present, and the resolver treats "incoming equals current" as no conflict. A
//! retried dead letter is the applier's write done late, so it is tagged as tandem's own
//! where the endpoint can (it must not come back: a `delta` column would count it twice).

use async_trait::async_trait;
use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::Serialize;

use crate::error::StageError;
use crate::sink::{RowWrite, TargetTable};
use crate::value::{ColumnType, Value};

/// The default number of rows a list shows.
pub const DEFAULT_LIST_LIMIT: usize = 50;

/// Which rows a list returns.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only rows of this mapping.
    pub mapping: Option<String>,
    /// Every row, not only the open ones (unresolved parked conflicts; not yet retried
    /// dead letters).
    pub all: bool,
    /// At most this many, most recent first.
    pub limit: usize,
}

/// A row of the conflicts table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredConflict {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub mapping: String,
    pub kind: String,
    pub strategy: String,
    pub decision: String,
    pub key: serde_json::Value,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub current: Option<serde_json::Value>,
    pub source_commit_time: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
}

/// A row of the dead-letter table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredDeadLetter {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub mapping: String,
    pub key: serde_json::Value,
    /// `{table, op, before, after}` in the source's column names.
    pub change: serde_json::Value,
    pub reason: String,
    pub source_position: Option<String>,
    pub retried_at: Option<DateTime<Utc>>,
}

/// How a write presents itself to tandem's own reader of that database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// An ordinary application write: replicated to the other side.
    Application,
    /// Tagged as tandem's own (replication origin, marker row): not replicated back.
    Tandem,
}

/// tandem's tables in one endpoint, and row access for the operator commands.
#[async_trait]
pub trait Ledger: Send {
    async fn conflicts(&mut self, filter: &ListFilter) -> Result<Vec<StoredConflict>, StageError>;
    async fn conflict(&mut self, id: i64) -> Result<Option<StoredConflict>, StageError>;
    /// Set `resolved_at` and `resolution` of an unresolved conflict; false if there was none.
    async fn mark_resolved(&mut self, id: i64, resolution: &str) -> Result<bool, StageError>;

    async fn dead_letters(
        &mut self,
        filter: &ListFilter,
    ) -> Result<Vec<StoredDeadLetter>, StageError>;
    async fn dead_letter(&mut self, id: i64) -> Result<Option<StoredDeadLetter>, StageError>;
    /// Set `retried_at` (the retry succeeded).
    async fn mark_retried(&mut self, id: i64) -> Result<(), StageError>;
    /// Replace the reason (the retry failed again).
    async fn set_reason(&mut self, id: i64, reason: &str) -> Result<(), StageError>;

    /// The row of `table` with `key` (in `table.key` order), in `table`'s columns.
    async fn read_row(
        &mut self,
        table: &TargetTable,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, StageError>;
    /// Apply `writes` in one transaction. An update or delete that finds no row is an error
    /// (the row moved on since the change was recorded), so the caller can report it.
    async fn write_rows(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
        mode: WriteMode,
    ) -> Result<(), StageError>;
}

/// Read a stored JSON value back as a value of a column of type `ty`.
pub fn value_from_json(
    column: &str,
    json: &serde_json::Value,
    ty: &ColumnType,
) -> Result<Value, String> {
    use serde_json::Value as J;
    let bad = |want: &str| format!("column {column:?}: {json} is not {want} ({ty})");
    if json.is_null() {
        return Ok(Value::Null);
    }
    // Scalars as their text: numbers print exactly as stored, strings are themselves.
    let text = match json {
        J::String(s) => Some(s.clone()),
        J::Number(n) => Some(n.to_string()),
        J::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let text_ref = text.as_deref();
    Ok(match ty {
        ColumnType::Json => Value::Json(json.to_string()),
        ColumnType::Bool => match (json, text_ref) {
            (J::Bool(b), _) => Value::Bool(*b),
            (_, Some("1" | "t" | "true")) => Value::Bool(true),
            (_, Some("0" | "f" | "false")) => Value::Bool(false),
            _ => return Err(bad("a boolean")),
        },
        ColumnType::Int { .. } => match json {
            J::Number(n) if n.is_i64() => Value::Int(n.as_i64().ok_or_else(|| bad("an integer"))?),
            J::Number(n) if n.is_u64() => Value::UInt(n.as_u64().ok_or_else(|| bad("an integer"))?),
            J::String(s) => match s.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::UInt(s.parse().map_err(|_| bad("an integer"))?),
            },
            J::Bool(b) => Value::Int(i64::from(*b)),
            _ => return Err(bad("an integer")),
        },
        ColumnType::Float32 | ColumnType::Float64 => match (json, text_ref) {
            (J::Number(n), _) => Value::Float(n.as_f64().ok_or_else(|| bad("a number"))?),
            (_, Some("NaN")) => Value::Float(f64::NAN),
            (_, Some("inf" | "Infinity")) => Value::Float(f64::INFINITY),
            (_, Some("-inf" | "-Infinity")) => Value::Float(f64::NEG_INFINITY),
            (_, Some(s)) => Value::Float(s.parse().map_err(|_| bad("a number"))?),
            _ => return Err(bad("a number")),
        },
        ColumnType::Decimal { .. } => match text_ref {
            Some(s) => Value::Decimal(s.parse::<BigDecimal>().map_err(|_| bad("a decimal"))?),
            None => return Err(bad("a decimal")),
        },
        ColumnType::Text { .. } | ColumnType::Enum { .. } => match json {
            J::String(s) => Value::Text(s.clone()),
            other => Value::Text(other.to_string()),
        },
        ColumnType::Bytes { .. } => match json {
            J::String(s) => Value::Bytes(unhex(s).ok_or_else(|| bad("\\x-prefixed hex"))?),
            _ => return Err(bad("\\x-prefixed hex")),
        },
        ColumnType::Date { .. } => match json {
            J::String(s) => {
                Value::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad("a date"))?)
            }
            _ => return Err(bad("a date")),
        },
        ColumnType::Time { .. } => match json {
            J::String(s) => {
                Value::Time(NaiveTime::parse_from_str(s, "%H:%M:%S%.f").map_err(|_| bad("a time"))?)
            }
            _ => return Err(bad("a time")),
        },
        ColumnType::Timestamp { .. } => match json {
            J::String(s) => Value::Timestamp(naive_timestamp(s).ok_or_else(|| bad("a timestamp"))?),
            _ => return Err(bad("a timestamp")),
        },
        ColumnType::TimestampTz { .. } => match json {
            J::String(s) => {
                // Stored in UTC with a `+00` suffix (see `Value`'s Display).
                let naive = s.strip_suffix("+00").unwrap_or(s);
                Value::TimestampTz(
                    naive_timestamp(naive)
                        .ok_or_else(|| bad("a timestamp"))?
                        .and_utc(),
                )
            }
            _ => return Err(bad("a timestamp")),
        },
        ColumnType::Uuid => match json {
            J::String(s) => Value::Uuid(uuid::Uuid::parse_str(s).map_err(|_| bad("a UUID"))?),
            _ => return Err(bad("a UUID")),
        },
        ColumnType::Unsupported { type_name } => {
            return Err(format!(
                "column {column:?}: type {type_name} is not supported by tandem; write it by hand"
            ))
        }
    })
}

fn naive_timestamp(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn ts(fsp: u8) -> (NaiveDateTime, NaiveDateTime, u8) {
        let min = NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        let max = NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|d| d.and_hms_opt(23, 59, 59))
            .unwrap_or_default();
        (min, max, fsp)
    }

    /// Every value survives `to_json` and back through its column type.
    #[test]
    fn stored_json_reads_back_as_the_same_value() {
        let (min, max, fsp) = ts(6);
        let at = NaiveDate::from_ymd_opt(2026, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 123_456))
            .unwrap_or_default();
        let cases = vec![
            (
                Value::Int(-7),
                ColumnType::Int {
                    bytes: 4,
                    unsigned: false,
                },
            ),
            (
                Value::UInt(u64::MAX),
                ColumnType::Int {
                    bytes: 8,
                    unsigned: true,
                },
            ),
            (
                Value::Decimal("12.50".parse().unwrap_or_default()),
                ColumnType::Decimal {
                    precision: Some(10),
                    scale: Some(2),
                },
            ),
            (
                Value::Text("Mug ☕".into()),
                ColumnType::Text {
                    max_chars: None,
                    allows_nul: false,
                },
            ),
            (
                Value::Bytes(vec![0, 255, 16]),
                ColumnType::Bytes { max_len: None },
            ),
            (Value::Bool(true), ColumnType::Bool),
            (Value::Float(1.5), ColumnType::Float64),
            (
                Value::Timestamp(at),
                ColumnType::Timestamp { fsp, min, max },
            ),
            (
                Value::TimestampTz(at.and_utc()),
                ColumnType::TimestampTz { fsp, min, max },
            ),
            (Value::Json(r#"{"a":[1,2]}"#.into()), ColumnType::Json),
            (Value::Null, ColumnType::Bool),
        ];
        for (v, ty) in cases {
            let back = value_from_json("c", &v.to_json(), &ty);
            assert!(
                back.as_ref().is_ok_and(|b| b.same_as(&v)),
                "{v:?} as {ty}: {back:?}"
            );
        }
    }

    #[test]
    fn a_value_that_does_not_fit_the_type_is_named() {
        let e = value_from_json(
            "qty",
            &serde_json::json!("lots"),
            &ColumnType::Int {
                bytes: 4,
                unsigned: false,
            },
        );
        assert!(e.as_ref().is_err_and(|e| e.contains("\"qty\"")), "{e:?}");
    }
}
