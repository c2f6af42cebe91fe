//! Conflict detection and resolution, column by column.
//!
//! Given an incoming change (before-image `b`, after-image `a`, already in the target's
//! columns and types) and the target's current row `t`, [`Resolver::resolve`] computes the
//! write that makes the target converge, and the conflict to record. The rules are the
//! design doc's, chosen so both sides hold the same rows once they go quiet:
//!
//! 1. Only columns the change altered (`a ≠ b`) are written; concurrent edits of different
//!    columns both survive. A column conflicts when `t ≠ b` on it.
//! 2. `last_writer_wins` compares the row's timestamp column (`a` vs `t`); ties go to the
//!    endpoint listed first. The timestamp column follows the same rule. When the timestamp
//!    itself conflicts (`t ≠ b` on it), the columns under this rule are judged together by
//!    it, including those the change left as they were: the after-image is the source's
//!    whole state at its timestamp, and taking only the altered columns lets the sides end
//!    with one timestamp and different values.
//! 3. `prefer:X`: X's value wins whenever the sides disagree; a change from the other side
//!    to X's column is not applied on X.
//! 4. `delta`: the target gets `t + (a − b)`; a missing before-image counts as 0, so two
//!    concurrent inserts of one key add up.
//! 5. `max`/`min` keep the larger/smaller value.
//! 6. Deletes win: `delete_differs` deletes anyway; `update_missing` drops the update.
//! 7. `manual` keeps the target's value and parks the change for review.
//!
//! Key columns never conflict: they are how rows are matched.

use std::cmp::Ordering;

use crate::config::Strategy;
use crate::convert::apply_delta;
use crate::mapper::{TargetChange, TargetRow};
use crate::sink::RowWrite;
use crate::value::Value;

/// Which of the five conflict kinds happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    InsertExists,
    UpdateMissing,
    UpdateDiffers,
    DeleteMissing,
    DeleteDiffers,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::InsertExists => "insert_exists",
            ConflictKind::UpdateMissing => "update_missing",
            ConflictKind::UpdateDiffers => "update_differs",
            ConflictKind::DeleteMissing => "delete_missing",
            ConflictKind::DeleteDiffers => "delete_differs",
        }
    }
}

/// What was decided about a conflicting row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The incoming change was applied as it came.
    Applied,
    /// The target kept its values.
    KeptTarget,
    /// Some columns took the incoming value, some the target's, some a combination.
    Merged,
    /// The change waits in `tandem_conflicts` for a DBA.
    Parked,
    /// The change was dropped (update of a missing row, delete of a missing row).
    Dropped,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Applied => "applied",
            Decision::KeptTarget => "kept_target",
            Decision::Merged => "merged",
            Decision::Parked => "parked",
            Decision::Dropped => "dropped",
        }
    }
}

/// A detected conflict.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub decision: Decision,
    /// Strategies that decided it (comma-separated when several columns conflicted).
    pub strategy: String,
}

/// The outcome for one row.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    pub write: Option<RowWrite>,
    pub conflict: Option<Conflict>,
    /// Columns to write back to the *source* side with the value the target kept: the
    /// owner's (`prefer:<target>`, rule 3) or the winning extreme (`max`/`min`).
    pub write_back: Vec<(usize, Value)>,
}

