//! The mapper: a source row, in the source table's columns, becomes a row in the target
//! table's mapped columns, with every value converted to the target column's type.
//!
//! A [`RowMapper`] is built per mapping and direction from the config and the target's
//! catalog. It resolves source columns by *name* against the schema each change carries,
//! so a column added on the source is ignored, and a mapped column dropped or retyped on
//! the source is a [`MapError::Drift`] that halts this mapping (and only it) with a message
//! naming the column and the fix. A value the target cannot hold is a
//! [`MapError::Value`]: the applier dead-letters that row and goes on (or halts, per
//! `on_error`).

use std::sync::Arc;

use crate::change::{Cell, OldRow, Row, RowChange, TableId, TableSchema};
use crate::config::{Mapping, OnError, Strategy};
use crate::convert::{convert, ConvertError};
use crate::sink::TargetTable;
use crate::value::{ColumnType, Value};

/// Why a row could not be mapped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MapError {
    /// The source table no longer matches the mapping: halt the mapping.
    #[error("Mapping {mapping:?}: {what}. {fix}")]
    Drift {
        mapping: String,
        what: String,
        fix: String,
    },
    /// One value cannot be written to the target column: dead-letter the row.
    #[error(transparent)]
    Value(#[from] ConvertError),
}

/// A row in the target's mapped columns; `None` where the source did not send the value
/// (unchanged TOAST) and the target column must be left alone.
pub type TargetRow = Vec<Option<Value>>;

/// A change in the target's terms.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetChange {
    Insert {
        after: TargetRow,
    },
    /// `before` is `None` when the source sent no before-image.
    Update {
        before: Option<TargetRow>,
        after: TargetRow,
    },
    Delete {
        before: TargetRow,
        full: bool,
    },
}

impl TargetChange {
    /// The key values (in target key order) the change applies to: the new key for inserts
    /// and updates, the old one for deletes.
    pub fn key(&self, target: &TargetTable) -> Option<Vec<Value>> {
        let row = match self {
            TargetChange::Insert { after } | TargetChange::Update { after, .. } => after,
            TargetChange::Delete { before, .. } => before,
        };
        target
            .key
            .iter()
            .map(|&i| row.get(i).cloned().flatten())
            .collect()
    }
}

/// Maps rows of one source table to one target table.
#[derive(Debug)]
pub struct RowMapper {
    pub mapping: String,
    pub source_endpoint: String,
    pub target_endpoint: String,
    pub source_table: TableId,
    pub target: TargetTable,
    /// Source column name per target column.
    source_names: Vec<String>,
    /// Per target column: conflict strategy.
    pub strategies: Vec<Strategy>,
    /// Target column index of the `last_writer_wins` timestamp, if the mapping has one.
    pub lww: Option<usize>,
    /// Whether the source endpoint wins `last_writer_wins` ties (it is listed first).
    pub source_wins_ties: bool,
    pub on_error: OnError,
    /// Source column indexes for the schema last seen (held, so its address stays unique).
    cache: Option<(Arc<TableSchema>, Vec<usize>)>,
}

impl RowMapper {
    /// Build the mapper for rows flowing `source_endpoint → target_endpoint`.
    ///
    /// `target_columns` gives the type of every target column by name (from the target's
    /// catalog); a mapped column missing there is a drift error.
    pub fn new(
        mapping: &Mapping,
        source_endpoint: &str,
        target_endpoint: &str,
        source_table: TableId,
        target_table: TableId,
        target_columns: &dyn Fn(&str) -> Option<ColumnType>,
        priority: &[&str],
    ) -> Result<RowMapper, MapError> {
        let drift = |what: String, fix: String| MapError::Drift {
            mapping: mapping.name.clone(),
            what,
            fix,
        };
        let mut columns = Vec::new();
        let mut source_names = Vec::new();
        let mut strategies = Vec::new();
        for col in &mapping.columns {
            let (Some(src), Some(dst)) =
                (col.name_on(source_endpoint), col.name_on(target_endpoint))
            else {
                continue;
            };
            let ty = target_columns(dst).ok_or_else(|| {
                drift(
                    format!("column {dst:?} no longer exists in {target_table}"),
                    format!(
                        "restore the column or remove it from mapping {:?}, then restart",
                        mapping.name
                    ),
                )
            })?;
            columns.push((dst.to_owned(), ty));
            source_names.push(src.to_owned());
            strategies.push(mapping.strategy_for(col));
        }
        let target_key_names = mapping
            .sides
            .get(target_endpoint)
            .map(|s| s.key.clone())
            .unwrap_or_default();
        let key = target_key_names
            .iter()
            .filter_map(|k| columns.iter().position(|(n, _)| n == k))
            .collect::<Vec<_>>();
        if key.len() != target_key_names.len() || key.is_empty() {
            return Err(drift(
                format!("the key of {target_table} is not among the mapped columns"),
                "map every key column".into(),
            ));
        }
        let lww = mapping
            .lww_column()
            .and_then(|c| c.name_on(target_endpoint))
            .and_then(|n| columns.iter().position(|(c, _)| c == n));
        let source_wins_ties = priority.first().is_some_and(|p| *p == source_endpoint);
        Ok(RowMapper {
            mapping: mapping.name.clone(),
            source_endpoint: source_endpoint.to_owned(),
            target_endpoint: target_endpoint.to_owned(),
            source_table,
            target: TargetTable {
                table: target_table,
                columns,
                key,
            },
            source_names,
            strategies,
            lww,
            source_wins_ties,
            on_error: mapping.on_error,
            cache: None,
        })
    }

