//! `tandem verify` on PostgreSQL: chunk checksums computed by the server, rows of chunks
//! and keys read back, and repair writes tagged as tandem's own.
//!
//! The canonical text of rows, the chunking and the hash are the contract documented in
//! [`tandem_core::verify`]; the MySQL endpoint implements the same contract, so the two
//! servers' checksums of equal tables agree. Here every column renders through
//! [`canonical_expr`] (`trim_scale` for numerics, `to_char` in UTC for timestamps, `encode`
//! to hex for `bytea`); a chunk's checksum is one `GROUP BY` over a single scan, so the
//! table is read once however many chunks it has.
//!
//! Repairs go through [`PgSink`]: its session carries tandem's replication origin, so the
//! PostgreSQL reader drops the repair like any applied change and the daemon never sends it
//! back (which under `delta` would count the difference twice). The origin allows one
//! session at a time: while a `tandem run` applies into this database, a repair of it is
//! refused with that reason. A repair commits without a checkpoint: it applies no source
//! position.

use async_trait::async_trait;
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::sink::{ConflictRecord, RowWrite, Sink, TargetTable};
use tandem_core::value::{ColumnType, Value};
use tandem_core::verify::{ChunkSum, KeyedRow, VerifyReader, VerifyTable};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::ddl::{qualified, quote_ident};
use crate::sink::{classify, PgSink};
use crate::types;

/// Keys looked up per statement by [`VerifyReader::rows_by_key`].
const KEYS_PER_QUERY: usize = 1000;

/// The canonical text of column `c` (an SQL expression) of type `ty`, or `None` for a
/// column left out of the checksum (JSON). NULL stays NULL; the caller marks it.
pub fn canonical_expr(c: &str, ty: &ColumnType) -> Option<String> {
    Some(match ty {
        ColumnType::Json => return None,
        ColumnType::Bool => format!("CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' END"),
        ColumnType::Decimal { .. } => format!("trim_scale({c})::text"),
        ColumnType::Bytes { .. } => format!("encode({c}, 'hex')"),
        ColumnType::Date { .. } => format!("to_char({c}, 'YYYY-MM-DD')"),
        ColumnType::Time { .. } => {
            format!("to_char(timestamp '2000-01-01' + {c}, 'HH24:MI:SS.US')")
        }
        ColumnType::Timestamp { .. } => format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')"),
        ColumnType::TimestampTz { .. } => {
            format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
        }
        _ => format!("{c}::text"),
    })
}

/// The key text of a row of `t`.
fn key_expr(t: &VerifyTable) -> String {
    let parts: Vec<String> = t
        .key
        .iter()
        .filter_map(|&i| t.columns.get(i))
        .map(|(n, ty)| {
            let c = quote_ident(n);
            canonical_expr(&c, ty).unwrap_or_else(|| format!("{c}::text"))
        })
        .collect();
    format!("concat_ws(chr(31), {})", parts.join(", "))
}

/// The row text of a row of `t` (JSON columns left out).
fn row_expr(t: &VerifyTable) -> String {
    let parts: Vec<String> = t
        .columns
        .iter()
        .filter_map(|(n, ty)| canonical_expr(&quote_ident(n), ty))
        .map(|e| format!("coalesce({e}, chr(30))"))
        .collect();
    if parts.is_empty() {
        return "''".to_owned();
    }
    format!("concat_ws(chr(31), {})", parts.join(", "))
}

fn chunk_expr(t: &VerifyTable, chunks: u32) -> String {
    format!(
        "(('x' || substr(md5({}), 1, 8))::bit(32)::bigint % {chunks})",
        key_expr(t)
    )
}

fn hash_expr(t: &VerifyTable) -> String {
    format!(
        "('x' || lpad(substr(md5({}), 1, 15), 16, '0'))::bit(64)::bigint",
        row_expr(t)
    )
}

/// The key text and every mapped column as text, for decoding.
fn select_list(t: &VerifyTable) -> String {
    let mut cols = vec![key_expr(t)];
    cols.extend(
        t.columns
            .iter()
            .map(|(n, _)| format!("{}::text", quote_ident(n))),
    );
    cols.join(", ")
}

