//! A consistent snapshot of tables, and the exact binlog position to stream from after it.
//!
//! Two ways to tie the read view to a binlog position ([`SnapshotMethod`]):
//!
//! - **MariaDB, no lock** ([`SnapshotMethod::SnapshotStatus`]): `START TRANSACTION WITH
//!   CONSISTENT SNAPSHOT` opens an InnoDB read view and, in the same instant, MariaDB
//!   records the binlog position of that view in the session status
//!   `binlog_snapshot_file`/`binlog_snapshot_position`; `BINLOG_GTID_POS` turns it into the
//!   GTID state. (`SHOW MASTER STATUS` inside the transaction reports the *live* position
//!   and was wrong in 26 of 60 trials under concurrent writes — see
//!   `shared/notes/mariadb-binlog.md`.)
//! - **MySQL, a short global read lock** ([`SnapshotMethod::GlobalReadLock`]), the method
//!   `mysqldump --single-transaction --source-data` uses: MySQL has no snapshot status, so
//!   `FLUSH TABLES WITH READ LOCK` stops every commit, the read view opens and the binlog
//!   position (with MySQL's `Executed_Gtid_Set`) is read while nothing can commit, then
//!   `UNLOCK TABLES`. The lock lasts three statements, but `FLUSH TABLES WITH READ LOCK`
//!   waits for running statements and blocks writers while it waits, so it gives up after
//!   [`READ_LOCK_WAIT_SECS`] (a transient error: tried again later). It needs the `RELOAD`
//!   privilege. (`LOCK INSTANCE FOR BACKUP`, which needs only `BACKUP_ADMIN`, does not
//!   stop DML, so it cannot pin a position on its own.) MariaDB supports the same
//!   statements, which is how the tests exercise this path.
//!
//! Either way, everything read inside the transaction is exactly the database at that
//! position, so streaming from it neither misses nor repeats a change.
//!
//! Tables are read in primary-key order in chunks (keyset pagination: `WHERE (k) > (last)
//! ORDER BY k LIMIT n`), so memory is one chunk and a copy can resume after the last key
//! it handed over. Values are decoded with [`crate::types::from_mysql_value`] and the
//! same catalog description the binlog reader uses, so both paths yield equal values.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row as MyRow};
use tandem_core::error::StageError;
use tandem_core::{ColumnSchema, ColumnType, GtidSet, Position, Row, TableId, TableSchema, Value};

use crate::binlog::catalog_cache::load_table_columns;
use crate::binlog::schema::CatalogColumn;
use crate::connect::classify;
use crate::flavor::ServerFlavor;
use crate::types::{from_mysql_value, to_mysql_value};

/// Default rows per chunk.
pub const DEFAULT_CHUNK_ROWS: usize = 5_000;

/// Longest wait for `FLUSH TABLES WITH READ LOCK` (writers queue behind it meanwhile).
pub const READ_LOCK_WAIT_SECS: u32 = 10;

/// How a snapshot learns its binlog position (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// MariaDB: [`SnapshotMethod::SnapshotStatus`]; MySQL: [`SnapshotMethod::GlobalReadLock`].
    #[default]
    Auto,
    /// `binlog_snapshot_file/position`, no lock (MariaDB only).
    SnapshotStatus,
    /// A short `FLUSH TABLES WITH READ LOCK` (needs `RELOAD`).
    GlobalReadLock,
}

/// An open snapshot transaction.
pub struct Snapshot {
    conn: Conn,
    /// Stream from here once the tables are copied.
    pub position: Position,
}

/// The copy of one table in progress (see [`Snapshot::open_table`]).
pub struct TableCopy {
    pub schema: Arc<TableSchema>,
    pub progress: SnapshotProgress,
    first_sql: String,
    next_sql: String,
    done: bool,
}

/// How far a table copy has got.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotProgress {
    pub table: TableId,
    pub rows: u64,
    /// `information_schema.TABLES.TABLE_ROWS`: an estimate for InnoDB.
    pub estimated_total: u64,
    /// Key of the last row handed over: pass it as `resume_after` to continue.
    pub last_key: Option<Vec<Value>>,
}

fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

impl Snapshot {
    /// Open the snapshot on `conn` (a session from [`crate::connect::connect`]), the way
    /// the server supports best.
    pub async fn begin(conn: Conn) -> Result<Snapshot, StageError> {
        Snapshot::begin_with(conn, SnapshotMethod::Auto).await
    }

