//! The first start on two databases that already hold data, and a crash in the middle of
//! it.
//!
//! Both sides are pre-filled with equal, conflicting and one-sided rows, for the demo
//! schema and for a table with one column per conflict strategy. After tandem's first
//! start every mapped row is equal on both sides (except the `manual` column's conflicts,
//! which stay parked), every decision is in the conflicts tables, and counters follow the
//! initial-sync rule: the endpoint listed first (inventory) wins. A SIGKILL during the copy
//! of a large table resumes without copying the finished tables again, and counters stay
//! exact across the seam between the old and the new snapshot.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tandem_testkit::{shared_maria, shared_pg, MariaInstance, PgInstance};

struct Daemon(Child);

impl Daemon {
    fn start(config: &Path, log: &Path) -> Daemon {
        let log = std::fs::File::create(log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["run", "-c", config.to_str().unwrap()])
            .env("INVENTORY_PASSWORD", "")
            .env("RETAIL_PASSWORD", "")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("tandem run starts");
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    Some(buf)
}

/// `tandem_snapshot_rows_total` of one direction and table in this process, if counted.
async fn snapshot_rows(listen: &str, direction: &str, table: &str) -> Option<u64> {
    let metrics = http_get(listen, "/metrics").await?;
    metrics
        .lines()
        .filter(|l| l.starts_with("tandem_snapshot_rows_total{"))
        .filter(|l| l.contains(&format!("direction=\"{direction}\"")))
        .filter(|l| l.contains(&format!("table=\"{table}\"")))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}

async fn both_streaming(listen: &str) -> bool {
    http_get(listen, "/status").await.is_some_and(|s| {
        s.matches(r#""state":"streaming""#).count() == 2 && !s.contains(r#""snapshot":{"#)
    })
}

/// Slot, publication and origin of the test's own: they are cluster-wide on PostgreSQL.
fn own_names(config: &str, tag: &str) -> String {
    let own = format!(
        "kind = \"postgres\"\nslot = \"{tag}\"\npublication = \"{tag}\"\norigin = \"{tag}\"\n"
    );
    config.replacen("kind = \"postgres\"\n", &own, 1)
}

async fn pg_rows(pg: &PgInstance, db: &str, sql: &str) -> String {
    pg.psql(db, sql)
        .await
        .unwrap()
        .replace('|', "\t")
        .trim()
        .to_owned()
}

async fn my_rows(maria: &MariaInstance, db: &str, sql: &str) -> String {
    maria.sql(db, sql).await.unwrap().trim().to_owned()
}

const PRODUCTS_INV: &str = "SELECT sku, name, unit_price, on_hand FROM items ORDER BY sku";
const PRODUCTS_RET: &str = "SELECT sku, title, price, stock_qty FROM products ORDER BY sku";

const STRAT_PG: &str = "CREATE TABLE strat (id int PRIMARY KEY, label text NOT NULL, \
    ts timestamptz(6) NOT NULL, owned int NOT NULL, cnt int NOT NULL, hi int NOT NULL, \
    lo int NOT NULL, note text NOT NULL); ALTER TABLE strat REPLICA IDENTITY FULL;";
const STRAT_MY: &str = "CREATE TABLE strat (id int PRIMARY KEY, label varchar(100) NOT NULL, \
    ts datetime(6) NOT NULL, owned int NOT NULL, cnt int NOT NULL, hi int NOT NULL, \
    lo int NOT NULL, note varchar(100) NOT NULL) ENGINE=InnoDB;";
const STRAT_MAPPING: &str = r#"
[[mappings]]
name = "strat"
inventory = { table = "public.strat", key = ["id"] }
retail    = { table = "strat",        key = ["id"] }
conflict  = { strategy = "last_writer_wins", column = "ts" }
columns = [
  { inventory = "id",    retail = "id" },
  { inventory = "label", retail = "label" },
  { inventory = "ts",    retail = "ts" },
  { inventory = "owned", retail = "owned", conflict = "prefer:inventory" },
  { inventory = "cnt",   retail = "cnt",   conflict = "delta" },
  { inventory = "hi",    retail = "hi",    conflict = "max" },
  { inventory = "lo",    retail = "lo",    conflict = "min" },
  { inventory = "note",  retail = "note",  conflict = "manual" },
]
"#;
const STRAT_INV: &str =
    "SELECT id, label, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
    owned, cnt, hi, lo, note FROM strat ORDER BY id";
const STRAT_RET: &str =
    "SELECT id, label, DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s'), owned, cnt, hi, lo, note \
    FROM strat ORDER BY id";

/// (id, label, ts, owned, cnt, hi, lo, note) per side; `None` where the side lacks it.
type StratRow = (
    i32,
    &'static str,
    &'static str,
    i32,
    i32,
    i32,
    i32,
    &'static str,
);
const OLD: &str = "2020-01-01 00:00:00";
const NEW: &str = "2021-01-01 00:00:00";
const STRAT_ROWS: &[(Option<StratRow>, Option<StratRow>)] = &[
    // Equal on both sides: nothing to decide.
    (
        Some((1, "same", OLD, 7, 100, 5, 5, "n")),
        Some((1, "same", OLD, 7, 100, 5, 5, "n")),
    ),
    (
        Some((2, "same", OLD, 7, 100, 5, 5, "n")),
        Some((2, "same", OLD, 7, 100, 5, 5, "n")),
    ),
    // Conflicting in every strategy's column; retail's row is newer.
    (
        Some((10, "inv", OLD, 1, 10, 5, 5, "n")),
        Some((10, "ret", NEW, 2, 20, 9, 1, "n")),
    ),
    // Conflicting; inventory's row is newer.
    (
        Some((11, "inv", NEW, 1, 10, 9, 1, "n")),
        Some((11, "ret", OLD, 2, 20, 5, 5, "n")),
    ),
    // Only the manual column differs: parked on both sides.
    (
        Some((40, "same", OLD, 7, 100, 5, 5, "inventory note")),
        Some((40, "same", OLD, 7, 100, 5, 5, "retail note")),
    ),
    // One side only.
    (Some((20, "inv-only", OLD, 3, 30, 3, 3, "n")), None),
    (None, Some((30, "ret-only", OLD, 4, 40, 4, 4, "n"))),
];

fn strat_inserts(
    pick: impl Fn(&(Option<StratRow>, Option<StratRow>)) -> Option<StratRow>,
    utc: &str,
) -> String {
    let values: Vec<String> = STRAT_ROWS
        .iter()
        .filter_map(pick)
        .map(|(id, label, ts, owned, cnt, hi, lo, note)| {
            format!("({id}, '{label}', '{ts}{utc}', {owned}, {cnt}, {hi}, {lo}, '{note}')")
        })
        .collect();
    format!("INSERT INTO strat VALUES {};", values.join(", "))
}

#[tokio::test]
async fn prefilled_sides_converge_with_every_decision_recorded() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 12).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    pg.psql(
        &inv,
        &format!("{STRAT_PG}{}", strat_inserts(|r| r.0, "+00")),
    )
    .await
    .unwrap();
    maria
        .sql(&ret, &format!("{STRAT_MY}{}", strat_inserts(|r| r.1, "")))
        .await
        .unwrap();
    // Demo products: 1–5 equal, 6–8 conflicting with an older shop row, 9 with a newer
    // one, two shop-only products; 10–12 exist in the inventory only.
    let items = pg_rows(
        pg,
        &inv,
        "SELECT sku, name, unit_price, on_hand, to_char(updated_at AT TIME ZONE 'UTC', \
         'YYYY-MM-DD HH24:MI:SS.US') FROM items WHERE sku <= 'SKU-00005' ORDER BY sku",
    )
    .await;
    let mut shop = String::new();
    for line in items.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        shop.push_str(&format!(
            "INSERT INTO products VALUES ('{}', '{}', {}, {}, '{}');",
            f[0], f[1], f[2], f[3], f[4]
        ));
    }
    shop.push_str(
        "INSERT INTO products VALUES ('SKU-00006', 'shop title 6', 1.00, 999, '2000-01-01'), \
         ('SKU-00007', 'shop title 7', 1.00, 999, '2000-01-01'), \
         ('SKU-00008', 'shop title 8', 1.00, 999, '2000-01-01'), \
         ('SKU-00009', 'shop title 9', 1.00, 999, '2099-01-01'), \
         ('SKU-S0001', 'shop only 1', 3.50, 4, '2020-01-01'), \
         ('SKU-S0002', 'shop only 2', 4.50, 5, '2020-01-01');",
    );
    maria.sql(&ret, &shop).await.unwrap();
    let inv_before = pg_rows(pg, &inv, PRODUCTS_INV).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        format!("{}{STRAT_MAPPING}", own_names(&t, "isync_prefilled"))
    });
    let _daemon = Daemon::start(&cfg, &pair.dir.join("sync.log"));

    // Equal under the mapping: the demo products, and the strategy table but for the
    // manual column's parked rows.
    let strat_no_note = |s: &str| -> String {
        s.lines()
            .map(|l| l.rsplit_once('\t').map_or(l, |(head, _)| head))
            .collect::<Vec<_>>()
            .join("\n")
    };
    wait_for("both sides to converge", 90, || async {
        both_streaming(&listen).await
            && pg_rows(pg, &inv, PRODUCTS_INV).await == my_rows(maria, &ret, PRODUCTS_RET).await
            && strat_no_note(&pg_rows(pg, &inv, STRAT_INV).await)
                == strat_no_note(&my_rows(maria, &ret, STRAT_RET).await)
    })
    .await;
    let products = pg_rows(pg, &inv, PRODUCTS_INV).await;
    assert_eq!(
        products.lines().count(),
        14,
        "12 items + 2 shop-only:\n{products}"
    );
    for line in inv_before.lines().filter(|l| !l.starts_with("SKU-00009")) {
        assert!(
            products.lines().any(|p| p == line),
            "inventory's older or equal row must stand: {line}\n{products}"
        );
    }
    // SKU-00009: the shop's newer title wins; price is inventory's (prefer), stock is
    // inventory's (initial sync: first endpoint wins, no adding).
    let nine_before = inv_before
        .lines()
        .find(|l| l.starts_with("SKU-00009"))
        .unwrap();
    let nine_before: Vec<&str> = nine_before.split('\t').collect();
    let nine = products
        .lines()
        .find(|l| l.starts_with("SKU-00009"))
        .unwrap();
    assert_eq!(
        nine,
        format!(
            "SKU-00009\tshop title 9\t{}\t{}",
            nine_before[2], nine_before[3]
        )
    );
    assert!(
        products.contains("SKU-S0001\tshop only 1\t3.50\t4"),
        "{products}"
    );

    let strat_inv = pg_rows(pg, &inv, STRAT_INV).await;
    let strat_ret = my_rows(maria, &ret, STRAT_RET).await;
    let want = [
        "1\tsame\t2020-01-01 00:00:00\t7\t100\t5\t5\tn",
        "2\tsame\t2020-01-01 00:00:00\t7\t100\t5\t5\tn",
        // lww: retail newer; prefer: inventory; delta: inventory (listed first); max; min.
        "10\tret\t2021-01-01 00:00:00\t1\t10\t9\t1\tn",
        "11\tinv\t2021-01-01 00:00:00\t1\t10\t9\t1\tn",
        "20\tinv-only\t2020-01-01 00:00:00\t3\t30\t3\t3\tn",
        "30\tret-only\t2020-01-01 00:00:00\t4\t40\t4\t4\tn",
    ];
    let without_40 = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("40\t"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_40(&strat_inv), want.join("\n"));
    assert_eq!(without_40(&strat_ret), want.join("\n"));
    // The manual column: each side keeps its own value, parked for a DBA.
    assert!(strat_inv.contains("40\tsame\t2020-01-01 00:00:00\t7\t100\t5\t5\tinventory note"));
    assert!(strat_ret.contains("40\tsame\t2020-01-01 00:00:00\t7\t100\t5\t5\tretail note"));
    let parked_inv = pg_rows(
        pg,
        &inv,
        "SELECT DISTINCT key->>'id' FROM tandem.conflicts WHERE mapping = 'strat' AND decision = 'parked' ORDER BY 1",
    )
    .await;
    let parked_ret = my_rows(
        maria,
        &ret,
        "SELECT DISTINCT JSON_UNQUOTE(JSON_EXTRACT(`key`, '$.id')) FROM tandem_conflicts WHERE mapping = 'strat' AND decision = 'parked' ORDER BY 1",
    )
    .await;
    assert_eq!(parked_inv, "40");
    assert_eq!(parked_ret, "40");

    // Every decision is recorded (on the side it was taken on), and nothing else.
    let conflicted_inv = pg_rows(
        pg,
        &inv,
        "SELECT DISTINCT mapping || ':' || coalesce(key->>'id', key->>'sku') FROM tandem.conflicts ORDER BY 1",
    )
    .await;
    let conflicted_ret = my_rows(
        maria,
        &ret,
        "SELECT DISTINCT CONCAT(mapping, ':', JSON_UNQUOTE(COALESCE(JSON_EXTRACT(`key`, '$.id'), JSON_EXTRACT(`key`, '$.sku')))) FROM tandem_conflicts ORDER BY 1",
    )
    .await;
    let mut conflicted: Vec<&str> = conflicted_inv
        .lines()
        .chain(conflicted_ret.lines())
        .collect();
    conflicted.sort();
    conflicted.dedup();
    assert_eq!(
        conflicted,
        [
            "products:SKU-00006",
            "products:SKU-00007",
            "products:SKU-00008",
            "products:SKU-00009",
            "strat:10",
            "strat:11",
            "strat:40"
        ],
        "inventory:\n{conflicted_inv}\nretail:\n{conflicted_ret}"
    );
    let kinds = pg_rows(pg, &inv, "SELECT DISTINCT kind FROM tandem.conflicts").await;
    assert!(kinds.lines().all(|k| k == "insert_exists"), "{kinds}");
    let delta_rule = pg_rows(
        pg,
        &inv,
        "SELECT count(*) FROM tandem.conflicts WHERE strategy LIKE '%delta(initial sync: first endpoint wins)%'",
    )
    .await;
    let delta_rule_ret = my_rows(
        maria,
        &ret,
        "SELECT count(*) FROM tandem_conflicts WHERE strategy LIKE '%delta(initial sync: first endpoint wins)%'",
    )
    .await;
    assert!(
        delta_rule.parse::<u32>().unwrap() + delta_rule_ret.parse::<u32>().unwrap() > 0,
        "the counter rule is named in the recorded decisions"
    );
}

