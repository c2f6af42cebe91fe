//! Filters and masking end to end: the demo's `sales` mapping (shop order lines →
//! inventory sales) masks the customer's e-mail on its way and, in this test, lets only
//! lines with a positive quantity leave the shop. Rows that enter or leave the filter by an
//! update appear in or disappear from the inventory.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tandem_testkit::{shared_maria, shared_pg};

const SALES_SIDE: &str = r#"retail    = { table = "order_lines",  key = ["id"] }"#;

#[tokio::test]
async fn sales_cross_masked_and_only_when_the_filter_lets_them() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 20).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        assert!(t.contains(SALES_SIDE), "the demo's sales mapping changed");
        assert!(
            t.contains("mask_email(value)"),
            "the demo no longer masks e-mail"
        );
        t.replace(
            SALES_SIDE,
            r#"retail    = { table = "order_lines",  key = ["id"], where = "row.qty > 0" }"#,
        )
    });
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    let shop = |sql: String| {
        let ret = ret.clone();
        async move { maria.sql(&ret, &sql).await.expect("retail sql") }
    };
    let line = |id: u32, qty: i32, email: &str| {
        let email = if email.is_empty() {
            "NULL".to_owned()
        } else {
            format!("'{email}'")
        };
        format!(
            "INSERT INTO order_lines (id, order_id, sku, qty, unit_price, created_at, customer_email) \
             VALUES ({id}, 100, 'SKU-00001', {qty}, 12345678.90, '2026-01-01 10:00:00', {email})"
        )
    };

    // Already in the shop before the first start: the initial copy filters and masks too.
    shop(line(1, 4, "jane.doe@example.com")).await;
    shop(line(2, 0, "zero@example.com")).await;

    let _daemon = Daemon::start(&cfg);
    let sales = || async {
        pg.psql(
            &inv,
            "SELECT order_line_id, qty, unit_price, coalesce(customer_email, '<null>') \
             FROM sales ORDER BY order_line_id",
        )
        .await
        .unwrap_or_default()
        .trim()
        .to_owned()
    };
    wait_for("the initial copy", || async { !sales().await.is_empty() }).await;
    assert_eq!(sales().await, "1|4|12345678.90|j***@example.com");

    // Streamed: a return line (qty < 0) stays in the shop; a NULL e-mail stays NULL.
    shop(line(3, -1, "refund@example.com")).await;
    shop(line(4, 1, "")).await;
    // Line 2 enters the filter, line 1 leaves it, line 4 gets an address.
    shop("UPDATE order_lines SET qty = 5 WHERE id = 2".into()).await;
    shop("UPDATE order_lines SET qty = 0 WHERE id = 1".into()).await;
    shop("UPDATE order_lines SET customer_email = 'bob@shop.example' WHERE id = 4".into()).await;
    // A line that never passes, updated and deleted, never shows up.
    shop("UPDATE order_lines SET qty = -2 WHERE id = 3".into()).await;
    shop("DELETE FROM order_lines WHERE id = 3".into()).await;
    // The last change: once it is in, everything before it is too (commit order).
    shop(line(5, 2, "x@y.z")).await;
    wait_for("the last sale", || async { sales().await.contains("\n5|") }).await;

    assert_eq!(
        sales().await,
        "2|5|12345678.90|z***@example.com\n\
         4|1|12345678.90|b***@shop.example\n\
         5|2|12345678.90|x***@y.z"
    );
    // No clear-text address crossed, and nothing was dead-lettered on the way.
    let clear = pg
        .psql(
            &inv,
            "SELECT count(*) FROM sales WHERE customer_email NOT LIKE '_***@%'",
        )
        .await
        .expect("count");
    assert_eq!(clear.trim(), "0");
    let dead = pg
        .psql(
            &inv,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'tandem' AND tablename = 'dead_letters'",
        )
        .await
        .expect("catalog");
    if dead.trim() == "1" {
        let n = pg
            .psql(&inv, "SELECT count(*) FROM tandem.dead_letters")
            .await
            .expect("dead letters");
        assert_eq!(n.trim(), "0", "rows were dead-lettered");
    }
}
