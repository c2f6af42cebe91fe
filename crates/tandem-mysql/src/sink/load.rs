//! Large insert runs: `LOAD DATA LOCAL INFILE` streamed from memory, inside the applier's
//! open transaction.
//!
//! The server parses tab-separated text far faster than it binds the parameters of
//! multi-row `INSERT`s (the MariaDB notes measured ~83k against ~47k rows/s; see
//! `BENCHMARKS.md` for the initial copy), so runs of at least [`super::LOAD_DATA_MIN_ROWS`]
//! inserts (in practice: the batches of an initial copy) go this way.
//!
//! What stays as on the `INSERT` path:
//! - **Never overwrite.** `IGNORE` keeps an existing key's row; the affected-row count then
//!   falls short, which is the same transient "inserted meanwhile" error as
//!   [`super::MySqlSink::insert_rows`] raises, so the retry reads and merges the row.
//! - **Nothing silent.** With `LOCAL` (and `IGNORE`), the server turns a value the column
//!   cannot hold into a *warning* and stores a clipped value. So the load runs after a
//!   `SAVEPOINT`; on any warning, a short count or a data error the run is rolled back to it
//!   and applied again through multi-row `INSERT`s, which fail on the exact row and column
//!   (and report a concurrent insert) as usual.
//! - **Same transaction, same tag.** It is one more statement of the session, so the
//!   checkpoint commits with it and `skip_replication` (or the marker written at `begin`)
//!   covers it.
//!
//! Text format: the server's defaults (`FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES
//! TERMINATED BY '\n'`), `\N` for NULL, and `CHARACTER SET binary` so bytes reach the
//! columns unconverted (text is sent as UTF-8, the session's character set). Values are
//! printed the way the server reads them as strings: decimals in plain notation, times as
//! `YYYY-MM-DD HH:MM:SS.ffffff` (`TIMESTAMP` in UTC, the session's time zone), booleans as
//! `1`/`0`.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use futures::stream::{self, StreamExt};
use mysql_async::prelude::Queryable;
use tandem_core::error::StageError;
use tandem_core::sink::TargetTable;
use tandem_core::Value;

use super::batch::{ident, table_ident};
use super::MySqlSink;
use crate::connect::{classify, is_transient_code};

/// Bytes handed to the connection per piece of the stream.
const PIECE: usize = 256 * 1024;
/// The server refuses `LOAD DATA LOCAL` (`local_infile = OFF`): MySQL 1148 and 3948,
/// MariaDB 4166. The sink then stays with `INSERT`s for the rest of its connection (one
/// warning, not one refused attempt per batch).
const LOCAL_INFILE_DISABLED: [u16; 3] = [1148, 3948, 4166];

