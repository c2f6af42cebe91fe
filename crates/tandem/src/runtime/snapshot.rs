//! The first start of a direction: copy what the source already holds, then stream.
//!
//! The endpoint's snapshot reads every mapped table inside one consistent snapshot whose
//! log position is known (PostgreSQL: the slot's consistent point; MySQL: the binlog
//! position of `START TRANSACTION WITH CONSISTENT SNAPSHOT`). Its rows go through the
//! normal pipeline as inserts of one source transaction that "commits" at that position,
//! so the applier writes the checkpoint with the last copied row, conflicts with rows the
//! target already has are resolved like any other, and streaming resumes exactly at the
//! snapshot's position: nothing is lost or doubled across the seam. A crash during the copy
//! leaves no checkpoint, and the next start copies again.
//!
//! Progress (rows, rows/s, ETA) is logged every few seconds and shown in `/status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use tandem_core::change::{
    Change, Row, RowChange, SourceEvent, TableId, TableSchema, TxBegin, TxCommit,
};
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
}

/// Rows per chunk of a MySQL table copy.
const MYSQL_CHUNK_ROWS: usize = tandem_mysql::snapshot::DEFAULT_CHUNK_ROWS;

impl MySqlSnapshotReader {
    pub async fn open(
        mut snapshot: tandem_mysql::snapshot::Snapshot,
        tables: &[TableId],
    ) -> Result<Self, StageError> {
        let mut copies = std::collections::HashMap::new();
        for t in tables {
            let copy = snapshot.open_table(&t.schema, &t.name, None).await?;
            copies.insert(t.clone(), copy);
        }
        Ok(MySqlSnapshotReader { snapshot, copies })
    }
}

#[async_trait]
impl SnapshotReader for MySqlSnapshotReader {
    fn schema(&self, table: &TableId) -> Option<Arc<TableSchema>> {
        self.copies.get(table).map(|c| Arc::clone(&c.schema))
    }
    async fn next_chunk(&mut self, table: &TableId) -> Result<Option<Vec<Row>>, StageError> {
        match self.copies.get_mut(table) {
            Some(copy) => self.snapshot.next_chunk(copy, MYSQL_CHUNK_ROWS).await,
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

fn eta(done: u64, total: Option<u64>, rate: f64) -> String {
    match total {
        Some(t) if t > done && rate > 0.0 => format!("{:.0}s", (t - done) as f64 / rate),
        Some(_) => "0s".into(),
        None => "unknown".into(),
    }
}

/// Send every row of `tables` as one transaction ending at `position`.
pub async fn copy(
    mut reader: Box<dyn SnapshotReader>,
    tables: &[TableId],
    position: Position,
    tx: &mut ChannelSender,
    board: &StatusBoard,
    direction: &str,
) -> Result<(), StageError> {
    tx.send(SourceEvent::Begin(TxBegin {
        commit_time: Some(Utc::now()),
        origin: None,
        snapshot: true,
    }))
    .await?;
    for table in tables {
        let Some(schema) = reader.schema(table) else {
            return Err(StageError::definite(
                format!("The snapshot has no table {table}"),
                "check that the mapped table exists on the source",
            ));
        };
        let started = Instant::now();
        let mut last_log = Instant::now();
        info!(direction, %table, "snapshot started");
        while let Some(rows) = reader.next_chunk(table).await? {
            let n = rows.len() as u64;
            for row in rows {
                let change = Change {
                    table: Arc::clone(&schema),
                    row: RowChange::Insert { new: row },
                };
                tx.send(SourceEvent::Change(change)).await?;
            }
            metrics::counter!(telemetry::SNAPSHOT_ROWS, "direction" => direction.to_owned(), "table" => table.to_string())
                .increment(n);
            let (done, total) = reader.progress(table);
            if let Some(t) = total {
                metrics::gauge!(telemetry::SNAPSHOT_ROWS_ESTIMATED, "direction" => direction.to_owned(), "table" => table.to_string())
                    .set(t as f64);
            }
            board.update(direction, |s| {
                s.state = "snapshot".into();
                s.snapshot = Some(SnapshotStatus {
                    table: table.to_string(),
                    rows_done: done,
                    rows_estimated: total.unwrap_or(0),
                });
            });
            if last_log.elapsed() >= PROGRESS_EVERY {
                let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                let pct = total.filter(|t| *t > 0).map_or("?".into(), |t| {
                    format!("{:.0}", 100.0 * done.min(t) as f64 / t as f64)
                });
                info!(direction, %table, rows = done, estimated = ?total, percent = %pct, rows_per_second = rate as u64, eta = %eta(done, total, rate), "snapshot progress");
                last_log = Instant::now();
            }
        }
        let (done, _) = reader.progress(table);
        let secs = started.elapsed().as_secs_f64();
        info!(direction, %table, rows = done, seconds = format!("{secs:.1}"), rows_per_second = (done as f64 / secs.max(0.001)) as u64, "snapshot of table done");
    }
    reader.finish().await?;
    board.update(direction, |s| s.snapshot = None);
    tx.send(SourceEvent::Commit(TxCommit {
        position,
        commit_time: Utc::now(),
    }))
    .await
}
