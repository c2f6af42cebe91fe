//! The change workload: a deterministic plan of source transactions (1–1,000 rows each;
//! about half inserts, a third updates, the rest deletes), written on the source with
//! set-based statements, and the same changes as rows for the raw batched client.
//!
//! Every row's values are a function of its id and revision (how often it was updated), so
//! the raw client can produce exactly the rows the source holds without reading them back,
//! and a target can be checked against the source by `count(*)` and `sum(qty)`.

use std::collections::HashMap;
use std::fmt::Write as _;

use rand::{Rng, SeedableRng};

/// Changes of one transaction, as inclusive id ranges.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Insert(i64, i64),
    Update(i64, i64),
    Delete(i64, i64),
}

impl Op {
    #[cfg(test)]
    pub fn rows(&self) -> u64 {
        let (a, b) = match *self {
            Op::Insert(a, b) | Op::Update(a, b) | Op::Delete(a, b) => (a, b),
        };
        u64::try_from(b - a + 1).unwrap_or(0)
    }
}

pub struct Plan {
    pub txns: Vec<Vec<Op>>,
    pub changes: u64,
}

/// The id of the sentinel row inserted by the plan's last transaction.
pub const SENTINEL: i64 = 0;

/// About `changes` row changes in transactions of 1..=`max_tx` rows, then one sentinel
/// insert (id 0) as its own transaction.
pub fn plan(changes: u64, max_tx: u64, seed: u64) -> Plan {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut lo, mut hi) = (1i64, 1i64); // live ids: lo..hi
    let mut txns = Vec::new();
    let mut done = 0u64;
    while done < changes {
        let size = rng.gen_range(1..=max_tx).min(changes - done);
        let size_i = i64::try_from(size).unwrap_or(1);
        let mut upd = size_i * 35 / 100;
        let mut del = size_i * 15 / 100;
        if hi - lo < 2 * (upd + del) + 1 {
            upd = 0;
            del = 0;
        }
        let ins = size_i - upd - del;
        let mut ops = Vec::new();
        if del > 0 {
            ops.push(Op::Delete(lo, lo + del - 1));
            lo += del;
        }
        if upd > 0 {
            let start = rng.gen_range(lo..=hi - upd);
            ops.push(Op::Update(start, start + upd - 1));
        }
        ops.push(Op::Insert(hi, hi + ins - 1));
        hi += ins;
        done += size;
        txns.push(ops);
    }
    txns.push(vec![Op::Insert(SENTINEL, SENTINEL)]);
    Plan {
        txns,
        changes: done + 1,
    }
}

/// The plan with every id moved up by `offset` (the sentinel too), so that two plans
/// written on the two sides insert and delete disjoint rows.
pub fn shifted(plan: Plan, offset: i64) -> Plan {
    let shift = |op: Op| match op {
        Op::Insert(a, b) => Op::Insert(a + offset, b + offset),
        Op::Update(a, b) => Op::Update(a + offset, b + offset),
        Op::Delete(a, b) => Op::Delete(a + offset, b + offset),
    };
    Plan {
        txns: plan
            .txns
            .into_iter()
            .map(|ops| ops.into_iter().map(shift).collect())
            .collect(),
        changes: plan.changes,
    }
}

/// Adds to every `every`-th transaction (the sentinel's excepted) an update of `width`
/// consecutive rows among the shared rows `-hot..=-1`, at a random place. Returns the
/// number of row changes added.
pub fn add_hot_updates(plan: &mut Plan, hot: i64, every: usize, width: i64, seed: u64) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let last = plan.txns.len().saturating_sub(1);
    let mut added = 0u64;
    for (i, ops) in plan.txns.iter_mut().enumerate() {
        if i % every != 0 || i == last {
            continue;
        }
        let start = rng.gen_range(-hot..=-width);
        ops.push(Op::Update(start, start + width - 1));
        added += u64::try_from(width).unwrap_or(0);
    }
    plan.changes += added;
    added
}

