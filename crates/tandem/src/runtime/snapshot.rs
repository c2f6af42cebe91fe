//! The first start of a direction: copy what the source already holds, then stream —
//! resumable table by table after a crash.
//!
//! The endpoint's snapshot reads the mapped tables inside one consistent snapshot whose log
//! position `P` is known (PostgreSQL: the slot's consistent point; MySQL: the binlog
//! position of `START TRANSACTION WITH CONSISTENT SNAPSHOT`). Each table's rows go through
//! the normal pipeline as inserts of **one source transaction per table**
//! (`Begin{snapshot}`, inserts, [`SourceEvent::SnapshotCommit`]), so rows the target
//! already has are resolved like any other conflict, and the target commit of a table
//! records, in the target's checkpoint table under the table's snapshot-progress key
//! (`"<direction> snapshot <schema.table>"`), the position `P_t` the table was copied at.
//!
//! ## Resuming, and why it stays exactly-once
//! PostgreSQL's exported snapshot dies with its connection, so after a crash the tables
//! without a progress record are copied again from a **new** snapshot at `P2`, while the
//! finished ones keep their rows copied at `P1 < P2`. Streaming then starts at the
//! **oldest** copy position (`P1`), and a change to table `t` is applied only if its
//! transaction commits after `P_t` ([`StreamFilter`]):
//! - a finished table gets every change after `P1`, on top of its rows as of `P1`: exact;
//! - a re-copied table already holds the effect of every change up to `P2` through its
//!   rows, so its changes in `(P1, P2]` are dropped (applying them again would count a
//!   `delta` twice); its changes after `P2` are applied: exact.
//!
//! The interrupted table's partial copy was one uncommitted target transaction, so the
//! target holds none of it and nothing is applied twice. On PostgreSQL the new snapshot
//! comes from a second, short-lived slot (`<slot>_resume`, dropped after the copy, and at
//! every later start if a crash left it behind): the direction's own slot must keep the WAL
//! from `P1` for the finished tables. When every table is copied, the direction's
//! checkpoint is written at `P1` (a `Progress` event), and every later start re-reads the
//! progress records to drop the changes at or before `P_t` of tables copied after the
//! checkpoint.
//!
//! Costs and limits: the filter only matters between `P1` and the newest `P_t`; within it,
//! a transaction's changes to a re-copied table are held until its commit shows its
//! position (memory bounded by that one transaction), and they reach the applier after the
//! transaction's other changes. Resume granularity is the table: the interrupted table is
//! copied again from its start. Resuming inside a table would need the stream filter to
//! compare keys in the source database's collation order, which tandem does not attempt.
//! To copy everything again, stop tandem and delete the direction's rows
//! (`pipeline LIKE '<direction>%'`) from the target's checkpoint table (and, on
//! PostgreSQL, the slot), or run `tandem teardown`.
//!
//! Progress (rows, rows/s, ETA, tables done) is logged every few seconds and shown in
//! `/status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use tandem_core::change::{Change, Row, RowChange, SourceEvent, TableId, TableSchema, TxBegin};
use tandem_core::error::StageError;
use tandem_core::position::Position;
use tandem_core::telemetry::{self, SnapshotStatus, StatusBoard};
use tandem_core::transport::{ChannelSender, EventSender};
use tracing::info;

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What the runtime needs of an endpoint's snapshot.
#[async_trait]
pub trait SnapshotReader: Send {
    fn schema(&self, table: &TableId) -> Option<Arc<TableSchema>>;
    async fn next_chunk(&mut self, table: &TableId) -> Result<Option<Vec<Row>>, StageError>;
    /// Rows done and the estimated total.
    fn progress(&self, table: &TableId) -> (u64, Option<u64>);
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
    /// The tables to copy now, in order.
    pub tables: &'a [TableId],
    /// Tables of the direction in all (copied before, or now).
    pub tables_total: usize,
    /// Tables an earlier, interrupted run copied.
    pub tables_resumed: usize,
}

