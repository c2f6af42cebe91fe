//! The seam `tandem verify` compares two tables through: checksums computed inside each
//! database, and the rows of the chunks whose checksums differ.
//!
//! Pulling millions of rows through tandem to compare them costs minutes; asking each
//! database for a checksum per chunk of rows costs one scan. For the two databases'
//! checksums to be comparable, both endpoint crates compute them from the same **canonical
//! text** of a row and split rows into the same chunks. The contract, which
//! `tandem_postgres::verify` and `tandem_mysql::verify` both implement in SQL:
//!
//! - **Column text.** Each mapped column renders as text that is equal on both sides for
//!   values tandem considers equal: integers and decimals in plain decimal with trailing
//!   fractional zeros (and a trailing point) removed (`12.50` → `12.5`, `7.00` → `7`);
//!   booleans as `1`/`0`; dates `YYYY-MM-DD`; times `HH:MM:SS.ffffff`; timestamps
//!   `YYYY-MM-DD HH:MM:SS.ffffff` in UTC; text as its UTF-8 characters; binary as lowercase
//!   hex; NULL as the single character U+001E. JSON columns are left out of the checksum
//!   (`jsonb` reorders keys, MariaDB keeps the text as written) and compared value by value
//!   in the rows fetched for differing chunks only.
//! - **Key text** ([`KeyedRow::key`]): the key columns' texts joined with U+001F.
//! - **Chunk** of a row: a label computed from its key alone, by one of three
//!   [`Chunking`]s that verify picks per table. Both databases compute the same label for
//!   the same key whatever their collations, because it is a function of the key's text or
//!   integer, never of a sort order; a sort order only decides whether fetching the rows of
//!   a chunk back is an index range scan (fast) or a table scan (slow), never which rows a
//!   chunk holds:
//!   - [`Chunking::IntRange`] (one integer key column): `(max(key, min) − min) div width`.
//!     A chunk is a key range: its rows come back by an index range scan.
//!   - [`Chunking::Prefix`] (one text key column, where both servers can scan a key prefix
//!     through the index: PostgreSQL with a `C` collation, MySQL/MariaDB always, since
//!     `LIKE 'prefix%'` matches at least the rows with that exact prefix under any
//!     collation): the first `chars` characters of the key text, U+001F, and the md5 chunk
//!     number modulo `subs`. Rows come back by a prefix range scan and are filtered by the
//!     exact label.
//!   - [`Chunking::Hash`] (anything else): the first 8 hex digits of `md5(key text)` as an
//!     unsigned number, modulo the chunk count. Fetching its rows costs a table scan.
//! - **Row hash**: the first 15 hex digits of `md5` of the row text (the columns' texts
//!   joined with U+001F), as an unsigned number below 2⁶⁰; a chunk's checksum is the row
//!   count and the exact sum of its rows' hashes (order-free, so no sort is needed).
//!
//! The same texts, chunk labels and hashes are computed in tandem by [`canonical_text`],
//! [`Chunking::label`] and [`row_hash`], for a side whose rows must pass through the
//! mapping's `where` filter or column transforms before they can be compared (the
//! databases cannot evaluate tandem's expressions).
//!
//! Canonical texts only decide which chunks are fetched. Whether two rows differ is decided
//! on the fetched, decoded values with [`crate::Value::same_as`], so a type whose text
//! differs between the databases for equal values (floats print differently) costs speed,
//! never a false report.

use async_trait::async_trait;
use md5::{Digest, Md5};

use crate::change::TableId;
use crate::error::StageError;
use crate::sink::{ConflictRecord, RowWrite, TargetTable};
use crate::value::{ColumnType, Value};

/// The character a NULL column renders as in the row text.
pub const NULL_MARK: char = '\u{1e}';
/// The character between column texts.
pub const SEPARATOR: char = '\u{1f}';

/// One mapped table as verify reads it on one endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyTable {
    pub table: TableId,
    /// The mapped columns on this endpoint, in mapping order, with their types.
    pub columns: Vec<(String, ColumnType)>,
    /// Indexes into `columns` of the key, in the key's order.
    pub key: Vec<usize>,
}

/// Row count and hash sum of one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkSum {
    /// The chunk's label (see [`Chunking`]).
    pub chunk: String,
    pub rows: u64,
    pub hash: u128,
}

/// A row read for comparison: its key text and its mapped columns' values.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedRow {
    pub key: String,
    pub values: Vec<Value>,
}

