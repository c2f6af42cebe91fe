//! The SQL text of the sink's statements, and the cutting of a batch into segments.
//!
//! Every statement takes one `text[]` array per column and casts in SQL, so its text
//! depends only on the table and the set of columns written: prepared once, cached by the
//! sink, reused for every batch size (see the parent module for why text and casts).

use std::collections::{BTreeMap, HashSet};

use tandem_core::error::StageError;
use tandem_core::sink::{RowWrite, TargetTable};
use tandem_core::value::Value;

use super::ColumnMeta;
use crate::ddl::quote_ident;
use crate::types::{self, oid};

/// Writes of one segment: every key occurs once, so they may run in any order.
#[derive(Default)]
pub(super) struct Segment {
    pub(super) keys: HashSet<Vec<Option<String>>>,
    pub(super) deletes: Vec<Vec<Option<String>>>,
    /// Set columns → rows of key values then set values.
    pub(super) updates: BTreeMap<Vec<usize>, Vec<Vec<Option<String>>>>,
    pub(super) inserts: Vec<Vec<Option<String>>>,
}

impl Segment {
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

pub(super) fn encode_all<'v>(values: impl IntoIterator<Item = &'v Value>) -> Vec<Option<String>> {
    values.into_iter().map(types::encode_text).collect()
}

/// Cut `writes` into segments in which no key repeats (see the module docs).
pub(super) fn segments(
    target: &TargetTable,
    writes: &[RowWrite],
) -> Result<Vec<Segment>, StageError> {
    let width = target.columns.len();
    let bad = |what: String| {
        StageError::definite(what, "report a bug: the applier built a malformed write")
    };
    let mut out: Vec<Segment> = vec![Segment::default()];
    for w in writes {
        let (keys, kind) = match w {
            RowWrite::Insert { values } => {
                if values.len() != width {
                    return Err(bad(format!(
                        "An insert into {} has {} values for {width} columns",
                        target.table,
                        values.len()
                    )));
                }
                let key = encode_all(target.key.iter().filter_map(|&i| values.get(i)));
                (vec![key], 0)
            }
            RowWrite::Update { key, columns } => {
                if key.len() != target.key.len() || columns.iter().any(|(i, _)| *i >= width) {
                    return Err(bad(format!(
                        "An update of {} does not fit its columns",
                        target.table
                    )));
                }
                let old = encode_all(key);
                // A key change also claims the new key.
                let mut new = old.clone();
                for (j, &k) in target.key.iter().enumerate() {
                    if let (Some((_, v)), Some(slot)) =
                        (columns.iter().find(|(i, _)| *i == k), new.get_mut(j))
                    {
                        *slot = types::encode_text(v);
                    }
                }
                (
                    if new == old {
                        vec![old]
                    } else {
                        vec![old, new]
                    },
                    1,
                )
            }
            RowWrite::Delete { key } => {
                if key.len() != target.key.len() {
                    return Err(bad(format!(
                        "A delete from {} has {} key values",
                        target.table,
                        key.len()
                    )));
                }
                (vec![encode_all(key)], 2)
            }
        };
        let clash = out
            .last()
            .is_some_and(|s| keys.iter().any(|k| s.keys.contains(k)));
        if clash {
            out.push(Segment::default());
        }
        let Some(seg) = out.last_mut() else { continue };
        match (w, kind) {
            (RowWrite::Insert { values }, _) => seg.inserts.push(encode_all(values)),
            (RowWrite::Update { key, columns }, _) => {
                let mut sorted: Vec<&(usize, Value)> = columns.iter().collect();
                sorted.sort_by_key(|(i, _)| *i);
                sorted.dedup_by_key(|(i, _)| *i);
                let set: Vec<usize> = sorted.iter().map(|(i, _)| *i).collect();
                let mut row = encode_all(key);
                row.extend(sorted.iter().map(|(_, v)| types::encode_text(v)));
                seg.updates.entry(set).or_default().push(row);
            }
            (RowWrite::Delete { key }, _) => seg.deletes.push(encode_all(key)),
        }
        seg.keys.extend(keys);
    }
    out.retain(|s| !s.is_empty());
    Ok(out)
}

