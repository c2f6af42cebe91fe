//! The sink's bulk path for an initial copy's batches (inserts only, distinct keys):
//! `COPY` straight into the target where that behaves as `INSERT` would, the staged
//! `INSERT … ON CONFLICT` where it would not.
//!
//! Replication origins are per cluster and every sink here uses `tandem`: run with
//! `--test-threads=1` (parallel tests collide on the origin, as in `sink_apply.rs`).
#![allow(clippy::unwrap_used)]

mod sink_support;

use sink_support::{client, database, inserts, sink, target};
use tandem_core::error::StageError;
use tandem_core::sink::{RowWrite, Sink};
use tandem_core::{Lsn, Position, Value};
use tandem_testkit::shared_pg;

fn at() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_batch_of_new_keys_is_copied_straight_into_the_table() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "copy_direct",
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
    )
    .await;
    let table = target(&db, "t").await;
    let mut sink = sink(&db).await;
    sink.set_copy_threshold(10);
    sink.begin().await.unwrap();
    sink.write(&table, &inserts(0..50, "new\tline\\"))
        .await
        .unwrap();
    // No staging table: the rows went in with one COPY.
    let staged = count(
        sink.client(),
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'tandem_stage_%' AND relpersistence = 't'",
    )
    .await;
    assert_eq!(staged, 0);
    sink.commit("p", &Position::PgLsn { lsn: Lsn(1) }, at())
        .await
        .unwrap();
    let c = client(&db).await;
    assert_eq!(count(&c, "SELECT count(*) FROM t").await, 50);
    let v: String = c
        .query_one("SELECT v FROM t WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "new\tline\\ 7");
}

#[tokio::test]
async fn a_key_committed_by_another_writer_is_kept_and_reported_as_transient() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "copy_taken",
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO t VALUES (25, 'shop');",
    )
    .await;
    let table = target(&db, "t").await;
    let mut sink = sink(&db).await;
    sink.set_copy_threshold(10);
    sink.begin().await.unwrap();
    let err = sink
        .write(&table, &inserts(0..50, "copy"))
        .await
        .unwrap_err();
    assert!(matches!(err, StageError::Transient { .. }), "{err}");
    assert!(err.to_string().contains("49 of 50 rows inserted"), "{err}");
    // The transaction is still usable (the failed COPY was rolled back to its savepoint).
    let got = sink
        .fetch_current(&table, &[vec![Value::Int(25)]])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Some(vec![Value::Int(25), Value::Text("shop".into())])]
    );
    sink.rollback().await.unwrap();
}

#[tokio::test]
async fn tables_where_copy_differs_from_insert_take_the_staged_way() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "copy_differs",
        "CREATE TABLE audit (id bigint);
         CREATE TABLE ruled (id bigint PRIMARY KEY, v text NOT NULL);
         CREATE RULE log_insert AS ON INSERT TO ruled DO ALSO INSERT INTO audit VALUES (NEW.id);
         CREATE TABLE ident (id bigint PRIMARY KEY, g bigint GENERATED ALWAYS AS IDENTITY);
         CREATE TABLE deferred (id bigint PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text NOT NULL);",
    )
    .await;
    let mut sink = sink(&db).await;
    sink.set_copy_threshold(10);

    // COPY would skip the rule. The sink's other statements (`INSERT … ON CONFLICT`)
    // cannot run on a table with rules at all, so neither may the copy: it fails alike.
    let ruled = target(&db, "ruled").await;
    sink.begin().await.unwrap();
    let err = sink.write(&ruled, &inserts(0..20, "r")).await.unwrap_err();
    assert!(matches!(err, StageError::Definite { .. }), "{err}");
    sink.rollback().await.unwrap();
    let c = client(&db).await;
    assert_eq!(count(&c, "SELECT count(*) FROM ruled").await, 0);

    // COPY would defer the key check to the commit; `ON CONFLICT` refuses the table.
    let deferred = target(&db, "deferred").await;
    sink.begin().await.unwrap();
    let err = sink
        .write(&deferred, &inserts(0..20, "d"))
        .await
        .unwrap_err();
    assert!(matches!(err, StageError::Definite { .. }), "{err}");
    sink.rollback().await.unwrap();

    // COPY would write the GENERATED ALWAYS column; INSERT refuses, naming the problem.
    let ident = target(&db, "ident").await;
    let writes: Vec<RowWrite> = (0..20)
        .map(|i| RowWrite::Insert {
            values: vec![Value::Int(i), Value::Int(1000 + i)],
        })
        .collect();
    sink.begin().await.unwrap();
    let err = sink.write(&ident, &writes).await.unwrap_err();
    assert!(matches!(err, StageError::Definite { .. }), "{err}");
    sink.rollback().await.unwrap();
    assert_eq!(count(&c, "SELECT count(*) FROM ident").await, 0);
}
