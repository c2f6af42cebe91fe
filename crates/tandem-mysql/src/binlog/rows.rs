//! Rows events (WRITE/UPDATE/DELETE_ROWS, v1 23–25 and v2 30–32) and the row decoder.
//!
//! Body layout: table id, flags, (v2: extra data), column count, the bitmap of columns
//! present in the (before) image, for updates a second bitmap for the after image, then
//! rows: per image a NULL bitmap over the *present* columns and the non-NULL values in
//! column order. With `binlog_row_image=MINIMAL` an image holds only some columns, so
//! values are mapped through the present-columns bitmap, never by position; a column
//! absent from an image is [`Cell::Unchanged`] (after image) or a `Null` placeholder of an
//! [`OldRow::KeyOnly`] (before image).
//!
//! The decoder borrows the event body and allocates only the values it returns.

use tandem_core::{Cell, OldRow, Row, RowChange, Value};

use super::cursor::{le, Cursor};
use super::event_type as et;
use super::schema::{ColumnPlan, Out, TableDecoder};
use super::table_map::bit;
use super::values;
use super::BinlogError;
use crate::types::{bool_value, uint_value, unsupported_value, DecodeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
}

impl RowsKind {
    /// The kind of a rows event type code, and whether it is a v2 event.
    pub fn of(type_code: u8) -> Option<(RowsKind, bool)> {
        Some(match type_code {
            et::WRITE_ROWS_V1 => (RowsKind::Write, false),
            et::UPDATE_ROWS_V1 => (RowsKind::Update, false),
            et::DELETE_ROWS_V1 => (RowsKind::Delete, false),
            et::WRITE_ROWS_V2 => (RowsKind::Write, true),
            et::UPDATE_ROWS_V2 => (RowsKind::Update, true),
            et::DELETE_ROWS_V2 => (RowsKind::Delete, true),
            _ => return None,
        })
    }
}

/// A rows event, borrowed from the event body.
#[derive(Debug, Clone)]
pub struct RowsEvent<'a> {
    pub kind: RowsKind,
    pub table_id: u64,
    pub flags: u16,
    pub column_count: usize,
    /// Columns present in the before image (delete, update) or the only image (write).
    pub present: &'a [u8],
    /// Columns present in the after image of an update.
    pub present_after: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> RowsEvent<'a> {
    pub fn parse(type_code: u8, data: &'a [u8]) -> Result<RowsEvent<'a>, BinlogError> {
        let (kind, v2) = RowsKind::of(type_code)
            .ok_or_else(|| BinlogError::invalid("rows event type", type_code.to_string()))?;
        let mut c = Cursor::new(data);
        let table_id = c.uint_le(6, "rows table id")?;
        let flags = c.u16("rows flags")?;
        if v2 {
            // The length counts its own two bytes.
            let extra = usize::from(c.u16("rows extra data length")?);
            c.skip(extra.saturating_sub(2), "rows extra data")?;
        }
        // A count of columns, not of bytes: bounded by the bitmap bytes that must follow.
        let column_count = usize::try_from(c.lenenc("rows column count")?)
            .ok()
            .filter(|n| n.div_ceil(8) <= c.remaining())
            .ok_or(BinlogError::invalid(
                "rows column count",
                "larger than the event",
            ))?;
        let present = c.take(column_count.div_ceil(8), "present columns bitmap")?;
        let present_after = if kind == RowsKind::Update {
            c.take(column_count.div_ceil(8), "after image columns bitmap")?
        } else {
            present
        };
        Ok(RowsEvent {
            kind,
            table_id,
            flags,
            column_count,
            present,
            present_after,
            body: c.rest(),
        })
    }
}

fn count_present(bitmap: &[u8], n: usize) -> usize {
    (0..n).filter(|&i| bit(bitmap, i)).count()
}

