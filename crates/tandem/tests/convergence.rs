//! Convergence under concurrent writers on both sides, for every strategy at once.
//!
//! Random transactions run on both databases at the same time — the same keys, the same
//! moments: `last_writer_wins` text with its timestamp, an inventory-owned column that both
//! sides write, a `delta` counter, `max` and `min` columns, concurrent inserts of the same
//! new keys, and deletes racing updates. Once the writers stop and tandem drains, every
//! row must be equal on both sides, and every counter must equal its initial value plus
//! every committed change on either side. Each run prints its seed; rerun one with
//! `TANDEM_SEED=…`.
//!
//! Not covered, by design: an insert racing a delete of the same key converges only with
//! tombstones (design doc, rule 6), so the workload keeps inserted and deleted keys apart.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem_testkit::{shared_maria, shared_pg};

const PG_TABLE: &str = "CREATE TABLE conv (id int PRIMARY KEY, label text NOT NULL, ts timestamptz(6) NOT NULL, \
     owned int NOT NULL, cnt int NOT NULL, hi int NOT NULL, lo int NOT NULL); ALTER TABLE conv REPLICA IDENTITY FULL;
     CREATE TABLE conv_log (n bigserial, id int, hi int, lo int, cnt int, who text, at timestamptz DEFAULT clock_timestamp());
     CREATE FUNCTION conv_log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
       INSERT INTO conv_log (id, hi, lo, cnt, who) VALUES (NEW.id, NEW.hi, NEW.lo, NEW.cnt,
         CASE WHEN pg_replication_origin_session_is_setup() THEN 'tandem' ELSE 'app' END || ' ' || txid_current());
       RETURN NEW; END $$;
     CREATE TRIGGER conv_log AFTER INSERT OR UPDATE ON conv FOR EACH ROW EXECUTE FUNCTION conv_log();";
const MY_TABLE: &str = "CREATE TABLE conv (id int PRIMARY KEY, label varchar(100) NOT NULL, ts datetime(6) NOT NULL, \
     owned int NOT NULL, cnt int NOT NULL, hi int NOT NULL, lo int NOT NULL) ENGINE=InnoDB;
     CREATE TABLE conv_log (n bigint AUTO_INCREMENT PRIMARY KEY, id int, hi int, lo int, cnt int, who varchar(40), at datetime(6) DEFAULT NOW(6));
     CREATE TRIGGER conv_log_i AFTER INSERT ON conv FOR EACH ROW INSERT INTO conv_log (id, hi, lo, cnt, who) VALUES (NEW.id, NEW.hi, NEW.lo, NEW.cnt, IF(@@skip_replication, 'tandem', 'app'));
     CREATE TRIGGER conv_log_u AFTER UPDATE ON conv FOR EACH ROW INSERT INTO conv_log (id, hi, lo, cnt, who) VALUES (NEW.id, NEW.hi, NEW.lo, NEW.cnt, IF(@@skip_replication, 'tandem', 'app'));";

const MAPPING: &str = r#"
[[mappings]]
name = "conv"
inventory = { table = "public.conv", key = ["id"] }
retail    = { table = "conv",        key = ["id"] }
conflict  = { strategy = "last_writer_wins", column = "ts" }
columns = [
  { inventory = "id",    retail = "id" },
  { inventory = "label", retail = "label" },
  { inventory = "ts",    retail = "ts" },
  { inventory = "owned", retail = "owned", conflict = "prefer:inventory" },
  { inventory = "cnt",   retail = "cnt",   conflict = "delta" },
  { inventory = "hi",    retail = "hi",    conflict = "max" },
  { inventory = "lo",    retail = "lo",    conflict = "min" },
]
"#;

/// Stable rows, updated by both sides.
const STABLE: std::ops::RangeInclusive<i32> = 1..=8;
/// New keys both sides insert at the same time.
const NEW: std::ops::RangeInclusive<i32> = 100..=111;
/// Rows that get deleted while both sides update them.
const DOOMED: std::ops::RangeInclusive<i32> = 200..=207;

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Inventory,
    Retail,
}

