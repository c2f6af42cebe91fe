//! MySQL's binary JSON, as a `JSON` column (type 245) carries it in MySQL's binlog, turned
//! into JSON text.
//!
//! MariaDB stores JSON as `LONGTEXT`, so its values arrive as text; MySQL stores (and logs)
//! a binary document, described in MySQL's `sql-common/json_binary.h`:
//!
//! ```text
//! doc       ::= type value
//! type      ::= 0x00 small object | 0x01 large object | 0x02 small array | 0x03 large array
//!             | 0x04 literal | 0x05 int16 | 0x06 uint16 | 0x07 int32 | 0x08 uint32
//!             | 0x09 int64 | 0x0a uint64 | 0x0b double | 0x0c string | 0x0f opaque
//! object    ::= count size key-entry* value-entry* key* value*
//! array     ::= count size value-entry* value*
//! count, size, offsets: 2 bytes in small containers, 4 in large ones (little-endian);
//!              offsets count from the start of the container (its `count`)
//! key-entry ::= key-offset key-length(2 bytes)
//! value-entry ::= type offset-or-inlined-value
//!              (literals and 16-bit integers are inlined; 32-bit ones in large containers)
//! literal   ::= 0x00 null | 0x01 true | 0x02 false
//! string    ::= length(7 bits per byte, high bit: more follow) utf8mb4 bytes
//! opaque    ::= MySQL field type (1 byte) length bytes
//! ```
//!
//! The text is written as MySQL itself prints JSON (`{"a": 1, "b": [true, null]}`, keys
//! in stored order, dates and times as quoted strings with six fractional digits, other
//! opaque values as `"base64:typeN:…"`), so that a value read through the binlog equals
//! the same value read by a `SELECT` (the snapshot path).
//!
//! Every read is bounds-checked; nesting is limited to MySQL's own depth limit, and the
//! text to a fixed multiple of the input, so a document whose offsets point back into
//! itself or share sub-documents cannot recurse or expand without bound. Malformed input
//! gives a [`JsonError`], never a panic.

use std::fmt::Write;

use super::values::decode_decimal;

/// MySQL's maximum JSON nesting depth.
pub const MAX_DEPTH: usize = 100;

/// Why a binary JSON document could not be turned into text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MySQL binary JSON is not valid at byte {at}: {reason}")]
pub struct JsonError {
    /// Offset into the document where decoding failed.
    pub at: usize,
    pub reason: &'static str,
}

mod ty {
    pub const SMALL_OBJECT: u8 = 0x00;
    pub const LARGE_OBJECT: u8 = 0x01;
    pub const SMALL_ARRAY: u8 = 0x02;
    pub const LARGE_ARRAY: u8 = 0x03;
    pub const LITERAL: u8 = 0x04;
    pub const INT16: u8 = 0x05;
    pub const UINT16: u8 = 0x06;
    pub const INT32: u8 = 0x07;
    pub const UINT32: u8 = 0x08;
    pub const INT64: u8 = 0x09;
    pub const UINT64: u8 = 0x0a;
    pub const DOUBLE: u8 = 0x0b;
    pub const STRING: u8 = 0x0c;
    pub const OPAQUE: u8 = 0x0f;
}

/// MySQL field types that opaque values carry and that have a JSON text form of their own.
mod field {
    pub const TIMESTAMP: u8 = 7;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const NEWDECIMAL: u8 = 246;
}

/// Decode a whole binary JSON document (a column value) to JSON text.
///
/// An empty value is JSON `null`, as MySQL reads it.
pub fn to_text(doc: &[u8]) -> Result<String, JsonError> {
    let Some((&t, value)) = doc.split_first() else {
        return Ok("null".to_owned());
    };
    let mut w = Writer {
        out: String::with_capacity(doc.len().saturating_mul(2).min(1 << 20)),
        limit: doc.len().saturating_mul(16).saturating_add(64),
    };
    w.value(t, value, 1, 0)?;
    Ok(w.out)
}

struct Writer {
    out: String,
    /// Most bytes of text the document may expand to (see the module docs).
    limit: usize,
}

