//! Packed binlog value formats: DECIMAL, the temporal types, charsets.
//!
//! Each function produces exactly the canonical value the text protocol gives for the same
//! column (see `crate::types::decode_text`), including the `Value::Unsupported` text of
//! zero dates and out-of-day times, so that snapshot and stream agree.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{NaiveDate, NaiveTime};
use tandem_core::Value;

use super::cursor::{be, le};
use crate::types::{fraction_text, unsupported_value, DecodeError};

fn bad(type_name: &str, reason: &'static str) -> DecodeError {
    DecodeError::Malformed {
        type_name: type_name.to_owned(),
        text: String::new(),
        reason,
    }
}

const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const POW10: [u64; 10] = [
    1,
    10,
    100,
    1000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Bytes a `DECIMAL(precision, scale)` takes in a row.
pub fn decimal_len(precision: u8, scale: u8) -> Result<usize, DecodeError> {
    if scale > precision || precision > 65 || scale > 38 {
        return Err(bad("decimal", "precision and scale out of range"));
    }
    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    let part = |d: usize| DIG2BYTES.get(d % 9).copied().unwrap_or(4);
    Ok(intg / 9 * 4 + part(intg) + frac / 9 * 4 + part(frac))
}

/// Decode MySQL's binary `DECIMAL`: groups of nine digits in four big-endian bytes, a
/// shorter group for the leading integer and trailing fraction digits, the sign in the
/// top bit (negative numbers are stored with every bit inverted).
pub fn decode_decimal(bytes: &[u8], precision: u8, scale: u8) -> Result<Value, DecodeError> {
    let len = decimal_len(precision, scale)?;
    let mut buf = [0u8; 40];
    let raw = bytes
        .get(..len)
        .ok_or_else(|| bad("decimal", "truncated"))?;
    let dst = buf
        .get_mut(..len)
        .ok_or_else(|| bad("decimal", "too long"))?;
    dst.copy_from_slice(raw);
    let first = dst
        .first()
        .copied()
        .ok_or_else(|| bad("decimal", "empty"))?;
    let negative = first & 0x80 == 0;
    if negative {
        dst.iter_mut().for_each(|b| *b = !*b);
    }
    if let Some(b) = dst.first_mut() {
        *b ^= 0x80;
    }
    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    let mut pos = 0usize;
    let mut group = |digits: usize| -> Result<u64, DecodeError> {
        let n = DIG2BYTES
            .get(digits)
            .copied()
            .ok_or_else(|| bad("decimal", "group"))?;
        let v = be(dst
            .get(pos..pos + n)
            .ok_or_else(|| bad("decimal", "truncated"))?);
        pos += n;
        if v >= POW10.get(digits).copied().unwrap_or(0) {
            return Err(bad("decimal", "digit group out of range"));
        }
        Ok(v)
    };
    // The groups in order: the integer part's short leading group, its full groups, the
    // fraction's full groups, its short trailing group. At most 8 + 5 groups (65 digits).
    let mut groups: [(usize, u64); 16] = [(0, 0); 16];
    let mut count = 0usize;
    let sizes = std::iter::once(intg % 9)
        .chain(std::iter::repeat_n(9, intg / 9))
        .chain(std::iter::repeat_n(9, frac / 9))
        .chain(std::iter::once(frac % 9))
        .filter(|&d| d > 0);
    for digits in sizes {
        let v = group(digits)?;
        let slot = groups
            .get_mut(count)
            .ok_or_else(|| bad("decimal", "too many digit groups"))?;
        *slot = (digits, v);
        count += 1;
    }
    let groups = groups.get(..count).unwrap_or(&[]);
    let scale_i64 = i64::from(scale);
    // Up to 38 digits the unscaled value fits an i128: no text round trip (the common
    // case, and the one the hot path meets; the value is the same either way).
    if precision <= 38 {
        let mut unscaled: i128 = 0;
        for &(digits, v) in groups {
            let p = i128::from(POW10.get(digits).copied().unwrap_or(1));
            unscaled = unscaled * p + i128::from(v);
        }
        if negative {
            unscaled = -unscaled;
        }
        // Up to 18 digits (most columns) the value is an i64, whose conversion is cheaper.
        let int = match i64::try_from(unscaled) {
            Ok(small) => bigdecimal::num_bigint::BigInt::from(small),
            Err(_) => bigdecimal::num_bigint::BigInt::from(unscaled),
        };
        return Ok(Value::Decimal(BigDecimal::new(int, scale_i64)));
    }
    decimal_from_text(groups, intg, frac, negative)
}

/// The reference path (any precision): the digits as text, parsed by `BigDecimal`.
fn decimal_from_text(
    groups: &[(usize, u64)],
    intg: usize,
    frac: usize,
    negative: bool,
) -> Result<Value, DecodeError> {
    let mut int_digits = String::with_capacity(intg);
    let mut frac_digits = String::with_capacity(frac);
    let mut seen = 0usize;
    for &(digits, v) in groups {
        let out = if seen < intg {
            &mut int_digits
        } else {
            &mut frac_digits
        };
        seen += digits;
        out.push_str(&format!("{v:0digits$}"));
    }
    // Every group zero-padded, then the integer part's leading zeros dropped (one kept).
    let trimmed = int_digits.trim_start_matches('0');
    let mut s = String::with_capacity(intg + frac + 3);
    if negative {
        s.push('-');
    }
    s.push_str(if trimmed.is_empty() { "0" } else { trimmed });
    if frac > 0 {
        s.push('.');
        s.push_str(&frac_digits);
    }
    BigDecimal::from_str(&s)
        .map(Value::Decimal)
        .map_err(|_| bad("decimal", "not a number"))
}

/// Fractional-second bytes for `fsp` digits, and their value in microseconds.
pub fn frac_len(fsp: u8) -> usize {
    usize::from(fsp.min(6)).div_ceil(2)
}

fn frac_micros(bytes: &[u8], fsp: u8) -> u32 {
    // At most 3 bytes: always fits.
    let v = u32::try_from(be(bytes)).unwrap_or(0);
    match frac_len(fsp) {
        1 => v * 10_000,
        2 => v * 100,
        _ => v,
    }
}

/// `DATE`: 3 bytes little-endian, `year << 9 | month << 5 | day`.
pub fn decode_date(bytes: &[u8]) -> Value {
    let v = le(bytes);
    let (y, m, d) = ((v >> 9) as i32, ((v >> 5) & 15) as u32, (v & 31) as u32);
    match NaiveDate::from_ymd_opt(y, m, d) {
        Some(date) => Value::Date(date),
        None => unsupported_value("date", format!("{y:04}-{m:02}-{d:02}").as_bytes()),
    }
}

/// `DATETIME2`: 5 bytes big-endian, offset by 2^39, then the fraction.
pub fn decode_datetime2(bytes: &[u8], fsp: u8) -> Value {
    let (int, frac) = bytes.split_at(bytes.len().min(5));
    let packed = be(int).wrapping_sub(0x80_0000_0000);
    let ymd = packed >> 17;
    let ym = ymd >> 5;
    let (y, mo, d) = ((ym / 13) as i32, (ym % 13) as u32, (ymd & 31) as u32);
    let hms = packed & 0x1_ffff;
    let (h, mi, s) = (
        (hms >> 12) as u32,
        ((hms >> 6) & 63) as u32,
        (hms & 63) as u32,
    );
    let micros = frac_micros(frac, fsp);
    match NaiveDate::from_ymd_opt(y, mo, d).and_then(|dt| dt.and_hms_micro_opt(h, mi, s, micros)) {
        Some(t) => Value::Timestamp(t),
        None => {
            let text = format!(
                "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                fraction_text(micros, fsp)
            );
            unsupported_value("datetime", text.as_bytes())
        }
    }
}

/// `TIMESTAMP2`: seconds since the epoch (4 bytes big-endian, 0 = zero timestamp), then
/// the fraction. Always UTC, whatever the server's time zone.
pub fn decode_timestamp2(bytes: &[u8], fsp: u8) -> Value {
    let (int, frac) = bytes.split_at(bytes.len().min(4));
    let secs = be(int);
    let micros = frac_micros(frac, fsp);
    if secs == 0 {
        let text = format!("0000-00-00 00:00:00{}", fraction_text(micros, fsp));
        return unsupported_value("timestamp", text.as_bytes());
    }
    match crate::types::utc_from_epoch(secs as i64, micros) {
        Some(t) => Value::TimestampTz(t),
        None => unsupported_value("timestamp", secs.to_string().as_bytes()),
    }
}

/// `TIME2`: 3 bytes big-endian offset by 2^23 (`hours << 12 | minutes << 6 | seconds`),
/// then the fraction; negative values are stored as a two's complement of the whole.
pub fn decode_time2(bytes: &[u8], fsp: u8) -> Value {
    let flen = frac_len(fsp);
    let (int, frac) = bytes.split_at(bytes.len().min(3));
    // MySQL's `my_time_packed_from_binary`: a signed 24.24 fixed-point number.
    let mut intpart = be(int) as i64 - 0x80_0000;
    let packed: i64 = match flen {
        0 => intpart << 24,
        1 => {
            let mut f = i64::from(frac.first().copied().unwrap_or(0) as i8 as u8);
            if intpart < 0 && f != 0 {
                intpart += 1;
                f -= 0x100;
            }
            (intpart << 24) + f * 10_000
        }
        2 => {
            let mut f = be(frac) as i64;
            if intpart < 0 && f != 0 {
                intpart += 1;
                f -= 0x10000;
            }
            (intpart << 24) + f * 100
        }
        _ => (be(int) << 24 | be(frac)) as i64 - 0x8000_0000_0000,
    };
    let negative = packed < 0;
    let abs = packed.unsigned_abs();
    let hms = abs >> 24;
    let micros = (abs % (1 << 24)) as u32;
    let (h, mi, s) = (
        (hms >> 12) % (1 << 10),
        (hms >> 6) % (1 << 6),
        hms % (1 << 6),
    );
    if !negative && h < 24 {
        if let Some(t) = NaiveTime::from_hms_micro_opt(h as u32, mi as u32, s as u32, micros) {
            return Value::Time(t);
        }
    }
    let text = format!(
        "{}{h:02}:{mi:02}:{s:02}{}",
        if negative { "-" } else { "" },
        fraction_text(micros, fsp)
    );
    unsupported_value("time", text.as_bytes())
}

/// Pre-5.6 `TIMESTAMP`: 4 bytes little-endian seconds.
pub fn decode_timestamp_old(bytes: &[u8]) -> Value {
    let secs = le(bytes);
    if secs == 0 {
        return unsupported_value("timestamp", b"0000-00-00 00:00:00");
    }
    match crate::types::utc_from_epoch(secs as i64, 0) {
        Some(t) => Value::TimestampTz(t),
        None => unsupported_value("timestamp", secs.to_string().as_bytes()),
    }
}

/// Pre-5.6 `DATETIME`: 8 bytes little-endian, the decimal number `YYYYMMDDhhmmss`.
pub fn decode_datetime_old(bytes: &[u8]) -> Value {
    let v = le(bytes);
    let (date, time) = (v / 1_000_000, v % 1_000_000);
    let (y, mo, d) = (
        (date / 10_000) as i32,
        (date / 100 % 100) as u32,
        (date % 100) as u32,
    );
    let (h, mi, s) = (
        (time / 10_000) as u32,
        (time / 100 % 100) as u32,
        (time % 100) as u32,
    );
    match NaiveDate::from_ymd_opt(y, mo, d).and_then(|dt| dt.and_hms_opt(h, mi, s)) {
        Some(t) => Value::Timestamp(t),
        None => unsupported_value(
            "datetime",
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}").as_bytes(),
        ),
    }
}

