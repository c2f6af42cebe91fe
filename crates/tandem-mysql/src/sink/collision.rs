//! Inserts lost to another key of their own batch, as the server compares keys.
//!
//! A key column's collation may equate keys that the source keeps apart (`'abc'` and
//! `'ABC'` under a `_ci` collation, `'a'` and `'a '` under PAD SPACE). When an insert run
//! comes up short, the usual cause is a concurrent writer, and the retry reads its row and
//! merges (transient). But when the key that took the slot is one of the batch's own keys
//! (an earlier insert of the run, or a row the batch read and
//! [`Sink::fetch_current`](tandem_core::sink::Sink::fetch_current) kept for its own key),
//! every retry loses the insert again: that is a definite error naming both keys and the
//! collation, so the direction stops once with the fix instead of retrying forever.

use mysql_async::prelude::Queryable;
use mysql_async::{Params, Row};
use tandem_core::error::StageError;
use tandem_core::sink::TargetTable;
use tandem_core::Value;

use super::batch::{collision_candidates, decode_row, ident, key_in, same_key, table_ident};
use super::MySqlSink;
use crate::connect::classify;
use crate::types::to_mysql_value;

/// Most suspected pairs [`MySqlSink::key_collision`] looks up (one query each) after an
/// insert run came up short; a run with more suspects than that, none of them confirmed,
/// is taken for a concurrent writer's (transient) as before.
const MAX_COLLISION_PROBES: usize = 16;

impl MySqlSink {
    /// Whether an insert of the run is one key to the server with another key of its batch
    /// though they differ as values (`'abc'` and `'ABC'` under a case-insensitive
    /// collation, `'a'` and `'a '` under PAD SPACE): the other key is an earlier insert of
    /// the run, or a row the batch read that `fetch_current` kept for its own key instead
    /// of giving it to this one. Suspects come from [`collision_candidates`]; the server's
    /// own comparison confirms one by looking the inserted key up inside the transaction
    /// and getting the other key's row back. A key held by any other row was inserted by a
    /// concurrent writer: the retry reads it, so that stays transient.
    pub(super) async fn key_collision(
        &mut self,
        t: &TargetTable,
        rows: &[&Vec<Value>],
        positions: &[usize],
    ) -> Result<Option<StageError>, StageError> {
        let read: Vec<Vec<Value>> = self.held_apart.get(&t.table).cloned().unwrap_or_default();
        let keys: Vec<Vec<&Value>> = read
            .iter()
            .map(|k| k.iter().collect())
            .chain(
                rows.iter()
                    .map(|r| t.key.iter().filter_map(|&i| r.get(i)).collect()),
            )
            .collect();
        let from = read.len();
        for (a, b) in collision_candidates(&keys, from, MAX_COLLISION_PROBES) {
            let (Some(ka), Some(kb)) = (keys.get(a), keys.get(b)) else {
                continue;
            };
            let owned: Vec<Value> = kb.iter().map(|v| (*v).clone()).collect();
            let held = self.held_keys(t, &owned).await?;
            if !held.iter().any(|k| same_key(k, ka)) || held.iter().any(|k| same_key(k, kb)) {
                continue;
            }
            let collations = self.key_collations(t).await?;
            let show = |k: &[&Value]| match k {
                [one] => one.to_json().to_string(),
                many => {
                    serde_json::Value::Array(many.iter().map(|v| v.to_json()).collect()).to_string()
                }
            };
            // Name the other key's write when it is an insert of the run.
            let a_write = keys
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, k)| k.len() == ka.len() && k.iter().zip(ka).all(|(x, y)| x.same_as(y)))
                .and_then(|(i, _)| positions.get(i.checked_sub(from)?))
                .map(|p| format!(" (write {p})"))
                .unwrap_or_default();
            let b_write = b
                .checked_sub(from)
                .and_then(|i| positions.get(i))
                .copied()
                .unwrap_or_default();
            return Ok(Some(StageError::definite(
                format!(
                    "Keys {}{a_write} and {} (write {}) of one batch are one key to {}: its key compares with collation {collations}, which treats them as equal: the table has one row for both, and this batch writes them as two rows",
                    show(ka),
                    show(kb),
                    b_write,
                    t.table
                ),
                "give the key column a collation that tells them apart (e.g. ALTER TABLE … MODIFY … COLLATE utf8mb4_bin) and restart tandem: the source transaction is re-delivered from the checkpoint and applied whole. Changing the rows at the source does not help, since the transaction is re-delivered as it was committed",
            )));
        }
        Ok(None)
    }

    /// The keys of the rows the server holds for `key`, as it compares keys, inside the
    /// open transaction.
    async fn held_keys(
        &mut self,
        t: &TargetTable,
        key: &[Value],
    ) -> Result<Vec<Vec<Value>>, StageError> {
        let cols: Vec<String> = t.columns.iter().map(|(n, _)| ident(n)).collect();
        let key_cols: Vec<String> = t.key_names().map(ident).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} LIMIT 16",
            cols.join(", "),
            table_ident(t),
            key_in(&key_cols, 1)
        );
        let rows: Vec<Row> = self
            .conn
            .exec(
                sql,
                Params::Positional(key.iter().map(to_mysql_value).collect()),
            )
            .await
            .map_err(|e| classify(format!("Reading rows of {} by key", t.table), e))?;
        rows.iter()
            .map(|row| {
                let values = decode_row(t, row)?;
                Ok(t.key
                    .iter()
                    .filter_map(|&i| values.get(i).cloned())
                    .collect())
            })
            .collect()
    }

    /// `column = collation` for each key column that has one, for messages.
    async fn key_collations(&mut self, t: &TargetTable) -> Result<String, StageError> {
        let rows: Vec<(String, Option<String>)> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (t.table.schema.as_str(), t.table.name.as_str()),
            )
            .await
            .map_err(|e| classify(format!("Reading the key collation of {}", t.table), e))?;
        let names: Vec<&str> = t.key_names().collect();
        let found: Vec<String> = rows
            .into_iter()
            .filter(|(c, _)| names.contains(&c.as_str()))
            .filter_map(|(c, coll)| coll.map(|coll| format!("{c} = {coll}")))
            .collect();
        Ok(if found.is_empty() {
            "(none: binary key)".to_owned()
        } else {
            found.join(", ")
        })
    }
}