/// One random statement for `side`; returns the SQL and the counter change it makes
/// (`cnt` delta, or the inserted `cnt`).
fn statement(rng: &mut StdRng, side: Side) -> (String, i64) {
    let now = if side == Side::Inventory {
        "clock_timestamp()"
    } else {
        "NOW(6)"
    };
    let tag = if side == Side::Inventory {
        "inv"
    } else {
        "ret"
    };
    match rng.gen_range(0..10) {
        0..=1 => {
            let id = if rng.gen_bool(0.5) {
                rng.gen_range(STABLE)
            } else {
                rng.gen_range(NEW)
            };
            let d = rng.gen_range(-5..=9);
            (
                format!("UPDATE conv SET cnt = cnt + {d} WHERE id = {id}"),
                i64::from(d),
            )
        }
        2..=3 => {
            let id = rng.gen_range(STABLE);
            let n = rng.gen_range(0..1000);
            (
                format!("UPDATE conv SET label = '{tag}-{n}', ts = {now} WHERE id = {id}"),
                0,
            )
        }
        4 => {
            let id = rng.gen_range(STABLE);
            (
                format!(
                    "UPDATE conv SET owned = {} WHERE id = {id}",
                    rng.gen_range(0..100)
                ),
                0,
            )
        }
        5 => {
            let id = rng.gen_range(STABLE);
            let col = if rng.gen_bool(0.5) { "hi" } else { "lo" };
            (
                format!(
                    "UPDATE conv SET {col} = {} WHERE id = {id}",
                    rng.gen_range(0..100)
                ),
                0,
            )
        }
        6..=7 => {
            let id = rng.gen_range(NEW);
            let cnt = rng.gen_range(1..=5);
            (
                format!(
                    "INSERT INTO conv VALUES ({id}, '{tag}-new', {now}, {}, {cnt}, {}, {})",
                    rng.gen_range(0..100),
                    rng.gen_range(0..100),
                    rng.gen_range(0..100)
                ),
                i64::from(cnt),
            )
        }
        8 => {
            let id = rng.gen_range(DOOMED);
            (
                format!(
                    "UPDATE conv SET label = '{tag}-x', ts = {now}, hi = hi + 1 WHERE id = {id}"
                ),
                0,
            )
        }
        _ => (
            format!("DELETE FROM conv WHERE id = {}", rng.gen_range(DOOMED)),
            0,
        ),
    }
}

fn snapshot_sql(side: Side) -> &'static str {
    match side {
        Side::Inventory => {
            "SELECT id, label, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), owned, cnt, hi, lo FROM conv ORDER BY id"
        }
        Side::Retail => {
            "SELECT id, label, DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), owned, cnt, hi, lo FROM conv ORDER BY id"
        }
    }
}

