//! Writes with the conflict check inside them ([`Sink::write_if_unchanged`]).
//!
//! The batch's deletes, then its updates, then its inserts, each kind one statement per set
//! of columns, with the rows as `unnest` arrays numbered by `WITH ORDINALITY`. Deletes and
//! updates match the target on the key *and the expected values*, inserts skip an existing
//! key (`ON CONFLICT (key) DO NOTHING`); each statement answers with the numbers of the
//! rows it did not apply (usually none), which are left as they were and reported back:
//! the applier reads and resolves just those. No savepoint is needed (a subtransaction per
//! batch would overflow a backend's subtransaction cache in a large target transaction).
//!
//! Comparisons are never looser than the resolver's `Value::same_as`, so a row the
//! statement matches is a row the resolver would not have called a conflict: the column's
//! own equality (`IS NOT DISTINCT FROM`, `NULL` matches `NULL`) for integers, numeric
//! (by value, as `same_as`), booleans, text and varchar, bytea, dates and times, uuid and
//! enums; `real` through `float8` so no rounding to single precision can make two values
//! equal; `json`/`jsonb` by their text (`json` has no equality, `jsonb`'s equates numbers
//! `same_as` tells apart). A batch expecting a value of any other column type (`char(n)`,
//! whose equality ignores trailing spaces; arrays; ranges; …) is not checked this way.

use tandem_core::error::StageError;
use tandem_core::sink::{CheckedGroups, CheckedRow, CheckedWrite, TargetTable};
use tandem_core::{ColumnType, Value};

use super::statements::{
    assignments, column_list, columnar, encode_all, key_match, on_conflict_do_nothing,
};
use super::{classify, ColumnMeta, PgSink};
use crate::ddl::{qualified, quote_ident};
use crate::types::oid;

/// `d.<column>` compared with `param` (text) exactly, or `None` where that is not known.
fn compare(name: &str, ty: &ColumnType, m: &ColumnMeta, param: &str) -> Option<String> {
    let c = format!("d.{}", quote_ident(name));
    Some(match m.type_oid {
        oid::INT2
        | oid::INT4
        | oid::INT8
        | oid::NUMERIC
        | oid::FLOAT8
        | oid::BOOL
        | oid::TEXT
        | oid::VARCHAR
        | oid::BYTEA
        | oid::DATE
        | oid::TIME
        | oid::TIMESTAMP
        | oid::TIMESTAMPTZ
        | oid::UUID => format!("{c} IS NOT DISTINCT FROM {param}::{}", m.cast),
        oid::FLOAT4 => format!("{c}::float8 IS NOT DISTINCT FROM {param}::float8"),
        oid::JSON | oid::JSONB => format!("{c}::text IS NOT DISTINCT FROM {param}"),
        _ if matches!(ty, ColumnType::Enum { .. }) => {
            format!("{c} IS NOT DISTINCT FROM {param}::{}", m.cast)
        }
        _ => return None,
    })
}

/// `unnest` of `width` text arrays as `v(p0, …, ord)`.
fn numbered(width: usize) -> String {
    let arrays: Vec<String> = (1..=width).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (0..width).map(|i| format!("p{i}")).collect();
    format!(
        "unnest({}) WITH ORDINALITY AS v({}, ord)",
        arrays.join(", "),
        names.join(", ")
    )
}

