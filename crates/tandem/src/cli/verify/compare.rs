//! Comparing one row of each side under a mapping, value by value.
//!
//! Rows arrive in each side's own types. The row of the side the mapping flows *from* is
//! converted through the mapping's [`RowMapper`] into the other side's types — the same
//! conversion replication applies — and compared column by column with
//! [`Value::same_as`]. A value that cannot cross at all (too long, out of range) is a
//! difference of its own kind: replication would have dead-lettered it.

use std::sync::Arc;

use tandem_core::change::{ColumnSchema, Row, RowChange, TableSchema};
use tandem_core::config::catalog::Catalog;
use tandem_core::config::{Direction, Mapping};
use tandem_core::mapper::{MapError, RowMapper, TargetChange};
use tandem_core::value::Value;
use tandem_core::verify::{self, Chunking, KeyedRow, VerifyTable};

/// A mapping prepared for comparison: both sides' tables and a mapper each way.
pub struct Plan {
    pub mapping: Mapping,
    pub endpoints: [String; 2],
    pub tables: [VerifyTable; 2],
    /// `mappers[s]` converts rows of side `s` into the other side's types.
    pub mappers: [RowMapper; 2],
    schemas: [Arc<TableSchema>; 2],
    /// The side whose types rows are compared in (the side the mapping flows to).
    pub to: usize,
    /// Per side: hashed in tandem (a filter or transforms apply) rather than in its database.
    pub tandem: [bool; 2],
    /// Columns both sides map, first in every row; a side hashed in tandem also reads the
    /// table's other columns, after these.
    pub mapped: usize,
}

/// Why two rows with one key are not equal.
#[derive(Clone, Debug, PartialEq)]
pub enum Diff {
    /// Only this side holds the key.
    OnlyIn(usize),
    /// Both hold it; these columns (indexes into the plan's columns) differ.
    Columns(Vec<usize>),
    /// A value of the `from` side cannot be written to the other side's column.
    Unconvertible(String),
}

/// One differing key, with both sides' rows in their own types.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyDiff {
    pub key: String,
    pub rows: [Option<Vec<Value>>; 2],
    pub diff: Diff,
}

