//! Applying resolved rows to MySQL/MariaDB: [`MySqlSink`].
//!
//! Invariants this module keeps, and how:
//! - **Exactly once** (design invariant 1): [`Sink::commit`] upserts the pipeline's row in
//!   `tandem_checkpoints` inside the same transaction as the applied rows, then commits, so
//!   the checkpoint and the rows become durable together or not at all.
//! - **No echo** (invariant 2): the applying session is tagged so that tandem's binlog reader
//!   drops its transactions. `skip_replication=1` (MariaDB: the server flags every event
//!   `0x8000` and can filter them from the dump) or, where that does not exist (MySQL), a
//!   marker: every transaction first updates the single row of `tandem_apply_marker`, and
//!   the reader drops any transaction containing it.
//! - **Nothing silent** (invariant 5): the session is strict (see [`crate::connect`]); a value
//!   the column cannot hold fails the statement, and the error names the table, the column
//!   and the write in the batch so the applier can dead-letter exactly that row.
//! - **Keys as the server compares them.** A key column's collation may equate keys the
//!   source keeps apart (`'abc'`/`'ABC'` under `_ci`, trailing spaces under PAD SPACE).
//!   [`Sink::fetch_current`] gives a row to such a key only when the batch does not ask
//!   for the row's own key as well (so a case-only rename, delete `'abc'` + insert `'ABC'`,
//!   renames the row), and an insert lost to another key of its own batch is a definite
//!   error naming both keys and the collation, not a transient one retried forever (see
//!   `sink/collision.rs`).
//!
//! Statements use parameters (binary protocol), never SQL text built from values: nothing
//! about a value can change the statement, and values travel in their exact binary forms
//! (decimals as text, timestamps as date structs). Reads come back as binary-protocol
//! values and are decoded by [`crate::types::from_mysql_value`], the decoder shared with the
//! snapshot. To keep one round trip per batch, statement shapes are few: every batch is
//! padded by repeating its last row (idempotent for upserts, key lookups and deletes) to
//! one of 20 sizes (powers of two and three quarters of them), so each table needs a few
//! dozen prepared statements, all of which stay in the connection's statement cache.
//!
//! Writes are applied in the order given, except that the deletes of a call go first, then
//! its updates, then its inserts, when its keys are distinct as the server compares them
//! and the table has no trigger and no foreign key to itself (see `batch::apply_order`
//! for why that cannot change the outcome). Consecutive writes of one kind (inserts;
//! updates of the same column set; deletes) form one multi-row statement:
//! - inserts: `INSERT … ON DUPLICATE KEY UPDATE` of every non-key column;
//! - updates: `UPDATE t JOIN (SELECT ? AS k0, ? AS c0 UNION ALL …) v ON t.k = v.k0
//!   SET t.c = v.c0` — only the changed columns, and a key that has vanished stays vanished
//!   (an upsert would insert a half row). If the server refuses the join because the key's
//!   collation differs from the connection's (error 1267), that table falls back to one
//!   prepared `UPDATE` per row;
//! - deletes: `DELETE FROM t WHERE (k1, k2) IN ((?, ?), …)`.
//!
//! Runs of [`LOAD_DATA_MIN_ROWS`] inserts or more (an initial copy's batches) are streamed
//! with `LOAD DATA LOCAL INFILE` instead, under the same rules (see `sink/load.rs`).
//!
//! Chunks stay under 65,535 placeholders and a quarter of `max_allowed_packet` (padding may
//! double a chunk).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};
use tandem_core::config::{EndpointConfig, LoopPrevention, Secret};
use tandem_core::error::StageError;
use tandem_core::sink::{
    CheckedWrite, ConflictRecord, DeadLetter, RowWrite, Sink, TargetTable, Unapplied,
};
use tandem_core::{TableId, Value};

use crate::connect::{classify, connect, is_mariadb};
use crate::ddl::{ensure_tables, APPLY_MARKER, CHECKPOINTS, CONFLICTS, DEAD_LETTERS};
use crate::types::to_mysql_value;