impl PgSink {
    /// See the module documentation. Returns the writes not applied.
    pub(super) async fn write_checked(
        &mut self,
        target: &TargetTable,
        writes: &[CheckedWrite],
    ) -> Result<Vec<usize>, StageError> {
        let all: Vec<usize> = (0..writes.len()).collect();
        let cols = match self.columns(target).await {
            Ok(c) => c,
            Err(e) => {
                self.forget(&target.table);
                return Err(e);
            }
        };
        let checkable = writes
            .iter()
            .flat_map(CheckedWrite::expected)
            .all(|(c, v)| {
                !matches!(v, Value::Unsupported { .. })
                    && matches!(
                        (target.columns.get(*c), cols.get(*c)),
                        (Some((n, ty)), Some((_, m))) if compare(n, ty, m, "$1").is_some()
                    )
            });
        if !checkable {
            return Ok(all);
        }
        let groups = CheckedGroups::new(writes);
        // Per row: write index, then key, values to set and expected values as text.
        let encode = |rows: &[CheckedRow<'_>]| -> Vec<(usize, Vec<Option<String>>)> {
            rows.iter()
                .map(|r| {
                    let mut cells = encode_all(r.key);
                    cells.extend(encode_all(r.set.iter().chain(&r.expect).copied()));
                    (r.write, cells)
                })
                .collect()
        };
        let t = &target.table;
        let table = qualified(&t.schema, &t.name);
        let key = &target.key;
        let mut unapplied = Vec::new();
        // Checks write nothing: the rows not as expected are the answer.
        if !groups.absent.is_empty() {
            let sql = format!(
                "WITH v AS (SELECT * FROM {}) \
                 SELECT ord FROM v WHERE EXISTS (SELECT 1 FROM {table} AS d WHERE {})",
                numbered(key.len()),
                key_match(&cols, key)
            );
            self.unapplied(
                target,
                sql,
                &encode(&groups.absent),
                key.len(),
                &mut unapplied,
            )
            .await?;
        }
        for ((_, expect), rows) in &groups.present {
            let width = key.len() + expect.len();
            let Some(cond) = held(target, &cols, key.len(), expect) else {
                return Ok(all);
            };
            let sql = format!(
                "WITH v AS (SELECT * FROM {}) \
                 SELECT ord FROM v WHERE NOT EXISTS (SELECT 1 FROM {table} AS d WHERE {})",
                numbered(width),
                cond.join(" AND ")
            );
            self.unapplied(target, sql, &encode(rows), width, &mut unapplied)
                .await?;
        }
        for ((set, expect), rows) in groups.deletes.iter().chain(&groups.updates) {
            let width = key.len() + set.len() + expect.len();
            let Some(cond) = held(target, &cols, key.len() + set.len(), expect) else {
                return Ok(all);
            };
            let sql = if set.is_empty() {
                format!(
                    "WITH v AS (SELECT * FROM {}), \
                     done AS (DELETE FROM {table} AS d USING v WHERE {} RETURNING v.ord) \
                     SELECT ord FROM v WHERE ord NOT IN (SELECT ord FROM done)",
                    numbered(width),
                    cond.join(" AND ")
                )
            } else {
                let assign = assignments(&cols, set, key.len());
                format!(
                    "WITH v AS (SELECT * FROM {}), \
                     done AS (UPDATE {table} AS d SET {} FROM v WHERE {} RETURNING v.ord) \
                     SELECT ord FROM v WHERE ord NOT IN (SELECT ord FROM done)",
                    numbered(width),
                    assign.join(", "),
                    cond.join(" AND ")
                )
            };
            self.unapplied(target, sql, &encode(rows), width, &mut unapplied)
                .await?;
        }
        if !groups.inserts.is_empty() {
            let inserts: Vec<(usize, Vec<Option<String>>)> = groups
                .inserts
                .iter()
                .map(|(i, values)| (*i, encode_all(*values)))
                .collect();
            let select: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, (_, m))| format!("v.p{i}::{}", m.cast))
                .collect();
            let returned: Vec<String> = key
                .iter()
                .filter_map(|&k| cols.get(k))
                .map(|(n, _)| format!("d.{}", quote_ident(n)))
                .collect();
            let sql = format!(
                "WITH v AS (SELECT * FROM {}), \
                 done AS (INSERT INTO {table} AS d ({}) SELECT {} FROM v {} RETURNING {}) \
                 SELECT ord FROM v WHERE ({}) NOT IN (SELECT * FROM done)",
                numbered(cols.len()),
                column_list(&cols),
                select.join(", "),
                on_conflict_do_nothing(target, &cols),
                returned.join(", "),
                key_at(&cols, key)
            );
            self.unapplied(target, sql, &inserts, cols.len(), &mut unapplied)
                .await?;
        }
        unapplied.sort_unstable();
        Ok(unapplied)
    }

    /// Run one checked statement over `rows`; add the write indexes of the rows it did
    /// not apply to `out`.
    async fn unapplied(
        &mut self,
        target: &TargetTable,
        sql: String,
        rows: &[(usize, Vec<Option<String>>)],
        width: usize,
        out: &mut Vec<usize>,
    ) -> Result<(), StageError> {
        let t = &target.table;
        let cells: Vec<Vec<Option<String>>> = rows.iter().map(|(_, r)| r.clone()).collect();
        let arrays = columnar(&cells, width);
        let result = async {
            let stmt = self.prepare(t, sql).await?;
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = arrays
                .iter()
                .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            self.client
                .query(&stmt, &params)
                .await
                .map_err(|e| classify(format!("Writing to {t} failed"), e))
        }
        .await;
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                self.forget(t);
                return Err(e);
            }
        };
        for row in answer {
            let ord: i64 = row
                .try_get(0)
                .map_err(|e| classify(format!("Writing to {t} failed"), e))?;
            let at = usize::try_from(ord).ok().and_then(|o| o.checked_sub(1));
            if let Some((i, _)) = at.and_then(|o| rows.get(o)) {
                out.push(*i);
            }
        }
        Ok(())
    }
}

/// The key of `v`'s row (columns `p<k>` at the key's column positions), cast to the key's
/// types. Compared with `NOT IN`, which PostgreSQL answers with a hashed subplan: the
/// session has hash joins off (see the sink's module documentation), and an anti-join
/// against the statement's own `RETURNING` rows would be a nested loop over both.
fn key_at(cols: &[(String, ColumnMeta)], key: &[usize]) -> String {
    key.iter()
        .filter_map(|&k| {
            let (_, m) = cols.get(k)?;
            Some(format!("v.p{k}::{}", m.cast))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key of `v`'s row equal to `d`'s, and each expected value (`v.p<first>`, …) held.
fn held(
    target: &TargetTable,
    cols: &[(String, ColumnMeta)],
    first: usize,
    expect: &[usize],
) -> Option<Vec<String>> {
    let mut cond = vec![key_match(cols, &target.key)];
    for (j, &c) in expect.iter().enumerate() {
        let ((n, ty), (_, m)) = (target.columns.get(c)?, cols.get(c)?);
        cond.push(compare(n, ty, m, &format!("v.p{}", first + j))?);
    }
    Some(cond)
}
