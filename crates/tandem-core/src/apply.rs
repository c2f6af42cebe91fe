//! The applier: turns a stream of source transactions into target transactions.
//!
//! Invariants kept here:
//! - **Exactly once.** Each target commit carries the source position of the last source
//!   transaction in it ([`Sink::commit`] writes the checkpoint in the same transaction).
//!   After a restart, transactions at or before the checkpoint are rolled back instead of
//!   committed, one at a time, until the stream passes the checkpoint. Only then are
//!   positions acknowledged to the source ([`AckSender`]), so the source never discards
//!   log the target does not hold.
//! - **Whole transactions, in order.** A source transaction is applied inside one target
//!   transaction; consecutive small ones are grouped (up to `max_group`) while more are
//!   waiting, never split. Large ones are applied in batches of `batch_rows` inside their
//!   open target transaction, so memory is bounded by the batch, not the transaction.
//! - **Nothing silent.** A row that cannot be mapped or converted goes to the dead-letter
//!   table (in the same target transaction); a mapping whose source drifted is halted and
//!   every change it then skips is dead-lettered too, so `tandem dead-letters retry`
//!   can replay them once the DBA fixes the cause.
//!
//! - **Initial copies go in bulk.** A snapshot transaction is applied in batches of
//!   [`SNAPSHOT_BATCH_ROWS`]; into a table that was empty when its copy began, without
//!   reading current rows (see [`Applier::copying_into_empty`] for why that stays safe
//!   against concurrent writers).
//!
//! Within a batch, changes to the same key are merged first (the target row is read once,
//! every change is resolved against the evolving row, one write per key is issued), which
//! is both what keeps `ON CONFLICT` statements valid and what makes batching fast.
//! Transient sink errors end [`Applier::run`]; the runtime reconnects and the source
//! re-delivers from the checkpoint, so a retry never applies anything twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::change::{Change, RowChange, SourceEvent, TableId};
use crate::config::OnError;
use crate::copy_progress::CopyProgress;
use crate::error::StageError;
use crate::mapper::{MapError, RowMapper, TargetChange, TargetRow};
use crate::position::Position;
use crate::resolve::Resolver;
use crate::sink::{
    CheckedWrite, ConflictRecord, DeadLetter, RowWrite, Sink, TargetTable, Unapplied,
};
use crate::telemetry::{self, StatusBoard};
use crate::transport::{AckSender, EventReceiver};
use crate::value::Value;

/// Default rows per batch inside a transaction.
pub const DEFAULT_BATCH_ROWS: usize = 2000;
/// Rows per batch of an initial copy (a `snapshot` transaction): large enough for the
/// sinks' bulk paths (the PostgreSQL sink's `COPY`), capped by [`SNAPSHOT_BATCH_BYTES`] so
/// that wide rows do not make a batch large in memory.
pub const SNAPSHOT_BATCH_ROWS: usize = 20_000;
/// Approximate bytes of values per batch of an initial copy (see [`value_bytes`]).
pub const SNAPSHOT_BATCH_BYTES: usize = 8 << 20;
/// Idle sources still get their position checkpointed, at most this often.
pub const PROGRESS_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// A column value the other direction must write back to its target, because that side
/// owns it (`prefer:<endpoint>`).
#[derive(Clone, Debug)]
pub struct WriteBack {
    pub mapping: String,
    /// Mapped-column index → value, for the key columns.
    pub key: Vec<(usize, Value)>,
    /// Mapped-column index → the owner's value.
    pub columns: Vec<(usize, Value)>,
    /// Per entry of `columns`: the value the other side sent and the owner rejected; the
    /// write-back only happens where that side still holds it.
    pub rejected: Vec<(usize, Value)>,
}

pub struct ApplierSettings {
    /// The direction's name, e.g. `inventory->retail`; the checkpoint row's key.
    pub pipeline: String,
    pub max_group: usize,
    pub batch_rows: usize,
}

pub struct Applier {
    settings: ApplierSettings,
    sink: Box<dyn Sink>,
    mappers: Vec<RowMapper>,
    by_table: HashMap<TableId, Vec<usize>>,
    ack: AckSender,
    status: StatusBoard,
    write_back_out: Option<mpsc::Sender<WriteBack>>,
    write_back_in: Option<mpsc::Receiver<WriteBack>>,
    halted: BTreeMap<String, String>,
    checkpoint: Option<Position>,
    // The open target transaction.
    open: bool,
    caught_up: bool,
    group_txs: usize,
    group_changes: u64,
    group_started: Option<Instant>,
    group_last: Option<(Position, DateTime<Utc>)>,
    /// Changes not yet written: the tails of the committed source transactions of the
    /// open group (small ones are batched together, see [`Applier::run`]) and the open
    /// source transaction's changes so far.
    pending: Vec<Change>,
    /// Per committed source transaction in `pending`: the index after its last change and
    /// its position (dead letters name the transaction they came from).
    pending_txns: Vec<(usize, String)>,
    conflicts: Vec<ConflictRecord>,
    dead: Vec<DeadLetter>,
    conflict_counts: BTreeMap<(String, String, String), u64>,
    last_progress: Option<Instant>,
    /// The open source transaction is an initial snapshot.
    tx_snapshot: bool,
    /// Approximate bytes of the values in `pending` (counted for snapshot transactions).
    pending_bytes: usize,
    /// Per mapper: whether its target table held no row when the copy of its table first
    /// wrote to it (asked once per table copy; see `Applier::copying_into_empty`).
    copy_into_empty: HashMap<usize, bool>,
    /// A batch written with its conflict check inside the write, whose answer has not
    /// been read yet (see [`Applier::settle`]).
    in_flight: Option<InFlight>,
    /// Per mapper: (batches still to read first, how many the next miss makes that). A
    /// batch whose every row missed its expectations cost its statements for nothing (a
    /// MariaDB sink rolls back the whole batch at the first row that differs); while that
    /// keeps happening (both sides writing the same rows), batches go straight to the read,
    /// for 1, 2, 4, … up to [`CHECKED_SKIP_MAX`] batches between tries.
    checked_backoff: HashMap<usize, (u32, u32)>,
    /// The open group commits no source transaction: a position the source passed with
    /// nothing to apply, or a write-back alone. Its time is not a source commit of ours
    /// (PostgreSQL reports the session's first commit time for every later transaction of
    /// a session with a replication origin, tandem's own included), so it sets no lag and
    /// counts no transaction.
    progress_only: bool,
}

/// See `Applier::checked_backoff`.
const CHECKED_SKIP_MAX: u32 = 32;

/// A batch handed to [`Sink::write_if_unchanged`]: kept until the sink says which rows it
/// did not apply, so that those can be read and resolved as usual.
struct InFlight {
    mi: usize,
    target: TargetTable,
    changes: Vec<TargetChange>,
    /// Per change, its key's index in `keys`.
    change_keys: Vec<usize>,
    keys: Vec<Vec<Value>>,
    /// Per write, its key's index in `keys`.
    write_keys: Vec<usize>,
    unapplied: Unapplied,
}

type RowStates = (Option<Vec<Value>>, Option<Vec<Value>>);

/// The checkpoint-table key under which a direction records that the initial copy of one
/// source table is committed, with the snapshot position it was copied at. It shares the
/// direction's prefix, so deleting `pipeline LIKE '<direction>%'` forgets both.
pub fn snapshot_progress_key(pipeline: &str, table: &TableId) -> String {
    format!("{pipeline} snapshot {table}")
}

