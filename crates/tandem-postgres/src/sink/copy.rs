//! Large insert batches through `COPY`.
//!
//! `COPY` skips the per-row work of array parameters and casts, which pays off from a few
//! thousand rows (see [`super::COPY_THRESHOLD`]). Two shapes:
//!
//! - **Directly into the target** ([`insert`]), for a batch of inserts only (an initial
//!   copy's batches): one `COPY target FROM STDIN` after a `SAVEPOINT`. The server writes
//!   each row once, as the `COPY … | COPY` pipe a DBA would use does. `COPY` has no
//!   `ON CONFLICT`, so a key that exists already (a concurrent writer's) fails it with a
//!   unique violation; any database error that is not transient is therefore rolled back
//!   to the savepoint and the same text goes the staged way below, which reports the
//!   "inserted meanwhile" transient error or the exact constraint as before. Tables where
//!   `COPY` and `INSERT` differ take the staged way from the start: views and other
//!   non-tables, tables with rules (`COPY` skips rules; `INSERT … ON CONFLICT` refuses
//!   such tables, so they fail here as on every other write), tables with deferrable
//!   unique keys (checked at commit after a `COPY`; `ON CONFLICT` refuses them), and
//!   tables with `GENERATED ALWAYS AS IDENTITY` columns (`COPY` writes them, `INSERT`
//!   refuses).
//! - **Staged** ([`upsert`], and the fallback): `COPY` into a staging table, then one
//!   `INSERT … SELECT … ON CONFLICT (key) DO NOTHING` into the target. The staging table is
//!   a temporary table with the target's column types and no constraints (`CREATE … AS
//!   SELECT … WITH NO DATA`), created in the transaction with `ON COMMIT DROP`: a rollback
//!   or a commit takes it away, so no state outlives the transaction that needed it.
//!
//! The `COPY` text is written straight from the values (no `String` per cell): a profile of
//! an initial copy spent a third of tandem's CPU building, hashing and freeing per-cell
//! strings here.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};

use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use tandem_core::error::StageError;
use tandem_core::sink::{RowWrite, TargetTable};
use tandem_core::value::Value;

use super::statements::on_conflict_do_nothing;
use super::{classify, column_list, concurrent_insert_check, ColumnMeta, PgSink};
use crate::ddl::{qualified, quote_ident};
use crate::types;

/// Bytes handed to the connection per `COPY` message.
const CHUNK: usize = 256 * 1024;

/// A batch of inserts as `COPY` text, in pieces of about [`CHUNK`] bytes.
pub(super) struct Encoded {
    pieces: Vec<Bytes>,
    rows: usize,
}

/// `writes` as `COPY` text if they are at least `threshold` inserts of whole rows with
/// distinct keys; `None` sends them the general way (segments).
pub(super) fn bulk_inserts(
    target: &TargetTable,
    writes: &[RowWrite],
    threshold: usize,
) -> Option<Encoded> {
    if writes.len() < threshold || target.key.is_empty() {
        return None;
    }
    let width = target.columns.len();
    let hasher = std::collections::hash_map::RandomState::new();
    let mut keys: HashSet<u64> = HashSet::with_capacity(writes.len());
    let mut pieces = Vec::new();
    let mut buf = BytesMut::with_capacity(CHUNK + 4096);
    for w in writes {
        let RowWrite::Insert { values } = w else {
            return None;
        };
        if values.len() != width {
            return None;
        }
        let mut key_hash = hasher.build_hasher();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b'\t');
            }
            let start = buf.len();
            put_value(&mut buf, v);
            if target.key.contains(&i) {
                key_hash.write(buf.get(start..).unwrap_or_default());
                key_hash.write_u8(0xff);
            }
        }
        buf.put_u8(b'\n');
        // A repeated key (or a hash collision) needs the segments' ordering rules.
        if !keys.insert(key_hash.finish()) {
            return None;
        }
        if buf.len() >= CHUNK {
            pieces.push(buf.split().freeze());
        }
    }
    if !buf.is_empty() {
        pieces.push(buf.freeze());
    }
    Some(Encoded {
        pieces,
        rows: writes.len(),
    })
}

