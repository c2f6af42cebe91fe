//! The operator's access to the PostgreSQL endpoint: tandem's conflict and dead-letter
//! tables ([`PgLedger`], the [`Ledger`] the `tandem conflicts` / `tandem dead-letters`
//! commands use) and the removal of everything tandem created ([`TeardownPlan`]).
//!
//! Row writes go through SQL text with every value bound as text and cast to the column's
//! type without its modifier (`$1::text::numeric`), as the sink does: assignment then
//! enforces the modifier with an error where an explicit cast would truncate. They run in
//! their own transaction, untagged ([`WriteMode::Application`], replicated like any
//! application write) or under tandem's replication origin ([`WriteMode::Tandem`], dropped
//! by tandem's reader) — which only works while no `tandem run` holds the origin, since a
//! PostgreSQL origin belongs to one session at a time; [`PgLedger::can_tag`] says.
//!
//! Teardown never happens implicitly: the plan lists exactly what exists, the caller asks
//! the DBA, and a slot still read by a process is refused with that process's PID.

use std::collections::HashMap;

use async_trait::async_trait;
use tandem_core::change::TableId;
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::ledger::{Ledger, ListFilter, StoredConflict, StoredDeadLetter, WriteMode};
use tandem_core::sink::{RowWrite, TargetTable};
use tandem_core::value::Value;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::ddl::{qualified, quote_ident, DEFAULT_SCHEMA};
use crate::sink::classify;
use crate::types;

