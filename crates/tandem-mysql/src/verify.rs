//! `tandem verify` on MySQL/MariaDB: chunk checksums computed by the server, rows of chunks
//! and keys read back, and repair writes tagged as tandem's own.
//!
//! The canonical text of rows, the chunking and the hash are the contract documented in
//! [`tandem_core::verify`]; the PostgreSQL endpoint implements the same contract, so the two
//! servers' checksums of equal tables agree. Here every column renders through
//! [`canonical_expr`]: decimals lose trailing fractional zeros with `TRIM` (only when they
//! have a point, or `100` would become `1`), temporal values go through `DATE_FORMAT` in the
//! session's `+00:00` time zone, text is converted to `utf8mb4` so that `MD5` hashes the
//! same bytes PostgreSQL does, binary is hex. A chunk's checksum is one `GROUP BY` over a
//! single scan; chunk labels are grouped as binary strings, since a case-insensitive
//! collation would merge `a` and `A` prefixes that PostgreSQL keeps apart.
//!
//! Rows of differing chunks come back through the key's index where the chunking allows:
//! integer ranges as `BETWEEN` ranges, key prefixes as `key LIKE 'prefix%'`, which under
//! any collation matches at least every key with that exact prefix (each character matches
//! itself); every fetch also filters by the exact chunk label.
//!
//! Repairs go through [`MySqlSink`], whose session is tagged by the endpoint's loop
//! prevention (`skip_replication` or the marker row), so the binlog reader drops the repair
//! like any applied change and the daemon never sends it back. A repair commits without a
//! checkpoint: it applies no source position.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::sink::{ConflictRecord, RowWrite, Sink, TargetTable};
use tandem_core::value::{ColumnType, Value};
use tandem_core::verify::{ChunkSum, Chunking, KeyProfile, KeyedRow, VerifyReader, VerifyTable};

use crate::connect::{classify, connect};
use crate::sink::MySqlSink;
use crate::types::{from_mysql_value, to_mysql_value};

/// Keys looked up per statement by [`VerifyReader::rows_by_key`].
const KEYS_PER_QUERY: usize = 500;

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn table_ident(t: &VerifyTable) -> String {
    format!("{}.{}", ident(&t.table.schema), ident(&t.table.name))
}

/// The canonical text of column `c` (an SQL expression) of type `ty`, or `None` for a
/// column left out of the checksum (JSON). NULL stays NULL; the caller marks it.
pub fn canonical_expr(c: &str, ty: &ColumnType) -> Option<String> {
    Some(match ty {
        ColumnType::Json => return None,
        ColumnType::Decimal { .. } => format!(
            "IF(LOCATE('.', CAST({c} AS CHAR)) > 0, \
             TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST({c} AS CHAR))), CAST({c} AS CHAR))"
        ),
        ColumnType::Text { .. } | ColumnType::Enum { .. } => format!("CONVERT({c} USING utf8mb4)"),
        ColumnType::Bytes { .. } => format!("LOWER(HEX({c}))"),
        ColumnType::Date { .. } => format!("DATE_FORMAT({c}, '%Y-%m-%d')"),
        ColumnType::Time { .. } => format!("TIME_FORMAT({c}, '%H:%i:%s.%f')"),
        ColumnType::Timestamp { .. } | ColumnType::TimestampTz { .. } => {
            format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')")
        }
        _ => format!("CAST({c} AS CHAR)"),
    })
}

fn key_expr(t: &VerifyTable) -> String {
    let parts: Vec<String> = t
        .key
        .iter()
        .filter_map(|&i| t.columns.get(i))
        .map(|(n, ty)| {
            let c = ident(n);
            canonical_expr(&c, ty).unwrap_or_else(|| format!("CAST({c} AS CHAR)"))
        })
        .collect();
    format!("CONCAT_WS(CHAR(31), {})", parts.join(", "))
}

fn row_expr(t: &VerifyTable) -> String {
    let parts: Vec<String> = t
        .columns
        .iter()
        .filter_map(|(n, ty)| canonical_expr(&ident(n), ty))
        .map(|e| format!("COALESCE({e}, CHAR(30))"))
        .collect();
    if parts.is_empty() {
        return "''".to_owned();
    }
    format!("CONCAT_WS(CHAR(31), {})", parts.join(", "))
}

/// The md5 chunk number of a row of `t`, below `n`.
fn md5_chunk(t: &VerifyTable, n: u32) -> String {
    format!(
        "(CAST(CONV(SUBSTRING(MD5({}), 1, 8), 16, 10) AS UNSIGNED) % {n})",
        key_expr(t)
    )
}

/// The first key column, quoted.
fn first_key(t: &VerifyTable) -> String {
    ident(
        t.key
            .first()
            .and_then(|&i| t.columns.get(i))
            .map_or("", |c| c.0.as_str()),
    )
}