/// Rows → one array per column (what `unnest` takes).
pub(super) fn columnar(rows: &[Vec<Option<String>>], width: usize) -> Vec<Vec<Option<String>>> {
    let mut arrays: Vec<Vec<Option<String>>> =
        (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
    for row in rows {
        for (array, cell) in arrays.iter_mut().zip(row.iter()) {
            array.push(cell.clone());
        }
    }
    arrays
}

/// `unnest($1::text[], …, $n::text[]) AS v(p0, …, pn-1)`.
pub(super) fn unnest(width: usize) -> String {
    let arrays: Vec<String> = (1..=width).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (0..width).map(|i| format!("p{i}")).collect();
    format!("unnest({}) AS v({})", arrays.join(", "), names.join(", "))
}

/// `d.k1 = v.p0::type AND …` for the key columns, which come first in the arrays.
pub(super) fn key_match(cols: &[(String, ColumnMeta)], key: &[usize]) -> String {
    let parts: Vec<String> = key
        .iter()
        .enumerate()
        .filter_map(|(j, &k)| {
            let (name, m) = cols.get(k)?;
            Some(format!("d.{} = v.p{j}::{}", quote_ident(name), m.cast))
        })
        .collect();
    parts.join(" AND ")
}

/// `col = v.p<first + j>::type` for each column `set[j]`.
pub(super) fn assignments(
    cols: &[(String, ColumnMeta)],
    set: &[usize],
    first: usize,
) -> Vec<String> {
    set.iter()
        .enumerate()
        .filter_map(|(j, &c)| {
            let (name, m) = cols.get(c)?;
            Some(format!(
                "{} = v.p{}::{}",
                quote_ident(name),
                first + j,
                m.cast
            ))
        })
        .collect()
}

pub(super) fn column_list(cols: &[(String, ColumnMeta)]) -> String {
    cols.iter()
        .map(|(n, _)| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ON CONFLICT (key) DO NOTHING`: the applier inserts only keys it has just read as
/// absent, so a conflict means a concurrent writer inserted the key in between. The sink
/// counts the rows inserted and reports the difference as a transient error: the applier
/// retries, reads the row that appeared and resolves the two as `insert_exists` instead of
/// overwriting one with the other.
pub(super) fn on_conflict_do_nothing(
    target: &TargetTable,
    cols: &[(String, ColumnMeta)],
) -> String {
    let key: Vec<String> = target
        .key
        .iter()
        .filter_map(|&k| cols.get(k))
        .map(|(n, _)| quote_ident(n))
        .collect();
    format!("ON CONFLICT ({}) DO NOTHING", key.join(", "))
}

/// The select expression that reads a column in its type's text *output* format, the
/// format pgoutput sends and [`types::decode_text`] reads. `::text` is that for most types,
/// but not all: `boolean::text` is `true` (output `t`), `char(n)::text` drops the padding.
/// `format('%s', …)` calls the output function, and keeps NULL apart from `''`.
pub(super) fn read_expr(name: &str, type_oid: u32) -> String {
    let c = format!("d.{}", quote_ident(name));
    match type_oid {
        oid::INT2
        | oid::INT4
        | oid::INT8
        | oid::TEXT
        | oid::VARCHAR
        | oid::NUMERIC
        | oid::FLOAT4
        | oid::FLOAT8
        | oid::DATE
        | oid::TIME
        | oid::TIMESTAMP
        | oid::TIMESTAMPTZ
        | oid::UUID
        | oid::JSON
        | oid::JSONB
        | oid::BYTEA => format!("{c}::text"),
        _ => format!("CASE WHEN {c} IS NULL THEN NULL ELSE format('%s', {c}) END"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::change::TableId;
    use tandem_core::value::ColumnType;

    fn items() -> TargetTable {
        let int = ColumnType::Int {
            bytes: 4,
            unsigned: false,
        };
        TargetTable {
            table: TableId::new("public", "items"),
            columns: vec![
                ("id".into(), int.clone()),
                ("qty".into(), int.clone()),
                ("name".into(), int),
            ],
            key: vec![0],
        }
    }

    #[test]
    fn a_repeated_key_starts_a_new_segment() {
        let writes = vec![
            RowWrite::Insert {
                values: vec![Value::Int(1), Value::Int(5), Value::Null],
            },
            RowWrite::Insert {
                values: vec![Value::Int(2), Value::Int(5), Value::Null],
            },
            RowWrite::Update {
                key: vec![Value::Int(1)],
                columns: vec![(1, Value::Int(6))],
            },
            RowWrite::Delete {
                key: vec![Value::Int(3)],
            },
        ];
        let segs = segments(&items(), &writes).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].inserts.len(), 2);
        assert_eq!(segs[1].updates.get(&vec![1]).map(Vec::len), Some(1));
        assert_eq!(segs[1].deletes.len(), 1);
    }

    #[test]
    fn a_key_change_claims_both_keys() {
        let writes = vec![
            RowWrite::Update {
                key: vec![Value::Int(1)],
                columns: vec![(0, Value::Int(9))],
            },
            RowWrite::Insert {
                values: vec![Value::Int(9), Value::Int(5), Value::Null],
            },
        ];
        assert_eq!(segments(&items(), &writes).unwrap().len(), 2);
    }

    #[test]
    fn malformed_writes_are_refused() {
        let writes = vec![RowWrite::Insert {
            values: vec![Value::Int(1)],
        }];
        assert!(segments(&items(), &writes).is_err());
        let writes = vec![RowWrite::Update {
            key: vec![Value::Int(1)],
            columns: vec![(7, Value::Int(1))],
        }];
        assert!(segments(&items(), &writes).is_err());
    }

    #[test]
    fn upsert_of_a_key_only_table_does_nothing_on_conflict() {
        let cols = vec![(
            "id".to_owned(),
            ColumnMeta {
                type_oid: oid::INT4,
                cast: "integer".into(),
            },
        )];
        let t = TargetTable {
            table: TableId::new("s", "t"),
            columns: vec![("id".into(), ColumnType::Bool)],
            key: vec![0],
        };
        assert_eq!(
            on_conflict_do_nothing(&t, &cols),
            "ON CONFLICT (\"id\") DO NOTHING"
        );
    }
}