const BULK_ROWS: u64 = 200_000;
const BULK_MAPPING: &str = r#"
[[mappings]]
name = "bulk"
direction = "inventory->retail"
inventory = { table = "public.bulk", key = ["id"] }
retail    = { table = "bulk",        key = ["id"] }
conflict  = "prefer:inventory"
columns = [
  { inventory = "id",  retail = "id" },
  { inventory = "cnt", retail = "cnt", conflict = "delta" },
  { inventory = "pad", retail = "pad" },
]
"#;
const BULK_SUMS: &str = "SELECT count(*), sum(cnt), sum(id::bigint * cnt) FROM bulk";
const BULK_SUMS_MY: &str = "SELECT count(*), sum(cnt), sum(CAST(id AS SIGNED) * cnt) FROM bulk";

/// Changes to `bulk` while tandem is down after a crash in its copy: to the committed part
/// (the stream must bring them), to the rest (copied again at a newer snapshot, so the
/// stream must not apply them a second time), and keys moved across the seam both ways.
fn bulk_changes_while_down() -> String {
    format!(
        "UPDATE bulk SET cnt = cnt + 1 WHERE id <= 100;
         UPDATE bulk SET cnt = cnt + 1 WHERE id > {BULK_ROWS} - 100;
         UPDATE bulk SET id = id + 1000000 WHERE id = 5;
         UPDATE bulk SET id = -id WHERE id = {BULK_ROWS};"
    )
}

