//! The operator's access to the MySQL/MariaDB endpoint: tandem's conflict and dead-letter
//! tables ([`MySqlLedger`], the [`Ledger`] the `tandem conflicts` / `tandem dead-letters`
//! commands use) and the removal of tandem's tables ([`TeardownPlan`]).
//!
//! Row writes are parameterised statements (values in their binary forms, as the sink
//! sends them; the strict session of [`crate::connect`] refuses what a column cannot hold).
//! Each call is one transaction. [`WriteMode::Tandem`] writes the `tandem_apply_marker` row
//! first, exactly as the applier does, so tandem's binlog reader drops the transaction;
//! unlike PostgreSQL's origin this works while `tandem run` is running.
//!
//! MySQL's affected-row count of an `UPDATE` counts changed rows, not matched ones, so
//! whether the row exists is checked with a locking read inside the transaction instead.
//!
//! Timestamps are read through `DATE_FORMAT` and JSON columns as text, so the reading does
//! not depend on the driver's optional type conversions; the session runs in UTC.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::ledger::{Ledger, ListFilter, StoredConflict, StoredDeadLetter, WriteMode};
use tandem_core::sink::{RowWrite, TargetTable};
use tandem_core::value::Value;

use crate::connect::classify;
use crate::ddl::{APPLY_MARKER, CONFLICTS, DEAD_LETTERS, TANDEM_TABLES};
use crate::types::{from_mysql_value, to_mysql_value};

/// `` `name` ``.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn table_ident(t: &TargetTable) -> String {
    format!("{}.{}", ident(&t.table.schema), ident(&t.table.name))
}

const TS: &str = "'%Y-%m-%d %H:%i:%s.%f'";

fn conflict_columns() -> String {
    format!(
        "id, DATE_FORMAT(at, {TS}), mapping, kind, strategy, decision, CAST(`key` AS CHAR), \
         CAST(`before` AS CHAR), CAST(`after` AS CHAR), CAST(`current` AS CHAR), \
         DATE_FORMAT(source_commit_time, {TS}), DATE_FORMAT(resolved_at, {TS}), resolution"
    )
}

fn dead_letter_columns() -> String {
    format!(
        "id, DATE_FORMAT(at, {TS}), mapping, CAST(`key` AS CHAR), CAST(`change` AS CHAR), \
         reason, source_position, DATE_FORMAT(retried_at, {TS})"
    )
}

fn bad_row(what: &str) -> StageError {
    StageError::definite(
        format!("A row of tandem's tables has an unexpected {what}"),
        "check that only tandem writes its tables; run tandem check",
    )
}

/// Column `i` as text, `None` for NULL.
fn text(row: &Row, i: usize) -> Result<Option<String>, StageError> {
    match row.as_ref(i) {
        None => Err(bad_row("shape")),
        Some(mysql_async::Value::NULL) => Ok(None),
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8(b.clone())
            .map(Some)
            .map_err(|_| bad_row("encoding")),
        Some(mysql_async::Value::Int(i)) => Ok(Some(i.to_string())),
        Some(mysql_async::Value::UInt(u)) => Ok(Some(u.to_string())),
        Some(_) => Err(bad_row("value type")),
    }
}

fn required(row: &Row, i: usize) -> Result<String, StageError> {
    text(row, i)?.ok_or_else(|| bad_row("NULL"))
}

fn id(row: &Row, i: usize) -> Result<i64, StageError> {
    required(row, i)?.parse().map_err(|_| bad_row("id"))
}

fn time(row: &Row, i: usize) -> Result<Option<DateTime<Utc>>, StageError> {
    text(row, i)?
        .map(|s| {
            NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f")
                .map(|n| n.and_utc())
                .map_err(|_| bad_row("timestamp"))
        })
        .transpose()
}

fn json(row: &Row, i: usize) -> Result<Option<serde_json::Value>, StageError> {
    text(row, i)?
        .map(|s| serde_json::from_str(&s).map_err(|_| bad_row("JSON document")))
        .transpose()
}