/// Reads one PostgreSQL database for `tandem verify`.
pub struct PgVerifier<'a> {
    ep: &'a EndpointConfig,
    password: Option<&'a Secret>,
    client: Client,
    connection: JoinHandle<()>,
}

impl Drop for PgVerifier<'_> {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl<'a> PgVerifier<'a> {
    pub async fn connect(
        ep: &'a EndpointConfig,
        password: Option<&'a Secret>,
    ) -> Result<PgVerifier<'a>, StageError> {
        let (client, connection) = crate::connect::connect(ep, password, "tandem verify").await?;
        Ok(PgVerifier {
            ep,
            password,
            client,
            connection,
        })
    }

    /// The session (for loading the catalog).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn rows(
        &self,
        t: &VerifyTable,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<KeyedRow>, StageError> {
        let what = format!("Cannot read rows of {}", t.table);
        let rows = self
            .client
            .query(sql, params)
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0).map_err(|e| classify(what.clone(), e))?;
            let mut values = Vec::with_capacity(t.columns.len());
            for (i, (name, ty)) in t.columns.iter().enumerate() {
                let text: Option<&str> =
                    row.try_get(i + 1).map_err(|e| classify(what.clone(), e))?;
                values.push(match text {
                    None => Value::Null,
                    Some(s) => types::decode_text(ty, 0, s).map_err(|e| {
                        StageError::definite_from(
                            format!("{what}: column {name:?}"),
                            "the column's type may have changed; run tandem check",
                            e,
                        )
                    })?,
                });
            }
            out.push(KeyedRow { key, values });
        }
        Ok(out)
    }

    /// The type names the key columns are cast to from text, without modifiers: a cast to
    /// `varchar(5)` would truncate a longer key silently and match the wrong row.
    async fn key_casts(&self, t: &VerifyTable) -> Result<Vec<String>, StageError> {
        let what = format!("Cannot read the columns of {}", t.table);
        let rows = self
            .client
            .query(
                "SELECT a.attname::text,
                        CASE a.atttypid WHEN 1042 THEN 'bpchar' WHEN 1560 THEN 'varbit'
                             ELSE format_type(a.atttypid, NULL) END
                 FROM pg_attribute a
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                &[&qualified(&t.table.schema, &t.table.name)],
            )
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let mut casts = Vec::new();
        for &k in &t.key {
            let name = t.columns.get(k).map(|c| c.0.as_str()).unwrap_or_default();
            let mut found = None;
            for r in &rows {
                let n: &str = r.try_get(0).map_err(|e| classify(what.clone(), e))?;
                if n == name {
                    found = Some(
                        r.try_get::<_, String>(1)
                            .map_err(|e| classify(what.clone(), e))?,
                    );
                }
            }
            casts.push(found.ok_or_else(|| {
                StageError::definite(
                    format!("Key column {name:?} does not exist in {}", t.table),
                    "run tandem check",
                )
            })?);
        }
        Ok(casts)
    }
}