impl TableDecoder {
    /// Decode every row of `ev`, handing each change to `emit`. Returns the number of rows.
    pub fn decode_rows(
        &self,
        ev: &RowsEvent<'_>,
        mut emit: impl FnMut(RowChange),
    ) -> Result<usize, BinlogError> {
        let n = self.plans.len();
        if ev.column_count != n {
            return Err(BinlogError::invalid(
                "rows column count",
                format!(
                    "{} columns in the rows event, {n} in its TABLE_MAP",
                    ev.column_count
                ),
            ));
        }
        let before_count = count_present(ev.present, n);
        let after_count = count_present(ev.present_after, n);
        let before_full = before_count == n;
        let mut c = Cursor::new(ev.body);
        let mut rows = 0usize;
        while !c.is_empty() {
            let change = match ev.kind {
                RowsKind::Write => RowChange::Insert {
                    new: self.image(&mut c, ev.present_after, after_count)?,
                },
                RowsKind::Delete => {
                    let old = self.image(&mut c, ev.present, before_count)?;
                    RowChange::Delete {
                        old: old_row(old, before_full),
                    }
                }
                RowsKind::Update => {
                    let old = self.image(&mut c, ev.present, before_count)?;
                    let new = self.image(&mut c, ev.present_after, after_count)?;
                    RowChange::Update {
                        old: old_row(old, before_full),
                        new,
                    }
                }
            };
            emit(change);
            rows += 1;
        }
        Ok(rows)
    }

    fn image(&self, c: &mut Cursor<'_>, present: &[u8], count: usize) -> Result<Row, BinlogError> {
        let nulls = c.take(count.div_ceil(8), "row null bitmap")?;
        let mut cells = Vec::with_capacity(self.plans.len());
        if count == self.plans.len() {
            // Every column present (`binlog_row_image=FULL`, the usual case): the NULL
            // bitmap's bits are the columns' own, nothing to map.
            for (i, plan) in self.plans.iter().enumerate() {
                let v = if bit(nulls, i) {
                    Value::Null
                } else {
                    self.value(i, plan, c)?
                };
                cells.push(Cell::Value(v));
            }
            return Ok(Row(cells));
        }
        let mut j = 0usize;
        for (i, plan) in self.plans.iter().enumerate() {
            if !bit(present, i) {
                cells.push(Cell::Unchanged);
                continue;
            }
            let v = if bit(nulls, j) {
                Value::Null
            } else {
                self.value(i, plan, c)?
            };
            j += 1;
            cells.push(Cell::Value(v));
        }
        Ok(Row(cells))
    }

    #[inline]
    fn value(&self, i: usize, plan: &ColumnPlan, c: &mut Cursor<'_>) -> Result<Value, BinlogError> {
        match decode_value(plan, c) {
            Ok(v) => Ok(v),
            Err(e) => Err(self.value_error(i, e)),
        }
    }

    /// Names the table and column of a value that failed (off the per-value path).
    #[cold]
    #[inline(never)]
    fn value_error(&self, i: usize, e: ValueError) -> BinlogError {
        match e {
            ValueError::Binlog(e) => e,
            ValueError::Decode(source) => BinlogError::Value {
                table: self.schema.table.to_string(),
                column: self
                    .schema
                    .columns
                    .get(i)
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                source,
            },
        }
    }
}

/// A before image missing columns (MINIMAL row image) holds only the key.
fn old_row(row: Row, full: bool) -> OldRow {
    if full {
        OldRow::Full(row)
    } else {
        OldRow::KeyOnly(Row(row
            .0
            .into_iter()
            .map(|c| match c {
                Cell::Unchanged => Cell::Value(Value::Null),
                v => v,
            })
            .collect()))
    }
}

enum ValueError {
    Binlog(BinlogError),
    Decode(DecodeError),
}

impl From<BinlogError> for ValueError {
    fn from(e: BinlogError) -> Self {
        ValueError::Binlog(e)
    }
}

impl From<DecodeError> for ValueError {
    fn from(e: DecodeError) -> Self {
        ValueError::Decode(e)
    }
}

