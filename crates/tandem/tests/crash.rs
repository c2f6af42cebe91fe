//! Exactly once across crashes: `tandem` is killed with SIGKILL at random moments while
//! both shops and warehouse write, restarted, and in the end every stock level is exact —
//! a change applied twice or lost would show in the `delta` column.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;
use tandem_testkit::{shared_maria, shared_pg};

const PRODUCTS: i64 = 20;

#[tokio::test]
async fn sigkill_under_load_loses_and_doubles_nothing() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, PRODUCTS as usize).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let initial: i64 = pg
        .psql(&inv, "SELECT sum(on_hand) FROM items")
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let mut child = Daemon::start(&cfg);
    // Wait for the initial copy.
    let deadline = Instant::now() + Duration::from_secs(60);
    while maria
        .sql(&ret, "SELECT count(*) FROM products")
        .await
        .unwrap_or_default()
        .trim()
        != PRODUCTS.to_string()
    {
        assert!(Instant::now() < deadline, "initial copy did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Warehouse writer: transactions of 1–5 stock movements.
    let running = Arc::new(AtomicBool::new(true));
    let (client, conn) = tokio_postgres::connect(&pg.url(&inv), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let writer = {
        let running = running.clone();
        tokio::spawn(async move {
            let mut total = 0i64;
            let mut txns = 0u64;
            while running.load(Ordering::Relaxed) {
                let moves: Vec<(String, i32)> = {
                    let mut rng = rand::thread_rng();
                    (0..rng.gen_range(1..=5))
                        .map(|_| {
                            (
                                format!("SKU-{:05}", rng.gen_range(1..=PRODUCTS)),
                                rng.gen_range(-3..=9),
                            )
                        })
                        .collect()
                };
                let mut moves = moves;
                moves.sort();
                let mut sql = String::from("BEGIN;");
                for (sku, d) in &moves {
                    sql.push_str(&format!("UPDATE items SET on_hand = on_hand + {d}, updated_at = now() WHERE sku = '{sku}';"));
                }
                sql.push_str("COMMIT;");
                // A deadlock with tandem's applier is normal life: roll back, don't count.
                if client.batch_execute(&sql).await.is_err() {
                    client.batch_execute("ROLLBACK").await.unwrap();
                    continue;
                }
                total += moves.iter().map(|(_, d)| i64::from(*d)).sum::<i64>();
                txns += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (total, txns)
        })
    };

    // Shop writer: sales and returns on the same products at the same time.
    let shop = {
        let running = running.clone();
        let url = maria.url(&ret);
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
                .await
                .unwrap();
            let mut total = 0i64;
            while running.load(Ordering::Relaxed) {
                let moves: Vec<(String, i32)> = {
                    let mut rng = rand::thread_rng();
                    (0..rng.gen_range(1..=3))
                        .map(|_| {
                            (
                                format!("SKU-{:05}", rng.gen_range(1..=PRODUCTS)),
                                rng.gen_range(-5..=2),
                            )
                        })
                        .collect()
                };
                let mut moves = moves;
                moves.sort();
                let mut sql = String::from("START TRANSACTION;");
                for (sku, d) in &moves {
                    sql.push_str(&format!(
                        "UPDATE products SET stock_qty = stock_qty + {d} WHERE sku = '{sku}';"
                    ));
                }
                sql.push_str("COMMIT;");
                if conn.query_drop(sql).await.is_err() {
                    conn.query_drop("ROLLBACK").await.unwrap();
                    continue;
                }
                total += moves.iter().map(|(_, d)| i64::from(*d)).sum::<i64>();
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
            total
        })
    };

    for _ in 0..4 {
        let wait = rand::thread_rng().gen_range(700..2500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill(); // SIGKILL
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..500))).await;
        child = Daemon::start(&cfg);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.store(false, Ordering::Relaxed);
    let (warehouse_sum, txns) = writer.await.unwrap();
    let shop_sum = shop.await.unwrap();
    assert!(
        txns > 50,
        "the load was too light to mean anything: {txns} transactions"
    );

    // Every movement on either side counts exactly once on both sides.
    let expected = initial + warehouse_sum + shop_sum;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let inv_rows = pg
            .psql(&inv, "SELECT sku, on_hand FROM items ORDER BY sku")
            .await
            .unwrap()
            .replace('|', "\t");
        let ret_rows = maria
            .sql(&ret, "SELECT sku, stock_qty FROM products ORDER BY sku")
            .await
            .unwrap();
        let total: i64 = pg
            .psql(&inv, "SELECT sum(on_hand) FROM items")
            .await
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if inv_rows.trim() == ret_rows.trim() && total == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the crashes: inventory total {total}, expected {expected}\ninventory:\n{inv_rows}\nretail:\n{ret_rows}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let dead = maria
        .sql(&ret, "SELECT count(*) FROM tandem_dead_letters")
        .await
        .unwrap();
    assert_eq!(dead.trim(), "0", "nothing should have been dead-lettered");
    drop(child);
}
