//! From wire messages to tandem's change model: the relation cache and row decoding.
//!
//! Row messages name their table only by OID; its columns came earlier in a Relation
//! message. The [`Decoder`] caches each Relation as an `Arc<TableSchema>` and *replaces* it
//! whenever a new one arrives (after `ALTER TABLE`, or again before a TRUNCATE), so a change
//! always carries the schema its row was encoded with. A row whose column count does not
//! match its relation is an error, never a guess.
//!
//! TOAST: a `u` cell is a value the server did not send because the update left it alone.
//! Under `REPLICA IDENTITY FULL` the old image holds it, so the new row is completed from
//! there; otherwise it stays [`Cell::Unchanged`] and the sink must leave that column alone.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tandem_core::change::{
    Cell, Change, ColumnSchema, OldRow, Row, RowChange, TableId, TableSchema,
};
use tandem_core::position::Lsn;
use tandem_core::value::ColumnType;

use super::message::{self, Message, OldKind, Tuple, TupleCell, PG_EPOCH_OFFSET_MICROS};
use super::DecoderError;
use crate::types;

/// `relreplident` of `REPLICA IDENTITY FULL`.
const REPLICA_IDENTITY_FULL: u8 = b'f';
/// Truncate option bits.
const TRUNCATE_CASCADE: u8 = 1;
const TRUNCATE_RESTART_IDENTITY: u8 = 2;

/// What one pgoutput message means to tandem.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Begin {
        final_lsn: Lsn,
        commit_time: DateTime<Utc>,
        xid: u32,
    },
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: DateTime<Utc>,
    },
    /// The open transaction was replayed through replication origin `name`.
    Origin {
        name: String,
        origin_lsn: Lsn,
    },
    Change(Change),
    Truncate {
        tables: Vec<Arc<TableSchema>>,
        cascade: bool,
        restart_identity: bool,
    },
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
    /// A table's schema arrived (and is now cached).
    Relation(Arc<TableSchema>),
    /// A user-defined type's name arrived; if it is an enum, its labels should be supplied
    /// with [`Decoder::set_enum_labels`] before the Relation that follows.
    Type {
        oid: u32,
        name: String,
    },
}

struct RelationEntry {
    schema: Arc<TableSchema>,
    type_oids: Vec<u32>,
}

/// The stateful pgoutput decoder of one replication session.
#[derive(Default)]
pub struct Decoder {
    relations: HashMap<u32, RelationEntry>,
    /// Qualified names of user-defined types, from Type messages.
    type_names: HashMap<u32, String>,
    /// Labels of the enums known to the catalog.
    enums: HashMap<u32, Vec<String>>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declare `oid` an enum with `labels` (in sort order); relations decoded from now on
    /// map its columns to [`ColumnType::Enum`].
    pub fn set_enum_labels(&mut self, oid: u32, labels: Vec<String>) {
        self.enums.insert(oid, labels);
    }

    /// Whether `oid` is a known enum.
    pub fn is_enum(&self, oid: u32) -> bool {
        self.enums.contains_key(&oid)
    }

    /// The cached schema of relation `oid`.
    pub fn relation(&self, oid: u32) -> Option<&Arc<TableSchema>> {
        self.relations.get(&oid).map(|e| &e.schema)
    }

    /// Decode one message (one XLogData payload).
    pub fn decode(&mut self, buf: &[u8]) -> Result<Decoded, DecoderError> {
        Ok(match message::parse(buf)? {
            Message::Begin(b) => Decoded::Begin {
                final_lsn: Lsn(b.final_lsn),
                commit_time: pg_time(b.commit_time)?,
                xid: b.xid,
            },
            Message::Commit(c) => Decoded::Commit {
                commit_lsn: Lsn(c.commit_lsn),
                end_lsn: Lsn(c.end_lsn),
                commit_time: pg_time(c.commit_time)?,
            },
            Message::Origin(o) => Decoded::Origin {
                name: o.name.to_owned(),
                origin_lsn: Lsn(o.origin_lsn),
            },
            Message::Relation(r) => Decoded::Relation(self.cache_relation(&r)),
            Message::Type(t) => {
                let name = qualified(t.namespace, t.name);
                self.type_names.insert(t.oid, name.clone());
                Decoded::Type { oid: t.oid, name }
            }
            Message::Insert { relation, new } => {
                let entry = self.entry(relation)?;
                let new = row(entry, &new)?;
                change(entry, RowChange::Insert { new })
            }
            Message::Update { relation, old, new } => {
                let entry = self.entry(relation)?;
                let mut new = row(entry, &new)?;
                let old = match old {
                    None => OldRow::Missing,
                    Some((OldKind::Key, t)) => OldRow::KeyOnly(row(entry, &t)?),
                    Some((OldKind::Full, t)) => {
                        let old = row(entry, &t)?;
                        fill_unchanged(&mut new, &old);
                        OldRow::Full(old)
                    }
                };
                change(entry, RowChange::Update { old, new })
            }
            Message::Delete {
                relation,
                old: (kind, t),
            } => {
                let entry = self.entry(relation)?;
                let old = row(entry, &t)?;
                let old = match kind {
                    OldKind::Key => OldRow::KeyOnly(old),
                    OldKind::Full => OldRow::Full(old),
                };
                change(entry, RowChange::Delete { old })
            }
            Message::Truncate(t) => Decoded::Truncate {
                tables: t
                    .relations
                    .iter()
                    .map(|oid| self.entry(*oid).map(|e| Arc::clone(&e.schema)))
                    .collect::<Result<_, _>>()?,
                cascade: t.options & TRUNCATE_CASCADE != 0,
                restart_identity: t.options & TRUNCATE_RESTART_IDENTITY != 0,
            },
            Message::Message(m) => Decoded::Message {
                transactional: m.transactional,
                lsn: Lsn(m.lsn),
                prefix: m.prefix.to_owned(),
                content: m.content.to_vec(),
            },
        })
    }