fn decode_value(plan: &ColumnPlan, c: &mut Cursor<'_>) -> Result<Value, ValueError> {
    Ok(match plan {
        ColumnPlan::Int {
            width,
            unsigned,
            as_bool,
        } => {
            let w = usize::from(*width);
            let raw = le(c.take(w, "integer value")?);
            let shift = 64 - 8 * u32::from(*width);
            if *unsigned {
                if *as_bool {
                    i64::try_from(raw).map_or(Value::UInt(raw), bool_value)
                } else {
                    uint_value(raw)
                }
            } else {
                // Sign-extend from the column's width.
                let v = ((raw << shift) as i64) >> shift;
                if *as_bool {
                    bool_value(v)
                } else {
                    Value::Int(v)
                }
            }
        }
        ColumnPlan::Float32 => {
            let mut b = [0u8; 4];
            b.copy_from_slice(c.take(4, "float value")?);
            Value::Float(f64::from(f32::from_le_bytes(b)))
        }
        ColumnPlan::Float64 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(c.take(8, "double value")?);
            Value::Float(f64::from_le_bytes(b))
        }
        ColumnPlan::Decimal { precision, scale } => {
            let len = values::decimal_len(*precision, *scale)?;
            values::decode_decimal(c.take(len, "decimal value")?, *precision, *scale)?
        }
        ColumnPlan::Year => match c.u8("year value")? {
            0 => Value::Int(0),
            y => Value::Int(1900 + i64::from(y)),
        },
        ColumnPlan::Date => values::decode_date(c.take(3, "date value")?),
        ColumnPlan::Time2 { fsp } => {
            values::decode_time2(c.take(3 + values::frac_len(*fsp), "time value")?, *fsp)
        }
        ColumnPlan::DateTime2 { fsp } => {
            values::decode_datetime2(c.take(5 + values::frac_len(*fsp), "datetime value")?, *fsp)
        }
        ColumnPlan::Timestamp2 { fsp } => {
            values::decode_timestamp2(c.take(4 + values::frac_len(*fsp), "timestamp value")?, *fsp)
        }
        ColumnPlan::TimeOld => values::decode_time_old(c.take(3, "time value")?),
        ColumnPlan::DateTimeOld => values::decode_datetime_old(c.take(8, "datetime value")?),
        ColumnPlan::TimestampOld => values::decode_timestamp_old(c.take(4, "timestamp value")?),
        ColumnPlan::Prefixed { len_bytes, out } => {
            let len = c.uint_le(usize::from(*len_bytes), "value length")?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let bytes = c.take(len, "string value")?;
            match out {
                Out::Text(cs) => Value::Text(cs.decode("text", bytes)?),
                Out::Json(cs) => Value::Json(cs.decode("json", bytes)?),
                Out::Bytes => Value::Bytes(bytes.to_vec()),
                Out::BytesPadded(n) => {
                    // BINARY(n) loses its trailing zero bytes in the binlog; the column
                    // (and the text protocol) has them.
                    let mut v = bytes.to_vec();
                    if v.len() < *n {
                        v.resize(*n, 0);
                    }
                    Value::Bytes(v)
                }
                Out::Unsupported(name) => unsupported_value(name, bytes),
            }
        }
        ColumnPlan::MySqlJson { len_bytes } => {
            let len = c.uint_le(usize::from(*len_bytes), "json length")?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            let doc = c.take(len, "json value")?;
            let text = super::json::to_text(doc).map_err(|e| DecodeError::Malformed {
                type_name: "json".to_owned(),
                text: format!(
                    "{} bytes of MySQL binary JSON, invalid at byte {}",
                    len, e.at
                ),
                reason: e.reason,
            })?;
            Value::Json(text)
        }
        ColumnPlan::Enum { pack, labels } => {
            let idx = c.uint_le(usize::from(*pack), "enum value")?;
            match idx {
                // Index 0 is the "invalid value" MySQL stores as ''.
                0 => Value::Text(String::new()),
                i => usize::try_from(i - 1)
                    .ok()
                    .and_then(|k| labels.as_ref()?.get(k))
                    .map_or_else(
                        || unsupported_value("enum", i.to_string().as_bytes()),
                        |l| Value::Text(l.clone()),
                    ),
            }
        }
        ColumnPlan::Set { pack, labels } => {
            let bits = c.uint_le(usize::from(*pack), "set value")?;
            set_text(bits, labels.as_deref())
        }
        ColumnPlan::Bit { len, type_name } => {
            unsupported_value(type_name, c.take(*len, "bit value")?)
        }
        ColumnPlan::Null => Value::Null,
    })
}

fn set_text(bits: u64, labels: Option<&[String]>) -> Value {
    let Some(labels) = labels else {
        return unsupported_value("set", bits.to_string().as_bytes());
    };
    let mut out = String::new();
    for i in 0..64usize {
        if bits & (1u64 << i) == 0 {
            continue;
        }
        let Some(label) = labels.get(i) else {
            return unsupported_value("set", bits.to_string().as_bytes());
        };
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(label);
    }
    Value::Text(out)
}