impl Plan {
    /// Prepare `mapping` between `endpoints` (in config order) from both catalogs.
    pub fn new(
        mapping: &Mapping,
        endpoints: [&str; 2],
        tables: [tandem_core::change::TableId; 2],
        catalogs: [&dyn Catalog; 2],
    ) -> Result<Plan, String> {
        let to = match &mapping.direction {
            Direction::OneWay { to, .. } if to == endpoints[0] => 0,
            _ => 1,
        };
        let from = 1 - to;
        let has_filter = |s: usize| {
            mapping.direction.flows(endpoints[s], endpoints[1 - s])
                && mapping
                    .sides
                    .get(endpoints[s])
                    .is_some_and(|side| side.filter.is_some())
        };
        let mut tandem = [false; 2];
        tandem[from] = has_filter(from)
            || mapping
                .columns
                .iter()
                .any(|c| c.transform.contains_key(endpoints[to]));
        tandem[to] = has_filter(to);
        let mut vts = Vec::new();
        let mut schemas = Vec::new();
        for (s, ep) in endpoints.iter().enumerate() {
            let id = &tables[s];
            let cat = catalogs[s]
                .table(id)
                .ok_or_else(|| format!("table {id} does not exist on {ep}; run tandem check"))?;
            let mut columns = Vec::new();
            let mut schema_cols = Vec::new();
            for col in &mapping.columns {
                let (Some(a), Some(b)) = (col.name_on(endpoints[0]), col.name_on(endpoints[1]))
                else {
                    continue;
                };
                let name = if s == 0 { a } else { b };
                let c = cat
                    .schema
                    .column_index(name)
                    .and_then(|i| cat.schema.columns.get(i))
                    .ok_or_else(|| {
                        format!("column {name:?} does not exist in {id}; run tandem check")
                    })?;
                columns.push((name.to_owned(), c.column_type.clone()));
                schema_cols.push(ColumnSchema {
                    name: name.to_owned(),
                    ..c.clone()
                });
            }
            if tandem[s] {
                for c in &cat.schema.columns {
                    if !columns.iter().any(|(n, _)| *n == c.name) {
                        columns.push((c.name.clone(), c.column_type.clone()));
                        schema_cols.push(c.clone());
                    }
                }
            }
            let key_names = mapping
                .sides
                .get(*ep)
                .map(|side| side.key.clone())
                .unwrap_or_default();
            let key: Vec<usize> = key_names
                .iter()
                .filter_map(|k| columns.iter().position(|(n, _)| n == k))
                .collect();
            if key.is_empty() || key.len() != key_names.len() {
                return Err(format!("the key of {id} is not among the mapped columns"));
            }
            schemas.push(Arc::new(TableSchema {
                table: id.clone(),
                columns: schema_cols,
                key: key.clone(),
            }));
            vts.push(VerifyTable {
                table: id.clone(),
                columns,
                key,
            });
        }
        let mut mappers = Vec::new();
        for s in 0..2 {
            let o = 1 - s;
            let target_cat = catalogs[o];
            let target_id = tables[o].clone();
            let lookup = |name: &str| -> Option<tandem_core::value::ColumnType> {
                let t = target_cat.table(&target_id)?;
                let i = t.schema.column_index(name)?;
                t.schema.columns.get(i).map(|c| c.column_type.clone())
            };
            let m = RowMapper::new(
                mapping,
                endpoints[s],
                endpoints[o],
                tables[s].clone(),
                tables[o].clone(),
                &lookup,
                &endpoints,
            )
            .map_err(|e| e.to_string())?;
            mappers.push(m);
        }
        let mapped = mapping
            .columns
            .iter()
            .filter(|c| c.name_on(endpoints[0]).is_some() && c.name_on(endpoints[1]).is_some())
            .count();
        let [m0, m1]: [RowMapper; 2] = mappers
            .try_into()
            .map_err(|_| "internal error: two mappers expected".to_owned())?;
        let [t0, t1]: [VerifyTable; 2] = vts
            .try_into()
            .map_err(|_| "internal error: two tables expected".to_owned())?;
        let [s0, s1]: [Arc<TableSchema>; 2] = schemas
            .try_into()
            .map_err(|_| "internal error: two schemas expected".to_owned())?;
        Ok(Plan {
            mapping: mapping.clone(),
            endpoints: [endpoints[0].to_owned(), endpoints[1].to_owned()],
            tables: [t0, t1],
            mappers: [m0, m1],
            schemas: [s0, s1],
            to,
            tandem,
            mapped,
        })
    }

    /// Whether a row of side `s` is meant to cross: it passes `s`'s `where` filter (when
    /// the mapping flows from `s`). A filter that fails on the row counts as passing, so
    /// the row is compared and its difference shown rather than hidden.
    pub fn visible(&self, s: usize, values: &[Value]) -> bool {
        if !self.tandem[s] {
            return true;
        }
        let (Some(mapper), Some(schema)) = (self.mappers.get(s), self.schemas.get(s)) else {
            return true;
        };
        mapper
            .passes_filter(schema, &Row::from_values(values.iter().cloned()))
            .unwrap_or(true)
    }

    /// Side `s`'s mapped columns only: the table its database would hash.
    fn mapped_table(&self, s: usize) -> VerifyTable {
        let t = &self.tables[s];
        VerifyTable {
            table: t.table.clone(),
            columns: t.columns.iter().take(self.mapped).cloned().collect(),
            key: t.key.clone(),
        }
    }

    /// For a side hashed in tandem: the key text, chunk label and row hash a row of side
    /// `s` has once mapped into the compared side's types, as the other database computes
    /// them for its rows; `None` for a row the filter keeps at home. A row that cannot be
    /// mapped gets its own key's label and a hash no database row can sum to, so its chunk
    /// differs and the row is shown.
    pub fn tandem_hash(
        &mut self,
        s: usize,
        values: &[Value],
        chunking: &Chunking,
    ) -> Option<(String, String, u128)> {
        if !self.visible(s, values) {
            return None;
        }
        let (table, row) = if s == self.to {
            (self.mapped_table(s), values.to_vec())
        } else {
            match self.convert(s, values) {
                Ok(mapped) => (self.mapped_table(self.to), mapped),
                Err(_) => {
                    let table = self.mapped_table(s);
                    let key = verify::key_text(&table, values);
                    let first = table.key.first().and_then(|&i| values.get(i));
                    let label = chunking.label(&key, first)?;
                    return Some((key, label, 1 << 100));
                }
            }
        };
        let key = verify::key_text(&table, &row);
        let first = table.key.first().and_then(|&i| row.get(i));
        let label = chunking.label(&key, first)?;
        Some((key, label, u128::from(verify::row_hash(&table, &row))))
    }

