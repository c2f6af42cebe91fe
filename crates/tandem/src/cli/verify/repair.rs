//! `--repair`: which side of a differing row wins, per the mapping's conflict strategy.
//!
//! The rules, chosen to agree with what replication itself converges to:
//! - a row on one side only is **copied** to the other. Deleting it instead would be just
//!   as consistent, but a wrong copy can be deleted again, a wrong delete loses data;
//! - `prefer:X`: X's value;
//! - `last_writer_wins`: the value of the row with the newer timestamp column; ties go to
//!   the endpoint listed first in the config;
//! - `max` / `min`: the larger / smaller value;
//! - `delta` (a counter) and `manual`: the two sides' counts cannot tell which is right, so
//!   an owner must be named — the mapping-level `conflict = "prefer:X"`, or `--prefer X` on
//!   the command line. Without one the key is refused with that advice, and nothing of it
//!   is written.
//!
//! A key with any refused column is left alone entirely, so a repair never writes half a
//! decision. A row only on the side a `where` filter leads to is refused too: the other
//! side may hold the key outside its filter, and copying it back would collide with it.

use std::cmp::Ordering;

use tandem_core::config::{ConflictSpec, Strategy};
use tandem_core::value::Value;

use super::compare::{Diff, KeyDiff, Plan};

