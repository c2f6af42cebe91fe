//! The schema a table's rows are decoded with, and the per-column decoding plan.
//!
//! Two sources describe a table: the TABLE_MAP itself (types, and with FULL metadata names,
//! signedness, charsets, labels, key — the table *as it was written*), and the catalog
//! (`information_schema`, the table *as it is now*, which alone knows `TINYINT(1)` is a
//! boolean, MariaDB's `JSON` is a checked `LONGTEXT`, and `VARCHAR(n)`'s `n`). The catalog
//! is used when it provably describes the same columns — same count and, when the binlog
//! names them, the same names in the same order; otherwise (events from before an `ALTER`)
//! the schema is derived from the TABLE_MAP alone, so a column is never read with another
//! column's type.
//!
//! A [`TableDecoder`] is built once per TABLE_MAP and reused for every row of every rows
//! event that follows it: each column's decoding is resolved up front into a
//! [`ColumnPlan`], so the per-value work is a match on a small enum and a slice read.

use std::sync::Arc;

use tandem_core::{ColumnSchema, ColumnType, TableId, TableSchema};

use super::table_map::{column_type as ct, MapColumn, TableMap};
use super::values::Charset;
use crate::types::{enum_or_set_labels, mysql_max_date, mysql_min_date};

/// The name of the table whose rows mark tandem's own transactions (marker loop prevention).
pub const MARKER_TABLE: &str = "tandem_apply_marker";

/// One column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogColumn {
    pub name: String,
    /// From [`crate::types::column_type_from_sql_json`].
    pub column_type: ColumnType,
    /// `COLUMN_TYPE` as the server spells it.
    pub native_type: String,
    pub nullable: bool,
    /// `CHARACTER_SET_NAME`; `None` for non-character columns.
    pub charset: Option<String>,
    pub in_primary_key: bool,
}

/// What a length-prefixed value becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Text(Charset),
    Json(Charset),
    Bytes,
    /// `BINARY(n)`: the binlog drops trailing zero bytes, the column keeps `n`.
    BytesPadded(usize),
    Unsupported(String),
}

/// How one column's bytes are read.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnPlan {
    Int {
        width: u8,
        unsigned: bool,
        as_bool: bool,
    },
    Float32,
    Float64,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Year,
    Date,
    Time2 {
        fsp: u8,
    },
    DateTime2 {
        fsp: u8,
    },
    Timestamp2 {
        fsp: u8,
    },
    TimeOld,
    DateTimeOld,
    TimestampOld,
    /// A length prefix of `len_bytes` bytes, then the value.
    Prefixed {
        len_bytes: u8,
        out: Out,
    },
    /// MySQL's binary JSON after a length prefix.
    MySqlJson {
        len_bytes: u8,
    },
    Enum {
        pack: u8,
        labels: Option<Arc<[String]>>,
    },
    Set {
        pack: u8,
        labels: Option<Arc<[String]>>,
    },
    Bit {
        len: usize,
        type_name: String,
    },
    Null,
}

/// Everything needed to turn a table's rows events into changes.
#[derive(Debug, Clone)]
pub struct TableDecoder {
    pub schema: Arc<TableSchema>,
    pub plans: Vec<ColumnPlan>,
    /// Rows of this table mark tandem's own transactions.
    pub is_marker: bool,
    /// Whether the catalog description was used (false: derived from the TABLE_MAP).
    pub from_catalog: bool,
}

impl TableDecoder {
    /// Build the decoder for `map`, using `catalog` if it describes the same columns.
    pub fn new(
        map: &TableMap,
        catalog: Option<&[CatalogColumn]>,
    ) -> Result<TableDecoder, super::BinlogError> {
        let catalog = catalog.filter(|cols| catalog_matches(map, cols));
        let mut columns = Vec::with_capacity(map.columns.len());
        let mut plans = Vec::with_capacity(map.columns.len());
        for (i, mc) in map.columns.iter().enumerate() {
            let cat = catalog.and_then(|c| c.get(i));
            let (schema, plan) = column(i, mc, cat)?;
            columns.push(schema);
            plans.push(plan);
        }
        let key = match (catalog, &map.primary_key) {
            (_, Some(pk)) => pk.clone(),
            (Some(cols), None) => cols
                .iter()
                .enumerate()
                .filter(|(_, c)| c.in_primary_key)
                .map(|(i, _)| i)
                .collect(),
            (None, None) => Vec::new(),
        };
        let table = TableId::new(map.schema.clone(), map.table.clone());
        Ok(TableDecoder {
            is_marker: map.table.eq_ignore_ascii_case(MARKER_TABLE),
            schema: Arc::new(TableSchema {
                table,
                columns,
                key,
            }),
            plans,
            from_catalog: catalog.is_some(),
        })
    }
}