/// Pre-5.6 `TIME`: 3 bytes little-endian signed, the decimal number `hhmmss`.
pub fn decode_time_old(bytes: &[u8]) -> Value {
    let raw = le(bytes) as u32;
    // Sign-extend 24 bits.
    let v = ((raw << 8) as i32) >> 8;
    let abs = v.unsigned_abs();
    let (h, mi, s) = (abs / 10_000, abs / 100 % 100, abs % 100);
    if v >= 0 && h < 24 {
        if let Some(t) = NaiveTime::from_hms_opt(h, mi, s) {
            return Value::Time(t);
        }
    }
    let text = format!("{}{h:02}:{mi:02}:{s:02}", if v < 0 { "-" } else { "" });
    unsupported_value("time", text.as_bytes())
}

/// How a column's bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb4, utf8mb3, ascii, and any charset not known here (checked as UTF-8, so a
    /// mis-guess is an error, never mojibake).
    Utf8,
    /// MySQL's `latin1` is Windows-1252.
    Latin1,
    Binary,
}

impl Charset {
    /// From a collation id (TABLE_MAP metadata). MariaDB numbers its NO PAD variants
    /// 1024 above the PAD collation they mirror.
    pub fn from_collation(id: u32) -> Charset {
        match id % 1024 {
            63 => Charset::Binary,
            5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => Charset::Latin1,
            _ => Charset::Utf8,
        }
    }

