//! Applying resolved rows to PostgreSQL: the target side of the retail → inventory pipeline.
//!
//! Invariants this module keeps, and how:
//! - **Exactly once.** [`Sink::commit`] upserts the pipeline's row in `tandem.checkpoints`
//!   in the same transaction as the applied rows, then commits: after any crash the
//!   checkpoint names exactly the last source transaction whose rows are in the table.
//! - **No echo.** The session runs `pg_replication_origin_session_setup(origin)` once, when
//!   the sink opens; every transaction it commits then carries tandem's replication origin,
//!   and the PostgreSQL reader drops transactions with that origin. The origin belongs to
//!   the session: a sink whose connection dropped is dead and must be opened anew.
//! - **Nothing silent.** A database error is split by what helps: serialization failures,
//!   deadlocks and lost connections are transient (the applier retries the transaction);
//!   a constraint or data error is definite and names the table and constraint, so the
//!   applier can bisect the batch and dead-letter the row.
//!
//! Statement shape. Every value travels as text in one `text[]` array per column and is
//! cast to the column's type in SQL (`unnest($1::text[], …) AS v(p0, …)` then
//! `v.p0::numeric`), so one prepared statement serves a table and column set for any batch
//! size, and the text format is the one [`crate::types`] reads and writes. The cast names
//! the type without its modifier (`character varying`, not `varchar(10)`): assignment to
//! the column then enforces the modifier with an error, where an explicit cast would
//! truncate silently. Upserts use `INSERT … ON CONFLICT (key) DO UPDATE`; updates are
//! grouped by the set of columns they write; deletes match key arrays. Large insert batches
//! go through `COPY` into a temporary table instead (see [`COPY_THRESHOLD`]).
//!
//! Plans. The session runs with `plan_cache_mode = force_custom_plan`: every execution of
//! a prepared statement is planned for its actual arrays and the table's current size.
//! With the default (`auto`) PostgreSQL settles on a generic plan after five executions
//! and keeps it until the table is next analyzed; a sink started on an empty or small
//! table therefore kept reading current rows through a sequential scan and hash join as
//! the table grew, and fell behind a steady 10,000 changes/s stream (`BENCHMARKS.md`,
//! lag). Planning these statements costs far less than one scan of a large table.
//! Hash and merge joins are also off for this session: every join the sink issues looks
//! up keys of a batch in the target's primary or unique key index, for which a nested loop
//! over the index is right at any size, but PostgreSQL's default costs
//! (`random_page_cost = 4`) chose a sequential scan and hash join for 2,000 keys against a
//! table of ~100,000 rows: reading them took 99.9 ms instead of 5.9 ms, the `UPDATE … FROM`
//! 134.8 ms instead of 21.8 ms, and retail→inventory throughput doubled without it
//! (`BENCHMARKS.md`, "Where the time goes").
//!
//! `ON CONFLICT` refuses to touch one row twice in a statement, and statements grouped by
//! kind would reorder two writes of one key. A batch is therefore cut into segments in
//! which every key occurs once; segments run in order, and inside one the order of keys
//! does not matter (deletes run first, then updates, then inserts, so a unique value freed
//! by one row can be taken by another).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tandem_core::change::TableId;
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::sink::{
    CheckedWrite, ConflictRecord, DeadLetter, RowWrite, Sink, TargetTable, Unapplied,
};
use tandem_core::value::Value;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::ddl::{qualified, quote_ident};
use crate::types;

mod checked;
mod copy;
mod statements;

use statements::{
    assignments, column_list, columnar, encode_all, key_match, on_conflict_do_nothing, read_expr,
    segments, unnest, Segment,
};

/// Insert batches of at least this many rows go through `COPY` into a temporary table and
/// one `INSERT … SELECT … ON CONFLICT`; smaller ones through `unnest` arrays. Measured on
/// the kit server (100k rows, commit per batch, debug client, load ~5 on 2 cores; see
/// `tests/sink_apply_rate.rs`): both shapes ran at 28–82k rows/s for batches of 1k–20k,
/// with no consistent winner; `COPY` costs three extra round trips per batch, so it is
/// kept for the very large batches where the notes measured it ahead (107k/s at 20k).
pub const COPY_THRESHOLD: usize = 20_000;

