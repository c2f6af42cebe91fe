//! The operator commands end to end, against a running daemon on throwaway servers:
//! a parked conflict made for real and resolved so both sides agree, a dead letter made for
//! real and retried once its cause is fixed, and a teardown that asks first.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails loudly

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use tandem_testkit::{shared_maria, shared_pg, MariaInstance, PgInstance};

/// The demo config for `pair`, with slot, publication and origin of its own (they are
/// cluster-wide on PostgreSQL) and `edit` applied.
fn config(
    pair: &Pair,
    pg: &PgInstance,
    maria: &MariaInstance,
    tag: &str,
    edit: impl Fn(String) -> String,
) -> PathBuf {
    let listen = format!("127.0.0.1:{}", free_port());
    let own = format!(
        "kind = \"postgres\"\nslot = \"{tag}\"\npublication = \"{tag}\"\norigin = \"{tag}\"\n"
    );
    write_config(pair, pg, maria, &listen, |t| {
        edit(t.replacen("kind = \"postgres\"\n", &own, 1))
    })
}

fn run(args: &[&str]) -> (bool, String) {
    let out = tandem(args);
    (out.status.success(), text(&out))
}

/// Start the daemon and wait until the shop holds the first item (initial copy done).
async fn start_and_copy(cfg: &Path, maria: &MariaInstance, ret: &str) -> Daemon {
    let daemon = Daemon::start(cfg);
    wait_for("the initial copy", || async {
        maria
            .sql(ret, "SELECT count(*) FROM products")
            .await
            .is_ok_and(|s| s.trim() == "3")
    })
    .await;
    daemon
}

