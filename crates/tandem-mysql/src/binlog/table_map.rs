//! TABLE_MAP (19): the column layout every following rows event of a table is read with.
//!
//! The base event gives each column's binlog type and a type-specific metadata word
//! (length bytes, precision and scale, fractional digits). With `binlog_row_metadata=FULL`
//! (MariaDB ≥ 10.5, MySQL ≥ 8.0.1) optional TLV fields follow: column names, signedness of
//! numeric columns, charsets of character columns, enum and set labels, primary key. Those
//! describe the table *as it was when the event was written*, which is what makes them
//! preferable to `information_schema` (the current schema) when replaying old events.

use std::sync::Arc;

use super::cursor::Cursor;
use super::BinlogError;

/// Binlog column type codes (`enum_field_types`).
pub mod column_type {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

use column_type as ct;

/// One column of a TABLE_MAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapColumn {
    /// The real type: a `STRING` column holding an enum or set reports `ENUM`/`SET` here.
    pub type_code: u8,
    /// Type-specific metadata: maximum byte length (strings), length-prefix size (blobs),
    /// `precision << 8 | scale` (decimals), fractional digits (temporal), pack length
    /// (enum, set), `bytes << 8 | bits` (bit).
    pub meta: u16,
    pub nullable: bool,
    /// Collation id from FULL metadata (character, enum and set columns).
    pub collation: Option<u32>,
    /// From FULL metadata; `None` when the server did not say.
    pub unsigned: Option<bool>,
    pub name: Option<String>,
    /// Enum or set labels (raw bytes in the column's charset) from FULL metadata.
    pub labels: Option<Arc<[Vec<u8>]>>,
}

/// A decoded TABLE_MAP event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMap {
    pub table_id: u64,
    pub schema: String,
    pub table: String,
    pub columns: Vec<MapColumn>,
    /// Primary key column indexes, from FULL metadata.
    pub primary_key: Option<Vec<usize>>,
}

impl TableMap {
    /// Whether every column has a name (the server writes FULL row metadata).
    pub fn has_names(&self) -> bool {
        !self.columns.is_empty() && self.columns.iter().all(|c| c.name.is_some())
    }
}

/// Columns counted in the SIGNEDNESS bitmap (MySQL's `is_numeric_type`; `YEAR` counts).
fn is_numeric(t: u8) -> bool {
    matches!(
        t,
        ct::TINY
            | ct::SHORT
            | ct::INT24
            | ct::LONG
            | ct::LONGLONG
            | ct::FLOAT
            | ct::DOUBLE
            | ct::NEWDECIMAL
            | ct::DECIMAL
            | ct::YEAR
    )
}

/// Columns counted in the (COLUMN|DEFAULT)_CHARSET fields.
fn is_character(t: u8) -> bool {
    matches!(
        t,
        ct::STRING
            | ct::VAR_STRING
            | ct::VARCHAR
            | ct::BLOB
            | ct::TINY_BLOB
            | ct::MEDIUM_BLOB
            | ct::LONG_BLOB
    )
}

fn is_enum_or_set(t: u8) -> bool {
    matches!(t, ct::ENUM | ct::SET)
}

fn name_text(bytes: &[u8], what: &'static str) -> Result<String, BinlogError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| BinlogError::invalid(what, "not UTF-8"))
}