/// Insert `batch` (see [`bulk_inserts`]): directly where the table allows it, else staged.
pub(super) async fn insert(
    sink: &mut PgSink,
    target: &TargetTable,
    cols: &[(String, ColumnMeta)],
    batch: &Encoded,
) -> Result<(), StageError> {
    let t = &target.table;
    let table = qualified(&t.schema, &t.name);
    let err = |e| classify(format!("Writing to {t} failed"), e);
    let direct = match sink.direct_copy.get(t) {
        Some(&direct) => direct,
        None => {
            let direct = copy_is_insert(sink, &table).await.map_err(err)?;
            sink.direct_copy.insert(t.clone(), direct);
            direct
        }
    };
    if !direct {
        return staged(sink, target, cols, batch).await;
    }
    sink.client
        .batch_execute("SAVEPOINT tandem_copy")
        .await
        .map_err(err)?;
    let sql = format!("COPY {table} ({}) FROM STDIN", column_list(cols));
    let started = std::time::Instant::now();
    let sent = send(sink, &sql, &batch.pieces).await;
    tracing::debug!(table = %t, rows = batch.rows, ms = started.elapsed().as_secs_f64() * 1e3, "copy into the table");
    match sent {
        Ok(n) if n == batch.rows as u64 => sink
            .client
            .batch_execute("RELEASE SAVEPOINT tandem_copy")
            .await
            .map_err(err),
        Ok(n) => {
            // COPY reports every row it read; a short count would be a protocol bug.
            sink.client
                .batch_execute("ROLLBACK TO SAVEPOINT tandem_copy")
                .await
                .map_err(err)?;
            tracing::debug!(table = %t, rows = n, expected = batch.rows, "copy count differs; staging instead");
            staged(sink, target, cols, batch).await
        }
        Err(e) => {
            let error = err(e);
            if matches!(error, StageError::Transient { .. }) {
                return Err(error);
            }
            tracing::debug!(table = %t, error = %error, "direct copy refused; staging instead");
            sink.client
                .batch_execute("ROLLBACK TO SAVEPOINT tandem_copy")
                .await
                .map_err(err)?;
            staged(sink, target, cols, batch).await
        }
    }
}

/// Whether `COPY` straight into `table` behaves as `INSERT` would: a plain or partitioned
/// table without rules (`COPY` ignores them), `GENERATED ALWAYS` identities (`COPY` may
/// not set them) or deferrable unique keys (checked at commit, not per row).
async fn copy_is_insert(sink: &PgSink, table: &str) -> Result<bool, tokio_postgres::Error> {
    sink.client
        .query_one(
            "SELECT c.relkind IN ('r', 'p') AND NOT c.relhasrules AND NOT EXISTS ( \
               SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 \
               AND NOT a.attisdropped AND a.attidentity = 'a') AND NOT EXISTS ( \
               SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.condeferrable \
               AND k.contype IN ('p', 'u')) \
             FROM pg_class c WHERE c.oid = $1::text::regclass",
            &[&table],
        )
        .await?
        .try_get(0)
}

/// Large insert segments of a mixed batch: staged.
pub(super) async fn upsert(
    sink: &mut PgSink,
    target: &TargetTable,
    cols: &[(String, ColumnMeta)],
    rows: &[Vec<Option<String>>],
) -> Result<(), StageError> {
    let mut pieces = Vec::new();
    let mut buf = BytesMut::with_capacity(CHUNK + 4096);
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b'\t');
            }
            match cell {
                None => buf.put_slice(b"\\N"),
                Some(text) => escape_into(&mut buf, text),
            }
        }
        buf.put_u8(b'\n');
        if buf.len() >= CHUNK {
            pieces.push(buf.split().freeze());
        }
    }
    if !buf.is_empty() {
        pieces.push(buf.freeze());
    }
    let batch = Encoded {
        pieces,
        rows: rows.len(),
    };
    staged(sink, target, cols, &batch).await
}

