//! Statement shapes and batching for [`super::MySqlSink`]: how writes are grouped into
//! runs, chunked under the protocol's limits, padded to few shapes, and how a server's
//! answer is matched back to the keys and writes it concerns.
//!
//! Everything here is pure, so that the limits (65,535 placeholders, the packet budget),
//! the ordering rules and the error attribution are unit-tested without a server.

use std::collections::{BTreeSet, HashMap, HashSet};

use mysql_async::Row;
use tandem_core::error::StageError;
use tandem_core::sink::{RowWrite, TargetTable};
use tandem_core::{ColumnType, Value};

use crate::connect::{classify, is_transient_code, server_advice};
use crate::types::from_mysql_value;

/// Most placeholders one statement may have (the protocol's 16-bit count).
const MAX_PLACEHOLDERS: usize = 65_535;
/// Most rows one statement carries; beyond this the gain is nil and lock sets grow.
const MAX_ROWS: usize = 1024;
/// Assumed size of a fixed-width value when budgeting packet size.
const FIXED_VALUE_BYTES: usize = 16;

/// How many writes from the start of `writes` form one statement: same kind, same updated
/// columns, and (for updates, whose join picks an arbitrary row for a repeated key) no key
/// twice.
pub(super) fn run_len(writes: &[&RowWrite]) -> usize {
    let Some(&first) = writes.first() else {
        return 0;
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut n = 0;
    for &w in writes {
        let same = match (first, w) {
            (RowWrite::Insert { .. }, RowWrite::Insert { .. }) => true,
            (RowWrite::Delete { .. }, RowWrite::Delete { .. }) => true,
            (RowWrite::Update { columns: a, .. }, RowWrite::Update { key, columns: b }) => {
                let same_cols = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0);
                same_cols && seen.insert(format!("{key:?}"))
            }
            _ => false,
        };
        if !same {
            break;
        }
        n += 1;
    }
    n
}

/// Rank of a write's kind in the order [`apply_order`] gives: deletes, updates, inserts.
fn kind_rank(w: &RowWrite) -> u8 {
    match w {
        RowWrite::Delete { .. } => 0,
        RowWrite::Update { .. } => 1,
        RowWrite::Insert { .. } => 2,
    }
}

/// Whether [`apply_order`] would move any write: some write comes after one of a later
/// kind (an insert before a delete, say).
pub(super) fn kinds_interleave(writes: &[RowWrite]) -> bool {
    writes
        .windows(2)
        .any(|w| matches!(w, [a, b] if kind_rank(a) > kind_rank(b)))
}

/// The order in which to apply `writes` (indexes into them). When `kinds_apart` (the table
/// has nothing that makes one row's write depend on another's: see
/// `MySqlSink::groups_kinds`) and no two writes' keys can be one key to the server, the
/// deletes, then the updates, then the inserts, each kind in its given order: one
/// statement per kind instead of one per run of it (the applier gives its writes in the
/// order their keys first appear in the batch, so a batch of several source transactions
/// alternates kinds). Otherwise as given.
///
/// Writes to distinct keys commute, except through what the moves could reorder: a delete
/// moved earlier only frees key and unique values sooner, an insert moved later only takes
/// them later, and updates keep their order among themselves, so a unique index that
/// accepted the given order accepts this one. Keys the server equates though they differ
/// as values (`'abc'`/`'ABC'` under `_ci`) keep the given order, so a lost insert is still
/// reported as the batch's own collision (`sink/collision.rs`).
pub(super) fn apply_order(t: &TargetTable, writes: &[RowWrite], kinds_apart: bool) -> Vec<usize> {
    let given = || (0..writes.len()).collect();
    if !kinds_apart || !kinds_interleave(writes) {
        return given();
    }
    let mut buckets: HashSet<String> = HashSet::with_capacity(writes.len());
    for w in writes {
        let bucket = match w {
            RowWrite::Insert { values } => {
                match_bucket(t.key.iter().filter_map(|&i| values.get(i)))
            }
            RowWrite::Update { key, .. } | RowWrite::Delete { key } => match_bucket(key),
        };
        if !buckets.insert(bucket) {
            return given();
        }
    }
    let mut order: Vec<usize> = (0..writes.len()).collect();
    // Stable: each kind keeps its given order.
    order.sort_by_key(|&i| writes.get(i).map_or(0, kind_rank));
    order
}