/// Rows `id >= 0` the plan leaves, and the sum of their `qty` (their revision).
pub fn final_rows(plan: &Plan) -> (i64, i64) {
    let mut live: HashMap<i64, i64> = HashMap::new();
    for op in plan.txns.iter().flatten() {
        match *op {
            Op::Insert(a, b) => live.extend((a.max(0)..=b).map(|id| (id, 0))),
            Op::Update(a, b) => {
                for id in a.max(0)..=b {
                    if let Some(q) = live.get_mut(&id) {
                        *q += 1;
                    }
                }
            }
            Op::Delete(a, b) => {
                for id in a.max(0)..=b {
                    live.remove(&id);
                }
            }
        }
    }
    let count = i64::try_from(live.len()).unwrap_or(i64::MAX);
    (count, live.values().sum())
}

/// `CREATE TABLE` for the benchmark table, PostgreSQL side.
pub fn pg_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, sku text NOT NULL, name text NOT NULL, \
         qty integer NOT NULL, price numeric(12,2) NOT NULL, updated_at timestamptz(6) NOT NULL);\n\
         ALTER TABLE {table} REPLICA IDENTITY FULL;\n"
    )
}

/// `CREATE TABLE` for the benchmark table, MariaDB side.
pub fn maria_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, sku varchar(64) NOT NULL, \
         name varchar(255) NOT NULL, qty int NOT NULL, price decimal(12,2) NOT NULL, \
         updated_at datetime(6) NOT NULL) ENGINE=InnoDB;\n"
    )
}

pub const COLUMNS: [&str; 6] = ["id", "sku", "name", "qty", "price", "updated_at"];

/// The statements of one transaction on PostgreSQL.
pub fn pg_sql(table: &str, ops: &[Op]) -> String {
    let mut s = String::from("BEGIN;");
    for op in ops {
        match *op {
            Op::Insert(a, b) => write!(
                s,
                "INSERT INTO {table} SELECT g, 'SKU-' || g, 'item ' || g || ' rev 0', 0, \
                 (g % 1000) + 0.99, timestamptz '2024-01-01 00:00:00+00' \
                 FROM generate_series({a}, {b}) g;"
            ),
            Op::Update(a, b) => write!(
                s,
                "UPDATE {table} SET qty = qty + 1, name = 'item ' || id || ' rev ' || (qty + 1), \
                 updated_at = updated_at + interval '1 second' WHERE id BETWEEN {a} AND {b};"
            ),
            Op::Delete(a, b) => write!(s, "DELETE FROM {table} WHERE id BETWEEN {a} AND {b};"),
        }
        .ok();
    }
    s.push_str("COMMIT;");
    s
}

/// The statements of one transaction on MariaDB. Single-table `UPDATE` assigns left to
/// right, so `name` sees the incremented `qty`.
pub fn maria_sql(table: &str, ops: &[Op]) -> String {
    let mut s = String::from("START TRANSACTION;");
    for op in ops {
        match *op {
            Op::Insert(a, b) => write!(
                s,
                "INSERT INTO {table} SELECT seq, CONCAT('SKU-', seq), CONCAT('item ', seq, ' rev 0'), \
                 0, (seq % 1000) + 0.99, '2024-01-01 00:00:00' FROM seq_{a}_to_{b};"
            ),
            Op::Update(a, b) => write!(
                s,
                "UPDATE {table} SET qty = qty + 1, name = CONCAT('item ', id, ' rev ', qty), \
                 updated_at = updated_at + INTERVAL 1 SECOND WHERE id BETWEEN {a} AND {b};"
            ),
            Op::Delete(a, b) => write!(s, "DELETE FROM {table} WHERE id BETWEEN {a} AND {b};"),
        }
        .ok();
    }
    s.push_str("COMMIT;");
    s
}

/// The row of `id` at revision `rev`, as SQL literals (both dialects accept them).
pub fn row_literal(id: i64, rev: u32) -> String {
    format!(
        "({id},'SKU-{id}','item {id} rev {rev}',{rev},{}.99,'{}')",
        id % 1000,
        timestamp(rev)
    )
}

/// The row of `id` at revision `rev` as a tab-separated line (COPY text / LOAD DATA).
pub fn row_tsv(id: i64, rev: u32) -> String {
    format!(
        "{id}\tSKU-{id}\titem {id} rev {rev}\t{rev}\t{}.99\t{}\n",
        id % 1000,
        timestamp(rev)
    )
}