async fn run_once(seed: u64) {
    eprintln!("convergence seed {seed} (rerun with TANDEM_SEED={seed})");
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 0).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    pg.psql(&inv, PG_TABLE).await.unwrap();
    maria.sql(&ret, MY_TABLE).await.unwrap();
    // Both sides start equal: rows inserted on both before tandem first starts.
    let mut seed_rows = String::new();
    for id in STABLE.chain(DOOMED) {
        seed_rows.push_str(&format!(
            "INSERT INTO conv VALUES ({id}, 'start', '2026-01-01 00:00:00', 50, 100, 50, 50);"
        ));
    }
    pg.psql(&inv, &seed_rows).await.unwrap();
    maria.sql(&ret, &seed_rows).await.unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        let head = t
            .split("[[mappings]]")
            .next()
            .unwrap_or_default()
            .to_owned();
        format!("{head}{MAPPING}")
    });
    let initial_cnt: i64 = 100 * STABLE.count() as i64;

    let daemon = Daemon::start(&cfg);
    // Let both directions get past their (equal) initial copies before writing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = pg
            .psql(
                &inv,
                "SELECT count(*) FROM tandem.checkpoints WHERE pipeline NOT LIKE '% snapshot %'",
            )
            .await
            .unwrap_or_default();
        let b = maria
            .sql(
                &ret,
                "SELECT count(*) FROM tandem_checkpoints WHERE pipeline NOT LIKE '% snapshot %'",
            )
            .await
            .unwrap_or_default();
        if a.trim() == "1" && b.trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tandem did not start both directions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let running = Arc::new(AtomicBool::new(true));
    let mut writers = Vec::new();
    for (i, side) in [Side::Inventory, Side::Inventory, Side::Retail, Side::Retail]
        .into_iter()
        .enumerate()
    {
        let running = running.clone();
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64 * 7919));
        let pg_url = pg.url(&inv);
        let my_url = maria.url(&ret);
        writers.push(tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut counted = 0i64;
            let mut committed = 0u64;
            let pgc = if side == Side::Inventory {
                let (c, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Some(c)
            } else {
                None
            };
            let mut myc = if side == Side::Retail {
                Some(
                    mysql_async::Conn::new(mysql_async::Opts::from_url(&my_url).unwrap())
                        .await
                        .unwrap(),
                )
            } else {
                None
            };
            while running.load(Ordering::Relaxed) {
                let n = rng.gen_range(1..=3);
                let stmts: Vec<(String, i64)> = (0..n).map(|_| statement(&mut rng, side)).collect();
                // Statement by statement, so that only rows actually changed are counted
                // (an update of a key not inserted yet changes nothing).
                let mut delta = 0i64;
                let ok = match (&pgc, &mut myc) {
                    (Some(c), _) => {
                        let mut ok = c.batch_execute("BEGIN").await.is_ok();
                        for (sql, d) in &stmts {
                            if !ok {
                                break;
                            }
                            match c.execute(sql.as_str(), &[]).await {
                                Ok(n) => delta += d * n as i64,
                                Err(_) => ok = false,
                            }
                        }
                        ok = ok && c.batch_execute("COMMIT").await.is_ok();
                        if !ok {
                            let _ = c.batch_execute("ROLLBACK").await;
                        }
                        ok
                    }
                    (None, Some(c)) => {
                        let mut ok = c.query_drop("START TRANSACTION").await.is_ok();
                        for (sql, d) in &stmts {
                            if !ok {
                                break;
                            }
                            match c.query_drop(sql.as_str()).await {
                                Ok(()) => delta += d * c.affected_rows() as i64,
                                Err(_) => ok = false,
                            }
                        }
                        ok = ok && c.query_drop("COMMIT").await.is_ok();
                        if !ok {
                            let _ = c.query_drop("ROLLBACK").await;
                        }
                        ok
                    }
                    _ => false,
                };
                // Failed transactions (duplicate key, deadlock) changed nothing.
                if ok {
                    committed += 1;
                    counted += delta;
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..8))).await;
            }
            (counted, committed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    running.store(false, Ordering::Relaxed);
    let mut counted = 0;
    let mut committed = 0;
    for w in writers {
        let (c, n) = w.await.unwrap();
        counted += c;
        committed += n;
    }
    assert!(
        committed > 100,
        "too few transactions to mean anything: {committed}"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let a = pg
            .psql(&inv, snapshot_sql(Side::Inventory))
            .await
            .unwrap()
            .replace('|', "\t");
        let b = maria.sql(&ret, snapshot_sql(Side::Retail)).await.unwrap();
        let sum_counters = |rows: &str| -> i64 {
            rows.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    let id: i32 = f.first()?.parse().ok()?;
                    (STABLE.contains(&id) || NEW.contains(&id))
                        .then(|| f.get(4)?.parse::<i64>().ok())
                        .flatten()
                })
                .sum()
        };
        let equal = a.trim() == b.trim();
        if equal && sum_counters(&a) == initial_cnt + counted {
            break;
        }
        if Instant::now() >= deadline {
            // Show what tandem decided about the rows that differ.
            let differing: Vec<String> = a
                .lines()
                .zip(b.lines())
                .filter(|(x, y)| x != y)
                .filter_map(|(x, _)| x.split('\t').next().map(str::to_owned))
                .collect();
            for id in &differing {
                let q = format!("SELECT kind, strategy, decision, before, after, current FROM tandem.conflicts WHERE key->>'id' = '{id}' ORDER BY id");
                eprintln!(
                    "inventory conflicts for id {id}:\n{}",
                    pg.psql(&inv, &q).await.unwrap_or_default()
                );
                let q = format!("SELECT kind, strategy, decision, `before`, `after`, `current` FROM tandem_conflicts WHERE JSON_VALUE(`key`, '$.id') = '{id}' ORDER BY id");
                eprintln!(
                    "retail conflicts for id {id}:\n{}",
                    maria.sql(&ret, &q).await.unwrap_or_default()
                );
                let q = format!(
                    "SELECT n, hi, lo, cnt, who, at FROM conv_log WHERE id = {id} ORDER BY n"
                );
                eprintln!(
                    "inventory history of id {id}:\n{}",
                    pg.psql(&inv, &q).await.unwrap_or_default()
                );
                eprintln!(
                    "retail history of id {id}:\n{}",
                    maria.sql(&ret, &q).await.unwrap_or_default()
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: sides did not converge (equal rows: {equal}; counters {} vs expected {})\ninventory:\n{a}\nretail:\n{b}",
            sum_counters(&a),
            initial_cnt + counted
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let conflicts = maria
        .sql(&ret, "SELECT count(*) FROM tandem_conflicts")
        .await
        .unwrap();
    let conflicts2 = pg
        .psql(&inv, "SELECT count(*) FROM tandem.conflicts")
        .await
        .unwrap();
    eprintln!(
        "seed {seed}: {committed} transactions, conflicts recorded: retail {}, inventory {}",
        conflicts.trim(),
        conflicts2.trim()
    );
    assert!(
        conflicts.trim() != "0" || conflicts2.trim() != "0",
        "a workload this concurrent must produce conflicts; none were recorded"
    );
    drop(daemon);
}

#[tokio::test]
async fn concurrent_writers_on_both_sides_converge_for_every_strategy() {
    let seed = std::env::var("TANDEM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen::<u64>());
    run_once(seed).await;
}
