//! Writes with the conflict check inside them ([`Sink::write_if_unchanged`]).
//!
//! Under a savepoint, the batch's deletes, then its updates, then its inserts, each kind a
//! multi-row statement per set of columns: deletes and updates join the target to the
//! batch's rows on the key *and the expected values*, inserts leave an existing key alone
//! (`k = k`). Every statement must affect exactly as many rows as it was given; if one
//! does not, the savepoint is rolled back and every row is reported as not applied, so
//! the applier reads and resolves the batch as before. A statement the server refuses for
//! a reason other than a lost connection, a deadlock or a lock timeout is rolled back the
//! same way: the ordinary path then writes the batch and reports the error as it always
//! did (with the row that caused it).
//!
//! Comparisons are never looser than the resolver's `Value::same_as`, so a row the
//! statement matches is a row the resolver would not have called a conflict: text, binary
//! and JSON columns byte for byte (`BINARY`, no collation, trailing spaces count),
//! decimals as decimals (a string parameter would otherwise be compared as a double),
//! everything else with the column's own `<=>` (`NULL` matches `NULL`). A value that
//! cannot be compared so (a type tandem does not map, a decimal beyond `DECIMAL(65,30)`)
//! sends the batch down the reading path.
//!
//! Not for tables with a trigger or a foreign key to themselves (see
//! `MySqlSink::groups_kinds`: the order of writes inside the batch could matter), nor for
//! tables whose key collation refused the joined update: those are read first, as before.

use mysql_async::prelude::Queryable;
use tandem_core::error::StageError;
use tandem_core::sink::{CheckedGroups, CheckedRow, CheckedShape, CheckedWrite, TargetTable};
use tandem_core::{ColumnType, Value};

use super::batch::{
    chunks, derived_rows, ident, insert_sql, pad, padded, size_of_values, table_ident, value_size,
};
use super::MySqlSink;
use crate::connect::{classify, is_transient_code};
use crate::types::to_mysql_value;

const SAVEPOINT: &str = "tandem_checked";

/// The bytes of a row's values, for the packet budget.
fn row_size(r: &CheckedRow<'_>) -> usize {
    size_of_values(r.key)
        + r.set
            .iter()
            .chain(&r.expect)
            .map(|v| value_size(v))
            .sum::<usize>()
}

/// Whether a column of type `ty` can be compared exactly: whether [`compare`] gives `Some`,
/// without building the text.
fn comparable_type(ty: &ColumnType) -> bool {
    !matches!(ty, ColumnType::Unsupported { .. })
}

/// `t.<column>` compared with `param` exactly, or `None` for a type that cannot be.
fn compare(column: &str, ty: &ColumnType, param: &str) -> Option<String> {
    let c = format!("t.{}", ident(column));
    Some(match ty {
        ColumnType::Text { .. }
        | ColumnType::Bytes { .. }
        | ColumnType::Json
        | ColumnType::Enum { .. } => format!("BINARY {c} <=> BINARY {param}"),
        ColumnType::Decimal { .. } => format!("{c} <=> CAST({param} AS DECIMAL(65,30))"),
        ColumnType::Bool
        | ColumnType::Int { .. }
        | ColumnType::Float32
        | ColumnType::Float64
        | ColumnType::Date { .. }
        | ColumnType::Time { .. }
        | ColumnType::Timestamp { .. }
        | ColumnType::TimestampTz { .. }
        | ColumnType::Uuid => format!("{c} <=> {param}"),
        ColumnType::Unsupported { .. } => return None,
    })
}

/// Whether `v` survives the comparison of [`compare`] unchanged.
fn comparable(v: &Value) -> bool {
    match v {
        Value::Unsupported { .. } => false,
        Value::Decimal(d) => {
            let scale = d.fractional_digit_count();
            // Digits of the unscaled integer, counted without printing it.
            let total = d.digits() as i64;
            scale <= 30 && total - scale <= 35
        }
        _ => true,
    }
}

