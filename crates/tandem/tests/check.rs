//! `tandem check` against real servers: it passes on a correct setup and fails with the fix
//! printed on each kind of mistake.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tandem_testkit::{shared_maria, shared_pg, PgInstance, PgOptions};

#[tokio::test]
async fn check_passes_on_demo_setup_and_names_fixes_for_mistakes() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 10).await;
    let listen = format!("127.0.0.1:{}", free_port());

    let good = write_config(&pair, pg, maria, &listen, |t| t);
    let out = tandem(&["check", "-c", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("all ") && text(&out).contains("checks passed"),
        "{}",
        text(&out)
    );

    // A misspelled column: the field path and a suggestion.
    let typo = write_config(&pair, pg, maria, &listen, |t| {
        t.replace(r#"retail = "stock_qty""#, r#"retail = "stok_qty""#)
    });
    let out = tandem(&["check", "-c", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            r#"mappings[0].columns[3].retail: column "stok_qty" does not exist in retail.products"#
        ) && text(&out).contains(r#"did you mean "stock_qty"?"#),
        "{}",
        text(&out)
    );

    // A table without REPLICA IDENTITY FULL: the ALTER TABLE that fixes it.
    pg.psql(
        &pair.inventory.name,
        "ALTER TABLE items REPLICA IDENTITY DEFAULT",
    )
    .await
    .unwrap();
    let out = tandem(&["check", "-c", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("REPLICA IDENTITY FULL"),
        "{}",
        text(&out)
    );

    // An inline password: refused before connecting, exit 2.
    let inline = write_config(&pair, pg, maria, &listen, |t| {
        t.replace(
            r#"password = { env = "RETAIL_PASSWORD" }"#,
            r#"password = "hunter2""#,
        )
    });
    let out = tandem(&["check", "-c", inline.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("inline secrets are refused"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("hunter2"),
        "the secret was printed: {}",
        text(&out)
    );
}

#[tokio::test]
async fn check_fails_without_logical_wal_and_prints_the_fix() {
    let pg = PgInstance::start(PgOptions {
        wal_level_logical: false,
        ..PgOptions::default()
    })
    .await
    .unwrap();
    let maria = shared_maria().await;
    let pair = demo_pair(&pg, maria, 10).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, &pg, maria, &listen, |t| t);
    let out = tandem(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("wal_level")
            && text(&out).contains("ALTER SYSTEM SET wal_level = logical"),
        "{}",
        text(&out)
    );
}