fn err(at: usize, reason: &'static str) -> JsonError {
    JsonError { at, reason }
}

/// `n` ≤ 8 little-endian bytes of `buf` at `at`.
fn uint(buf: &[u8], at: usize, n: usize, base: usize) -> Result<u64, JsonError> {
    let bytes = at
        .checked_add(n)
        .and_then(|end| buf.get(at..end))
        .ok_or_else(|| err(base.saturating_add(at), "truncated"))?;
    Ok(super::cursor::le(bytes))
}

fn bytes(buf: &[u8], at: usize, n: usize, base: usize) -> Result<&[u8], JsonError> {
    at.checked_add(n)
        .and_then(|end| buf.get(at..end))
        .ok_or_else(|| err(base.saturating_add(at), "truncated"))
}

/// The variable-length length of strings and opaque values: 7 bits a byte, low bits
/// first, at most 5 bytes (a 32-bit length). Returns the length and the bytes it took.
fn var_len(buf: &[u8], base: usize) -> Result<(usize, usize), JsonError> {
    let mut len: u64 = 0;
    for i in 0..5 {
        let b = *buf
            .get(i)
            .ok_or_else(|| err(base + i, "truncated length"))?;
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let len = usize::try_from(len).map_err(|_| err(base, "length too large"))?;
            return Ok((len, i + 1));
        }
    }
    Err(err(base, "length longer than 5 bytes"))
}

impl Writer {
    fn check_budget(&self, at: usize) -> Result<(), JsonError> {
        if self.out.len() > self.limit {
            return Err(err(at, "the text would be far larger than the document"));
        }
        Ok(())
    }

    /// Write the value of type `t` whose bytes start `value` (which runs to the end of the
    /// enclosing container); `base` is `value`'s offset in the document, for errors.
    fn value(&mut self, t: u8, value: &[u8], depth: usize, base: usize) -> Result<(), JsonError> {
        self.check_budget(base)?;
        match t {
            ty::SMALL_OBJECT | ty::LARGE_OBJECT | ty::SMALL_ARRAY | ty::LARGE_ARRAY => {
                if depth > MAX_DEPTH {
                    return Err(err(base, "nested deeper than MySQL allows"));
                }
                let large = t == ty::LARGE_OBJECT || t == ty::LARGE_ARRAY;
                let object = t == ty::SMALL_OBJECT || t == ty::LARGE_OBJECT;
                self.container(value, large, object, depth, base)
            }
            ty::LITERAL => {
                self.literal(*value.first().ok_or_else(|| err(base, "truncated"))?, base)
            }
            ty::INT16 => {
                let v = uint(value, 0, 2, base)? as u16 as i16;
                self.int(i64::from(v))
            }
            ty::UINT16 => self.uint(uint(value, 0, 2, base)?),
            ty::INT32 => {
                let v = uint(value, 0, 4, base)? as u32 as i32;
                self.int(i64::from(v))
            }
            ty::UINT32 => self.uint(uint(value, 0, 4, base)?),
            ty::INT64 => self.int(uint(value, 0, 8, base)? as i64),
            ty::UINT64 => self.uint(uint(value, 0, 8, base)?),
            ty::DOUBLE => {
                let v = f64::from_bits(uint(value, 0, 8, base)?);
                self.double(v, base)
            }
            ty::STRING => {
                let (len, n) = var_len(value, base)?;
                let s = bytes(value, n, len, base)?;
                let s = std::str::from_utf8(s).map_err(|_| err(base + n, "string is not UTF-8"))?;
                self.string(s);
                Ok(())
            }
            ty::OPAQUE => {
                let field_type = *value.first().ok_or_else(|| err(base, "truncated"))?;
                let (len, n) = var_len(value.get(1..).unwrap_or_default(), base + 1)?;
                let data = bytes(value, 1 + n, len, base)?;
                self.opaque(field_type, data, base)
            }
            _ => Err(err(base, "unknown value type")),
        }
    }