/// Whether the run went in; `false` means it was rolled back and must take the `INSERT` path.
pub(super) async fn load(
    sink: &mut MySqlSink,
    t: &TargetTable,
    rows: &[&Vec<Value>],
) -> Result<bool, StageError> {
    if rows.iter().any(|r| r.len() != t.columns.len()) {
        // The INSERT path names the malformed write.
        return Ok(false);
    }
    let pieces = encode(rows);
    let cols: Vec<String> = t.columns.iter().map(|(n, _)| ident(n)).collect();
    let sql = format!(
        "LOAD DATA LOCAL INFILE 'tandem' IGNORE INTO TABLE {} CHARACTER SET binary ({})",
        table_ident(t),
        cols.join(", ")
    );
    let savepoint = |what: &'static str| {
        move |e| classify(format!("{what} around loading into {}", t.table), e)
    };
    sink.conn
        .query_drop("SAVEPOINT tandem_load")
        .await
        .map_err(savepoint("Setting a savepoint"))?;
    sink.conn
        .set_infile_handler(async move { Ok(stream::iter(pieces.into_iter().map(Ok)).boxed()) });
    let went_in = match sink.conn.query_drop(sql).await {
        Ok(()) => sink.conn.affected_rows() == rows.len() as u64 && sink.conn.get_warnings() == 0,
        Err(mysql_async::Error::Server(s)) if LOCAL_INFILE_DISABLED.contains(&s.code) => {
            // Once per connection: the sink stops trying, so this is the only warning until
            // a reconnect, which also picks up a server since switched on.
            tracing::warn!(
                table = %t.table,
                code = s.code,
                advice = "nothing is lost: for faster initial copies set local_infile = ON on the server (SET GLOBAL local_infile = 1, and in its config file)",
                "the server refuses LOAD DATA LOCAL (local_infile = OFF); large insert runs go through INSERT statements for the rest of this connection"
            );
            sink.load_data_min_rows = usize::MAX;
            false
        }
        Err(mysql_async::Error::Server(s)) if !is_transient_code(s.code) => {
            tracing::debug!(table = %t.table, code = s.code, "load data refused; inserting instead");
            false
        }
        Err(e) => return Err(classify(format!("Loading rows into {}", t.table), e)),
    };
    let finish = if went_in {
        "RELEASE SAVEPOINT tandem_load"
    } else {
        "ROLLBACK TO SAVEPOINT tandem_load"
    };
    sink.conn
        .query_drop(finish)
        .await
        .map_err(savepoint("Ending the savepoint"))?;
    Ok(went_in)
}

/// The rows as the load's text, in pieces of about [`PIECE`] bytes.
fn encode(rows: &[&Vec<Value>]) -> Vec<Bytes> {
    let mut pieces = Vec::new();
    let mut buf = BytesMut::with_capacity(PIECE + 4096);
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b'\t');
            }
            put_value(&mut buf, v);
        }
        buf.put_u8(b'\n');
        if buf.len() >= PIECE {
            pieces.push(buf.split().freeze());
        }
    }
    if !buf.is_empty() {
        pieces.push(buf.freeze());
    }
    pieces
}

fn put_value(buf: &mut BytesMut, v: &Value) {
    use std::fmt::Write;
    let mut w = Writer(buf);
    // Writing into memory cannot fail.
    let _ = match v {
        Value::Null => {
            w.0.put_slice(b"\\N");
            Ok(())
        }
        Value::Bool(b) => write!(w, "{}", u8::from(*b)),
        Value::Int(i) => write!(w, "{i}"),
        Value::UInt(u) => write!(w, "{u}"),
        Value::Float(f) => write!(w, "{f}"),
        Value::Decimal(d) => write!(w, "{}", d.to_plain_string()),
        Value::Text(s) | Value::Json(s) => {
            escape_into(w.0, s.as_bytes());
            Ok(())
        }
        Value::Unsupported { text, .. } => {
            escape_into(w.0, text.as_bytes());
            Ok(())
        }
        Value::Bytes(b) => {
            escape_into(w.0, b);
            Ok(())
        }
        Value::Date(d) => write_date(&mut w, *d),
        Value::Time(t) => write_time(&mut w, *t),
        Value::Timestamp(t) => write_datetime(&mut w, *t),
        Value::TimestampTz(t) => write_datetime(&mut w, t.naive_utc()),
        Value::Uuid(u) => write!(w, "{}", u.hyphenated()),
    };
}

struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