/// A key as a string for the batch's maps: equal exactly for equal keys of one target
/// table (its values are already converted to the columns' types; `Int(5)` and `UInt(5)`
/// are one key). Integers and texts are written directly; rendering every key through
/// `serde_json` was a visible share of the applier's CPU.
fn key_string(key: &[Value]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for v in key {
        // Length-prefixed texts keep multi-column keys apart ("a|b" + "c" vs "a" + "b|c").
        let _ = match v {
            Value::Int(i) => write!(s, "n{i};"),
            Value::UInt(u) => write!(s, "n{u};"),
            Value::Text(t) => write!(s, "s{}:{t}", t.len()),
            other => {
                let json = other.to_json().to_string();
                write!(s, "j{}:{json}", json.len())
            }
        };
    }
    s
}

/// Whether a batch of an initial copy into a table that was empty when the copy began can
/// be written as it is: every change an insert of a distinct key with every key value
/// present (no current rows to read, nothing to resolve). Anything else (a key twice, a
/// missing key value) goes the general way.
fn plain_copy(target: &TargetTable, mapped: &[(TargetChange, usize, &Change)]) -> bool {
    // Keys are told apart by a 64-bit fingerprint, not a string per row (an allocation
    // and a free per copied row): two equal fingerprints send the batch the general way,
    // which is always right, so a collision of different keys only costs time.
    let mut seen: HashSet<u64> = HashSet::with_capacity(mapped.len());
    mapped.iter().all(|(tc, _, _)| match tc {
        TargetChange::Insert { after } => {
            key_fingerprint(target, after).is_some_and(|k| seen.insert(k))
        }
        _ => false,
    })
}

/// A hash of a target row's key, equal for keys [`key_string`] makes equal; `None` if a
/// key value is missing.
fn key_fingerprint(target: &TargetTable, row: &TargetRow) -> Option<u64> {
    use std::hash::Hasher as _;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for &i in &target.key {
        match row.get(i)?.as_ref()? {
            Value::Int(v) => {
                h.write_u8(b'n');
                h.write_i128(i128::from(*v));
            }
            Value::UInt(v) => {
                h.write_u8(b'n');
                h.write_i128(i128::from(*v));
            }
            Value::Text(t) => {
                h.write_u8(b's');
                h.write_usize(t.len());
                h.write(t.as_bytes());
            }
            other => {
                let json = other.to_json().to_string();
                h.write_u8(b'j');
                h.write_usize(json.len());
                h.write(json.as_bytes());
            }
        }
    }
    Some(h.finish())
}

/// Approximate bytes a value holds: its heap data, plus its own size.
pub fn value_bytes(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::Text(s) | Value::Json(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Unsupported { type_name, text } => type_name.len() + text.len(),
            _ => 0,
        }
}

fn change_bytes(change: &Change) -> usize {
    let row = |r: &crate::change::Row| {
        r.0.iter()
            .map(|c| c.value().map_or(0, value_bytes))
            .sum::<usize>()
    };
    match &change.row {
        RowChange::Insert { new } => row(new),
        RowChange::Update { old, new } => {
            row(new)
                + match old {
                    crate::change::OldRow::Full(r) | crate::change::OldRow::KeyOnly(r) => row(r),
                    crate::change::OldRow::Missing => 0,
                }
        }
        RowChange::Delete { old } => match old {
            crate::change::OldRow::Full(r) | crate::change::OldRow::KeyOnly(r) => row(r),
            crate::change::OldRow::Missing => 0,
        },
    }
}

fn row_json(table: &TargetTable, row: &[Value]) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .columns
            .iter()
            .zip(row)
            .map(|((n, _), v)| (n.clone(), v.to_json()))
            .collect(),
    )
}

fn opt_row_json(table: &TargetTable, row: &TargetRow) -> serde_json::Value {
    serde_json::Value::Object(
        table
            .columns
            .iter()
            .zip(row)
            .filter_map(|((n, _), v)| v.as_ref().map(|v| (n.clone(), v.to_json())))
            .collect(),
    )
}

fn change_json(change: &Change) -> serde_json::Value {
    let schema = &change.table;
    let row = |r: &crate::change::Row| {
        serde_json::Value::Object(
            schema
                .columns
                .iter()
                .zip(&r.0)
                .map(|(c, cell)| {
                    (
                        c.name.clone(),
                        cell.value().map_or(
                            serde_json::Value::String("(unchanged)".into()),
                            Value::to_json,
                        ),
                    )
                })
                .collect(),
        )
    };
    let old = |o: &crate::change::OldRow| match o {
        crate::change::OldRow::Full(r) | crate::change::OldRow::KeyOnly(r) => row(r),
        crate::change::OldRow::Missing => serde_json::Value::Null,
    };
    let (op, before, after) = match &change.row {
        RowChange::Insert { new } => ("insert", serde_json::Value::Null, row(new)),
        RowChange::Update { old: o, new } => ("update", old(o), row(new)),
        RowChange::Delete { old: o } => ("delete", old(o), serde_json::Value::Null),
    };
    serde_json::json!({ "table": schema.table.to_string(), "op": op, "before": before, "after": after })
}

