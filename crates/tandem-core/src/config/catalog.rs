//! Checking mappings against the databases' catalogs.
//!
//! Endpoint crates read their catalog into [`CatalogTable`]s (columns with canonical types,
//! primary and unique keys); this module judges a mapping against them with the same
//! errors the DBA sees everywhere: the field path, the constraint, and the fix — "did you
//! mean" for misspelled tables and columns, the `ALTER TABLE` for a missing key, the reason
//! two column types cannot carry each other's values.

use super::error::{suggest, ConfigError};
use super::mapping::{Mapping, Strategy};
use crate::change::{TableId, TableSchema};
use crate::value::ColumnType;

/// A table as an endpoint's catalog describes it.
#[derive(Clone, Debug)]
pub struct CatalogTable {
    pub schema: TableSchema,
    /// Column names of the primary key and of each unique key.
    pub unique_keys: Vec<Vec<String>>,
}

/// Look up tables of one endpoint.
pub trait Catalog {
    fn table(&self, id: &TableId) -> Option<&CatalogTable>;
    /// Every table name, for suggestions.
    fn table_names(&self) -> Vec<String>;
    /// The schema a table name without one belongs to.
    fn default_schema(&self) -> &str;
}

/// Result of checking one mapping against both catalogs: the tables, in endpoint order,
/// when they were found.
pub fn check_mapping(
    mapping: &Mapping,
    index: usize,
    catalogs: &[(&str, &dyn Catalog)],
) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let path = format!("mappings[{index}]");
    let mut found: Vec<(&str, &CatalogTable)> = Vec::new();
    for (ep, cat) in catalogs {
        let Some(side) = mapping.sides.get(*ep) else {
            continue;
        };
        let id = TableId::parse(&side.table, cat.default_schema());
        let Some(table) = cat.table(&id) else {
            let names = cat.table_names();
            let fix = match suggest(&id.to_string(), names.iter().map(String::as_str))
                .or_else(|| suggest(&id.name, names.iter().map(String::as_str)))
            {
                Some(s) => format!("did you mean \"{s}\"?"),
                None => format!("create the table on {ep} or correct the name"),
            };
            errs.push(ConfigError::new(
                format!("{path}.{ep}.table"),
                format!("table {id} does not exist on {ep}"),
                fix,
            ));
            continue;
        };
        let names: Vec<&str> = table
            .schema
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        for (i, col) in mapping.columns.iter().enumerate() {
            let Some(n) = col.name_on(ep) else { continue };
            if table.schema.column_index(n).is_none() {
                let fix = match suggest(n, names.iter().copied()) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => format!("the columns of {id} are: {}", names.join(", ")),
                };
                errs.push(ConfigError::new(
                    format!("{path}.columns[{i}].{ep}"),
                    format!("column {n:?} does not exist in {ep}.{}", id.name),
                    fix,
                ));
            }
        }
        let mut key: Vec<&str> = side.key.iter().map(String::as_str).collect();
        key.sort_unstable();
        let is_unique = table.unique_keys.iter().any(|u| {
            let mut u: Vec<&str> = u.iter().map(String::as_str).collect();
            u.sort_unstable();
            u == key
        });
        if !is_unique && key.iter().all(|k| table.schema.column_index(k).is_some()) {
            errs.push(ConfigError::new(
                format!("{path}.{ep}.key"),
                format!(
                    "({}) is not a primary or unique key of {id}",
                    side.key.join(", ")
                ),
                format!(
                    "run ALTER TABLE {id} ADD UNIQUE ({}); or name the table's primary key",
                    side.key.join(", ")
                ),
            ));
        }
        found.push((ep, table));
    }
    if let [(a, ta), (b, tb)] = found[..] {
        for (i, col) in mapping.columns.iter().enumerate() {
            let (Some(na), Some(nb)) = (col.name_on(a), col.name_on(b)) else {
                continue;
            };
            let (Some(ca), Some(cb)) = (
                ta.schema
                    .column_index(na)
                    .and_then(|x| ta.schema.columns.get(x)),
                tb.schema
                    .column_index(nb)
                    .and_then(|x| tb.schema.columns.get(x)),
            ) else {
                continue;
            };
            for (from, to, cf, ct) in [(a, b, ca, cb), (b, a, cb, ca)] {
                if !mapping.direction.flows(from, to) || col.transform.contains_key(to) {
                    continue;
                }
                if let Err(why) = compatible(&cf.column_type, &ct.column_type) {
                    errs.push(ConfigError::new(
                        format!("{path}.columns[{i}]"),
                        format!(
                            "{from}.{} ({}) cannot be written to {to}.{} ({}): {why}",
                            cf.name, cf.native_type, ct.name, ct.native_type
                        ),
                        format!("change one column's type, or add transform = {{ {to} = \"…\" }}"),
                    ));
                }
            }
            let strategy = mapping.strategy_for(col);
            let numeric = matches!(strategy, Strategy::Delta | Strategy::Max | Strategy::Min);
            if numeric && !mapping.is_key(col) {
                for c in [ca, cb] {
                    let ordered = c.column_type.is_numeric()
                        || (!matches!(strategy, Strategy::Delta) && c.column_type.is_temporal());
                    if !ordered {
                        errs.push(ConfigError::new(
                            format!("{path}.columns[{i}].conflict"),
                            format!(
                                "{strategy} needs a numeric column, but {} is {}",
                                c.name, c.native_type
                            ),
                            "use last_writer_wins or prefer:<endpoint> for this column",
                        ));
                    }
                }
            }
        }
        if let Some(ts) = mapping.lww_column() {
            for (ep, t) in [(a, ta), (b, tb)] {
                let Some(c) = ts
                    .name_on(ep)
                    .and_then(|n| t.schema.column_index(n))
                    .and_then(|x| t.schema.columns.get(x))
                else {
                    continue;
                };
                if !c.column_type.is_temporal() && !c.column_type.is_numeric() {
                    errs.push(ConfigError::new(
                        format!("{path}.conflict.column"),
                        format!("last_writer_wins compares {ep}.{}, which is {} and has no order in time", c.name, c.native_type),
                        "name a timestamp (or version number) column that every writer updates",
                    ));
                }
            }
        }
    }
    errs
}