fn conflict(row: &Row) -> Result<StoredConflict, StageError> {
    Ok(StoredConflict {
        id: id(row, 0)?,
        at: time(row, 1)?.ok_or_else(|| bad_row("NULL"))?,
        mapping: required(row, 2)?,
        kind: required(row, 3)?,
        strategy: required(row, 4)?,
        decision: required(row, 5)?,
        key: json(row, 6)?.unwrap_or_default(),
        before: json(row, 7)?,
        after: json(row, 8)?,
        current: json(row, 9)?,
        source_commit_time: time(row, 10)?,
        resolved_at: time(row, 11)?,
        resolution: text(row, 12)?,
    })
}

fn dead_letter(row: &Row) -> Result<StoredDeadLetter, StageError> {
    Ok(StoredDeadLetter {
        id: id(row, 0)?,
        at: time(row, 1)?.ok_or_else(|| bad_row("NULL"))?,
        mapping: required(row, 2)?,
        key: json(row, 3)?.unwrap_or_default(),
        change: json(row, 4)?.unwrap_or_default(),
        reason: required(row, 5)?,
        source_position: text(row, 6)?,
        retried_at: time(row, 7)?,
    })
}

/// `(mapping filter, all, limit)` as statement parameters.
fn list_params(filter: &ListFilter) -> Params {
    Params::Positional(vec![
        filter.mapping.clone().into(),
        filter.mapping.clone().into(),
        filter.all.into(),
        u64::try_from(filter.limit).unwrap_or(u64::MAX).into(),
    ])
}

/// tandem's tables in one MySQL/MariaDB database, opened for the operator commands.
pub struct MySqlLedger {
    conn: Conn,
}

impl MySqlLedger {
    /// Connect to `ep` as the operator's session.
    pub async fn connect(
        ep: &EndpointConfig,
        password: Option<&Secret>,
    ) -> Result<Self, StageError> {
        Ok(MySqlLedger {
            conn: crate::connect::connect(ep, password).await?,
        })
    }

    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    async fn has_table(&mut self, name: &str) -> Result<bool, StageError> {
        let n: Option<u64> = self
            .conn
            .exec_first(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (name,),
            )
            .await
            .map_err(|e| classify("Looking for tandem's tables", e))?;
        Ok(n.unwrap_or(0) > 0)
    }

