//! The first start of a direction: copy what the source already holds, then stream —
//! resumable table by table after a crash.
//!
//! The endpoint's snapshot reads the mapped tables inside one consistent snapshot whose log
//! position `P` is known (PostgreSQL: the slot's consistent point; MySQL: the binlog
//! position of `START TRANSACTION WITH CONSISTENT SNAPSHOT`). Each table's rows go through
//! the normal pipeline as inserts of snapshot transactions (`Begin{snapshot}`, inserts,
//! [`SourceEvent::SnapshotCommit`]), in key order, so rows the target already has are
//! resolved like any other conflict. A table whose key orders exactly
//! ([`copy_progress::orders_exactly`]) is committed in parts of about
//! [`COMMIT_EVERY_CHUNKS`] chunks; each target commit records, in the target's checkpoint table
//! under the table's snapshot-progress key (`"<direction> snapshot <schema.table>"`), the
//! table's [`CopyProgress`]: the key columns, and per part the last key and the position
//! the part was read at. Any other table is one transaction (one part).
//!
//! ## Resuming, and why it stays exactly-once
//! PostgreSQL's exported snapshot dies with its connection, so after a crash the rest is
//! copied from a **new** snapshot at `P2`: unfinished tables after their last committed key
//! `K`, tables not begun from their start. Finished tables and committed parts keep their
//! rows as of `P1 < P2`. Streaming then starts at the **oldest** part's position (`P1`),
//! and a change to key `k` of table `t` is applied only if its transaction commits after
//! the position of the part holding `k` ([`StreamFilter`]):
//! - a key copied at `P1` gets every change after `P1`, on top of its row as of `P1`: exact;
//! - a key copied at `P2` already holds the effect of every change up to `P2` through its
//!   row, so its changes in `(P1, P2]` are dropped (applying them again would count a
//!   `delta` twice); its changes after `P2` are applied: exact;
//! - an update in `(P1, P2]` moving a row from a `P1` key to a `P2` key becomes the delete
//!   of the old key (the new key's row came with the `P2` part), one moving it the other
//!   way the insert of the new key (the old key's row was gone at `P2`).
//!
//! Which part holds a key is decided by comparing keys in Rust, which must agree with the
//! source's `ORDER BY`: hence parts only for keys of integers, dates and timestamps; text
//! keys would need the source collation's order, which tandem does not attempt. The
//! uncommitted rest of the interrupted part was one target transaction, so the target holds
//! none of it. On PostgreSQL the new snapshot comes from a second, short-lived slot
//! (`<slot>_resume`, dropped after the copy, and at every later start if a crash left it
//! behind): the direction's own slot must keep the WAL from `P1`. When every table is
//! copied, the direction's checkpoint is written at `P1` (a `Progress` event), and every
//! later start re-reads the copy records to drop what the copies hold.
//!
//! Costs and limits: the filter only matters between `P1` and the newest part's position;
//! within it, a transaction's changes to such a table are held until its commit shows its
//! position (memory bounded by that one transaction), and they reach the applier after the
//! transaction's other changes. To copy everything again, stop tandem and delete the
//! direction's rows (`pipeline LIKE '<direction>%'`) from the target's checkpoint table
//! (and, on PostgreSQL, the slot), or run `tandem teardown`.
//!
//! Progress (rows, rows/s, ETA, tables done) is logged every few seconds and shown in
//! `/status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use tandem_core::change::{
    Cell, Change, OldRow, Row, RowChange, SourceEvent, TableId, TableSchema, TxBegin,
};
use tandem_core::copy_progress::{self, CopyProgress};
use tandem_core::error::StageError;
use tandem_core::position::Position;
use tandem_core::telemetry::{self, SnapshotStatus, StatusBoard};
use tandem_core::transport::{ChannelSender, EventSender};
use tandem_core::value::Value;
use tracing::{info, warn};

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What the runtime needs of an endpoint's snapshot.
#[async_trait]
pub trait SnapshotReader: Send {
    fn schema(&self, table: &TableId) -> Option<Arc<TableSchema>>;
    async fn next_chunk(&mut self, table: &TableId) -> Result<Option<Vec<Row>>, StageError>;
    /// Rows done and the estimated total.
    fn progress(&self, table: &TableId) -> (u64, Option<u64>);
    /// The columns (indexes into the schema's) the copy reads `table` in the order of.
    fn order_key(&self, table: &TableId) -> Option<Vec<usize>>;
    /// Continue the copy of `table` after `key` (values of the order key's columns).
    fn resume_after(&mut self, table: &TableId, key: &[Value]) -> Result<(), StageError>;
    async fn finish(self: Box<Self>) -> Result<(), StageError>;
}