    /// Convert a row of side `s` into the other side's types.
    pub fn convert(&mut self, s: usize, values: &[Value]) -> Result<Vec<Value>, String> {
        let (Some(mapper), Some(schema)) = (self.mappers.get_mut(s), self.schemas.get(s)) else {
            return Err("internal error: no such side".into());
        };
        let change = RowChange::Insert {
            new: Row::from_values(values.iter().cloned()),
        };
        match mapper.map(schema, &change) {
            Ok(TargetChange::Insert { after }) => Ok(after
                .into_iter()
                .map(|v| v.unwrap_or(Value::Null))
                .collect()),
            Ok(_) => Err("internal error: an insert mapped to another change".into()),
            Err(MapError::Value(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Compare the rows one key has on each side; `None` when they are equal.
    pub fn compare(&mut self, key: &str, rows: [Option<&KeyedRow>; 2]) -> Option<KeyDiff> {
        let owned = [
            rows[0].map(|r| r.values.clone()),
            rows[1].map(|r| r.values.clone()),
        ];
        let diff = match &owned {
            [None, None] => return None,
            [Some(_), None] => Diff::OnlyIn(0),
            [None, Some(_)] => Diff::OnlyIn(1),
            [Some(a), Some(b)] => {
                let (from_row, to_row) = if self.to == 1 { (a, b) } else { (b, a) };
                match self.convert(1 - self.to, from_row) {
                    Err(why) => Diff::Unconvertible(why),
                    Ok(mapped) => {
                        let cols: Vec<usize> = mapped
                            .iter()
                            .zip(to_row)
                            .enumerate()
                            .filter(|(_, (x, y))| !x.same_as(y))
                            .map(|(i, _)| i)
                            .collect();
                        if cols.is_empty() {
                            return None;
                        }
                        Diff::Columns(cols)
                    }
                }
            }
        };
        Some(KeyDiff {
            key: key.to_owned(),
            rows: owned,
            diff,
        })
    }

    /// Key values of `d` in side `s`'s types (from its own row, or converted from the
    /// other side's), in that side's key order; `None` if they cannot be had.
    pub fn key_on(&mut self, s: usize, d: &KeyDiff) -> Option<Vec<Value>> {
        let row = match (&d.rows[s], &d.rows[1 - s]) {
            (Some(r), _) => r.clone(),
            (None, Some(other)) => self.convert(1 - s, other).ok()?,
            (None, None) => return None,
        };
        self.tables[s]
            .key
            .iter()
            .map(|&i| row.get(i).cloned())
            .collect()
    }

    /// `{sku: "A-1"}`: the key with the first endpoint's column names.
    pub fn key_json(&self, d: &KeyDiff) -> serde_json::Map<String, serde_json::Value> {
        let row = match &d.rows {
            [Some(r), _] => r,
            [None, Some(r)] => r,
            [None, None] => return serde_json::Map::new(),
        };
        self.tables[0]
            .key
            .iter()
            .filter_map(|&i| {
                let name = self.tables[0].columns.get(i)?.0.clone();
                let v = row.get(i)?;
                Some((name, v.to_json()))
            })
            .collect()
    }

    /// A row of side `s` as `{column: value}` in that side's column names.
    pub fn row_json(&self, s: usize, row: &[Value]) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self.tables[s]
            .columns
            .iter()
            .zip(row)
            .map(|((n, _), v)| (n.clone(), v.to_json()))
            .collect();
        serde_json::Value::Object(map)
    }

    /// Notes on how this comparison is made.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for (s, e) in self.endpoints.iter().enumerate() {
            if self.tandem[s] {
                notes.push(format!(
                    "{e} rows are read through tandem (the mapping's filter/transforms apply there), not checksummed in the database: slower"
                ));
            }
        }
        if self.tables[0]
            .columns
            .iter()
            .chain(&self.tables[1].columns)
            .any(|(_, t)| matches!(t, tandem_core::value::ColumnType::Json))
        {
            notes.push(
                "JSON columns are outside the checksums: they are compared only in rows of chunks that differ otherwise"
                    .to_owned(),
            );
        }
        notes
    }
}
