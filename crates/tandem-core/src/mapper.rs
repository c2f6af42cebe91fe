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
//!
//! The mapping's expressions ([`crate::expr`]) run here, on the source row, before any type
//! conversion: a column's `transform` computes the value written to the target, and the
//! source side's `where` filter decides whether a row leaves its side at all
//! ([`RowMapper::map_filtered`]). An update is judged on both images, because a row can
//! enter or leave the filter: it becomes an insert or a delete on the target, so the target
//! holds exactly the source rows that pass. An expression that fails on a row is a
//! [`MapError::Value`] like any value that cannot cross.

use std::borrow::Cow;
use std::sync::Arc;

use crate::change::{Cell, OldRow, Row, RowChange, TableId, TableSchema};
use crate::config::{Mapping, OnError, Strategy};
use crate::convert::{convert, ConvertError};
use crate::expr::{self, ExprKind, Expression, RowVars};
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
    /// One value cannot be written to the target column, or an expression failed on the
    /// row: dead-letter the row.
    #[error(transparent)]
    Value(#[from] ValueError),
}

/// Why one row cannot cross (a definite error for that row only).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValueError {
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// A `where` filter or a `transform` failed on this row (a type error, a missing key).
    #[error(
        "Mapping {mapping:?}: the {what} `{expression}` failed on this row: {reason}; \
         fix the expression in the config (or the row), then run `tandem dead-letters retry`"
    )]
    Expression {
        mapping: String,
        /// `where filter of retail`, `transform of column "email" (to inventory)`.
        what: String,
        expression: String,
        reason: String,
    },
}