/// What `tandem verify` needs from an endpoint.
#[async_trait]
pub trait VerifyReader: Send {
    /// About how many rows the table holds (the catalog's estimate; exact for small tables).
    async fn estimate_rows(&mut self, table: &VerifyTable) -> Result<u64, StageError>;

    /// What [`choose_chunking`] needs to know about the key (cheap: index look-ups and a
    /// small sample).
    async fn key_profile(
        &mut self,
        table: &VerifyTable,
        estimate: u64,
    ) -> Result<KeyProfile, StageError>;

    /// Count and hash sum of every non-empty chunk.
    async fn chunk_sums(
        &mut self,
        table: &VerifyTable,
        chunking: &Chunking,
    ) -> Result<Vec<ChunkSum>, StageError>;

    /// The rows of the listed chunks (labels from [`VerifyReader::chunk_sums`]).
    async fn rows_in_chunks(
        &mut self,
        table: &VerifyTable,
        chunking: &Chunking,
        which: &[String],
    ) -> Result<Vec<KeyedRow>, StageError>;

    /// Every row of the table, in `table`'s columns, handed to `each` one at a time
    /// (streamed: never the whole table in memory). For sides hashed in tandem.
    async fn scan(
        &mut self,
        table: &VerifyTable,
        each: &mut (dyn FnMut(Vec<Value>) -> Result<(), StageError> + Send),
    ) -> Result<(), StageError>;

    /// The rows with these keys (each in key order, in this endpoint's types); missing keys
    /// are simply absent from the result.
    async fn rows_by_key(
        &mut self,
        table: &VerifyTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<KeyedRow>, StageError>;

    /// Apply repair writes and record them, in one transaction, tagged as tandem's own so
    /// that the daemon's reader does not replicate them back (a repaired counter would be
    /// counted twice under `delta`).
    async fn repair(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
        records: &[ConflictRecord],
    ) -> Result<(), StageError>;
}

/// What one endpoint knows about a table's key, for [`choose_chunking`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyProfile {
    /// Smallest and largest key, for a single integer key column (`None` when empty).
    pub int_bounds: Option<(i128, i128)>,
    /// For a single text key column: whether rows with a given key prefix can be read
    /// through the key's index (see [`Chunking::Prefix`]).
    pub prefix_scannable: bool,
    /// For a single text key column: key texts spread evenly over the table (empty when
    /// this endpoint cannot sample cheaply).
    pub sample: Vec<String>,
}

/// How a table's rows are split into chunks (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunking {
    Hash { chunks: u32 },
    IntRange { min: i128, width: u64 },
    Prefix { chars: u32, subs: u32 },
}

/// Rows of a prefix group the sample must show before a longer prefix is preferred: a
/// group is fetched whole when one of its chunks differs.
const PREFIX_SHARE: f64 = 0.25;

/// The chunking for a table of about `estimate` rows aiming at `target` chunks, from the
/// key's types on both sides (`int_key`/`text_key`: a single key column of that kind on
/// both) and both endpoints' key profiles.
pub fn choose_chunking(
    estimate: u64,
    target: u32,
    rows_per_chunk: u64,
    int_key: bool,
    text_key: bool,
    profiles: [&KeyProfile; 2],
) -> Chunking {
    let hash = Chunking::Hash {
        chunks: target.max(1),
    };
    if int_key {
        let bounds: Vec<(i128, i128)> = profiles.iter().filter_map(|p| p.int_bounds).collect();
        let (Some(min), Some(max)) = (
            bounds.iter().map(|b| b.0).min(),
            bounds.iter().map(|b| b.1).max(),
        ) else {
            return hash;
        };
        let span = u128::try_from(max - min + 1).unwrap_or(1);
        let width = span.div_ceil(u128::from(target.max(1))).max(1);
        return Chunking::IntRange {
            min,
            width: u64::try_from(width).unwrap_or(u64::MAX),
        };
    }
    if !text_key || !profiles.iter().all(|p| p.prefix_scannable) {
        return hash;
    }
    let mut sample: Vec<&str> = profiles
        .iter()
        .flat_map(|p| p.sample.iter().map(String::as_str))
        .collect();
    sample.sort_unstable();
    sample.dedup();
    if sample.len() < 2 {
        return hash;
    }
    // Adjacent sample keys are `gap` rows apart; if a share `s` of adjacent pairs have the
    // same L-character prefix, prefix groups hold about gap / (1 − s) rows. The longest
    // prefix most pairs share gives groups of a few gaps: small enough to fetch whole.
    let gap = (estimate.max(sample.len() as u64) as f64) / sample.len() as f64;
    let longest = sample.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    let pairs = (sample.len() - 1) as f64;
    let mut best: Option<(u32, f64)> = None;
    for chars in 1..=longest {
        let shared = sample
            .windows(2)
            .filter(|w| prefix(w[0], chars) == prefix(w[1], chars))
            .count() as f64;
        let share = shared / pairs;
        if share < PREFIX_SHARE {
            break;
        }
        best = Some((u32::try_from(chars).unwrap_or(u32::MAX), share));
    }
    let Some((chars, share)) = best else {
        return hash;
    };
    let group_rows = (gap / (1.0 - share).max(1.0 / pairs)).min(estimate.max(1) as f64);
    let groups = (estimate as f64 / group_rows).max(1.0);
    let subs = (group_rows / rows_per_chunk.max(1) as f64)
        .round()
        .clamp(1.0, (f64::from(target) / groups).max(1.0));
    Chunking::Prefix {
        chars,
        subs: subs as u32,
    }
}