fn write_date(w: &mut Writer<'_>, d: NaiveDate) -> std::fmt::Result {
    use std::fmt::Write;
    // Digits pushed directly for the years of four digits: `write!`'s padding was most of
    // the encoding time of an initial copy's timestamps.
    match u32::try_from(d.year()) {
        Ok(y) if y <= 9999 => {
            put_digits(w.0, y, 4);
            w.0.put_u8(b'-');
            put_digits(w.0, d.month(), 2);
            w.0.put_u8(b'-');
            put_digits(w.0, d.day(), 2);
            Ok(())
        }
        _ => write!(w, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
    }
}

/// `n` zero-padded to `width` digits (`n < 10^width`).
fn put_digits(buf: &mut BytesMut, n: u32, width: u32) {
    for p in (0..width).rev() {
        buf.put_u8(b'0' + (n / 10u32.pow(p) % 10) as u8);
    }
}

fn write_time(w: &mut Writer<'_>, t: NaiveTime) -> std::fmt::Result {
    put_digits(w.0, t.hour(), 2);
    w.0.put_u8(b':');
    put_digits(w.0, t.minute(), 2);
    w.0.put_u8(b':');
    put_digits(w.0, t.second(), 2);
    w.0.put_u8(b'.');
    put_digits(w.0, (t.nanosecond() / 1000).min(999_999), 6);
    Ok(())
}

fn write_datetime(w: &mut Writer<'_>, t: NaiveDateTime) -> std::fmt::Result {
    use std::fmt::Write;
    write_date(w, t.date())?;
    w.write_char(' ')?;
    write_time(w, t.time())
}

/// The escapes the server undoes with `ESCAPED BY '\\'`: the separators, the escape
/// itself, NUL (`\0`) and carriage return.
fn escape_into(buf: &mut BytesMut, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'\\' => buf.put_slice(b"\\\\"),
            b'\t' => buf.put_slice(b"\\t"),
            b'\n' => buf.put_slice(b"\\n"),
            b'\r' => buf.put_slice(b"\\r"),
            0 => buf.put_slice(b"\\0"),
            _ => buf.put_u8(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &Value) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_value(&mut buf, v);
        buf.to_vec()
    }

    #[test]
    fn separators_escapes_and_null_are_escaped() {
        assert_eq!(text(&Value::Null), b"\\N");
        assert_eq!(text(&Value::Text(String::new())), b"");
        assert_eq!(text(&Value::Text("\\N".into())), b"\\\\N");
        assert_eq!(
            text(&Value::Bytes(vec![0, b'\t', b'\n', b'\r', b'\\', 0xff])),
            b"\\0\\t\\n\\r\\\\\xff"
        );
    }

    #[test]
    fn values_print_as_the_server_reads_them() {
        let dt = NaiveDate::from_ymd_opt(999, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 6))
            .map(Value::Timestamp);
        assert_eq!(
            text(&dt.unwrap_or(Value::Null)),
            b"0999-01-02 03:04:05.000006"
        );
        assert_eq!(text(&Value::Bool(true)), b"1");
        assert_eq!(text(&Value::Float(1e-7)), b"0.0000001");
        let dec = "-0.000000000000000000000000000001"
            .parse()
            .map(Value::Decimal);
        assert_eq!(
            text(&dec.unwrap_or(Value::Null)),
            b"-0.000000000000000000000000000001"
        );
    }

    #[test]
    fn dates_and_times_print_as_the_padded_formats_do() {
        for (y, nano) in [
            (1, 0),
            (999, 6_000),
            (2024, 123_456_789),
            (9999, 1_999_999_999),
        ] {
            let Some(dt) = NaiveDate::from_ymd_opt(y, 12, 31)
                .and_then(|d| d.and_hms_nano_opt(23, 59, 59, nano))
            else {
                continue;
            };
            let want = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                (dt.nanosecond() / 1000).min(999_999)
            );
            assert_eq!(text(&Value::Timestamp(dt)), want.as_bytes());
        }
    }

    #[test]
    fn rows_end_in_newlines_and_split_into_pieces() {
        let row = vec![Value::Int(1), Value::Text("x".repeat(1000))];
        let rows: Vec<&Vec<Value>> = std::iter::repeat_n(&row, 600).collect();
        let pieces = encode(&rows);
        assert!(pieces.len() >= 2);
        let all: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(all.iter().filter(|&&b| b == b'\n').count(), 600);
        assert!(all.ends_with(b"\n"));
    }
}
