//! Bounded memory (design invariant 6): one source transaction of 1,000,000 rows goes
//! through the daemon in each direction, arrives whole and exact (row count and sums), and
//! the daemon's peak RSS stays under [`PEAK_RSS_LIMIT_MIB`] — far below what holding the
//! transaction would take, which the test computes and checks, so that a daemon buffering
//! the transaction whole cannot pass.
//!
//! The bound is issue 8's memory target (150 MB in every benchmark, whatever the
//! transaction size). The daemon holds one applier batch per direction
//! (`DEFAULT_BATCH_ROWS`) plus the bounded channels between stages, a few MB; its resting
//! RSS (debug build, both directions streaming) is some 20–40 MB.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_core::change::{Cell, SourceEvent};
use tandem_testkit::{shared_maria, shared_pg, MariaInstance, PgInstance};

const ROWS: u64 = 1_000_000;
/// Columns of the demo's `items` (PostgreSQL) table; `products` (MariaDB) has 5.
const ITEMS_COLUMNS: u64 = 8;
const PRODUCTS_COLUMNS: u64 = 5;
const PEAK_RSS_LIMIT_MIB: u64 = 150;
/// Longest a direction may take for the transaction (debug build, shared 2-core machine: 150–200 s
/// measured under load 9–11), kept below nextest's default kill at 300 s so a timeout says why.
const APPLY_LIMIT: Duration = Duration::from_secs(270);

/// The least memory a process holding the whole transaction needs: one event per row and
/// one cell per column, before any heap allocation of the values themselves.
fn held_lower_bound_mib(columns: u64) -> u64 {
    let per_row =
        std::mem::size_of::<SourceEvent>() as u64 + columns * std::mem::size_of::<Cell>() as u64;
    ROWS * per_row / (1024 * 1024)
}

/// A daemon on a fresh demo pair with both directions streaming.
async fn running_pair(pg: &PgInstance, maria: &MariaInstance) -> (Pair, Daemon) {
    let pair = demo_pair(pg, maria, 10).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let daemon = Daemon::start(&cfg);
    wait_ready(&listen).await;
    (pair, daemon)
}

/// Row count and sums of the big rows, tab-separated, as both sides print them.
const INVENTORY_TOTALS: &str = "SELECT count(*), sum(on_hand), sum(unit_price) FROM items \
                                WHERE sku LIKE 'BIG-%'";
const RETAIL_TOTALS: &str = "SELECT count(*), sum(stock_qty), sum(price) FROM products \
                             WHERE sku LIKE 'BIG-%'";

/// Ends the test with the daemon's peak memory checked against the bound and the held
/// transaction's lower bound.
fn assert_bounded(daemon: &Daemon, direction: &str, columns: u64, took: Duration) {
    let peak_mib = peak_rss_kib(daemon.0.id()) / 1024;
    let cpu = cpu_seconds(daemon.0.id());
    let held = held_lower_bound_mib(columns);
    eprintln!(
        "{direction}: {ROWS} rows in one transaction applied in {:.1} s (tandem CPU {cpu:.1} s since \
         its start); tandem peak RSS {peak_mib} MiB (bound {PEAK_RSS_LIMIT_MIB} MiB; holding the \
         transaction would take more than {held} MiB)",
        took.as_secs_f64()
    );
    assert!(
        held > PEAK_RSS_LIMIT_MIB,
        "the transaction is too small to show buffering: {held} MiB"
    );
    assert!(
        peak_mib <= PEAK_RSS_LIMIT_MIB,
        "{direction}: tandem's peak RSS {peak_mib} MiB is above {PEAK_RSS_LIMIT_MIB} MiB"
    );
}

#[tokio::test]
async fn million_row_transaction_inventory_to_retail_in_bounded_memory() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let (pair, daemon) = running_pair(pg, maria).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());

    // One statement, one transaction.
    let started = Instant::now();
    pg.psql(
        &inv,
        &format!(
            "INSERT INTO items (sku, name, unit_price, on_hand, updated_at) \
             SELECT 'BIG-' || lpad(g::text, 7, '0'), 'Big item ' || g, (g % 1000) + 0.99, g % 100, \
                    '2026-01-01 00:00:00+00' \
             FROM generate_series(1, {ROWS}) g"
        ),
    )
    .await
    .unwrap();
    let expected = pg
        .psql(&inv, INVENTORY_TOTALS)
        .await
        .unwrap()
        .replace('|', "\t");
    assert!(expected.starts_with(&format!("{ROWS}\t")), "{expected}");

    wait_for_within(
        "the million rows in the shop",
        APPLY_LIMIT,
        Duration::from_secs(2),
        || async {
            maria
                .sql(&ret, "SELECT count(*) FROM products WHERE sku LIKE 'BIG-%'")
                .await
                .is_ok_and(|n| n.trim() == ROWS.to_string())
        },
    )
    .await;
    let took = started.elapsed();
    let got = maria.sql(&ret, RETAIL_TOTALS).await.unwrap();
    assert_eq!(got.trim(), expected.trim(), "count, stock and price sums");
    let dead = maria
        .sql(&ret, "SELECT count(*) FROM tandem_dead_letters")
        .await
        .unwrap();
    assert_eq!(dead.trim(), "0");
    assert_bounded(&daemon, "inventory->retail", ITEMS_COLUMNS, took);
}

#[tokio::test]
async fn million_row_transaction_retail_to_inventory_in_bounded_memory() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let (pair, daemon) = running_pair(pg, maria).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());

    // MariaDB's sequence engine; autocommit makes the statement one transaction.
    let started = Instant::now();
    maria
        .sql(
            &ret,
            &format!(
                "INSERT INTO products (sku, title, price, stock_qty, updated_at) \
                 SELECT CONCAT('BIG-', LPAD(seq, 7, '0')), CONCAT('Big product ', seq), \
                        (seq % 1000) + 0.99, seq % 100, '2026-01-01 00:00:00' \
                 FROM seq_1_to_{ROWS}"
            ),
        )
        .await
        .unwrap();
    let expected = maria.sql(&ret, RETAIL_TOTALS).await.unwrap();
    assert!(expected.starts_with(&format!("{ROWS}\t")), "{expected}");

    wait_for_within(
        "the million rows in the inventory",
        APPLY_LIMIT,
        Duration::from_secs(2),
        || async {
            pg.psql(&inv, "SELECT count(*) FROM items WHERE sku LIKE 'BIG-%'")
                .await
                .is_ok_and(|n| n.trim() == ROWS.to_string())
        },
    )
    .await;
    let took = started.elapsed();
    let got = pg
        .psql(&inv, INVENTORY_TOTALS)
        .await
        .unwrap()
        .replace('|', "\t");
    assert_eq!(got.trim(), expected.trim(), "count, stock and price sums");
    let dead = pg
        .psql(&inv, "SELECT count(*) FROM tandem.dead_letters")
        .await
        .unwrap();
    assert_eq!(dead.trim(), "0");
    assert_bounded(&daemon, "retail->inventory", PRODUCTS_COLUMNS, took);
}