/// The chunk label of a row of `t` as a binary string, per [`Chunking`].
fn label_expr(t: &VerifyTable, chunking: &Chunking) -> String {
    match chunking {
        Chunking::Hash { chunks } => format!("CAST({} AS BINARY)", md5_chunk(t, *chunks)),
        Chunking::IntRange { min, width } => format!(
            "CAST((CAST(GREATEST({k}, {min}) AS DECIMAL(40,0)) - ({min})) DIV {width} AS BINARY)",
            k = first_key(t)
        ),
        Chunking::Prefix { chars, subs } => format!(
            "CAST(CONCAT(LEFT({}, {chars}), CHAR(31 USING utf8mb4), {}) AS BINARY)",
            key_expr(t),
            md5_chunk(t, *subs)
        ),
    }
}

/// `LIKE` pattern matching every text starting with `p`.
fn like_prefix(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 1);
    for c in p.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn hash_expr(t: &VerifyTable) -> String {
    format!(
        "CAST(CONV(SUBSTRING(MD5({}), 1, 15), 16, 10) AS UNSIGNED)",
        row_expr(t)
    )
}

fn select_list(t: &VerifyTable) -> String {
    let mut cols = vec![key_expr(t)];
    cols.extend(t.columns.iter().map(|(n, _)| ident(n)));
    cols.join(", ")
}

/// Reads one MySQL/MariaDB database for `tandem verify`.
pub struct MySqlVerifier<'a> {
    ep: &'a EndpointConfig,
    password: Option<&'a Secret>,
    conn: Conn,
}

impl<'a> MySqlVerifier<'a> {
    pub async fn connect(
        ep: &'a EndpointConfig,
        password: Option<&'a Secret>,
    ) -> Result<MySqlVerifier<'a>, StageError> {
        let conn = connect(ep, password).await?;
        Ok(MySqlVerifier { ep, password, conn })
    }

    /// The connection (for loading the catalog).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    fn decode(t: &VerifyTable, what: &str, rows: Vec<Row>) -> Result<Vec<KeyedRow>, StageError> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let key = match row.as_ref(0) {
                Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                other => {
                    return Err(StageError::definite(
                        format!("{what}: the key text came back as {other:?}"),
                        "report this as a bug in tandem",
                    ))
                }
            };
            let mut values = Vec::with_capacity(t.columns.len());
            for (i, (name, ty)) in t.columns.iter().enumerate() {
                let v = row.as_ref(i + 1).unwrap_or(&mysql_async::Value::NULL);
                values.push(from_mysql_value(ty, v).map_err(|e| {
                    StageError::definite_from(
                        format!("{what}: column {name:?}"),
                        "the column's type may have changed; run tandem check",
                        e,
                    )
                })?);
            }
            out.push(KeyedRow { key, values });
        }
        Ok(out)
    }
}