    fn entry(&self, oid: u32) -> Result<&RelationEntry, DecoderError> {
        self.relations
            .get(&oid)
            .ok_or(DecoderError::UnknownRelation { oid })
    }

    fn cache_relation(&mut self, r: &message::Relation<'_>) -> Arc<TableSchema> {
        let full_identity = r.replica_identity == REPLICA_IDENTITY_FULL;
        let columns = r
            .columns
            .iter()
            .map(|c| {
                let user_name = self.type_names.get(&c.type_oid);
                let native_type = types::builtin_type_name(c.type_oid, c.type_modifier)
                    .or_else(|| user_name.cloned())
                    .unwrap_or_else(|| format!("type oid {}", c.type_oid));
                let column_type = match self.enums.get(&c.type_oid) {
                    Some(labels) => types::enum_type(labels.clone()),
                    None => types::column_type(c.type_oid, c.type_modifier, &native_type),
                };
                // pgoutput does not say whether a column is nullable; assume it is.
                ColumnSchema {
                    name: c.name.to_owned(),
                    column_type,
                    native_type,
                    nullable: true,
                }
            })
            .collect();
        let key = r
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| full_identity || c.is_key())
            .map(|(i, _)| i)
            .collect();
        let schema = Arc::new(TableSchema {
            table: TableId::new(
                if r.namespace.is_empty() {
                    "pg_catalog"
                } else {
                    r.namespace
                },
                r.name,
            ),
            columns,
            key,
        });
        let type_oids = r.columns.iter().map(|c| c.type_oid).collect();
        self.relations.insert(
            r.oid,
            RelationEntry {
                schema: Arc::clone(&schema),
                type_oids,
            },
        );
        schema
    }
}

fn qualified(namespace: &str, name: &str) -> String {
    if namespace.is_empty() || namespace == "pg_catalog" || namespace == "public" {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

fn change(entry: &RelationEntry, row: RowChange) -> Decoded {
    Decoded::Change(Change {
        table: Arc::clone(&entry.schema),
        row,
    })
}

/// A pgoutput timestamp (µs since 2000-01-01 UTC).
pub(crate) fn pg_time(micros: i64) -> Result<DateTime<Utc>, DecoderError> {
    micros
        .checked_add(PG_EPOCH_OFFSET_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(DecoderError::BadTimestamp { micros })
}

/// Decode a tuple against its relation.
fn row(entry: &RelationEntry, tuple: &Tuple<'_>) -> Result<Row, DecoderError> {
    let schema = &entry.schema;
    if tuple.cells.len() != schema.columns.len() {
        return Err(DecoderError::ColumnCount {
            table: schema.table.to_string(),
            expected: schema.columns.len(),
            got: tuple.cells.len(),
        });
    }
    let cells = tuple
        .cells
        .iter()
        .zip(&schema.columns)
        .zip(&entry.type_oids)
        .map(|((cell, col), oid)| cell_value(schema, col, *oid, cell))
        .collect::<Result<_, _>>()?;
    Ok(Row(cells))
}

fn cell_value(
    schema: &TableSchema,
    col: &ColumnSchema,
    oid: u32,
    cell: &TupleCell<'_>,
) -> Result<Cell, DecoderError> {
    let column = || (schema.table.to_string(), col.name.clone());
    Ok(match cell {
        TupleCell::Null => Cell::Value(tandem_core::Value::Null),
        TupleCell::Unchanged => Cell::Unchanged,
        TupleCell::Binary(_) => {
            let (table, column) = column();
            return Err(DecoderError::BinaryValue { table, column });
        }
        TupleCell::Text(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                let (table, column) = column();
                DecoderError::ValueNotUtf8 { table, column }
            })?;
            let ty: &ColumnType = &col.column_type;
            Cell::Value(types::decode_text(ty, oid, text).map_err(|source| {
                let (table, column) = column();
                DecoderError::Value {
                    table,
                    column,
                    source,
                }
            })?)
        }
    })
}

/// Complete a new row's unchanged TOAST cells from a full old image.
fn fill_unchanged(new: &mut Row, old: &Row) {
    for (cell, before) in new.0.iter_mut().zip(&old.0) {
        if matches!(cell, Cell::Unchanged) {
            cell.clone_from(before);
        }
    }
}