impl Applier {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: ApplierSettings,
        sink: Box<dyn Sink>,
        mappers: Vec<RowMapper>,
        ack: AckSender,
        status: StatusBoard,
        write_back_out: Option<mpsc::Sender<WriteBack>>,
        write_back_in: Option<mpsc::Receiver<WriteBack>>,
    ) -> Applier {
        let mut by_table: HashMap<TableId, Vec<usize>> = HashMap::new();
        for (i, m) in mappers.iter().enumerate() {
            by_table.entry(m.source_table.clone()).or_default().push(i);
        }
        Applier {
            settings,
            sink,
            mappers,
            by_table,
            ack,
            status,
            write_back_out,
            write_back_in,
            halted: BTreeMap::new(),
            checkpoint: None,
            open: false,
            caught_up: false,
            group_txs: 0,
            group_changes: 0,
            group_started: None,
            group_last: None,
            pending: Vec::new(),
            pending_txns: Vec::new(),
            conflicts: Vec::new(),
            dead: Vec::new(),
            conflict_counts: BTreeMap::new(),
            last_progress: None,
            tx_snapshot: false,
            pending_bytes: 0,
            copy_into_empty: HashMap::new(),
            in_flight: None,
            checked_backoff: HashMap::new(),
            progress_only: false,
        }
    }

    /// Hand the incoming write-back queue back (to the next applier after a restart).
    pub fn take_write_back_in(&mut self) -> Option<mpsc::Receiver<WriteBack>> {
        self.write_back_in.take()
    }

    /// The checkpoint read from the target: where the source must resume.
    pub async fn load_checkpoint(&mut self) -> Result<Option<Position>, StageError> {
        self.checkpoint = self.sink.checkpoint(&self.settings.pipeline).await?;
        Ok(self.checkpoint.clone())
    }

    /// The copy record of source `table` (see [`snapshot_progress_key`]); `None` if no part
    /// of its initial copy was committed.
    pub async fn copy_progress(
        &mut self,
        table: &TableId,
    ) -> Result<Option<CopyProgress>, StageError> {
        let key = snapshot_progress_key(&self.settings.pipeline, table);
        let Some(text) = self.sink.checkpoint_text(&key).await? else {
            return Ok(None);
        };
        CopyProgress::from_text(&text).map(Some).map_err(|e| {
            StageError::definite_from(
                format!("The initial-copy record {key:?} in tandem's checkpoint table cannot be read"),
                "delete the direction's rows (pipeline LIKE '<direction>%') from the checkpoint table to copy again",
                e,
            )
        })
    }

    /// Apply events until the transport closes, `stop` turns true, or an error.
    ///
    /// On stop, an open transaction that is not complete is rolled back (the source will
    /// re-deliver it); complete ones are committed first.
    pub async fn run(
        &mut self,
        rx: &mut dyn EventReceiver,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), StageError> {
        if self.checkpoint.is_none() {
            self.load_checkpoint().await?;
        }
        let mut in_tx = false;
        // A progress position held back by the rate limit; checkpointed when the interval
        // is over unless a later commit passed it. Dropping it instead would leave an idle
        // source's last position unacknowledged, and PostgreSQL waits for that on shutdown.
        let mut deferred: Option<(Position, DateTime<Utc>)> = None;
        loop {
            // Built lazily: select! constructs every branch's future on every event, and
            // reading the clock for a timer that is rarely armed cost ~1 % of the CPU.
            let last_progress = self.last_progress;
            let progress_due = async move {
                let wait = last_progress.map_or(Duration::ZERO, |t| {
                    PROGRESS_CHECKPOINT_INTERVAL.saturating_sub(t.elapsed())
                });
                tokio::time::sleep(wait).await
            };
            let event = tokio::select! {
                biased;
                _ = stop.changed() => {
                    if in_tx {
                        self.abort().await;
                    } else if self.group_txs > 0 {
                        self.commit_group().await?;
                    }
                    return Ok(());
                }
                _ = progress_due, if deferred.is_some() && !in_tx && self.group_txs == 0 => {
                    if let Some((position, at)) = deferred.take() {
                        self.checkpoint_progress(position, at).await?;
                    }
                    continue;
                }
                wb = recv_write_back(&mut self.write_back_in), if !in_tx && self.write_back_in.is_some() => {
                    match wb {
                        Some(wb) => self.apply_write_back_between_transactions(wb).await?,
                        None => self.write_back_in = None,
                    }
                    continue;
                }
                ev = rx.recv() => ev?,
            };
            let Some(event) = event else {
                if in_tx {
                    self.abort().await;
                } else if self.group_txs > 0 {
                    self.commit_group().await?;
                }
                return Ok(());
            };
            match event {
                SourceEvent::Begin(b) => {
                    if b.snapshot {
                        // Changes of streamed transactions are resolved as changes, not
                        // as initial-sync rows: never in one batch with a copy.
                        self.flush().await?;
                    }
                    in_tx = true;
                    self.tx_snapshot = b.snapshot;
                    if !b.snapshot {
                        // A table's copy spans several snapshot transactions; whether its
                        // target was empty is known from its first (see `copying_into_empty`).
                        self.copy_into_empty.clear();
                    }
                    self.ensure_open().await?;
                }
                SourceEvent::Change(c) => {
                    let full = if self.tx_snapshot {
                        self.pending_bytes += change_bytes(&c);
                        self.pending.len() + 1 >= SNAPSHOT_BATCH_ROWS.max(self.settings.batch_rows)
                            || self.pending_bytes >= SNAPSHOT_BATCH_BYTES
                    } else {
                        self.pending.len() + 1 >= self.settings.batch_rows
                    };
                    self.pending.push(c);
                    if full {
                        self.flush().await?;
                    }
                }
                SourceEvent::Truncate { tables } => {
                    self.flush().await?;
                    for t in tables {
                        for &mi in self
                            .by_table
                            .get(&t.table)
                            .map(Vec::as_slice)
                            .unwrap_or(&[])
                        {
                            let m = &self.mappers[mi];
                            warn!(mapping = %m.mapping, table = %t.table, "truncate is not replicated");
                            self.dead.push(DeadLetter {
                                mapping: m.mapping.clone(),
                                key: serde_json::Value::Null,
                                change: serde_json::json!({ "table": t.table.to_string(), "op": "truncate" }),
                                reason: format!(
                                    "TRUNCATE of {} is not replicated; empty {} by hand if that was intended",
                                    t.table, m.target.table
                                ),
                                source_position: String::new(),
                            });
                        }
                    }
                }
                SourceEvent::Commit(c) => {
                    in_tx = false;
                    let already = match &self.checkpoint {
                        Some(cp) if !self.caught_up => {
                            c.position.is_at_or_before(cp).unwrap_or(false)
                        }
                        _ => false,
                    };
                    if already {
                        // Applied before the restart: undo this replay.
                        self.abort().await;
                        continue;
                    }
                    self.caught_up = true;
                    self.group_txs += 1;
                    let source_position = c.position.to_string();
                    for d in self
                        .dead
                        .iter_mut()
                        .filter(|d| d.source_position.is_empty())
                    {
                        d.source_position.clone_from(&source_position);
                    }
                    self.pending_txns
                        .push((self.pending.len(), source_position));
                    self.group_last = Some((c.position, c.commit_time));
                    // Not written yet: small transactions wait for the next ones of the
                    // group and are written together, `batch_rows` changes at a time (one
                    // statement per kind for many of them; a key several of them change is
                    // read and written once). The group still commits whole transactions.
                    if self.group_txs >= self.settings.max_group || !rx.has_pending() {
                        self.commit_group().await?;
                    }
                }
                SourceEvent::SnapshotCommit {
                    table,
                    progress,
                    commit_time,
                } => {
                    in_tx = false;
                    self.flush().await?;
                    // Never grouped: it records its own key, not the direction's.
                    self.group_txs = 1;
                    self.group_last = progress.newest().map(|p| (p.clone(), commit_time));
                    let key = snapshot_progress_key(&self.settings.pipeline, &table);
                    self.commit_group_to(Some((key, progress.to_text())))
                        .await?;
                    if progress.is_finished() {
                        self.copy_into_empty.clear();
                        self.status
                            .snapshot_table_committed(&self.settings.pipeline);
                    }
                }
                SourceEvent::Progress { position, at } => {
                    if self.group_txs > 0 {
                        self.commit_group().await?;
                    }
                    let due = self
                        .last_progress
                        .is_none_or(|t| t.elapsed() >= PROGRESS_CHECKPOINT_INTERVAL);
                    let ahead = self.ahead_of_checkpoint(&position);
                    if !in_tx && self.group_txs == 0 && !rx.has_pending() {
                        // Caught up: everything the source has read is applied (or was not
                        // ours to apply), so nothing is waiting.
                        metrics::gauge!(telemetry::LAG_SECONDS, "direction" => self.settings.pipeline.clone()).set(0.0);
                        let p = self.settings.pipeline.clone();
                        self.status.update(&p, |s| s.lag_seconds = Some(0.0));
                    }
                    if due && ahead && !in_tx {
                        deferred = None;
                        self.checkpoint_progress(position, at).await?;
                    } else if ahead && !in_tx {
                        deferred = Some((position, at));
                    }
                }
            }
        }
    }

    fn ahead_of_checkpoint(&self, position: &Position) -> bool {
        match &self.checkpoint {
            Some(cp) => cp.try_cmp(position).is_ok_and(|o| o.is_lt()),
            None => true,
        }
    }

    /// Checkpoint a position the source passed with nothing to apply, if still ahead.
    async fn checkpoint_progress(
        &mut self,
        position: Position,
        at: DateTime<Utc>,
    ) -> Result<(), StageError> {
        if !self.ahead_of_checkpoint(&position) {
            return Ok(());
        }
        self.ensure_open().await?;
        self.group_last = Some((position, at));
        self.group_txs = 1;
        self.progress_only = true;
        self.commit_group().await?;
        self.last_progress = Some(Instant::now());
        Ok(())
    }

    async fn ensure_open(&mut self) -> Result<(), StageError> {
        if self.open {
            return Ok(());
        }
        self.sink.begin().await?;
        self.open = true;
        self.group_started = Some(Instant::now());
        // Write-backs ride along with the next transaction.
        let mut wbs = Vec::new();
        if let Some(rx) = self.write_back_in.as_mut() {
            while let Ok(wb) = rx.try_recv() {
                wbs.push(wb);
            }
        }
        for wb in wbs {
            self.apply_write_back(wb).await?;
        }
        Ok(())
    }

    async fn abort(&mut self) {
        self.in_flight = None;
        self.progress_only = false;
        self.pending.clear();
        self.pending_txns.clear();
        self.pending_bytes = 0;
        self.copy_into_empty.clear();
        self.conflicts.clear();
        self.dead.clear();
        self.group_txs = 0;
        self.group_changes = 0;
        self.group_last = None;
        if self.open {
            self.open = false;
            if let Err(e) = self.sink.rollback().await {
                warn!(pipeline = %self.settings.pipeline, error = %e.report(), "rollback failed");
            }
        }
    }

    async fn apply_write_back_between_transactions(
        &mut self,
        wb: WriteBack,
    ) -> Result<(), StageError> {
        if self.group_txs > 0 {
            // Source transactions are waiting in the open group: the write-back rides
            // along and commits with them and *their* checkpoint. Committing it here with
            // the old checkpoint would commit their rows under a position they are past,
            // and a restart would apply them twice. Their changes are written first: the
            // write-back came after them and must see what they leave.
            self.flush().await?;
            return self.apply_write_back(wb).await;
        }
        // Only once there is a checkpoint to commit with.
        let Some(cp) = self.checkpoint.clone() else {
            return Ok(());
        };
        self.ensure_open().await?;
        self.apply_write_back(wb).await?;
        self.group_last = Some((cp, Utc::now()));
        self.group_txs = 1;
        self.progress_only = true;
        self.commit_group().await
    }

    async fn apply_write_back(&mut self, wb: WriteBack) -> Result<(), StageError> {
        self.settle().await?;
        let Some(m) = self.mappers.iter().find(|m| m.mapping == wb.mapping) else {
            return Ok(());
        };
        let conv = |(i, v): &(usize, Value)| -> Option<(usize, Value)> {
            let (name, ty) = m.target.columns.get(*i)?;
            crate::convert::convert(name, v, ty).ok().map(|v| (*i, v))
        };
        let key_map: HashMap<usize, Value> = wb.key.iter().filter_map(conv).collect();
        let key: Option<Vec<Value>> = m
            .target
            .key
            .iter()
            .map(|i| key_map.get(i).cloned())
            .collect();
        let Some(key) = key else { return Ok(()) };
        let target = m.target.clone();
        // Only where the side still holds the value the owner rejected: if it changed
        // since (the owner's own newer change arrived, or the application wrote again),
        // writing the owner's older value back would undo it.
        let current = self
            .sink
            .fetch_current(&target, std::slice::from_ref(&key))
            .await?;
        let Some(Some(row)) = current.into_iter().next() else {
            return Ok(());
        };
        let columns: Vec<(usize, Value)> = wb
            .columns
            .iter()
            .zip(&wb.rejected)
            .filter_map(|(col, (_, rejected))| {
                let (i, value) = conv(col)?;
                let (name, ty) = target.columns.get(i)?;
                let cur = row.get(i)?;
                let strategy = m.strategies.get(i)?;
                // max/min: merge into what the side holds now (a one-way register).
                if let Some(merged) = crate::resolve::merge_extreme(strategy, cur, &value) {
                    return (!merged.same_as(cur)).then_some((i, merged));
                }
                let rejected = crate::convert::convert(name, rejected, ty).ok()?;
                cur.same_as(&rejected).then_some((i, value))
            })
            .collect();
        if !columns.is_empty() {
            self.sink
                .write(&target, &[RowWrite::Update { key, columns }])
                .await?;
        }
        Ok(())
    }

    fn halt(&mut self, mapping: &str, reason: String) {
        if self.halted.contains_key(mapping) {
            return;
        }
        tracing::error!(pipeline = %self.settings.pipeline, mapping, reason = %reason, "mapping halted");
        metrics::gauge!(telemetry::MAPPING_HALTED, "direction" => self.settings.pipeline.clone(), "mapping" => mapping.to_owned()).set(1.0);
        self.halted.insert(mapping.to_owned(), reason.clone());
        let pipeline = self.settings.pipeline.clone();
        self.status.update(&pipeline, |s| {
            s.halted_mappings.insert(mapping.to_owned(), reason);
        });
    }

    /// Map, resolve and write the pending changes of the open transaction.
    async fn flush(&mut self) -> Result<(), StageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let txns = std::mem::take(&mut self.pending_txns);
        self.pending_bytes = 0;
        // Changes per mapper, in arrival order.
        let mut per_mapper: Vec<(usize, Vec<(usize, &Change)>)> = Vec::new();
        for (ci, ch) in pending.iter().enumerate() {
            for &mi in self
                .by_table
                .get(&ch.table.table)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                match per_mapper.iter_mut().find(|(i, _)| *i == mi) {
                    Some((_, v)) => v.push((ci, ch)),
                    None => per_mapper.push((mi, vec![(ci, ch)])),
                }
            }
        }
        // Dead letters name their source transaction; the open one's are named at its
        // commit (`source_position` left empty here).
        let position_of = |ci: usize| -> String {
            txns.iter()
                .find(|(end, _)| ci < *end)
                .map(|(_, p)| p.clone())
                .unwrap_or_default()
        };
        for (mi, changes) in per_mapper {
            self.group_changes += changes.len() as u64;
            self.apply_mapper(mi, &changes, &position_of).await?;
        }
        Ok(())
    }

    async fn apply_mapper(
        &mut self,
        mi: usize,
        changes: &[(usize, &Change)],
        position_of: &(dyn Fn(usize) -> String + Sync),
    ) -> Result<(), StageError> {
        let mapping = self.mappers[mi].mapping.clone();
        // Map every change; split key-changing updates into delete + insert.
        let mut mapped: Vec<(TargetChange, usize, &Change)> = Vec::with_capacity(changes.len());
        for &(ci, ch) in changes {
            if let Some(reason) = self.halted.get(&mapping) {
                self.dead.push(DeadLetter {
                    mapping: mapping.clone(),
                    key: serde_json::Value::Null,
                    change: change_json(ch),
                    reason: format!("mapping halted: {reason}"),
                    source_position: position_of(ci),
                });
                continue;
            }
            let m = &mut self.mappers[mi];
            // A row the source side's `where` filter keeps at home maps to nothing.
            let Some(mapped_change) = m.map_filtered(&ch.table, &ch.row).transpose() else {
                continue;
            };
            match mapped_change {
                Ok(TargetChange::Update {
                    before: Some(b),
                    after,
                }) => {
                    let bk: Option<Vec<Value>> = m
                        .target
                        .key
                        .iter()
                        .map(|&i| b.get(i).cloned().flatten())
                        .collect();
                    let ak: Option<Vec<Value>> = m
                        .target
                        .key
                        .iter()
                        .map(|&i| after.get(i).cloned().flatten())
                        .collect();
                    let key_changed = match (&bk, &ak) {
                        (Some(x), Some(y)) => x.iter().zip(y).any(|(p, q)| !p.same_as(q)),
                        _ => false,
                    };
                    if key_changed {
                        mapped.push((
                            TargetChange::Delete {
                                before: b,
                                full: true,
                            },
                            ci,
                            ch,
                        ));
                        mapped.push((TargetChange::Insert { after }, ci, ch));
                    } else {
                        mapped.push((
                            TargetChange::Update {
                                before: Some(b),
                                after,
                            },
                            ci,
                            ch,
                        ));
                    }
                }
                Ok(tc) => mapped.push((tc, ci, ch)),
                Err(MapError::Value(e)) => {
                    let on_error = m.on_error;
                    self.dead.push(DeadLetter {
                        mapping: mapping.clone(),
                        key: serde_json::Value::Null,
                        change: change_json(ch),
                        reason: e.to_string(),
                        source_position: position_of(ci),
                    });
                    if on_error == OnError::Halt {
                        self.halt(&mapping, format!("{e} (on_error = \"halt\")"));
                    }
                }
                Err(e @ MapError::Drift { .. }) => {
                    self.dead.push(DeadLetter {
                        mapping: mapping.clone(),
                        key: serde_json::Value::Null,
                        change: change_json(ch),
                        reason: e.to_string(),
                        source_position: position_of(ci),
                    });
                    self.halt(&mapping, e.to_string());
                }
            }
        }
        if mapped.is_empty() {
            return Ok(());
        }
        let target = self.mappers[mi].target.clone();
        if self.tx_snapshot {
            self.settle().await?;
        }
        if self.tx_snapshot
            && self.copying_into_empty(mi, &target).await?
            && plain_copy(&target, &mapped)
        {
            let writes = mapped
                .into_iter()
                .filter_map(|(tc, _, _)| match tc {
                    TargetChange::Insert { after } => Some(RowWrite::Insert {
                        values: after
                            .into_iter()
                            .map(|v| v.unwrap_or(Value::Null))
                            .collect(),
                    }),
                    _ => None,
                })
                .collect();
            return self.sink.write_owned(&target, writes).await;
        }
        // The batch's distinct keys in order of first appearance, and per change the
        // position of its key among them.
        let mut index: HashMap<String, usize> = HashMap::with_capacity(mapped.len());
        let mut keys: Vec<Vec<Value>> = Vec::new();
        let mut changes: Vec<TargetChange> = Vec::with_capacity(mapped.len());
        let mut change_keys: Vec<usize> = Vec::with_capacity(mapped.len());
        for (tc, ci, ch) in mapped {
            let Some(k) = tc.key(&target) else {
                self.dead.push(DeadLetter {
                    mapping: mapping.clone(),
                    key: serde_json::Value::Null,
                    change: change_json(ch),
                    reason: "the change has no value for a key column".into(),
                    source_position: position_of(ci),
                });
                continue;
            };
            let next = keys.len();
            let slot = *index.entry(key_string(&k)).or_insert(next);
            if slot == next {
                keys.push(k);
            }
            changes.push(tc);
            change_keys.push(slot);
        }
        drop(index);
        if changes.is_empty() {
            return Ok(());
        }
        // Mapped and planned while the sink was still writing the previous batch; from here
        // on every step talks to the sink, after that batch.
        let plan = if self.tx_snapshot || self.checked_skips(mi) {
            None
        } else {
            let resolver = resolver_for(&self.mappers[mi], &target, false);
            checked_plan(&resolver, &target, &changes, &change_keys, &keys)
        };
        self.settle().await?;
        if self.tx_snapshot && self.copying_into_empty(mi, &target).await? {
            // Nothing to read: see `copying_into_empty`.
            let current = vec![None; keys.len()];
            return self
                .resolve_batch(mi, &target, &changes, &change_keys, current, true)
                .await;
        }
        if let Some(plan) = plan {
            let unapplied = self.sink.write_if_unchanged(&target, plan.writes).await?;
            self.in_flight = Some(InFlight {
                mi,
                target,
                changes,
                change_keys,
                keys,
                write_keys: plan.write_keys,
                unapplied,
            });
            return Ok(());
        }
        let current = self.sink.fetch_current(&target, &keys).await?;
        let initial_sync = self.tx_snapshot;
        self.resolve_batch(mi, &target, &changes, &change_keys, current, initial_sync)
            .await
    }

    /// Read the answer to the batch written with its check inside the write (if one is
    /// out), then read and resolve as usual the rows the sink did not apply. Runs before
    /// every other call to the sink, so that whatever comes next sees the batch done.
    async fn settle(&mut self) -> Result<(), StageError> {
        let Some(f) = self.in_flight.take() else {
            return Ok(());
        };
        let unapplied = f.unapplied.wait().await?;
        let backoff = self.checked_backoff.entry(f.mi).or_default();
        if unapplied.is_empty() {
            *backoff = (0, 0);
        } else if unapplied.len() == f.write_keys.len() {
            backoff.1 = (backoff.1 * 2).clamp(1, CHECKED_SKIP_MAX);
            backoff.0 = backoff.1;
        }
        let p = self.settings.pipeline.clone();
        let applied = f.write_keys.len().saturating_sub(unapplied.len());
        metrics::counter!(telemetry::CHECKED_ROWS, "direction" => p.clone(), "outcome" => "applied")
            .increment(applied as u64);
        if unapplied.is_empty() {
            return Ok(());
        }
        metrics::counter!(telemetry::CHECKED_ROWS, "direction" => p, "outcome" => "reread")
            .increment(unapplied.len() as u64);
        let mut renumber: Vec<Option<usize>> = vec![None; f.keys.len()];
        for &w in &unapplied {
            if let Some(r) = f.write_keys.get(w).and_then(|&k| renumber.get_mut(k)) {
                *r = Some(0);
            }
        }
        let mut keys = Vec::new();
        for (k, r) in f.keys.into_iter().zip(renumber.iter_mut()) {
            if r.is_some() {
                *r = Some(keys.len());
                keys.push(k);
            }
        }
        let (changes, change_keys): (Vec<TargetChange>, Vec<usize>) = f
            .changes
            .into_iter()
            .zip(f.change_keys)
            .filter_map(|(c, k)| renumber.get(k).copied().flatten().map(|n| (c, n)))
            .unzip();
        let current = self.sink.fetch_current(&f.target, &keys).await?;
        // A streamed batch (only those are checked), whatever transaction is open now.
        self.resolve_batch(f.mi, &f.target, &changes, &change_keys, current, false)
            .await
    }

    /// Whether mapper `mi`'s next batch goes straight to the read (see `checked_backoff`).
    fn checked_skips(&mut self, mi: usize) -> bool {
        match self.checked_backoff.get_mut(&mi) {
            Some((left, _)) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Resolve a batch of one mapper against the current target rows of its keys (`current`,
    /// per key in `change_keys`' numbering) and write the outcome: one write per key.
    /// `initial_sync`: the changes are rows of an initial snapshot.
    async fn resolve_batch(
        &mut self,
        mi: usize,
        target: &TargetTable,
        changes: &[TargetChange],
        change_keys: &[usize],
        current: Vec<Option<Vec<Value>>>,
        initial_sync: bool,
    ) -> Result<(), StageError> {
        let mapping = self.mappers[mi].mapping.clone();
        // Per distinct key: (row as read, row as resolved so far).
        let mut state: Vec<RowStates> = current.into_iter().map(|c| (c.clone(), c)).collect();
        let resolver = resolver_for(&self.mappers[mi], target, initial_sync);
        let mut write_backs = Vec::new();
        for (tc, &slot) in changes.iter().zip(change_keys) {
            let Some((_, cur)) = state.get_mut(slot) else {
                continue;
            };
            let r = resolver.resolve(tc, cur.as_deref());
            if let Some(c) = &r.conflict {
                let (before, after) = match tc {
                    TargetChange::Insert { after } => (None, Some(opt_row_json(target, after))),
                    TargetChange::Update { before, after } => (
                        before.as_ref().map(|b| opt_row_json(target, b)),
                        Some(opt_row_json(target, after)),
                    ),
                    TargetChange::Delete { before, .. } => {
                        (Some(opt_row_json(target, before)), None)
                    }
                };
                let key = tc.key(target).unwrap_or_default();
                self.conflicts.push(ConflictRecord {
                    mapping: mapping.clone(),
                    kind: c.kind.as_str().into(),
                    strategy: c.strategy.clone(),
                    decision: c.decision.as_str().into(),
                    key: serde_json::Value::Object(
                        target
                            .key_names()
                            .zip(&key)
                            .map(|(n, v)| (n.to_owned(), v.to_json()))
                            .collect(),
                    ),
                    before,
                    after,
                    current: cur.as_ref().map(|t| row_json(target, t)),
                    source_commit_time: None,
                });
                *self
                    .conflict_counts
                    .entry((
                        mapping.clone(),
                        c.kind.as_str().to_owned(),
                        c.strategy.clone(),
                    ))
                    .or_default() += 1;
            }
            if !r.write_back.is_empty() {
                if let Some(t) = cur.as_ref() {
                    write_backs.push(WriteBack {
                        mapping: mapping.clone(),
                        key: target
                            .key
                            .iter()
                            .filter_map(|&i| t.get(i).map(|v| (i, v.clone())))
                            .collect(),
                        rejected: r
                            .write_back
                            .iter()
                            .map(|(i, _)| match tc {
                                TargetChange::Insert { after }
                                | TargetChange::Update { after, .. } => {
                                    (*i, after.get(*i).cloned().flatten().unwrap_or(Value::Null))
                                }
                                TargetChange::Delete { .. } => (*i, Value::Null),
                            })
                            .collect(),
                        columns: r.write_back.clone(),
                    });
                }
            }
            if let Some(w) = r.write {
                apply_write(cur, w);
            }
        }
        // One write per key: the difference between the row read and the row resolved.
        let mut writes = Vec::new();
        for (orig, fin) in state {
            match (orig, fin) {
                (None, Some(f)) => writes.push(RowWrite::Insert { values: f }),
                (Some(o), Some(f)) => {
                    let columns = changed_columns(&o, f);
                    if !columns.is_empty() {
                        let key = target
                            .key
                            .iter()
                            .filter_map(|&i| o.get(i).cloned())
                            .collect();
                        writes.push(RowWrite::Update { key, columns });
                    }
                }
                (Some(o), None) => {
                    let key = target
                        .key
                        .iter()
                        .filter_map(|&i| o.get(i).cloned())
                        .collect();
                    writes.push(RowWrite::Delete { key });
                }
                (None, None) => {}
            }
        }
        if !writes.is_empty() {
            self.sink.write_owned(target, writes).await?;
        }
        if let Some(out) = &self.write_back_out {
            for wb in write_backs {
                if out.try_send(wb).is_err() {
                    warn!(mapping = %mapping, "write-back queue full; `tandem verify --repair` will align the owned column");
                }
            }
        }
        Ok(())
    }

    /// Whether mapper `mi`'s target table held no row when the copy's first snapshot
    /// transaction first wrote to it (kept across the parts of one table's copy: the
    /// earlier parts' keys precede the later ones'). Then every key of the copy is absent
    /// unless a concurrent writer (an application, or the other direction) inserts it
    /// meanwhile, so the applier skips reading current rows and hands every row to the
    /// sink as an insert. The sink's inserts never overwrite an existing key and report one
    /// as a transient error (see [`RowWrite::Insert`]); the retry continues the copy after
    /// its last committed part, finds the table no longer empty, reads current rows and
    /// resolves the pair as `insert_exists`. A table that held rows (an initial reconcile)
    /// is read batch by batch, as any transaction is.
    async fn copying_into_empty(
        &mut self,
        mi: usize,
        target: &TargetTable,
    ) -> Result<bool, StageError> {
        if let Some(&empty) = self.copy_into_empty.get(&mi) {
            return Ok(empty);
        }
        let empty = self.sink.is_empty(target).await?;
        self.copy_into_empty.insert(mi, empty);
        Ok(empty)
    }

    async fn commit_group(&mut self) -> Result<(), StageError> {
        self.commit_group_to(None).await
    }

    /// Commit the open target transaction with `record` (a key and its text) in the
    /// checkpoint table, or its position as the direction's checkpoint (then acknowledged
    /// to the source) when `record` is `None`.
    async fn commit_group_to(
        &mut self,
        record: Option<(String, String)>,
    ) -> Result<(), StageError> {
        // Sources end a group only at transaction boundaries (Commit, Progress,
        // SnapshotCommit): everything pending belongs to committed transactions.
        self.flush().await?;
        self.settle().await?;
        // A group of source transactions sets the lag; see `progress_only`.
        let applies = !std::mem::take(&mut self.progress_only);
        let Some((position, commit_time)) = self.group_last.take() else {
            return Ok(());
        };
        if !self.conflicts.is_empty() || !self.dead.is_empty() {
            for c in &mut self.conflicts {
                c.source_commit_time.get_or_insert(commit_time);
            }
            self.sink.record(&self.conflicts, &self.dead).await?;
        }
        let snapshot_table = record.is_some();
        if !applies {
            self.group_txs = 0;
        }
        match &record {
            Some((key, text)) => self.sink.commit_text(key, text, commit_time).await?,
            None => {
                self.sink
                    .commit(&self.settings.pipeline, &position, commit_time)
                    .await?
            }
        }
        self.open = false;
        let p = self.settings.pipeline.clone();
        let elapsed = self
            .group_started
            .take()
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or_default();
        let lag = (Utc::now() - commit_time).num_microseconds().unwrap_or(0) as f64 / 1e6;
        metrics::histogram!(telemetry::APPLY_BATCH_SECONDS, "direction" => p.clone())
            .record(elapsed);
        if !snapshot_table && applies {
            metrics::gauge!(telemetry::LAG_SECONDS, "direction" => p.clone()).set(lag.max(0.0));
        }
        metrics::counter!(telemetry::CHANGES_APPLIED, "direction" => p.clone())
            .increment(self.group_changes);
        metrics::counter!(telemetry::TRANSACTIONS_APPLIED, "direction" => p.clone())
            .increment(self.group_txs as u64);
        for ((mapping, kind, strategy), n) in std::mem::take(&mut self.conflict_counts) {
            metrics::counter!(telemetry::CONFLICTS, "direction" => p.clone(), "mapping" => mapping, "kind" => kind, "strategy" => strategy).increment(n);
        }
        let mut dead_by_mapping: BTreeMap<String, u64> = BTreeMap::new();
        for d in &self.dead {
            *dead_by_mapping.entry(d.mapping.clone()).or_default() += 1;
        }
        for (mapping, n) in dead_by_mapping {
            metrics::counter!(telemetry::DEAD_LETTERS, "direction" => p.clone(), "mapping" => mapping).increment(n);
        }
        let (txs, changes) = (self.group_txs as u64, self.group_changes);
        let (nconf, ndead) = (self.conflicts.len() as u64, self.dead.len() as u64);
        self.status.update(&p, |s| {
            if !snapshot_table {
                s.state = "streaming".into();
                s.applied_position = Some(position.to_string());
            }
            if !snapshot_table && applies {
                s.last_source_commit = Some(commit_time);
                s.lag_seconds = Some(lag.max(0.0));
            }
            s.last_applied_at = Some(Utc::now());
            s.changes_applied += changes;
            s.transactions_applied += txs;
            s.conflicts += nconf;
            s.dead_letters += ndead;
        });
        if ndead > 0 {
            info!(pipeline = %p, dead_letters = ndead, "changes parked in the dead-letter table");
        }
        self.conflicts.clear();
        self.dead.clear();
        self.group_txs = 0;
        self.group_changes = 0;
        if snapshot_table {
            // The stream has not started: there is nothing to acknowledge, and the
            // direction's own checkpoint stays where it was.
            return Ok(());
        }
        self.ack.applied(position.clone());
        self.checkpoint = Some(position);
        Ok(())
    }
}

/// The resolver of mapper `m` writing into `target`.
fn resolver_for<'a>(m: &'a RowMapper, target: &'a TargetTable, initial_sync: bool) -> Resolver<'a> {
    Resolver {
        strategies: &m.strategies,
        key: &target.key,
        lww: m.lww,
        source_endpoint: &m.source_endpoint,
        source_wins_ties: m.source_wins_ties,
        initial_sync,
    }
}

/// `row` after a resolved write.
fn apply_write(row: &mut Option<Vec<Value>>, write: RowWrite) {
    match write {
        RowWrite::Insert { values } => *row = Some(values),
        RowWrite::Update { columns, .. } => {
            if let Some(row) = row.as_mut() {
                for (i, v) in columns {
                    if let Some(slot) = row.get_mut(i) {
                        *slot = v;
                    }
                }
            }
        }
        RowWrite::Delete { .. } => *row = None,
    }
}

/// The columns of `to` that differ from `from` (value or kind).
fn changed_columns(from: &[Value], to: Vec<Value>) -> Vec<(usize, Value)> {
    to.into_iter()
        .enumerate()
        .filter(|(i, v)| {
            from.get(*i)
                .is_none_or(|ov| !ov.same_as(v) || ov.kind() != v.kind())
        })
        .collect()
}

/// The writes of a batch whose conflict check can run inside the write.
#[derive(Debug, PartialEq)]
struct CheckedPlan {
    writes: Vec<CheckedWrite>,
    /// Per write, the index of its key.
    write_keys: Vec<usize>,
}

/// Plan a batch's writes with the conflict check inside them, or `None` when some key's
/// current row must be read first.
///
/// Per key, the resolver runs over the key's changes from the row the first change was
/// made from: absent before an insert, the before-image before an update or delete. If
/// that meets no conflict and sends nothing back, the key's net write is what the resolver
/// would write after reading the row, whenever the target holds the row so on the columns
/// the outcome depends on: for a single update the columns it alters (rule 1 of
/// `resolve`: only those are compared), for a delete every column of its before-image
/// (a full one; the delete is checked against all of them), for several changes of one
/// key every column. The write then expects those values, and the sink applies it only
/// where they hold. A key whose changes leave the row as it was (inserted and deleted
/// again, or no mapped column changed) gets a check that writes nothing. Anything else (a
/// conflict, a value sent back, a before-image with a column missing) is left to the read.
fn checked_plan(
    resolver: &Resolver<'_>,
    target: &TargetTable,
    changes: &[TargetChange],
    change_keys: &[usize],
    keys: &[Vec<Value>],
) -> Option<CheckedPlan> {
    let mut per_key: Vec<Vec<&TargetChange>> = vec![Vec::new(); keys.len()];
    for (tc, &k) in changes.iter().zip(change_keys) {
        per_key.get_mut(k)?.push(tc);
    }
    let columns = target.columns.len();
    let is_key = |c: usize| target.key.contains(&c);
    let fill = |row: &TargetRow| -> Vec<Value> {
        row.iter()
            .map(|v| v.clone().unwrap_or(Value::Null))
            .collect()
    };
    let mut plan = CheckedPlan {
        writes: Vec::with_capacity(keys.len()),
        write_keys: Vec::with_capacity(keys.len()),
    };
    for (k, chain) in per_key.iter().enumerate() {
        let first = *chain.first()?;
        let single = chain.len() == 1;
        let (assumed, expect): (Option<Vec<Value>>, Vec<usize>) = match first {
            TargetChange::Insert { .. } => (None, Vec::new()),
            TargetChange::Update {
                before: Some(b),
                after,
            } => {
                let mut expect = Vec::new();
                for c in (0..columns).filter(|&c| !is_key(c)) {
                    let a = after.get(c).and_then(Option::as_ref);
                    match (b.get(c)?, a) {
                        // A value without its before-image counts as a conflict.
                        (None, Some(_)) => return None,
                        (None, None) if !single => return None,
                        (None, None) => {}
                        (Some(b), Some(a)) if single && a.same_as(b) => {}
                        (Some(_), None) if single => {}
                        (Some(_), _) => expect.push(c),
                    }
                }
                // Whether a `last_writer_wins` column conflicts also depends on whether
                // the row's timestamp does (rule 2 of `resolve`).
                if let Some(i) = resolver.lww {
                    if single && !expect.contains(&i) && b.get(i).is_some_and(Option::is_some) {
                        expect.push(i);
                        expect.sort_unstable();
                    }
                }
                (Some(fill(b)), expect)
            }
            TargetChange::Update { before: None, .. } => return None,
            TargetChange::Delete { before, full } => {
                let expect = if *full {
                    (0..columns)
                        .filter(|&c| before.get(c).is_some_and(Option::is_some))
                        .collect()
                } else {
                    Vec::new()
                };
                (Some(fill(before)), expect)
            }
        };
        let mut row = assumed.clone();
        for tc in chain {
            let r = resolver.resolve(tc, row.as_deref());
            if r.conflict.is_some() || !r.write_back.is_empty() {
                return None;
            }
            if let Some(w) = r.write {
                apply_write(&mut row, w);
            }
        }
        let key = keys.get(k)?.clone();
        let expected = |o: &[Value]| -> Option<Vec<(usize, Value)>> {
            expect
                .iter()
                .map(|&c| o.get(c).map(|v| (c, v.clone())))
                .collect()
        };
        let write = match (&assumed, row) {
            (None, None) => CheckedWrite::Check { key, expect: None },
            (None, Some(values)) => CheckedWrite::Insert { values },
            (Some(o), None) => CheckedWrite::Delete {
                key,
                expect: expected(o)?,
            },
            (Some(o), Some(f)) => {
                let columns: Vec<(usize, Value)> = if matches!(first, TargetChange::Delete { .. }) {
                    // Deleted and inserted again: the new row whole.
                    f.into_iter()
                        .enumerate()
                        .filter(|(c, _)| !is_key(*c))
                        .collect()
                } else {
                    changed_columns(o, f)
                        .into_iter()
                        .filter(|(c, _)| !is_key(*c))
                        .collect()
                };
                if columns.is_empty() {
                    CheckedWrite::Check {
                        key,
                        expect: Some(expected(o)?),
                    }
                } else {
                    CheckedWrite::Update {
                        key,
                        expect: expected(o)?,
                        columns,
                    }
                }
            }
        };
        plan.writes.push(write);
        plan.write_keys.push(k);
    }
    Some(plan)
}

async fn recv_write_back(rx: &mut Option<mpsc::Receiver<WriteBack>>) -> Option<WriteBack> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Row, TableSchema};
    use crate::value::ColumnType;
    use std::sync::Arc;

    fn target() -> TargetTable {
        TargetTable {
            table: TableId::new("public", "t"),
            columns: vec![
                ("id".into(), ColumnType::Json),
                ("v".into(), ColumnType::Json),
            ],
            key: vec![0],
        }
    }

    fn plain(rows: &[Option<Value>]) -> bool {
        let change = Change {
            table: Arc::new(TableSchema {
                table: TableId::new("public", "s"),
                columns: Vec::new(),
                key: Vec::new(),
            }),
            row: RowChange::Insert {
                new: Row(Vec::new()),
            },
        };
        let mapped: Vec<(TargetChange, usize, &Change)> = rows
            .iter()
            .map(|k| {
                let after = vec![k.clone(), Some(Value::Int(0))];
                (TargetChange::Insert { after }, 0, &change)
            })
            .collect();
        plain_copy(&target(), &mapped)
    }

    #[test]
    fn a_copy_batch_is_plain_only_with_distinct_present_keys() {
        assert!(plain(&[
            Some(Value::Int(1)),
            Some(Value::Int(2)),
            Some(Value::Text("1".into()))
        ]));
        // Equal keys in the sense of `key_string`, however spelled.
        assert!(!plain(&[Some(Value::Int(7)), Some(Value::UInt(7))]));
        assert!(!plain(&[
            Some(Value::Text("a".into())),
            Some(Value::Text("a".into()))
        ]));
        assert!(!plain(&[Some(Value::Bool(true)), Some(Value::Bool(true))]));
        assert!(plain(&[Some(Value::Bool(true)), Some(Value::Bool(false))]));
        // A missing key value goes the general way.
        assert!(!plain(&[Some(Value::Int(1)), None]));
    }

    mod checked {
        //! `checked_plan` against the resolver: wherever a planned write's expectations
        //! hold on the target row, the write must leave exactly what reading the row and
        //! resolving the changes would, and that must meet no conflict.
        use super::super::*;
        use crate::config::Strategy as Rule;
        use crate::value::ColumnType;
        use proptest::prelude::*;

        fn table() -> TargetTable {
            TargetTable {
                table: TableId::new("public", "t"),
                columns: vec![
                    (
                        "id".into(),
                        ColumnType::Int {
                            bytes: 8,
                            unsigned: false,
                        },
                    ),
                    (
                        "n".into(),
                        ColumnType::Int {
                            bytes: 8,
                            unsigned: false,
                        },
                    ),
                    (
                        "s".into(),
                        ColumnType::Text {
                            max_chars: None,
                            allows_nul: true,
                        },
                    ),
                ],
                key: vec![0],
            }
        }

        fn strategy() -> impl Strategy<Value = Rule> {
            prop_oneof![
                Just(Rule::LastWriterWins { column: None }),
                Just(Rule::Delta),
                Just(Rule::Max),
                Just(Rule::Min),
                Just(Rule::Prefer("src".into())),
                Just(Rule::Prefer("other".into())),
                Just(Rule::Manual),
            ]
        }

        fn cell() -> impl Strategy<Value = Option<Value>> {
            prop_oneof![
                4 => (0i64..3).prop_map(|n| Some(Value::Int(n))),
                1 => Just(Some(Value::Null)),
                1 => Just(None),
            ]
        }

        fn text() -> impl Strategy<Value = Option<Value>> {
            prop_oneof![
                4 => prop_oneof![Just("x"), Just("y"), Just("X")].prop_map(|t| Some(Value::Text(t.into()))),
                1 => Just(None),
            ]
        }

        fn image() -> impl Strategy<Value = TargetRow> {
            (cell(), text()).prop_map(|(n, s)| vec![Some(Value::Int(1)), n, s])
        }

        fn change() -> impl Strategy<Value = TargetChange> {
            prop_oneof![
                image().prop_map(|after| TargetChange::Insert { after }),
                (image(), image()).prop_map(|(b, after)| TargetChange::Update {
                    before: Some(b),
                    after
                }),
                image().prop_map(|after| TargetChange::Update {
                    before: None,
                    after
                }),
                (image(), any::<bool>())
                    .prop_map(|(before, full)| TargetChange::Delete { before, full }),
            ]
        }

        fn row() -> impl Strategy<Value = Option<Vec<Value>>> {
            prop::option::of(
                (0i64..3, prop_oneof![Just("x"), Just("y"), Just("X")])
                    .prop_map(|(n, s)| vec![Value::Int(1), Value::Int(n), Value::Text(s.into())]),
            )
        }

        fn holds(w: &CheckedWrite, t: &Option<Vec<Value>>) -> Option<Option<Vec<Value>>> {
            let exact = |row: &[Value], expect: &[(usize, Value)]| {
                expect
                    .iter()
                    .all(|(c, v)| row.get(*c).is_some_and(|x| x == v))
            };
            match (w, t) {
                (CheckedWrite::Insert { values }, None) => Some(Some(values.clone())),
                (
                    CheckedWrite::Update {
                        expect, columns, ..
                    },
                    Some(row),
                ) if exact(row, expect) => {
                    let mut row = row.clone();
                    for (c, v) in columns {
                        row[*c] = v.clone();
                    }
                    Some(Some(row))
                }
                (CheckedWrite::Delete { expect, .. }, Some(row)) if exact(row, expect) => {
                    Some(None)
                }
                (CheckedWrite::Check { expect: None, .. }, None) => Some(None),
                (
                    CheckedWrite::Check {
                        expect: Some(expect),
                        ..
                    },
                    Some(row),
                ) if exact(row, expect) => Some(Some(row.clone())),
                _ => None,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]
            #[test]
            fn a_write_whose_expectations_hold_is_what_reading_would_write(
                strategies in prop::collection::vec(strategy(), 3),
                chain in prop::collection::vec(change(), 1..4),
                current in row(),
                lww in prop::option::of(Just(1usize)),
            ) {
                let t = table();
                let resolver = Resolver {
                    strategies: &strategies,
                    key: &t.key,
                    lww,
                    source_endpoint: "src",
                    source_wins_ties: true,
                    initial_sync: false,
                };
                let keys = vec![vec![Value::Int(1)]];
                let slots = vec![0; chain.len()];
                let Some(plan) = checked_plan(&resolver, &t, &chain, &slots, &keys) else {
                    return Ok(());
                };
                prop_assert_eq!(plan.writes.len(), 1);
                let Some(checked) = holds(&plan.writes[0], &current) else {
                    return Ok(());
                };
                let mut read = current.clone();
                for tc in &chain {
                    let r = resolver.resolve(tc, read.as_deref());
                    prop_assert!(r.conflict.is_none(), "{:?} on {:?}: {:?}", chain, current, r.conflict);
                    prop_assert!(r.write_back.is_empty());
                    if let Some(w) = r.write {
                        apply_write(&mut read, w);
                    }
                }
                prop_assert_eq!(checked, read, "{:?} on {:?}", chain, current);
            }
        }

        #[test]
        fn plans_a_plain_batch_and_leaves_conflicts_to_the_read() {
            let t = table();
            let strategies = vec![Rule::LastWriterWins { column: None }; 3];
            let resolver = Resolver {
                strategies: &strategies,
                key: &t.key,
                lww: None,
                source_endpoint: "src",
                source_wins_ties: true,
                initial_sync: false,
            };
            let row = |id: i64, n: i64| {
                vec![
                    Some(Value::Int(id)),
                    Some(Value::Int(n)),
                    Some(Value::Text("x".into())),
                ]
            };
            let changes = vec![
                TargetChange::Insert { after: row(1, 5) },
                TargetChange::Update {
                    before: Some(row(2, 5)),
                    after: row(2, 6),
                },
                TargetChange::Delete {
                    before: row(3, 5),
                    full: true,
                },
            ];
            let keys: Vec<Vec<Value>> = (1..=3).map(|k| vec![Value::Int(k)]).collect();
            let plan = checked_plan(&resolver, &t, &changes, &[0, 1, 2], &keys).expect("plannable");
            assert_eq!(plan.write_keys, vec![0, 1, 2]);
            assert_eq!(
                plan.writes,
                vec![
                    CheckedWrite::Insert {
                        values: vec![Value::Int(1), Value::Int(5), Value::Text("x".into())]
                    },
                    // Only the altered column is expected and set.
                    CheckedWrite::Update {
                        key: vec![Value::Int(2)],
                        expect: vec![(1, Value::Int(5))],
                        columns: vec![(1, Value::Int(6))]
                    },
                    // A delete expects its whole before-image, key included.
                    CheckedWrite::Delete {
                        key: vec![Value::Int(3)],
                        expect: vec![
                            (0, Value::Int(3)),
                            (1, Value::Int(5)),
                            (2, Value::Text("x".into()))
                        ],
                    },
                ]
            );
            // An update that changes no mapped column depends on whether the row exists:
            // a check that writes nothing.
            let noop = vec![TargetChange::Update {
                before: Some(row(2, 5)),
                after: row(2, 5),
            }];
            let plan = checked_plan(&resolver, &t, &noop, &[0], &keys[1..2]).expect("plannable");
            assert_eq!(
                plan.writes,
                vec![CheckedWrite::Check {
                    key: vec![Value::Int(2)],
                    expect: Some(vec![])
                }]
            );
            // So does an insert deleted again in the same batch: it expects no row.
            let gone = vec![
                TargetChange::Insert { after: row(1, 5) },
                TargetChange::Delete {
                    before: row(1, 5),
                    full: true,
                },
            ];
            let plan = checked_plan(&resolver, &t, &gone, &[0, 0], &keys[..1]).expect("plannable");
            assert_eq!(
                plan.writes,
                vec![CheckedWrite::Check {
                    key: vec![Value::Int(1)],
                    expect: None
                }]
            );
            // Without a before-image every column counts as a conflict.
            let blind = vec![TargetChange::Update {
                before: None,
                after: row(2, 6),
            }];
            assert!(checked_plan(&resolver, &t, &blind, &[0], &keys[1..2]).is_none());
        }
    }
}