    /// Open the snapshot with a chosen [`SnapshotMethod`].
    pub async fn begin_with(
        mut conn: Conn,
        method: SnapshotMethod,
    ) -> Result<Snapshot, StageError> {
        let flavor = ServerFlavor::detect(&mut conn).await?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(|e| classify("Setting the snapshot isolation level", e))?;
        let position = match (method, flavor) {
            (SnapshotMethod::SnapshotStatus, ServerFlavor::MySql { .. }) => {
                return Err(StageError::definite(
                    "MySQL reports no binlog_snapshot_file/position",
                    "use the global read lock snapshot method on MySQL",
                ))
            }
            (SnapshotMethod::Auto | SnapshotMethod::SnapshotStatus, ServerFlavor::MariaDb) => {
                start_snapshot(&mut conn).await?;
                snapshot_status_position(&mut conn).await?
            }
            (SnapshotMethod::Auto | SnapshotMethod::GlobalReadLock, _) => {
                read_lock_position(&mut conn, flavor).await?
            }
        };
        Ok(Snapshot { conn, position })
    }

    /// Prepare the copy of one table in key order, starting after `resume_after` if given.
    pub async fn open_table(
        &mut self,
        schema: &str,
        table: &str,
        resume_after: Option<Vec<Value>>,
    ) -> Result<TableCopy, StageError> {
        let cols = load_table_columns(&mut self.conn, schema, table).await?;
        if cols.is_empty() {
            return Err(StageError::definite(
                format!("Table {schema}.{table} does not exist"),
                "check the mapping's table name",
            ));
        }
        let table_schema = Arc::new(table_schema(schema, table, &cols));
        if table_schema.key.is_empty() {
            return Err(StageError::definite(
                format!("Table {schema}.{table} has no primary key"),
                "add a primary key: tandem copies and matches rows by it",
            ));
        }
        let estimated_total: Option<u64> = self
            .conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (schema, table),
            )
            .await
            .map_err(|e| classify("Reading the table's row estimate", e))?;
        let col_list: Vec<String> = cols.iter().map(|c| quote(&c.name)).collect();
        let key_cols: Vec<String> = table_schema
            .key
            .iter()
            .filter_map(|&k| cols.get(k))
            .map(|c| quote(&c.name))
            .collect();
        let key_tuple = format!("({})", key_cols.join(", "));
        let placeholders = format!("({})", vec!["?"; key_cols.len()].join(", "));
        let from = format!(
            "SELECT {} FROM {}.{}",
            col_list.join(", "),
            quote(schema),
            quote(table)
        );
        Ok(TableCopy {
            first_sql: format!("{from} ORDER BY {} LIMIT ", key_cols.join(", ")),
            next_sql: format!(
                "{from} WHERE {key_tuple} > {placeholders} ORDER BY {} LIMIT ",
                key_cols.join(", ")
            ),
            progress: SnapshotProgress {
                table: table_schema.table.clone(),
                rows: 0,
                estimated_total: estimated_total.unwrap_or(0),
                last_key: resume_after,
            },
            schema: table_schema,
            done: false,
        })
    }

    /// The next chunk of at most `chunk_rows` rows of `copy`, `None` once it is done.
    pub async fn next_chunk(
        &mut self,
        copy: &mut TableCopy,
        chunk_rows: usize,
    ) -> Result<Option<Vec<Row>>, StageError> {
        if copy.done {
            return Ok(None);
        }
        let chunk_rows = chunk_rows.max(1);
        let rows: Vec<MyRow> = match &copy.progress.last_key {
            None => {
                self.conn
                    .exec(format!("{}{chunk_rows}", copy.first_sql), ())
                    .await
            }
            Some(key) => {
                let params: Vec<mysql_async::Value> = key.iter().map(to_mysql_value).collect();
                self.conn
                    .exec(format!("{}{chunk_rows}", copy.next_sql), params)
                    .await
            }
        }
        .map_err(|e| classify(format!("Reading {}", copy.progress.table), e))?;
        let n = rows.len();
        let mut out = Vec::with_capacity(n);
        for row in rows {
            out.push(decode_row(&copy.schema, row)?);
        }
        if let Some(last) = out.last() {
            let key: Vec<Value> = copy
                .schema
                .key
                .iter()
                .map(|&k| {
                    last.get(k)
                        .and_then(|c| c.value().cloned())
                        .unwrap_or(Value::Null)
                })
                .collect();
            copy.progress.last_key = Some(key);
        }
        copy.progress.rows += u64::try_from(n).unwrap_or(0);
        if n < chunk_rows {
            copy.done = true;
        }
        Ok((n > 0).then_some(out))
    }

    /// Copy one table in key order, `chunk_rows` at a time, handing each chunk to
    /// `on_chunk` with the progress after it. With `resume_after`, start after that key.
    pub async fn read_table(
        &mut self,
        schema: &str,
        table: &str,
        chunk_rows: usize,
        resume_after: Option<Vec<Value>>,
        mut on_chunk: impl FnMut(&Arc<TableSchema>, Vec<Row>, &SnapshotProgress),
    ) -> Result<SnapshotProgress, StageError> {
        let mut copy = self.open_table(schema, table, resume_after).await?;
        while let Some(rows) = self.next_chunk(&mut copy, chunk_rows).await? {
            on_chunk(&copy.schema, rows, &copy.progress);
        }
        Ok(copy.progress)
    }

    /// End the snapshot transaction and give the connection back.
    pub async fn finish(mut self) -> Result<Conn, StageError> {
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| classify("Ending the snapshot", e))?;
        Ok(self.conn)
    }
}

