//! Large insert batches: `COPY` into a staging table, then one `INSERT … SELECT … ON
//! CONFLICT` into the target.
//!
//! `COPY` skips the per-row work of array parameters and casts, which pays off from a few
//! thousand rows (see [`super::COPY_THRESHOLD`]). The staging table is a temporary table
//! with the target's column types and no constraints (`CREATE … AS SELECT … WITH NO
//! DATA`), created in the transaction with `ON COMMIT DROP`: a rollback or a commit takes
//! it away, so no state outlives the transaction that needed it.

use bytes::{BufMut, BytesMut};
use futures::SinkExt;
use tandem_core::error::StageError;
use tandem_core::sink::TargetTable;

use super::statements::on_conflict_do_nothing;
use super::{classify, column_list, concurrent_insert_check, ColumnMeta, PgSink};
use crate::ddl::{qualified, quote_ident};

/// Bytes handed to the connection per `COPY` message.
const CHUNK: usize = 256 * 1024;

pub(super) async fn upsert(
    sink: &mut PgSink,
    target: &TargetTable,
    cols: &[(String, ColumnMeta)],
    rows: &[Vec<Option<String>>],
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

    let copy = sink
        .client
        .copy_in(&format!("COPY {stage} ({list}) FROM STDIN"))
        .await
        .map_err(err)?;
    futures::pin_mut!(copy);
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
            copy.send(buf.split().freeze()).await.map_err(err)?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf.split().freeze()).await.map_err(err)?;
    }
    copy.as_mut().finish().await.map_err(err)?;

    let sql = format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM {stage} {}",
        on_conflict_do_nothing(target, cols)
    );
    let inserted = sink.client.execute(sql.as_str(), &[]).await.map_err(err)?;
    concurrent_insert_check(&target.table, rows.len(), inserted)
}

/// COPY text format: backslash, tab, newline and carriage return are escaped.
fn escape_into(buf: &mut BytesMut, text: &str) {
    for b in text.bytes() {
        match b {
            b'\\' => buf.put_slice(b"\\\\"),
            b'\t' => buf.put_slice(b"\\t"),
            b'\n' => buf.put_slice(b"\\n"),
            b'\r' => buf.put_slice(b"\\r"),
            _ => buf.put_u8(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_is_escaped() {
        let mut buf = BytesMut::new();
        escape_into(&mut buf, "a\tb\nc\\d\re");
        assert_eq!(&buf[..], b"a\\tb\\nc\\\\d\\re");
    }
}