#[async_trait]
impl SnapshotReader for tandem_postgres::snapshot::PgSnapshot {
    fn schema(&self, table: &TableId) -> Option<Arc<TableSchema>> {
        tandem_postgres::snapshot::PgSnapshot::schema(self, table)
    }
    async fn next_chunk(&mut self, table: &TableId) -> Result<Option<Vec<Row>>, StageError> {
        tandem_postgres::snapshot::PgSnapshot::next_chunk(self, table).await
    }
    fn progress(&self, table: &TableId) -> (u64, Option<u64>) {
        tandem_postgres::snapshot::PgSnapshot::progress(self, table)
            .map_or((0, None), |p| (p.rows_done, p.estimated_total))
    }
    fn order_key(&self, table: &TableId) -> Option<Vec<usize>> {
        tandem_postgres::snapshot::PgSnapshot::order_key(self, table).map(<[usize]>::to_vec)
    }
    fn resume_after(&mut self, table: &TableId, key: &[Value]) -> Result<(), StageError> {
        tandem_postgres::snapshot::PgSnapshot::resume_after(self, table, key)
    }
    async fn finish(self: Box<Self>) -> Result<(), StageError> {
        tandem_postgres::snapshot::PgSnapshot::finish(*self).await
    }
}

/// MySQL/MariaDB: one consistent-snapshot transaction, tables copied by primary key.
pub struct MySqlSnapshotReader {
    pub snapshot: tandem_mysql::snapshot::Snapshot,
    pub copies: std::collections::HashMap<TableId, tandem_mysql::snapshot::TableCopy>,
    pub chunk_rows: usize,
}

impl MySqlSnapshotReader {
    pub async fn open(
        mut snapshot: tandem_mysql::snapshot::Snapshot,
        tables: &[TableId],
        chunk_rows: usize,
    ) -> Result<Self, StageError> {
        let mut copies = std::collections::HashMap::new();
        for t in tables {
            let copy = snapshot.open_table(&t.schema, &t.name, None).await?;
            copies.insert(t.clone(), copy);
        }
        Ok(MySqlSnapshotReader {
            snapshot,
            copies,
            chunk_rows: chunk_rows.max(1),
        })
    }
}

#[async_trait]
impl SnapshotReader for MySqlSnapshotReader {
    fn schema(&self, table: &TableId) -> Option<Arc<TableSchema>> {
        self.copies.get(table).map(|c| Arc::clone(&c.schema))
    }
    async fn next_chunk(&mut self, table: &TableId) -> Result<Option<Vec<Row>>, StageError> {
        match self.copies.get_mut(table) {
            Some(copy) => self.snapshot.next_chunk(copy, self.chunk_rows).await,
            None => Ok(None),
        }
    }
    fn progress(&self, table: &TableId) -> (u64, Option<u64>) {
        self.copies.get(table).map_or((0, None), |c| {
            (
                c.progress.rows,
                Some(c.progress.estimated_total).filter(|t| *t > 0),
            )
        })
    }
    fn order_key(&self, table: &TableId) -> Option<Vec<usize>> {
        self.copies.get(table).map(|c| c.schema.key.clone())
    }
    fn resume_after(&mut self, table: &TableId, key: &[Value]) -> Result<(), StageError> {
        match self.copies.get_mut(table) {
            Some(copy) if key.len() == copy.schema.key.len() => {
                copy.progress.last_key = Some(key.to_vec());
                Ok(())
            }
            _ => Err(StageError::definite(
                format!("The resume key for {table} does not match its primary key"),
                "copy the table again: delete its row from the target's checkpoint table",
            )),
        }
    }
    async fn finish(self: Box<Self>) -> Result<(), StageError> {
        self.snapshot.finish().await.map(drop)
    }
}

fn eta_seconds(done: u64, total: Option<u64>, rate: f64) -> Option<u64> {
    match total {
        Some(t) if t > done && rate > 0.0 => Some(((t - done) as f64 / rate) as u64),
        Some(_) => Some(0),
        None => None,
    }
}

fn eta(done: u64, total: Option<u64>, rate: f64) -> String {
    eta_seconds(done, total, rate).map_or_else(|| "unknown".into(), |s| format!("{s}s"))
}

/// Which tables to copy, and what an earlier run already did.
pub struct CopyPlan<'a> {
    /// The tables to copy now, in order, each with the record of the part an earlier,
    /// interrupted run committed (the copy continues after its last key).
    pub tables: &'a [(TableId, Option<CopyProgress>)],
    /// Tables of the direction in all (copied before, or now).
    pub tables_total: usize,
    /// Tables an earlier, interrupted run copied completely.
    pub tables_resumed: usize,
    /// Rows per chunk the reader reads (`daemon.snapshot_chunk_rows`).
    pub chunk_rows: usize,
}