/// `COPY` into the staging table, then one `INSERT … SELECT … ON CONFLICT DO NOTHING`.
async fn staged(
    sink: &mut PgSink,
    target: &TargetTable,
    cols: &[(String, ColumnMeta)],
    batch: &Encoded,
) -> Result<(), StageError> {
    let t = &target.table;
    let list = column_list(cols);
    let next = sink.stages.len();
    let n = *sink.stages.entry((t.clone(), list.clone())).or_insert(next);
    let stage = quote_ident(&format!("tandem_stage_{n}"));
    let table = qualified(&t.schema, &t.name);
    let err = |e| classify(format!("Writing to {t} failed"), e);
    sink.client
        .batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS SELECT {list} FROM {table} WITH NO DATA;
             TRUNCATE {stage}"
        ))
        .await
        .map_err(err)?;
    send(
        sink,
        &format!("COPY {stage} ({list}) FROM STDIN"),
        &batch.pieces,
    )
    .await
    .map_err(err)?;
    let sql = format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM {stage} {}",
        on_conflict_do_nothing(target, cols)
    );
    let inserted = sink.client.execute(sql.as_str(), &[]).await.map_err(err)?;
    concurrent_insert_check(&target.table, batch.rows, inserted)
}

/// Run `COPY … FROM STDIN` with `pieces` as its data; the rows the server read.
async fn send(sink: &PgSink, sql: &str, pieces: &[Bytes]) -> Result<u64, tokio_postgres::Error> {
    let copy = sink.client.copy_in(sql).await?;
    futures::pin_mut!(copy);
    for piece in pieces {
        copy.send(piece.clone()).await?;
    }
    copy.as_mut().finish().await
}

/// One value in the `COPY` text format, as [`types::encode_text`] prints it.
fn put_value(buf: &mut BytesMut, v: &Value) {
    match v {
        Value::Null => buf.put_slice(b"\\N"),
        Value::Int(i) => put_display(buf, i),
        Value::UInt(u) => put_display(buf, u),
        Value::Text(s) | Value::Json(s) => escape_into(buf, s),
        Value::TimestampTz(ts) if put_timestamp(buf, ts.naive_utc()) => buf.put_slice(b"+00"),
        Value::Timestamp(ts) if put_timestamp(buf, *ts) => {}
        other => match types::encode_text(other) {
            Some(text) => escape_into(buf, &text),
            None => buf.put_slice(b"\\N"),
        },
    }
}

