//! The MariaDB sink's edges, end to end through the daemon: source keys that the target's
//! collation cannot tell apart, and a server that refuses `LOAD DATA LOCAL`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tandem_testkit::{shared_maria, shared_pg, MariaInstance, MariaOptions};

const DIRECTION: &str = "inventory->retail";

/// The inventory->retail direction's entry of `/status`, once the daemon answers.
async fn direction(listen: &str) -> Option<Value> {
    let body = http_get(listen, "/status").await?;
    let json = body.split_once("\r\n\r\n")?.1;
    let v: Value = serde_json::from_str(json).ok()?;
    Some(v["directions"][DIRECTION].clone())
}

/// Until the direction is halted; its error text then.
async fn halted_error(listen: &str) -> String {
    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(d) = direction(listen).await {
            if d["state"] == "halted" {
                eprintln!("halted: {}", d["last_error"]);
                return d["last_error"].as_str().unwrap_or_default().to_owned();
            }
            last = d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the direction did not halt within 60 s (retrying forever?): {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn key_collation(maria: &MariaInstance, db: &str) -> String {
    maria
        .sql(
            db,
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'products' AND COLUMN_NAME = 'sku'",
        )
        .await
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// PostgreSQL holds `case-x` and `CASE-X` as two rows; the shop's `sku` compares
/// case-insensitively and can hold one. Before, every retry of the transaction lost the
/// second insert to the first and called it a concurrent writer's ("retrying"), forever.
/// Now the direction halts once, naming both keys and the collation, and applies nothing
/// of the transaction.
#[tokio::test]
async fn keys_one_to_the_target_collation_halt_with_both_keys_named() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 20).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let collation = key_collation(maria, &ret).await;
    assert!(collation.contains("_ci"), "test premise: {collation}");
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let _daemon = Daemon::start(&cfg);
    wait_for("the inventory->retail direction to stream", || async {
        direction(&listen)
            .await
            .is_some_and(|d| d["state"] == "streaming")
    })
    .await;

    pg.psql(
        &inv,
        "BEGIN; \
         INSERT INTO items (sku, name, unit_price, on_hand) VALUES ('plain-1', 'Plain', 1, 1); \
         INSERT INTO items (sku, name, unit_price, on_hand) VALUES ('case-x', 'Lower', 1, 1), ('CASE-X', 'Upper', 2, 2); \
         COMMIT;",
    )
    .await
    .unwrap();

    let err = halted_error(&listen).await;
    assert!(
        err.contains("\"case-x\"") && err.contains("\"CASE-X\""),
        "{err}"
    );
    assert!(err.contains(&collation), "{err}");
    assert!(err.contains("products"), "{err}");
    // The transaction stays whole: nothing of it was committed.
    let held = maria
        .sql(
            &ret,
            "SELECT count(*) FROM products WHERE sku IN ('plain-1', 'case-x')",
        )
        .await
        .unwrap();
    assert_eq!(
        held.lines().last().unwrap_or_default().trim(),
        "0",
        "{held}"
    );
}

/// The same two keys in an initial copy, whose 20,000-row batches go through
/// `LOAD DATA LOCAL` (which ignores the duplicate) and then `INSERT`s: the copy halts with
/// both keys named instead of starting over forever.
#[tokio::test]
async fn keys_one_to_the_target_collation_halt_an_initial_copy_too() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 6_000).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    pg.psql(
        &inv,
        "INSERT INTO items (sku, name, unit_price, on_hand) VALUES ('copy-y', 'Lower', 1, 1), ('COPY-Y', 'Upper', 2, 2);",
    )
    .await
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let _daemon = Daemon::start(&cfg);

    let err = halted_error(&listen).await;
    assert!(
        err.contains("\"copy-y\"") && err.contains("\"COPY-Y\""),
        "{err}"
    );
    assert!(err.contains(&key_collation(maria, &ret).await), "{err}");
    let held = maria
        .sql(&ret, "SELECT count(*) FROM products")
        .await
        .unwrap();
    assert_eq!(
        held.lines().last().unwrap_or_default().trim(),
        "0",
        "{held}"
    );
}

/// `tandem run` with its log in a file, killed when dropped.
struct LoggedDaemon {
    child: Child,
    log: PathBuf,
}

impl LoggedDaemon {
    fn start(config: &Path, log: PathBuf) -> LoggedDaemon {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["run", "-c", config.to_str().unwrap()])
            .env("INVENTORY_PASSWORD", "")
            .env("RETAIL_PASSWORD", "")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        LoggedDaemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LoggedDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shop server with `local_infile = OFF`: the initial copy's three batches of at least
/// 5,000 rows (20,000 + 20,000 + 5,000) all arrive, exactly once, through `INSERT`s; the
/// refusal is met once (one warning with advice), not once per batch.
#[tokio::test]
async fn local_infile_off_copies_through_inserts_and_warns_once() {
    let pg = shared_pg().await;
    let maria = MariaInstance::start(MariaOptions {
        extra_args: vec!["--local-infile=OFF".into()],
        ..MariaOptions::default()
    })
    .await
    .unwrap();
    let setting = maria.sql("", "SELECT @@local_infile").await.unwrap();
    assert_eq!(
        setting.lines().last().unwrap_or_default().trim(),
        "0",
        "test premise"
    );
    let pair = demo_pair(pg, &maria, 45_000).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, &maria, &listen, |t| t);
    let daemon = LoggedDaemon::start(&cfg, pair.dir.join("tandem.log"));