    async fn exec(&mut self, sql: &str, params: Vec<mysql_async::Value>) -> Result<(), StageError> {
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params)
        };
        self.conn
            .exec_drop(sql, params)
            .await
            .map_err(|e| classify("Writing a row", e))
    }

    fn key_condition(
        table: &TargetTable,
        key: &[Value],
        params: &mut Vec<mysql_async::Value>,
    ) -> Result<String, StageError> {
        if key.len() != table.key.len() {
            return Err(StageError::definite(
                format!(
                    "A key of {} has {} values, not {}",
                    table.table,
                    key.len(),
                    table.key.len()
                ),
                "report this as a bug in tandem",
            ));
        }
        let mut parts = Vec::new();
        for (name, v) in table.key_names().zip(key) {
            params.push(to_mysql_value(v));
            parts.push(format!("{} = ?", ident(name)));
        }
        Ok(parts.join(" AND "))
    }

    async fn write_all(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
    ) -> Result<(), StageError> {
        let t = table_ident(table);
        let name = |i: usize| {
            table
                .columns
                .get(i)
                .map(|(n, _)| ident(n))
                .unwrap_or_default()
        };
        let what = |e: StageError| match e {
            StageError::Definite {
                what: _,
                advice,
                source,
            } => StageError::Definite {
                what: format!("Writing to {}", table.table),
                advice,
                source,
            },
            other => other,
        };
        for w in writes {
            let mut params = Vec::new();
            match w {
                RowWrite::Insert { values } => {
                    let names: Vec<String> = (0..values.len()).map(name).collect();
                    params.extend(values.iter().map(to_mysql_value));
                    let sql = format!(
                        "INSERT INTO {t} ({}) VALUES ({})",
                        names.join(", "),
                        vec!["?"; values.len()].join(", ")
                    );
                    self.exec(&sql, params).await.map_err(what)?;
                }
                RowWrite::Update { key, columns } => {
                    let mut check = Vec::new();
                    let cond = Self::key_condition(table, key, &mut check)?;
                    let found: Option<u8> = self
                        .conn
                        .exec_first(format!("SELECT 1 FROM {t} WHERE {cond} FOR UPDATE"), check)
                        .await
                        .map_err(|e| classify(format!("Reading a row of {}", table.table), e))?;
                    if found.is_none() {
                        return Err(StageError::definite(
                            format!("No row of {} has this key any more", table.table),
                            "the row was deleted since; compare both sides and write it by hand",
                        ));
                    }
                    let sets: Vec<String> = columns
                        .iter()
                        .map(|(i, v)| {
                            params.push(to_mysql_value(v));
                            format!("{} = ?", name(*i))
                        })
                        .collect();
                    let cond = Self::key_condition(table, key, &mut params)?;
                    let sql = format!("UPDATE {t} SET {} WHERE {cond}", sets.join(", "));
                    self.exec(&sql, params).await.map_err(what)?;
                }
                RowWrite::Delete { key } => {
                    let cond = Self::key_condition(table, key, &mut params)?;
                    self.exec(&format!("DELETE FROM {t} WHERE {cond}"), params)
                        .await
                        .map_err(what)?;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Ledger for MySqlLedger {
    async fn conflicts(&mut self, filter: &ListFilter) -> Result<Vec<StoredConflict>, StageError> {
        if !self.has_table(CONFLICTS).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM {CONFLICTS} WHERE (? IS NULL OR mapping = ?) \
             AND (? OR (decision = 'parked' AND resolved_at IS NULL)) ORDER BY id DESC LIMIT ?",
            conflict_columns()
        );
        let rows: Vec<Row> = self
            .conn
            .exec(sql, list_params(filter))
            .await
            .map_err(|e| classify("Reading tandem's conflicts", e))?;
        rows.iter().map(conflict).collect()
    }

    async fn conflict(&mut self, id: i64) -> Result<Option<StoredConflict>, StageError> {
        if !self.has_table(CONFLICTS).await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {} FROM {CONFLICTS} WHERE id = ?",
            conflict_columns()
        );
        let row: Option<Row> = self
            .conn
            .exec_first(sql, (id,))
            .await
            .map_err(|e| classify("Reading tandem's conflicts", e))?;
        row.as_ref().map(conflict).transpose()
    }

    async fn mark_resolved(&mut self, id: i64, resolution: &str) -> Result<bool, StageError> {
        self.conn
            .exec_drop(
                format!(
                    "UPDATE {CONFLICTS} SET resolved_at = NOW(6), resolution = ? \
                     WHERE id = ? AND resolved_at IS NULL"
                ),
                (resolution, id),
            )
            .await
            .map_err(|e| classify("Marking the conflict resolved", e))?;
        Ok(self.conn.affected_rows() == 1)
    }

    async fn dead_letters(
        &mut self,
        filter: &ListFilter,
    ) -> Result<Vec<StoredDeadLetter>, StageError> {
        if !self.has_table(DEAD_LETTERS).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM {DEAD_LETTERS} WHERE (? IS NULL OR mapping = ?) \
             AND (? OR retried_at IS NULL) ORDER BY id DESC LIMIT ?",
            dead_letter_columns()
        );
        let rows: Vec<Row> = self
            .conn
            .exec(sql, list_params(filter))
            .await
            .map_err(|e| classify("Reading tandem's dead letters", e))?;
        rows.iter().map(dead_letter).collect()
    }

    async fn dead_letter(&mut self, id: i64) -> Result<Option<StoredDeadLetter>, StageError> {
        if !self.has_table(DEAD_LETTERS).await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {} FROM {DEAD_LETTERS} WHERE id = ?",
            dead_letter_columns()
        );
        let row: Option<Row> = self
            .conn
            .exec_first(sql, (id,))
            .await
            .map_err(|e| classify("Reading tandem's dead letters", e))?;
        row.as_ref().map(dead_letter).transpose()
    }

    async fn mark_retried(&mut self, id: i64) -> Result<(), StageError> {
        self.conn
            .exec_drop(
                format!("UPDATE {DEAD_LETTERS} SET retried_at = NOW(6) WHERE id = ?"),
                (id,),
            )
            .await
            .map_err(|e| classify("Marking the dead letter retried", e))
    }

    async fn set_reason(&mut self, id: i64, reason: &str) -> Result<(), StageError> {
        self.conn
            .exec_drop(
                format!("UPDATE {DEAD_LETTERS} SET reason = ? WHERE id = ?"),
                (reason, id),
            )
            .await
            .map_err(|e| classify("Recording the dead letter's new reason", e))
    }

    async fn read_row(
        &mut self,
        table: &TargetTable,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, StageError> {
        let mut params = Vec::new();
        let cond = Self::key_condition(table, key, &mut params)?;
        let cols: Vec<String> = table.columns.iter().map(|(n, _)| ident(n)).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            cols.join(", "),
            table_ident(table)
        );
        let row: Option<Row> = self
            .conn
            .exec_first(sql, Params::Positional(params))
            .await
            .map_err(|e| classify(format!("Reading a row of {}", table.table), e))?;
        let Some(row) = row else { return Ok(None) };
        let mut out = Vec::with_capacity(cols.len());
        for (i, (name, ty)) in table.columns.iter().enumerate() {
            let raw = row.as_ref(i).ok_or_else(|| bad_row("shape"))?;
            out.push(from_mysql_value(ty, raw).map_err(|e| {
                StageError::definite_from(
                    format!("Reading column {name} of {}", table.table),
                    "the column's type changed; run tandem check",
                    e,
                )
            })?);
        }
        Ok(Some(out))
    }

    async fn write_rows(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
        mode: WriteMode,
    ) -> Result<(), StageError> {
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| classify("Opening a transaction", e))?;
        let result = async {
            if mode == WriteMode::Tandem {
                // First statement, as the applier does: the reader decides on the first row.
                self.conn
                    .query_drop(format!(
                        "INSERT INTO {APPLY_MARKER} (id, txn, at) VALUES (1, 1, NOW(6)) \
                         ON DUPLICATE KEY UPDATE txn = txn + 1, at = VALUES(at)"
                    ))
                    .await
                    .map_err(|e| classify("Writing the apply marker", e))?;
            }
            self.write_all(table, writes).await
        }
        .await;
        match result {
            Ok(()) => self
                .conn
                .query_drop("COMMIT")
                .await
                .map_err(|e| classify(format!("Committing the write to {}", table.table), e)),
            Err(e) => {
                let _ = self.conn.query_drop("ROLLBACK").await;
                Err(e)
            }
        }
    }
}