/// One column of a target table as the sink casts and reads it.
#[derive(Clone, Debug)]
struct ColumnMeta {
    type_oid: u32,
    /// `format_type(atttypid, NULL)`: the type without modifier, for casts. Except where
    /// the bare name has a length of its own (`character` is `char(1)`, `bit` is `bit(1)`):
    /// their unlimited kin `bpchar` and `varbit` are used instead.
    cast: String,
}

/// A table's columns by name, read from `pg_attribute` on first use.
type TableMeta = HashMap<String, ColumnMeta>;

/// A [`Sink`] writing to one PostgreSQL database over one session.
pub struct PgSink {
    client: Client,
    connection: Option<JoinHandle<()>>,
    /// Schema of tandem's own tables (quoted once).
    schema: String,
    in_transaction: bool,
    tables: HashMap<TableId, TableMeta>,
    statements: HashMap<(TableId, String), Statement>,
    copy_threshold: usize,
    /// Staging tables for `COPY`, by table and column list: their number in the name.
    stages: HashMap<(TableId, String), usize>,
    /// Per table: whether `COPY` straight into it behaves as `INSERT` (asked once).
    direct_copy: HashMap<TableId, bool>,
}

impl Drop for PgSink {
    fn drop(&mut self) {
        if let Some(handle) = self.connection.take() {
            handle.abort();
        }
    }
}

impl PgSink {
    /// Take over `client` as the applying session: create tandem's tables in `schema` if
    /// missing and bind the session to the replication origin `origin` (created if
    /// missing). `connection` is the client's I/O task, ended with the sink.
    pub async fn open(
        client: Client,
        connection: Option<JoinHandle<()>>,
        origin: &str,
        schema: &str,
    ) -> Result<PgSink, StageError> {
        crate::ddl::ensure_tables(&client, schema).await?;
        setup_origin(&client, origin).await?;
        // See the module docs, "Plans".
        client
            .batch_execute(
                "SET plan_cache_mode = force_custom_plan; \
                 SET enable_hashjoin = off; SET enable_mergejoin = off",
            )
            .await
            .map_err(|e| classify("Cannot set the planner settings of the applying session", e))?;
        Ok(PgSink {
            client,
            connection,
            schema: quote_ident(schema),
            in_transaction: false,
            tables: HashMap::new(),
            statements: HashMap::new(),
            copy_threshold: COPY_THRESHOLD,
            stages: HashMap::new(),
            direct_copy: HashMap::new(),
        })
    }

    /// Connect to `ep` and open the sink with the endpoint's origin name and tandem's
    /// tables in [`crate::ddl::DEFAULT_SCHEMA`].
    pub async fn connect(
        ep: &EndpointConfig,
        password: Option<&Secret>,
    ) -> Result<PgSink, StageError> {
        let (client, task) = crate::connect::connect(ep, password, "tandem-applier").await?;
        PgSink::open(
            client,
            Some(task),
            ep.origin_name(),
            crate::ddl::DEFAULT_SCHEMA,
        )
        .await
    }

    /// The session, for reads outside the sink's transactions (tests, `verify`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Change the batch size from which inserts go through `COPY` (benchmarks).
    pub fn set_copy_threshold(&mut self, rows: usize) {
        self.copy_threshold = rows.max(1);
    }

    async fn meta(&mut self, table: &TableId) -> Result<&TableMeta, StageError> {
        if !self.tables.contains_key(table) {
            let rows = self
                .client
                .query(
                    "SELECT a.attname::text, a.atttypid,
                            CASE a.atttypid WHEN 1042 THEN 'bpchar' WHEN 1560 THEN 'varbit'
                                 ELSE format_type(a.atttypid, NULL) END
                     FROM pg_attribute a
                     WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                    &[&qualified(&table.schema, &table.name)],
                )
                .await
                .map_err(|e| classify(format!("Cannot read the columns of {table}"), e))?;
            let mut meta = TableMeta::new();
            for row in rows {
                let name: String = row.try_get(0).map_err(|e| classify("Bad catalog row", e))?;
                let type_oid: u32 = row.try_get(1).map_err(|e| classify("Bad catalog row", e))?;
                let cast: String = row.try_get(2).map_err(|e| classify("Bad catalog row", e))?;
                meta.insert(name, ColumnMeta { type_oid, cast });
            }
            self.tables.insert(table.clone(), meta);
        }
        self.tables
            .get(table)
            .ok_or_else(|| StageError::definite("Table metadata vanished", "report a bug"))
    }