#[async_trait]
impl VerifyReader for PgVerifier<'_> {
    async fn estimate_rows(&mut self, t: &VerifyTable) -> Result<u64, StageError> {
        let name = qualified(&t.table.schema, &t.table.name);
        let what = format!("Cannot estimate the size of {}", t.table);
        let row = self
            .client
            .query_one(
                "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::text::regclass",
                &[&name],
            )
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let estimate: i64 = row.try_get(0).map_err(|e| classify(what.clone(), e))?;
        // A table never analysed estimates 0; counting a small table is cheap and exact.
        if estimate < 100_000 {
            let row = self
                .client
                .query_one(&format!("SELECT count(*) FROM {name}"), &[])
                .await
                .map_err(|e| classify(what.clone(), e))?;
            let n: i64 = row.try_get(0).map_err(|e| classify(what, e))?;
            return Ok(u64::try_from(n).unwrap_or(0));
        }
        Ok(u64::try_from(estimate).unwrap_or(0))
    }

    async fn chunk_sums(
        &mut self,
        t: &VerifyTable,
        chunks: u32,
    ) -> Result<Vec<ChunkSum>, StageError> {
        let sql = format!(
            "SELECT c, count(*), sum(h)::text FROM (SELECT {} AS c, {} AS h FROM {}) s GROUP BY c",
            chunk_expr(t, chunks),
            hash_expr(t),
            qualified(&t.table.schema, &t.table.name)
        );
        let what = format!("Cannot compute the checksums of {}", t.table);
        let rows = self
            .client
            .query(&sql, &[])
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let chunk: i64 = row.try_get(0).map_err(|e| classify(what.clone(), e))?;
            let count: i64 = row.try_get(1).map_err(|e| classify(what.clone(), e))?;
            let sum: String = row.try_get(2).map_err(|e| classify(what.clone(), e))?;
            let bad = || {
                StageError::definite(
                    format!("{what}: the server returned chunk {chunk} with sum {sum:?}"),
                    "report this as a bug in tandem",
                )
            };
            out.push(ChunkSum {
                chunk: u32::try_from(chunk).map_err(|_| bad())?,
                rows: u64::try_from(count).map_err(|_| bad())?,
                hash: sum.parse().map_err(|_| bad())?,
            });
        }
        Ok(out)
    }

    async fn rows_in_chunks(
        &mut self,
        t: &VerifyTable,
        chunks: u32,
        which: &[u32],
    ) -> Result<Vec<KeyedRow>, StageError> {
        if which.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = ANY($1::bigint[])",
            select_list(t),
            qualified(&t.table.schema, &t.table.name),
            chunk_expr(t, chunks)
        );
        let list: Vec<i64> = which.iter().map(|&c| i64::from(c)).collect();
        self.rows(t, &sql, &[&list]).await
    }

    async fn rows_by_key(
        &mut self,
        t: &VerifyTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<KeyedRow>, StageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let casts = self.key_casts(t).await?;
        let names: Vec<String> = t
            .key
            .iter()
            .filter_map(|&i| t.columns.get(i))
            .map(|(n, _)| quote_ident(n))
            .collect();
        let params: Vec<String> = (1..=casts.len()).map(|i| format!("${i}::text[]")).collect();
        let aliases: Vec<String> = (0..casts.len()).map(|i| format!("p{i}")).collect();
        let typed: Vec<String> = casts
            .iter()
            .enumerate()
            .map(|(i, c)| format!("v.p{i}::{c}"))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE ({}) IN (SELECT {} FROM unnest({}) AS v({}))",
            select_list(t),
            qualified(&t.table.schema, &t.table.name),
            names.join(", "),
            typed.join(", "),
            params.join(", "),
            aliases.join(", ")
        );
        let mut out = Vec::new();
        for batch in keys.chunks(KEYS_PER_QUERY) {
            let arrays: Vec<Vec<Option<String>>> = (0..casts.len())
                .map(|i| {
                    batch
                        .iter()
                        .map(|k| k.get(i).and_then(types::encode_text))
                        .collect()
                })
                .collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            out.extend(self.rows(t, &sql, &refs).await?);
        }
        Ok(out)
    }

    async fn repair(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
        records: &[ConflictRecord],
    ) -> Result<(), StageError> {
        let mut sink = PgSink::connect(self.ep, self.password).await.map_err(|e| {
            if e.class() == tandem_core::ErrorClass::Transient {
                StageError::definite_from(
                    "Cannot tag the repair with tandem's replication origin: another session holds it",
                    "a tandem daemon is applying into this database; stop it for the repair (verify without --repair works while it runs)",
                    e,
                )
            } else {
                e
            }
        })?;
        sink.begin().await?;
        let result = async {
            sink.write(table, writes).await?;
            sink.record(records, &[]).await?;
            // No checkpoint: a repair applies no source position (see the module docs).
            sink.client()
                .batch_execute("COMMIT")
                .await
                .map_err(|e| classify("Cannot commit the repair", e))
        }
        .await;
        if result.is_err() {
            let _ = sink.rollback().await;
        }
        result
    }
}