/// tandem's tables in one PostgreSQL database, opened for the operator commands.
pub struct PgLedger {
    client: Client,
    task: JoinHandle<()>,
    /// Schema of tandem's tables, unquoted.
    schema: String,
    origin: String,
    /// Cast type per column, per table (see the module docs).
    casts: HashMap<TableId, HashMap<String, (u32, String)>>,
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The tables tandem creates in its schema (see [`crate::ddl`]).
pub const TANDEM_TABLES: [&str; 3] = ["checkpoints", "conflicts", "dead_letters"];

const CONFLICT_COLUMNS: &str = "id, at, mapping, kind, strategy, decision, key, before, after, \
     current, source_commit_time, resolved_at, resolution";
const DEAD_LETTER_COLUMNS: &str =
    "id, at, mapping, key, change, reason, source_position, retried_at";

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StageError> {
    row.try_get(i)
        .map_err(|e| classify("Reading one of tandem's tables", e))
}

fn conflict(row: &Row) -> Result<StoredConflict, StageError> {
    Ok(StoredConflict {
        id: get(row, 0)?,
        at: get(row, 1)?,
        mapping: get(row, 2)?,
        kind: get(row, 3)?,
        strategy: get(row, 4)?,
        decision: get(row, 5)?,
        key: get(row, 6)?,
        before: get(row, 7)?,
        after: get(row, 8)?,
        current: get(row, 9)?,
        source_commit_time: get(row, 10)?,
        resolved_at: get(row, 11)?,
        resolution: get(row, 12)?,
    })
}

fn dead_letter(row: &Row) -> Result<StoredDeadLetter, StageError> {
    Ok(StoredDeadLetter {
        id: get(row, 0)?,
        at: get(row, 1)?,
        mapping: get(row, 2)?,
        key: get(row, 3)?,
        change: get(row, 4)?,
        reason: get(row, 5)?,
        source_position: get(row, 6)?,
        retried_at: get(row, 7)?,
    })
}

fn limit(filter: &ListFilter) -> i64 {
    i64::try_from(filter.limit).unwrap_or(i64::MAX)
}

impl PgLedger {
    /// Connect to `ep` as the operator's session.
    pub async fn connect(
        ep: &EndpointConfig,
        password: Option<&Secret>,
    ) -> Result<Self, StageError> {
        let (client, task) = crate::connect::connect(ep, password, "tandem admin").await?;
        Ok(PgLedger {
            client,
            task,
            schema: DEFAULT_SCHEMA.to_owned(),
            origin: ep.origin_name().to_owned(),
            casts: HashMap::new(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether tandem's tables exist here (before the first `tandem run` they do not).
    async fn has_table(&self, name: &str) -> Result<bool, StageError> {
        let row = self
            .client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&qualified(&self.schema, name)],
            )
            .await
            .map_err(|e| classify("Looking for tandem's tables", e))?;
        get(&row, 0)
    }

    fn table(&self, name: &str) -> String {
        qualified(&self.schema, name)
    }

    async fn casts(
        &mut self,
        table: &TableId,
    ) -> Result<&HashMap<String, (u32, String)>, StageError> {
        if !self.casts.contains_key(table) {
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
            let mut m = HashMap::new();
            for r in &rows {
                m.insert(
                    get::<String>(r, 0)?,
                    (get::<u32>(r, 1)?, get::<String>(r, 2)?),
                );
            }
            self.casts.insert(table.clone(), m);
        }
        self.casts
            .get(table)
            .ok_or_else(|| StageError::definite("Table metadata vanished", "report a bug"))
    }

    /// `"col"::text::type` pieces for `table`'s columns, in order.
    async fn column_casts(
        &mut self,
        table: &TargetTable,
    ) -> Result<Vec<(String, u32, String)>, StageError> {
        let id = table.table.clone();
        let casts = self.casts(&id).await?;
        table
            .columns
            .iter()
            .map(|(name, _)| {
                casts
                    .get(name)
                    .map(|(oid, cast)| (quote_ident(name), *oid, cast.clone()))
                    .ok_or_else(|| {
                        StageError::definite(
                            format!("Column {name:?} does not exist in {id}"),
                            "the table changed since the row was recorded; run tandem check",
                        )
                    })
            })
            .collect()
    }

    /// Whether writes can be tagged with tandem's replication origin now: not while a
    /// `tandem run` holds it.
    pub async fn can_tag(&self) -> bool {
        self.setup_origin().await.is_ok()
            && self
                .client
                .execute("SELECT pg_replication_origin_session_reset()", &[])
                .await
                .is_ok()
    }

    async fn setup_origin(&self) -> Result<(), StageError> {
        let what = format!(
            "Cannot write under tandem's replication origin {:?}",
            self.origin
        );
        self.client
            .execute(
                "SELECT pg_replication_origin_create($1) WHERE pg_replication_origin_oid($1) IS NULL",
                &[&self.origin],
            )
            .await
            .map_err(|e| classify(what.clone(), e))?;
        self.client
            .execute(
                "SELECT pg_replication_origin_session_setup($1)",
                &[&self.origin],
            )
            .await
            .map_err(|e| {
                StageError::definite_from(
                    what,
                    "a running `tandem run` holds the origin; stop it and try again",
                    e,
                )
            })?;
        Ok(())
    }

    async fn write_all(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
    ) -> Result<(), StageError> {
        let cols = self.column_casts(table).await?;
        let t = qualified(&table.table.schema, &table.table.name);
        let cast = |i: usize, p: usize| -> String {
            cols.get(i)
                .map(|(_, _, c)| format!("${p}::text::{c}"))
                .unwrap_or_default()
        };
        let name = |i: usize| cols.get(i).map(|(n, _, _)| n.clone()).unwrap_or_default();
        for w in writes {
            let mut params: Vec<Option<String>> = Vec::new();
            let (sql, must_match) = match w {
                RowWrite::Insert { values } => {
                    let mut names = Vec::new();
                    let mut exprs = Vec::new();
                    for (i, v) in values.iter().enumerate() {
                        params.push(types::encode_text(v));
                        names.push(name(i));
                        exprs.push(cast(i, params.len()));
                    }
                    (
                        format!(
                            "INSERT INTO {t} ({}) VALUES ({})",
                            names.join(", "),
                            exprs.join(", ")
                        ),
                        true,
                    )
                }
                RowWrite::Update { key, columns } => {
                    let mut sets = Vec::new();
                    for (i, v) in columns {
                        params.push(types::encode_text(v));
                        sets.push(format!("{} = {}", name(*i), cast(*i, params.len())));
                    }
                    let cond = self.key_condition(table, key, &mut params, &name, &cast)?;
                    (
                        format!("UPDATE {t} SET {} WHERE {cond}", sets.join(", ")),
                        true,
                    )
                }
                RowWrite::Delete { key } => {
                    let cond = self.key_condition(table, key, &mut params, &name, &cast)?;
                    (format!("DELETE FROM {t} WHERE {cond}"), false)
                }
            };
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let n = self
                .client
                .execute(&sql, &refs)
                .await
                .map_err(|e| classify(format!("Writing to {}", table.table), e))?;
            if n == 0 && must_match {
                return Err(StageError::definite(
                    format!("No row of {} has this key any more", table.table),
                    "the row was deleted since; compare both sides and write it by hand",
                ));
            }
        }
        Ok(())
    }

    fn key_condition(
        &self,
        table: &TargetTable,
        key: &[Value],
        params: &mut Vec<Option<String>>,
        name: &dyn Fn(usize) -> String,
        cast: &dyn Fn(usize, usize) -> String,
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
        for (&i, v) in table.key.iter().zip(key) {
            params.push(types::encode_text(v));
            parts.push(format!("{} = {}", name(i), cast(i, params.len())));
        }
        Ok(parts.join(" AND "))
    }
}

#[async_trait]
impl Ledger for PgLedger {
    async fn conflicts(&mut self, filter: &ListFilter) -> Result<Vec<StoredConflict>, StageError> {
        if !self.has_table("conflicts").await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM {} \
             WHERE ($1::text IS NULL OR mapping = $1) \
               AND ($2 OR (decision = 'parked' AND resolved_at IS NULL)) \
             ORDER BY id DESC LIMIT $3",
            self.table("conflicts")
        );
        let rows = self
            .client
            .query(&sql, &[&filter.mapping, &filter.all, &limit(filter)])
            .await
            .map_err(|e| classify("Reading tandem's conflicts", e))?;
        rows.iter().map(conflict).collect()
    }

    async fn conflict(&mut self, id: i64) -> Result<Option<StoredConflict>, StageError> {
        if !self.has_table("conflicts").await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {CONFLICT_COLUMNS} FROM {} WHERE id = $1",
            self.table("conflicts")
        );
        let row = self
            .client
            .query_opt(&sql, &[&id])
            .await
            .map_err(|e| classify("Reading tandem's conflicts", e))?;
        row.as_ref().map(conflict).transpose()
    }