/// What `tandem teardown` would remove from the MySQL/MariaDB endpoint: tandem's tables
/// that exist in the endpoint's database.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeardownPlan {
    pub database: String,
    pub tables: Vec<String>,
}

impl TeardownPlan {
    pub async fn read(conn: &mut Conn) -> Result<TeardownPlan, StageError> {
        let database: Option<String> = conn
            .query_first("SELECT DATABASE()")
            .await
            .map_err(|e| classify("Reading the current database", e))?;
        let rows: Vec<String> = conn
            .query(
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name LIKE 'tandem\\_%' ORDER BY 1",
            )
            .await
            .map_err(|e| classify("Reading information_schema.tables", e))?;
        Ok(TeardownPlan {
            database: database.unwrap_or_default(),
            tables: rows
                .into_iter()
                .filter(|t| TANDEM_TABLES.contains(&t.as_str()))
                .collect(),
        })
    }

    pub fn describe(&self) -> Vec<String> {
        self.tables
            .iter()
            .map(|t| format!("table {}.{t}", self.database))
            .collect()
    }

    pub async fn execute(&self, conn: &mut Conn) -> Result<(), StageError> {
        for t in &self.tables {
            conn.query_drop(format!("DROP TABLE IF EXISTS {}", ident(t)))
                .await
                .map_err(|e| classify(format!("Dropping table {t}"), e))?;
        }
        Ok(())
    }
}