    fn container(
        &mut self,
        buf: &[u8],
        large: bool,
        object: bool,
        depth: usize,
        base: usize,
    ) -> Result<(), JsonError> {
        let w = if large { 4 } else { 2 };
        let count = usize::try_from(uint(buf, 0, w, base)?).unwrap_or(usize::MAX);
        let size = usize::try_from(uint(buf, w, w, base)?).unwrap_or(usize::MAX);
        // Everything of this container, offsets included, lies within its `size` bytes.
        let buf = buf
            .get(..size)
            .ok_or_else(|| err(base, "container larger than its enclosing value"))?;
        let key_entry = w + 2;
        let value_entry = 1 + w;
        let keys_at = 2 * w;
        let values_at = count
            .checked_mul(if object { key_entry } else { 0 })
            .and_then(|k| k.checked_add(keys_at))
            .ok_or_else(|| err(base, "element count too large"))?;
        let entries_end = count
            .checked_mul(value_entry)
            .and_then(|v| v.checked_add(values_at))
            .filter(|&end| end <= size)
            .ok_or_else(|| err(base, "element count larger than the container"))?;
        self.out.push(if object { '{' } else { '[' });
        for i in 0..count {
            if i > 0 {
                self.out.push_str(", ");
            }
            if object {
                let at = keys_at + i * key_entry;
                let key_off = usize::try_from(uint(buf, at, w, base)?).unwrap_or(usize::MAX);
                let key_len = usize::try_from(uint(buf, at + w, 2, base)?).unwrap_or(usize::MAX);
                if key_off < entries_end {
                    return Err(err(base + at, "key inside the entry table"));
                }
                let key = bytes(buf, key_off, key_len, base)?;
                let key = std::str::from_utf8(key)
                    .map_err(|_| err(base + key_off, "key is not UTF-8"))?;
                self.string(key);
                self.out.push_str(": ");
            }
            let at = values_at + i * value_entry;
            let t = *buf.get(at).ok_or_else(|| err(base + at, "truncated"))?;
            let inlined = matches!(t, ty::LITERAL | ty::INT16 | ty::UINT16)
                || (large && matches!(t, ty::INT32 | ty::UINT32));
            if inlined {
                let field = bytes(buf, at + 1, w, base)?;
                self.value(t, field, depth + 1, base + at + 1)?;
            } else {
                let off = usize::try_from(uint(buf, at + 1, w, base)?).unwrap_or(usize::MAX);
                if off < entries_end {
                    return Err(err(base + at, "value inside the entry table"));
                }
                let v = buf
                    .get(off..)
                    .ok_or_else(|| err(base + at, "value offset beyond the container"))?;
                self.value(t, v, depth + 1, base + off)?;
            }
        }
        self.out.push(if object { '}' } else { ']' });
        Ok(())
    }

    fn literal(&mut self, b: u8, base: usize) -> Result<(), JsonError> {
        self.out.push_str(match b {
            0x00 => "null",
            0x01 => "true",
            0x02 => "false",
            _ => return Err(err(base, "unknown literal")),
        });
        Ok(())
    }