/// A table's copy is committed on the target (with its last key, so that a crash resumes
/// after it) once this many chunks (`daemon.snapshot_chunk_rows` rows each: 500,000 rows by
/// default) are sent since the last commit … Each commit waits for the queued writes, so
/// the applier's overlap with the target is lost once per part: parts are large.
const COMMIT_EVERY_CHUNKS: u64 = 100;
/// … or this long after it, whichever comes first.
const COMMIT_EVERY: Duration = Duration::from_secs(30);

/// Send every row of `plan.tables` in key order as snapshot transactions read at
/// `position`: a table whose key orders exactly ([`copy_progress::orders_exactly`]) in
/// parts of about [`COMMIT_EVERY_CHUNKS`] chunks, any other in one transaction. Each ends with
/// a [`SourceEvent::SnapshotCommit`] carrying the table's copy record so far. Returns the
/// finished records.
pub async fn copy(
    mut reader: Box<dyn SnapshotReader>,
    plan: CopyPlan<'_>,
    position: Position,
    tx: &mut ChannelSender,
    board: &StatusBoard,
    direction: &str,
) -> Result<Vec<(TableId, CopyProgress)>, StageError> {
    let partial = plan.tables.iter().filter(|(_, p)| p.is_some()).count();
    if plan.tables_resumed > 0 || partial > 0 {
        info!(
            direction,
            tables_already_copied = plan.tables_resumed,
            tables_partly_copied = partial,
            tables_to_copy = plan.tables.len(),
            "resuming an interrupted initial copy"
        );
    }
    // Committed tables are counted by the applier from here on.
    board.update(direction, |s| s.snapshot = None);
    let mut finished = Vec::with_capacity(plan.tables.len());
    for (i, (table, earlier)) in plan.tables.iter().enumerate() {
        let Some(schema) = reader.schema(table) else {
            return Err(StageError::definite(
                format!("The snapshot has no table {table}"),
                "check that the mapped table exists on the source",
            ));
        };
        let order_key = reader.order_key(table).unwrap_or_default();
        let key_columns: Vec<String> = order_key
            .iter()
            .filter_map(|&k| schema.columns.get(k).map(|c| c.name.clone()))
            .collect();
        let in_parts = !order_key.is_empty()
            && order_key.iter().all(|&k| {
                schema
                    .columns
                    .get(k)
                    .is_some_and(|c| copy_progress::orders_exactly(&c.column_type))
            });
        let mut record = match earlier {
            Some(e) if e.key_columns == key_columns && in_parts => {
                if let Some(key) = e.resume_key() {
                    reader.resume_after(table, key)?;
                    info!(direction, %table, rows_already_copied = e.rows, after_key = ?key, "resuming the table's copy after its last committed key");
                }
                e.clone()
            }
            Some(e) => {
                warn!(direction, %table, recorded_key = ?e.key_columns, key = ?key_columns,
                    "the table's key changed since its copy was interrupted: copying it again from its start (rows already on the target are reconciled as conflicts)");
                CopyProgress::new(key_columns.clone())
            }
            None => CopyProgress::new(key_columns.clone()),
        };
        let rows_before = record.rows;
        let tables_done = plan.tables_resumed + i;
        let begin = SourceEvent::Begin(TxBegin {
            commit_time: Some(Utc::now()),
            origin: None,
            snapshot: true,
        });
        tx.send(begin.clone()).await?;
        let started = Instant::now();
        let mut last_log = Instant::now();
        let mut last_commit = (Instant::now(), rows_before);
        let mut rows_sent = rows_before;
        info!(direction, %table, table_number = tables_done + 1, tables = plan.tables_total, "snapshot started");
        let show = |done: u64, total: Option<u64>, rate: f64| {
            board.update(direction, |s| {
                s.state = "snapshot".into();
                // Tables committed on the target: the applier's count once it has one.
                let tables_done = s.snapshot.as_ref().map_or(tables_done, |x| x.tables_done);
                s.snapshot = Some(SnapshotStatus {
                    table: table.to_string(),
                    rows_done: done,
                    rows_estimated: total.unwrap_or(0),
                    rows_per_second: rate as u64,
                    eta_seconds: eta_seconds(
                        done.saturating_sub(rows_before),
                        total.map(|t| t.saturating_sub(rows_before)),
                        rate,
                    ),
                    tables_done,
                    tables_total: plan.tables_total,
                    tables_resumed: plan.tables_resumed,
                });
            });
        };
        show(rows_before, None, 0.0);
        let mut next = reader.next_chunk(table).await?;
        while let Some(rows) = next {
            let n = rows.len() as u64;
            let last_key: Option<Vec<Value>> = rows.last().and_then(|r| {
                order_key
                    .iter()
                    .map(|&k| r.0.get(k).and_then(|c| c.value().cloned()))
                    .collect()
            });
            // The next chunk is read while this one waits for room in the channel (the
            // applier writing a batch), so reading and writing overlap. Memory: at most
            // two chunks and the channel.
            let send = async {
                for row in rows {
                    let change = Change {
                        table: Arc::clone(&schema),
                        row: RowChange::Insert { new: row },
                    };
                    tx.send(SourceEvent::Change(change)).await?;
                }
                Ok::<(), StageError>(())
            };
            let (sent, fetched) = tokio::join!(send, reader.next_chunk(table));
            sent?;
            next = fetched?;
            metrics::counter!(telemetry::SNAPSHOT_ROWS, "direction" => direction.to_owned(), "table" => table.to_string())
                .increment(n);
            let (_, total) = reader.progress(table);
            // Rows sent: the reader's own count includes the chunk it has read ahead,
            // which is not in the part a commit here records.
            rows_sent += n;
            let (done, this_run) = (rows_sent, rows_sent - rows_before);
            record.rows = done;
            if in_parts
                && next.is_some()
                && (done - last_commit.1 >= COMMIT_EVERY_CHUNKS * plan.chunk_rows as u64
                    || last_commit.0.elapsed() >= COMMIT_EVERY)
            {
                if let Some(key) = last_key {
                    record.advance(&position, Some(key));
                    tx.send(SourceEvent::SnapshotCommit {
                        table: table.clone(),
                        progress: record.clone(),
                        commit_time: Utc::now(),
                    })
                    .await?;
                    tx.send(begin.clone()).await?;
                    last_commit = (Instant::now(), done);
                }
            }
            if let Some(t) = total {
                metrics::gauge!(telemetry::SNAPSHOT_ROWS_ESTIMATED, "direction" => direction.to_owned(), "table" => table.to_string())
                    .set(t as f64);
            }
            let rate = this_run as f64 / started.elapsed().as_secs_f64().max(0.001);
            show(done, total, rate);
            if last_log.elapsed() >= PROGRESS_EVERY {
                let pct = total.filter(|t| *t > 0).map_or("?".into(), |t| {
                    format!("{:.0}", 100.0 * done.min(t) as f64 / t as f64)
                });
                info!(direction, %table, rows = done, estimated = ?total, percent = %pct, rows_per_second = rate as u64, eta = %eta(done.saturating_sub(rows_before), total.map(|t| t.saturating_sub(rows_before)), rate), "snapshot progress");
                last_log = Instant::now();
            }
        }
        record.advance(&position, None);
        tx.send(SourceEvent::SnapshotCommit {
            table: table.clone(),
            progress: record.clone(),
            commit_time: Utc::now(),
        })
        .await?;
        let (this_run, _) = reader.progress(table);
        let secs = started.elapsed().as_secs_f64();
        info!(direction, %table, rows = rows_before + this_run, seconds = format!("{secs:.1}"), rows_per_second = (this_run as f64 / secs.max(0.001)) as u64, "snapshot of table done");
        finished.push((table.clone(), record));
    }
    reader.finish().await?;
    // `streaming` follows when the applier has committed the last table
    // (`StatusBoard::snapshot_table_committed`).
    Ok(finished)
}