    /// Indexes of the mapped columns in `schema`, checked once per schema version.
    fn indexes(&mut self, schema: &Arc<TableSchema>) -> Result<Vec<usize>, MapError> {
        if let Some((cached, idx)) = &self.cache {
            if Arc::ptr_eq(cached, schema) {
                return Ok(idx.clone());
            }
        }
        let mut idx = Vec::with_capacity(self.source_names.len());
        for name in &self.source_names {
            match schema.column_index(name) {
                Some(i) => idx.push(i),
                None => {
                    return Err(MapError::Drift {
                        mapping: self.mapping.clone(),
                        what: format!(
                            "column {name:?} of {} is gone on {} (dropped or renamed)",
                            self.source_table, self.source_endpoint
                        ),
                        fix: format!(
                            "restore the column, or update mappings.{}.columns to the new name and restart tandem",
                            self.mapping
                        ),
                    })
                }
            }
        }
        self.cache = Some((Arc::clone(schema), idx.clone()));
        Ok(idx)
    }

    fn map_row(&self, idx: &[usize], row: &Row) -> Result<TargetRow, MapError> {
        let mut out = Vec::with_capacity(idx.len());
        for (t, &s) in idx.iter().enumerate() {
            let (name, ty) = &self.target.columns[t];
            match row.get(s) {
                Some(Cell::Value(v)) => out.push(Some(convert(name, v, ty)?)),
                Some(Cell::Unchanged) => out.push(None),
                None => {
                    return Err(MapError::Drift {
                        mapping: self.mapping.clone(),
                        what: format!("a row of {} is shorter than its schema", self.source_table),
                        fix: "report this as a bug in tandem".into(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Map one source change.
    pub fn map(
        &mut self,
        schema: &Arc<TableSchema>,
        change: &RowChange,
    ) -> Result<TargetChange, MapError> {
        let idx = self.indexes(schema)?;
        Ok(match change {
            RowChange::Insert { new } => TargetChange::Insert {
                after: self.map_row(&idx, new)?,
            },
            RowChange::Update { old, new } => {
                let mut after = self.map_row(&idx, new)?;
                let before = match old {
                    OldRow::Full(r) => Some(self.map_row(&idx, r)?),
                    OldRow::KeyOnly(_) | OldRow::Missing => None,
                };
                // An unchanged TOAST value the old image carries is the new value too.
                if let Some(b) = &before {
                    for (a, b) in after.iter_mut().zip(b) {
                        if a.is_none() {
                            a.clone_from(b);
                        }
                    }
                }
                TargetChange::Update { before, after }
            }
            RowChange::Delete { old } => match old {
                OldRow::Full(r) => TargetChange::Delete {
                    before: self.map_row(&idx, r)?,
                    full: true,
                },
                OldRow::KeyOnly(r) => TargetChange::Delete {
                    before: self.map_row(&idx, r)?,
                    full: false,
                },
                OldRow::Missing => {
                    return Err(MapError::Drift {
                        mapping: self.mapping.clone(),
                        what: format!("a delete on {} arrived without its key", self.source_table),
                        fix: format!(
                            "run ALTER TABLE {} REPLICA IDENTITY FULL",
                            self.source_table
                        ),
                    })
                }
            },
        })
    }
}
