//! The sink's errors say what to do next: retry the transaction (deadlock, serialization
//! failure) or park the row (a constraint names table and constraint).
#![allow(clippy::unwrap_used)]

mod sink_support;

use std::time::Duration;

use chrono::Utc;
use sink_support::{client, database, sink, target};
use tandem_core::error::{ErrorClass, StageError};
use tandem_core::sink::{RowWrite, Sink};
use tandem_core::{Lsn, Position, Value};
use tandem_testkit::shared_pg;

fn upd(id: i64, v: i64) -> RowWrite {
    RowWrite::Update {
        key: vec![Value::Int(id)],
        columns: vec![(1, Value::Int(v))],
    }
}

#[tokio::test]
async fn a_deadlock_is_transient_and_the_sink_recovers_after_rollback() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "sink_deadlock",
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0);",
    )
    .await;
    let table = target(&db, "t").await;
    let mut sink = sink(&db).await;
    let other = client(&db).await;
    // The other session waits long before checking for deadlocks, so the sink is the victim.
    other
        .batch_execute("SET deadlock_timeout = '20s'; BEGIN; UPDATE t SET v = 1 WHERE id = 2;")
        .await
        .unwrap();
    sink.begin().await.unwrap();
    sink.write(&table, &[upd(1, 1)]).await.unwrap();
    let blocked = tokio::spawn(async move {
        other
            .batch_execute("UPDATE t SET v = 1 WHERE id = 1; COMMIT;")
            .await
            .map(|_| other)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = sink.write(&table, &[upd(2, 2)]).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{}", err.report());
    assert!(err.to_string().contains("deadlock"), "{err}");
    sink.rollback().await.unwrap();
    blocked.await.unwrap().unwrap();

    // The retry goes through.
    sink.begin().await.unwrap();
    sink.write(&table, &[upd(1, 5), upd(2, 5)]).await.unwrap();
    sink.commit("p", &Position::PgLsn { lsn: Lsn(1) }, Utc::now())
        .await
        .unwrap();
    let c = client(&db).await;
    let sum: i64 = c
        .query_one("SELECT sum(v) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 10);
}

#[tokio::test]
async fn a_serialization_failure_is_transient() {
    let pg = shared_pg().await;
    let setup = "CREATE TABLE t (id int PRIMARY KEY, v int);
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure'; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION refuse();";
    let db = database(pg, "sink_serial", setup).await;
    let table = target(&db, "t").await;
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    let err = sink
        .write(
            &table,
            &[RowWrite::Insert {
                values: vec![Value::Int(1), Value::Int(1)],
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{}", err.report());
    sink.rollback().await.unwrap();
}

#[tokio::test]
async fn a_constraint_violation_is_definite_and_names_table_and_constraint() {
    let pg = shared_pg().await;
    let setup = "CREATE TABLE items (id int PRIMARY KEY, qty int CONSTRAINT qty_not_negative CHECK (qty >= 0),
                 sku varchar(4) UNIQUE)";
    let db = database(pg, "sink_constraint", setup).await;
    let table = target(&db, "items").await;
    let mut sink = sink(&db).await;
    let ins = |id, qty, sku: &str| RowWrite::Insert {
        values: vec![Value::Int(id), Value::Int(qty), Value::Text(sku.into())],
    };

    sink.begin().await.unwrap();
    let err = sink
        .write(&table, &[ins(1, 1, "a"), ins(2, -1, "b")])
        .await
        .unwrap_err();
    let StageError::Definite { what, advice, .. } = &err else {
        panic!("not definite: {}", err.report())
    };
    assert!(
        what.contains("qty_not_negative") && what.contains("public.items"),
        "{what}"
    );
    assert!(advice.contains("dead letters"), "{advice}");
    sink.rollback().await.unwrap();

    sink.begin().await.unwrap();
    let err = sink
        .write(&table, &[ins(1, 1, "a"), ins(2, 1, "a")])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Definite);
    assert!(err.to_string().contains("items_sku_key"), "{err}");
    sink.rollback().await.unwrap();

    // Too long for varchar(4): refused, never truncated.
    sink.begin().await.unwrap();
    let err = sink
        .write(&table, &[ins(1, 1, "toolong")])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Definite, "{}", err.report());
    sink.rollback().await.unwrap();
}