    /// The columns of `target` with their catalog metadata, in `target`'s order.
    async fn columns(
        &mut self,
        target: &TargetTable,
    ) -> Result<Vec<(String, ColumnMeta)>, StageError> {
        let meta = self.meta(&target.table).await?;
        target
            .columns
            .iter()
            .map(|(name, _)| match meta.get(name) {
                Some(m) => Ok((name.clone(), m.clone())),
                None => Err(StageError::definite(
                    format!("Column {name:?} does not exist in {}", target.table),
                    "the table changed since tandem started; run tandem check and restart",
                )),
            })
            .collect()
    }

    async fn prepare(&mut self, table: &TableId, sql: String) -> Result<Statement, StageError> {
        let key = (table.clone(), sql);
        if let Some(s) = self.statements.get(&key) {
            return Ok(s.clone());
        }
        let stmt = self
            .client
            .prepare(&key.1)
            .await
            .map_err(|e| classify(format!("Cannot prepare a statement on {table}"), e))?;
        self.statements.insert(key, stmt.clone());
        Ok(stmt)
    }

    /// Forget what was cached about `table`: after an error it may have changed shape.
    fn forget(&mut self, table: &TableId) {
        self.tables.remove(table);
        self.statements.retain(|(t, _), _| t != table);
    }

    async fn run(
        &mut self,
        table: &TableId,
        sql: String,
        arrays: &[Vec<Option<String>>],
    ) -> Result<u64, StageError> {
        let stmt = self.prepare(table, sql).await?;
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(&stmt, &params)
            .await
            .map_err(|e| classify(format!("Writing to {table} failed"), e))
    }

    async fn write_segment(
        &mut self,
        target: &TargetTable,
        cols: &[(String, ColumnMeta)],
        seg: &Segment,
    ) -> Result<(), StageError> {
        let t = &target.table;
        let table = qualified(&t.schema, &t.name);
        if !seg.deletes.is_empty() {
            let key: Vec<usize> = target.key.clone();
            let arrays = columnar(&seg.deletes, key.len());
            let sql = format!(
                "DELETE FROM {table} AS d USING {} WHERE {}",
                unnest(key.len()),
                key_match(cols, &key)
            );
            self.run(t, sql, &arrays).await?;
        }
        for (set, rows) in &seg.updates {
            let key = &target.key;
            let width = key.len() + set.len();
            let arrays = columnar(rows, width);
            let assignments = assignments(cols, set, key.len());
            let sql = format!(
                "UPDATE {table} AS d SET {} FROM {} WHERE {}",
                assignments.join(", "),
                unnest(width),
                key_match(cols, key)
            );
            self.run(t, sql, &arrays).await?;
        }
        if seg.inserts.is_empty() {
            return Ok(());
        }
        if seg.inserts.len() >= self.copy_threshold {
            return copy::upsert(self, target, cols, &seg.inserts).await;
        }
        let arrays = columnar(&seg.inserts, cols.len());
        let select: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (_, m))| format!("v.p{i}::{}", m.cast))
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM {} {}",
            column_list(cols),
            select.join(", "),
            unnest(cols.len()),
            on_conflict_do_nothing(target, cols)
        );
        let inserted = self.run(t, sql, &arrays).await?;
        concurrent_insert_check(t, seg.inserts.len(), inserted)
    }

    fn require_transaction(&self, what: &str) -> Result<(), StageError> {
        if self.in_transaction {
            Ok(())
        } else {
            Err(StageError::definite(
                format!("{what} outside a transaction"),
                "report a bug: the applier must call begin first",
            ))
        }
    }
}

/// Every row of an insert segment has its own key, read as absent by the applier in this
/// transaction; fewer rows inserted means another writer inserted some of the keys since.
pub(crate) fn concurrent_insert_check(
    table: &TableId,
    expected: usize,
    inserted: u64,
) -> Result<(), StageError> {
    if inserted as usize == expected {
        return Ok(());
    }
    Err(StageError::Transient {
        what: format!(
            "{} of {expected} rows inserted into {table}: another writer inserted the same keys meanwhile; \
             retrying so the rows are merged as insert_exists",
            inserted
        ),
        source: None,
    })
}