mod batch;
mod checked;
mod collision;
mod load;

use batch::{
    apply_order, bad_index, check_arity, chunks, decode_row, derived_rows, ident, insert_sql,
    key_in, key_matches, kinds_interleave, match_bucket, pad, padded, run_len, same_key,
    size_of_values, table_ident, value_size, write_error,
};

/// Insert runs of at least this many rows go through `LOAD DATA LOCAL` (see `sink/load.rs`);
/// smaller ones through multi-row `INSERT`s. Above the applier's streaming batch (2,000
/// rows), so in practice the batches of an initial copy (20,000 rows).
pub const LOAD_DATA_MIN_ROWS: usize = 5_000;

/// How this sink keeps its writes out of tandem's own binlog reader, once resolved
/// (`Auto` becomes one of the two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppliedLoopPrevention {
    SkipReplication,
    Marker,
}

/// A [`Sink`] writing to one MySQL/MariaDB database over one connection.
pub struct MySqlSink {
    conn: Conn,
    loop_prevention: AppliedLoopPrevention,
    in_txn: bool,
    /// Budget for one statement's values, from `max_allowed_packet`.
    packet_budget: usize,
    /// Tables whose key collation refused the update join (see the module docs).
    per_row_updates: HashSet<String>,
    /// Per table, whether its writes may be grouped by kind (see `MySqlSink::groups_kinds`),
    /// read from the catalog once per connection.
    kinds_apart: HashMap<TableId, bool>,
    load_data_min_rows: usize,
    /// Per table, in the open transaction: keys of rows that [`Sink::fetch_current`] did not
    /// give to a key the server equates with theirs, because the batch asked for their own
    /// key too. An insert lost to one of them is lost to its own batch, not to a concurrent
    /// writer (see `sink/collision.rs`).
    held_apart: HashMap<TableId, Vec<Vec<Value>>>,
}

impl MySqlSink {
    /// Connect to `ep`, create tandem's tables if missing, and tag the session.
    pub async fn connect(
        ep: &EndpointConfig,
        password: Option<&Secret>,
    ) -> Result<Self, StageError> {
        let conn = connect(ep, password).await?;
        MySqlSink::from_conn(conn, ep.loop_prevention).await
    }

    /// Wrap a connection made by [`crate::connect::connect`] (its session settings are
    /// relied on), create tandem's tables if missing, and tag the session.
    pub async fn from_conn(mut conn: Conn, mode: LoopPrevention) -> Result<Self, StageError> {
        ensure_tables(&mut conn).await?;
        let mariadb = is_mariadb(&mut conn).await?;
        let loop_prevention =
            match mode {
                LoopPrevention::SkipReplication if !mariadb => return Err(StageError::definite(
                    "loop_prevention = \"skip_replication\" needs MariaDB; this server is MySQL",
                    "set loop_prevention = \"marker\" (or \"auto\") for this endpoint",
                )),
                LoopPrevention::SkipReplication => AppliedLoopPrevention::SkipReplication,
                LoopPrevention::Marker => AppliedLoopPrevention::Marker,
                LoopPrevention::Auto if mariadb => AppliedLoopPrevention::SkipReplication,
                LoopPrevention::Auto => AppliedLoopPrevention::Marker,
            };
        if loop_prevention == AppliedLoopPrevention::SkipReplication {
            conn.query_drop("SET SESSION skip_replication = 1")
                .await
                .map_err(|e| classify("Tagging the applier session with skip_replication", e))?;
        }
        let max_packet: Option<u64> = conn
            .query_first("SELECT @@max_allowed_packet")
            .await
            .map_err(|e| classify("Reading max_allowed_packet", e))?;
        let packet_budget = usize::try_from(max_packet.unwrap_or(4 << 20)).unwrap_or(4 << 20) / 4;
        Ok(MySqlSink {
            conn,
            loop_prevention,
            in_txn: false,
            packet_budget,
            per_row_updates: HashSet::new(),
            kinds_apart: HashMap::new(),
            load_data_min_rows: LOAD_DATA_MIN_ROWS,
            held_apart: HashMap::new(),
        })
    }

