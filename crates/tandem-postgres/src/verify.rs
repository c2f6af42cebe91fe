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
//! Rows of differing chunks come back through the key's index where the chunking allows:
//! integer ranges as `BETWEEN` ranges, key prefixes as `key >= prefix AND key < end` per
//! prefix (a `LATERAL` index range scan each) — the latter only when the key column's
//! collation orders by code point (`C`, `POSIX`, `ucs_basic`), because only then does
//! that range hold every key with the prefix. Every fetch also filters by the exact chunk
//! label, so a range is only ever a superset.
//!
//! Repairs go through [`PgSink`]: its session carries tandem's replication origin, so the
//! PostgreSQL reader drops the repair like any applied change and the daemon never sends it
//! back (which under `delta` would count the difference twice). The origin allows one
//! session at a time: while a `tandem run` applies into this database, a repair of it is
//! refused with that reason. A repair commits without a checkpoint: it applies no source
//! position.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::{pin_mut, TryStreamExt};
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::sink::{ConflictRecord, RowWrite, Sink, TargetTable};
use tandem_core::value::{ColumnType, Value};
use tandem_core::verify::{
    prefix_end, ChunkSum, Chunking, KeyProfile, KeyedRow, VerifyReader, VerifyTable,
};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::ddl::{qualified, quote_ident};
use crate::sink::{classify, PgSink};
use crate::types;

/// Keys looked up per statement by [`VerifyReader::rows_by_key`].
const KEYS_PER_QUERY: usize = 1000;
/// Key texts sampled for [`tandem_core::verify::choose_chunking`]: one per sampled page
/// (reading 8,000 of a 5M-row table's 56,000 pages takes about 0.4 s).
const SAMPLE_KEYS: u64 = 8_000;
/// Collations whose order is code point order (so a prefix is one index range).
const CODE_POINT_COLLATIONS: &[&str] = &["C", "POSIX", "ucs_basic"];

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

/// The md5 chunk number of a row of `t`, below `n`.
fn md5_chunk(t: &VerifyTable, n: u32) -> String {
    format!(
        "(('x' || substr(md5({}), 1, 8))::bit(32)::bigint % {n})",
        key_expr(t)
    )
}

/// The first key column, quoted.
fn first_key(t: &VerifyTable) -> String {
    let name = t
        .key
        .first()
        .and_then(|&i| t.columns.get(i))
        .map_or("", |c| c.0.as_str());
    quote_ident(name)
}