fn conflicts_json(cfg: &str, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["conflicts", "list", "-c", cfg, "--format", "json"];
    if all {
        args.push("--all");
    }
    let (ok, out) = run(&args);
    assert!(ok, "{out}");
    let json = out.find('[').map_or("[]", |i| &out[i..]);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn a_parked_conflict_is_listed_shown_and_resolved_so_both_sides_agree() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 3).await;
    let cfg = config(&pair, pg, maria, "ops_conflict", |t| {
        t.replace(
            r#"{ inventory = "name",       retail = "title" },"#,
            r#"{ inventory = "name",       retail = "title", conflict = "manual" },"#,
        )
    });
    let cfg_s = cfg.to_str().unwrap();
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let daemon = start_and_copy(&cfg, maria, &ret).await;
    daemon.terminate();

    // Both sides edit the same column of the same row while tandem is down.
    pg.psql(
        &inv,
        "UPDATE items SET name = 'Warehouse name' WHERE sku = 'SKU-00001'",
    )
    .await
    .unwrap();
    maria
        .sql(
            &ret,
            "UPDATE products SET title = 'Shop title' WHERE sku = 'SKU-00001'",
        )
        .await
        .unwrap();
    let daemon = Daemon::start(&cfg);
    // The warehouse's change reaches the shop, finds another title there: parked.
    let mut parked = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while parked.is_none() {
        assert!(Instant::now() < deadline, "no parked conflict appeared");
        parked = conflicts_json(cfg_s, false)
            .into_iter()
            .find(|c| c["endpoint"] == "retail" && c["mapping"] == "products");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let parked = parked.unwrap();
    assert_eq!(parked["decision"], "parked", "{parked}");
    assert_eq!(parked["kind"], "update_differs", "{parked}");
    let id = parked["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("retail:"), "{id}");

    let (ok, listed) = run(&["conflicts", "list", "-c", cfg_s]);
    assert!(
        ok && listed.contains(&id) && listed.contains("open"),
        "{listed}"
    );
    let (ok, shown) = run(&["conflicts", "show", "-c", cfg_s, &id]);
    assert!(ok, "{shown}");
    assert!(shown.contains("\"title\": \"Warehouse name\""), "{shown}");
    assert!(shown.contains("\"title\": \"Shop title\""), "{shown}");
    assert!(shown.contains("decision:           parked"), "{shown}");

    // The shop is right: its title goes to the warehouse, while the daemon runs.
    let (ok, out) = run(&[
        "conflicts",
        "resolve",
        "-c",
        cfg_s,
        &id,
        "--take",
        "target",
        "--note",
        "shop wins",
    ]);
    assert!(ok, "{out}");
    if let Some(twin) = conflicts_json(cfg_s, false)
        .iter()
        .find(|c| c["endpoint"] == "inventory")
    {
        // The shop's change parked in the warehouse too: the command points at it.
        let twin = twin["id"].as_str().unwrap();
        assert!(
            out.contains(&format!("also open for this row: {twin}")),
            "{out}"
        );
    }
    let name = || async {
        pg.psql(&inv, "SELECT name FROM items WHERE sku = 'SKU-00001'")
            .await
            .unwrap_or_default()
    };
    assert_eq!(name().await.trim(), "Shop title");
    // A later change arriving in the shop proves the resolution's own change went by.
    pg.psql(
        &inv,
        "UPDATE items SET name = 'Later' WHERE sku = 'SKU-00002'",
    )
    .await
    .unwrap();
    wait_for("a later change in the shop", || async {
        maria
            .sql(&ret, "SELECT title FROM products WHERE sku = 'SKU-00002'")
            .await
            .is_ok_and(|s| s.trim() == "Later")
    })
    .await;
    let title = maria
        .sql(&ret, "SELECT title FROM products WHERE sku = 'SKU-00001'")
        .await
        .unwrap();
    assert_eq!(title.trim(), "Shop title", "both sides agree");
    let count = maria
        .sql(&ret, "SELECT count(*) FROM tandem_conflicts")
        .await
        .unwrap();
    assert_eq!(count.trim(), "1", "the resolution made no new conflict");

    let all = conflicts_json(cfg_s, true);
    let resolved = all
        .iter()
        .find(|c| c["id"] == id.as_str())
        .expect("still listed");
    assert_eq!(resolved["resolution"], "took target: shop wins");
    assert!(!resolved["resolved_at"].is_null(), "{resolved}");
    assert!(
        !conflicts_json(cfg_s, false)
            .iter()
            .any(|c| c["id"] == id.as_str()),
        "a resolved conflict is not open"
    );
    let (ok, again) = run(&["conflicts", "resolve", "-c", cfg_s, &id, "--take", "source"]);
    assert!(!ok && again.contains("resolved"), "{again}");
    daemon.terminate();
}

#[tokio::test]
async fn a_dead_letter_is_listed_and_retried_once_the_column_is_wide_enough() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 3).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    // The shop's stock column is too narrow for what the warehouse will receive.
    maria
        .sql(
            &ret,
            "ALTER TABLE products MODIFY stock_qty smallint NOT NULL DEFAULT 0",
        )
        .await
        .unwrap();
    let cfg = config(&pair, pg, maria, "ops_dead", |t| t);
    let cfg_s = cfg.to_str().unwrap();
    let daemon = start_and_copy(&cfg, maria, &ret).await;
    let before: i64 = maria
        .sql(
            &ret,
            "SELECT stock_qty FROM products WHERE sku = 'SKU-00002'",
        )
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    pg.psql(
        &inv,
        "UPDATE items SET on_hand = on_hand + 40000 WHERE sku = 'SKU-00002'",
    )
    .await
    .unwrap();
    wait_for("the dead letter", || async {
        run(&["dead-letters", "list", "-c", cfg_s])
            .1
            .contains("retail:")
    })
    .await;
    let (ok, listed) = run(&["dead-letters", "list", "-c", cfg_s]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains("stock_qty"),
        "the reason names the column: {listed}"
    );
    assert!(listed.contains("update on public.items"), "{listed}");
    let id = listed
        .split_whitespace()
        .find(|w| w.starts_with("retail:"))
        .unwrap()
        .to_owned();

    // Still too narrow: the retry fails and says why; the letter stays.
    let (ok, out) = run(&["dead-letters", "retry", "-c", cfg_s, &id]);
    assert!(!ok && out.contains("failed again"), "{out}");
    assert!(run(&["dead-letters", "list", "-c", cfg_s]).1.contains(&id));

    maria
        .sql(
            &ret,
            "ALTER TABLE products MODIFY stock_qty int NOT NULL DEFAULT 0",
        )
        .await
        .unwrap();
    let (ok, out) = run(&["dead-letters", "retry", "-c", cfg_s, "--all"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{id}: applied")), "{out}");
    let stock = maria
        .sql(
            &ret,
            "SELECT stock_qty FROM products WHERE sku = 'SKU-00002'",
        )
        .await
        .unwrap();
    assert_eq!(stock.trim(), (before + 40000).to_string());
    let (_, open) = run(&["dead-letters", "list", "-c", cfg_s]);
    assert!(open.contains("no open dead letters"), "{open}");
    let (_, all) = run(&[
        "dead-letters",
        "list",
        "-c",
        cfg_s,
        "--all",
        "--format",
        "json",
    ]);
    assert!(all.contains("\"retried_at\": \"20"), "{all}");

    // The retried write is tandem's own: it does not come back to the warehouse.
    pg.psql(
        &inv,
        "UPDATE items SET name = 'Later' WHERE sku = 'SKU-00001'",
    )
    .await
    .unwrap();
    wait_for("a later change in the shop", || async {
        maria
            .sql(&ret, "SELECT title FROM products WHERE sku = 'SKU-00001'")
            .await
            .is_ok_and(|s| s.trim() == "Later")
    })
    .await;
    let on_hand = pg
        .psql(&inv, "SELECT on_hand FROM items WHERE sku = 'SKU-00002'")
        .await
        .unwrap();
    assert_eq!(on_hand.trim(), (before + 40000).to_string());
    daemon.terminate();
}

#[tokio::test]
async fn teardown_asks_refuses_while_running_and_drops_everything() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 3).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let cfg = config(&pair, pg, maria, "ops_teardown", |t| t);
    let cfg_s = cfg.to_str().unwrap();
    let daemon = start_and_copy(&cfg, maria, &ret).await;

    let (ok, out) = run(&["teardown", "-c", cfg_s, "--yes"]);
    assert!(!ok && out.contains("PID"), "refused while running: {out}");
    daemon.terminate();

    let slot = || async {
        pg.psql(
            &inv,
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ops_teardown') \
             || ' ' || (SELECT count(*) FROM pg_publication WHERE pubname = 'ops_teardown') \
             || ' ' || (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'tandem')",
        )
        .await
        .unwrap()
        .trim()
        .to_owned()
    };
    assert_eq!(slot().await, "1 1 3");

    // No terminal, no --yes: it lists what it would drop and drops nothing.
    let (ok, out) = run(&["teardown", "-c", cfg_s]);
    assert!(!ok, "{out}");
    assert!(out.contains("replication slot \"ops_teardown\""), "{out}");
    assert!(out.contains("tandem_checkpoints"), "{out}");
    assert!(out.contains("--yes"), "{out}");
    assert_eq!(slot().await, "1 1 3");

    let (ok, out) = run(&["teardown", "-c", cfg_s, "--yes"]);
    assert!(ok, "{out}");
    assert_eq!(slot().await, "0 0 0");
    let left = maria
        .sql(
            &ret,
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name LIKE 'tandem%'",
        )
        .await
        .unwrap();
    assert_eq!(left.trim(), "0");
    let origin = pg
        .psql(
            &inv,
            "SELECT count(*) FROM pg_replication_origin WHERE roname = 'ops_teardown'",
        )
        .await
        .unwrap();
    assert_eq!(origin.trim(), "0");
    let (ok, out) = run(&["teardown", "-c", cfg_s, "--yes"]);
    assert!(ok && out.contains("nothing to drop"), "{out}");
}