/// Send every row of `plan.tables`, one source transaction per table, each ending with a
/// [`SourceEvent::SnapshotCommit`] at `position`.
pub async fn copy(
    mut reader: Box<dyn SnapshotReader>,
    plan: CopyPlan<'_>,
    position: Position,
    tx: &mut ChannelSender,
    board: &StatusBoard,
    direction: &str,
) -> Result<(), StageError> {
    if plan.tables_resumed > 0 {
        info!(
            direction,
            tables_already_copied = plan.tables_resumed,
            tables_to_copy = plan.tables.len(),
            "resuming an interrupted initial copy"
        );
    }
    // Committed tables are counted by the applier from here on.
    board.update(direction, |s| s.snapshot = None);
    for (i, table) in plan.tables.iter().enumerate() {
        let Some(schema) = reader.schema(table) else {
            return Err(StageError::definite(
                format!("The snapshot has no table {table}"),
                "check that the mapped table exists on the source",
            ));
        };
        let tables_done = plan.tables_resumed + i;
        tx.send(SourceEvent::Begin(TxBegin {
            commit_time: Some(Utc::now()),
            origin: None,
            snapshot: true,
        }))
        .await?;
        let started = Instant::now();
        let mut last_log = Instant::now();
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
                    eta_seconds: eta_seconds(done, total, rate),
                    tables_done,
                    tables_total: plan.tables_total,
                    tables_resumed: plan.tables_resumed,
                });
            });
        };
        show(0, None, 0.0);
        let mut next = reader.next_chunk(table).await?;
        while let Some(rows) = next {
            let n = rows.len() as u64;
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
            let (done, total) = reader.progress(table);
            if let Some(t) = total {
                metrics::gauge!(telemetry::SNAPSHOT_ROWS_ESTIMATED, "direction" => direction.to_owned(), "table" => table.to_string())
                    .set(t as f64);
            }
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            show(done, total, rate);
            if last_log.elapsed() >= PROGRESS_EVERY {
                let pct = total.filter(|t| *t > 0).map_or("?".into(), |t| {
                    format!("{:.0}", 100.0 * done.min(t) as f64 / t as f64)
                });
                info!(direction, %table, rows = done, estimated = ?total, percent = %pct, rows_per_second = rate as u64, eta = %eta(done, total, rate), "snapshot progress");
                last_log = Instant::now();
            }
        }
        tx.send(SourceEvent::SnapshotCommit {
            table: table.clone(),
            position: position.clone(),
            commit_time: Utc::now(),
        })
        .await?;
        let (done, _) = reader.progress(table);
        let secs = started.elapsed().as_secs_f64();
        info!(direction, %table, rows = done, seconds = format!("{secs:.1}"), rows_per_second = (done as f64 / secs.max(0.001)) as u64, "snapshot of table done");
    }
    reader.finish().await?;
    // `streaming` follows when the applier has committed the last table
    // (`StatusBoard::snapshot_table_committed`).
    Ok(())
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
/// transactions committed at or before the position the table was copied at (see the
/// module docs). Empty, it passes every event through unchanged.
#[derive(Debug, Default)]
pub struct StreamFilter {
    /// Tables copied after the stream's start, and their copy positions.
    pending: Vec<(TableId, Position)>,
    /// Changes of the open transaction to a table in `pending`, held until its commit.
    held: Vec<tandem_core::change::Change>,
}

impl StreamFilter {
    /// Filter for a stream resuming after `start`: every table copied at a later position.
    pub fn new(
        copied_at: impl IntoIterator<Item = (TableId, Position)>,
        start: &Position,
    ) -> Result<StreamFilter, StageError> {
        let mut pending = Vec::new();
        for (t, p) in copied_at {
            if !p.is_at_or_before(start).map_err(incomparable)? {
                pending.push((t, p));
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
                    let copied_at = self
                        .pending
                        .iter()
                        .find(|(t, _)| *t == ch.table.table)
                        .map(|(_, p)| p);
                    let in_copy = match copied_at {
                        Some(p) => c.position.is_at_or_before(p).map_err(incomparable)?,
                        None => false,
                    };
                    if in_copy {
                        metrics::counter!(telemetry::SNAPSHOT_SKIPPED_CHANGES).increment(1);
                    } else {
                        out.push(SourceEvent::Change(ch));
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
    /// copied at or before it need no more filtering.
    fn passed(&mut self, position: &Position) -> Result<(), StageError> {
        let mut keep = Vec::with_capacity(self.pending.len());
        for (t, p) in std::mem::take(&mut self.pending) {
            if p.is_at_or_before(position).map_err(incomparable)? {
                info!(table = %t, "stream passed the table's copy position");
            } else {
                keep.push((t, p));
            }
        }
        self.pending = keep;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::change::{Cell, ColumnSchema, TxCommit};
    use tandem_core::position::Lsn;
    use tandem_core::value::{ColumnType, Value};

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
        let copied = vec![(a.table.clone(), lsn(100)), (b.table.clone(), lsn(200))];
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
        let mut f = StreamFilter::new(vec![(a.table.clone(), lsn(100))], &lsn(100)).unwrap();
        assert!(f.pending.is_empty());
        assert_eq!(
            tx(&mut f, vec![insert(&a, 1)], 101),
            vec![("a".to_owned(), 1)]
        );
    }

    #[test]
    fn progress_past_the_copy_position_ends_the_window() {
        let a = table("a");
        let mut f = StreamFilter::new(vec![(a.table.clone(), lsn(300))], &lsn(100)).unwrap();
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
        assert!(StreamFilter::new(vec![(a.table.clone(), mixed)], &lsn(1)).is_err());
    }
}
