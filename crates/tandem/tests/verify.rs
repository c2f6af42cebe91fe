//! `tandem verify` against real servers: equal sides pass, drift made behind tandem's back
//! is named key by key (and nothing else), `--repair` fixes it per the conflict strategies,
//! and a counter without an owner is refused with advice.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use tandem_testkit::{shared_maria, shared_pg};

fn verify(cfg: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "verify",
        "-c",
        cfg,
        "--mapping",
        "products",
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
    // 3000 items in 15 chunks: the differences below fall into a few of them.
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
    assert!(
        text(&out).contains("3000 rows in inventory, 3000 rows in retail; 15 chunks, 0 differing"),
        "{}",
        text(&out)
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
