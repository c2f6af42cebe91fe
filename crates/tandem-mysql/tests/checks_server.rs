//! `tandem check` for MariaDB against kit servers: a good setup passes, and each broken
//! prerequisite fails with its fix.

use tandem_core::check::CheckResult;
use tandem_core::config::{
    EndpointConfig, EndpointKind, LoopPrevention, TlsConfig, DEFAULT_SERVER_ID,
};
use tandem_core::TableId;
use tandem_mysql::checks::check_endpoint;
use tandem_mysql::connect::connect;
use tandem_testkit::{shared_maria, MariaInstance, MariaOptions};

fn endpoint(url: &str) -> EndpointConfig {
    EndpointConfig {
        kind: EndpointKind::Mysql,
        url: url.to_owned(),
        password: None,
        tls: TlsConfig::default(),
        slot: None,
        publication: None,
        origin: None,
        server_id: None,
        loop_prevention: LoopPrevention::Auto,
        xa_held_rows: None,
    }
}

fn find<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {results:#?}"))
}

async fn run(url: &str, db: &str, tables: &[&str]) -> Vec<CheckResult> {
    let mut conn = connect(&endpoint(url), None).await.expect("connect");
    let ids: Vec<TableId> = tables.iter().map(|t| TableId::new(db, *t)).collect();
    check_endpoint(&mut conn, DEFAULT_SERVER_ID, db, &ids)
        .await
        .expect("checks run")
}

#[tokio::test]
async fn a_good_setup_passes_every_check() {
    let maria = shared_maria().await;
    let db = maria.create_database("chk_good").await.expect("db");
    maria
        .sql(
            &db.name,
            "CREATE TABLE products (sku varchar(20) PRIMARY KEY, qty int) ENGINE=InnoDB;",
        )
        .await
        .expect("ddl");
    let results = run(db.url(), &db.name, &["products"]).await;
    let failed: Vec<&CheckResult> = results.iter().filter(|r| !r.ok).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for name in [
        "log_bin",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
        "log_bin_compress",
        "server_id",
    ] {
        assert!(find(&results, name).ok);
    }
    assert_eq!(
        find(&results, &format!("table {}.products: key", db.name)).detail,
        "rows are identified by (sku)"
    );
}

#[tokio::test]
async fn missing_tables_keys_innodb_and_privileges_fail_with_fixes() {
    let maria = shared_maria().await;
    let db = maria.create_database("chk_bad").await.expect("db");
    let user = format!("u{}", &db.name[db.name.len() - 8..]);
    maria
        .sql(
            &db.name,
            &format!(
                "CREATE TABLE legacy (id int PRIMARY KEY) ENGINE=MyISAM;
                 CREATE TABLE nokey (a int, b int UNIQUE) ENGINE=InnoDB;
                 CREATE USER '{user}'@'127.0.0.1';
                 GRANT SELECT ON `{db}`.legacy TO '{user}'@'127.0.0.1';
                 GRANT SELECT ON `{db}`.nokey TO '{user}'@'127.0.0.1';",
                db = db.name
            ),
        )
        .await
        .expect("ddl");
    let url = format!("mysql://{user}@127.0.0.1:{}/{}", maria.port(), db.name);
    let results = run(&url, &db.name, &["legacy", "nokey", "missing"]).await;
    maria
        .sql("", &format!("DROP USER '{user}'@'127.0.0.1';"))
        .await
        .expect("drop user");

    let engine = find(&results, &format!("table {}.legacy: engine", db.name));
    assert!(!engine.ok && engine.detail.contains("MyISAM"), "{engine:?}");
    assert_eq!(
        engine.fix.as_deref(),
        Some(format!("ALTER TABLE `{}`.`legacy` ENGINE=InnoDB;", db.name).as_str())
    );
    assert!(find(&results, &format!("table {}.legacy: key", db.name)).ok);
    // A unique key on a nullable column cannot identify rows.
    assert!(!find(&results, &format!("table {}.nokey: key", db.name)).ok);
    let missing = find(&results, &format!("table {}.missing", db.name));
    assert!(
        !missing.ok && missing.fix.as_deref().is_some_and(|f| f.contains("legacy")),
        "{missing:?}"
    );

    let dml = find(&results, &format!("privileges on {}.legacy", db.name));
    assert!(!dml.ok);
    assert_eq!(
        dml.fix.as_deref(),
        Some(
            format!(
                "GRANT INSERT, UPDATE, DELETE ON `{}`.`legacy` TO '{user}'@'127.0.0.1';",
                db.name
            )
            .as_str()
        )
    );
    let repl = find(&results, "privilege REPLICATION SLAVE");
    assert!(
        !repl.ok
            && repl
                .fix
                .as_deref()
                .is_some_and(|f| f.starts_with("GRANT REPLICATION SLAVE ON *.*"))
    );
    assert!(!find(&results, "privilege BINLOG MONITOR").ok);
    assert!(!find(&results, &format!("privilege CREATE on {}", db.name)).ok);
}

#[tokio::test]
async fn a_server_without_binlog_fails_log_bin_with_the_fix() {
    let maria = MariaInstance::start(MariaOptions {
        binlog: false,
        ..MariaOptions::default()
    })
    .await
    .expect("start mariadb without binlog");
    let db = maria.create_database("chk_nobinlog").await.expect("db");
    let results = run(db.url(), &db.name, &[]).await;
    let log_bin = find(&results, "log_bin");
    assert!(!log_bin.ok);
    assert_eq!(log_bin.detail, "log_bin is OFF");
    assert!(
        log_bin
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("log_bin") && f.contains("my.cnf")),
        "{log_bin:?}"
    );
}

#[tokio::test]
async fn a_server_id_equal_to_the_readers_fails() {
    let maria = shared_maria().await;
    let db = maria.create_database("chk_sid").await.expect("db");
    let mut conn = connect(&endpoint(db.url()), None).await.expect("connect");
    // The kit's servers run with server_id = 1.
    let results = check_endpoint(&mut conn, 1, &db.name, &[])
        .await
        .expect("checks");
    let sid = find(&results, "server_id");
    assert!(
        !sid.ok && sid.fix.as_deref().is_some_and(|f| f.contains("server_id")),
        "{sid:?}"
    );
}
