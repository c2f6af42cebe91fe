//! Shared by the sink and checks tests: a database on a kit server, an endpoint for it,
//! and a sink opened on it.
#![allow(dead_code)]

use tandem_core::config::catalog::Catalog;
use tandem_core::config::{EndpointConfig, EndpointKind, LoopPrevention, TlsConfig, TlsMode};
use tandem_core::sink::{RowWrite, TargetTable};
use tandem_core::TableId;
use tandem_postgres::catalog::PgCatalog;
use tandem_postgres::connect::connect;
use tandem_postgres::sink::PgSink;
use tandem_testkit::{PgInstance, TestDb};

pub fn endpoint(url: &str) -> EndpointConfig {
    EndpointConfig {
        kind: EndpointKind::Postgres,
        url: url.to_owned(),
        password: None,
        tls: TlsConfig {
            mode: TlsMode::Disable,
            ca_file: None,
        },
        slot: None,
        publication: None,
        origin: None,
        server_id: None,
        loop_prevention: LoopPrevention::Auto,
        xa_held_rows: None,
    }
}

/// A fresh database with `setup` run in it.
pub async fn database(pg: &PgInstance, prefix: &str, setup: &str) -> TestDb {
    let db = pg.create_database(prefix).await.expect("create database");
    if !setup.is_empty() {
        pg.psql(&db.name, setup).await.expect("setup sql");
    }
    db
}

pub async fn client(db: &TestDb) -> tokio_postgres::Client {
    let (client, _task) = connect(&endpoint(db.url()), None, "tandem-test")
        .await
        .expect("connect");
    client
}

pub async fn sink(db: &TestDb) -> PgSink {
    let (client, task) = connect(&endpoint(db.url()), None, "tandem-test")
        .await
        .expect("connect");
    PgSink::open(client, Some(task), "tandem", "tandem")
        .await
        .expect("open sink")
}

/// The target table as the applier would build it: every column, keyed by the primary key.
pub async fn target(db: &TestDb, table: &str) -> TargetTable {
    let c = client(db).await;
    let cat = PgCatalog::load(&c, &["public"], "public")
        .await
        .expect("catalog");
    let t = cat
        .table(&TableId::new("public", table))
        .expect("table in catalog");
    TargetTable {
        table: t.schema.table.clone(),
        columns: t
            .schema
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.column_type.clone()))
            .collect(),
        key: t.schema.key.clone(),
    }
}

/// Inserts of `(id, "{label} {id}")` rows for a `(bigint key, text)` table.
pub fn inserts(ids: std::ops::Range<i64>, label: &str) -> Vec<RowWrite> {
    ids.map(|i| RowWrite::Insert {
        values: vec![
            tandem_core::Value::Int(i),
            tandem_core::Value::Text(format!("{label} {i}")),
        ],
    })
    .collect()
}