/// Read the per-column metadata word for `type_code`; returns the real type and metadata.
fn read_meta(c: &mut Cursor<'_>, type_code: u8) -> Result<(u8, u16), BinlogError> {
    const WHAT: &str = "column metadata";
    Ok(match type_code {
        ct::FLOAT
        | ct::DOUBLE
        | ct::BLOB
        | ct::TINY_BLOB
        | ct::MEDIUM_BLOB
        | ct::LONG_BLOB
        | ct::GEOMETRY
        | ct::JSON
        | ct::TIMESTAMP2
        | ct::DATETIME2
        | ct::TIME2 => (type_code, u16::from(c.u8(WHAT)?)),
        ct::VARCHAR | ct::VAR_STRING => (type_code, c.u16(WHAT)?),
        // Low byte: bits in the last byte; high byte: whole bytes.
        ct::BIT => {
            let bits = c.u8(WHAT)?;
            let bytes = c.u8(WHAT)?;
            (type_code, (u16::from(bytes) << 8) | u16::from(bits))
        }
        ct::NEWDECIMAL => {
            let precision = c.u8(WHAT)?;
            let scale = c.u8(WHAT)?;
            (type_code, (u16::from(precision) << 8) | u16::from(scale))
        }
        ct::STRING | ct::ENUM | ct::SET => {
            let b0 = c.u8(WHAT)?;
            let b1 = c.u8(WHAT)?;
            // CHAR columns longer than 255 bytes fold two length bits into the type byte.
            let (real, len) = if b0 & 0x30 != 0x30 {
                (
                    b0 | 0x30,
                    u16::from(b1) | (u16::from((b0 & 0x30) ^ 0x30) << 4),
                )
            } else {
                (b0, u16::from(b1))
            };
            match real {
                ct::ENUM | ct::SET => (real, len),
                _ => (ct::STRING, len),
            }
        }
        ct::DECIMAL
        | ct::TINY
        | ct::SHORT
        | ct::LONG
        | ct::NULL
        | ct::TIMESTAMP
        | ct::LONGLONG
        | ct::INT24
        | ct::DATE
        | ct::TIME
        | ct::DATETIME
        | ct::YEAR
        | ct::NEWDATE => (type_code, 0),
        other => {
            return Err(BinlogError::invalid(
                "column type",
                format!("unknown binlog column type {other}"),
            ))
        }
    })
}

/// Optional metadata field types (`Table_map_log_event::Optional_metadata_field_type`).
mod field {
    pub const SIGNEDNESS: u8 = 1;
    pub const DEFAULT_CHARSET: u8 = 2;
    pub const COLUMN_CHARSET: u8 = 3;
    pub const COLUMN_NAME: u8 = 4;
    pub const SET_STR_VALUE: u8 = 5;
    pub const ENUM_STR_VALUE: u8 = 6;
    pub const SIMPLE_PRIMARY_KEY: u8 = 8;
    pub const PRIMARY_KEY_WITH_PREFIX: u8 = 9;
    pub const ENUM_AND_SET_DEFAULT_CHARSET: u8 = 10;
    pub const ENUM_AND_SET_COLUMN_CHARSET: u8 = 11;
}

impl TableMap {
    pub fn parse(data: &[u8]) -> Result<TableMap, BinlogError> {
        let mut c = Cursor::new(data);
        let table_id = c.uint_le(6, "table id")?;
        c.skip(2, "table map flags")?;
        let schema_len = usize::from(c.u8("schema name length")?);
        let schema = name_text(c.take(schema_len, "schema name")?, "schema name")?;
        c.skip(1, "schema name terminator")?;
        let table_len = usize::from(c.u8("table name length")?);
        let table = name_text(c.take(table_len, "table name")?, "table name")?;
        c.skip(1, "table name terminator")?;
        let n = c.lenenc_len("column count")?;
        let types = c.take(n, "column types")?;
        let meta_block = c.lenenc_bytes("column metadata block")?;
        let mut mc = Cursor::new(meta_block);
        let nulls = c.take(n.div_ceil(8), "null bitmap")?;
        let mut columns = Vec::with_capacity(n);
        for (i, &t) in types.iter().enumerate() {
            let (type_code, meta) = read_meta(&mut mc, t)?;
            columns.push(MapColumn {
                type_code,
                meta,
                nullable: bit(nulls, i),
                collation: None,
                unsigned: None,
                name: None,
                labels: None,
            });
        }
        let mut map = TableMap {
            table_id,
            schema,
            table,
            columns,
            primary_key: None,
        };
        while !c.is_empty() {
            let kind = c.u8("optional metadata type")?;
            let value = c.lenenc_bytes("optional metadata field")?;
            map.apply_optional(kind, value)?;
        }
        Ok(map)
    }

