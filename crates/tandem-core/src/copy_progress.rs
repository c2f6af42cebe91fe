//! How far the initial copy of one source table has got, as the target's checkpoint table
//! records it (under [`crate::apply::snapshot_progress_key`], in the same transaction as
//! the copied rows).
//!
//! A table is copied in key order. Its rows are committed on the target in parts, each
//! part holding the keys after the previous part's last key up to its own `upto`, read in
//! a snapshot at the source position `at`. One uninterrupted copy is one part whose
//! `upto` grows with every commit; a copy resumed after a crash adds a part read in a new
//! snapshot. The last part's `upto` is `None` once the table is done.
//!
//! The stream filter needs to know, for a streamed change to key `k` committed at `c`,
//! whether the target already holds its effect: it does iff `c` is at or before the `at`
//! of the part `k` belongs to. Deciding which part `k` belongs to compares keys, and that
//! comparison must agree with the source's `ORDER BY` — so parts are only recorded for
//! keys whose order tandem knows exactly ([`orders_exactly`]: integers, dates and
//! timestamps). A table with another key (text in a collation, say) is copied as one part
//! in one target transaction, as before, and a crash copies it again from its start.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::position::Position;
use crate::value::{ColumnType, Value};

/// The copy record of one table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CopyProgress {
    /// The source columns the copy was ordered by (its primary key), by name. Empty for a
    /// record of one part, which needs no key to decide.
    pub key_columns: Vec<String>,
    /// The parts in key order (never empty once stored).
    pub parts: Vec<CopiedPart>,
    /// Rows copied in all parts.
    pub rows: u64,
}

/// Keys after the previous part's `upto` up to this one's, read at source position `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CopiedPart {
    pub at: Position,
    /// The last key of the part (in `key_columns` order); `None`: every key after the
    /// previous part, i.e. the table is done.
    pub upto: Option<Vec<Value>>,
}

/// The stored form: tagged, so that it is told apart from a bare position (how tandem
/// recorded a copied table before copies had parts).
#[derive(Serialize, Deserialize)]
struct Stored {
    copy: CopyProgress,
}

/// Why a stored copy record cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a copy record tandem wrote: {0}")]
pub struct CopyRecordError(String);

impl CopyProgress {
    /// The record of a copy that has committed nothing yet (no part; never stored).
    pub fn new(key_columns: Vec<String>) -> Self {
        CopyProgress {
            key_columns,
            parts: Vec::new(),
            rows: 0,
        }
    }

    /// The first part of a copy: keys up to `upto` (or all) read at `at`.
    pub fn first(key_columns: Vec<String>, at: Position, upto: Option<Vec<Value>>) -> Self {
        CopyProgress {
            key_columns,
            parts: vec![CopiedPart { at, upto }],
            rows: 0,
        }
    }

    /// Whether every key of the table is copied.
    pub fn is_finished(&self) -> bool {
        self.parts.last().is_some_and(|p| p.upto.is_none())
    }

    /// Where an unfinished copy continues: after this key.
    pub fn resume_key(&self) -> Option<&[Value]> {
        self.parts.last().and_then(|p| p.upto.as_deref())
    }

    /// The position of the part read last.
    pub fn newest(&self) -> Option<&Position> {
        self.parts.last().map(|p| &p.at)
    }

    /// Record that keys up to `upto` (`None`: all the rest) are copied at `at`: extends
    /// the last part if it was read in the same snapshot, otherwise adds a part.
    pub fn advance(&mut self, at: &Position, upto: Option<Vec<Value>>) {
        match self.parts.last_mut() {
            Some(last) if last.at == *at => last.upto = upto,
            _ => self.parts.push(CopiedPart {
                at: at.clone(),
                upto,
            }),
        }
    }

    /// The part `key` (in `key_columns` order) belongs to: the first whose `upto` is at or
    /// after it. `None` if the keys cannot be compared exactly, or if the key lies beyond an
    /// unfinished copy.
    pub fn part_for(&self, key: &[&Value]) -> Option<&CopiedPart> {
        if let [only] = self.parts.as_slice() {
            if only.upto.is_none() {
                return Some(only);
            }
        }
        for part in &self.parts {
            match &part.upto {
                None => return Some(part),
                Some(upto) => match compare_keys(key, upto)? {
                    Ordering::Less | Ordering::Equal => return Some(part),
                    Ordering::Greater => {}
                },
            }
        }
        None
    }

    pub fn to_text(&self) -> String {
        // A struct of strings, integers and values: serialising cannot fail.
        serde_json::to_string(&Stored { copy: self.clone() })
            .unwrap_or_else(|_| String::from("null"))
    }

