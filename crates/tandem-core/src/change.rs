//! Rows and row changes as they travel from a source to a sink.
//!
//! A source emits a stream of [`SourceEvent`]s: `Begin`, any number of `Change`s, `Commit`.
//! Transactions are streamed, never collected whole, so a million-row transaction costs
//! the memory of one batch (invariant 6). Every change carries the schema it was decoded
//! with (`Arc<TableSchema>`), because a schema can change between two transactions and the
//! mapper must judge each row by the columns it actually had.
//!
//! The ambiguities of CDC are variants, not defaults: a TOAST value PostgreSQL did not send
//! is [`Cell::Unchanged`], an update without a before-image is [`OldRow::Missing`], a
//! before-image that holds only the key is [`OldRow::KeyOnly`].

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::position::Position;
use crate::value::{ColumnType, Value};

/// A table's qualified name. `schema` is the PostgreSQL schema; MySQL tables carry the
/// database name there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId {
    pub schema: String,
    pub name: String,
}

impl TableId {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableId {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Parse `schema.table` or `table` (with `default_schema`).
    pub fn parse(s: &str, default_schema: &str) -> TableId {
        match s.split_once('.') {
            Some((schema, name)) => TableId::new(schema, name),
            None => TableId::new(default_schema, s),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One column as the source knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    pub column_type: ColumnType,
    /// The server's own spelling of the type (`numeric(12,2)`, `tinyint(1) unsigned`).
    pub native_type: String,
    pub nullable: bool,
}

/// A table's columns in the order rows list them, and which of them form the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    pub table: TableId,
    pub columns: Vec<ColumnSchema>,
    /// Indexes into `columns` of the primary (or replica identity) key.
    pub key: Vec<usize>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// One cell of a row image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    Value(Value),
    /// PostgreSQL did not send this (TOASTed) value because the update did not change it.
    Unchanged,
}

impl Cell {
    pub fn value(&self) -> Option<&Value> {
        match self {
            Cell::Value(v) => Some(v),
            Cell::Unchanged => None,
        }
    }
}

/// A row image: one cell per column of the change's [`TableSchema`], in order.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Row(pub Vec<Cell>);

impl Row {
    pub fn from_values(values: impl IntoIterator<Item = Value>) -> Self {
        Row(values.into_iter().map(Cell::Value).collect())
    }

    pub fn get(&self, i: usize) -> Option<&Cell> {
        self.0.get(i)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a source knows of a row before an update or delete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OldRow {
    /// Every column (PostgreSQL `REPLICA IDENTITY FULL`, MySQL `binlog_row_image=FULL`).
    Full(Row),
    /// Only the key columns hold values; the others are `Null` placeholders.
    KeyOnly(Row),
    /// No before-image at all (PostgreSQL `REPLICA IDENTITY DEFAULT`, key unchanged).
    Missing,
}

/// A row change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RowChange {
    Insert { new: Row },
    Update { old: OldRow, new: Row },
    Delete { old: OldRow },
}

/// A row change with the schema it was decoded with.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub table: Arc<TableSchema>,
    pub row: RowChange,
}

/// The start of a source transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct TxBegin {
    /// When the source committed it, if the log says so at its start (PostgreSQL does,
    /// the binlog gives the event time).
    pub commit_time: Option<DateTime<Utc>>,
    /// Replication origin the source database recorded for it, if any (PostgreSQL origin
    /// name; MariaDB `domain-server`). Transactions of tandem's own origin never get here.
    pub origin: Option<String>,
    /// The rows of an initial snapshot, not changes: a row the target already holds is
    /// reconciled, not added to (see `resolve`, initial sync).
    pub snapshot: bool,
}

/// The end of a source transaction: where to resume after it.
#[derive(Clone, Debug, PartialEq)]
pub struct TxCommit {
    pub position: Position,
    pub commit_time: DateTime<Utc>,
}

/// What a source emits.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    Begin(TxBegin),
    Change(Change),
    /// Tables emptied by `TRUNCATE` inside the current transaction.
    Truncate {
        tables: Vec<Arc<TableSchema>>,
    },
    Commit(TxCommit),
    /// Ends an initial-copy transaction (opened by a `Begin` with `snapshot: true`) that
    /// holds rows of one source `table`: the next keys of its copy, up to where `progress`
    /// (the table's whole copy record, this transaction included) says. The applier commits
    /// it like any other transaction, but records `progress` under the table's
    /// snapshot-progress key (`apply::snapshot_progress_key`) instead of the direction's
    /// checkpoint, and acknowledges nothing: streaming has not started yet. After a crash
    /// the copy resumes after the last recorded key (see `copy_progress`).
    SnapshotCommit {
        table: TableId,
        progress: crate::copy_progress::CopyProgress,
        commit_time: DateTime<Utc>,
    },
    /// The source has read up to `position` and no transaction is open: nothing between the
    /// last commit and here concerns tandem (skipped, filtered or own transactions). The
    /// applier may checkpoint it so that an idle source still advances.
    Progress {
        position: Position,
        at: DateTime<Utc>,
    },
}