#[async_trait]
impl VerifyReader for MySqlVerifier<'_> {
    async fn estimate_rows(&mut self, t: &VerifyTable) -> Result<u64, StageError> {
        let what = format!("Cannot estimate the size of {}", t.table);
        let estimate: Option<Option<u64>> = self
            .conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&t.table.schema, &t.table.name),
            )
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let estimate = estimate.flatten().unwrap_or(0);
        if estimate < 100_000 {
            let n: Option<u64> = self
                .conn
                .query_first(format!("SELECT COUNT(*) FROM {}", table_ident(t)))
                .await
                .map_err(|e| classify(what, e))?;
            return Ok(n.unwrap_or(0));
        }
        Ok(estimate)
    }

    async fn key_profile(
        &mut self,
        t: &VerifyTable,
        _estimate: u64,
    ) -> Result<KeyProfile, StageError> {
        let mut profile = KeyProfile::default();
        let [k] = t.key[..] else {
            return Ok(profile);
        };
        match t.columns.get(k).map(|c| &c.1) {
            Some(ColumnType::Int { .. }) => {
                let what = format!("Cannot read the key range of {}", t.table);
                let row: Option<(Option<String>, Option<String>)> = self
                    .conn
                    .query_first(format!(
                        "SELECT CAST(MIN({c}) AS CHAR), CAST(MAX({c}) AS CHAR) FROM {}",
                        table_ident(t),
                        c = first_key(t)
                    ))
                    .await
                    .map_err(|e| classify(what, e))?;
                profile.int_bounds = row.and_then(|(lo, hi)| {
                    lo.and_then(|l| l.parse().ok())
                        .zip(hi.and_then(|h| h.parse().ok()))
                });
            }
            // LIKE 'prefix%' is an index range under every collation; the PostgreSQL side
            // samples the keys.
            Some(ColumnType::Text { .. }) => profile.prefix_scannable = true,
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
            "SELECT c, COUNT(*), CAST(SUM(h) AS CHAR) FROM (SELECT {} AS c, {} AS h FROM {}) s GROUP BY c",
            label_expr(t, chunking),
            hash_expr(t),
            table_ident(t)
        );
        let what = format!("Cannot compute the checksums of {}", t.table);
        let rows: Vec<(Vec<u8>, u64, String)> = self
            .conn
            .query(sql)
            .await
            .map_err(|e| classify(what.clone(), e))?;
        rows.into_iter()
            .map(|(chunk, rows, sum)| {
                let chunk = String::from_utf8(chunk).map_err(|e| {
                    StageError::definite(
                        format!("{what}: a chunk label is not UTF-8 ({e})"),
                        "report this as a bug in tandem",
                    )
                })?;
                let hash = sum.parse().map_err(|_| {
                    StageError::definite(
                        format!("{what}: the server returned chunk {chunk:?} with sum {sum:?}"),
                        "report this as a bug in tandem",
                    )
                })?;
                Ok(ChunkSum { chunk, rows, hash })
            })
            .collect()
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
        let mut params: Vec<mysql_async::Value> = Vec::new();
        // A superset of the chunks' rows that the key's index can find, if there is one.
        let range = match chunking {
            Chunking::Hash { .. } => None,
            Chunking::IntRange { .. } => {
                // The labels' key ranges, as literals (tandem's own integers).
                let ranges: Vec<String> = which
                    .iter()
                    .filter_map(|l| chunking.int_range(l))
                    .map(|(lo, hi)| match lo {
                        Some(lo) => format!("{} BETWEEN {lo} AND {}", first_key(t), hi - 1),
                        None => format!("{} <= {}", first_key(t), hi - 1),
                    })
                    .collect();
                Some(ranges.join(" OR "))
            }
            Chunking::Prefix { .. } => {
                let mut prefixes: Vec<&str> =
                    which.iter().filter_map(|l| chunking.prefix_of(l)).collect();
                prefixes.sort_unstable();
                prefixes.dedup();
                let likes: Vec<String> = prefixes
                    .iter()
                    .map(|p| {
                        params.push(mysql_async::Value::from(like_prefix(p)));
                        format!("{} LIKE ?", first_key(t))
                    })
                    .collect();
                Some(likes.join(" OR "))
            }
        };
        let marks = vec!["?"; which.len()].join(", ");
        params.extend(which.iter().map(|l| mysql_async::Value::from(l.as_bytes())));
        let sql = format!(
            "SELECT {} FROM {} WHERE ({}) AND {} IN ({marks})",
            select_list(t),
            table_ident(t),
            range.unwrap_or_else(|| "TRUE".to_owned()),
            label_expr(t, chunking),
        );
        let what = format!("Cannot read rows of {}", t.table);
        let rows: Vec<Row> = self
            .conn
            .exec(sql, Params::Positional(params))
            .await
            .map_err(|e| classify(what.clone(), e))?;
        Self::decode(t, &what, rows)
    }

    async fn scan(
        &mut self,
        t: &VerifyTable,
        each: &mut (dyn FnMut(Vec<Value>) -> Result<(), StageError> + Send),
    ) -> Result<(), StageError> {
        let what = format!("Cannot read rows of {}", t.table);
        let sql = format!("SELECT {} FROM {}", select_list(t), table_ident(t));
        let mut result = self
            .conn
            .query_iter(sql)
            .await
            .map_err(|e| classify(what.clone(), e))?;
        while let Some(row) = result.next().await.map_err(|e| classify(what.clone(), e))? {
            for r in Self::decode(t, &what, vec![row])? {
                each(r.values)?;
            }
        }
        Ok(())
    }

    async fn rows_by_key(
        &mut self,
        t: &VerifyTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<KeyedRow>, StageError> {
        let names: Vec<String> = t
            .key
            .iter()
            .filter_map(|&i| t.columns.get(i))
            .map(|(n, _)| ident(n))
            .collect();
        let tuple = format!("({})", vec!["?"; names.len()].join(", "));
        let what = format!("Cannot read rows of {}", t.table);
        let mut out = Vec::new();
        for batch in keys.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT {} FROM {} WHERE ({}) IN ({})",
                select_list(t),
                table_ident(t),
                names.join(", "),
                vec![tuple.as_str(); batch.len()].join(", ")
            );
            let params: Vec<mysql_async::Value> = batch
                .iter()
                .flat_map(|k| {
                    (0..names.len())
                        .map(move |i| k.get(i).map_or(mysql_async::Value::NULL, to_mysql_value))
                })
                .collect();
            let rows: Vec<Row> = self
                .conn
                .exec(sql, Params::Positional(params))
                .await
                .map_err(|e| classify(what.clone(), e))?;
            out.extend(Self::decode(t, &what, rows)?);
        }
        Ok(out)
    }

    async fn repair(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
        records: &[ConflictRecord],
    ) -> Result<(), StageError> {
        let mut sink = MySqlSink::connect(self.ep, self.password).await?;
        sink.begin().await?;
        let result = async {
            sink.write(table, writes).await?;
            sink.record(records, &[]).await?;
            // No checkpoint: a repair applies no source position (see the module docs).
            sink.conn()
                .query_drop("COMMIT")
                .await
                .map_err(|e| classify("Committing the repair", e))
        }
        .await;
        if result.is_err() {
            let _ = sink.rollback().await;
        }
        result
    }
}