/// The chunk label of a row of `t` (text), per [`Chunking`].
fn label_expr(t: &VerifyTable, chunking: &Chunking) -> String {
    match chunking {
        Chunking::Hash { chunks } => format!("{}::text", md5_chunk(t, *chunks)),
        Chunking::IntRange { min, width } => format!(
            "div(greatest({k}::numeric, {min}) - {min}, {width})::text",
            k = first_key(t)
        ),
        Chunking::Prefix { chars, subs } => format!(
            "left({}, {chars}) || chr(31) || {}::text",
            key_expr(t),
            md5_chunk(t, *subs)
        ),
    }
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

/// One row of a [`select_list`] query.
fn decode_row(
    t: &VerifyTable,
    what: &str,
    row: &tokio_postgres::Row,
) -> Result<KeyedRow, StageError> {
    let key: String = row.try_get(0).map_err(|e| classify(what.to_owned(), e))?;
    let mut values = Vec::with_capacity(t.columns.len());
    for (i, (name, ty)) in t.columns.iter().enumerate() {
        let text: Option<&str> = row
            .try_get(i + 1)
            .map_err(|e| classify(what.to_owned(), e))?;
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
    Ok(KeyedRow { key, values })
}

/// Reads one PostgreSQL database for `tandem verify`.
pub struct PgVerifier<'a> {
    ep: &'a EndpointConfig,
    password: Option<&'a Secret>,
    client: Client,
    connection: JoinHandle<()>,
    /// Per table: the key's collation when it orders by code point (`None`: it does not).
    collations: HashMap<String, Option<String>>,
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
            collations: HashMap::new(),
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
        rows.iter().map(|row| decode_row(t, &what, row)).collect()
    }

    /// The key column's collation, if it orders by code point (cached per table). The name
    /// is the column's own (`default` for the database's), so that a comparison with it
    /// can use the column's index.
    async fn code_point_collation(
        &mut self,
        t: &VerifyTable,
    ) -> Result<Option<String>, StageError> {
        let name = qualified(&t.table.schema, &t.table.name);
        if let Some(c) = self.collations.get(&name) {
            return Ok(c.clone());
        }
        let column = t
            .key
            .first()
            .and_then(|&i| t.columns.get(i))
            .map_or("", |c| c.0.as_str());
        let what = format!("Cannot read the key collation of {}", t.table);
        let row = self
            .client
            .query_opt(
                "SELECT CASE WHEN c.collname <> 'default' THEN c.collname::text
                             WHEN d.datlocprovider = 'c' THEN d.datcollate::text END
                 FROM pg_attribute a
                 JOIN pg_collation c ON c.oid = a.attcollation
                 JOIN pg_database d ON d.datname = current_database()
                 WHERE a.attrelid = $1::text::regclass AND a.attname = $2",
                &[&name, &column],
            )
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let collation: Option<String> = match row {
            Some(r) => r.try_get(0).map_err(|e| classify(what, e))?,
            None => None,
        };
        let ordered = collation.filter(|c| CODE_POINT_COLLATIONS.contains(&c.as_str()));
        // The column's own collation name (`default` resolves to the database's).
        let usable = match ordered {
            Some(_) => Some(
                self.column_collation(&name, column)
                    .await?
                    .unwrap_or_else(|| "default".to_owned()),
            ),
            None => None,
        };
        self.collations.insert(name, usable.clone());
        Ok(usable)
    }

    async fn column_collation(
        &self,
        table: &str,
        column: &str,
    ) -> Result<Option<String>, StageError> {
        let what = format!("Cannot read the key collation of {table}");
        let row = self
            .client
            .query_opt(
                "SELECT c.collname::text FROM pg_attribute a
                 JOIN pg_collation c ON c.oid = a.attcollation
                 WHERE a.attrelid = $1::text::regclass AND a.attname = $2
                   AND c.collname <> 'default'",
                &[&table, &column],
            )
            .await
            .map_err(|e| classify(what.clone(), e))?;
        match row {
            Some(r) => r.try_get(0).map_err(|e| classify(what, e)),
            None => Ok(None),
        }
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

    async fn key_profile(
        &mut self,
        t: &VerifyTable,
        estimate: u64,
    ) -> Result<KeyProfile, StageError> {
        let mut profile = KeyProfile::default();
        let [k] = t.key[..] else {
            return Ok(profile);
        };
        let name = qualified(&t.table.schema, &t.table.name);
        let what = format!("Cannot read the key range of {}", t.table);
        match t.columns.get(k).map(|c| &c.1) {
            Some(ColumnType::Int { .. }) => {
                let row = self
                    .client
                    .query_one(
                        &format!(
                            "SELECT min({c})::text, max({c})::text FROM {name}",
                            c = first_key(t)
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| classify(what.clone(), e))?;
                let lo: Option<String> = row.try_get(0).map_err(|e| classify(what.clone(), e))?;
                let hi: Option<String> = row.try_get(1).map_err(|e| classify(what.clone(), e))?;
                profile.int_bounds = lo
                    .and_then(|l| l.parse().ok())
                    .zip(hi.and_then(|h| h.parse().ok()));
            }
            Some(ColumnType::Text { .. }) => {
                profile.prefix_scannable = self.code_point_collation(t).await?.is_some();
                if !profile.prefix_scannable {
                    return Ok(profile);
                }
                // One key per sampled page: pages are spread evenly over the table.
                let sql = if estimate <= SAMPLE_KEYS {
                    format!("SELECT {} FROM {name}", key_expr(t))
                } else {
                    let row = self
                        .client
                        .query_one(
                            "SELECT greatest(relpages, 1)::bigint FROM pg_class WHERE oid = $1::text::regclass",
                            &[&name],
                        )
                        .await
                        .map_err(|e| classify(what.clone(), e))?;
                    let pages: i64 = row.try_get(0).map_err(|e| classify(what.clone(), e))?;
                    let percent = (100.0 * SAMPLE_KEYS as f64 / pages as f64).clamp(0.01, 100.0);
                    // The first tuple of each sampled page (no sort, no key text for the rest).
                    format!(
                        "SELECT {} FROM {name} TABLESAMPLE SYSTEM ({percent:.4}) \
                         WHERE (ctid::text::point)[1] = 1",
                        key_expr(t)
                    )
                };
                let rows = self
                    .client
                    .query(&sql, &[])
                    .await
                    .map_err(|e| classify(what.clone(), e))?;
                for r in rows {
                    let k: Option<String> = r.try_get(0).map_err(|e| classify(what.clone(), e))?;
                    profile.sample.extend(k);
                }
            }
            _ => {}
        }
        Ok(profile)
    }

    async fn chunk_sums(
        &mut self,
        t: &VerifyTable,
        chunking: &Chunking,
    ) -> Result<Vec<ChunkSum>, StageError> {
        let sql = format!(
            "SELECT c, count(*), sum(h)::text FROM (SELECT {} AS c, {} AS h FROM {}) s GROUP BY c",
            label_expr(t, chunking),
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
            let chunk: String = row.try_get(0).map_err(|e| classify(what.clone(), e))?;
            let count: i64 = row.try_get(1).map_err(|e| classify(what.clone(), e))?;
            let sum: String = row.try_get(2).map_err(|e| classify(what.clone(), e))?;
            let bad = || {
                StageError::definite(
                    format!("{what}: the server returned chunk {chunk:?} with sum {sum:?}"),
                    "report this as a bug in tandem",
                )
            };
            out.push(ChunkSum {
                rows: u64::try_from(count).map_err(|_| bad())?,
                hash: sum.parse().map_err(|_| bad())?,
                chunk,
            });
        }
        Ok(out)
    }

    async fn rows_in_chunks(
        &mut self,
        t: &VerifyTable,
        chunking: &Chunking,
        which: &[String],
    ) -> Result<Vec<KeyedRow>, StageError> {
        if which.is_empty() {
            return Ok(Vec::new());
        }
        let table = qualified(&t.table.schema, &t.table.name);
        let label = label_expr(t, chunking);
        let labels: Vec<&str> = which.iter().map(String::as_str).collect();
        match chunking {
            Chunking::Hash { .. } => {
                let sql = format!(
                    "SELECT {} FROM {table} WHERE {label} = ANY($1::text[])",
                    select_list(t)
                );
                self.rows(t, &sql, &[&labels]).await
            }
            Chunking::IntRange { .. } => {
                // The labels' key ranges, as literals (tandem's own integers), clamped to
                // bigint: PostgreSQL keys never leave it.
                let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
                let ranges: Vec<String> = which
                    .iter()
                    .filter_map(|l| chunking.int_range(l))
                    .map(|(lo, hi)| match lo {
                        Some(lo) => format!(
                            "{k} BETWEEN {} AND {}",
                            clamp(lo),
                            clamp(hi - 1),
                            k = first_key(t)
                        ),
                        None => format!("{} <= {}", first_key(t), clamp(hi - 1)),
                    })
                    .collect();
                let sql = format!(
                    "SELECT {} FROM {table} WHERE ({}) AND {label} = ANY($1::text[])",
                    select_list(t),
                    ranges.join(" OR ")
                );
                self.rows(t, &sql, &[&labels]).await
            }
            Chunking::Prefix { .. } => {
                let mut prefixes: Vec<&str> =
                    which.iter().filter_map(|l| chunking.prefix_of(l)).collect();
                prefixes.sort_unstable();
                prefixes.dedup();
                let ends: Vec<Option<String>> = prefixes.iter().map(|p| prefix_end(p)).collect();
                let collation = self.code_point_collation(t).await?;
                let (Some(collation), true) = (collation, ends.iter().all(Option::is_some)) else {
                    // No index range holds exactly these prefixes: one scan.
                    let sql = format!(
                        "SELECT {} FROM {table} WHERE {label} = ANY($1::text[])",
                        select_list(t)
                    );
                    return self.rows(t, &sql, &[&labels]).await;
                };
                let ends: Vec<String> = ends.into_iter().flatten().collect();
                let c = format!("{}.{}", table, first_key(t));
                let sql = format!(
                    "SELECT x.* FROM unnest($2::text[], $3::text[]) AS r(lo, hi) \
                     CROSS JOIN LATERAL (SELECT {} FROM {table} \
                       WHERE {c} >= (r.lo COLLATE {q}) AND {c} < (r.hi COLLATE {q}) \
                         AND {label} = ANY($1::text[])) x",
                    select_list(t),
                    q = quote_ident(&collation)
                );
                self.rows(t, &sql, &[&labels, &prefixes, &ends]).await
            }
        }
    }

    async fn scan(
        &mut self,
        t: &VerifyTable,
        each: &mut (dyn FnMut(Vec<Value>) -> Result<(), StageError> + Send),
    ) -> Result<(), StageError> {
        let what = format!("Cannot read rows of {}", t.table);
        let sql = format!(
            "SELECT {} FROM {}",
            select_list(t),
            qualified(&t.table.schema, &t.table.name)
        );
        let stream = self
            .client
            .query_raw(&sql, std::iter::empty::<i32>())
            .await
            .map_err(|e| classify(what.clone(), e))?;
        pin_mut!(stream);
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(|e| classify(what.clone(), e))?
        {
            each(decode_row(t, &what, &row)?.values)?;
        }
        Ok(())
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