fn catalog_matches(map: &TableMap, cols: &[CatalogColumn]) -> bool {
    cols.len() == map.columns.len()
        && map.columns.iter().zip(cols).all(|(m, c)| {
            m.name
                .as_deref()
                .is_none_or(|n| n.eq_ignore_ascii_case(&c.name))
        })
}

fn labels_text(raw: &Option<Arc<[Vec<u8>]>>, charset: Charset) -> Option<Arc<[String]>> {
    let raw = raw.as_ref()?;
    raw.iter()
        .map(|l| charset.decode("enum", l).ok())
        .collect::<Option<Vec<String>>>()
        .map(Into::into)
}

fn column(
    i: usize,
    mc: &MapColumn,
    cat: Option<&CatalogColumn>,
) -> Result<(ColumnSchema, ColumnPlan), super::BinlogError> {
    let charset = match (mc.collation, cat) {
        (Some(id), _) => Charset::from_collation(id),
        (None, Some(c)) => Charset::from_name(c.charset.as_deref()),
        // Without metadata or catalog: text unless the column is a binary string type we
        // cannot tell apart — UTF-8 is checked, so a binary value fails visibly.
        (None, None) => Charset::Utf8,
    };
    let cat_type = cat.map(|c| &c.column_type);
    let unsigned = mc.unsigned.unwrap_or(matches!(
        cat_type,
        Some(ColumnType::Int { unsigned: true, .. })
    ));
    let out_for = |derived: ColumnType| -> (ColumnType, Out) {
        let ty = cat_type.cloned().unwrap_or(derived);
        let out = match &ty {
            ColumnType::Json => Out::Json(charset),
            ColumnType::Bytes { max_len: Some(n) }
                if cat
                    .is_some_and(|c| c.native_type.to_ascii_lowercase().starts_with("binary")) =>
            {
                Out::BytesPadded(usize::try_from(*n).unwrap_or(0))
            }
            ColumnType::Bytes { .. } => Out::Bytes,
            ColumnType::Unsupported { type_name } => Out::Unsupported(type_name.clone()),
            ColumnType::Uuid => Out::Unsupported("uuid".into()),
            _ if charset == Charset::Binary && cat.is_none() => Out::Bytes,
            _ => Out::Text(charset),
        };
        (ty, out)
    };
    let binary_or_text = |max: Option<u32>| {
        if charset == Charset::Binary {
            ColumnType::Bytes { max_len: max }
        } else {
            ColumnType::Text {
                max_chars: None,
                allows_nul: true,
            }
        }
    };
    let int = |bytes: u8| ColumnType::Int { bytes, unsigned };
    let meta = mc.meta;
    let (derived, plan): (ColumnType, ColumnPlan) = match mc.type_code {
        ct::TINY | ct::SHORT | ct::INT24 | ct::LONG | ct::LONGLONG => {
            let width = match mc.type_code {
                ct::TINY => 1,
                ct::SHORT => 2,
                ct::INT24 => 3,
                ct::LONG => 4,
                _ => 8,
            };
            let as_bool = matches!(cat_type, Some(ColumnType::Bool));
            (
                int(width),
                ColumnPlan::Int {
                    width,
                    unsigned,
                    as_bool,
                },
            )
        }
        ct::FLOAT => (ColumnType::Float32, ColumnPlan::Float32),
        ct::DOUBLE => (ColumnType::Float64, ColumnPlan::Float64),
        ct::NEWDECIMAL => {
            let (precision, scale) = ((meta >> 8) as u8, (meta & 0xff) as u8);
            (
                ColumnType::Decimal {
                    precision: Some(precision.into()),
                    scale: Some(scale.into()),
                },
                ColumnPlan::Decimal { precision, scale },
            )
        }
        ct::YEAR => (
            ColumnType::Int {
                bytes: 2,
                unsigned: false,
            },
            ColumnPlan::Year,
        ),
        ct::DATE | ct::NEWDATE => (
            ColumnType::Date {
                min: mysql_min_date(),
                max: mysql_max_date(),
            },
            ColumnPlan::Date,
        ),
        ct::TIME2 => {
            let fsp = (meta as u8).min(6);
            (ColumnType::Time { fsp }, ColumnPlan::Time2 { fsp })
        }
        ct::TIME => (ColumnType::Time { fsp: 0 }, ColumnPlan::TimeOld),
        ct::DATETIME2 | ct::DATETIME => {
            let fsp = if mc.type_code == ct::DATETIME {
                0
            } else {
                (meta as u8).min(6)
            };
            let derived = crate::types::column_type_from_sql(&format!("datetime({fsp})"));
            let plan = if mc.type_code == ct::DATETIME {
                ColumnPlan::DateTimeOld
            } else {
                ColumnPlan::DateTime2 { fsp }
            };
            (derived, plan)
        }
        ct::TIMESTAMP2 | ct::TIMESTAMP => {
            let fsp = if mc.type_code == ct::TIMESTAMP {
                0
            } else {
                (meta as u8).min(6)
            };
            let derived = crate::types::column_type_from_sql(&format!("timestamp({fsp})"));
            let plan = if mc.type_code == ct::TIMESTAMP {
                ColumnPlan::TimestampOld
            } else {
                ColumnPlan::Timestamp2 { fsp }
            };
            (derived, plan)
        }
        ct::VARCHAR | ct::VAR_STRING | ct::STRING => {
            let len_bytes = if meta > 255 { 2 } else { 1 };
            let (ty, out) = out_for(binary_or_text(Some(u32::from(meta))));
            (ty, ColumnPlan::Prefixed { len_bytes, out })
        }
        ct::BLOB | ct::TINY_BLOB | ct::MEDIUM_BLOB | ct::LONG_BLOB => {
            let len_bytes = (meta as u8).clamp(1, 4);
            let (ty, out) = out_for(binary_or_text(None));
            (ty, ColumnPlan::Prefixed { len_bytes, out })
        }
        ct::GEOMETRY => {
            let len_bytes = (meta as u8).clamp(1, 4);
            let name = "geometry".to_owned();
            (
                ColumnType::Unsupported {
                    type_name: name.clone(),
                },
                ColumnPlan::Prefixed {
                    len_bytes,
                    out: Out::Unsupported(name),
                },
            )
        }
        ct::JSON => {
            let len_bytes = (meta as u8).clamp(1, 4);
            (ColumnType::Json, ColumnPlan::MySqlJson { len_bytes })
        }
        ct::ENUM => {
            let labels = labels_text(&mc.labels, charset).or_else(|| match cat_type {
                Some(ColumnType::Enum { labels }) => Some(labels.clone().into()),
                _ => None,
            });
            let derived = ColumnType::Enum {
                labels: labels
                    .as_deref()
                    .map(<[String]>::to_vec)
                    .unwrap_or_default(),
            };
            (
                derived,
                ColumnPlan::Enum {
                    pack: (meta as u8).clamp(1, 2),
                    labels,
                },
            )
        }
        ct::SET => {
            let labels = labels_text(&mc.labels, charset)
                .or_else(|| cat.map(|c| enum_or_set_labels(&c.native_type).into()));
            (
                ColumnType::Text {
                    max_chars: None,
                    allows_nul: true,
                },
                ColumnPlan::Set {
                    pack: (meta as u8).clamp(1, 8),
                    labels,
                },
            )
        }
        ct::BIT => {
            let (bytes, bits) = (usize::from(meta >> 8), usize::from(meta & 0xff));
            let nbits = bytes * 8 + bits;
            let type_name = format!("bit({nbits})");
            (
                ColumnType::Unsupported {
                    type_name: type_name.clone(),
                },
                ColumnPlan::Bit {
                    len: bytes + usize::from(bits > 0),
                    type_name,
                },
            )
        }
        ct::NULL => (
            ColumnType::Unsupported {
                type_name: "null".into(),
            },
            ColumnPlan::Null,
        ),
        other => {
            return Err(super::BinlogError::invalid(
                "column type",
                format!("binlog column type {other} is not supported (old DECIMAL?)"),
            ))
        }
    };
    // Typed decoders keep the catalog's refinements (bool, json, bounds) where they apply.
    let column_type = match (&plan, cat_type) {
        (
            ColumnPlan::Prefixed { .. } | ColumnPlan::Enum { .. } | ColumnPlan::Set { .. },
            Some(t),
        ) => t.clone(),
        (_, Some(t)) if same_family(t, &derived) => t.clone(),
        _ => derived,
    };
    let name = mc
        .name
        .clone()
        .or_else(|| cat.map(|c| c.name.clone()))
        .unwrap_or_else(|| format!("@{}", i + 1));
    let native_type = cat.map_or_else(
        || format!("binlog type {}", mc.type_code),
        |c| c.native_type.clone(),
    );
    let nullable = cat.map_or(mc.nullable, |c| c.nullable);
    Ok((
        ColumnSchema {
            name,
            column_type,
            native_type,
            nullable,
        },
        plan,
    ))
}

fn same_family(a: &ColumnType, b: &ColumnType) -> bool {
    use ColumnType as T;
    matches!(
        (a, b),
        (T::Bool | T::Int { .. }, T::Int { .. })
            | (T::Float32 | T::Float64, T::Float32 | T::Float64)
            | (T::Decimal { .. }, T::Decimal { .. })
            | (T::Date { .. }, T::Date { .. })
            | (T::Time { .. }, T::Time { .. })
            | (T::Timestamp { .. }, T::Timestamp { .. })
            | (T::TimestampTz { .. }, T::TimestampTz { .. })
            | (T::Json, T::Json)
            | (T::Unsupported { .. }, T::Unsupported { .. })
    )
}