/// The oldest of the positions the tables were copied at: where streaming must start so
/// that no table misses a change.
pub fn oldest(positions: &[&Position]) -> Result<Option<Position>, StageError> {
    let mut oldest: Option<&Position> = None;
    for p in positions {
        oldest = match oldest {
            None => Some(p),
            Some(o) => match p.try_cmp(o) {
                Ok(std::cmp::Ordering::Less) => Some(p),
                Ok(_) => Some(o),
                Err(e) => return Err(incomparable(e)),
            },
        };
    }
    Ok(oldest.cloned())
}

fn incomparable(e: tandem_core::position::PositionError) -> StageError {
    StageError::definite_from(
        "The positions the initial copy's tables were copied at cannot be ordered",
        "copy again: stop tandem, delete this direction's rows (pipeline LIKE '<direction>%') \
         from the target's checkpoint table, and start it",
        e,
    )
}

/// Drops the stream's changes to a table that its initial copy already holds: those of
/// transactions committed at or before the position the part of the copy holding the
/// changed key was read at (see the module docs). Empty, it passes every event through
/// unchanged.
#[derive(Debug, Default)]
pub struct StreamFilter {
    /// Tables with a part copied after the stream's start, and their copy records.
    pending: Vec<(TableId, CopyProgress)>,
    /// Changes of the open transaction to a table in `pending`, held until its commit.
    held: Vec<Change>,
}