/// Kill `daemon` once a part of `bulk`'s copy is committed on the target (`count` runs a
/// query there); returns the rows committed, checked to be a prefix in key order.
async fn kill_after_a_committed_part<F, Fut>(daemon: Daemon, count: F) -> u64
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    wait_for("a part of bulk's copy to be committed", 120, || async {
        count("SELECT count(*) FROM bulk").await != "0"
    })
    .await;
    drop(daemon); // SIGKILL
    let committed: u64 = count("SELECT count(*) FROM bulk").await.parse().unwrap();
    assert!(
        committed < BULK_ROWS,
        "the copy finished before the kill; nothing to resume"
    );
    assert_eq!(
        count("SELECT max(id) FROM bulk").await,
        committed.to_string(),
        "the committed part is a prefix of the table in key order"
    );
    committed
}

#[tokio::test]
async fn a_crash_during_the_copy_resumes_without_redoing_finished_tables() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 20).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    pg.psql(
        &inv,
        &format!(
            "CREATE TABLE bulk (id int PRIMARY KEY, cnt int NOT NULL, pad text NOT NULL);
             ALTER TABLE bulk REPLICA IDENTITY FULL;
             INSERT INTO bulk SELECT g, g % 7, repeat('x', 40) FROM generate_series(1, {BULK_ROWS}) g;"
        ),
    )
    .await
    .unwrap();
    maria
        .sql(
            &ret,
            "CREATE TABLE bulk (id int PRIMARY KEY, cnt int NOT NULL, pad varchar(64) NOT NULL) ENGINE=InnoDB;",
        )
        .await
        .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        format!(
            "{}{BULK_MAPPING}",
            own_names(&t, "isync_crash")
                .replace("[daemon]\n", "[daemon]\nsnapshot_chunk_rows = 500\n")
        )
    });
    const DIR: &str = "inventory->retail";

    // First run: killed once part of the large table is committed (its copy commits every
    // 50,000 rows with the last key, so that a crash resumes after it).
    let first = Daemon::start(&cfg, &pair.dir.join("first.log"));
    let committed = kill_after_a_committed_part(first, |q| my_rows(maria, &ret, q)).await;
    assert_eq!(
        my_rows(maria, &ret, "SELECT count(*) FROM products").await,
        "20",
        "the finished table is committed"
    );

    // Changes while tandem is down, also to the finished table (copied at the old
    // snapshot, so the stream must bring them).
    pg.psql(
        &inv,
        &format!(
            "UPDATE items SET on_hand = on_hand + 7 WHERE sku = 'SKU-00003'; {}",
            bulk_changes_while_down()
        ),
    )
    .await
    .unwrap();

    let log = pair.dir.join("second.log");
    let _second = Daemon::start(&cfg, &log);
    wait_for("the resumed copy to finish", 180, || async {
        both_streaming(&listen).await
            // Only the rest is read again (the moves keep its row count).
            && snapshot_rows(&listen, DIR, "public.bulk").await == Some(BULK_ROWS - committed)
    })
    .await;
    assert_eq!(
        snapshot_rows(&listen, DIR, "public.items").await,
        None,
        "the finished table must not be copied again"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("resuming an interrupted initial copy")
            && text.contains("resuming the table's copy after its last committed key"),
        "the log says what was resumed:\n{text}"
    );
    // A change once streaming runs.
    pg.psql(&inv, "UPDATE bulk SET cnt = cnt + 2 WHERE id <= 10;")
        .await
        .unwrap();

    let expected = pg_rows(pg, &inv, BULK_SUMS).await;
    let initial: u64 = (1..=BULK_ROWS).map(|g| g % 7).sum::<u64>();
    assert!(
        expected.starts_with(&format!("{BULK_ROWS}\t{}\t", initial + 200 + 20)),
        "{expected}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = my_rows(maria, &ret, BULK_SUMS_MY).await;
        let (pi, pr) = (
            pg_rows(pg, &inv, PRODUCTS_INV).await,
            my_rows(maria, &ret, PRODUCTS_RET).await,
        );
        if got == expected && pi == pr {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counters not exact: retail bulk {got}, inventory bulk {expected}\ninventory:\n{pi}\nretail:\n{pr}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead = my_rows(maria, &ret, "SELECT count(*) FROM tandem_dead_letters").await;
    assert_eq!(dead, "0");
    // The resume slot is gone; only the direction's own slot holds WAL.
    let slots = pg_rows(
        pg,
        &inv,
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'isync%' ORDER BY 1",
    )
    .await;
    assert!(!slots.contains("_resume"), "{slots}");
}

/// The same from the retail side: the MariaDB snapshot resumes after the last committed
/// key (read in a new consistent snapshot), and the binlog stream from the first part's
/// position applies exactly what the committed part lacks.
#[tokio::test]
async fn a_crash_during_the_copy_from_mariadb_resumes_inside_the_table() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 5).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    maria
        .sql(
            &ret,
            &format!(
                "CREATE TABLE bulk (id int PRIMARY KEY, cnt int NOT NULL, pad varchar(64) NOT NULL) ENGINE=InnoDB;
                 INSERT INTO bulk SELECT seq, seq % 7, REPEAT('x', 40) FROM seq_1_to_{BULK_ROWS};"
            ),
        )
        .await
        .unwrap();
    pg.psql(
        &inv,
        "CREATE TABLE bulk (id int PRIMARY KEY, cnt int NOT NULL, pad text NOT NULL);",
    )
    .await
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        let mapping = BULK_MAPPING
            .replace("inventory->retail", "retail->inventory")
            .replace("prefer:inventory", "prefer:retail");
        format!(
            "{}{mapping}",
            own_names(&t, "isync_crash_r")
                .replace("[daemon]\n", "[daemon]\nsnapshot_chunk_rows = 500\n")
        )
    });
    const DIR: &str = "retail->inventory";

    let first = Daemon::start(&cfg, &pair.dir.join("first.log"));
    let committed = kill_after_a_committed_part(first, |q| pg_rows(pg, &inv, q)).await;
    maria.sql(&ret, &bulk_changes_while_down()).await.unwrap();

    let log = pair.dir.join("second.log");
    let _second = Daemon::start(&cfg, &log);
    let table = format!("{ret}.bulk");
    wait_for("the resumed copy to finish", 180, || async {
        both_streaming(&listen).await
            && snapshot_rows(&listen, DIR, &table).await == Some(BULK_ROWS - committed)
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("resuming the table's copy after its last committed key"),
        "the log says what was resumed:\n{text}"
    );
    maria
        .sql(&ret, "UPDATE bulk SET cnt = cnt + 2 WHERE id <= 10;")
        .await
        .unwrap();
    let expected = my_rows(maria, &ret, BULK_SUMS_MY).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = pg_rows(pg, &inv, BULK_SUMS).await;
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counters not exact: inventory bulk {got}, retail bulk {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        pg_rows(pg, &inv, "SELECT count(*) FROM tandem.dead_letters").await,
        "0"
    );
}

