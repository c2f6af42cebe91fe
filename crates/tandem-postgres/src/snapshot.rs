//! The consistent initial snapshot that streaming continues from.
//!
//! Invariant: snapshot rows + streamed changes = the table, nothing lost, nothing doubled.
//! It holds because the slot and the snapshot are made at the same instant:
//! `CREATE_REPLICATION_SLOT … LOGICAL pgoutput (SNAPSHOT 'export')` returns the slot's
//! `consistent_point` and the name of a snapshot that sees exactly the transactions
//! committed before it. A side session imports that snapshot
//! (`BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT …`) *before* the
//! exporting replication session runs another command or closes (which would void it),
//! and streaming then starts at `consistent_point`, where the slot delivers exactly the
//! transactions the snapshot does not see.
//!
//! Tables are read in key order in chunks (`WHERE (k) > (last) ORDER BY k LIMIT n`), so
//! memory is bounded by one chunk and a copy can resume after the last key it delivered.
//! Values are read with the simple query protocol, i.e. in the types' text output format,
//! and decoded with the same [`crate::types::decode_text`] as the stream, under the same
//! session settings: the two paths cannot disagree about a value.
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-replication.html>
//! (`CREATE_REPLICATION_SLOT`).

use std::collections::HashMap;
use std::sync::Arc;

use pgwire_replication::ReplicationClient;
use tandem_core::change::{Cell, ColumnSchema, Row, TableId, TableSchema};
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::position::{Lsn, Position};
use tandem_core::value::Value;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::replication::{self, quote_ident, quote_literal};
use crate::types;

/// Rows per chunk unless set otherwise.
pub const DEFAULT_CHUNK_ROWS: usize = 10_000;

/// How far the copy of one table has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotProgress {
    pub rows_done: u64,
    /// From `pg_class.reltuples` (an estimate; `None` before the table was ever analyzed).
    pub estimated_total: Option<u64>,
    pub done: bool,
}

struct TableCopy {
    schema: Arc<TableSchema>,
    type_oids: Vec<u32>,
    /// SQL type of each column, for typed literals of the last key.
    sql_types: Vec<String>,
    /// Columns the copy orders and chunks by (the primary key).
    order_key: Vec<usize>,
    last_key: Option<Vec<String>>,
    progress: SnapshotProgress,
}

/// A consistent read of the mapped tables, exported with a new replication slot.
pub struct PgSnapshot {
    client: Client,
    task: JoinHandle<()>,
    tables: HashMap<TableId, TableCopy>,
    chunk_rows: usize,
}

fn sql_err(what: impl Into<String>, e: tokio_postgres::Error) -> StageError {
    if e.as_db_error().is_some() {
        StageError::definite_from(
            what,
            "check the tandem role's SELECT privilege and the server log",
            e,
        )
    } else {
        StageError::transient(what, e)
    }
}