/// Whether values of `from` can be written to `to` in general. Individual values are still
/// checked row by row ([`crate::convert::convert`]): an `INT` fits a `SMALLINT` column only
/// when it is small enough, and such a row is dead-lettered, not truncated.
pub fn compatible(from: &ColumnType, to: &ColumnType) -> Result<(), String> {
    use ColumnType as T;
    let ok = match (from, to) {
        (T::Unsupported { type_name }, _) | (_, T::Unsupported { type_name }) => {
            return Err(format!("tandem does not map the type {type_name}"))
        }
        (T::Bool, T::Bool | T::Int { .. } | T::Text { .. }) => true,
        (
            T::Int { .. },
            T::Bool | T::Int { .. } | T::Decimal { .. } | T::Float32 | T::Float64 | T::Text { .. },
        ) => true,
        (T::Decimal { .. }, T::Int { .. } | T::Decimal { .. } | T::Text { .. }) => true,
        (T::Float32 | T::Float64, T::Float32 | T::Float64) => true,
        (
            T::Text { .. } | T::Enum { .. },
            T::Text { .. } | T::Enum { .. } | T::Json | T::Uuid | T::Bytes { .. },
        ) => true,
        (T::Bytes { .. }, T::Bytes { .. } | T::Uuid) => true,
        (T::Uuid, T::Uuid | T::Text { .. } | T::Bytes { .. }) => true,
        (T::Date { .. }, T::Date { .. }) => true,
        (T::Time { .. }, T::Time { .. }) => true,
        (
            T::Timestamp { .. } | T::TimestampTz { .. },
            T::Timestamp { .. } | T::TimestampTz { .. },
        ) => true,
        (T::Json, T::Json | T::Text { .. }) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("a {from} value has no exact {to} equivalent"))
    }
}