/// Bind the session to `origin`, creating it once. Races with a concurrent creator are
/// harmless: the loser sees a unique violation and finds the origin on its next look.
async fn setup_origin(client: &Client, origin: &str) -> Result<(), StageError> {
    let what = format!("Cannot set up the replication origin {origin:?}");
    let advice = "GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), \
                  pg_replication_origin_session_setup(text) TO the tandem role (or make it superuser)";
    let exists = client
        .query_one(
            "SELECT pg_replication_origin_oid($1) IS NOT NULL",
            &[&origin],
        )
        .await
        .map_err(|e| classify(what.clone(), e))?;
    if !exists
        .try_get::<_, bool>(0)
        .map_err(|e| classify(what.clone(), e))?
    {
        if let Err(e) = client
            .execute("SELECT pg_replication_origin_create($1)", &[&origin])
            .await
        {
            if e.code() != Some(&SqlState::UNIQUE_VIOLATION) {
                return Err(origin_error(what, advice, e));
            }
        }
    }
    client
        .execute("SELECT pg_replication_origin_session_setup($1)", &[&origin])
        .await
        .map_err(|e| origin_error(what, advice, e))?;
    Ok(())
}

fn origin_error(what: String, advice: &str, e: tokio_postgres::Error) -> StageError {
    match e.code() {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => {
            StageError::definite_from(what, advice, e)
        }
        // Another session holds the origin: a second tandem applier, or our own previous
        // session whose backend has not noticed yet that its client is gone.
        Some(c) if *c == SqlState::OBJECT_IN_USE => StageError::transient(
            format!("{what}: another session is using it (a second tandem running?)"),
            e,
        ),
        _ => classify(what, e),
    }
}

/// Sort a database error into transient and definite.
pub(crate) fn classify(what: impl Into<String>, e: tokio_postgres::Error) -> StageError {
    let what = what.into();
    let Some(db) = e.as_db_error() else {
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            return StageError::transient(
                format!("{what}: the connection to PostgreSQL was lost"),
                e,
            );
        }
        return StageError::definite_from(what, "see the cause; this is likely a bug in tandem", e);
    };
    let code = db.code().code().to_owned();
    let relation = match (db.schema(), db.table()) {
        (Some(s), Some(t)) => format!("{s}.{t}"),
        (None, Some(t)) => t.to_owned(),
        _ => String::from("the table"),
    };
    match code.as_str() {
        "40001" => StageError::transient(format!("{what}: serialization failure"), e),
        "40P01" => StageError::transient(format!("{what}: deadlock"), e),
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
            StageError::transient(format!("{what}: the server is unavailable ({c})"), e)
        }
        "55P03" | "55006" => StageError::transient(format!("{what}: the object is locked ({code})"), e),
        c if c.starts_with("23") => {
            let constraint = db.constraint().unwrap_or("a constraint").to_owned();
            StageError::definite_from(
                format!("{what}: a row violates {constraint} on {relation} ({c})"),
                format!(
                    "the row goes to the dead letters; fix the data on the source or relax {constraint} on {relation}"
                ),
                e,
            )
        }
        c if c.starts_with("22") => StageError::definite_from(
            format!("{what}: {relation} rejects a value ({c})"),
            "the row goes to the dead letters; check the column types of the mapping",
            e,
        ),
        "42501" => StageError::definite_from(
            format!("{what}: permission denied"),
            "GRANT SELECT, INSERT, UPDATE, DELETE on the mapped tables to tandem's role (tandem check lists them)",
            e,
        ),
        c => StageError::definite_from(
            format!("{what} ({c})"),
            "run tandem check; the table may have changed since tandem started",
            e,
        ),
    }
}