    /// The loop prevention in effect.
    pub fn loop_prevention(&self) -> AppliedLoopPrevention {
        self.loop_prevention
    }

    /// Change the run length from which inserts go through `LOAD DATA LOCAL` (tests,
    /// benchmarks); `usize::MAX` turns it off.
    pub fn set_load_data_min_rows(&mut self, rows: usize) {
        self.load_data_min_rows = rows.max(1);
    }

    /// The underlying connection (for tests and `tandem check`).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    async fn exec(
        &mut self,
        sql: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<(), mysql_async::Error> {
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params)
        };
        self.conn.exec_drop(sql, params).await
    }

    /// Whether `t`'s writes may be grouped by kind (`batch::apply_order`): nothing in the
    /// table makes one row's write depend on another row's but its keys and unique
    /// indexes, which the grouping keeps satisfied. Not so with a foreign key from the
    /// table to itself (deleting a parent before the update that moves its child away
    /// fails) or a trigger (it may read the table, or count on the order of its calls).
    /// Read from the catalog once per table and connection.
    async fn groups_kinds(&mut self, t: &TargetTable) -> Result<bool, StageError> {
        if let Some(&apart) = self.kinds_apart.get(&t.table) {
            return Ok(apart);
        }
        let (schema, name) = (t.table.schema.as_str(), t.table.name.as_str());
        let dependent: Option<(i64, i64)> = self
            .conn
            .exec_first(
                "SELECT (SELECT COUNT(*) FROM information_schema.KEY_COLUMN_USAGE \
                   WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                   AND REFERENCED_TABLE_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?), \
                 (SELECT COUNT(*) FROM information_schema.TRIGGERS \
                   WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?)",
                (schema, name, schema, name, schema, name),
            )
            .await
            .map_err(|e| {
                classify(
                    format!("Reading the foreign keys and triggers of {}", t.table),
                    e,
                )
            })?;
        let apart = dependent == Some((0, 0));
        self.kinds_apart.insert(t.table.clone(), apart);
        Ok(apart)
    }

    async fn insert_rows(
        &mut self,
        t: &TargetTable,
        rows: &[&Vec<Value>],
        positions: &[usize],
    ) -> Result<(), StageError> {
        // The applier inserts only keys it has just read as absent: an existing key means
        // a concurrent writer inserted it in between. `k = k` leaves that row alone and
        // counts 0 affected rows, so the difference shows (padding rows repeat the last row
        // and count 0 too); the transient error makes the applier re-read and merge.
        let width = t.columns.len();
        for (start, chunk) in chunks(rows, width, self.packet_budget, |r| size_of_values(r)) {
            let n = padded(chunk.len());
            let at = positions.get(start..).unwrap_or_default();
            let mut params = Vec::with_capacity(n * width);
            for (j, r) in pad(chunk, n).enumerate() {
                let position = at.get(j).or(at.last()).copied().unwrap_or_default();
                check_arity(t, r.len(), position)?;
                params.extend(r.iter().map(to_mysql_value));
            }
            self.exec(&insert_sql(t, n), params)
                .await
                .map_err(|e| write_error(t, "inserting into", at, e))?;
            let inserted = self.conn.affected_rows();
            if inserted != chunk.len() as u64 {
                // Lost to a row of this very run? Then a retry loses it again, forever.
                let run = rows.get(..start + chunk.len()).unwrap_or_default();
                if let Some(err) = self.key_collision(t, run, positions).await? {
                    return Err(err);
                }
                return Err(StageError::Transient {
                    what: format!(
                        "{inserted} of {} rows inserted into {}: another writer inserted the same keys meanwhile; \
                         retrying so the rows are merged as insert_exists",
                        chunk.len(),
                        t.table
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }

    async fn update_rows(
        &mut self,
        t: &TargetTable,
        set: &[usize],
        rows: &[(&Vec<Value>, Vec<&Value>)],
        positions: &[usize],
    ) -> Result<(), StageError> {
        let key_cols: Vec<String> = t.key_names().map(ident).collect();
        let set_cols = set
            .iter()
            .map(|&i| {
                t.columns
                    .get(i)
                    .map(|(n, _)| ident(n))
                    .ok_or_else(|| bad_index(t, i))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.per_row_updates.contains(&t.table.to_string()) {
            return self
                .update_per_row(t, &key_cols, &set_cols, rows, positions)
                .await;
        }
        let width = key_cols.len() + set_cols.len();
        let size = |r: &(&Vec<Value>, Vec<&Value>)| {
            size_of_values(r.0) + r.1.iter().map(|v| value_size(v)).sum::<usize>()
        };
        for (start, chunk) in chunks(rows, width, self.packet_budget, size) {
            let n = padded(chunk.len());
            let mut params = Vec::with_capacity(n * width);
            for (key, vals) in pad(chunk, n) {
                params.extend(key.iter().map(to_mysql_value));
                params.extend(vals.iter().map(|v| to_mysql_value(v)));
            }
            let aliases: Vec<String> = (0..key_cols.len())
                .map(|i| format!("k{i}"))
                .chain((0..set_cols.len()).map(|i| format!("c{i}")))
                .collect();
            let on: Vec<String> = key_cols
                .iter()
                .enumerate()
                .map(|(i, k)| format!("t.{k} = v.k{i}"))
                .collect();
            let assign: Vec<String> = set_cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("t.{c} = v.c{i}"))
                .collect();
            let sql = format!(
                "UPDATE {} t JOIN ({}) v ON {} SET {}",
                table_ident(t),
                derived_rows(&aliases, n),
                on.join(" AND "),
                assign.join(", ")
            );
            match self.exec(&sql, params).await {
                Ok(()) => {}
                Err(mysql_async::Error::Server(s)) if s.code == 1267 => {
                    tracing::info!(table = %t.table, "key collation differs from the session's; updating row by row");
                    self.per_row_updates.insert(t.table.to_string());
                    let remaining = rows.get(start..).unwrap_or_default();
                    let at = positions.get(start..).unwrap_or_default();
                    return self
                        .update_per_row(t, &key_cols, &set_cols, remaining, at)
                        .await;
                }
                Err(e) => {
                    let at = positions.get(start..).unwrap_or_default();
                    return Err(write_error(t, "updating", at, e));
                }
            }
        }
        Ok(())
    }

    async fn update_per_row(
        &mut self,
        t: &TargetTable,
        key_cols: &[String],
        set_cols: &[String],
        rows: &[(&Vec<Value>, Vec<&Value>)],
        positions: &[usize],
    ) -> Result<(), StageError> {
        let sql = format!(
            "UPDATE {} SET {} WHERE {}",
            table_ident(t),
            set_cols
                .iter()
                .map(|c| format!("{c} = ?"))
                .collect::<Vec<_>>()
                .join(", "),
            key_cols
                .iter()
                .map(|k| format!("{k} = ?"))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        for (i, (key, vals)) in rows.iter().enumerate() {
            let params = vals
                .iter()
                .map(|v| to_mysql_value(v))
                .chain(key.iter().map(to_mysql_value))
                .collect();
            self.exec(&sql, params).await.map_err(|e| {
                write_error(t, "updating", positions.get(i..).unwrap_or_default(), e)
            })?;
        }
        Ok(())
    }

    async fn delete_rows(
        &mut self,
        t: &TargetTable,
        keys: &[&Vec<Value>],
        positions: &[usize],
    ) -> Result<(), StageError> {
        let key_cols: Vec<String> = t.key_names().map(ident).collect();
        for (start, chunk) in chunks(keys, key_cols.len(), self.packet_budget, |k| {
            size_of_values(k)
        }) {
            let n = padded(chunk.len());
            let params = pad(chunk, n)
                .flat_map(|k| k.iter().map(to_mysql_value))
                .collect();
            let sql = format!(
                "DELETE FROM {} WHERE {}",
                table_ident(t),
                key_in(&key_cols, n)
            );
            self.exec(&sql, params).await.map_err(|e| {
                write_error(
                    t,
                    "deleting from",
                    positions.get(start..).unwrap_or_default(),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for MySqlSink {
    async fn checkpoint_text(&mut self, key: &str) -> Result<Option<String>, StageError> {
        self.conn
            .exec_first(
                format!("SELECT position FROM {CHECKPOINTS} WHERE pipeline = ?"),
                (key,),
            )
            .await
            .map_err(|e| classify(format!("Reading the checkpoint of {key}"), e))
    }

    async fn begin(&mut self) -> Result<(), StageError> {
        if self.in_txn {
            // START TRANSACTION would silently commit the open one without its checkpoint.
            tracing::warn!("begin called with a transaction open; rolling it back");
            self.rollback().await?;
        }
        self.held_apart.clear();
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| classify("Starting a transaction", e))?;
        self.in_txn = true;
        if self.loop_prevention == AppliedLoopPrevention::Marker {
            // First statement of the transaction, so the reader sees the marker before any row.
            let sql = format!(
                "INSERT INTO {APPLY_MARKER} (id, txn, at) VALUES (1, 1, NOW(6))
                 ON DUPLICATE KEY UPDATE txn = txn + 1, at = VALUES(at)"
            );
            self.conn
                .query_drop(sql)
                .await
                .map_err(|e| classify("Writing the apply marker", e))?;
        }
        Ok(())
    }

    async fn fetch_current(
        &mut self,
        table: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Option<Vec<Value>>>, StageError> {
        let mut out = vec![None; keys.len()];
        if keys.is_empty() {
            return Ok(out);
        }
        let key_cols: Vec<String> = table.key_names().map(ident).collect();
        let cols: Vec<String> = table.columns.iter().map(|(n, _)| ident(n)).collect();
        let key_refs: Vec<&Vec<Value>> = keys.iter().collect();
        let budget = self.packet_budget;
        // Slots answered by a row whose key equals theirs as a value.
        let mut exact = vec![false; keys.len()];
        for (start, chunk) in chunks(&key_refs, key_cols.len(), budget, |k| size_of_values(k)) {
            let n = padded(chunk.len());
            let params: Vec<mysql_async::Value> = pad(chunk, n)
                .flat_map(|k| k.iter().map(to_mysql_value))
                .collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {} FOR UPDATE",
                cols.join(", "),
                table_ident(table),
                key_in(&key_cols, n)
            );
            let rows: Vec<Row> = self
                .conn
                .exec(sql, Params::Positional(params))
                .await
                .map_err(|e| classify(format!("Reading current rows of {}", table.table), e))?;
            // The server matched by its collation; find which requested keys each row
            // answers: candidates by bucket, confirmed by `key_matches`.
            let mut buckets: HashMap<String, Vec<usize>> = HashMap::with_capacity(chunk.len());
            for (offset, k) in chunk.iter().enumerate() {
                buckets
                    .entry(match_bucket(k.iter()))
                    .or_default()
                    .push(offset);
            }
            for row in rows {
                let values = decode_row(table, &row)?;
                // The slots this row answers, and whether exactly.
                let answers: Vec<(usize, bool)> = {
                    let got: Vec<&Value> =
                        table.key.iter().filter_map(|&i| values.get(i)).collect();
                    let candidates = buckets.get(&match_bucket(got.iter().copied()));
                    candidates
                        .into_iter()
                        .flatten()
                        .filter_map(|&offset| {
                            let k = chunk.get(offset)?;
                            let was_exact = *exact.get(start + offset)?;
                            let is_exact = same_key(k, &got);
                            ((is_exact || !was_exact)
                                && key_matches(k, &got, &table.columns, &table.key))
                            .then_some((start + offset, is_exact))
                        })
                        .collect()
                };
                // The row moves into its last slot (usually its only one).
                let mut values = Some(values);
                let last = answers.len();
                for (n, (i, is_exact)) in answers.into_iter().enumerate() {
                    let row = if n + 1 == last {
                        values.take()
                    } else {
                        values.clone()
                    };
                    if let (Some(slot), Some(was_exact)) = (out.get_mut(i), exact.get_mut(i)) {
                        *slot = row;
                        *was_exact = is_exact;
                    }
                }
            }
        }
        // A row answers a key it equals only as the server compares ('ABC' for 'abc') unless
        // the batch asks for the row's own key too: then the two are two rows at the source
        // (or one renamed), and the row belongs to its own key alone. Giving it to both
        // would make a case-only rename (delete 'abc', insert 'ABC') delete the row.
        let inexact: Vec<usize> = out
            .iter()
            .zip(&exact)
            .enumerate()
            .filter(|(_, (row, exact))| row.is_some() && !**exact)
            .map(|(i, _)| i)
            .collect();
        if !inexact.is_empty() {
            let requested: HashSet<String> = keys.iter().map(|k| format!("{k:?}")).collect();
            for i in inexact {
                if let Some(slot) = out.get_mut(i) {
                    let own: Option<Vec<Value>> = slot.as_ref().map(|row| {
                        table
                            .key
                            .iter()
                            .filter_map(|&c| row.get(c).cloned())
                            .collect()
                    });
                    if let Some(own) = own.filter(|k| requested.contains(&format!("{k:?}"))) {
                        *slot = None;
                        self.held_apart
                            .entry(table.table.clone())
                            .or_default()
                            .push(own);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn is_empty(&mut self, table: &TargetTable) -> Result<bool, StageError> {
        let any: Option<u8> = self
            .conn
            .query_first(format!("SELECT 1 FROM {} LIMIT 1", table_ident(table)))
            .await
            .map_err(|e| classify(format!("Reading whether {} is empty", table.table), e))?;
        Ok(any.is_none())
    }

    async fn write(&mut self, table: &TargetTable, writes: &[RowWrite]) -> Result<(), StageError> {
        let kinds_apart = kinds_interleave(writes) && self.groups_kinds(table).await?;
        let order = apply_order(table, writes, kinds_apart);
        let ordered: Vec<&RowWrite> = order.iter().filter_map(|&i| writes.get(i)).collect();
        let mut i = 0;
        while i < ordered.len() {
            let run = run_len(ordered.get(i..).unwrap_or_default());
            let slice = ordered.get(i..i + run).unwrap_or_default();
            // Where each write of the run stands in `writes`, for error messages.
            let positions = order.get(i..i + run).unwrap_or_default();
            match slice.first() {
                Some(RowWrite::Insert { .. }) => {
                    let rows: Vec<&Vec<Value>> = slice
                        .iter()
                        .filter_map(|w| match w {
                            RowWrite::Insert { values } => Some(values),
                            _ => None,
                        })
                        .collect();
                    let loaded = rows.len() >= self.load_data_min_rows
                        && load::load(self, table, &rows).await?;
                    if !loaded {
                        self.insert_rows(table, &rows, positions).await?;
                    }
                }
                Some(RowWrite::Update { columns, .. }) => {
                    let set: Vec<usize> = columns.iter().map(|(c, _)| *c).collect();
                    let rows: Vec<(&Vec<Value>, Vec<&Value>)> = slice
                        .iter()
                        .filter_map(|w| match w {
                            RowWrite::Update { key, columns } => {
                                Some((key, columns.iter().map(|(_, v)| v).collect()))
                            }
                            _ => None,
                        })
                        .collect();
                    if !set.is_empty() {
                        self.update_rows(table, &set, &rows, positions).await?;
                    }
                }
                Some(RowWrite::Delete { .. }) => {
                    let keys: Vec<&Vec<Value>> = slice
                        .iter()
                        .filter_map(|w| match w {
                            RowWrite::Delete { key } => Some(key),
                            _ => None,
                        })
                        .collect();
                    self.delete_rows(table, &keys, positions).await?;
                }
                None => {}
            }
            i += run.max(1);
        }
        Ok(())
    }

    async fn write_if_unchanged(
        &mut self,
        table: &TargetTable,
        writes: Vec<CheckedWrite>,
    ) -> Result<Unapplied, StageError> {
        self.write_checked(table, &writes).await.map(Unapplied::Now)
    }

    async fn record(
        &mut self,
        conflicts: &[ConflictRecord],
        dead_letters: &[DeadLetter],
    ) -> Result<(), StageError> {
        let json = |v: &serde_json::Value| mysql_async::Value::Bytes(v.to_string().into_bytes());
        let opt_json =
            |v: &Option<serde_json::Value>| v.as_ref().map_or(mysql_async::Value::NULL, json);
        let text = |s: &str| mysql_async::Value::Bytes(s.as_bytes().to_vec());
        for chunk in conflicts.chunks(256) {
            let mut params = Vec::with_capacity(chunk.len() * 9);
            for c in chunk {
                params.extend([
                    text(&c.mapping),
                    text(&c.kind),
                    text(&c.strategy),
                    text(&c.decision),
                    json(&c.key),
                    opt_json(&c.before),
                    opt_json(&c.after),
                    opt_json(&c.current),
                    c.source_commit_time.map_or(mysql_async::Value::NULL, |t| {
                        to_mysql_value(&Value::TimestampTz(t))
                    }),
                ]);
            }
            let sql = format!(
                "INSERT INTO {CONFLICTS} (at, mapping, kind, strategy, decision, `key`, `before`, `after`, `current`, source_commit_time) VALUES {}",
                vec!["(NOW(6), ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            self.exec(&sql, params)
                .await
                .map_err(|e| classify("Recording conflicts", e))?;
        }
        for chunk in dead_letters.chunks(256) {
            let mut params = Vec::with_capacity(chunk.len() * 5);
            for d in chunk {
                params.extend([
                    text(&d.mapping),
                    json(&d.key),
                    json(&d.change),
                    text(&d.reason),
                    text(&d.source_position),
                ]);
            }
            let sql = format!(
                "INSERT INTO {DEAD_LETTERS} (at, mapping, `key`, `change`, reason, source_position) VALUES {}",
                vec!["(NOW(6), ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            self.exec(&sql, params)
                .await
                .map_err(|e| classify("Recording dead letters", e))?;
        }
        Ok(())
    }

    async fn commit_text(
        &mut self,
        pipeline: &str,
        text: &str,
        source_commit_time: DateTime<Utc>,
    ) -> Result<(), StageError> {
        if !self.in_txn {
            return Err(StageError::definite(
                "commit was called without an open transaction",
                "this is a tandem bug: report it with the log",
            ));
        }
        let sql = format!(
            "INSERT INTO {CHECKPOINTS} (pipeline, position, source_commit_time, applied_at)
             VALUES (?, ?, ?, NOW(6)) ON DUPLICATE KEY UPDATE position = VALUES(position),
             source_commit_time = VALUES(source_commit_time), applied_at = VALUES(applied_at)"
        );
        let params = vec![
            mysql_async::Value::Bytes(pipeline.as_bytes().to_vec()),
            mysql_async::Value::Bytes(text.as_bytes().to_vec()),
            to_mysql_value(&Value::TimestampTz(source_commit_time)),
        ];
        self.exec(&sql, params)
            .await
            .map_err(|e| classify(format!("Writing the checkpoint of {pipeline}"), e))?;
        // Whatever COMMIT's outcome, the transaction is over: on a lost connection it may or
        // may not have committed, and the applier re-reads the checkpoint to find out.
        self.in_txn = false;
        self.held_apart.clear();
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| classify("Committing", e))
    }

    async fn rollback(&mut self) -> Result<(), StageError> {
        self.in_txn = false;
        self.held_apart.clear();
        self.conn
            .query_drop("ROLLBACK")
            .await
            .map_err(|e| classify("Rolling back", e))
    }
}
