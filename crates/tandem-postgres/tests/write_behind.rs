//! `WriteBehind` over a real PostgreSQL sink: writes queued behind the caller keep their
//! order with reads and the commit, and a queued write that fails is reported by the next
//! call, keeps anything after it from committing, and is cleared by a rollback.
//!
//! Replication origins are per cluster and every sink here uses `tandem`: one test per
//! process (nextest's default), as in `sink_apply.rs`.
#![allow(clippy::unwrap_used)]

mod sink_support;

use sink_support::{client, database, inserts, sink, target};
use tandem_core::error::StageError;
use tandem_core::sink::{RowWrite, Sink};
use tandem_core::write_behind::WriteBehind;
use tandem_core::{Lsn, Position, Value};
use tandem_testkit::shared_pg;

async fn count(c: &tokio_postgres::Client) -> i64 {
    c.query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn queued_writes_are_read_back_and_committed_in_order() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "wb_order",
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
    )
    .await;
    let table = target(&db, "t").await;
    let mut wb = WriteBehind::spawn(Box::new(sink(&db).await));
    wb.begin().await.unwrap();
    wb.write_owned(&table, inserts(0..100, "a")).await.unwrap();
    wb.write_owned(
        &table,
        vec![RowWrite::Update {
            key: vec![Value::Int(7)],
            columns: vec![(1, Value::Text("b 7".into()))],
        }],
    )
    .await
    .unwrap();
    // The read runs after both queued writes.
    let got = wb
        .fetch_current(&table, &[vec![Value::Int(7)], vec![Value::Int(100)]])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Some(vec![Value::Int(7), Value::Text("b 7".into())]), None]
    );
    wb.write_owned(&table, inserts(100..150, "c"))
        .await
        .unwrap();
    wb.commit("p", &Position::PgLsn { lsn: Lsn(1) }, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(count(&client(&db).await).await, 150);
}

#[tokio::test]
async fn a_failed_queued_write_is_reported_next_and_nothing_after_it_commits() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "wb_fail",
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO t VALUES (5, 'shop');",
    )
    .await;
    let table = target(&db, "t").await;
    let mut wb = WriteBehind::spawn(Box::new(sink(&db).await));
    wb.begin().await.unwrap();
    // Key 5 exists: the insert contract makes this write fail (transient), but only the
    // task knows yet.
    wb.write_owned(&table, inserts(0..10, "x")).await.unwrap();
    wb.write_owned(&table, inserts(10..20, "y")).await.unwrap();
    let err = wb
        .fetch_current(&table, &[vec![Value::Int(1)]])
        .await
        .unwrap_err();
    assert!(matches!(err, StageError::Transient { .. }), "{err}");
    assert!(err.to_string().contains("rows inserted"), "{err}");
    // Until a rollback, nothing commits.
    let err = wb
        .commit("p", &Position::PgLsn { lsn: Lsn(1) }, chrono::Utc::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("earlier write"), "{err}");
    wb.rollback().await.unwrap();
    let c = client(&db).await;
    assert_eq!(count(&c).await, 1);
    let cp = wb.checkpoint("p").await.unwrap();
    assert_eq!(cp, None);
    // After the rollback the sink works again.
    wb.begin().await.unwrap();
    wb.write_owned(&table, inserts(10..20, "z")).await.unwrap();
    wb.commit("p", &Position::PgLsn { lsn: Lsn(2) }, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(count(&c).await, 11);
    assert_eq!(
        wb.checkpoint("p").await.unwrap(),
        Some(Position::PgLsn { lsn: Lsn(2) })
    );
}