async fn start_snapshot(conn: &mut Conn) -> Result<(), StageError> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|e| classify("Starting the consistent snapshot", e))
}

/// MariaDB's lock-free position of the transaction's read view.
async fn snapshot_status_position(conn: &mut Conn) -> Result<Position, StageError> {
    let status: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| classify("Reading the snapshot's binlog position", e))?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
    else {
        return Err(StageError::definite(
            "The server reports no binlog_snapshot_file/position",
            "tandem's snapshot needs MariaDB with the binlog enabled (log_bin)",
        ));
    };
    let pos: u64 = pos.parse().map_err(|_| {
        StageError::definite(
            format!("binlog_snapshot_position {pos:?} is not a number"),
            "report this as a tandem bug",
        )
    })?;
    mariadb_position(conn, file, pos).await
}

/// The MariaDB GTID state at `file:pos`, with the file position.
async fn mariadb_position(conn: &mut Conn, file: String, pos: u64) -> Result<Position, StageError> {
    if file.is_empty() {
        return Err(no_binlog());
    }
    let gtid: Option<String> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.as_str(), pos))
        .await
        .map_err(|e| classify("Reading BINLOG_GTID_POS", e))?;
    Ok(match gtid.map(|g| GtidSet::parse(&g)) {
        Some(Ok(gtid)) => Position::MySqlGtid {
            gtid,
            file: Some(file),
            pos: Some(pos),
        },
        _ => Position::MySqlFile { file, pos },
    })
}

fn no_binlog() -> StageError {
    StageError::definite(
        "The server writes no binlog, so changes after the snapshot cannot be streamed",
        "enable the binlog: log_bin, binlog_format=ROW",
    )
}

/// Open the read view under a short global read lock and read the position meanwhile.
/// The lock is released on every path (and with the connection, should this fail).
async fn read_lock_position(conn: &mut Conn, flavor: ServerFlavor) -> Result<Position, StageError> {
    conn.query_drop(format!(
        "SET SESSION lock_wait_timeout = {READ_LOCK_WAIT_SECS}"
    ))
    .await
    .map_err(|e| classify("Limiting the wait for the snapshot lock", e))?;
    conn.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .map_err(|e| match &e {
            mysql_async::Error::Server(s) if s.code == 1227 || s.code == 1045 => {
                StageError::definite_from(
                    "Taking the snapshot's short global read lock (FLUSH TABLES WITH READ LOCK) was refused",
                    "GRANT RELOAD ON *.* TO tandem's user: MySQL gives a snapshot's binlog position only under this lock",
                    e,
                )
            }
            _ => classify("Taking the snapshot's short global read lock", e),
        })?;
    let locked = async {
        start_snapshot(conn).await?;
        binlog_status(conn, flavor).await
    }
    .await;
    let unlocked = conn
        .query_drop("UNLOCK TABLES")
        .await
        .map_err(|e| classify("Releasing the snapshot's global read lock", e));
    let (file, pos, executed) = locked?;
    unlocked?;
    conn.query_drop("SET SESSION lock_wait_timeout = @@global.lock_wait_timeout")
        .await
        .map_err(|e| classify("Restoring lock_wait_timeout", e))?;
    if flavor.is_mariadb() {
        return mariadb_position(conn, file, pos).await;
    }
    if file.is_empty() {
        return Err(no_binlog());
    }
    let gtid_mode: Option<String> = conn
        .query_first("SELECT @@global.gtid_mode")
        .await
        .map_err(|e| classify("Reading gtid_mode", e))?;
    // Only with gtid_mode=ON is every transaction in the set; in the transitional modes
    // anonymous transactions would be sent again after a resume by GTID set.
    if !gtid_mode.is_some_and(|m| m.eq_ignore_ascii_case("ON")) {
        return Ok(Position::MySqlFile { file, pos });
    }
    let gtid = GtidSet::parse_mysql(&executed.unwrap_or_default()).map_err(|e| {
        StageError::definite_from(
            "The server's Executed_Gtid_Set could not be read",
            "report this as a tandem bug with the server's SHOW MASTER STATUS",
            e,
        )
    })?;
    Ok(Position::MySqlGtid {
        gtid,
        file: Some(file),
        pos: Some(pos),
    })
}