#[tokio::test]
async fn a_sale_the_inventory_cannot_hold_is_parked_and_retried_into_postgres() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 3).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    pg.psql(&inv, "ALTER TABLE sales ALTER COLUMN qty TYPE smallint")
        .await
        .unwrap();
    let cfg = config(&pair, pg, maria, "ops_sales", |t| t);
    let cfg_s = cfg.to_str().unwrap();
    let daemon = start_and_copy(&cfg, maria, &ret).await;
    maria
        .sql(
            &ret,
            "INSERT INTO order_lines (id, order_id, sku, qty, unit_price, created_at) \
             VALUES (1, 1, 'SKU-00001', 2, 9.50, '2026-01-01 10:00:00'), \
                    (2, 1, 'SKU-00002', 40000, 1.25, '2026-01-01 10:00:00')",
        )
        .await
        .unwrap();
    let sales = || async {
        pg.psql(&inv, "SELECT order_line_id, qty FROM sales ORDER BY 1")
            .await
            .unwrap_or_default()
    };
    wait_for("the first sale", || async {
        !sales().await.trim().is_empty()
    })
    .await;
    wait_for("the dead letter", || async {
        run(&["dead-letters", "list", "-c", cfg_s])
            .1
            .contains("inventory:")
    })
    .await;
    let (_, listed) = run(&["dead-letters", "list", "-c", cfg_s, "--mapping", "sales"]);
    assert!(
        listed.contains("\"qty\""),
        "the reason names the column: {listed}"
    );
    assert!(listed.contains("40000"), "{listed}");
    assert_eq!(
        sales().await.trim().replace('|', " "),
        "1 2",
        "the good line went on"
    );

    pg.psql(&inv, "ALTER TABLE sales ALTER COLUMN qty TYPE integer")
        .await
        .unwrap();
    let (ok, out) = run(&[
        "dead-letters",
        "retry",
        "-c",
        cfg_s,
        "--all",
        "--mapping",
        "sales",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("1 of 1 applied"), "{out}");
    let rows = sales().await;
    assert!(
        rows.contains("2|40000") || rows.contains("2 | 40000"),
        "{rows}"
    );
    let (_, open) = run(&["dead-letters", "list", "-c", cfg_s]);
    assert!(open.contains("no open dead letters"), "{open}");
    daemon.terminate();
}