/// The first `chars` characters of `s`.
pub fn prefix(s: &str, chars: usize) -> &str {
    match s.char_indices().nth(chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The smallest string above every string starting with `p` in code point (= UTF-8 byte)
/// order, or `None` when there is none (`p` empty or made of U+10FFFF only).
pub fn prefix_end(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn md5_prefix(text: &str, hex_digits: usize) -> u64 {
    let digest = Md5::digest(text.as_bytes());
    let mut n: u64 = 0;
    for i in 0..hex_digits {
        let byte = digest.get(i / 2).copied().unwrap_or(0);
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
        n = (n << 4) | u64::from(nibble);
    }
    n
}

/// The md5 chunk number of a key text, below `chunks`.
pub fn hash_chunk(key_text: &str, chunks: u32) -> u64 {
    md5_prefix(key_text, 8) % u64::from(chunks.max(1))
}

impl Chunking {
    /// The label of the row with this key text (and, for [`Chunking::IntRange`], integer
    /// key), as both databases compute it.
    pub fn label(&self, key_text: &str, key: Option<&Value>) -> Option<String> {
        Some(match self {
            Chunking::Hash { chunks } => hash_chunk(key_text, *chunks).to_string(),
            Chunking::IntRange { min, width } => {
                let k = match key? {
                    Value::Int(i) => i128::from(*i),
                    Value::UInt(u) => i128::from(*u),
                    _ => return None,
                };
                ((k.max(*min) - min) / i128::from((*width).max(1))).to_string()
            }
            Chunking::Prefix { chars, subs } => format!(
                "{}{SEPARATOR}{}",
                prefix(key_text, *chars as usize),
                hash_chunk(key_text, *subs)
            ),
        })
    }

    /// For [`Chunking::IntRange`]: the key range `[lo, hi)` of a label (`lo` `None` for
    /// label 0, which also holds every key below `min`).
    pub fn int_range(&self, label: &str) -> Option<(Option<i128>, i128)> {
        let Chunking::IntRange { min, width } = self else {
            return None;
        };
        let l: i128 = label.parse().ok()?;
        let w = i128::from(*width);
        let hi = min.checked_add(l.checked_add(1)?.checked_mul(w)?)?;
        Some(((l > 0).then(|| min + l * w), hi))
    }

    /// For [`Chunking::Prefix`]: the key prefix of a label.
    pub fn prefix_of<'l>(&self, label: &'l str) -> Option<&'l str> {
        matches!(self, Chunking::Prefix { .. })
            .then(|| label.rsplit_once(SEPARATOR).map(|(p, _)| p))
            .flatten()
    }
}

/// A value's canonical text in the contract above (`None` for a JSON column, which is left
/// out; NULL is [`NULL_MARK`]).
pub fn canonical_text(v: &Value, ty: &ColumnType) -> Option<String> {
    if matches!(ty, ColumnType::Json) {
        return None;
    }
    Some(match v {
        Value::Null => NULL_MARK.to_string(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(d) => {
            let plain = d.to_plain_string();
            if plain.contains('.') {
                plain.trim_end_matches('0').trim_end_matches('.').to_owned()
            } else {
                plain
            }
        }
        Value::Text(s) | Value::Json(s) => s.clone(),
        Value::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::Time(t) => t.format("%H:%M:%S%.6f").to_string(),
        Value::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        Value::TimestampTz(t) => t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        Value::Uuid(u) => u.hyphenated().to_string(),
        Value::Unsupported { text, .. } => text.clone(),
    })
}

/// The key text of a row of `t` (its values in `t`'s columns).
pub fn key_text(t: &VerifyTable, values: &[Value]) -> String {
    let parts: Vec<String> = t
        .key
        .iter()
        .filter_map(|&i| {
            let v = values.get(i)?;
            if v.is_null() {
                return None; // concat_ws skips NULLs on both servers
            }
            let ty = &t.columns.get(i)?.1;
            Some(canonical_text(v, ty).unwrap_or_else(|| v.to_string()))
        })
        .collect();
    parts.join(&SEPARATOR.to_string())
}

/// The row hash of a row of `t`, as both databases compute it.
pub fn row_hash(t: &VerifyTable, values: &[Value]) -> u64 {
    let parts: Vec<String> = t
        .columns
        .iter()
        .zip(values)
        .filter_map(|((_, ty), v)| canonical_text(v, ty))
        .collect();
    md5_prefix(&parts.join(&SEPARATOR.to_string()), 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_profile(sample: &[String]) -> KeyProfile {
        KeyProfile {
            int_bounds: None,
            prefix_scannable: true,
            sample: sample.to_vec(),
        }
    }

    #[test]
    fn sku_keys_get_prefix_groups_of_about_a_thousand_rows() {
        // 20,000 evenly spaced keys of 5,000,000 `SKU-00000001`-style keys.
        let sample: Vec<String> = (0..20_000u64)
            .map(|i| format!("SKU-{:08}", 1 + i * 250))
            .collect();
        let p = text_profile(&sample);
        let c = choose_chunking(5_000_000, 25_000, 200, false, true, [&p, &p]);
        assert_eq!(c, Chunking::Prefix { chars: 9, subs: 5 });
    }

    #[test]
    fn small_or_unscannable_tables_use_hash_chunks() {
        let p = KeyProfile {
            prefix_scannable: false,
            ..text_profile(&["a".into(), "b".into()])
        };
        let c = choose_chunking(1000, 5, 200, false, true, [&p, &p]);
        assert_eq!(c, Chunking::Hash { chunks: 5 });
        let empty = KeyProfile::default();
        let c = choose_chunking(0, 1, 200, true, false, [&empty, &empty]);
        assert_eq!(c, Chunking::Hash { chunks: 1 });
    }

    #[test]
    fn integer_ranges_cover_both_sides_bounds() {
        let a = KeyProfile {
            int_bounds: Some((-5, 1000)),
            ..KeyProfile::default()
        };
        let b = KeyProfile {
            int_bounds: Some((1, 1994)),
            ..KeyProfile::default()
        };
        let c = choose_chunking(2000, 10, 200, true, false, [&a, &b]);
        assert_eq!(
            c,
            Chunking::IntRange {
                min: -5,
                width: 200
            }
        );
        assert_eq!(c.label("", Some(&Value::Int(-5))).as_deref(), Some("0"));
        assert_eq!(c.label("", Some(&Value::Int(-100))).as_deref(), Some("0"));
        assert_eq!(c.label("", Some(&Value::Int(195))).as_deref(), Some("1"));
        assert_eq!(c.int_range("0"), Some((None, 195)));
        assert_eq!(c.int_range("1"), Some((Some(195), 395)));
    }

    #[test]
    fn prefix_labels_and_ends() {
        let c = Chunking::Prefix { chars: 3, subs: 4 };
        let label = c.label("abcdef", None).unwrap();
        assert!(label.starts_with("abc\u{1f}"));
        assert_eq!(c.prefix_of(&label), Some("abc"));
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_end("\u{10ffff}"), None);
        assert_eq!(prefix("zé!", 2), "zé");
    }

    #[test]
    fn canonical_texts_match_the_servers() {
        let dec = |s: &str| Value::Decimal(s.parse().unwrap());
        let ty = ColumnType::Decimal {
            precision: Some(12),
            scale: Some(2),
        };
        assert_eq!(canonical_text(&dec("12.50"), &ty).unwrap(), "12.5");
        assert_eq!(canonical_text(&dec("7.00"), &ty).unwrap(), "7");
        assert_eq!(canonical_text(&dec("100"), &ty).unwrap(), "100");
        assert_eq!(canonical_text(&dec("0.00"), &ty).unwrap(), "0");
        assert_eq!(canonical_text(&Value::Null, &ty).unwrap(), "\u{1e}");
        assert_eq!(
            canonical_text(&Value::Json("{}".into()), &ColumnType::Json),
            None
        );
        // md5('abc') = 900150983cd24fb0d6963f7d28e17f72
        assert_eq!(
            hash_chunk("abc", u32::MAX),
            0x9001_5098 % u64::from(u32::MAX)
        );
    }
}
