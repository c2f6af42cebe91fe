//! The sink seam: applying resolved rows to a target database, one transaction at a time.
//!
//! The applier drives a sink through `begin → (fetch_current, write, record_*)* → commit`.
//! `commit` writes the source position into tandem's checkpoint table *in the same target
//! transaction* as the rows (invariant 1), so after a crash [`Sink::checkpoint`] says exactly
//! which source transactions took effect. A sink tags its writes so that the reader of its
//! own database recognises and drops them (invariant 2: PostgreSQL replication origin,
//! MariaDB `skip_replication`, or a marker row).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::change::TableId;
use crate::error::StageError;
use crate::position::Position;
use crate::value::{ColumnType, Value};

/// A mapped table as the sink writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetTable {
    pub table: TableId,
    /// Column names and types, in the order [`RowWrite::Insert`] values use.
    pub columns: Vec<(String, ColumnType)>,
    /// Indexes into `columns` of the key the mapping matches rows by.
    pub key: Vec<usize>,
}

impl TargetTable {
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.key
            .iter()
            .filter_map(|&i| self.columns.get(i).map(|c| c.0.as_str()))
    }
}

/// A write that holds only if the target row is still what the change was made from:
/// conflict detection inside the write, instead of reading every current row first
/// (see [`Sink::write_if_unchanged`]). Expected values are compared exactly (text byte
/// for byte, numbers by value, `NULL` equal to `NULL`), never more loosely than the
/// resolver's [`Value::same_as`]; a sink that cannot compare a value that way reports the
/// row as not applied.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckedWrite {
    /// Insert, if no row has the key.
    Insert { values: Vec<Value> },
    /// Set `columns`, if the row exists and holds `expect` (column index, value).
    Update {
        key: Vec<Value>,
        expect: Vec<(usize, Value)>,
        columns: Vec<(usize, Value)>,
    },
    /// Delete, if the row exists and holds `expect`.
    Delete {
        key: Vec<Value>,
        expect: Vec<(usize, Value)>,
    },
    /// Write nothing; applied if the row is absent (`None`), or exists and holds `expect`:
    /// a key whose changes leave it as it was (inserted and deleted again) or change no
    /// column the mapping writes.
    Check {
        key: Vec<Value>,
        expect: Option<Vec<(usize, Value)>>,
    },
}

impl CheckedWrite {
    /// The values it expects (none for an insert, or a check that the row is absent).
    pub fn expected(&self) -> &[(usize, Value)] {
        match self {
            CheckedWrite::Update { expect, .. }
            | CheckedWrite::Delete { expect, .. }
            | CheckedWrite::Check {
                expect: Some(expect),
                ..
            } => expect,
            CheckedWrite::Insert { .. } | CheckedWrite::Check { expect: None, .. } => &[],
        }
    }
}

/// Columns set and columns expected, by index: rows of one shape share a statement.
pub type CheckedShape = (Vec<usize>, Vec<usize>);

/// One row of a checked batch as a statement takes it.
#[derive(Debug)]
pub struct CheckedRow<'a> {
    /// Its index among the batch's writes.
    pub write: usize,
    pub key: &'a [Value],
    /// Values to set, in the shape's order (an update's; empty otherwise).
    pub set: Vec<&'a Value>,
    /// Expected values, in the shape's order.
    pub expect: Vec<&'a Value>,
}

/// A checked batch grouped the way sinks run it: checks, deletes, updates and inserts,
/// each by shape (see [`Sink::write_if_unchanged`]).
#[derive(Debug, Default)]
pub struct CheckedGroups<'a> {
    /// Checks that the row is absent.
    pub absent: Vec<CheckedRow<'a>>,
    /// Checks that the row exists and holds the expected values.
    pub present: std::collections::BTreeMap<CheckedShape, Vec<CheckedRow<'a>>>,
    pub deletes: std::collections::BTreeMap<CheckedShape, Vec<CheckedRow<'a>>>,
    pub updates: std::collections::BTreeMap<CheckedShape, Vec<CheckedRow<'a>>>,
    /// Inserts: write index and values.
    pub inserts: Vec<(usize, &'a [Value])>,
}

impl<'a> CheckedGroups<'a> {
    pub fn new(writes: &'a [CheckedWrite]) -> Self {
        let mut groups = CheckedGroups::default();
        let values = |cols: &'a [(usize, Value)]| -> (Vec<usize>, Vec<&'a Value>) {
            cols.iter().map(|(c, v)| (*c, v)).unzip()
        };
        for (write, w) in writes.iter().enumerate() {
            let (kind, key, set, expect) = match w {
                CheckedWrite::Insert { values } => {
                    groups.inserts.push((write, values));
                    continue;
                }
                CheckedWrite::Check { key, expect: None } => {
                    let row = CheckedRow {
                        write,
                        key,
                        set: Vec::new(),
                        expect: Vec::new(),
                    };
                    groups.absent.push(row);
                    continue;
                }
                CheckedWrite::Update {
                    key,
                    expect,
                    columns,
                } => (&mut groups.updates, key, values(columns), values(expect)),
                CheckedWrite::Delete { key, expect } => {
                    (&mut groups.deletes, key, values(&[]), values(expect))
                }
                CheckedWrite::Check {
                    key,
                    expect: Some(expect),
                } => (&mut groups.present, key, values(&[]), values(expect)),
            };
            kind.entry((set.0, expect.0)).or_default().push(CheckedRow {
                write,
                key,
                set: set.1,
                expect: expect.1,
            });
        }
        groups
    }
}

/// The rows of a [`Sink::write_if_unchanged`] call that were not applied (indexes into
/// its writes), known now or once a sink running behind the applier got to them.
#[derive(Debug)]
pub enum Unapplied {
    Now(Vec<usize>),
    Later(tokio::sync::oneshot::Receiver<Result<Vec<usize>, StageError>>),
}

