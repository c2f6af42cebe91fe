//! Server restarts mid-stream: tandem notices the lost connections, reconnects with backoff
//! and resumes from its checkpoints; nothing written before, during or after the restart
//! is lost or applied twice.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_testkit::{MariaInstance, MariaOptions, PgInstance, PgOptions};

#[tokio::test]
async fn both_servers_restart_mid_stream_and_nothing_is_lost_or_doubled() {
    // Own instances: shared ones cannot be restarted.
    let mut pg = PgInstance::start(PgOptions::default()).await.unwrap();
    let mut maria = MariaInstance::start(MariaOptions::default()).await.unwrap();
    let pair = demo_pair(&pg, &maria, 5).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, &pg, &maria, &listen, |t| t);
    let _daemon = Daemon::start(&cfg);
    let before = stock(&pg, &maria, &inv, &ret).await.0;
    let base: i64 = before.parse().unwrap();
    wait_stock(&pg, &maria, &inv, &ret, base, "the initial copy").await;

    // Changes on both sides, then PostgreSQL restarts, then more changes on both sides.
    pg.psql(
        &inv,
        "UPDATE items SET on_hand = on_hand + 10 WHERE sku = 'SKU-00001'",
    )
    .await
    .unwrap();
    maria
        .sql(
            &ret,
            "UPDATE products SET stock_qty = stock_qty - 1 WHERE sku = 'SKU-00001'",
        )
        .await
        .unwrap();
    wait_stock(&pg, &maria, &inv, &ret, base + 9, "the first changes").await;
    pg.restart().await.unwrap();
    pg.psql(
        &inv,
        "UPDATE items SET on_hand = on_hand + 100 WHERE sku = 'SKU-00001'",
    )
    .await
    .unwrap();
    maria
        .sql(
            &ret,
            "UPDATE products SET stock_qty = stock_qty - 3 WHERE sku = 'SKU-00001'",
        )
        .await
        .unwrap();
    wait_stock(
        &pg,
        &maria,
        &inv,
        &ret,
        base + 106,
        "the changes around the PostgreSQL restart",
    )
    .await;

    // The same with MariaDB.
    maria.restart().await.unwrap();
    pg.psql(
        &inv,
        "UPDATE items SET on_hand = on_hand + 1000 WHERE sku = 'SKU-00001'",
    )
    .await
    .unwrap();
    maria
        .sql(
            &ret,
            "UPDATE products SET stock_qty = stock_qty - 5 WHERE sku = 'SKU-00001'",
        )
        .await
        .unwrap();
    wait_stock(
        &pg,
        &maria,
        &inv,
        &ret,
        base + 1101,
        "the changes around the MariaDB restart",
    )
    .await;
    // Settled: still exact a moment later (nothing re-applied after the reconnects).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let want = (base + 1101).to_string();
    assert_eq!(stock(&pg, &maria, &inv, &ret).await, (want.clone(), want));
    let status = http_get(&listen, "/metrics").await.unwrap_or_default();
    assert!(
        status.contains("tandem_reconnects_total"),
        "reconnects are counted:\n{status}"
    );
}

async fn stock(pg: &PgInstance, maria: &MariaInstance, inv: &str, ret: &str) -> (String, String) {
    let a = pg
        .psql(inv, "SELECT on_hand FROM items WHERE sku = 'SKU-00001'")
        .await
        .unwrap_or_default();
    let b = maria
        .sql(
            ret,
            "SELECT stock_qty FROM products WHERE sku = 'SKU-00001'",
        )
        .await
        .unwrap_or_default();
    (a.trim().to_owned(), b.trim().to_owned())
}

async fn wait_stock(
    pg: &PgInstance,
    maria: &MariaInstance,
    inv: &str,
    ret: &str,
    want: i64,
    what: &str,
) {
    let want = want.to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = stock(pg, maria, inv, ret).await;
        if got == (want.clone(), want.clone()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: want {want} on both sides, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
