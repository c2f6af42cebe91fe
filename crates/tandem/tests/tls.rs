//! TLS to both databases against real handshakes: servers of the kit's own with a
//! certificate from a throwaway CA. `verify-full` replicates both ways with every session
//! encrypted (the replication walsender included); a certificate from another CA fails
//! `verify-ca`, and a certificate for another host name passes `verify-ca` but fails
//! `verify-full`, each with a message that names TLS.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tandem_testkit::{MariaInstance, MariaOptions, PgInstance, PgOptions, TestCerts};

/// A PostgreSQL and a MariaDB server presenting `certs`' server certificate.
async fn servers(certs: &TestCerts) -> (PgInstance, MariaInstance) {
    let pg = PgInstance::start(PgOptions {
        extra_conf: certs.pg_conf(),
        ..PgOptions::default()
    })
    .await
    .expect("PostgreSQL with TLS starts");
    let maria = MariaInstance::start(MariaOptions {
        extra_args: certs.maria_args(),
        ..MariaOptions::default()
    })
    .await
    .expect("MariaDB with TLS starts");
    (pg, maria)
}

/// The demo config with both endpoints in `mode`, trusting `ca`.
fn tls_config(
    pair: &Pair,
    pg: &PgInstance,
    maria: &MariaInstance,
    listen: &str,
    mode: &str,
    ca: &std::path::Path,
) -> std::path::PathBuf {
    let tls = format!(
        r#"tls = {{ mode = "{mode}", ca_file = "{}" }}"#,
        ca.display()
    );
    write_config(pair, pg, maria, listen, |t| {
        t.replace(r#"tls = { mode = "disable" }"#, &tls)
    })
}

#[tokio::test]
async fn verify_full_replicates_both_ways_over_encrypted_sessions() {
    let certs = TestCerts::generate(&["127.0.0.1"]).unwrap();
    let stranger = TestCerts::generate(&["127.0.0.1"]).unwrap();
    let (pg, maria) = servers(&certs).await;
    let pair = demo_pair(&pg, &maria, 20).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    // The shop's login may only come over TLS: a plain session would be refused.
    maria
        .sql(
            &ret,
            "CREATE USER tandem_tls@'127.0.0.1' REQUIRE SSL; \
             GRANT ALL ON *.* TO tandem_tls@'127.0.0.1' WITH GRANT OPTION",
        )
        .await
        .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = tls_config(&pair, &pg, &maria, &listen, "verify-full", &certs.ca_file());
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("mysql://root@127.0.0.1:{}", maria.port()),
        &format!("mysql://tandem_tls@127.0.0.1:{}", maria.port()),
    );
    std::fs::write(&cfg, text_cfg).unwrap();

    let out = tandem(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let daemon = Daemon::start(&cfg);
    pg.psql(
        &inv,
        "INSERT INTO items (sku, name, unit_price, on_hand) VALUES ('TLS-1', 'Padlock', 9.99, 3)",
    )
    .await
    .unwrap();
    wait_for("the new item in the shop", || async {
        maria
            .sql(&ret, "SELECT stock_qty FROM products WHERE sku = 'TLS-1'")
            .await
            .unwrap_or_default()
            .trim()
            == "3"
    })
    .await;
    maria
        .sql(
            &ret,
            "UPDATE products SET stock_qty = stock_qty - 1 WHERE sku = 'TLS-1'",
        )
        .await
        .unwrap();
    wait_for("the sale in the inventory", || async {
        pg.psql(&inv, "SELECT on_hand FROM items WHERE sku = 'TLS-1'")
            .await
            .unwrap_or_default()
            .trim()
            == "2"
    })
    .await;

    // Every session tandem holds on PostgreSQL, the walsender included, is encrypted.
    let sessions = pg
        .psql(
            &inv,
            "SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name LIKE 'tandem%' ORDER BY 1",
        )
        .await
        .unwrap();
    assert!(
        sessions.contains("walsender|t"),
        "no encrypted walsender: {sessions}"
    );
    assert!(!sessions.contains("|f"), "a plain session: {sessions}");
    drop(daemon);

    // A server certificate from another CA is refused, naming TLS and the CA file.
    let wrong = tls_config(
        &pair,
        &pg,
        &maria,
        &listen,
        "verify-ca",
        &stranger.ca_file(),
    );
    let out = tandem(&["check", "-c", wrong.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out).to_lowercase();
    assert!(
        said.contains("tls") || said.contains("certificate"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let certs = TestCerts::generate(&["db.example.internal"]).unwrap();
    let (pg, maria) = servers(&certs).await;
    let pair = demo_pair(&pg, &maria, 5).await;
    let listen = format!("127.0.0.1:{}", free_port());

    let ca_only = tls_config(&pair, &pg, &maria, &listen, "verify-ca", &certs.ca_file());
    let out = tandem(&["check", "-c", ca_only.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The URL says 127.0.0.1, the certificate db.example.internal: both endpoints fail.
    let full = tls_config(&pair, &pg, &maria, &listen, "verify-full", &certs.ca_file());
    let out = tandem(&["check", "-c", full.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let said = text(&out);
    let failures: Vec<&str> = said
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("tls") || l.contains("certificate")
        })
        .collect();
    assert!(
        said.contains("inventory") && said.contains("retail") && failures.len() >= 2,
        "expected a TLS failure for each endpoint:\n{said}"
    );
}
