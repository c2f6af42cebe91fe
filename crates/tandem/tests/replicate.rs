//! The daemon end to end: rows written in one database appear in the other, the status
//! endpoint reports it, and SIGTERM stops it cleanly with a restart resuming where it was.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tandem_testkit::{shared_maria, shared_pg};

#[tokio::test]
async fn changes_flow_both_ways_without_echo_and_survive_a_restart() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 50).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());

    let daemon = Daemon::start(&cfg);
    wait_for("the inventory->retail direction to stream", || async {
        http_get(&listen, "/status").await.is_some_and(|s| {
            s.contains(r#""inventory->retail":{"state":"streaming""#)
                || s.contains(r#""state":"streaming""#)
        })
    })
    .await;

    // The first start copies what the inventory already holds.
    let count = || async {
        maria
            .sql(
                &ret,
                "SELECT count(*), coalesce(sum(stock_qty), 0) FROM products",
            )
            .await
            .unwrap_or_default()
    };
    let expected = pg
        .psql(&inv, "SELECT count(*), sum(on_hand) FROM items")
        .await
        .unwrap()
        .replace('|', "\t");
    wait_for("the initial copy", || async {
        count().await.trim() == expected.trim()
    })
    .await;

    pg.psql(&inv, "INSERT INTO items (sku, name, unit_price, on_hand, updated_at) VALUES ('A-1', 'Mug ☕', 12.50, 7, '2026-01-01 10:00:00.123456+00')")
        .await
        .unwrap();
    let row = || async {
        maria
            .sql(
                &ret,
                "SELECT title, price, stock_qty, updated_at FROM products WHERE sku = 'A-1'",
            )
            .await
            .unwrap_or_default()
    };
    wait_for("the new item in the shop", || async {
        !row().await.trim().is_empty()
    })
    .await;
    assert_eq!(
        row().await.trim(),
        "Mug ☕\t12.50\t7\t2026-01-01 10:00:00.123456"
    );

    // The shop's own stock change meanwhile must survive: delta, not overwrite.
    maria
        .sql(
            &ret,
            "UPDATE products SET stock_qty = stock_qty - 2 WHERE sku = 'A-1'",
        )
        .await
        .unwrap();
    pg.psql(&inv, "UPDATE items SET on_hand = on_hand + 10, updated_at = '2026-01-01 11:00:00+00' WHERE sku = 'A-1'").await.unwrap();
    wait_for("the goods receipt in the shop", || async {
        row().await.contains("\t15\t")
    })
    .await;

    let metrics = http_get(&listen, "/metrics").await.unwrap_or_default();
    assert!(
        metrics.contains("tandem_changes_applied_total"),
        "{metrics}"
    );
    // Streamed rows were written with their conflict check inside the write, through
    // both sinks.
    let checked = |direction: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("tandem_apply_checked_rows_total{"))
            .filter(|l| l.contains(&format!(r#"direction="{direction}""#)))
            .filter(|l| l.contains(r#"outcome="applied""#))
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_default()
    };
    assert!(checked("inventory->retail") >= 2.0, "{metrics}");
    assert!(checked("retail->inventory") >= 1.0, "{metrics}");

    let status = daemon.terminate();
    assert!(status.success(), "tandem exited with {status}");

    // Changes made while tandem is down arrive after the restart, exactly once.
    pg.psql(
        &inv,
        "UPDATE items SET on_hand = on_hand - 1 WHERE sku = 'A-1'",
    )
    .await
    .unwrap();
    let daemon = Daemon::start(&cfg);
    wait_for("the change made while tandem was down", || async {
        row().await.contains("\t14\t")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        row().await.contains("\t14\t"),
        "applied twice? {}",
        row().await
    );
    assert!(daemon.terminate().success());

    // The checkpoint was written in the target, in tandem's table.
    let cp = maria
        .sql(&ret, "SELECT pipeline FROM tandem_checkpoints")
        .await
        .unwrap();
    assert!(cp.contains("inventory->retail"), "{cp}");
    let cp = pg
        .psql(&inv, "SELECT pipeline FROM tandem.checkpoints")
        .await
        .unwrap();
    assert!(cp.contains("retail->inventory"), "{cp}");
}