impl Unapplied {
    pub async fn wait(self) -> Result<Vec<usize>, StageError> {
        match self {
            Unapplied::Now(rows) => Ok(rows),
            Unapplied::Later(rx) => rx.await.unwrap_or_else(|_| {
                Err(StageError::Transient {
                    what: "the target connection's task ended".into(),
                    source: None,
                })
            }),
        }
    }
}

/// One resolved write.
#[derive(Clone, Debug, PartialEq)]
pub enum RowWrite {
    /// Insert a whole row (values for every column of the table, in order). The applier
    /// inserts only keys it read as absent in this transaction; if the key exists after all
    /// (a concurrent writer inserted it in between), the sink must not overwrite that row
    /// but fail with a transient error, so that the retry reads it and resolves the pair
    /// as `insert_exists`.
    Insert {
        values: Vec<Value>,
    },
    /// Set `columns` (indexes into the table's columns) of the row with `key`.
    Update {
        key: Vec<Value>,
        columns: Vec<(usize, Value)>,
    },
    Delete {
        key: Vec<Value>,
    },
}

/// What tandem read or decided about one conflict, stored in `tandem_conflicts`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConflictRecord {
    pub mapping: String,
    /// `insert_exists`, `update_missing`, `update_differs`, `delete_missing`, `delete_differs`.
    pub kind: String,
    pub strategy: String,
    /// `applied`, `kept_target`, `merged`, `parked`.
    pub decision: String,
    pub key: serde_json::Value,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub current: Option<serde_json::Value>,
    pub source_commit_time: Option<DateTime<Utc>>,
}

/// A change that could not be applied, stored in `tandem_dead_letters`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    pub mapping: String,
    pub key: serde_json::Value,
    /// The change as the source sent it.
    pub change: serde_json::Value,
    pub reason: String,
    pub source_position: String,
}

#[async_trait]
pub trait Sink: Send {
    /// The text stored under `key` in the checkpoint table (what [`Sink::commit_text`]
    /// wrote); `None` if there is no such row.
    async fn checkpoint_text(&mut self, key: &str) -> Result<Option<String>, StageError>;

    /// The last source position durably applied for `pipeline` (a direction's name), read
    /// from the checkpoint table; `None` before the first commit.
    async fn checkpoint(&mut self, pipeline: &str) -> Result<Option<Position>, StageError> {
        let Some(text) = self.checkpoint_text(pipeline).await? else {
            return Ok(None);
        };
        Position::from_checkpoint_text(&text).map(Some).map_err(|e| {
            StageError::definite_from(
                format!("The checkpoint of {pipeline} in tandem's checkpoint table is not a position tandem wrote"),
                format!("restore the row from a backup, or delete it to start {pipeline} from scratch (copy again)"),
                e,
            )
        })
    }

    /// Open a target transaction.
    async fn begin(&mut self) -> Result<(), StageError>;

    /// The current target rows for `keys` (each in key-column order), read inside the open
    /// transaction and locked against concurrent writers until commit. `None` where no row
    /// has the key. One round trip per call.
    async fn fetch_current(
        &mut self,
        table: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Option<Vec<Value>>>, StageError>;

    /// Whether `table` holds no row, read inside the open transaction without locking.
    /// The applier asks once per initial copy of a table: into an empty table it copies
    /// without reading current rows (every key is absent unless a concurrent writer
    /// inserts it, which [`RowWrite::Insert`]'s contract catches).
    async fn is_empty(&mut self, table: &TargetTable) -> Result<bool, StageError>;

    /// Apply writes to one table, batched into as few statements as possible.
    async fn write(&mut self, table: &TargetTable, writes: &[RowWrite]) -> Result<(), StageError>;

    /// Apply `writes` (distinct keys, one write each) only where the target row is as
    /// each expects, in one go: checks, deletes, then updates, then inserts. Returns the rows not
    /// applied; the target is left as it was for those, and the others are applied. A
    /// sink may apply none when one row differs (MariaDB rolls back to a savepoint), and
    /// one that cannot check a table's writes this way applies none (the default). The
    /// applier then reads those rows' current values and resolves them as usual.
    async fn write_if_unchanged(
        &mut self,
        table: &TargetTable,
        writes: Vec<CheckedWrite>,
    ) -> Result<Unapplied, StageError> {
        let _ = table;
        Ok(Unapplied::Now((0..writes.len()).collect()))
    }

    /// [`Sink::write`] taking the writes over, for sinks that keep them past the call
    /// ([`crate::write_behind::WriteBehind`] queues them).
    async fn write_owned(
        &mut self,
        table: &TargetTable,
        writes: Vec<RowWrite>,
    ) -> Result<(), StageError> {
        self.write(table, &writes).await
    }

    /// Record conflicts and dead letters in the open transaction.
    async fn record(
        &mut self,
        conflicts: &[ConflictRecord],
        dead_letters: &[DeadLetter],
    ) -> Result<(), StageError>;

    /// Write `text` under `key` in the checkpoint table and commit, atomically.
    async fn commit_text(
        &mut self,
        key: &str,
        text: &str,
        source_commit_time: DateTime<Utc>,
    ) -> Result<(), StageError>;

    /// Write `position` as `pipeline`'s checkpoint and commit, atomically.
    async fn commit(
        &mut self,
        pipeline: &str,
        position: &Position,
        source_commit_time: DateTime<Utc>,
    ) -> Result<(), StageError> {
        self.commit_text(pipeline, &position.to_checkpoint_text(), source_commit_time)
            .await
    }

    /// Abandon the open transaction (after an error; the applier then retries or halts).
    async fn rollback(&mut self) -> Result<(), StageError>;
}