    fn apply_optional(&mut self, kind: u8, value: &[u8]) -> Result<(), BinlogError> {
        let mut c = Cursor::new(value);
        match kind {
            field::SIGNEDNESS => {
                let numeric = self
                    .columns
                    .iter_mut()
                    .filter(|col| is_numeric(col.type_code));
                for (i, col) in numeric.enumerate() {
                    // One bit per numeric column, most significant bit first.
                    let byte = value.get(i / 8).copied().ok_or(BinlogError::Truncated {
                        what: "signedness bitmap",
                        needed: i / 8 + 1,
                        available: value.len(),
                    })?;
                    col.unsigned = Some(byte & (0x80 >> (i % 8)) != 0);
                }
            }
            field::DEFAULT_CHARSET | field::ENUM_AND_SET_DEFAULT_CHARSET => {
                let pick: fn(u8) -> bool = if kind == field::DEFAULT_CHARSET {
                    is_character
                } else {
                    is_enum_or_set
                };
                let default = lenenc_u32(&mut c, "default collation")?;
                let mut cols: Vec<&mut MapColumn> = self
                    .columns
                    .iter_mut()
                    .filter(|col| pick(col.type_code))
                    .collect();
                for col in cols.iter_mut() {
                    col.collation = Some(default);
                }
                while !c.is_empty() {
                    // An index, not a length: it is not bounded by the bytes that follow.
                    let idx = lenenc_index(&mut c, "charset column index")?;
                    let coll = lenenc_u32(&mut c, "column collation")?;
                    let col = cols.get_mut(idx).ok_or_else(|| {
                        BinlogError::invalid("charset column index", format!("{idx} out of range"))
                    })?;
                    col.collation = Some(coll);
                }
            }
            field::COLUMN_CHARSET | field::ENUM_AND_SET_COLUMN_CHARSET => {
                let pick: fn(u8) -> bool = if kind == field::COLUMN_CHARSET {
                    is_character
                } else {
                    is_enum_or_set
                };
                for col in self.columns.iter_mut().filter(|col| pick(col.type_code)) {
                    col.collation = Some(lenenc_u32(&mut c, "column collation")?);
                }
            }
            field::COLUMN_NAME => {
                for col in self.columns.iter_mut() {
                    col.name = Some(name_text(c.lenenc_bytes("column name")?, "column name")?);
                }
            }
            field::SET_STR_VALUE | field::ENUM_STR_VALUE => {
                let want = if kind == field::SET_STR_VALUE {
                    ct::SET
                } else {
                    ct::ENUM
                };
                for col in self.columns.iter_mut().filter(|col| col.type_code == want) {
                    let count = c.lenenc_len("label count")?;
                    let mut labels = Vec::with_capacity(count);
                    for _ in 0..count {
                        labels.push(c.lenenc_bytes("label")?.to_vec());
                    }
                    col.labels = Some(labels.into());
                }
            }
            field::SIMPLE_PRIMARY_KEY | field::PRIMARY_KEY_WITH_PREFIX => {
                let mut key = Vec::new();
                while !c.is_empty() {
                    let idx = lenenc_index(&mut c, "primary key column")?;
                    if idx >= self.columns.len() {
                        return Err(BinlogError::invalid(
                            "primary key column",
                            format!("{idx} out of range"),
                        ));
                    }
                    key.push(idx);
                    if kind == field::PRIMARY_KEY_WITH_PREFIX {
                        c.lenenc("primary key prefix")?;
                    }
                }
                self.primary_key = Some(key);
            }
            // Geometry types, column visibility and fields of later versions.
            _ => {}
        }
        Ok(())
    }
}

fn lenenc_u32(c: &mut Cursor<'_>, what: &'static str) -> Result<u32, BinlogError> {
    let v = c.lenenc(what)?;
    u32::try_from(v).map_err(|_| BinlogError::invalid(what, format!("{v} is too large")))
}