/// Split `items` into chunks that respect the placeholder limit, [`MAX_ROWS`] and the
/// packet budget; yields (offset of the chunk, chunk). A chunk holds at least one item.
pub(super) fn chunks<T>(
    items: &[T],
    width: usize,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<(usize, &[T])> {
    // Padding rounds a chunk up to at most the next power of two, which must still fit the
    // limits.
    let by_params = MAX_PLACEHOLDERS / width.max(1);
    let max_rows = prev_power_of_two(MAX_ROWS.min(by_params).max(1));
    let mut out = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < items.len() && end - start < max_rows {
            let s = items.get(end).map_or(0, &size);
            if end > start && bytes + s > budget {
                break;
            }
            bytes += s;
            end += 1;
        }
        out.push((start, items.get(start..end).unwrap_or_default()));
        start = end;
    }
    out
}

fn prev_power_of_two(n: usize) -> usize {
    if n.is_power_of_two() {
        n
    } else {
        n.next_power_of_two() / 2
    }
}

/// The padded row count for a chunk of `n`: the next power of two, or three quarters of it
/// when that is enough (1, 2, 3, 4, 6, 8, 12, …, 768, 1024). Padding rows are not free:
/// a repeated insert row is a duplicate key the server looks up and leaves alone, a
/// repeated update row one more row of the join; powers of two alone padded a run of 300
/// deletes to 512 rows and one of 700 updates to 1,024.
pub(super) fn padded(n: usize) -> usize {
    let p = n.max(1).next_power_of_two();
    if p >= 4 && n <= p / 4 * 3 {
        p / 4 * 3
    } else {
        p
    }
}

/// The chunk, then its last item repeated up to `n` items.
pub(super) fn pad<T>(chunk: &[T], n: usize) -> impl Iterator<Item = &T> {
    let extra = n.saturating_sub(chunk.len());
    chunk
        .iter()
        .chain(chunk.last().into_iter().cycle().take(extra))
}

pub(super) fn placeholders(n: usize) -> String {
    format!("({})", vec!["?"; n].join(", "))
}

/// `n` rows of parameters as a derived table with columns `aliases`:
/// `SELECT ? AS a, ? AS b UNION ALL SELECT ?, ? …`.
pub(super) fn derived_rows(aliases: &[String], n: usize) -> String {
    let first: Vec<String> = aliases.iter().map(|a| format!("? AS {a}")).collect();
    let rest = format!(
        " UNION ALL SELECT {}",
        placeholders(aliases.len()).trim_matches(['(', ')'])
    );
    format!(
        "SELECT {}{}",
        first.join(", "),
        rest.repeat(n.saturating_sub(1))
    )
}

/// A multi-row insert of `n` rows of every column of `t` that leaves an existing key alone
/// (`k = k`): such a row, and a padding row, counts 0 affected rows.
pub(super) fn insert_sql(t: &TargetTable, n: usize) -> String {
    let cols: Vec<String> = t.columns.iter().map(|(n, _)| ident(n)).collect();
    let update = t
        .key_names()
        .next()
        .map(|k| format!("{0} = {0}", ident(k)))
        .unwrap_or_default();
    let row_ph = placeholders(cols.len());
    format!(
        "INSERT INTO {} ({}) VALUES {} ON DUPLICATE KEY UPDATE {update}",
        table_ident(t),
        cols.join(", "),
        vec![row_ph.as_str(); n].join(", ")
    )
}

