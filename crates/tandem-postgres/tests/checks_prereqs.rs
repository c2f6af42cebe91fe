//! `tandem check` against real servers: a prepared database passes, and each missing
//! prerequisite fails with the statement that fixes it.
#![allow(clippy::unwrap_used)]

mod sink_support;

use sink_support::{database, endpoint};
use tandem_core::check::CheckResult;
use tandem_core::TableId;
use tandem_postgres::checks::check;
use tandem_postgres::connect::connect;
use tandem_testkit::{shared_pg, PgInstance, PgOptions};

const ITEMS: &str = "CREATE TABLE items (sku text PRIMARY KEY, qty int);
                     ALTER TABLE items REPLICA IDENTITY FULL;";

async fn run(url: &str, tables: &[TableId]) -> Vec<CheckResult> {
    let ep = endpoint(url);
    let (client, _task) = connect(&ep, None, "tandem-check-test")
        .await
        .expect("connect");
    check(&ep, &client, tables).await
}

fn find<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {results:#?}"))
}

fn items() -> Vec<TableId> {
    vec![TableId::new("public", "items")]
}

#[tokio::test]
async fn a_prepared_database_passes_every_check() {
    let pg = shared_pg().await;
    let db = database(pg, "check_ok", ITEMS).await;
    let results = run(db.url(), &items()).await;
    let failed: Vec<&CheckResult> = results.iter().filter(|r| !r.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    // Every check listed: server, wal, slots, senders, role, origin, create, 4 per table.
    assert_eq!(results.len(), 11, "{results:#?}");
}

#[tokio::test]
async fn wal_level_replica_fails_with_the_alter_system_fix() {
    let pg = PgInstance::start(PgOptions {
        wal_level_logical: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let db = database(&pg, "check_wal", ITEMS).await;
    let results = run(db.url(), &items()).await;
    let wal = find(&results, "wal_level");
    assert!(!wal.ok, "{wal:?}");
    assert!(wal.detail.contains("replica"), "{wal:?}");
    assert_eq!(
        wal.fix.as_deref(),
        Some("run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL")
    );
    assert!(find(&results, "table public.items: replica identity").ok);
}

#[tokio::test]
async fn a_table_without_replica_identity_full_fails_with_the_alter_table_fix() {
    let pg = shared_pg().await;
    let setup = "CREATE TABLE items (sku text PRIMARY KEY, qty int); CREATE TABLE nokey (a int);";
    let db = database(pg, "check_ident", setup).await;
    let tables = vec![
        TableId::new("public", "items"),
        TableId::new("public", "nokey"),
        TableId::new("public", "gone"),
    ];
    let results = run(db.url(), &tables).await;
    let ident = find(&results, "table public.items: replica identity");
    assert!(!ident.ok && ident.detail.contains("DEFAULT"), "{ident:?}");
    assert_eq!(
        ident.fix.as_deref(),
        Some("run ALTER TABLE \"public\".\"items\" REPLICA IDENTITY FULL;")
    );
    let key = find(&results, "table public.nokey: key");
    assert!(!key.ok, "{key:?}");
    let gone = find(&results, "table public.gone: exists");
    assert!(
        !gone.ok && gone.detail.contains("does not exist"),
        "{gone:?}"
    );
}

#[tokio::test]
async fn an_unprivileged_role_is_told_each_grant_it_needs() {
    let pg = shared_pg().await;
    let db = database(pg, "check_role", ITEMS).await;
    pg.psql(
        &db.name,
        "CREATE ROLE plain_app LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
    )
    .await
    .unwrap();
    let url = db.url().replace("postgres@", "plain_app@");
    let results = run(&url, &items()).await;

    let role = find(&results, "replication privilege");
    assert_eq!(
        role.fix.as_deref(),
        Some("run ALTER ROLE \"plain_app\" REPLICATION;")
    );
    let origin = find(&results, "replication origin");
    assert!(!origin.ok, "{origin:?}");
    assert!(
        origin.fix.as_deref().unwrap_or_default().contains(
            "GRANT EXECUTE ON FUNCTION pg_replication_origin_session_setup(text) TO \"plain_app\";"
        ),
        "{origin:?}"
    );
    let privileges = find(&results, "table public.items: privileges");
    assert_eq!(
        privileges.fix.as_deref(),
        Some("run GRANT SELECT, INSERT, UPDATE, DELETE ON \"public\".\"items\" TO \"plain_app\";")
    );

    // Following the advice makes every check pass.
    let fixes: Vec<String> = results
        .iter()
        .filter_map(|r| r.fix.as_deref())
        .map(|f| f.trim_start_matches("run ").to_owned())
        .collect();
    pg.psql(&db.name, &fixes.join("\n")).await.unwrap();
    let results = run(&url, &items()).await;
    let failed: Vec<&CheckResult> = results.iter().filter(|r| !r.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