#[async_trait]
impl Sink for PgSink {
    async fn checkpoint_text(&mut self, key: &str) -> Result<Option<String>, StageError> {
        let sql = format!(
            "SELECT position FROM {}.checkpoints WHERE pipeline = $1",
            self.schema
        );
        let row = self
            .client
            .query_opt(&sql, &[&key])
            .await
            .map_err(|e| classify("Cannot read the checkpoint", e))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| classify("Cannot read the checkpoint", e))
    }

    async fn begin(&mut self) -> Result<(), StageError> {
        if self.in_transaction {
            return Err(StageError::definite(
                "begin inside a transaction",
                "report a bug: the applier must commit or roll back first",
            ));
        }
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| classify("Cannot begin", e))?;
        self.in_transaction = true;
        Ok(())
    }

    async fn fetch_current(
        &mut self,
        table: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Option<Vec<Value>>>, StageError> {
        self.require_transaction("fetch_current")?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.iter().any(|k| k.len() != table.key.len()) {
            return Err(StageError::definite(
                format!(
                    "A key for {} does not have {} values",
                    table.table,
                    table.key.len()
                ),
                "report a bug: the applier built a malformed key",
            ));
        }
        let cols = match self.columns(table).await {
            Ok(c) => c,
            Err(e) => {
                self.forget(&table.table);
                return Err(e);
            }
        };
        let width = table.key.len();
        let select: Vec<String> = cols.iter().map(|(n, m)| read_expr(n, m.type_oid)).collect();
        let names: Vec<String> = (0..width).map(|i| format!("p{i}")).collect();
        let arrays_sql: Vec<String> = (1..=width).map(|i| format!("${i}::text[]")).collect();
        let sql = format!(
            "SELECT v.ord, {} FROM unnest({}) WITH ORDINALITY AS v({}, ord) JOIN {} AS d ON {} FOR UPDATE OF d",
            select.join(", "),
            arrays_sql.join(", "),
            names.join(", "),
            qualified(&table.table.schema, &table.table.name),
            key_match(&cols, &table.key)
        );
        let rows: Vec<Vec<Option<String>>> = keys.iter().map(encode_all).collect();
        let arrays = columnar(&rows, width);
        let stmt = self.prepare(&table.table, sql).await?;
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let result = match self.client.query(&stmt, &params).await {
            Ok(r) => r,
            Err(e) => {
                self.forget(&table.table);
                return Err(classify(
                    format!("Reading current rows of {} failed", table.table),
                    e,
                ));
            }
        };
        let mut out: Vec<Option<Vec<Value>>> = vec![None; keys.len()];
        let what = format!("Cannot read the current rows of {}", table.table);
        for row in result {
            let ord: i64 = row.try_get(0).map_err(|e| classify(what.clone(), e))?;
            let mut values = Vec::with_capacity(cols.len());
            for (i, ((name, m), (_, ty))) in cols.iter().zip(&table.columns).enumerate() {
                let text: Option<&str> =
                    row.try_get(i + 1).map_err(|e| classify(what.clone(), e))?;
                values.push(match text {
                    None => Value::Null,
                    Some(t) => types::decode_text(ty, m.type_oid, t).map_err(|e| {
                        StageError::definite_from(
                            format!("{what}: column {name:?}"),
                            "the column's type may have changed; run tandem check",
                            e,
                        )
                    })?,
                });
            }
            let slot = usize::try_from(ord)
                .ok()
                .and_then(|o| o.checked_sub(1))
                .and_then(|o| out.get_mut(o));
            if let Some(slot) = slot {
                *slot = Some(values);
            }
        }
        Ok(out)
    }

    async fn is_empty(&mut self, table: &TargetTable) -> Result<bool, StageError> {
        self.require_transaction("is_empty")?;
        let t = &table.table;
        let sql = format!(
            "SELECT NOT EXISTS (SELECT 1 FROM {})",
            qualified(&t.schema, &t.name)
        );
        let what = format!("Cannot read whether {t} is empty");
        let row = self
            .client
            .query_one(sql.as_str(), &[])
            .await
            .map_err(|e| classify(what.clone(), e))?;
        row.try_get(0).map_err(|e| classify(what, e))
    }

    async fn write(&mut self, table: &TargetTable, writes: &[RowWrite]) -> Result<(), StageError> {
        self.require_transaction("write")?;
        if writes.is_empty() {
            return Ok(());
        }
        // An initial copy's batches: inserts only, keys distinct, straight to `COPY`.
        if let Some(batch) = copy::bulk_inserts(table, writes, self.copy_threshold) {
            let result = async {
                let cols = self.columns(table).await?;
                copy::insert(self, table, &cols, &batch).await
            }
            .await;
            if result.is_err() {
                self.forget(&table.table);
            }
            return result;
        }
        let segments = segments(table, writes)?;
        let result = async {
            let cols = self.columns(table).await?;
            for seg in &segments {
                self.write_segment(table, &cols, seg).await?;
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.forget(&table.table);
        }
        result
    }

    async fn write_if_unchanged(
        &mut self,
        table: &TargetTable,
        writes: Vec<CheckedWrite>,
    ) -> Result<Unapplied, StageError> {
        self.require_transaction("write_if_unchanged")?;
        self.write_checked(table, &writes).await.map(Unapplied::Now)
    }

    async fn record(
        &mut self,
        conflicts: &[ConflictRecord],
        dead_letters: &[DeadLetter],
    ) -> Result<(), StageError> {
        self.require_transaction("record")?;
        if !conflicts.is_empty() {
            let text = |f: fn(&ConflictRecord) -> &String| {
                conflicts.iter().map(f).cloned().collect::<Vec<String>>()
            };
            let json = |f: fn(&ConflictRecord) -> Option<&serde_json::Value>| {
                conflicts
                    .iter()
                    .map(|c| f(c).cloned())
                    .collect::<Vec<Option<serde_json::Value>>>()
            };
            let (mapping, kind, strategy, decision) = (
                text(|c| &c.mapping),
                text(|c| &c.kind),
                text(|c| &c.strategy),
                text(|c| &c.decision),
            );
            let key: Vec<serde_json::Value> = conflicts.iter().map(|c| c.key.clone()).collect();
            let (before, after, current) = (
                json(|c| c.before.as_ref()),
                json(|c| c.after.as_ref()),
                json(|c| c.current.as_ref()),
            );
            let at: Vec<Option<DateTime<Utc>>> =
                conflicts.iter().map(|c| c.source_commit_time).collect();
            let sql = format!(
                "INSERT INTO {}.conflicts (mapping, kind, strategy, decision, key, before, after, current, source_commit_time)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[],
                                      $7::jsonb[], $8::jsonb[], $9::timestamptz[])",
                self.schema
            );
            self.client
                .execute(
                    &sql,
                    &[
                        &mapping, &kind, &strategy, &decision, &key, &before, &after, &current, &at,
                    ],
                )
                .await
                .map_err(|e| classify("Cannot record conflicts", e))?;
        }
        if !dead_letters.is_empty() {
            let text = |f: fn(&DeadLetter) -> &String| {
                dead_letters.iter().map(f).cloned().collect::<Vec<String>>()
            };
            let (mapping, reason, position) = (
                text(|d| &d.mapping),
                text(|d| &d.reason),
                text(|d| &d.source_position),
            );
            let key: Vec<serde_json::Value> = dead_letters.iter().map(|d| d.key.clone()).collect();
            let change: Vec<serde_json::Value> =
                dead_letters.iter().map(|d| d.change.clone()).collect();
            let sql = format!(
                "INSERT INTO {}.dead_letters (mapping, key, change, reason, source_position)
                 SELECT * FROM unnest($1::text[], $2::jsonb[], $3::jsonb[], $4::text[], $5::text[])",
                self.schema
            );
            self.client
                .execute(&sql, &[&mapping, &key, &change, &reason, &position])
                .await
                .map_err(|e| classify("Cannot record dead letters", e))?;
        }
        Ok(())
    }

    async fn commit_text(
        &mut self,
        pipeline: &str,
        text: &str,
        source_commit_time: DateTime<Utc>,
    ) -> Result<(), StageError> {
        self.require_transaction("commit")?;
        let sql = format!(
            "INSERT INTO {}.checkpoints (pipeline, position, source_commit_time, applied_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (pipeline) DO UPDATE
             SET position = EXCLUDED.position, source_commit_time = EXCLUDED.source_commit_time,
                 applied_at = EXCLUDED.applied_at",
            self.schema
        );
        if let Err(e) = self
            .client
            .execute(&sql, &[&pipeline, &text, &source_commit_time])
            .await
        {
            return Err(classify("Cannot write the checkpoint", e));
        }
        // Whatever COMMIT answers, the transaction is over: a failed commit rolled back.
        self.in_transaction = false;
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| classify("Commit failed", e))
    }

    async fn rollback(&mut self) -> Result<(), StageError> {
        self.in_transaction = false;
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|e| classify("Rollback failed", e))
    }
}