const RACE_ROWS: u32 = 5_000;
const RACE_KEY: u32 = 4_000;
const RACE_MAPPING: &str = r#"
[[mappings]]
name = "race"
direction = "inventory->retail"
inventory = { table = "public.race", key = ["id"] }
retail    = { table = "race",        key = ["id"] }
conflict  = "manual"
columns = [
  { inventory = "id",    retail = "id" },
  { inventory = "label", retail = "label" },
]
"#;

/// The copy into a table that is empty when it begins reads no current rows; a row the
/// shop inserts meanwhile (here: inserted before the copy's write, committed while the
/// copy waits on its lock) must survive, with the conflict recorded, not be overwritten
/// or dropped.
#[tokio::test]
async fn a_copy_into_an_empty_table_keeps_a_row_inserted_meanwhile() {
    use mysql_async::prelude::Queryable;
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 5).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    pg.psql(
        &inv,
        &format!(
            "CREATE TABLE race (id int PRIMARY KEY, label text NOT NULL);
             ALTER TABLE race REPLICA IDENTITY FULL;
             INSERT INTO race SELECT g, 'inventory' FROM generate_series(1, {RACE_ROWS}) g;"
        ),
    )
    .await
    .unwrap();
    maria
        .sql(
            &ret,
            "CREATE TABLE race (id int PRIMARY KEY, label varchar(20) NOT NULL) ENGINE=InnoDB;",
        )
        .await
        .unwrap();
    // The shop's insert, not yet committed: invisible to the copy's check for rows, but
    // it holds the key's lock, so the copy's insert of that key waits for the commit.
    let mut shop = mysql_async::Conn::new(mysql_async::Opts::from_url(&maria.url(&ret)).unwrap())
        .await
        .unwrap();
    shop.query_drop("START TRANSACTION").await.unwrap();
    shop.query_drop(format!("INSERT INTO race VALUES ({RACE_KEY}, 'shop')"))
        .await
        .unwrap();

    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        format!("{}{RACE_MAPPING}", own_names(&t, "isync_race"))
    });
    let _daemon = Daemon::start(&cfg, &pair.dir.join("race.log"));
    let waits = format!(
        "SELECT count(*) FROM information_schema.INNODB_TRX
         WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE '%`{ret}`.`race`%'"
    );
    wait_for("the copy to wait on the shop's row", 120, || async {
        my_rows(maria, &ret, &waits).await != "0"
    })
    .await;
    shop.query_drop("COMMIT").await.unwrap();
    drop(shop);

    wait_for("the copy to finish", 120, || async {
        both_streaming(&listen).await
            && my_rows(maria, &ret, "SELECT count(*) FROM race").await == RACE_ROWS.to_string()
    })
    .await;
    assert_eq!(
        my_rows(
            maria,
            &ret,
            &format!("SELECT label FROM race WHERE id = {RACE_KEY}")
        )
        .await,
        "shop",
        "the shop's row is kept (manual)"
    );
    assert_eq!(
        my_rows(
            maria,
            &ret,
            "SELECT count(*) FROM race WHERE label = 'inventory'"
        )
        .await,
        (RACE_ROWS - 1).to_string()
    );
    let conflicts = my_rows(
        maria,
        &ret,
        "SELECT kind, decision, JSON_EXTRACT(`key`, '$.id') FROM tandem_conflicts WHERE mapping = 'race'",
    )
    .await;
    assert_eq!(conflicts, format!("insert_exists\tparked\t{RACE_KEY}"));
}