    fn int(&mut self, v: i64) -> Result<(), JsonError> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn uint(&mut self, v: u64) -> Result<(), JsonError> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    /// Shortest text that reads back as the same double; integral values keep a `.0`
    /// and large or small ones use an exponent, as MySQL prints them (`1.0`, `1e300`).
    fn double(&mut self, v: f64, base: usize) -> Result<(), JsonError> {
        if !v.is_finite() {
            return Err(err(base, "double is not finite"));
        }
        let _ = write!(self.out, "{v:?}");
        Ok(())
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{08}' => self.out.push_str("\\b"),
                '\u{0c}' => self.out.push_str("\\f"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(self.out, "\\u{:04x}", u32::from(c));
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn opaque(&mut self, field_type: u8, data: &[u8], base: usize) -> Result<(), JsonError> {
        match field_type {
            field::NEWDECIMAL => {
                let (&precision, rest) =
                    data.split_first().ok_or_else(|| err(base, "truncated"))?;
                let (&scale, digits) = rest.split_first().ok_or_else(|| err(base, "truncated"))?;
                match decode_decimal(digits, precision, scale) {
                    Ok(tandem_core::Value::Decimal(d)) => {
                        self.out.push_str(&d.to_plain_string());
                        Ok(())
                    }
                    _ => Err(err(base, "invalid decimal")),
                }
            }
            field::DATE | field::DATETIME | field::TIMESTAMP | field::TIME => {
                let packed = uint(data, 0, 8, base)? as i64;
                let text = if field_type == field::TIME {
                    packed_time(packed)
                } else {
                    packed_datetime(packed, field_type == field::DATE)
                };
                self.string(&text);
                Ok(())
            }
            other => {
                let _ = write!(self.out, "\"base64:type{other}:");
                base64(data, &mut self.out);
                self.out.push('"');
                Ok(())
            }
        }
    }
}

/// MySQL's packed `DATETIME`/`DATE` (`TIME_to_longlong_datetime_packed`): the date and
/// time fields in the high bits, microseconds in the low 24.
fn packed_datetime(packed: i64, date_only: bool) -> String {
    let abs = packed.unsigned_abs();
    let micros = abs & 0xff_ffff;
    let int = abs >> 24;
    let ymd = int >> 17;
    let hms = int & 0x1_ffff;
    let (ym, day) = (ymd >> 5, ymd & 31);
    let (year, month) = (ym / 13, ym % 13);
    let (h, mi, s) = (hms >> 12, (hms >> 6) & 63, hms & 63);
    if date_only {
        format!("{year:04}-{month:02}-{day:02}")
    } else {
        format!("{year:04}-{month:02}-{day:02} {h:02}:{mi:02}:{s:02}.{micros:06}")
    }
}

/// MySQL's packed `TIME` (`TIME_to_longlong_time_packed`), which may be negative and
/// longer than a day.
fn packed_time(packed: i64) -> String {
    let abs = packed.unsigned_abs();
    let micros = abs & 0xff_ffff;
    let hms = abs >> 24;
    let (h, mi, s) = ((hms >> 12) & 0x3ff, (hms >> 6) & 63, hms & 63);
    let sign = if packed < 0 { "-" } else { "" };
    format!("{sign}{h:02}:{mi:02}:{s:02}.{micros:06}")
}

/// Standard base64 with padding.
fn base64(data: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |i: u32| char::from(ALPHABET.get((i & 63) as usize).copied().unwrap_or(b'='));
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A small container by hand, as `json_binary.h` lays it out: `entries` are
    /// (key, type, value bytes); values of inlined types go into the entry itself.
    fn small(object: bool, entries: &[(&str, u8, Vec<u8>)]) -> Vec<u8> {
        let n = entries.len();
        let header = 4 + if object { n * 4 } else { 0 } + n * 3;
        let mut keys: Vec<u8> = Vec::new();
        let mut key_entries: Vec<u8> = Vec::new();
        let mut value_entries: Vec<u8> = Vec::new();
        let mut values: Vec<u8> = Vec::new();
        let key_bytes: usize = entries.iter().map(|e| e.0.len()).sum();
        let values_start = header + if object { key_bytes } else { 0 };
        for (k, t, v) in entries {
            if object {
                let off = header + keys.len();
                key_entries.extend((off as u16).to_le_bytes());
                key_entries.extend((k.len() as u16).to_le_bytes());
                keys.extend(k.as_bytes());
            }
            value_entries.push(*t);
            if matches!(*t, ty::LITERAL | ty::INT16 | ty::UINT16) {
                let mut field = v.clone();
                field.resize(2, 0);
                value_entries.extend(field);
            } else {
                let off = values_start + values.len();
                value_entries.extend((off as u16).to_le_bytes());
                values.extend(v);
            }
        }
        let size = values_start + values.len();
        let mut out = (n as u16).to_le_bytes().to_vec();
        out.extend((size as u16).to_le_bytes());
        out.extend(key_entries);
        out.extend(value_entries);
        out.extend(keys);
        out.extend(values);
        out
    }

    fn doc(t: u8, body: Vec<u8>) -> Vec<u8> {
        let mut d = vec![t];
        d.extend(body);
        d
    }

    #[test]
    fn scalars() {
        assert_eq!(to_text(&[ty::LITERAL, 0]).unwrap(), "null");
        assert_eq!(to_text(&[ty::LITERAL, 1]).unwrap(), "true");
        assert_eq!(to_text(&[ty::LITERAL, 2]).unwrap(), "false");
        assert_eq!(
            to_text(&doc(ty::INT16, (-5i16).to_le_bytes().to_vec())).unwrap(),
            "-5"
        );
        assert_eq!(
            to_text(&doc(ty::UINT16, 65535u16.to_le_bytes().to_vec())).unwrap(),
            "65535"
        );
        assert_eq!(
            to_text(&doc(ty::INT32, i32::MIN.to_le_bytes().to_vec())).unwrap(),
            "-2147483648"
        );
        assert_eq!(
            to_text(&doc(ty::UINT32, u32::MAX.to_le_bytes().to_vec())).unwrap(),
            "4294967295"
        );
        assert_eq!(
            to_text(&doc(ty::INT64, i64::MIN.to_le_bytes().to_vec())).unwrap(),
            "-9223372036854775808"
        );
        assert_eq!(
            to_text(&doc(ty::UINT64, u64::MAX.to_le_bytes().to_vec())).unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            to_text(&doc(ty::DOUBLE, 2.5f64.to_le_bytes().to_vec())).unwrap(),
            "2.5"
        );
        assert_eq!(
            to_text(&doc(ty::DOUBLE, 1.0f64.to_le_bytes().to_vec())).unwrap(),
            "1.0"
        );
        assert_eq!(
            to_text(&doc(ty::DOUBLE, 1e300f64.to_le_bytes().to_vec())).unwrap(),
            "1e300"
        );
        let mut s = vec![ty::STRING, 7];
        s.extend("a\"\\\n\u{1}é".as_bytes());
        assert_eq!(to_text(&s).unwrap(), r#""a\"\\\n\u0001é""#);
        assert_eq!(to_text(&[]).unwrap(), "null");
    }

    #[test]
    fn string_lengths_take_seven_bits_a_byte() {
        let text = "x".repeat(300);
        // 300 = 0b10_0101100: low 7 bits 0x2c with the continuation bit, then 2.
        let mut d = vec![ty::STRING, 0xac, 0x02];
        d.extend(text.as_bytes());
        assert_eq!(to_text(&d).unwrap(), format!("\"{text}\""));
        assert!(to_text(&[ty::STRING, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
    }

    #[test]
    fn small_objects_and_arrays() {
        // {"a": [1, 2.5, null, "x"], "bb": true}: MySQL sorts keys by length, then bytes.
        let arr = small(
            false,
            &[
                ("", ty::INT16, 1i16.to_le_bytes().to_vec()),
                ("", ty::DOUBLE, 2.5f64.to_le_bytes().to_vec()),
                ("", ty::LITERAL, vec![0]),
                ("", ty::STRING, vec![1, b'x']),
            ],
        );
        let obj = small(
            true,
            &[("a", ty::SMALL_ARRAY, arr), ("bb", ty::LITERAL, vec![1])],
        );
        assert_eq!(
            to_text(&doc(ty::SMALL_OBJECT, obj)).unwrap(),
            r#"{"a": [1, 2.5, null, "x"], "bb": true}"#
        );
        assert_eq!(
            to_text(&doc(ty::SMALL_OBJECT, small(true, &[]))).unwrap(),
            "{}"
        );
        assert_eq!(
            to_text(&doc(ty::SMALL_ARRAY, small(false, &[]))).unwrap(),
            "[]"
        );
    }

    #[test]
    fn large_containers_inline_32_bit_integers() {
        // [-7, 4000000000, "é"] as a large array: count, size, entries of 1 + 4 bytes.
        let header = 8 + 3 * 5;
        let mut d = vec![ty::LARGE_ARRAY];
        let str_val = [2u8, 0xc3, 0xa9];
        d.extend(3u32.to_le_bytes());
        d.extend(((header + str_val.len()) as u32).to_le_bytes());
        d.push(ty::INT32);
        d.extend((-7i32).to_le_bytes());
        d.push(ty::UINT32);
        d.extend(4_000_000_000u32.to_le_bytes());
        d.push(ty::STRING);
        d.extend((header as u32).to_le_bytes());
        d.extend(str_val);
        assert_eq!(to_text(&d).unwrap(), r#"[-7, 4000000000, "é"]"#);
    }

    #[test]
    fn opaque_dates_times_and_decimals() {
        let opaque = |field: u8, data: Vec<u8>| {
            let mut d = vec![ty::OPAQUE, field, data.len() as u8];
            d.extend(data);
            d
        };
        // 2015-01-15 23:24:25.5: ((ymd << 17 | hms) << 24) + micros.
        let ymd: i64 = ((2015 * 13 + 1) << 5) | 15;
        let hms: i64 = (23 << 12) | (24 << 6) | 25;
        let dt = (((ymd << 17) | hms) << 24) + 500_000;
        assert_eq!(
            to_text(&opaque(field::DATETIME, dt.to_le_bytes().to_vec())).unwrap(),
            r#""2015-01-15 23:24:25.500000""#
        );
        let date = (ymd << 17) << 24;
        assert_eq!(
            to_text(&opaque(field::DATE, date.to_le_bytes().to_vec())).unwrap(),
            r#""2015-01-15""#
        );
        let t = -(((838i64 << 12) | (59 << 6) | 59) << 24);
        assert_eq!(
            to_text(&opaque(field::TIME, t.to_le_bytes().to_vec())).unwrap(),
            r#""-838:59:59.000000""#
        );
        // DECIMAL(14,4) 1234567890.1234 (the MySQL manual's example bytes).
        let dec = vec![14, 4, 0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2];
        assert_eq!(
            to_text(&opaque(field::NEWDECIMAL, dec)).unwrap(),
            "1234567890.1234"
        );
        assert_eq!(
            to_text(&opaque(252, b"hi!!".to_vec())).unwrap(),
            r#""base64:type252:aGkhIQ==""#
        );
    }

    #[test]
    fn malformed_documents_are_errors() {
        let arr = small(false, &[("", ty::STRING, vec![1, b'x'])]);
        let good = doc(ty::SMALL_ARRAY, arr.clone());
        assert!(to_text(&good).is_ok());
        for cut in 1..good.len() {
            assert!(to_text(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(to_text(&[0x0d]).is_err(), "unknown type");
        assert!(to_text(&[ty::LITERAL, 3]).is_err(), "unknown literal");
        assert!(to_text(&[ty::STRING, 2, 0xff, 0xfe]).is_err(), "not UTF-8");
        // A value offset pointing back into its container's entry table (a cycle).
        let mut selfref = small(false, &[("", ty::SMALL_ARRAY, vec![])]);
        selfref[5..7].copy_from_slice(&0u16.to_le_bytes());
        assert!(to_text(&doc(ty::SMALL_ARRAY, selfref)).is_err());
        // Count larger than the container.
        let mut big = arr;
        big[0] = 200;
        assert!(to_text(&doc(ty::SMALL_ARRAY, big)).is_err());
    }

    #[test]
    fn shared_sub_documents_cannot_blow_up() {
        // Each level is an array of two entries pointing at the same next level: 2^depth
        // values from a few hundred bytes. It must fail on the budget, quickly.
        let mut inner = small(false, &[]);
        for _ in 0..60 {
            let n = inner.len();
            let header = 4 + 2 * 3;
            let mut next = 2u16.to_le_bytes().to_vec();
            next.extend(((header + n) as u16).to_le_bytes());
            for _ in 0..2 {
                next.push(ty::SMALL_ARRAY);
                next.extend((header as u16).to_le_bytes());
            }
            next.extend(&inner);
            inner = next;
            if inner.len() > 60_000 {
                break;
            }
        }
        let e = to_text(&doc(ty::SMALL_ARRAY, inner)).unwrap_err();
        assert!(e.reason.contains("larger"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(d in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = to_text(&d);
        }
    }
}