fn timestamp(rev: u32) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    (base + chrono::Duration::seconds(i64::from(rev)))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Upserted rows `(id, revision)` and deleted ids.
pub type Batch = (Vec<(i64, u32)>, Vec<i64>);

/// The plan's changes cut into batches of `batch` changes each, merged per key (the last
/// change of a key in the batch wins): upserted rows `(id, rev)` and deleted ids.
pub fn batches(plan: &Plan, batch: usize) -> Vec<Batch> {
    let mut rev: HashMap<i64, u32> = HashMap::new();
    let mut out = Vec::new();
    let mut pending: HashMap<i64, Option<u32>> = HashMap::new();
    let mut in_batch = 0usize;
    let flush = |pending: &mut HashMap<i64, Option<u32>>| {
        let mut ups = Vec::new();
        let mut dels = Vec::new();
        for (id, r) in pending.drain() {
            match r {
                Some(r) => ups.push((id, r)),
                None => dels.push(id),
            }
        }
        ups.sort_unstable();
        dels.sort_unstable();
        (ups, dels)
    };
    for ops in &plan.txns {
        for op in ops {
            let (a, b) = match *op {
                Op::Insert(a, b) | Op::Update(a, b) | Op::Delete(a, b) => (a, b),
            };
            for id in a..=b {
                let state = match op {
                    Op::Insert(..) => {
                        rev.insert(id, 0);
                        Some(0)
                    }
                    Op::Update(..) => {
                        let r = rev.entry(id).or_insert(0);
                        *r += 1;
                        Some(*r)
                    }
                    Op::Delete(..) => {
                        rev.remove(&id);
                        None
                    }
                };
                pending.insert(id, state);
                in_batch += 1;
                if in_batch == batch {
                    out.push(flush(&mut pending));
                    in_batch = 0;
                }
            }
        }
    }
    if !pending.is_empty() {
        out.push(flush(&mut pending));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_has_the_requested_changes_and_a_sentinel_last() {
        let p = plan(10_000, 1000, 7);
        assert_eq!(p.changes, 10_001);
        let rows: u64 = p.txns.iter().flatten().map(Op::rows).sum();
        assert_eq!(rows, p.changes);
        assert!(matches!(
            p.txns.last().map(Vec::as_slice),
            Some([Op::Insert(0, 0)])
        ));
        assert!(p
            .txns
            .iter()
            .all(|t| t.iter().map(Op::rows).sum::<u64>() <= 1000));
    }

    #[test]
    fn batches_carry_every_change_once_merged_per_key() {
        let p = plan(5_000, 300, 3);
        let b = batches(&p, 1000);
        assert!(b.len() >= 5);
        // The final state: live rows are the sentinel plus the ids never deleted.
        let mut live: HashMap<i64, u32> = HashMap::new();
        for (ups, dels) in &b {
            for id in dels {
                live.remove(id);
            }
            for (id, r) in ups {
                live.insert(*id, *r);
            }
        }
        assert!(live.contains_key(&SENTINEL));
        let deleted: u64 = p
            .txns
            .iter()
            .flatten()
            .filter(|o| matches!(o, Op::Delete(..)))
            .map(Op::rows)
            .sum();
        let inserted: u64 = p
            .txns
            .iter()
            .flatten()
            .filter(|o| matches!(o, Op::Insert(..)))
            .map(Op::rows)
            .sum();
        assert_eq!(live.len() as u64, inserted - deleted);
    }

    #[test]
    fn shifted_plans_with_hot_updates_keep_their_final_rows() {
        let p = plan(5_000, 300, 3);
        let base = final_rows(&p);
        let mut q = shifted(plan(5_000, 300, 3), 1_000_000);
        let added = add_hot_updates(&mut q, 100, 2, 10, 9);
        assert!(added > 0);
        assert_eq!(q.changes, p.changes + added);
        // The hot updates touch only negative ids; the shifted rows are the same rows.
        assert_eq!(final_rows(&q), base);
        assert!(matches!(
            q.txns.last().map(Vec::as_slice),
            Some([Op::Insert(1_000_000, 1_000_000)])
        ));
        let hot_rows: u64 = q
            .txns
            .iter()
            .flatten()
            .filter(|o| matches!(o, Op::Update(a, _) if *a < 0))
            .map(Op::rows)
            .sum();
        assert_eq!(hot_rows, added);
    }
}