    /// Parse what [`CopyProgress::to_text`] wrote, or a bare position (a table copied
    /// whole by an earlier tandem).
    pub fn from_text(text: &str) -> Result<CopyProgress, CopyRecordError> {
        if let Ok(Stored { copy }) = serde_json::from_str::<Stored>(text) {
            if copy.parts.is_empty() {
                return Err(CopyRecordError(text.to_owned()));
            }
            return Ok(copy);
        }
        let at =
            Position::from_checkpoint_text(text).map_err(|_| CopyRecordError(text.to_owned()))?;
        Ok(CopyProgress::first(Vec::new(), at, None))
    }
}

/// Whether tandem orders values of this column type exactly as both databases do in an
/// index (so that a copy of a table with such a key can be recorded in parts).
pub fn orders_exactly(column_type: &ColumnType) -> bool {
    matches!(
        column_type,
        ColumnType::Int { .. }
            | ColumnType::Date { .. }
            | ColumnType::Timestamp { .. }
            | ColumnType::TimestampTz { .. }
    )
}

/// Lexicographic order of two keys; `None` if a pair of values has no exact order.
pub fn compare_keys(a: &[&Value], b: &[Value]) -> Option<Ordering> {
    if a.len() != b.len() {
        return None;
    }
    for (x, y) in a.iter().zip(b) {
        match compare_values(x, y)? {
            Ordering::Equal => {}
            other => return Some(other),
        }
    }
    Some(Ordering::Equal)
}

fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    let int = |v: &Value| match v {
        Int(i) => Some(i128::from(*i)),
        UInt(u) => Some(i128::from(*u)),
        _ => None,
    };
    match (a, b) {
        (Date(x), Date(y)) => Some(x.cmp(y)),
        (Timestamp(x), Timestamp(y)) => Some(x.cmp(y)),
        (TimestampTz(x), TimestampTz(y)) => Some(x.cmp(y)),
        _ => Some(int(a)?.cmp(&int(b)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Lsn;

    fn at(lsn: u64) -> Position {
        Position::PgLsn { lsn: Lsn(lsn) }
    }

    fn two_parts() -> CopyProgress {
        let mut p = CopyProgress::first(vec!["id".into()], at(10), Some(vec![Value::Int(100)]));
        p.advance(&at(20), None);
        p
    }

    #[test]
    fn keys_fall_into_the_part_that_holds_them() {
        let p = two_parts();
        assert!(p.is_finished());
        assert_eq!(p.part_for(&[&Value::Int(-5)]).unwrap().at, at(10));
        assert_eq!(p.part_for(&[&Value::Int(100)]).unwrap().at, at(10));
        assert_eq!(p.part_for(&[&Value::UInt(101)]).unwrap().at, at(20));
        // Not an exactly ordered value: no guess.
        assert_eq!(p.part_for(&[&Value::Text("100".into())]), None);
    }

    #[test]
    fn an_unfinished_copy_resumes_after_its_last_key_and_covers_nothing_beyond() {
        let mut p = CopyProgress::first(vec!["id".into()], at(10), Some(vec![Value::Int(5)]));
        p.advance(&at(10), Some(vec![Value::Int(9)]));
        assert_eq!(p.parts.len(), 1, "the same snapshot extends its part");
        assert!(!p.is_finished());
        assert_eq!(p.resume_key(), Some(&[Value::Int(9)][..]));
        assert_eq!(p.part_for(&[&Value::Int(10)]), None);
    }

    #[test]
    fn records_round_trip_and_a_bare_position_is_a_whole_copy() {
        let p = two_parts();
        assert_eq!(CopyProgress::from_text(&p.to_text()).unwrap(), p);
        let legacy = CopyProgress::from_text(&at(7).to_checkpoint_text()).unwrap();
        assert!(legacy.is_finished());
        assert_eq!(legacy.part_for(&[]).unwrap().at, at(7));
        assert!(
            CopyProgress::from_text("{\"copy\":{\"key_columns\":[],\"parts\":[],\"rows\":0}}")
                .is_err()
        );
        assert!(CopyProgress::from_text("garbage").is_err());
    }

    #[test]
    fn composite_keys_compare_column_by_column() {
        let upto = vec![Value::Int(1), Value::Int(5)];
        assert_eq!(
            compare_keys(&[&Value::Int(1), &Value::Int(4)], &upto),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_keys(&[&Value::Int(2), &Value::Int(0)], &upto),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_keys(&[&Value::Int(1)], &upto), None);
    }
}