    /// From `information_schema.COLUMNS.CHARACTER_SET_NAME`.
    pub fn from_name(name: Option<&str>) -> Charset {
        match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("binary") => Charset::Binary,
            Some("latin1") => Charset::Latin1,
            Some(_) => Charset::Utf8,
        }
    }

    pub fn decode(self, type_name: &str, bytes: &[u8]) -> Result<String, DecodeError> {
        match self {
            Charset::Utf8 | Charset::Binary => std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| DecodeError::InvalidUtf8 {
                    type_name: type_name.to_owned(),
                }),
            Charset::Latin1 => Ok(bytes.iter().map(|&b| cp1252(b)).collect()),
        }
    }
}

fn cp1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9f => HIGH
            .get(usize::from(b - 0x80))
            .and_then(|&c| char::from_u32(u32::from(c)))
            .unwrap_or(char::REPLACEMENT_CHARACTER),
        _ => char::from(b),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Value {
        Value::Decimal(BigDecimal::from_str(s).unwrap())
    }

    #[test]
    fn decimals_decode_exactly() {
        // MySQL manual's example: 1234567890.1234 as DECIMAL(14,4).
        let bytes = [0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2];
        assert_eq!(
            decode_decimal(&bytes, 14, 4).unwrap(),
            dec("1234567890.1234")
        );
        let neg: Vec<u8> = bytes.iter().map(|b| !b).collect();
        assert_eq!(
            decode_decimal(&neg, 14, 4).unwrap(),
            dec("-1234567890.1234")
        );
        // DECIMAL(10,2) value 0.05 and 12.00.
        assert_eq!(decimal_len(10, 2).unwrap(), 5);
        assert_eq!(
            decode_decimal(&[0x80, 0, 0, 0, 5], 10, 2).unwrap(),
            dec("0.05")
        );
        assert_eq!(
            decode_decimal(&[0x80, 0, 0, 12, 0], 10, 2).unwrap(),
            dec("12.00")
        );
        assert!(decode_decimal(&[0x80, 0], 10, 2).is_err());
        assert!(decode_decimal(&[0x80; 40], 66, 2).is_err());
    }

    proptest::proptest! {
        /// The i128 path gives the same value, scale included (so the same text), as the
        /// text path, for every precision it serves.
        #[test]
        fn decimal_fast_path_matches_text(
            precision in 1u8..=38,
            scale_pick in 0u8..=38,
            seed in proptest::collection::vec(0u64..1_000_000_000, 5),
            negative in proptest::bool::ANY,
        ) {
            let scale = scale_pick.min(precision).min(30);
            let intg = usize::from(precision - scale);
            let frac = usize::from(scale);
            let sizes: Vec<usize> = std::iter::once(intg % 9)
                .chain(std::iter::repeat_n(9, intg / 9))
                .chain(std::iter::repeat_n(9, frac / 9))
                .chain(std::iter::once(frac % 9))
                .filter(|&d| d > 0)
                .collect();
            let groups: Vec<(usize, u64)> = sizes
                .iter()
                .zip(seed.iter().cycle())
                .map(|(&d, &v)| (d, v % POW10[d]))
                .collect();
            let mut bytes = Vec::new();
            for &(d, v) in &groups {
                let n = DIG2BYTES[d];
                bytes.extend_from_slice(&v.to_be_bytes()[8 - n..]);
            }
            bytes[0] ^= 0x80;
            if negative {
                bytes.iter_mut().for_each(|b| *b = !*b);
            }
            let fast = decode_decimal(&bytes, precision, scale).unwrap();
            let text = decimal_from_text(&groups, intg, frac, negative).unwrap();
            proptest::prop_assert_eq!(fast.to_string(), text.to_string());
            proptest::prop_assert_eq!(fast, text);
        }
    }

    #[test]
    fn temporal_edge_values() {
        assert_eq!(
            decode_date(&[0, 0, 0]),
            unsupported_value("date", b"0000-00-00")
        );
        // 2024-02-29: 2024 << 9 | 2 << 5 | 29
        let v: u32 = (2024 << 9) | (2 << 5) | 29;
        assert_eq!(decode_date(&v.to_le_bytes()[..3]).to_string(), "2024-02-29");
        assert_eq!(
            decode_timestamp2(&[0, 0, 0, 0, 0, 0, 0], 6),
            unsupported_value("timestamp", b"0000-00-00 00:00:00.000000")
        );
        assert_eq!(
            decode_timestamp2(&[0x7f, 0xff, 0xff, 0xff], 0).to_string(),
            "2038-01-19 03:14:07.000000+00"
        );
        // TIME2(0) 838:59:59 is a valid MySQL TIME, not a time of day.
        let packed: u64 = 0x80_0000 + ((838 << 12) | (59 << 6) | 59);
        assert_eq!(
            decode_time2(&packed.to_be_bytes()[5..], 0),
            unsupported_value("time", b"838:59:59")
        );
        assert_eq!(
            decode_time2(&[0x80, 0x00, 0x00], 0).to_string(),
            "00:00:00.000000"
        );
        assert_eq!(
            Charset::Latin1.decode("t", &[0x80, b'a', 0xe9]).unwrap(),
            "€aé"
        );
    }
}