impl StreamFilter {
    /// Filter for a stream resuming after `start`: every table with a part copied at a
    /// later position.
    pub fn new(
        copied: impl IntoIterator<Item = (TableId, CopyProgress)>,
        start: &Position,
    ) -> Result<StreamFilter, StageError> {
        let mut pending = Vec::new();
        for (t, record) in copied {
            if !all_at_or_before(&record, start)? {
                pending.push((t, record));
            }
        }
        Ok(StreamFilter {
            pending,
            held: Vec::new(),
        })
    }

    /// The events to forward in place of `ev`, in order.
    pub fn process(&mut self, ev: SourceEvent) -> Result<Vec<SourceEvent>, StageError> {
        if self.pending.is_empty() {
            return Ok(vec![ev]);
        }
        match ev {
            SourceEvent::Change(c) if self.pending.iter().any(|(t, _)| *t == c.table.table) => {
                self.held.push(c);
                Ok(Vec::new())
            }
            SourceEvent::Commit(c) => {
                let mut out = Vec::new();
                for ch in std::mem::take(&mut self.held) {
                    let record = self
                        .pending
                        .iter()
                        .find(|(t, _)| *t == ch.table.table)
                        .map(|(_, r)| r);
                    let kept = match record {
                        Some(r) => not_yet_copied(r, ch, &c.position)?,
                        None => Some(ch),
                    };
                    match kept {
                        Some(ch) => out.push(SourceEvent::Change(ch)),
                        None => metrics::counter!(telemetry::SNAPSHOT_SKIPPED_CHANGES).increment(1),
                    }
                }
                self.passed(&c.position)?;
                out.push(SourceEvent::Commit(c));
                Ok(out)
            }
            SourceEvent::Progress { position, at } => {
                self.passed(&position)?;
                Ok(vec![SourceEvent::Progress { position, at }])
            }
            other => Ok(vec![other]),
        }
    }

    /// The stream reached `position`: later transactions commit after it, so tables
    /// whose every part was copied at or before it need no more filtering.
    fn passed(&mut self, position: &Position) -> Result<(), StageError> {
        let mut keep = Vec::with_capacity(self.pending.len());
        for (t, record) in std::mem::take(&mut self.pending) {
            if all_at_or_before(&record, position)? {
                info!(table = %t, "stream passed the table's copy position");
            } else {
                keep.push((t, record));
            }
        }
        self.pending = keep;
        Ok(())
    }
}