/// File, position and (MySQL) executed GTID set from `SHOW MASTER STATUS` /
/// `SHOW BINARY LOG STATUS`.
async fn binlog_status(
    conn: &mut Conn,
    flavor: ServerFlavor,
) -> Result<(String, u64, Option<String>), StageError> {
    let sql = flavor.binlog_status_sql();
    let row: Option<MyRow> = conn
        .query_first(sql)
        .await
        .map_err(|e| classify(format!("Reading {sql}"), e))?;
    let Some(row) = row else {
        return Err(no_binlog());
    };
    let column = |name: &str| {
        row.columns_ref()
            .iter()
            .position(|c| c.name_str().eq_ignore_ascii_case(name))
    };
    let text = |i: Option<usize>| -> Option<String> {
        match row.as_ref(i?)? {
            mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            mysql_async::Value::Int(n) => Some(n.to_string()),
            mysql_async::Value::UInt(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let file = text(column("File")).unwrap_or_default();
    let pos = text(column("Position"))
        .and_then(|p| p.parse::<u64>().ok())
        .ok_or_else(|| {
            StageError::definite(
                format!("{sql} shows no numeric Position"),
                "report this as a tandem bug with the statement's output",
            )
        })?;
    Ok((file, pos, text(column("Executed_Gtid_Set"))))
}

/// The schema of a table as the catalog describes it (same as the stream's when they agree).
pub fn table_schema(schema: &str, table: &str, cols: &[CatalogColumn]) -> TableSchema {
    TableSchema {
        table: TableId::new(schema, table),
        columns: cols
            .iter()
            .map(|c| ColumnSchema {
                name: c.name.clone(),
                column_type: c.column_type.clone(),
                native_type: c.native_type.clone(),
                nullable: c.nullable,
            })
            .collect(),
        key: cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.in_primary_key)
            .map(|(i, _)| i)
            .collect(),
    }
}

fn decode_row(schema: &TableSchema, row: MyRow) -> Result<Row, StageError> {
    let mut raw = row.unwrap().into_iter();
    let mut values = Vec::with_capacity(schema.columns.len());
    for col in &schema.columns {
        let raw = raw.next().unwrap_or(mysql_async::Value::NULL);
        let v = match owned_fast_path(&col.column_type, raw) {
            Ok(v) => v,
            Err(raw) => from_mysql_value(&col.column_type, &raw).map_err(|e| {
                StageError::definite_from(
                    format!(
                        "Column {} of {} could not be decoded",
                        col.name, schema.table
                    ),
                    "report this as a tandem bug with the column type",
                    e,
                )
            })?,
        };
        values.push(v);
    }
    Ok(Row::from_values(values))
}

/// The common cases of [`from_mysql_value`] without its copies: text moves its bytes into
/// the `String`, dates and times are built from the binary protocol's fields instead of
/// printed and parsed again. Gives the value back (`Err`) where it does not decide, so
/// every other case, and every error, is exactly `from_mysql_value`'s. A profile of an
/// initial copy spent a third of the reader's time copying and re-parsing these.
fn owned_fast_path(ty: &ColumnType, raw: mysql_async::Value) -> Result<Value, mysql_async::Value> {
    use mysql_async::Value as M;
    use ColumnType as T;
    match (ty, raw) {
        (T::Text { .. } | T::Enum { .. }, M::Bytes(b)) => String::from_utf8(b)
            .map(Value::Text)
            .map_err(|e| M::Bytes(e.into_bytes())),
        (T::Json, M::Bytes(b)) => String::from_utf8(b)
            .map(Value::Json)
            .map_err(|e| M::Bytes(e.into_bytes())),
        (T::Bytes { .. }, M::Bytes(b)) => Ok(Value::Bytes(b)),
        (T::Date { .. }, M::Date(y, mo, d, h, mi, s, us)) => {
            NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(d))
                .map(Value::Date)
                .ok_or(M::Date(y, mo, d, h, mi, s, us))
        }
        (
            T::Timestamp { fsp, .. } | T::TimestampTz { fsp, .. },
            M::Date(y, mo, d, h, mi, s, us),
        ) => {
            // The microseconds `fraction_text` keeps: the first `fsp` digits.
            let drop = 10u32.pow(6 - u32::from((*fsp).min(6)));
            let micros = us.min(999_999) / drop * drop;
            let at = NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(d)).and_then(
                |date| {
                    NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(mi), u32::from(s), micros)
                        .map(|t| date.and_time(t))
                },
            );
            match (at, ty) {
                (Some(t), T::TimestampTz { .. }) => Ok(Value::TimestampTz(t.and_utc())),
                (Some(t), _) => Ok(Value::Timestamp(t)),
                (None, _) => Err(M::Date(y, mo, d, h, mi, s, us)),
            }
        }
        (_, raw) => Err(raw),
    }
}