impl PgSnapshot {
    /// Create tandem's slot with an exported snapshot, import it, and prepare to read
    /// `tables`. Returns the position streaming must start from (the slot's consistent
    /// point). The slot must not exist yet: an initial sync starts a fresh history.
    pub async fn begin(
        ep: &EndpointConfig,
        password: Option<&Secret>,
        tables: &[TableId],
    ) -> Result<(PgSnapshot, Position), StageError> {
        let slot = ep.slot_name();
        let (catalog, catalog_task) =
            crate::connect::connect(ep, password, "tandem-snapshot").await?;
        replication::ensure_publication(&catalog, ep.publication_name(), tables).await?;
        if replication::read_slot(&catalog, slot).await?.is_some() {
            catalog_task.abort();
            return Err(StageError::definite(
                format!("Replication slot {slot:?} already exists, so no consistent snapshot can be taken with it"),
                "an initial sync creates its own slot: drop the old one (SELECT pg_drop_replication_slot(...)) \
                 and tandem's checkpoint for this direction, or resume streaming instead",
            ));
        }
        let version = replication::server_version(&catalog).await?;
        catalog_task.abort();

        let cfg = replication::transport_config(ep, password, Lsn(0))?;
        let mut repl = ReplicationClient::connect_gated(cfg).await.map_err(|e| {
            replication::transport_error("Cannot open the replication connection", e)
        })?;
        let command = if version >= 150_000 {
            format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL {} (SNAPSHOT 'export')",
                quote_ident(slot),
                replication::PLUGIN
            )
        } else {
            format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL {} EXPORT_SNAPSHOT",
                quote_ident(slot),
                replication::PLUGIN
            )
        };
        let rows = repl
            .simple_query(&command)
            .await
            .map_err(|e| replication::transport_error("Cannot create the replication slot", e))?;
        // Columns: slot_name, consistent_point, snapshot_name, output_plugin.
        let field = |i: usize| -> Option<String> {
            let cell = rows.first()?.get(i)?.as_ref()?;
            String::from_utf8(cell.to_vec()).ok()
        };
        let bad_reply = || {
            StageError::definite(
                "The server's reply to CREATE_REPLICATION_SLOT is incomplete",
                "report this with the server version",
            )
        };
        let consistent: Lsn = field(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad_reply)?;
        let snapshot_name = field(2).ok_or_else(bad_reply)?;

        // Import before the replication session does anything else or closes.
        let (client, task) = crate::connect::connect(ep, password, "tandem-snapshot").await?;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                quote_literal(&snapshot_name)
            ))
            .await
            .map_err(|e| sql_err("Cannot import the exported snapshot", e))?;
        drop(repl);
        tracing::info!(slot, consistent_point = %consistent, snapshot = snapshot_name, "snapshot exported and imported");

        let mut snap = PgSnapshot {
            client,
            task,
            tables: HashMap::new(),
            chunk_rows: DEFAULT_CHUNK_ROWS,
        };
        let enums: HashMap<u32, Vec<String>> = replication::enum_labels(&snap.client, None)
            .await?
            .into_iter()
            .collect();
        for t in tables {
            let copy = snap.describe(t, &enums).await?;
            snap.tables.insert(t.clone(), copy);
        }
        Ok((snap, Position::PgLsn { lsn: consistent }))
    }

    /// Rows per chunk (at least 1).
    pub fn with_chunk_rows(mut self, n: usize) -> Self {
        self.chunk_rows = n.max(1);
        self
    }

    /// The schema rows of `table` are decoded with — the same shape the stream's
    /// Relation message produces.
    pub fn schema(&self, table: &TableId) -> Option<Arc<TableSchema>> {
        self.tables.get(table).map(|t| Arc::clone(&t.schema))
    }

    /// The columns (indexes into the schema's) `table` is copied in the order of.
    pub fn order_key(&self, table: &TableId) -> Option<&[usize]> {
        self.tables.get(table).map(|t| t.order_key.as_slice())
    }

    pub fn progress(&self, table: &TableId) -> Option<SnapshotProgress> {
        self.tables.get(table).map(|t| t.progress)
    }

    /// Continue the copy of `table` after the row whose key columns (in key order) hold
    /// `key` — e.g. the last key a crashed copy delivered.
    pub fn resume_after(&mut self, table: &TableId, key: &[Value]) -> Result<(), StageError> {
        let copy = self.tables.get_mut(table).ok_or_else(|| unknown(table))?;
        let texts: Option<Vec<String>> = key.iter().map(types::encode_text).collect();
        match texts {
            Some(t) if t.len() == copy.order_key.len() => {
                copy.last_key = Some(t);
                Ok(())
            }
            _ => Err(StageError::definite(
                format!("The resume key for {table} does not match its primary key"),
                "pass one non-NULL value per primary key column",
            )),
        }
    }

    /// The next chunk of `table` in key order; `None` when the table is done.
    pub async fn next_chunk(&mut self, table: &TableId) -> Result<Option<Vec<Row>>, StageError> {
        let chunk_rows = self.chunk_rows;
        let copy = self.tables.get_mut(table).ok_or_else(|| unknown(table))?;
        if copy.progress.done {
            return Ok(None);
        }
        let schema = Arc::clone(&copy.schema);
        let cols: Vec<String> = schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let key_cols: Vec<String> = copy
            .order_key
            .iter()
            .filter_map(|i| cols.get(*i).cloned())
            .collect();
        let mut sql = format!(
            "SELECT {} FROM {}.{}",
            cols.join(", "),
            quote_ident(&table.schema),
            quote_ident(&table.name)
        );
        if let Some(last) = &copy.last_key {
            let literals: Vec<String> = last
                .iter()
                .zip(&copy.order_key)
                .map(|(v, i)| {
                    format!(
                        "{}::{}",
                        quote_literal(v),
                        copy.sql_types.get(*i).map_or("text", String::as_str)
                    )
                })
                .collect();
            sql.push_str(&format!(
                " WHERE ({}) > ({})",
                key_cols.join(", "),
                literals.join(", ")
            ));
        }
        sql.push_str(&format!(
            " ORDER BY {} LIMIT {chunk_rows}",
            key_cols.join(", ")
        ));
        let messages = self
            .client
            .simple_query(&sql)
            .await
            .map_err(|e| sql_err(format!("Cannot read {table}"), e))?;
        let mut rows = Vec::with_capacity(chunk_rows.min(messages.len()));
        let mut last_row = None;
        for m in &messages {
            let SimpleQueryMessage::Row(r) = m else {
                continue;
            };
            let mut cells = Vec::with_capacity(schema.columns.len());
            for (i, (col, oid)) in schema.columns.iter().zip(&copy.type_oids).enumerate() {
                let value = match r.get(i) {
                    None => Value::Null,
                    Some(text) => {
                        types::decode_text(&col.column_type, *oid, text).map_err(|e| {
                            StageError::definite_from(
                                format!("Cannot decode {table}.{} in the snapshot", col.name),
                                "report this with the column's type",
                                e,
                            )
                        })?
                    }
                };
                cells.push(Cell::Value(value));
            }
            last_row = Some(r);
            rows.push(Row(cells));
        }
        // Only the chunk's last key is kept: copying every row's was a string per row.
        let last_key: Option<Vec<String>> = last_row.map(|r| {
            copy.order_key
                .iter()
                .map(|i| r.get(*i).unwrap_or_default().to_owned())
                .collect()
        });
        copy.progress.rows_done += rows.len() as u64;
        if rows.len() < chunk_rows {
            copy.progress.done = true;
        }
        if last_key.is_some() {
            copy.last_key = last_key;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(rows))
    }

    /// End the snapshot transaction.
    pub async fn finish(self) -> Result<(), StageError> {
        let r = self
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| sql_err("Cannot end the snapshot", e));
        self.task.abort();
        r
    }

    /// Attribute numbers of the index of `rel` flagged `flag` (`indisprimary`, …).
    async fn key_attnums(&self, rel: u32, flag: &str, name: &str) -> Result<Vec<i16>, StageError> {
        let sql = format!(
            "SELECT u.k FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS u(k, n) \
             WHERE i.indrelid = $1 AND i.{flag} ORDER BY u.n"
        );
        let rows = self
            .client
            .query(&sql, &[&rel])
            .await
            .map_err(|e| sql_err(format!("Cannot read the keys of {name}"), e))?;
        Ok(rows.iter().map(|r| r.get::<_, i16>(0)).collect())
    }

    /// Read a table's columns, keys and size estimate inside the snapshot.
    async fn describe(
        &self,
        t: &TableId,
        enums: &HashMap<u32, Vec<String>>,
    ) -> Result<TableCopy, StageError> {
        let qualified = format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name));
        let rel = self
            .client
            .query_opt(
                "SELECT c.oid, c.relreplident::text, c.reltuples::float8 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[&t.schema, &t.name],
            )
            .await
            .map_err(|e| sql_err(format!("Cannot look up {qualified}"), e))?
            .ok_or_else(|| StageError::definite(format!("Table {t} does not exist"), "check the mapping's table name"))?;
        let rel_oid: u32 = rel.get(0);
        let identity: String = rel.get(1);
        let reltuples: f64 = rel.get(2);
        // The columns pgoutput sends: not dropped, not generated, in attribute order.
        let cols = self
            .client
            .query(
                "SELECT a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), \
                 a.attnotnull, a.attnum FROM pg_attribute a \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
                 ORDER BY a.attnum",
                &[&rel_oid],
            )
            .await
            .map_err(|e| sql_err(format!("Cannot read the columns of {qualified}"), e))?;
        let primary = self
            .key_attnums(rel_oid, "indisprimary", &qualified)
            .await?;
        let identity_index = self
            .key_attnums(rel_oid, "indisreplident", &qualified)
            .await?;
        let attnums: Vec<i16> = cols.iter().map(|r| r.get::<_, i16>(5)).collect();
        let positions = |nums: &[i16]| -> Vec<usize> {
            nums.iter()
                .filter_map(|n| attnums.iter().position(|a| a == n))
                .collect()
        };
        let order_key = if primary.is_empty() {
            positions(&identity_index)
        } else {
            positions(&primary)
        };
        if order_key.is_empty() {
            return Err(StageError::definite(
                format!("Table {t} has no primary key, so it cannot be copied in key order"),
                "add a primary key (or a unique replica identity index) to the table",
            ));
        }
        // The key as pgoutput's Relation message flags it.
        let key = match identity.as_str() {
            "f" => (0..cols.len()).collect(),
            "i" => positions(&identity_index),
            "d" => positions(&primary),
            _ => Vec::new(),
        };
        let mut columns = Vec::with_capacity(cols.len());
        let mut type_oids = Vec::with_capacity(cols.len());
        let mut sql_types = Vec::with_capacity(cols.len());
        let bad = |e| sql_err("Cannot read the columns of a mapped table", e);
        for r in &cols {
            let oid: u32 = r.try_get(1).map_err(bad)?;
            let typmod: i32 = r.try_get(2).map_err(bad)?;
            let formatted: String = r.try_get(3).map_err(bad)?;
            let native_type =
                types::builtin_type_name(oid, typmod).unwrap_or_else(|| formatted.clone());
            let column_type = match enums.get(&oid) {
                Some(labels) => types::enum_type(labels.clone()),
                None => types::column_type(oid, typmod, &native_type),
            };
            // The stream cannot know nullability; say the same here so both shapes agree.
            columns.push(ColumnSchema {
                name: r.try_get(0).map_err(bad)?,
                column_type,
                native_type,
                nullable: true,
            });
            type_oids.push(oid);
            sql_types.push(formatted);
        }
        let estimated_total = (reltuples >= 0.0).then_some(reltuples as u64);
        Ok(TableCopy {
            schema: Arc::new(TableSchema {
                table: t.clone(),
                columns,
                key,
            }),
            type_oids,
            sql_types,
            order_key,
            last_key: None,
            progress: SnapshotProgress {
                rows_done: 0,
                estimated_total,
                done: false,
            },
        })
    }
}

fn unknown(table: &TableId) -> StageError {
    StageError::definite(
        format!("Table {table} is not part of this snapshot"),
        "this is a bug in the caller: report it",
    )
}