/// Bit `i` of a little-endian bitmap (bit 0 is the low bit of byte 0).
pub(crate) fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// A length-encoded column index.
fn lenenc_index(c: &mut Cursor<'_>, what: &'static str) -> Result<usize, BinlogError> {
    let n = c.lenenc(what)?;
    usize::try_from(n).map_err(|_| BinlogError::invalid(what, format!("{n} out of range")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// TABLE_MAP of `t (id int unsigned primary key, name varchar(10), e enum('x','y'))`
    /// with FULL metadata, built by hand after the layout.
    pub(crate) fn sample_table_map() -> Vec<u8> {
        let mut d = vec![7, 0, 0, 0, 0, 0, 1, 0];
        d.push(2);
        d.extend(b"db\0");
        d.push(1);
        d.extend(b"t\0");
        d.push(3);
        d.extend([ct::LONG, ct::VARCHAR, ct::STRING]);
        d.push(4); // metadata block: varchar 40 bytes, enum pack length 1
        d.extend([40, 0, ct::ENUM, 1]);
        d.push(0b110);
        d.extend([field::SIGNEDNESS, 1, 0x80]);
        d.extend([field::DEFAULT_CHARSET, 1, 45]);
        d.extend([
            field::COLUMN_NAME,
            10,
            2,
            b'i',
            b'd',
            4,
            b'n',
            b'a',
            b'm',
            b'e',
            1,
            b'e',
        ]);
        d.extend([field::ENUM_STR_VALUE, 5, 2, 1, b'x', 1, b'y']);
        d.extend([field::SIMPLE_PRIMARY_KEY, 1, 0]);
        d
    }

    #[test]
    fn per_column_charset_indexes_are_indexes_not_lengths() {
        // Default collation 45, and character column 3 (of 4) with collation 63; primary
        // key on column 3. Neither index is followed by as many bytes as its value.
        let mut d = vec![7, 0, 0, 0, 0, 0, 1, 0, 2];
        d.extend(b"db\0");
        d.push(1);
        d.extend(b"t\0");
        d.push(4);
        d.extend([ct::VARCHAR, ct::VARCHAR, ct::VARCHAR, ct::VARCHAR]);
        d.push(8);
        d.extend([10, 0, 10, 0, 10, 0, 10, 0]);
        d.push(0);
        d.extend([field::DEFAULT_CHARSET, 3, 45, 3, 63]);
        d.extend([field::SIMPLE_PRIMARY_KEY, 1, 3]);
        let m = TableMap::parse(&d).unwrap();
        let colls: Vec<_> = m.columns.iter().map(|c| c.collation).collect();
        assert_eq!(colls, [Some(45), Some(45), Some(45), Some(63)]);
        assert_eq!(m.primary_key, Some(vec![3]));
    }

    #[test]
    fn full_metadata_names_types_and_keys() {
        let m = TableMap::parse(&sample_table_map()).unwrap();
        assert_eq!(
            (m.table_id, m.schema.as_str(), m.table.as_str()),
            (7, "db", "t")
        );
        assert!(m.has_names());
        let names: Vec<_> = m.columns.iter().map(|c| c.name.clone().unwrap()).collect();
        assert_eq!(names, ["id", "name", "e"]);
        assert_eq!(m.columns[0].unsigned, Some(true));
        assert_eq!(m.columns[1].collation, Some(45));
        assert_eq!(m.columns[1].meta, 40);
        assert_eq!(m.columns[2].type_code, ct::ENUM);
        assert_eq!(
            m.columns[2].labels.as_deref(),
            Some(&[b"x".to_vec(), b"y".to_vec()][..])
        );
        assert!(!m.columns[0].nullable && m.columns[1].nullable);
        assert_eq!(m.primary_key, Some(vec![0]));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = sample_table_map();
        for len in 0..full.len() {
            // Cutting inside the optional metadata may still parse (fields are optional),
            // cutting anywhere must never panic.
            let _ = TableMap::parse(&full[..len]);
        }
        assert!(TableMap::parse(&full[..20]).is_err());
    }
}