impl MySqlSink {
    /// See the module documentation. Returns the writes not applied: none or all.
    pub(super) async fn write_checked(
        &mut self,
        t: &TargetTable,
        writes: &[CheckedWrite],
    ) -> Result<Vec<usize>, StageError> {
        let all: Vec<usize> = (0..writes.len()).collect();
        if writes.is_empty() {
            return Ok(all);
        }
        let checkable = writes
            .iter()
            .flat_map(CheckedWrite::expected)
            .all(|(c, v)| {
                comparable(v) && t.columns.get(*c).is_some_and(|(_, ty)| comparable_type(ty))
            });
        if !checkable
            || self.per_row_updates.contains(&t.table.to_string())
            || !self.groups_kinds(t).await?
        {
            return Ok(all);
        }
        self.conn
            .query_drop(format!("SAVEPOINT {SAVEPOINT}"))
            .await
            .map_err(|e| {
                classify(
                    format!("Setting a savepoint before writing to {}", t.table),
                    e,
                )
            })?;
        let held = match self.checked_statements(t, writes).await {
            Ok(held) => held,
            Err(mysql_async::Error::Server(s)) if !is_transient_code(s.code) => false,
            Err(e) => return Err(classify(format!("Writing to {}", t.table), e)),
        };
        if held {
            return Ok(Vec::new());
        }
        self.conn
            .query_drop(format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
            .await
            .map_err(|e| classify(format!("Rolling back a checked write to {}", t.table), e))?;
        Ok(all)
    }

    /// Run the statements; `false` as soon as one affects fewer rows than it was given.
    async fn checked_statements(
        &mut self,
        t: &TargetTable,
        writes: &[CheckedWrite],
    ) -> Result<bool, mysql_async::Error> {
        let groups = CheckedGroups::new(writes);
        if !self
            .count_held(t, &(Vec::new(), Vec::new()), &groups.absent, false)
            .await?
        {
            return Ok(false);
        }
        for (shape, rows) in &groups.present {
            if !self.count_held(t, shape, rows, true).await? {
                return Ok(false);
            }
        }
        for (shape, rows) in groups.deletes.iter().chain(&groups.updates) {
            if !self.joined(t, shape, rows).await? {
                return Ok(false);
            }
        }
        let width = t.columns.len();
        let inserts = &groups.inserts;
        for (_, chunk) in chunks(inserts, width, self.packet_budget, |(_, r)| {
            size_of_values(r)
        }) {
            let n = padded(chunk.len());
            let params = pad(chunk, n)
                .flat_map(|(_, r)| r.iter().map(to_mysql_value))
                .collect();
            self.exec(&insert_sql(t, n), params).await?;
            if self.conn.affected_rows() != chunk.len() as u64 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether every row (`present`) or none (`!present`) of `rows` is in the table as
    /// it expects, read with a lock as the ordinary path reads (the latest committed row).
    async fn count_held(
        &mut self,
        t: &TargetTable,
        shape: &CheckedShape,
        rows: &[CheckedRow<'_>],
        present: bool,
    ) -> Result<bool, mysql_async::Error> {
        let Some((aliases, on)) = join_on(t, shape) else {
            return Ok(false);
        };
        let key: Vec<String> = t.key_names().map(|k| format!("t.{}", ident(k))).collect();
        let width = aliases.len();
        for (_, chunk) in chunks(rows, width, self.packet_budget, row_size) {
            let n = padded(chunk.len());
            let params = padded_params(chunk, n, width);
            // Padding repeats the last row: count distinct keys.
            let sql = format!(
                "SELECT COUNT(DISTINCT {}) FROM {} FOR UPDATE",
                key.join(", "),
                joined_rows(t, &aliases, &on, n)
            );
            let params = mysql_async::Params::Positional(params);
            let found: Option<u64> = self.conn.exec_first(sql, params).await?;
            let want = if present { chunk.len() as u64 } else { 0 };
            if found.unwrap_or_default() != want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One shape's deletes (nothing to set) or updates, joined to their rows on key and
    /// expected values.
    async fn joined(
        &mut self,
        t: &TargetTable,
        shape: &CheckedShape,
        rows: &[CheckedRow<'_>],
    ) -> Result<bool, mysql_async::Error> {
        let (set, _) = shape;
        let name = |i: usize| {
            t.columns
                .get(i)
                .map(|(n, _)| n.as_str())
                .unwrap_or_default()
        };
        let Some((aliases, on)) = join_on(t, shape) else {
            return Ok(false);
        };
        let assign: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(i, &c)| format!("t.{} = v.c{i}", ident(name(c))))
            .collect();
        let width = aliases.len();
        for (_, chunk) in chunks(rows, width, self.packet_budget, row_size) {
            let n = padded(chunk.len());
            let params = padded_params(chunk, n, width);
            let joined = joined_rows(t, &aliases, &on, n);
            let sql = if set.is_empty() {
                format!("DELETE t FROM {joined}")
            } else {
                format!("UPDATE {joined} SET {}", assign.join(", "))
            };
            self.exec(&sql, params).await?;
            if self.conn.affected_rows() != chunk.len() as u64 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The derived table's column names (`k…` key, `c…` values to set, `e…` expected) and the
/// join condition of a shape: key equal and every expected value held exactly.
fn join_on(t: &TargetTable, (set, expect): &CheckedShape) -> Option<(Vec<String>, Vec<String>)> {
    let key_cols: Vec<&str> = t.key_names().collect();
    let mut aliases: Vec<String> = (0..key_cols.len()).map(|i| format!("k{i}")).collect();
    aliases.extend((0..set.len()).map(|i| format!("c{i}")));
    aliases.extend((0..expect.len()).map(|i| format!("e{i}")));
    let mut on: Vec<String> = key_cols
        .iter()
        .enumerate()
        .map(|(i, k)| format!("t.{} = v.k{i}", ident(k)))
        .collect();
    for (i, &c) in expect.iter().enumerate() {
        let (n, ty) = t.columns.get(c)?;
        on.push(compare(n, ty, &format!("v.e{i}"))?);
    }
    Some((aliases, on))
}

/// `t` (as `t`) joined to `n` rows of parameters (as `v`) named `aliases`, on `on`.
fn joined_rows(t: &TargetTable, aliases: &[String], on: &[String], n: usize) -> String {
    format!(
        "{} t JOIN ({}) v ON {}",
        table_ident(t),
        derived_rows(aliases, n),
        on.join(" AND ")
    )
}

/// The parameters of `chunk` padded to `n` rows: per row its key, values to set and
/// expected values, as the derived table of [`join_on`] names them.
fn padded_params(chunk: &[CheckedRow<'_>], n: usize, width: usize) -> Vec<mysql_async::Value> {
    let mut params = Vec::with_capacity(n * width);
    for r in pad(chunk, n) {
        params.extend(r.key.iter().map(to_mysql_value));
        params.extend(r.set.iter().chain(&r.expect).map(|v| to_mysql_value(v)));
    }
    params
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use bigdecimal::BigDecimal;

    use super::*;

    /// Decimals are compared as `DECIMAL(65,30)`: at most 30 digits after the point and 35
    /// before it survive the cast unchanged.
    #[test]
    fn decimals_comparable_within_decimal_65_30() {
        let dec = |s: &str| Value::Decimal(BigDecimal::from_str(s).expect("decimal"));
        let ones = |n: usize| "1".repeat(n);
        for (text, ok) in [
            ("0".to_owned(), true),
            ("-0.00".to_owned(), true),
            (format!("{}.{}", ones(35), ones(30)), true),
            (format!("-{}", ones(35)), true),
            (ones(36), false),
            (format!("0.{}", ones(30)), true),
            (format!("0.{}", ones(31)), false),
            (format!("{}.5", ones(35)), true),
        ] {
            assert_eq!(comparable(&dec(&text)), ok, "{text}");
        }
        assert!(!comparable(&Value::Unsupported {
            type_name: "geometry".into(),
            text: String::new(),
        }));
    }

    /// `comparable_type` answers what `compare` would, without the text.
    #[test]
    fn comparable_type_agrees_with_compare() {
        for ty in [
            ColumnType::Bool,
            ColumnType::Int {
                bytes: 4,
                unsigned: false,
            },
            ColumnType::Float64,
            ColumnType::Decimal {
                precision: Some(10),
                scale: Some(2),
            },
            ColumnType::Text {
                max_chars: None,
                allows_nul: false,
            },
            ColumnType::Bytes { max_len: None },
            ColumnType::Time { fsp: 6 },
            ColumnType::Json,
            ColumnType::Uuid,
            ColumnType::Enum { labels: vec![] },
            ColumnType::Unsupported {
                type_name: "geometry".into(),
            },
        ] {
            assert_eq!(
                comparable_type(&ty),
                compare("c", &ty, "?").is_some(),
                "{ty:?}"
            );
        }
    }
}