    let expected = pg
        .psql(&inv, "SELECT count(*), sum(on_hand) FROM items")
        .await
        .unwrap()
        .replace('|', "\t");
    let count = || async {
        maria
            .sql(
                &ret,
                "SELECT count(*), coalesce(sum(stock_qty), 0) FROM products",
            )
            .await
            .unwrap_or_default()
    };
    wait_for_within(
        "the initial copy",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async { count().await.trim() == expected.trim() },
    )
    .await;
    wait_for("the inventory->retail direction to stream", || async {
        direction(&listen)
            .await
            .is_some_and(|d| d["state"] == "streaming")
    })
    .await;
    // Exactly once: nothing doubled after the copy settled.
    assert_eq!(count().await.trim(), expected.trim());
    let dupes = maria
        .sql(
            &ret,
            "SELECT count(*) FROM (SELECT sku FROM products GROUP BY sku HAVING count(*) > 1) d",
        )
        .await
        .unwrap();
    assert_eq!(dupes.lines().last().unwrap_or_default().trim(), "0");

    let log = daemon.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("refuses LOAD DATA LOCAL"))
        .collect::<Vec<_>>();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{log}");
    assert!(warnings[0].contains("local_infile = ON"), "advice: {log}");
    drop(daemon);
    maria.stop().await.unwrap();
}

/// A case-only key rename at the source (`ren-a` → `REN-A`: a delete and an insert of keys
/// the shop's collation equates) renames the shop's row. Before, the shop's `ren-a` row was
/// read as the current row of both keys, so the insert became an update of a row the delete
/// had just removed, and the product vanished from the shop without an error.
#[tokio::test]
async fn a_case_only_key_rename_renames_the_row() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 20).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let _daemon = Daemon::start(&cfg);
    pg.psql(
        &inv,
        "INSERT INTO items (sku, name, unit_price, on_hand) VALUES ('ren-a', 'Renamed', 1, 5)",
    )
    .await
    .unwrap();
    let row = || async {
        maria
            .sql(
                &ret,
                "SELECT CAST(sku AS BINARY), title, stock_qty FROM products WHERE sku = 'ren-a'",
            )
            .await
            .unwrap_or_default()
    };
    wait_for("ren-a in the shop", || async {
        row().await.contains("ren-a")
    })
    .await;
    pg.psql(&inv, "UPDATE items SET sku = 'REN-A' WHERE sku = 'ren-a'")
        .await
        .unwrap();
    wait_for("the rename in the shop", || async {
        row().await.trim() == "REN-A\tRenamed\t5"
    })
    .await;
    let d = direction(&listen).await.unwrap_or_default();
    assert_eq!(d["state"], "streaming", "{d}");
}

/// The shop already holds `dup-a`; one source transaction changes it and adds `DUP-A`,
/// which the shop's collation cannot hold beside it. Before, `DUP-A` was read as `dup-a`'s
/// row and the two source rows were merged into one shop row (recorded only as an
/// `insert_exists` conflict); now the direction halts naming both keys.
#[tokio::test]
async fn a_new_key_equal_to_a_held_one_in_the_same_batch_halts() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 20).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let _daemon = Daemon::start(&cfg);
    pg.psql(
        &inv,
        "INSERT INTO items (sku, name, unit_price, on_hand) VALUES ('dup-a', 'Held', 1, 5)",
    )
    .await
    .unwrap();
    wait_for("dup-a in the shop", || async {
        maria
            .sql(&ret, "SELECT title FROM products WHERE sku = 'dup-a'")
            .await
            .unwrap_or_default()
            .contains("Held")
    })
    .await;
    pg.psql(
        &inv,
        "BEGIN; \
         UPDATE items SET name = 'Changed' WHERE sku = 'dup-a'; \
         INSERT INTO items (sku, name, unit_price, on_hand) VALUES ('DUP-A', 'New', 2, 2); \
         COMMIT;",
    )
    .await
    .unwrap();
    let err = halted_error(&listen).await;
    assert!(
        err.contains("\"dup-a\"") && err.contains("\"DUP-A\""),
        "{err}"
    );
    assert!(err.contains(&key_collation(maria, &ret).await), "{err}");
    // Whole or nothing: the update of the same transaction is not in the shop either.
    let title = maria
        .sql(&ret, "SELECT title FROM products WHERE sku = 'dup-a'")
        .await
        .unwrap();
    assert_eq!(title.lines().last().unwrap_or_default().trim(), "Held");
}