/// `k IN (?, …)` or `(k1, k2) IN ((?, ?), …)` for `n` keys.
pub(super) fn key_in(key_cols: &[String], n: usize) -> String {
    if let [k] = key_cols {
        format!("{k} IN {}", placeholders(n))
    } else {
        format!(
            "({}) IN ({})",
            key_cols.join(", "),
            vec![placeholders(key_cols.len()); n].join(", ")
        )
    }
}

/// A MySQL identifier, quoted.
pub(super) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

pub(super) fn table_ident(t: &TargetTable) -> String {
    format!("{}.{}", ident(&t.table.schema), ident(&t.table.name))
}

pub(super) fn value_size(v: &Value) -> usize {
    match v {
        Value::Text(s) | Value::Json(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Unsupported { text, .. } => text.len(),
        _ => FIXED_VALUE_BYTES,
    }
}

pub(super) fn size_of_values(vs: &[Value]) -> usize {
    vs.iter().map(value_size).sum()
}

pub(super) fn decode_row(t: &TargetTable, row: &Row) -> Result<Vec<Value>, StageError> {
    t.columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            let raw = row.as_ref(i).ok_or_else(|| {
                StageError::definite(
                    format!(
                        "The server returned fewer columns than asked for from {}",
                        t.table
                    ),
                    "report this as a tandem bug with the server version",
                )
            })?;
            from_mysql_value(ty, raw).map_err(|e| {
                StageError::definite_from(
                    format!("Reading column {name} of {}", t.table),
                    "the column's type changed under tandem: run `tandem check` and restart",
                    e,
                )
            })
        })
        .collect()
}

/// Whether a row the server returned answers `requested`: equal by value, or equal as the
/// server compares keys (text case- and trailing-space-insensitively, as the common `_ci`
/// collations and PAD SPACE do; `BINARY(n)` zero-padded).
pub(super) fn key_matches(
    requested: &[Value],
    got: &[&Value],
    columns: &[(String, ColumnType)],
    key: &[usize],
) -> bool {
    requested.len() == got.len()
        && requested.iter().zip(got).zip(key).all(|((r, g), i)| {
            if r.same_as(g) {
                return true;
            }
            match (r, g, columns.get(*i).map(|c| &c.1)) {
                (Value::Text(a), Value::Text(b), _) => {
                    a.trim_end_matches(' ').to_lowercase() == b.trim_end_matches(' ').to_lowercase()
                }
                (Value::Bytes(a), Value::Bytes(b), Some(ColumnType::Bytes { .. })) => {
                    let strip = |x: &[u8]| x.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                    a.get(..strip(a)) == b.get(..strip(b))
                }
                _ => false,
            }
        })
}

/// A bucket for a key such that [`key_matches`] holds only between keys of one bucket
/// (buckets may be coarser: matches are still confirmed with `key_matches`). It lets the
/// sink pair the rows a server returns with the requested keys through a hash map instead
/// of comparing every row with every key, which the both-directions benchmark showed as
/// 15 % of tandem's CPU (2,000 × 2,000 comparisons, each lowercasing two strings).
pub(super) fn match_bucket<'a>(key: impl IntoIterator<Item = &'a Value>) -> String {
    use std::fmt::Write as _;
    let mut b = String::new();
    for v in key {
        match v {
            // Case- and trailing-space-insensitive, as `key_matches`; a text may also
            // match a UUID by parsing.
            Value::Text(t) => {
                let t = t.trim_end_matches(' ').to_lowercase();
                match uuid::Uuid::parse_str(&t) {
                    Ok(u) => {
                        let _ = write!(b, "u{u}");
                    }
                    Err(_) => {
                        let _ = write!(b, "t{t}");
                    }
                }
            }
            Value::Uuid(u) => {
                let _ = write!(b, "u{u}");
            }
            // Numbers compare by value across Int, UInt, Bool and Decimal.
            Value::Int(i) => push_integer(&mut b, i128::from(*i), 0),
            Value::UInt(u) => push_integer(&mut b, i128::from(*u), 0),
            Value::Bool(x) => push_integer(&mut b, i128::from(*x), 0),
            Value::Decimal(d) => push_number(&mut b, d),
            Value::Float(f) => {
                let _ = write!(b, "f{}", if f.is_nan() { u64::MAX } else { f.to_bits() });
            }
            Value::Timestamp(t) => {
                let _ = write!(b, "s{t:?}");
            }
            Value::TimestampTz(t) => {
                let _ = write!(b, "s{:?}", t.naive_utc());
            }
            // Trailing zero bytes may be padding (`BINARY(n)`): coarser is fine.
            Value::Bytes(x) => {
                let end = x.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                b.push('b');
                for byte in x.get(..end).unwrap_or_default() {
                    let _ = write!(b, "{byte:02x}");
                }
            }
            // JSON compares by meaning: one bucket for all (never a key in practice).
            Value::Json(_) => b.push('j'),
            other => {
                let _ = write!(b, "o{other:?}");
            }
        }
        b.push('\u{1}');
    }
    b
}