    async fn mark_resolved(&mut self, id: i64, resolution: &str) -> Result<bool, StageError> {
        let sql = format!(
            "UPDATE {} SET resolved_at = now(), resolution = $2 WHERE id = $1 AND resolved_at IS NULL",
            self.table("conflicts")
        );
        let n = self
            .client
            .execute(&sql, &[&id, &resolution])
            .await
            .map_err(|e| classify("Marking the conflict resolved", e))?;
        Ok(n == 1)
    }

    async fn dead_letters(
        &mut self,
        filter: &ListFilter,
    ) -> Result<Vec<StoredDeadLetter>, StageError> {
        if !self.has_table("dead_letters").await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM {} \
             WHERE ($1::text IS NULL OR mapping = $1) AND ($2 OR retried_at IS NULL) \
             ORDER BY id DESC LIMIT $3",
            self.table("dead_letters")
        );
        let rows = self
            .client
            .query(&sql, &[&filter.mapping, &filter.all, &limit(filter)])
            .await
            .map_err(|e| classify("Reading tandem's dead letters", e))?;
        rows.iter().map(dead_letter).collect()
    }

    async fn dead_letter(&mut self, id: i64) -> Result<Option<StoredDeadLetter>, StageError> {
        if !self.has_table("dead_letters").await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM {} WHERE id = $1",
            self.table("dead_letters")
        );
        let row = self
            .client
            .query_opt(&sql, &[&id])
            .await
            .map_err(|e| classify("Reading tandem's dead letters", e))?;
        row.as_ref().map(dead_letter).transpose()
    }

    async fn mark_retried(&mut self, id: i64) -> Result<(), StageError> {
        let sql = format!(
            "UPDATE {} SET retried_at = now() WHERE id = $1",
            self.table("dead_letters")
        );
        self.client
            .execute(&sql, &[&id])
            .await
            .map_err(|e| classify("Marking the dead letter retried", e))?;
        Ok(())
    }

    async fn set_reason(&mut self, id: i64, reason: &str) -> Result<(), StageError> {
        let sql = format!(
            "UPDATE {} SET reason = $2 WHERE id = $1",
            self.table("dead_letters")
        );
        self.client
            .execute(&sql, &[&id, &reason])
            .await
            .map_err(|e| classify("Recording the dead letter's new reason", e))?;
        Ok(())
    }

    async fn read_row(
        &mut self,
        table: &TargetTable,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, StageError> {
        let cols = self.column_casts(table).await?;
        let name = |i: usize| cols.get(i).map(|(n, _, _)| n.clone()).unwrap_or_default();
        let cast = |i: usize, p: usize| {
            cols.get(i)
                .map(|(_, _, c)| format!("${p}::text::{c}"))
                .unwrap_or_default()
        };
        let mut params = Vec::new();
        let cond = self.key_condition(table, key, &mut params, &name, &cast)?;
        let select: Vec<String> = cols.iter().map(|(n, _, _)| format!("{n}::text")).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            select.join(", "),
            qualified(&table.table.schema, &table.table.name)
        );
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let Some(row) = self
            .client
            .query_opt(&sql, &refs)
            .await
            .map_err(|e| classify(format!("Reading a row of {}", table.table), e))?
        else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(cols.len());
        for (i, ((cname, ty), (_, oid, _))) in table.columns.iter().zip(&cols).enumerate() {
            let text: Option<String> = get(&row, i)?;
            out.push(match text {
                None => Value::Null,
                Some(t) => types::decode_text(ty, *oid, &t).map_err(|e| {
                    StageError::definite_from(
                        format!("Reading column {cname} of {}", table.table),
                        "the column's type changed; run tandem check",
                        e,
                    )
                })?,
            });
        }
        Ok(Some(out))
    }

    async fn write_rows(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
        mode: WriteMode,
    ) -> Result<(), StageError> {
        if mode == WriteMode::Tandem {
            self.setup_origin().await?;
        }
        let result =
            async {
                self.client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(|e| classify("Opening a transaction", e))?;
                match self.write_all(table, writes).await {
                    Ok(()) => self.client.batch_execute("COMMIT").await.map_err(|e| {
                        classify(format!("Committing the write to {}", table.table), e)
                    }),
                    Err(e) => {
                        let _ = self.client.batch_execute("ROLLBACK").await;
                        Err(e)
                    }
                }
            }
            .await;
        if mode == WriteMode::Tandem {
            let _ = self
                .client
                .execute("SELECT pg_replication_origin_session_reset()", &[])
                .await;
        }
        result
    }
}