impl From<ConvertError> for MapError {
    fn from(e: ConvertError) -> Self {
        MapError::Value(ValueError::Convert(e))
    }
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
    /// The source side's `where` filter.
    filter: Option<Expression>,
    /// Per target column: the `transform` computing the value written to it.
    transforms: Vec<Option<Expression>>,
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
        let mut transforms = Vec::new();
        // Config validation compiled these already; failing here means the config changed
        // under a running mapping, which only a restart with a valid config fixes.
        let compile = |src: &str, kind: ExprKind, what: String| {
            expr::compile(src, kind).map_err(|e| {
                drift(
                    format!("the {what} `{src}` does not compile: {}", e.message),
                    e.fix,
                )
            })
        };
        for col in &mapping.columns {
            let (Some(src), Some(dst)) =
                (col.name_on(source_endpoint), col.name_on(target_endpoint))
            else {
                continue;
            };
            transforms.push(
                col.transform
                    .get(target_endpoint)
                    .map(|t| {
                        compile(
                            t,
                            ExprKind::Transform,
                            format!("transform of column {dst:?}"),
                        )
                    })
                    .transpose()?,
            );
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
        let filter = mapping
            .sides
            .get(source_endpoint)
            .and_then(|s| s.filter.as_deref())
            .map(|f| {
                compile(
                    f,
                    ExprKind::Filter,
                    format!("where filter of {source_endpoint}"),
                )
            })
            .transpose()?;
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
            filter,
            transforms,
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

    fn expr_error(&self, what: String, e: &Expression, reason: expr::EvalError) -> MapError {
        MapError::Value(ValueError::Expression {
            mapping: self.mapping.clone(),
            what,
            expression: e.source().to_owned(),
            reason: reason.0,
        })
    }

    /// Whether a source row image passes the source side's `where` filter (always, without
    /// one): rows that do not pass never cross, which `tandem verify` needs to know too.
    pub fn passes_filter(&self, schema: &TableSchema, row: &Row) -> Result<bool, MapError> {
        let Some(f) = &self.filter else {
            return Ok(true);
        };
        f.matches(&RowVars::new(schema, row))
            .map_err(|e| self.expr_error(format!("where filter of {}", self.source_endpoint), f, e))
    }

    fn map_row(
        &self,
        idx: &[usize],
        schema: &TableSchema,
        row: &Row,
    ) -> Result<TargetRow, MapError> {
        let mut out = Vec::with_capacity(idx.len());
        // `row` for the transforms, built once per image and only when one needs it.
        let mut vars: Option<RowVars> = None;
        for (t, &s) in idx.iter().enumerate() {
            let Some((name, ty)) = self.target.columns.get(t) else {
                return Err(MapError::Drift {
                    mapping: self.mapping.clone(),
                    what: "a mapped column has no target column".into(),
                    fix: "report this as a bug in tandem".into(),
                });
            };
            let transform = self.transforms.get(t).and_then(Option::as_ref);
            match (row.get(s), transform) {
                (Some(Cell::Value(v)), Some(e)) => {
                    let vars = vars.get_or_insert_with(|| RowVars::new(schema, row));
                    let computed = e.transform(v, vars, ty).map_err(|r| {
                        self.expr_error(
                            format!("transform of column {name:?} (to {})", self.target_endpoint),
                            e,
                            r,
                        )
                    })?;
                    out.push(Some(convert(name, &computed, ty)?));
                }
                (Some(Cell::Value(v)), None) => out.push(Some(convert(name, v, ty)?)),
                (Some(Cell::Unchanged), _) => out.push(None),
                (None, _) => {
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

    /// Map one source change, ignoring the `where` filter: for callers that hold a row
    /// already known to cross (`tandem verify`, dead-letter retry).
    pub fn map(
        &mut self,
        schema: &Arc<TableSchema>,
        change: &RowChange,
    ) -> Result<TargetChange, MapError> {
        let idx = self.indexes(schema)?;
        match change {
            RowChange::Insert { new } => Ok(TargetChange::Insert {
                after: self.map_row(&idx, schema, new)?,
            }),
            RowChange::Update { old, new } => {
                let new = fill_unchanged(new, old);
                self.map_update(&idx, schema, old, &new)
            }
            RowChange::Delete { old } => self.map_delete(&idx, schema, old),
        }
    }

    /// Map one source change through the source side's `where` filter: `None` when the
    /// row stays on its side. An update is judged on both images:
    ///
    /// | new image passes | old image passes | on the target |
    /// |---|---|---|
    /// | yes | yes | update |
    /// | yes | no | insert (the row entered the filter) |
    /// | no | yes | delete (the row left it) |
    /// | no | no | nothing |
    ///
    /// Without a full old image the old side cannot be judged: a passing new image is an
    /// update, a failing one deletes by key (a `delete_missing` if the target never had
    /// it). A delete without a full old image is passed on for the same reason.
    pub fn map_filtered(
        &mut self,
        schema: &Arc<TableSchema>,
        change: &RowChange,
    ) -> Result<Option<TargetChange>, MapError> {
        if self.filter.is_none() {
            return self.map(schema, change).map(Some);
        }
        let idx = self.indexes(schema)?;
        match change {
            RowChange::Insert { new } => {
                if !self.passes_filter(schema, new)? {
                    return Ok(None);
                }
                Ok(Some(TargetChange::Insert {
                    after: self.map_row(&idx, schema, new)?,
                }))
            }
            RowChange::Update { old, new } => {
                let new = fill_unchanged(new, old);
                let new_passes = self.passes_filter(schema, &new)?;
                let old_passes = match old {
                    OldRow::Full(r) => Some(self.passes_filter(schema, r)?),
                    OldRow::KeyOnly(_) | OldRow::Missing => None,
                };
                match (new_passes, old_passes) {
                    (true, Some(true) | None) => self.map_update(&idx, schema, old, &new).map(Some),
                    (true, Some(false)) => Ok(Some(TargetChange::Insert {
                        after: self.map_row(&idx, schema, &new)?,
                    })),
                    (false, Some(true)) => match old {
                        OldRow::Full(r) => Ok(Some(TargetChange::Delete {
                            before: self.map_row(&idx, schema, r)?,
                            full: true,
                        })),
                        OldRow::KeyOnly(_) | OldRow::Missing => Ok(None),
                    },
                    (false, Some(false)) => Ok(None),
                    (false, None) => {
                        // The key is in the key-only image, or unchanged in the new one.
                        let key_row = match old {
                            OldRow::KeyOnly(r) => r,
                            OldRow::Full(_) | OldRow::Missing => &new,
                        };
                        Ok(Some(TargetChange::Delete {
                            before: self.map_row(&idx, schema, key_row)?,
                            full: false,
                        }))
                    }
                }
            }
            RowChange::Delete {
                old: OldRow::Full(r),
            } if !self.passes_filter(schema, r)? => Ok(None),
            RowChange::Delete { old } => self.map_delete(&idx, schema, old).map(Some),
        }
    }

    fn map_update(
        &self,
        idx: &[usize],
        schema: &TableSchema,
        old: &OldRow,
        new: &Row,
    ) -> Result<TargetChange, MapError> {
        let after = self.map_row(idx, schema, new)?;
        let before = match old {
            OldRow::Full(r) => Some(self.map_row(idx, schema, r)?),
            OldRow::KeyOnly(_) | OldRow::Missing => None,
        };
        Ok(TargetChange::Update { before, after })
    }

    fn map_delete(
        &self,
        idx: &[usize],
        schema: &TableSchema,
        old: &OldRow,
    ) -> Result<TargetChange, MapError> {
        match old {
            OldRow::Full(r) => Ok(TargetChange::Delete {
                before: self.map_row(idx, schema, r)?,
                full: true,
            }),
            OldRow::KeyOnly(r) => Ok(TargetChange::Delete {
                before: self.map_row(idx, schema, r)?,
                full: false,
            }),
            OldRow::Missing => Err(MapError::Drift {
                mapping: self.mapping.clone(),
                what: format!("a delete on {} arrived without its key", self.source_table),
                fix: format!(
                    "run ALTER TABLE {} REPLICA IDENTITY FULL",
                    self.source_table
                ),
            }),
        }
    }
}

/// The new image with every unchanged TOAST value taken from the old image, which carries
/// it: filters and transforms then see the whole row, and the target gets the value too.
fn fill_unchanged<'a>(new: &'a Row, old: &OldRow) -> Cow<'a, Row> {
    let OldRow::Full(old) = old else {
        return Cow::Borrowed(new);
    };
    if !new.0.iter().any(|c| matches!(c, Cell::Unchanged)) {
        return Cow::Borrowed(new);
    }
    Cow::Owned(Row(new
        .0
        .iter()
        .enumerate()
        .map(|(i, c)| match (c, old.get(i)) {
            (Cell::Unchanged, Some(o)) => o.clone(),
            (c, _) => c.clone(),
        })
        .collect()))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use bigdecimal::BigDecimal;

    use super::*;
    use crate::change::ColumnSchema;
    use crate::config::Config;

    /// The demo's sales mapping: shop order lines flow to the inventory's sales table.
    fn config(filter: &str, email_transform: &str) -> Config {
        let text = format!(
            r#"
[endpoints.inventory]
kind = "postgres"
url = "postgres://tandem@127.0.0.1/inventory"
[endpoints.retail]
kind = "mysql"
url = "mysql://tandem@127.0.0.1/retail"

[[mappings]]
name = "sales"
direction = "retail->inventory"
inventory = {{ table = "public.sales", key = ["id"] }}
retail = {{ table = "order_lines", key = ["line_id"]{filter} }}
columns = [
  {{ inventory = "id", retail = "line_id" }},
  {{ inventory = "qty", retail = "qty" }},
  {{ inventory = "amount", retail = "amount" }},
  {{ inventory = "customer_email", retail = "email"{email_transform} }},
]
"#
        );
        Config::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn schema() -> Arc<TableSchema> {
        let col = |name: &str, column_type: ColumnType| ColumnSchema {
            name: name.into(),
            column_type,
            native_type: String::new(),
            nullable: true,
        };
        Arc::new(TableSchema {
            table: TableId::new("retail", "order_lines"),
            columns: vec![
                col(
                    "line_id",
                    ColumnType::Int {
                        bytes: 8,
                        unsigned: false,
                    },
                ),
                col(
                    "qty",
                    ColumnType::Int {
                        bytes: 4,
                        unsigned: false,
                    },
                ),
                col(
                    "amount",
                    ColumnType::Decimal {
                        precision: Some(12),
                        scale: Some(2),
                    },
                ),
                col("email", text()),
                // Not mapped, but filters may read it.
                col("channel", text()),
            ],
            key: vec![0],
        })
    }

    fn text() -> ColumnType {
        ColumnType::Text {
            max_chars: Some(255),
            allows_nul: false,
        }
    }

    fn mapper(filter: &str, email_transform: &str) -> RowMapper {
        let cfg = config(filter, email_transform);
        let types = |c: &str| match c {
            "id" => Some(ColumnType::Int {
                bytes: 8,
                unsigned: false,
            }),
            "qty" => Some(ColumnType::Int {
                bytes: 4,
                unsigned: false,
            }),
            "amount" => Some(ColumnType::Decimal {
                precision: Some(12),
                scale: Some(2),
            }),
            "customer_email" => Some(text()),
            _ => None,
        };
        RowMapper::new(
            &cfg.mappings[0],
            "retail",
            "inventory",
            TableId::new("retail", "order_lines"),
            TableId::new("public", "sales"),
            &types,
            &cfg.priority(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn line(id: i64, qty: i64, email: &str) -> Row {
        Row::from_values([
            Value::Int(id),
            Value::Int(qty),
            Value::Decimal(BigDecimal::from_str("19.90").expect("decimal")),
            Value::Text(email.into()),
            Value::Text("web".into()),
        ])
    }

    fn target(id: i64, qty: i64, email: &str) -> TargetRow {
        vec![
            Some(Value::Int(id)),
            Some(Value::Int(qty)),
            Some(Value::Decimal(
                BigDecimal::from_str("19.90").expect("decimal"),
            )),
            Some(Value::Text(email.into())),
        ]
    }

    const QTY_POSITIVE: &str = r#", where = "row.qty > 0 && row.channel == 'web'""#;

    fn update(old: Row, new: Row) -> RowChange {
        RowChange::Update {
            old: OldRow::Full(old),
            new,
        }
    }

    #[test]
    fn filter_keeps_failing_inserts_and_deletes_at_home() {
        let mut m = mapper(QTY_POSITIVE, "");
        let s = schema();
        let ins = |r| RowChange::Insert { new: r };
        assert_eq!(
            m.map_filtered(&s, &ins(line(1, 2, "a@x.org")))
                .expect("maps"),
            Some(TargetChange::Insert {
                after: target(1, 2, "a@x.org")
            })
        );
        assert_eq!(
            m.map_filtered(&s, &ins(line(2, 0, "a@x.org")))
                .expect("maps"),
            None
        );
        let del = |r| RowChange::Delete {
            old: OldRow::Full(r),
        };
        assert_eq!(
            m.map_filtered(&s, &del(line(2, 0, "a@x.org")))
                .expect("maps"),
            None
        );
        assert_eq!(
            m.map_filtered(&s, &del(line(1, 2, "a@x.org")))
                .expect("maps"),
            Some(TargetChange::Delete {
                before: target(1, 2, "a@x.org"),
                full: true
            })
        );
        // `map` is the unfiltered view (verify, dead-letter retry).
        assert!(matches!(
            m.map(&s, &ins(line(2, 0, "a@x.org"))),
            Ok(TargetChange::Insert { .. })
        ));
    }

    #[test]
    fn update_entering_or_leaving_the_filter_becomes_insert_or_delete() {
        let mut m = mapper(QTY_POSITIVE, "");
        let s = schema();
        let e = "a@x.org";
        // Both pass: an update.
        assert_eq!(
            m.map_filtered(&s, &update(line(1, 1, e), line(1, 3, e)))
                .expect("maps"),
            Some(TargetChange::Update {
                before: Some(target(1, 1, e)),
                after: target(1, 3, e)
            })
        );
        // Entered the filter: the target has never seen it.
        assert_eq!(
            m.map_filtered(&s, &update(line(1, 0, e), line(1, 3, e)))
                .expect("maps"),
            Some(TargetChange::Insert {
                after: target(1, 3, e)
            })
        );
        // Left the filter: the target must forget it.
        assert_eq!(
            m.map_filtered(&s, &update(line(1, 3, e), line(1, 0, e)))
                .expect("maps"),
            Some(TargetChange::Delete {
                before: target(1, 3, e),
                full: true
            })
        );
        // Neither passes.
        assert_eq!(
            m.map_filtered(&s, &update(line(1, 0, e), line(1, -1, e)))
                .expect("maps"),
            None
        );
    }

    #[test]
    fn update_without_old_image_is_judged_on_the_new_one() {
        let mut m = mapper(QTY_POSITIVE, "");
        let s = schema();
        let e = "a@x.org";
        let missing = |new| RowChange::Update {
            old: OldRow::Missing,
            new,
        };
        assert_eq!(
            m.map_filtered(&s, &missing(line(1, 3, e))).expect("maps"),
            Some(TargetChange::Update {
                before: None,
                after: target(1, 3, e)
            })
        );
        // Failing now, maybe passing before: delete by key.
        assert_eq!(
            m.map_filtered(&s, &missing(line(1, 0, e))).expect("maps"),
            Some(TargetChange::Delete {
                before: target(1, 0, e),
                full: false
            })
        );
    }

    #[test]
    fn unchanged_toast_value_is_seen_by_the_filter_and_written() {
        let mut m = mapper(r#", where = "row.email != 'hidden@x.org'""#, "");
        let s = schema();
        let mut new = line(1, 5, "");
        new.0[3] = Cell::Unchanged;
        let old = line(1, 4, "hidden@x.org");
        assert_eq!(
            m.map_filtered(&s, &update(old, new.clone())).expect("maps"),
            None
        );
        let old = line(1, 4, "shown@x.org");
        assert_eq!(
            m.map_filtered(&s, &update(old.clone(), new)).expect("maps"),
            Some(TargetChange::Update {
                before: Some(target(1, 4, "shown@x.org")),
                after: target(1, 5, "shown@x.org")
            })
        );
    }

    #[test]
    fn transform_masks_on_the_way() {
        let mut m = mapper("", r#", transform = { inventory = "mask_email(value)" }"#);
        let s = schema();
        let got = m
            .map_filtered(
                &s,
                &RowChange::Insert {
                    new: line(7, 1, "jane.doe@example.com"),
                },
            )
            .expect("maps");
        assert_eq!(
            got,
            Some(TargetChange::Insert {
                after: target(7, 1, "j***@example.com")
            })
        );
    }

    #[test]
    fn decimal_through_a_passthrough_transform_is_exact() {
        let mut m = mapper("", "");
        // Put a passthrough transform on `amount` by hand-building the expression list.
        m.transforms[2] = Some(expr::compile("value", ExprKind::Transform).expect("compiles"));
        let s = schema();
        let mut row = line(1, 1, "a@x.org");
        row.0[2] = Cell::Value(Value::Decimal(
            BigDecimal::from_str("1234567890.10").expect("d"),
        ));
        let got = m.map(&s, &RowChange::Insert { new: row }).expect("maps");
        let TargetChange::Insert { after } = got else {
            panic!("not an insert: {got:?}")
        };
        assert_eq!(
            after[2],
            Some(Value::Decimal(
                BigDecimal::from_str("1234567890.10").expect("d")
            ))
        );
        // A transform whose result does not fit the column fails like any value would.
        m.transforms[2] =
            Some(expr::compile("'12345678901234.5'", ExprKind::Transform).expect("compiles"));
        let err = m
            .map(
                &s,
                &RowChange::Insert {
                    new: line(1, 1, "a@x.org"),
                },
            )
            .unwrap_err();
        assert!(
            matches!(err, MapError::Value(ValueError::Convert(_))),
            "{err}"
        );
    }

    #[test]
    fn failing_expression_is_a_value_error_naming_mapping_column_and_expression() {
        let mut m = mapper("", r#", transform = { inventory = "mask_email(value)" }"#);
        let s = schema();
        let mut row = line(1, 1, "");
        row.0[3] = Cell::Value(Value::Int(42));
        let err = m
            .map_filtered(&s, &RowChange::Insert { new: row })
            .unwrap_err();
        let MapError::Value(ValueError::Expression { .. }) = &err else {
            panic!("expected an expression error, got {err:?}")
        };
        let msg = err.to_string();
        for part in [
            "Mapping \"sales\"",
            "column \"customer_email\"",
            "`mask_email(value)`",
            "no matching overload",
        ] {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
        // A filter that fails is reported the same way.
        let mut m = mapper(r#", where = "row.qty > 'x'""#, "");
        let err = m
            .map_filtered(
                &s,
                &RowChange::Insert {
                    new: line(1, 1, "a@x.org"),
                },
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("where filter of retail") && msg.contains("`row.qty > 'x'`"),
            "{msg}"
        );
    }
}