/// The policy of one mapping in one direction.
#[derive(Clone, Debug)]
pub struct Resolver<'a> {
    /// Per target column.
    pub strategies: &'a [Strategy],
    pub key: &'a [usize],
    pub lww: Option<usize>,
    pub source_endpoint: &'a str,
    pub source_wins_ties: bool,
    /// The change is a row of an initial snapshot: where the target already holds the
    /// row, a counter's value is a state to reconcile, not a change to add — the endpoint
    /// listed first wins, so both directions' snapshots agree.
    pub initial_sync: bool,
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Null, Null) => Some(Ordering::Equal),
        (Null, _) => Some(Ordering::Less),
        (_, Null) => Some(Ordering::Greater),
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (UInt(x), UInt(y)) => Some(x.cmp(y)),
        (Int(x), UInt(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (UInt(x), Int(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Float(x), Float(y)) => x.partial_cmp(y),
        (Decimal(x), Decimal(y)) => Some(x.cmp(y)),
        (Int(x), Decimal(y)) => Some(bigdecimal::BigDecimal::from(*x).cmp(y)),
        (Decimal(x), Int(y)) => Some(x.cmp(&bigdecimal::BigDecimal::from(*y))),
        (Date(x), Date(y)) => Some(x.cmp(y)),
        (Timestamp(x), Timestamp(y)) => Some(x.cmp(y)),
        (TimestampTz(x), TimestampTz(y)) => Some(x.cmp(y)),
        (Timestamp(x), TimestampTz(y)) => Some(x.cmp(&y.naive_utc())),
        (TimestampTz(x), Timestamp(y)) => Some(x.naive_utc().cmp(y)),
        (Text(x), Text(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Resolver<'_> {
    /// Whether the incoming row is newer than the target row by the timestamp column.
    fn incoming_newer(&self, after: &TargetRow, current: &[Value]) -> bool {
        let Some(i) = self.lww else {
            return self.source_wins_ties;
        };
        let (Some(Some(a)), Some(t)) = (after.get(i), current.get(i)) else {
            return self.source_wins_ties;
        };
        match order(a, t) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Less) => false,
            _ => self.source_wins_ties,
        }
    }

    /// The value column `c` should end with when the change conflicts on it.
    /// Returns the value and whether the incoming side won (`None`: park).
    fn resolve_column(
        &self,
        strategy: &Strategy,
        before: Option<&Value>,
        after: &Value,
        current: &Value,
        newer: bool,
    ) -> Option<Value> {
        match strategy {
            Strategy::Delta => {
                let b = before.cloned().unwrap_or(Value::Null);
                apply_delta(&b, after, current).or_else(|| Some(current.clone()))
            }
            Strategy::Max | Strategy::Min => {
                let want = if matches!(strategy, Strategy::Max) {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                match order(after, current) {
                    Some(o) if o == want => Some(after.clone()),
                    _ => Some(current.clone()),
                }
            }
            Strategy::Prefer(owner) => Some(if owner == self.source_endpoint {
                after.clone()
            } else {
                current.clone()
            }),
            Strategy::LastWriterWins { .. } => Some(if newer {
                after.clone()
            } else {
                current.clone()
            }),
            Strategy::Manual => None,
        }
    }

    /// Decide what to write for `change` given the target's current row.
    pub fn resolve(&self, change: &TargetChange, current: Option<&[Value]>) -> Resolution {
        match change {
            TargetChange::Insert { after } => match current {
                None => Resolution {
                    write: Some(RowWrite::Insert {
                        values: fill(after),
                    }),
                    conflict: None,
                    write_back: Vec::new(),
                },
                Some(t) => self.merge(after, None, t, ConflictKind::InsertExists),
            },
            TargetChange::Update { before, after } => match current {
                None => Resolution {
                    write: None,
                    conflict: Some(Conflict {
                        kind: ConflictKind::UpdateMissing,
                        decision: Decision::Dropped,
                        strategy: "deletes_win".into(),
                    }),
                    write_back: Vec::new(),
                },
                Some(t) => self.merge(after, before.as_ref(), t, ConflictKind::UpdateDiffers),
            },
            TargetChange::Delete { before, full } => match current {
                None => Resolution {
                    write: None,
                    conflict: Some(Conflict {
                        kind: ConflictKind::DeleteMissing,
                        decision: Decision::Dropped,
                        strategy: "deletes_win".into(),
                    }),
                    write_back: Vec::new(),
                },
                Some(t) => {
                    let key = self
                        .key
                        .iter()
                        .map(|&i| t.get(i).cloned().unwrap_or(Value::Null))
                        .collect();
                    let differs = *full
                        && before
                            .iter()
                            .zip(t)
                            .any(|(b, t)| b.as_ref().is_some_and(|b| !b.same_as(t)));
                    Resolution {
                        write: Some(RowWrite::Delete { key }),
                        conflict: differs.then(|| Conflict {
                            kind: ConflictKind::DeleteDiffers,
                            decision: Decision::Applied,
                            strategy: "deletes_win".into(),
                        }),
                        write_back: Vec::new(),
                    }
                }
            },
        }
    }

    /// Column-by-column merge of an insert (no before-image) or update into an existing row.
    fn merge(
        &self,
        after: &TargetRow,
        before: Option<&TargetRow>,
        t: &[Value],
        kind: ConflictKind,
    ) -> Resolution {
        let newer = self.incoming_newer(after, t);
        let mut set: Vec<(usize, Value)> = Vec::new();
        let mut strategies: Vec<String> = Vec::new();
        let (mut took_incoming, mut kept, mut parked) = (false, false, false);
        let mut write_back = Vec::new();
        let is_insert = before.is_none() && kind == ConflictKind::InsertExists;
        // Rule 2: does the row's timestamp itself conflict?
        let stamp_conflicts = self.lww.is_some_and(|i| {
            match (
                before.and_then(|b| b.get(i)).and_then(Option::as_ref),
                t.get(i),
            ) {
                (Some(b), Some(tc)) => !tc.same_as(b),
                _ => false,
            }
        });
        for (c, a) in after.iter().enumerate() {
            if self.key.contains(&c) {
                continue;
            }
            let Some(a) = a else { continue }; // unchanged TOAST: leave alone
            let Some(tc) = t.get(c) else { continue };
            let b: Option<&Value> = before.and_then(|b| b.get(c)).and_then(Option::as_ref);
            // Rows come from the mapper, one value per column; a shorter strategy list
            // would be a bug, and the column is then left alone rather than panicking.
            let Some(strategy) = self.strategies.get(c) else {
                continue;
            };
            // Judged with the row's timestamp (rule 2), altered or not.
            let with_stamp = stamp_conflicts && matches!(strategy, Strategy::LastWriterWins { .. });
            // Rule 1: only columns the change altered. Without a before-image every
            // column counts as changed.
            if let Some(b) = b {
                if a.same_as(b) && !with_stamp {
                    continue;
                }
            }
            let delta = matches!(strategy, Strategy::Delta);
            // The target already holds the incoming value (the other side converged on it,
            // or a DBA resolved a conflict by writing it): nothing to write, no conflict.
            // Not for counters: there the change is a difference, not a value.
            if !delta && a.same_as(tc) {
                continue;
            }
            // Without a before-image, an equal value is no news — except for a counter,
            // where an insert of 5 onto 5 means 10.
            if b.is_none() && a.same_as(tc) && !(delta && is_insert) {
                continue;
            }
            let conflicting = b.is_none_or(|b| !tc.same_as(b)) || with_stamp;
            if let Strategy::Max | Strategy::Min = strategy {
                // A max/min column is a register that only moves one way: every side
                // keeps the extreme of what it holds and what arrives, and sends a kept
                // value back (merged the same way there). Applying "the newer value" when
                // `t = b` would let a chain of older changes from one side undo a value the
                // other side already settled, and the sides would never meet again.
                let Some(v) = self.resolve_column(strategy, b, a, tc, newer) else {
                    continue;
                };
                if !v.same_as(tc) {
                    set.push((c, v.clone()));
                }
                if !v.same_as(a) {
                    strategies.push(strategy.to_string());
                    kept = true;
                    write_back.push((c, v));
                } else if conflicting {
                    strategies.push(strategy.to_string());
                    took_incoming = true;
                }
                continue;
            }
            let prefer_other = matches!(strategy, Strategy::Prefer(o) if o != self.source_endpoint);
            if !conflicting && !prefer_other {
                set.push((c, a.clone()));
                continue;
            }
            if !conflicting {
                // Rule 3: the owner's value stays even when nothing else changed it.
                strategies.push(strategy.to_string());
                kept = true;
                write_back.push((c, tc.clone()));
                continue;
            }
            if delta && is_insert && self.initial_sync {
                if a.same_as(tc) {
                    continue;
                }
                strategies.push("delta(initial sync: first endpoint wins)".to_owned());
                if self.source_wins_ties {
                    took_incoming = true;
                    set.push((c, a.clone()));
                } else {
                    kept = true;
                }
                continue;
            }
            if delta && !is_insert && b.is_none() {
                // An update without its before-image carries no delta: take the value
                // as it came and record the conflict so a DBA can check the counter.
                strategies.push(strategy.to_string());
                took_incoming = true;
                set.push((c, a.clone()));
                continue;
            }
            strategies.push(strategy.to_string());
            match self.resolve_column(strategy, b, a, tc, newer) {
                None => parked = true,
                Some(v) => {
                    // The owner keeps its value: send it back (only where the source still
                    // holds what it sent), so that the source converges too.
                    if matches!(strategy, Strategy::Prefer(o) if o != self.source_endpoint) {
                        write_back.push((c, v.clone()));
                    }
                    if v.same_as(a) {
                        took_incoming = true;
                    } else if v.same_as(tc) {
                        kept = true;
                    } else {
                        took_incoming = true;
                        kept = true;
                    }
                    if !v.same_as(tc) {
                        set.push((c, v));
                    }
                }
            }
        }
        let conflict = (!strategies.is_empty()).then(|| {
            strategies.sort();
            strategies.dedup();
            Conflict {
                kind,
                decision: if parked {
                    Decision::Parked
                } else if took_incoming && kept {
                    Decision::Merged
                } else if took_incoming {
                    Decision::Applied
                } else {
                    Decision::KeptTarget
                },
                strategy: strategies.join(","),
            }
        });
        let key: Vec<Value> = self
            .key
            .iter()
            .map(|&i| t.get(i).cloned().unwrap_or(Value::Null))
            .collect();
        Resolution {
            write: (!set.is_empty()).then_some(RowWrite::Update { key, columns: set }),
            conflict,
            write_back,
        }
    }
}

/// The extreme of two values for a `max`/`min` column (`None` for other strategies or
/// values without an order): how a write-back of such a column merges into the target.
pub fn merge_extreme(strategy: &Strategy, current: &Value, incoming: &Value) -> Option<Value> {
    let want = match strategy {
        Strategy::Max => Ordering::Greater,
        Strategy::Min => Ordering::Less,
        _ => return None,
    };
    Some(match order(incoming, current)? {
        o if o == want => incoming.clone(),
        _ => current.clone(),
    })
}

fn fill(row: &TargetRow) -> Vec<Value> {
    row.iter()
        .map(|v| v.clone().unwrap_or(Value::Null))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Target columns: 0 key, 1 qty (delta), 2 price (prefer:inventory), 3 name (lww),
    // 4 updated_at (lww), 5 peak (max), 6 note (manual).
    fn strategies() -> Vec<Strategy> {
        vec![
            Strategy::Manual,
            Strategy::Delta,
            Strategy::Prefer("inventory".into()),
            Strategy::LastWriterWins { column: None },
            Strategy::LastWriterWins { column: None },
            Strategy::Max,
            Strategy::Manual,
        ]
    }

    fn row(q: i64, p: i64, name: &str, ts: i64, peak: i64, note: &str) -> Vec<Value> {
        vec![
            Value::Text("k".into()),
            Value::Int(q),
            Value::Int(p),
            Value::Text(name.into()),
            Value::Int(ts),
            Value::Int(peak),
            Value::Text(note.into()),
        ]
    }

    fn some(r: Vec<Value>) -> TargetRow {
        r.into_iter().map(Some).collect()
    }

    fn resolver<'a>(s: &'a [Strategy], from: &'a str) -> Resolver<'a> {
        Resolver {
            strategies: s,
            key: &[0],
            lww: Some(4),
            source_endpoint: from,
            source_wins_ties: from == "inventory",
            initial_sync: false,
        }
    }

    fn sets(r: &Resolution) -> Vec<(usize, Value)> {
        match &r.write {
            Some(RowWrite::Update { columns, .. }) => columns.clone(),
            None => vec![],
            w => panic!("unexpected {w:?}"),
        }
    }

    #[test]
    fn non_conflicting_update_writes_only_changed_columns() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 3, "");
        let mut a = b.clone();
        a[3] = Value::Text("b".into());
        a[4] = Value::Int(2);
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b.clone())),
                after: some(a),
            },
            Some(&b),
        );
        assert_eq!(
            sets(&r),
            vec![(3, Value::Text("b".into())), (4, Value::Int(2))]
        );
        assert!(r.conflict.is_none());
    }

    #[test]
    fn last_writer_columns_go_with_their_timestamp_so_the_sides_converge() {
        // Both sides held (a, 1). T wrote (t, 2); S wrote (s, 3), then (s, 4) — the name
        // left as it was. Either order of arrival must leave both sides with (s, 4).
        let s = strategies();
        let name_ts = |name: &str, ts: i64| row(10, 5, name, ts, 3, "");
        let update = |b: Vec<Value>, a: Vec<Value>| TargetChange::Update {
            before: Some(some(b)),
            after: some(a),
        };
        let apply = |row: &[Value], r: &Resolution| {
            let mut row = row.to_vec();
            for (c, v) in sets(r) {
                row[c] = v;
            }
            row
        };
        // At T, holding (t, 2): S's first change is newer, its second too.
        let r = resolver(&s, "retail");
        let t1 = apply(
            &name_ts("t", 2),
            &r.resolve(
                &update(name_ts("a", 1), name_ts("s", 3)),
                Some(&name_ts("t", 2)),
            ),
        );
        let t2 = apply(
            &t1,
            &r.resolve(&update(name_ts("s", 3), name_ts("s", 4)), Some(&t1)),
        );
        assert_eq!(t2, name_ts("s", 4));
        // At T, S's second change alone (its first was merged away meanwhile): the name
        // S did not touch still comes with S's newer timestamp.
        let only = apply(
            &name_ts("t", 2),
            &r.resolve(
                &update(name_ts("s", 3), name_ts("s", 4)),
                Some(&name_ts("t", 2)),
            ),
        );
        assert_eq!(only, name_ts("s", 4));
        // At S, holding (s, 4): T's change is older and changes nothing.
        let at_s = r.resolve(
            &update(name_ts("a", 1), name_ts("t", 2)),
            Some(&name_ts("s", 4)),
        );
        assert_eq!(sets(&at_s), vec![]);
        // A timestamp the target still holds as before: columns go one by one (rule 1).
        let plain = r.resolve(
            &update(name_ts("a", 1), name_ts("a", 2)),
            Some(&name_ts("a", 1)),
        );
        assert_eq!(sets(&plain), vec![(4, Value::Int(2))]);
        assert!(plain.conflict.is_none());
    }

    #[test]
    fn delta_adds_the_difference_to_the_current_value() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 3, "");
        let mut a = b.clone();
        a[1] = Value::Int(7); // shop sold 3
        let t = row(25, 5, "a", 1, 3, ""); // warehouse received 15 meanwhile
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b)),
                after: some(a),
            },
            Some(&t),
        );
        assert_eq!(sets(&r), vec![(1, Value::Int(22))]);
        let c = r.conflict.unwrap();
        assert_eq!(
            (c.kind, c.decision),
            (ConflictKind::UpdateDiffers, Decision::Merged)
        );
    }

    #[test]
    fn concurrent_inserts_of_a_counter_add_up() {
        let s = strategies();
        let incoming = row(5, 5, "a", 1, 3, "");
        let t = row(10, 5, "a", 1, 3, "");
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Insert {
                after: some(incoming),
            },
            Some(&t),
        );
        assert_eq!(sets(&r), vec![(1, Value::Int(15))]);
        assert_eq!(r.conflict.unwrap().kind, ConflictKind::InsertExists);
    }

    #[test]
    fn owner_keeps_its_column_and_writes_it_back() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 3, "");
        let mut a = b.clone();
        a[2] = Value::Int(4); // the shop lowers the price inventory owns
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b.clone())),
                after: some(a.clone()),
            },
            Some(&b),
        );
        assert!(sets(&r).is_empty());
        assert_eq!(r.write_back, vec![(2, Value::Int(5))]);
        assert_eq!(r.conflict.unwrap().decision, Decision::KeptTarget);
        // From the owner, the same change is simply applied.
        let r = resolver(&s, "inventory").resolve(
            &TargetChange::Update {
                before: Some(some(b.clone())),
                after: some(a),
            },
            Some(&b),
        );
        assert_eq!(sets(&r), vec![(2, Value::Int(4))]);
        assert!(r.conflict.is_none() && r.write_back.is_empty());
    }

    #[test]
    fn last_writer_wins_by_timestamp_and_ties_by_priority() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 3, "");
        let t = row(10, 5, "t", 5, 3, "");
        let newer = row(10, 5, "n", 9, 3, "");
        let older = row(10, 5, "o", 3, 3, "");
        let tie = row(10, 5, "x", 5, 3, "");
        let res = |from, a: &Vec<Value>| {
            resolver(&s, from).resolve(
                &TargetChange::Update {
                    before: Some(some(b.clone())),
                    after: some(a.clone()),
                },
                Some(&t),
            )
        };
        assert_eq!(
            sets(&res("retail", &newer)),
            vec![(3, Value::Text("n".into())), (4, Value::Int(9))]
        );
        assert!(sets(&res("retail", &older)).is_empty());
        assert!(
            sets(&res("retail", &tie)).is_empty(),
            "tie: inventory is listed first"
        );
        assert_eq!(
            sets(&res("inventory", &tie)),
            vec![(3, Value::Text("x".into()))]
        );
    }

    #[test]
    fn manual_parks_and_keeps_the_target() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 3, "b");
        let mut a = b.clone();
        a[6] = Value::Text("a".into());
        let t = row(10, 5, "a", 1, 3, "t");
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b)),
                after: some(a),
            },
            Some(&t),
        );
        assert!(sets(&r).is_empty());
        assert_eq!(r.conflict.unwrap().decision, Decision::Parked);
    }

    #[test]
    fn deletes_win() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 3, "");
        let t = row(12, 5, "a", 1, 3, "");
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Delete {
                before: some(b.clone()),
                full: true,
            },
            Some(&t),
        );
        assert_eq!(
            r.write,
            Some(RowWrite::Delete {
                key: vec![Value::Text("k".into())]
            })
        );
        assert_eq!(r.conflict.unwrap().kind, ConflictKind::DeleteDiffers);
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b.clone())),
                after: some(t),
            },
            None,
        );
        assert_eq!(
            (r.write, r.conflict.unwrap().kind),
            (None, ConflictKind::UpdateMissing)
        );
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Delete {
                before: some(b),
                full: true,
            },
            None,
        );
        assert_eq!(r.conflict.unwrap().kind, ConflictKind::DeleteMissing);
    }

    #[test]
    fn an_incoming_value_the_target_already_has_is_no_conflict() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 3, "b");
        let mut a = b.clone();
        a[6] = Value::Text("resolved".into());
        let t = row(10, 5, "a", 1, 3, "resolved");
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b)),
                after: some(a),
            },
            Some(&t),
        );
        assert_eq!((r.write, r.conflict), (None, None));
    }

    #[test]
    fn initial_sync_reconciles_counters_by_priority_instead_of_adding() {
        let s = strategies();
        let incoming = row(90, 5, "a", 1, 3, "");
        let t = row(100, 5, "a", 1, 3, "");
        let mut r = resolver(&s, "retail");
        r.initial_sync = true;
        let res = r.resolve(
            &TargetChange::Insert {
                after: some(incoming.clone()),
            },
            Some(&t),
        );
        assert!(
            sets(&res).is_empty(),
            "retail is not listed first: inventory's count stays"
        );
        let mut r = resolver(&s, "inventory");
        r.initial_sync = true;
        let res = r.resolve(
            &TargetChange::Insert {
                after: some(incoming),
            },
            Some(&t),
        );
        assert_eq!(sets(&res), vec![(1, Value::Int(90))]);
        let res = r.resolve(
            &TargetChange::Insert {
                after: some(t.clone()),
            },
            Some(&t),
        );
        assert_eq!(
            (res.write, res.conflict),
            (None, None),
            "equal rows are no conflict"
        );
    }

    #[test]
    fn max_sends_the_kept_extreme_back_to_the_source() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 40, "");
        let mut a = b.clone();
        a[5] = Value::Int(30);
        let t = row(10, 5, "a", 1, 87, "");
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b)),
                after: some(a),
            },
            Some(&t),
        );
        assert!(sets(&r).is_empty());
        assert_eq!(r.write_back, vec![(5, Value::Int(87))]);
    }

    #[test]
    fn max_never_moves_down_and_sends_the_larger_back() {
        let s = strategies();
        // No conflict (t = b), but the change lowers the value: the register keeps 40
        // and the source is told.
        let b = row(10, 5, "a", 1, 40, "");
        let mut a = b.clone();
        a[5] = Value::Int(3);
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b.clone())),
                after: some(a),
            },
            Some(&b),
        );
        assert!(sets(&r).is_empty());
        assert_eq!(r.write_back, vec![(5, Value::Int(40))]);
        let mut up = b.clone();
        up[5] = Value::Int(41);
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b.clone())),
                after: some(up),
            },
            Some(&b),
        );
        assert_eq!(sets(&r), vec![(5, Value::Int(41))]);
        assert!(r.write_back.is_empty() && r.conflict.is_none());
    }

    #[test]
    fn max_keeps_the_larger() {
        let s = strategies();
        let b = row(10, 5, "a", 1, 3, "");
        let mut a = b.clone();
        a[5] = Value::Int(4);
        let t = row(10, 5, "a", 1, 8, "");
        let r = resolver(&s, "retail").resolve(
            &TargetChange::Update {
                before: Some(some(b)),
                after: some(a),
            },
            Some(&t),
        );
        assert!(sets(&r).is_empty());
        assert_eq!(r.conflict.unwrap().decision, Decision::KeptTarget);
    }
}
