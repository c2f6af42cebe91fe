//! `tandem verify` against real servers: equal sides pass, drift made behind tandem's back
//! is named key by key (and nothing else), `--repair` fixes it per the conflict strategies,
//! a counter without an owner is refused with advice, a mapping's `where` filter and
//! transforms are applied before comparing, and the daemon's `[verify] interval` reports
//! drift in `/status` and `/metrics`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use tandem_testkit::{shared_maria, shared_pg};

fn verify(cfg: &str, extra: &[&str]) -> std::process::Output {
    verify_mapping(cfg, "products", extra)
}

fn verify_mapping(cfg: &str, mapping: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "verify",
        "-c",
        cfg,
        "--mapping",
        mapping,
        "--settle",
        "200ms",
    ];
    args.extend_from_slice(extra);
    tandem(&args)
}

/// The keys a JSON report lists as differing, as `kind:sku`.
fn json_keys(out: &std::process::Output) -> BTreeSet<String> {
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    doc["mappings"][0]["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d["kind"].as_str().unwrap_or("?"),
                d["key"]["sku"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[tokio::test]
async fn verify_names_exactly_the_drifted_keys_and_repair_makes_sides_equal() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    // 3000 items in chunks of about 200: the differences below fall into a few of them.
    let pair = demo_pair(pg, maria, 3000).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let cfg = cfg.to_str().unwrap();

    // The shop starts empty: every item is only in inventory; --repair copies them over.
    let out = verify(cfg, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("3000 differing keys"), "{}", text(&out));
    let out = verify(cfg, &["--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Equal sides: exit 0, and the two databases' checksums agree chunk for chunk.
    let out = verify(cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("3000 rows in inventory, 3000 rows in retail;")
            && t.contains(" chunks, 0 differing"),
        "{t}"
    );

    // Drift no change log saw (no daemon runs): scattered over the key space.
    maria
        .sql(
            &pair.retail.name,
            "UPDATE products SET price = 1.23 WHERE sku = 'SKU-00010';
             UPDATE products SET title = 'Renamed' WHERE sku IN ('SKU-00777', 'SKU-02999');
             DELETE FROM products WHERE sku = 'SKU-01500';
             INSERT INTO products (sku, title, price, stock_qty) VALUES ('X-1', 'Extra', 9.99, 3);",
        )
        .await
        .unwrap();
    pg.psql(
        &pair.inventory.name,
        "UPDATE items SET unit_price = 99.99 WHERE sku = 'SKU-02000'",
    )
    .await
    .unwrap();

    let out = verify(cfg, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(r#"only in inventory: {sku: "SKU-01500"}"#),
        "{t}"
    );
    assert!(t.contains(r#"only in retail: {sku: "X-1"}"#), "{t}");
    assert!(
        t.contains(
            r#"differs: {sku: "SKU-00010"} column unit_price/price: inventory 22.00, retail 1.23"#
        ),
        "{t}"
    );
    assert!(t.contains("6 differing keys"), "{t}");

    let out = verify(cfg, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expected: BTreeSet<String> = [
        "differs:SKU-00010",
        "differs:SKU-00777",
        "differs:SKU-02000",
        "differs:SKU-02999",
        "only_in:SKU-01500",
        "only_in:X-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(json_keys(&out), expected);

    // Repair: prices from inventory (prefer:inventory), titles by last_writer_wins (a tie:
    // inventory is listed first), one-sided rows copied.
    let out = verify(cfg, &["--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = verify(cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shop = maria
        .sql(
            &pair.retail.name,
            "SELECT price FROM products WHERE sku = 'SKU-02000';
             SELECT title FROM products WHERE sku = 'SKU-00777';
             SELECT COUNT(*) FROM tandem_conflicts WHERE kind = 'verify_repair' AND decision = 'repaired'",
        )
        .await
        .unwrap();
    assert!(shop.contains("99.99"), "{shop}");
    assert!(
        shop.contains("Tea tin #777") && !shop.contains("Renamed"),
        "{shop}"
    );
    let inv = pg
        .psql(
            &pair.inventory.name,
            "SELECT name FROM items WHERE sku = 'X-1';
             SELECT count(*) FROM tandem.conflicts WHERE kind = 'verify_repair'",
        )
        .await
        .unwrap();
    assert!(inv.contains("Extra"), "{inv}");
}

#[tokio::test]
async fn repair_of_a_counter_needs_an_owner() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 50).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| t);
    let cfg = cfg.to_str().unwrap();
    let out = verify(cfg, &["--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    maria
        .sql(
            &pair.retail.name,
            "UPDATE products SET stock_qty = 7 WHERE sku = 'SKU-00030'",
        )
        .await
        .unwrap();

    // on_hand is a delta counter: which side counted right is not tandem's to guess.
    let out = verify(cfg, &["--repair"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("refused") && text(&out).contains("--prefer"),
        "{}",
        text(&out)
    );
    let shop = maria
        .sql(
            &pair.retail.name,
            "SELECT stock_qty FROM products WHERE sku = 'SKU-00030'",
        )
        .await
        .unwrap();
    assert!(shop.contains('7'), "a refused repair wrote: {shop}");

    let out = verify(cfg, &["--repair", "--prefer", "inventory"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = verify(cfg, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shop = maria
        .sql(
            &pair.retail.name,
            "SELECT stock_qty FROM products WHERE sku = 'SKU-00030'",
        )
        .await
        .unwrap();
    // The demo's stock on hand for item 30: 50 + 30 % 100.
    assert!(shop.contains("80"), "{shop}");
}

const SALES_SIDE: &str = r#"retail    = { table = "order_lines",  key = ["id"] }"#;

#[tokio::test]
async fn verify_applies_the_where_filter_and_transforms() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 20).await;
    let listen = format!("127.0.0.1:{}", free_port());
    // Shop lines cross only with a positive quantity, their e-mail masked on the way.
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        assert!(t.contains(SALES_SIDE), "the demo's sales mapping changed");
        assert!(t.contains("mask_email(value)"), "the demo no longer masks");
        t.replace(
            SALES_SIDE,
            r#"retail    = { table = "order_lines",  key = ["id"], where = "row.qty > 0" }"#,
        )
    });
    let cfg = cfg.to_str().unwrap();
    maria
        .sql(
            &pair.retail.name,
            "INSERT INTO order_lines (id, order_id, sku, qty, unit_price, created_at, customer_email) VALUES
               (1, 100, 'SKU-00001', 4, 12.50, '2026-01-01 10:00:00', 'jane.doe@example.com'),
               (2, 100, 'SKU-00002', 0, 3.00, '2026-01-01 10:00:01', 'zero@example.com'),
               (3, 101, 'SKU-00003', 2, 7.25, '2026-01-01 10:00:02.123456', NULL),
               (4, 102, 'SKU-00004', 1, 1.10, '2026-01-01 10:00:03', 'bob@shop.example')",
        )
        .await
        .unwrap();
    let daemon = Daemon::start(std::path::Path::new(cfg));
    let sales = || async {
        pg.psql(&pair.inventory.name, "SELECT count(*) FROM sales")
            .await
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    wait_for("the three passing lines to cross", || async {
        sales().await == "3"
    })
    .await;
    daemon.terminate();

    // Equal under the mapping: line 2 stays home, addresses are masked on one side only.
    // The shop's rows are hashed in tandem after mapping; the chunk sums agree with the
    // ones PostgreSQL computes, so no chunk needs its rows fetched.
    let out = verify_mapping(cfg, "sales", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("3 rows in inventory, 3 rows in retail") && t.contains("chunks, 0 differing"),
        "{t}"
    );
    assert!(t.contains("retail rows are read through tandem"), "{t}");

    // Drift: a masked address changed in inventory, and the filtered line 2 appears there.
    pg.psql(
        &pair.inventory.name,
        "UPDATE sales SET customer_email = 'x***@example.com' WHERE order_line_id = 1;
         INSERT INTO sales (order_line_id, order_id, sku, qty, unit_price, sold_at, customer_email)
           VALUES (2, 100, 'SKU-00002', 0, 3.00, '2026-01-01 10:00:01+00', 'z***@example.com')",
    )
    .await
    .unwrap();
    let out = verify_mapping(cfg, "sales", &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: BTreeSet<String> = doc["mappings"][0]["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| {
            let cols: Vec<&str> = d["columns"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|c| c["column"]["inventory"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{}:{}:{}",
                d["kind"].as_str().unwrap_or("?"),
                d["key"]["order_line_id"],
                cols.join(",")
            )
        })
        .collect();
    let expected: BTreeSet<String> = ["differs:1:customer_email", "only_in:2:"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected, "{}", text(&out));
}

/// The `verify` object of the daemon's `/status`.
async fn verify_status(listen: &str) -> Option<serde_json::Value> {
    let resp = http_get(listen, "/status").await?;
    let body = resp.split_once("\r\n\r\n")?.1;
    let doc: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(doc["verify"].clone())
}

#[tokio::test]
async fn daemon_verify_interval_reports_drift_in_status_and_metrics() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 50).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        format!("{t}\n[verify]\ninterval = \"1s\"\n")
    });
    let _daemon = Daemon::start(&cfg);
    wait_ready(&listen).await;
    // After the initial copy, a run finds both sides equal.
    wait_for("a verify run finding products equal", || async {
        verify_status(&listen).await.is_some_and(|v| {
            v["last_run"].is_string() && v["mappings"]["products"]["differing_keys"] == 0
        })
    })
    .await;

    // Drift no change log sees: the shop renames an item with its binlog off.
    maria
        .sql(
            &pair.retail.name,
            "SET SESSION sql_log_bin = 0; UPDATE products SET title = 'Drifted' WHERE sku = 'SKU-00007'",
        )
        .await
        .unwrap();
    wait_for("a verify run naming the drifted key", || async {
        verify_status(&listen).await.is_some_and(|v| {
            let m = &v["mappings"]["products"];
            m["differing_keys"] == 1
                && m["differences"][0]
                    .as_str()
                    .is_some_and(|d| d.contains("SKU-00007") && d.contains("name"))
                && v["equal"] == false
        })
    })
    .await;
    let metrics = http_get(&listen, "/metrics").await.unwrap_or_default();
    assert!(
        metrics.contains(r#"tandem_verify_differences{mapping="products"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_verify_last_run_timestamp_seconds"),
        "{metrics}"
    );
}