fn all_at_or_before(record: &CopyProgress, position: &Position) -> Result<bool, StageError> {
    for part in &record.parts {
        if !part.at.is_at_or_before(position).map_err(incomparable)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What of `change` (committed at `commit`) the target does not hold yet through the copy
/// `record`: the change itself, `None`, or — for an update moving a row between parts —
/// the half whose part was copied before the change: the delete of the old key (its new
/// key's part already holds the moved row) or the insert of the new one.
fn not_yet_copied(
    record: &CopyProgress,
    change: Change,
    commit: &Position,
) -> Result<Option<Change>, StageError> {
    let after = |row: &Row| -> Result<bool, StageError> {
        let part = match record.parts.as_slice() {
            [only] => only,
            _ => {
                let key = key_of(record, &change.table, row)?;
                record.part_for(&key).ok_or_else(|| {
                    StageError::definite(
                        format!(
                            "A streamed change to {} has a key ({key:?}) that cannot be placed in its table's initial copy",
                            change.table.table
                        ),
                        "copy the table again: stop tandem, delete this direction's rows (pipeline LIKE '<direction>%') from the target's checkpoint table, and start it",
                    )
                })?
            }
        };
        Ok(!commit.is_at_or_before(&part.at).map_err(incomparable)?)
    };
    fn old_image(old: &OldRow) -> Option<&Row> {
        match old {
            OldRow::Full(r) | OldRow::KeyOnly(r) => Some(r),
            OldRow::Missing => None,
        }
    }
    let keep = match &change.row {
        RowChange::Insert { new } => after(new)?,
        RowChange::Delete { old } => match old_image(old) {
            Some(r) => after(r)?,
            None => true,
        },
        RowChange::Update { old, new } => {
            let new_after = after(new)?;
            let old_after = match old_image(old) {
                Some(r) => after(r)?,
                None => new_after,
            };
            match (old_after, new_after) {
                (true, true) => true,
                (false, false) => false,
                (true, false) => {
                    let RowChange::Update { old, .. } = change.row else {
                        return Ok(None);
                    };
                    return Ok(Some(Change {
                        table: change.table,
                        row: RowChange::Delete { old },
                    }));
                }
                (false, true) => {
                    // An insert needs every value; one PostgreSQL did not send (unchanged
                    // TOAST) stays an update, resolved as an update of a missing row.
                    if new.0.iter().any(|c| matches!(c, Cell::Unchanged)) {
                        true
                    } else {
                        let RowChange::Update { new, .. } = change.row else {
                            return Ok(None);
                        };
                        return Ok(Some(Change {
                            table: change.table,
                            row: RowChange::Insert { new },
                        }));
                    }
                }
            }
        }
    };
    Ok(keep.then_some(change))
}

/// The values of `record`'s key columns in `row` (decoded with `schema`).
fn key_of<'r>(
    record: &CopyProgress,
    schema: &TableSchema,
    row: &'r Row,
) -> Result<Vec<&'r Value>, StageError> {
    record
        .key_columns
        .iter()
        .map(|name| {
            schema
                .column_index(name)
                .and_then(|i| row.0.get(i))
                .and_then(Cell::value)
                .ok_or_else(|| {
                    StageError::definite(
                        format!(
                            "A streamed change to {} lacks key column {name:?}, which its initial copy was ordered by",
                            schema.table
                        ),
                        "restore the column, or copy the table again: delete this direction's rows (pipeline LIKE '<direction>%') from the target's checkpoint table",
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::change::{ColumnSchema, TxCommit};
    use tandem_core::position::Lsn;
    use tandem_core::value::ColumnType;

    fn lsn(n: u64) -> Position {
        Position::PgLsn { lsn: Lsn(n) }
    }

    fn table(name: &str) -> Arc<TableSchema> {
        Arc::new(TableSchema {
            table: TableId::new("public", name),
            columns: vec![ColumnSchema {
                name: "id".into(),
                column_type: ColumnType::Int {
                    bytes: 8,
                    unsigned: false,
                },
                native_type: "bigint".into(),
                nullable: false,
            }],
            key: vec![0],
        })
    }

    fn whole(n: u64) -> CopyProgress {
        CopyProgress::first(Vec::new(), lsn(n), None)
    }

    fn row(id: i64) -> Row {
        Row(vec![Cell::Value(Value::Int(id))])
    }

    fn update(t: &Arc<TableSchema>, old: i64, new: i64) -> SourceEvent {
        SourceEvent::Change(Change {
            table: Arc::clone(t),
            row: RowChange::Update {
                old: OldRow::KeyOnly(row(old)),
                new: row(new),
            },
        })
    }

    fn delete(t: &Arc<TableSchema>, id: i64) -> SourceEvent {
        SourceEvent::Change(Change {
            table: Arc::clone(t),
            row: RowChange::Delete {
                old: OldRow::KeyOnly(row(id)),
            },
        })
    }

    /// Every change forwarded for a transaction committed at `at`, as `+id` (insert),
    /// `-id` (delete) or `old>new` (update).
    fn ops(f: &mut StreamFilter, changes: Vec<SourceEvent>, at: u64) -> Vec<String> {
        let mut out = Vec::new();
        for ev in changes.into_iter().chain([commit(at)]) {
            out.extend(f.process(ev).unwrap());
        }
        let id = |r: &Row| match r.0.first() {
            Some(Cell::Value(Value::Int(i))) => *i,
            _ => -1,
        };
        out.into_iter()
            .filter_map(|e| match e {
                SourceEvent::Change(c) => Some(match &c.row {
                    RowChange::Insert { new } => format!("+{}", id(new)),
                    RowChange::Delete {
                        old: OldRow::KeyOnly(r),
                    } => format!("-{}", id(r)),
                    RowChange::Update {
                        old: OldRow::KeyOnly(o),
                        new,
                    } => format!("{}>{}", id(o), id(new)),
                    other => format!("{other:?}"),
                }),
                _ => None,
            })
            .collect()
    }

    /// A reader of `chunks` chunks of `chunk_rows` rows of a one-column table whose key
    /// has `column_type`; values from `value(i)`.
    struct Chunks {
        schema: Arc<TableSchema>,
        chunks: usize,
        chunk_rows: usize,
        value: fn(i64) -> Value,
        done: u64,
        resumed_after: Option<Vec<Value>>,
    }

    #[async_trait]
    impl SnapshotReader for Chunks {
        fn schema(&self, _: &TableId) -> Option<Arc<TableSchema>> {
            Some(Arc::clone(&self.schema))
        }
        async fn next_chunk(&mut self, _: &TableId) -> Result<Option<Vec<Row>>, StageError> {
            if self.chunks == 0 {
                return Ok(None);
            }
            self.chunks -= 1;
            let rows = (0..self.chunk_rows)
                .map(|_| {
                    self.done += 1;
                    Row(vec![Cell::Value((self.value)(self.done as i64))])
                })
                .collect();
            Ok(Some(rows))
        }
        fn progress(&self, _: &TableId) -> (u64, Option<u64>) {
            (self.done, None)
        }
        fn order_key(&self, _: &TableId) -> Option<Vec<usize>> {
            Some(vec![0])
        }
        fn resume_after(&mut self, _: &TableId, key: &[Value]) -> Result<(), StageError> {
            self.resumed_after = Some(key.to_vec());
            Ok(())
        }
        async fn finish(self: Box<Self>) -> Result<(), StageError> {
            Ok(())
        }
    }

    /// The copy records of the snapshot commits `copy` sends for one table.
    async fn commits_of(
        column_type: ColumnType,
        value: fn(i64) -> Value,
        chunks: usize,
    ) -> Vec<CopyProgress> {
        let schema = Arc::new(TableSchema {
            table: TableId::new("public", "t"),
            columns: vec![ColumnSchema {
                name: "k".into(),
                column_type,
                native_type: "k".into(),
                nullable: false,
            }],
            key: vec![0],
        });
        let reader = Chunks {
            schema,
            chunks,
            chunk_rows: 2,
            value,
            done: 0,
            resumed_after: None,
        };
        let (mut tx, mut rx) = tandem_core::transport::channel(1 << 16);
        let tables = [(TableId::new("public", "t"), None)];
        let plan = CopyPlan {
            tables: &tables,
            tables_total: 1,
            tables_resumed: 0,
            chunk_rows: 2,
        };
        let board = StatusBoard::default();
        copy(Box::new(reader), plan, lsn(7), &mut tx, &board, "d")
            .await
            .unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Ok(Some(ev)) = tandem_core::transport::EventReceiver::recv(&mut rx).await {
            if let SourceEvent::SnapshotCommit { progress, .. } = ev {
                out.push(progress);
            }
        }
        out
    }

    #[tokio::test]
    async fn a_copy_commits_parts_only_for_keys_it_orders_exactly() {
        let int = ColumnType::Int {
            bytes: 8,
            unsigned: false,
        };
        // 250 chunks of 2 rows: parts after chunks 100 and 200, then the end.
        let parts = commits_of(int, Value::Int, 250).await;
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].resume_key(), Some(&[Value::Int(200)][..]));
        assert_eq!(parts[1].resume_key(), Some(&[Value::Int(400)][..]));
        assert!(parts[2].is_finished());
        assert_eq!(parts[2].rows, 500);
        // A text key's order is the source collation's: one transaction for the table.
        let text = ColumnType::Text {
            max_chars: None,
            allows_nul: false,
        };
        let whole = commits_of(text, |i| Value::Text(i.to_string()), 250).await;
        assert_eq!(whole.len(), 1);
        assert!(whole[0].is_finished());
    }

    #[test]
    fn a_copy_resumed_inside_a_table_keeps_the_changes_its_earlier_part_lacks() {
        let a = table("a");
        // Keys up to 100 copied at 100; the crash; the rest copied at 200.
        let mut record =
            CopyProgress::first(vec!["id".into()], lsn(100), Some(vec![Value::Int(100)]));
        record.advance(&lsn(200), None);
        let mut f = StreamFilter::new(vec![(a.table.clone(), record)], &lsn(100)).unwrap();
        assert_eq!(
            ops(
                &mut f,
                vec![
                    insert(&a, 50),
                    insert(&a, 150),
                    delete(&a, 60),
                    delete(&a, 160),
                    update(&a, 70, 71),
                    update(&a, 170, 171),
                    // Moves across the seam: only the half the later part lacks.
                    update(&a, 80, 180),
                    update(&a, 190, 90),
                ],
                150
            ),
            ["+50", "-60", "70>71", "-80", "+90"]
        );
        assert!(!f.pending.is_empty());
        assert_eq!(
            ops(&mut f, vec![insert(&a, 151)], 200),
            Vec::<String>::new()
        );
        assert!(f.pending.is_empty(), "past the newest part");
        assert_eq!(
            ops(&mut f, vec![insert(&a, 152), update(&a, 1, 2)], 201),
            ["+152", "1>2"]
        );
    }

    #[test]
    fn a_change_whose_key_cannot_be_placed_stops_the_stream() {
        let a = table("a");
        let mut record =
            CopyProgress::first(vec!["id".into()], lsn(100), Some(vec![Value::Int(100)]));
        record.advance(&lsn(200), None);
        let mut f = StreamFilter::new(vec![(a.table.clone(), record)], &lsn(100)).unwrap();
        let text_key = SourceEvent::Change(Change {
            table: Arc::clone(&a),
            row: RowChange::Insert {
                new: Row(vec![Cell::Value(Value::Text("x".into()))]),
            },
        });
        f.process(text_key).unwrap();
        assert!(f.process(commit(150)).is_err());
    }

    fn insert(t: &Arc<TableSchema>, id: i64) -> SourceEvent {
        SourceEvent::Change(Change {
            table: Arc::clone(t),
            row: RowChange::Insert {
                new: Row(vec![Cell::Value(Value::Int(id))]),
            },
        })
    }

    fn commit(n: u64) -> SourceEvent {
        SourceEvent::Commit(TxCommit {
            position: lsn(n),
            commit_time: Utc::now(),
        })
    }

    /// Runs a transaction of `changes` committed at `at` through the filter; returns the
    /// ids of the changes forwarded.
    fn tx(f: &mut StreamFilter, changes: Vec<SourceEvent>, at: u64) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        let begin = SourceEvent::Begin(TxBegin {
            commit_time: None,
            origin: None,
            snapshot: false,
        });
        for ev in std::iter::once(begin).chain(changes).chain([commit(at)]) {
            out.extend(f.process(ev).unwrap());
        }
        assert!(matches!(out.last(), Some(SourceEvent::Commit(_))));
        out.into_iter()
            .filter_map(|e| match e {
                SourceEvent::Change(c) => match &c.row {
                    RowChange::Insert { new } => match new.0.first() {
                        Some(Cell::Value(Value::Int(i))) => Some((c.table.table.name.clone(), *i)),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn changes_a_recopied_table_holds_are_dropped_until_its_copy_position() {
        let (a, b) = (table("a"), table("b"));
        // `a` copied at 100 before a crash, `b` copied again at 200 after it.
        let copied = vec![(a.table.clone(), whole(100)), (b.table.clone(), whole(200))];
        let start = oldest(&[&lsn(100), &lsn(200)]).unwrap().unwrap();
        assert_eq!(start, lsn(100));
        let mut f = StreamFilter::new(copied, &start).unwrap();
        assert_eq!(f.pending.len(), 1, "only b needs filtering");
        // Between the two copies: a's change is applied, b's is in b's copy already.
        assert_eq!(
            tx(
                &mut f,
                vec![insert(&b, 1), insert(&a, 2), insert(&b, 3)],
                150
            ),
            vec![("a".to_owned(), 2)]
        );
        // Exactly at b's copy position: still in the copy.
        assert_eq!(tx(&mut f, vec![insert(&b, 4)], 200), vec![]);
        assert!(f.pending.is_empty(), "past the window");
        assert_eq!(
            tx(&mut f, vec![insert(&b, 5), insert(&a, 6)], 250),
            vec![("b".to_owned(), 5), ("a".to_owned(), 6)]
        );
    }

    #[test]
    fn a_checkpoint_past_every_copy_filters_nothing() {
        let a = table("a");
        let mut f = StreamFilter::new(vec![(a.table.clone(), whole(100))], &lsn(100)).unwrap();
        assert!(f.pending.is_empty());
        assert_eq!(
            tx(&mut f, vec![insert(&a, 1)], 101),
            vec![("a".to_owned(), 1)]
        );
    }

    #[test]
    fn progress_past_the_copy_position_ends_the_window() {
        let a = table("a");
        let mut f = StreamFilter::new(vec![(a.table.clone(), whole(300))], &lsn(100)).unwrap();
        f.process(SourceEvent::Progress {
            position: lsn(300),
            at: Utc::now(),
        })
        .unwrap();
        assert!(f.pending.is_empty());
        assert_eq!(
            tx(&mut f, vec![insert(&a, 1)], 301),
            vec![("a".to_owned(), 1)]
        );
    }

    #[test]
    fn positions_of_different_logs_refuse_to_start() {
        let mixed = Position::MySqlFile {
            file: "bin.000001".into(),
            pos: 4,
        };
        assert!(oldest(&[&lsn(1), &mixed]).is_err());
        let a = table("a");
        let record = CopyProgress::first(Vec::new(), mixed, None);
        assert!(StreamFilter::new(vec![(a.table.clone(), record)], &lsn(1)).is_err());
    }
}