/// Whether two keys are equal as values (not only as the server compares them).
pub(super) fn same_key(a: &[Value], b: &[&Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
}

/// Pairs `(a, b)`, `a < b`, `b >= from`, of keys that differ as values but may be one key
/// to the server (same [`match_bucket`]): the suspects when an insert run lost rows to keys
/// of its own batch. At most `limit` pairs, in the order of `b`.
pub(super) fn collision_candidates(
    keys: &[Vec<&Value>],
    from: usize,
    limit: usize,
) -> Vec<(usize, usize)> {
    let same = |a: usize, key: &[&Value]| {
        keys.get(a).is_some_and(|ka| {
            ka.len() == key.len() && ka.iter().zip(key).all(|(x, y)| x.same_as(y))
        })
    };
    // Per bucket, the first index of each distinct key.
    let mut buckets: HashMap<String, Vec<usize>> = HashMap::with_capacity(keys.len());
    let mut out = Vec::new();
    for (b, key) in keys.iter().enumerate() {
        let seen = buckets
            .entry(match_bucket(key.iter().copied()))
            .or_default();
        if b >= from {
            for &a in seen.iter() {
                if !same(a, key) {
                    out.push((a, b));
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
        }
        if !seen.iter().any(|&a| same(a, key)) {
            seen.push(b);
        }
    }
    out
}

/// A number's bucket text: equal values (`5`, `5.00`, `true` as 1) give equal text.
/// A number's bucket: its digits without trailing zeros and its scale (`BigDecimal`'s
/// normalised form), so that 5, 5.00 and 5.0E+0 share one.
fn push_number(b: &mut String, d: &bigdecimal::BigDecimal) {
    use std::fmt::Write as _;
    let (digits, scale) = d.as_bigint_and_exponent();
    match i128::try_from(&digits) {
        Ok(m) => push_integer(b, m, scale),
        Err(_) => {
            let (digits, scale) = d.normalized().as_bigint_and_exponent();
            let _ = write!(b, "n{digits}e{scale}");
        }
    }
}

/// [`push_number`] for `m × 10^-scale` in integer arithmetic: converting every integer key
/// to a `BigDecimal` and normalising it was 4 % of tandem's CPU streaming into MariaDB.
fn push_integer(b: &mut String, mut m: i128, mut scale: i64) {
    use std::fmt::Write as _;
    if m == 0 {
        scale = 0;
    }
    while m != 0 && m % 10 == 0 {
        m /= 10;
        scale -= 1;
    }
    let _ = write!(b, "n{m}e{scale}");
}

pub(super) fn check_arity(t: &TargetTable, got: usize, write: usize) -> Result<(), StageError> {
    if got == t.columns.len() {
        return Ok(());
    }
    Err(StageError::definite(
        format!(
            "Write {write} to {} has {got} values for {} columns",
            t.table,
            t.columns.len()
        ),
        "this is a tandem bug: report it with the mapping",
    ))
}

pub(super) fn bad_index(t: &TargetTable, i: usize) -> StageError {
    StageError::definite(
        format!(
            "An update to {} names column #{i}, which the table does not have",
            t.table
        ),
        "this is a tandem bug: report it with the mapping",
    )
}

/// A failed write as a [`StageError`]. Data errors name the table, the column (from the
/// server's message) and which write of the batch failed, so that the applier can park
/// exactly that row.
pub(super) fn write_error(
    t: &TargetTable,
    doing: &str,
    positions: &[usize],
    err: mysql_async::Error,
) -> StageError {
    let mysql_async::Error::Server(s) = &err else {
        return classify(format!("{} {}", capitalise(doing), t.table), err);
    };
    if is_transient_code(s.code) {
        return classify(format!("{} {}", capitalise(doing), t.table), err);
    }
    let column = quoted_after(&s.message, "column '");
    // "at row N" counts rows of the statement, from 1; padding only repeats the last row.
    let row = s
        .message
        .rsplit_once("at row ")
        .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        .and_then(|n| {
            positions
                .get(n.saturating_sub(1))
                .or(positions.last())
                .copied()
        });
    let mut what = format!("{doing} {}", t.table);
    if let Some(c) = &column {
        what.push_str(&format!(" failed on column {c}"));
    }
    if let Some(r) = row {
        what.push_str(&format!(" (write {r} of the batch)"));
    }
    what = capitalise(&what);
    StageError::definite_from(what, server_advice(s.code), err)
}

fn quoted_after(msg: &str, marker: &str) -> Option<String> {
    let rest = msg.split_once(marker)?.1;
    Some(rest.split_once('\'')?.0.to_owned())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_placeholders_rows_and_bytes() {
        let items: Vec<usize> = vec![10; 5000];
        let c = chunks(&items, 100, usize::MAX, |s| *s);
        // 65535 / 100 = 655 -> 512 rows a chunk, so padding to 1024 is never needed.
        assert!(c.iter().all(|(_, ch)| ch.len() <= 512));
        assert_eq!(c.iter().map(|(_, ch)| ch.len()).sum::<usize>(), 5000);
        let c = chunks(&items, 1, 35, |s| *s);
        assert!(c.iter().all(|(_, ch)| ch.len() == 3 || ch.len() == 2));
        let big = vec![1000usize];
        assert_eq!(
            chunks(&big, 1, 10, |s| *s).len(),
            1,
            "an oversized row still goes alone"
        );
    }

    #[test]
    fn padding_repeats_the_last_item_to_few_sizes() {
        let v = [1, 2, 3, 4, 5];
        assert_eq!(
            pad(&v, padded(5)).copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 5]
        );
        let ladder: Vec<usize> = (1..=1024).map(padded).collect();
        assert_eq!(padded(1), 1);
        assert_eq!(padded(3), 3);
        assert_eq!(padded(5), 6);
        assert_eq!(padded(513), 768);
        assert_eq!(padded(769), 1024);
        // At most half again as many rows as the chunk has.
        assert!(ladder
            .iter()
            .zip(1..)
            .all(|(&p, n)| p >= n && 2 * p <= 3 * n));
        let mut shapes = ladder;
        shapes.dedup();
        assert_eq!(shapes.len(), 20, "few statement shapes: {shapes:?}");
    }

    #[test]
    fn key_lists_and_identifiers_quote_correctly() {
        assert_eq!(key_in(&["`a`".into()], 2), "`a` IN (?, ?)");
        assert_eq!(
            key_in(&["`a`".into(), "`b`".into()], 2),
            "(`a`, `b`) IN ((?, ?), (?, ?))"
        );
        assert_eq!(ident("we`ird"), "`we``ird`");
    }

    fn table() -> TargetTable {
        TargetTable {
            table: tandem_core::TableId::new("db", "t"),
            columns: vec![
                (
                    "id".into(),
                    ColumnType::Int {
                        bytes: 4,
                        unsigned: false,
                    },
                ),
                (
                    "name".into(),
                    ColumnType::Text {
                        max_chars: None,
                        allows_nul: true,
                    },
                ),
            ],
            key: vec![0],
        }
    }

    #[test]
    fn runs_split_on_kind_column_set_and_repeated_update_keys() {
        let ins = RowWrite::Insert {
            values: vec![Value::Int(1), Value::Null],
        };
        let upd = |k| RowWrite::Update {
            key: vec![Value::Int(k)],
            columns: vec![(1, Value::Null)],
        };
        let del = RowWrite::Delete {
            key: vec![Value::Int(1)],
        };
        assert_eq!(run_len(&[&ins, &ins, &del]), 2);
        assert_eq!(run_len(&[&upd(1), &upd(2), &upd(1)]), 2);
        let other = RowWrite::Update {
            key: vec![Value::Int(3)],
            columns: vec![(0, Value::Int(9))],
        };
        assert_eq!(run_len(&[&upd(1), &other]), 1);
        assert_eq!(run_len(&[&del, &del]), 2);
    }

    #[test]
    fn kinds_are_grouped_only_for_distinct_keys_of_a_table_that_allows_it() {
        let ins = |k: i64| RowWrite::Insert {
            values: vec![Value::Int(k), Value::Null],
        };
        let upd = |k: i64| RowWrite::Update {
            key: vec![Value::Int(k)],
            columns: vec![(1, Value::Null)],
        };
        let del = |k: i64| RowWrite::Delete {
            key: vec![Value::Int(k)],
        };
        let t = table();
        // Two source transactions' worth: deletes, updates, inserts each.
        let batch = [del(1), upd(2), ins(3), del(4), upd(5), ins(6)];
        assert_eq!(apply_order(&t, &batch, true), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(apply_order(&t, &batch, false), vec![0, 1, 2, 3, 4, 5]);
        // A key written twice keeps the given order (the delete and insert of a rename).
        let rename = [ins(3), del(3)];
        assert_eq!(apply_order(&t, &rename, true), vec![0, 1]);
        // So do keys the server may equate: 'abc' and 'ABC' under a _ci collation.
        let text_key = TargetTable {
            key: vec![1],
            ..table()
        };
        let named = |name: &str| RowWrite::Insert {
            values: vec![Value::Int(9), Value::Text(name.into())],
        };
        let case_rename = [
            named("ABC"),
            RowWrite::Delete {
                key: vec![Value::Text("abc".into())],
            },
        ];
        assert_eq!(apply_order(&text_key, &case_rename, true), vec![0, 1]);
        let distinct = [
            named("ABD"),
            RowWrite::Delete {
                key: vec![Value::Text("abc".into())],
            },
        ];
        assert_eq!(apply_order(&text_key, &distinct, true), vec![1, 0]);
        assert!(!kinds_interleave(&[del(1), del(2), upd(3), ins(4)]));
    }

    #[test]
    fn keys_match_as_the_server_compares_them() {
        let t = table();
        let cols = &t.columns;
        assert!(key_matches(
            &[Value::UInt(5)],
            &[&Value::Int(5)],
            cols,
            &[0]
        ));
        assert!(key_matches(
            &[Value::Text("Abc ".into())],
            &[&Value::Text("abc".into())],
            cols,
            &[1]
        ));
        assert!(!key_matches(
            &[Value::Int(5)],
            &[&Value::Int(6)],
            cols,
            &[0]
        ));
    }

    #[test]
    fn keys_that_match_share_a_bucket() {
        use std::str::FromStr as _;
        let t = table();
        let cols = &t.columns;
        let dec = |s: &str| Value::Decimal(bigdecimal::BigDecimal::from_str(s).unwrap());
        let pairs = [
            (Value::UInt(5), Value::Int(5), 0),
            (dec("5.00"), Value::Int(5), 0),
            (dec("50"), dec("5.0E+1"), 0),
            (Value::Bool(true), Value::Int(1), 0),
            (Value::Text("Abc  ".into()), Value::Text("aBC".into()), 1),
            (
                Value::Text("550E8400-E29B-41D4-A716-446655440000".into()),
                Value::Uuid(uuid::Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap()),
                1,
            ),
            (Value::Bytes(vec![1, 2, 0, 0]), Value::Bytes(vec![1, 2]), 1),
        ];
        for (a, b, i) in &pairs {
            if key_matches(std::slice::from_ref(a), &[b], cols, &[*i]) {
                assert_eq!(match_bucket([a]), match_bucket([b]), "{a:?} vs {b:?}");
            }
        }
        assert_ne!(
            match_bucket([&Value::Int(5)]),
            match_bucket([&Value::Int(6)])
        );
        // The integer fast path gives BigDecimal's normalised form.
        for text in [
            "0", "0.000", "-0.0", "7", "-1200", "1200.00", "12e3", "1.25", "-0.050", "1e-30",
        ] {
            let d: bigdecimal::BigDecimal = text.parse().unwrap();
            let (digits, scale) = d.normalized().as_bigint_and_exponent();
            assert_eq!(
                match_bucket([&Value::Decimal(d)]),
                format!("n{digits}e{scale}\u{1}"),
                "{text}"
            );
        }
        let big = "123456789012345678901234567890123456789012345.5";
        let d: bigdecimal::BigDecimal = big.parse().unwrap();
        let (digits, scale) = d.normalized().as_bigint_and_exponent();
        assert_eq!(
            match_bucket([&Value::Decimal(d)]),
            format!("n{digits}e{scale}\u{1}")
        );
        assert_eq!(
            match_bucket([&Value::Int(-1200)]),
            match_bucket([&dec("-1.2E+3")])
        );
        assert_eq!(
            match_bucket([&Value::UInt(u64::MAX)]),
            match_bucket([&dec("18446744073709551615.00")])
        );
        assert_ne!(
            match_bucket([&Value::Text("a".into()), &Value::Text("b".into())]),
            match_bucket([&Value::Text("a\u{1}b".into())])
        );
    }

    #[test]
    fn collision_suspects_are_keys_equal_only_as_the_server_compares() {
        let v = |s: &str| Value::Text(s.into());
        let (abc, upper, other, spaced) = (v("abc"), v("ABC"), v("abd"), v("abc "));
        let keys = vec![vec![&abc], vec![&other], vec![&upper], vec![&spaced]];
        assert_eq!(
            collision_candidates(&keys, 0, 8),
            vec![(0, 2), (0, 3), (2, 3)]
        );
        assert_eq!(collision_candidates(&keys, 0, 1), vec![(0, 2)]);
        assert_eq!(collision_candidates(&keys, 3, 8), vec![(0, 3), (2, 3)]);
        // A key read earlier and inserted again is no suspect against itself, but the
        // other spelling read before it is.
        let batch = vec![vec![&upper], vec![&abc], vec![&upper]];
        assert_eq!(collision_candidates(&batch, 2, 8), vec![(1, 2)]);
        let distinct = vec![vec![&abc], vec![&other]];
        assert!(collision_candidates(&distinct, 0, 8).is_empty());
    }

    #[test]
    fn data_errors_name_column_and_write() {
        let err = mysql_async::Error::Server(mysql_async::ServerError {
            code: 1264,
            message: "Out of range value for column 'qty' at row 3".into(),
            state: "22003".into(),
        });
        let e = write_error(&table(), "inserting into", &[10, 11, 12, 13], err);
        assert_eq!(e.class(), tandem_core::ErrorClass::Definite);
        let msg = e.to_string();
        assert!(
            msg.contains("column qty") && msg.contains("write 12") && msg.contains("db.t"),
            "{msg}"
        );
    }
}