/// What to write for one key.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Insert the row of side `from` into the other side.
    Copy {
        from: usize,
    },
    /// Per side, the columns to set and their values (in that side's types).
    Update {
        sets: [Vec<(usize, Value)>; 2],
        strategies: Vec<String>,
    },
    Refused(String),
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Timestamp(x), Timestamp(y)) => Some(x.cmp(y)),
        (TimestampTz(x), TimestampTz(y)) => Some(x.cmp(y)),
        (Timestamp(x), TimestampTz(y)) => Some(x.cmp(&y.naive_utc())),
        (TimestampTz(x), Timestamp(y)) => Some(x.naive_utc().cmp(y)),
        (Date(x), Date(y)) => Some(x.cmp(y)),
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (UInt(x), UInt(y)) => Some(x.cmp(y)),
        (Int(x), UInt(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (UInt(x), Int(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Decimal(x), Decimal(y)) => Some(x.cmp(y)),
        (Int(x), Decimal(y)) => Some(bigdecimal::BigDecimal::from(*x).cmp(y)),
        (Decimal(x), Int(y)) => Some(x.cmp(&bigdecimal::BigDecimal::from(*y))),
        (Float(x), Float(y)) => x.partial_cmp(y),
        (Null, Null) => Some(Ordering::Equal),
        (Null, _) => Some(Ordering::Less),
        (_, Null) => Some(Ordering::Greater),
        _ => None,
    }
}

/// Decide the repair of `d`. `prefer` is `--prefer`'s endpoint index.
pub fn decide(plan: &mut Plan, d: &KeyDiff, prefer: Option<usize>) -> Decision {
    let cols = match &d.diff {
        Diff::OnlyIn(s)
            if *s == plan.to
                && plan
                    .mapping
                    .sides
                    .get(&plan.endpoints[1 - *s])
                    .is_some_and(|side| side.filter.is_some()) =>
        {
            let (here, there) = (&plan.endpoints[*s], &plan.endpoints[1 - *s]);
            return Decision::Refused(format!(
                "the row is only in {here}, and {there} rows cross through a `where` filter: \
                 delete it from {here}, or insert or change it on {there} so that it passes"
            ));
        }
        Diff::OnlyIn(s) => return Decision::Copy { from: *s },
        Diff::Unconvertible(why) => {
            return Decision::Refused(format!(
                "a value cannot cross ({why}); correct it by hand on either side"
            ))
        }
        Diff::Columns(cols) => cols.clone(),
    };
    let (Some(r0), Some(r1)) = (d.rows[0].clone(), d.rows[1].clone()) else {
        return Decision::Refused("internal error: a differing row is missing".into());
    };
    // Both rows in both sides' types: `in_types[s]` is the pair as side s stores it.
    let (Ok(r0_as_1), Ok(r1_as_0)) = (plan.convert(0, &r0), plan.convert(1, &r1)) else {
        return Decision::Refused("a value cannot cross; correct it by hand on either side".into());
    };
    let endpoint_index = |name: &str| plan.endpoints.iter().position(|e| e == name);
    let mapping_owner = match &plan.mapping.conflict {
        Some(ConflictSpec {
            strategy: Strategy::Prefer(x),
        }) => endpoint_index(x),
        _ => None,
    };
    let mut sets: [Vec<(usize, Value)>; 2] = [Vec::new(), Vec::new()];
    let mut strategies = Vec::new();
    for c in cols {
        let Some(colmap) = plan
            .mapping
            .columns
            .iter()
            .filter(|m| {
                m.name_on(&plan.endpoints[0]).is_some() && m.name_on(&plan.endpoints[1]).is_some()
            })
            .nth(c)
        else {
            return Decision::Refused("internal error: unknown column".into());
        };
        let strategy = plan.mapping.strategy_for(colmap);
        let name = plan.tables[0]
            .columns
            .get(c)
            .map(|x| x.0.clone())
            .unwrap_or_default();
        // Compare in side 1's types (both rows are available there).
        let (v0, v1) = (r0_as_1.get(c), r1.get(c));
        let winner = match &strategy {
            Strategy::Prefer(x) => match endpoint_index(x) {
                Some(i) => i,
                None => return Decision::Refused(format!("prefer:{x} names no endpoint")),
            },
            Strategy::LastWriterWins { column } => {
                let ts = column
                    .as_ref()
                    .and_then(|n| {
                        plan.tables[0]
                            .columns
                            .iter()
                            .position(|(c, _)| c == n)
                            .or_else(|| plan.tables[1].columns.iter().position(|(c, _)| c == n))
                    })
                    .or_else(|| {
                        let lww = plan.mapping.lww_column()?;
                        let n = lww.name_on(&plan.endpoints[0])?;
                        plan.tables[0].columns.iter().position(|(c, _)| c == n)
                    });
                let Some(ts) = ts else {
                    return Decision::Refused(format!(
                        "column {name}: last_writer_wins without a timestamp column"
                    ));
                };
                match r0_as_1.get(ts).zip(r1.get(ts)).and_then(|(a, b)| order(a, b)) {
                    Some(Ordering::Less) => 1,
                    _ => 0, // newer on side 0, or a tie: the endpoint listed first
                }
            }
            Strategy::Max | Strategy::Min => {
                let want = if strategy == Strategy::Max {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                match v0.zip(v1).and_then(|(a, b)| order(a, b)) {
                    Some(o) if o == want => 0,
                    Some(_) => 1,
                    None => {
                        return Decision::Refused(format!(
                            "column {name}: {strategy} cannot order these values"
                        ))
                    }
                }
            }
            Strategy::Delta | Strategy::Manual => match prefer.or(if strategy == Strategy::Delta {
                mapping_owner
            } else {
                None
            }) {
                Some(i) => i,
                None => {
                    return Decision::Refused(format!(
                        "column {name} is {strategy}: tandem cannot tell which side is right. \
                         Name the owner with --prefer <endpoint> (or conflict = \"prefer:<endpoint>\" \
                         on the mapping), or correct the value by hand on both sides"
                    ))
                }
            },
        };
        strategies.push(format!("{name}:{strategy}"));
        let loser = 1 - winner;
        let value = if winner == 0 {
            r0_as_1.get(c)
        } else {
            r1_as_0.get(c)
        };
        let Some(value) = value else {
            return Decision::Refused("internal error: column out of range".into());
        };
        sets[loser].push((c, value.clone()));
    }
    Decision::Update { sets, strategies }
}