fn put_display(buf: &mut BytesMut, v: impl std::fmt::Display) {
    use std::fmt::Write;
    struct W<'a>(&'a mut BytesMut);
    impl std::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.put_slice(s.as_bytes());
            Ok(())
        }
    }
    // Writing into memory cannot fail.
    let _ = write!(W(buf), "{v}");
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` for years 1–9999 without a leap second (what
/// `encode_text` prints for them, needing no escapes); `false`, writing nothing, otherwise.
fn put_timestamp(buf: &mut BytesMut, ts: chrono::NaiveDateTime) -> bool {
    use chrono::{Datelike, Timelike};
    let (year, nano) = (ts.year(), ts.nanosecond());
    if !(1..=9999).contains(&year) || nano >= 1_000_000_000 {
        return false;
    }
    put_digits(buf, year as u32, 4);
    let (month, day, hour, minute, second) =
        (ts.month(), ts.day(), ts.hour(), ts.minute(), ts.second());
    buf_sep_digits(buf, b'-', month, 2);
    buf_sep_digits(buf, b'-', day, 2);
    buf_sep_digits(buf, b' ', hour, 2);
    buf_sep_digits(buf, b':', minute, 2);
    buf_sep_digits(buf, b':', second, 2);
    buf_sep_digits(buf, b'.', nano / 1000, 6);
    true
}

fn buf_sep_digits(buf: &mut BytesMut, sep: u8, n: u32, width: u32) {
    buf.put_u8(sep);
    put_digits(buf, n, width);
}

/// `n` with `width` digits, zero-padded (`n` must be below `10^width`).
fn put_digits(buf: &mut BytesMut, n: u32, width: u32) {
    for p in (0..width).rev() {
        let d = (n / 10u32.pow(p)) % 10;
        buf.put_u8(b'0' + d as u8);
    }
}

/// COPY text format: backslash, tab, newline and carriage return are escaped.
fn escape_into(buf: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        buf.put_slice(bytes.get(start..i).unwrap_or_default());
        buf.put_slice(esc);
        start = i + 1;
    }
    buf.put_slice(bytes.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};
    use tandem_core::change::TableId;
    use tandem_core::value::ColumnType;

    #[test]
    fn copy_text_is_escaped() {
        let mut buf = BytesMut::new();
        escape_into(&mut buf, "a\tb\nc\\d\re");
        assert_eq!(&buf[..], b"a\\tb\\nc\\\\d\\re");
    }

    /// The direct text equals `encode_text` then escaping, for every variant it writes
    /// itself and at the edges where it hands over.
    #[test]
    fn values_print_as_encode_text_does() {
        let ts = |y, nano| {
            NaiveDate::from_ymd_opt(y, 2, 3)
                .and_then(|d| d.and_hms_nano_opt(4, 5, 6, nano))
                .unwrap_or_default()
        };
        let values = vec![
            Value::Null,
            Value::Int(-42),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Text("tab\there\\ and\nnew\rline".into()),
            Value::Json("{\"a\": \"\\n\"}".into()),
            Value::Timestamp(ts(2024, 123_456_789)),
            Value::Timestamp(ts(1, 0)),
            Value::Timestamp(ts(9999, 999_999_000)),
            Value::Timestamp(ts(0, 5_000)),
            Value::Timestamp(ts(-44, 0)),
            Value::Timestamp(ts(10_000, 0)),
            Value::Timestamp(ts(2016, 1_500_000_000)),
            Value::TimestampTz(Utc.from_utc_datetime(&ts(2024, 7_000))),
            Value::TimestampTz(Utc.from_utc_datetime(&ts(0, 0))),
            Value::Bool(true),
            Value::Float(0.1),
            Value::Bytes(vec![0, 255]),
        ];
        for v in &values {
            let mut direct = BytesMut::new();
            put_value(&mut direct, v);
            let mut via = BytesMut::new();
            match types::encode_text(v) {
                Some(t) => escape_into(&mut via, &t),
                None => via.put_slice(b"\\N"),
            }
            assert_eq!(direct, via, "{v:?}");
        }
    }

    fn target(key: Vec<usize>) -> TargetTable {
        let int = ColumnType::Int {
            bytes: 8,
            unsigned: false,
        };
        TargetTable {
            table: TableId::new("public", "t"),
            columns: vec![("a".into(), int.clone()), ("b".into(), int)],
            key,
        }
    }

    fn ins(a: i64, b: i64) -> RowWrite {
        RowWrite::Insert {
            values: vec![Value::Int(a), Value::Int(b)],
        }
    }

    #[test]
    fn only_large_batches_of_distinct_inserts_go_in_bulk() {
        let t = target(vec![0]);
        let writes: Vec<RowWrite> = (0..10).map(|i| ins(i, 7)).collect();
        let Some(b) = bulk_inserts(&t, &writes, 10) else {
            panic!("ten distinct inserts")
        };
        assert_eq!(b.rows, 10);
        let text: Vec<u8> = b.pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert!(text.starts_with(b"0\t7\n1\t7\n"));
        assert!(
            bulk_inserts(&t, &writes, 11).is_none(),
            "below the threshold"
        );
        let mut repeated = writes.clone();
        repeated.push(ins(3, 8));
        assert!(bulk_inserts(&t, &repeated, 10).is_none(), "a key twice");
        // Same values, but the key is the second column: every key repeats.
        assert!(bulk_inserts(&target(vec![1]), &writes, 10).is_none());
        let mut mixed = writes.clone();
        mixed.push(RowWrite::Delete {
            key: vec![Value::Int(99)],
        });
        assert!(bulk_inserts(&t, &mixed, 10).is_none(), "not only inserts");
        let mut short = writes;
        short.push(RowWrite::Insert {
            values: vec![Value::Int(100)],
        });
        assert!(bulk_inserts(&t, &short, 10).is_none(), "a malformed row");
    }
}