/// What `tandem teardown` would remove from the PostgreSQL endpoint: only what exists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeardownPlan {
    /// The slot's name and the PID reading it, if any.
    pub slot: Option<(String, Option<i32>)>,
    pub publication: Option<String>,
    pub origin: Option<String>,
    /// tandem's schema, and tandem's tables in it.
    pub schema: Option<(String, Vec<String>)>,
}

impl TeardownPlan {
    /// Read what exists.
    pub async fn read(client: &Client, ep: &EndpointConfig) -> Result<TeardownPlan, StageError> {
        let slot_name = ep.slot_name();
        let slot = client
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot_name],
            )
            .await
            .map_err(|e| classify("Reading pg_replication_slots", e))?
            .map(|r| get::<Option<i32>>(&r, 0))
            .transpose()?
            .map(|pid| (slot_name.to_owned(), pid));
        let publication = client
            .query_opt(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&ep.publication_name()],
            )
            .await
            .map_err(|e| classify("Reading pg_publication", e))?
            .map(|_| ep.publication_name().to_owned());
        let origin = client
            .query_one(
                "SELECT pg_replication_origin_oid($1) IS NOT NULL",
                &[&ep.origin_name()],
            )
            .await
            .map_err(|e| classify("Reading the replication origins", e))?;
        let origin = get::<bool>(&origin, 0)?.then(|| ep.origin_name().to_owned());
        let schema = client
            .query_opt(
                "SELECT ARRAY(SELECT c.relname::text FROM pg_class c \
                              WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p') ORDER BY 1) \
                 FROM pg_namespace n WHERE n.nspname = $1",
                &[&DEFAULT_SCHEMA],
            )
            .await
            .map_err(|e| classify("Reading pg_namespace", e))?
            .map(|r| get::<Vec<String>>(&r, 0))
            .transpose()?
            .map(|tables| {
                let ours = tables
                    .into_iter()
                    .filter(|t| TANDEM_TABLES.contains(&t.as_str()))
                    .collect();
                (DEFAULT_SCHEMA.to_owned(), ours)
            });
        Ok(TeardownPlan {
            slot,
            publication,
            origin,
            schema,
        })
    }

    /// One line per object, for the confirmation prompt.
    pub fn describe(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some((s, _)) = &self.slot {
            v.push(format!("replication slot {s:?}"));
        }
        if let Some(p) = &self.publication {
            v.push(format!("publication {p:?}"));
        }
        if let Some(o) = &self.origin {
            v.push(format!("replication origin {o:?}"));
        }
        if let Some((s, tables)) = &self.schema {
            let list: Vec<String> = tables.iter().map(|t| format!("{s}.{t}")).collect();
            v.push(format!(
                "tandem's tables in schema {s:?} ({}), and the schema if nothing else is in it",
                if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.join(", ")
                }
            ));
        }
        v
    }

    /// Refuse while a process reads the slot: dropping it would fail, or worse, succeed
    /// under a reader that then recreates it.
    pub fn check_idle(&self) -> Result<(), StageError> {
        if let Some((slot, Some(pid))) = &self.slot {
            return Err(StageError::definite(
                format!("Replication slot {slot:?} is in use by PID {pid}"),
                "stop `tandem run` (or whatever holds the slot) first, then run tandem teardown again",
            ));
        }
        Ok(())
    }

    /// Drop everything in the plan.
    pub async fn execute(&self, client: &Client) -> Result<(), StageError> {
        self.check_idle()?;
        if let Some((slot, _)) = &self.slot {
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[slot])
                .await
                .map_err(|e| classify(format!("Dropping replication slot {slot:?}"), e))?;
        }
        if let Some(p) = &self.publication {
            client
                .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(p)))
                .await
                .map_err(|e| classify(format!("Dropping publication {p:?}"), e))?;
        }
        if let Some(o) = &self.origin {
            client
                .execute("SELECT pg_replication_origin_drop($1)", &[o])
                .await
                .map_err(|e| classify(format!("Dropping replication origin {o:?}"), e))?;
        }
        if let Some((s, tables)) = &self.schema {
            for t in tables {
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {}", qualified(s, t)))
                    .await
                    .map_err(|e| classify(format!("Dropping table {s}.{t}"), e))?;
            }
            // The schema goes only when nothing else lives in it.
            if let Err(e) = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {}", quote_ident(s)))
                .await
            {
                if e.code() != Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST)
                {
                    return Err(classify(format!("Dropping schema {s:?}"), e));
                }
                tracing::warn!(schema = %s, "schema kept: it holds objects that are not tandem's");
            }
        }
        Ok(())
    }
}
