//! The PostgreSQL source against a real server: what a DBA writes comes out as the right
//! events with the right values; tandem's own writes do not; acknowledgements move the slot.
#![allow(clippy::unwrap_used)]

mod source_support;

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use source_support::{client, endpoint, next, table, transaction};
use tandem_core::change::{Cell, OldRow, Row, RowChange, SourceEvent};
use tandem_core::error::ErrorClass;
use tandem_core::source::Source;
use tandem_core::{Position, Value};
use tandem_postgres::source::PgSource;
use tandem_testkit::shared_pg;

pub const ALL_TYPES: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE every_type (
  id bigint PRIMARY KEY,
  b boolean, i2 smallint, i4 integer, n numeric(12,2), nn numeric, f4 real, f8 double precision,
  t text, vc varchar(10), c char(5), by bytea, d date, tm time, ts timestamp, tstz timestamptz,
  j jsonb, js json, u uuid, e mood, iv interval);
ALTER TABLE every_type REPLICA IDENTITY FULL;";

pub const ALL_TYPES_ROW: &str = "INSERT INTO every_type VALUES (
  1, true, -32768, 2147483647, 1234567890.12, -0.000000000000000000001, 1.5, '-0',
  E'tab\\there ünïcode 🦀', 'ten chars!', 'ab', '\\x00ff', '0044-03-15 BC', '23:59:59.999999',
  '2024-02-29 12:00:00.000001', '2024-03-31 02:30:00.123456+02', '{\"a\": [1, 2]}', '{\"b\":1}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '1 day')";

fn dec(s: &str) -> Value {
    Value::Decimal(BigDecimal::from_str(s).unwrap())
}

fn expected_row() -> Vec<Value> {
    vec![
        Value::Int(1),
        Value::Bool(true),
        Value::Int(-32768),
        Value::Int(2_147_483_647),
        dec("1234567890.12"),
        dec("-0.000000000000000000001"),
        Value::Float(1.5),
        Value::Float(-0.0),
        Value::Text("tab\there ünïcode 🦀".into()),
        Value::Text("ten chars!".into()),
        Value::Text("ab   ".into()),
        Value::Bytes(vec![0, 255]),
        Value::Date(NaiveDate::from_ymd_opt(-43, 3, 15).unwrap()),
        Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap()),
        Value::Timestamp(
            NaiveDate::from_ymd_opt(2024, 2, 29)
                .unwrap()
                .and_hms_micro_opt(12, 0, 0, 1)
                .unwrap(),
        ),
        Value::TimestampTz(
            Utc.with_ymd_and_hms(2024, 3, 31, 0, 30, 0).unwrap()
                + chrono::Duration::microseconds(123_456),
        ),
        Value::Json("{\"a\": [1, 2]}".into()),
        Value::Json("{\"b\":1}".into()),
        Value::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".parse().unwrap()),
        Value::Text("happy".into()),
        Value::Unsupported {
            type_name: "interval".into(),
            text: "1 day".into(),
        },
    ]
}

fn values(row: &Row) -> Vec<Value> {
    row.0
        .iter()
        .map(|c| c.value().cloned().expect("no unchanged cell"))
        .collect()
}

#[tokio::test]
async fn source_every_type_family_streams_through_insert_update_delete_truncate() {
    let pg = shared_pg().await;
    let db = pg.create_database("src_types").await.unwrap();
    pg.psql(&db.name, ALL_TYPES).await.unwrap();
    let ep = endpoint(&db);
    let mut src = PgSource::start(&ep, None, &[table("every_type")], None)
        .await
        .unwrap();

    pg.psql(&db.name, ALL_TYPES_ROW).await.unwrap();
    let tx = transaction(&mut src).await;
    assert!(
        matches!(&tx[0], SourceEvent::Begin(b) if b.origin.is_none() && b.commit_time.is_some())
    );
    let SourceEvent::Change(c) = &tx[1] else {
        panic!("{:?}", tx[1])
    };
    assert_eq!(c.table.table.to_string(), "public.every_type");
    assert_eq!(
        c.table.key.len(),
        21,
        "REPLICA IDENTITY FULL marks every column"
    );
    let RowChange::Insert { new } = &c.row else {
        panic!("{:?}", c.row)
    };
    let got = values(new);
    for (i, (g, e)) in got.iter().zip(expected_row()).enumerate() {
        match (g, &e) {
            (Value::Float(a), Value::Float(b)) => {
                assert!(
                    a == b && a.is_sign_negative() == b.is_sign_negative(),
                    "column {i}: {a} vs {b}"
                )
            }
            _ => assert_eq!(g, &e, "column {i} ({})", c.table.columns[i].name),
        }
    }
    assert!(
        matches!(c.table.columns[19].column_type, tandem_core::ColumnType::Enum { ref labels } if labels.len() == 3)
    );
    let SourceEvent::Commit(commit) = &tx[2] else {
        panic!("{:?}", tx[2])
    };
    let Position::PgLsn { lsn: first_end } = commit.position else {
        panic!()
    };

    pg.psql(
        &db.name,
        "UPDATE every_type SET i4 = 7, b = NULL WHERE id = 1",
    )
    .await
    .unwrap();
    let tx = transaction(&mut src).await;
    let SourceEvent::Change(c) = &tx[1] else {
        panic!("{:?}", tx[1])
    };
    let RowChange::Update {
        old: OldRow::Full(old),
        new,
    } = &c.row
    else {
        panic!("{:?}", c.row)
    };
    assert_eq!(old.0[3], Cell::Value(Value::Int(2_147_483_647)));
    assert_eq!(new.0[3], Cell::Value(Value::Int(7)));
    assert_eq!(new.0[1], Cell::Value(Value::Null));
    let SourceEvent::Commit(commit) = &tx[2] else {
        panic!()
    };
    assert!(commit
        .position
        .try_cmp(&Position::PgLsn { lsn: first_end })
        .unwrap()
        .is_gt());

    pg.psql(&db.name, "DELETE FROM every_type WHERE id = 1")
        .await
        .unwrap();
    let tx = transaction(&mut src).await;
    let SourceEvent::Change(c) = &tx[1] else {
        panic!("{:?}", tx[1])
    };
    let RowChange::Delete {
        old: OldRow::Full(old),
    } = &c.row
    else {
        panic!("{:?}", c.row)
    };
    assert_eq!(old.0[3], Cell::Value(Value::Int(7)));

    pg.psql(
        &db.name,
        "INSERT INTO every_type (id) VALUES (2); TRUNCATE every_type",
    )
    .await
    .unwrap();
    let tx = transaction(&mut src).await;
    assert!(matches!(&tx[1], SourceEvent::Change(_)));
    let tx2 = if tx.len() == 3 {
        transaction(&mut src).await
    } else {
        tx[2..].to_vec()
    };
    let truncate = tx2.iter().find_map(|e| match e {
        SourceEvent::Truncate { tables } => Some(tables.clone()),
        _ => None,
    });
    assert_eq!(
        truncate.expect("a truncate event")[0].table.name,
        "every_type"
    );
    src.shutdown().await.unwrap();
}

#[tokio::test]
async fn source_unchanged_toast_is_filled_under_replica_identity_full() {
    let pg = shared_pg().await;
    let db = pg.create_database("src_toast").await.unwrap();
    pg.psql(
        &db.name,
        "CREATE TABLE doc (id int PRIMARY KEY, body text, n int);
         ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL;
         ALTER TABLE doc REPLICA IDENTITY FULL;",
    )
    .await
    .unwrap();
    let ep = endpoint(&db);
    let mut src = PgSource::start(&ep, None, &[table("doc")], None)
        .await
        .unwrap();
    pg.psql(
        &db.name,
        "INSERT INTO doc SELECT 1, string_agg(md5(g::text), ''), 0 FROM generate_series(1, 500) g",
    )
    .await
    .unwrap();
    let tx = transaction(&mut src).await;
    let SourceEvent::Change(c) = &tx[1] else {
        panic!()
    };
    let RowChange::Insert { new } = &c.row else {
        panic!()
    };
    let Some(Cell::Value(Value::Text(body))) = new.get(1) else {
        panic!("{new:?}")
    };
    assert_eq!(body.len(), 16_000);
    let body = body.clone();

    pg.psql(&db.name, "UPDATE doc SET n = 1 WHERE id = 1")
        .await
        .unwrap();
    let tx = transaction(&mut src).await;
    let SourceEvent::Change(c) = &tx[1] else {
        panic!()
    };
    let RowChange::Update {
        old: OldRow::Full(_),
        new,
    } = &c.row
    else {
        panic!("{:?}", c.row)
    };
    assert_eq!(
        new.get(1),
        Some(&Cell::Value(Value::Text(body))),
        "TOAST value filled from old image"
    );
    assert_eq!(new.get(2), Some(&Cell::Value(Value::Int(1))));
    src.shutdown().await.unwrap();
}

#[tokio::test]
async fn source_drops_transactions_of_tandems_origin_but_reports_progress() {
    let pg = shared_pg().await;
    let db = pg.create_database("src_origin").await.unwrap();
    pg.psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let ep = endpoint(&db);
    let origin = ep.origin_name().to_owned();
    let mut src = PgSource::start(&ep, None, &[table("t")], None)
        .await
        .unwrap();

    pg.psql(
        &db.name,
        &format!(
            "SELECT pg_replication_origin_create('{origin}');
             SELECT pg_replication_origin_session_setup('{origin}');
             INSERT INTO t VALUES (1);
             SELECT pg_replication_origin_session_reset();
             SELECT pg_replication_origin_create('other_{origin}');
             SELECT pg_replication_origin_session_setup('other_{origin}');
             INSERT INTO t VALUES (2);
             SELECT pg_replication_origin_session_reset();
             INSERT INTO t VALUES (3);"
        ),
    )
    .await
    .unwrap();
    // tandem's own insert: only progress.
    assert!(matches!(next(&mut src).await, SourceEvent::Progress { .. }));
    // Another origin's insert comes out, labelled.
    let tx = transaction(&mut src).await;
    assert!(
        matches!(&tx[0], SourceEvent::Begin(b) if b.origin.as_deref() == Some(&*format!("other_{origin}")))
    );
    let SourceEvent::Change(c) = &tx[1] else {
        panic!()
    };
    assert_eq!(
        c.row,
        RowChange::Insert {
            new: Row::from_values([Value::Int(2)])
        }
    );
    // A plain insert.
    let tx = transaction(&mut src).await;
    assert!(matches!(&tx[0], SourceEvent::Begin(b) if b.origin.is_none()));
    let SourceEvent::Change(c) = &tx[1] else {
        panic!()
    };
    assert_eq!(
        c.row,
        RowChange::Insert {
            new: Row::from_values([Value::Int(3)])
        }
    );
    src.shutdown().await.unwrap();
}

async fn confirmed_flush(db: &tandem_testkit::TestDb) -> tandem_core::Lsn {
    let c = client(db).await;
    let row = c
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&db.name],
        )
        .await
        .unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

#[tokio::test]
async fn source_acknowledged_position_reaches_the_slot_by_shutdown() {
    let pg = shared_pg().await;
    let db = pg.create_database("src_ack").await.unwrap();
    pg.psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let ep = endpoint(&db);
    let mut src = PgSource::start(&ep, None, &[table("t")], None)
        .await
        .unwrap();
    let before = confirmed_flush(&db).await;
    pg.psql(
        &db.name,
        "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);",
    )
    .await
    .unwrap();
    let first = transaction(&mut src).await;
    let second = transaction(&mut src).await;
    let SourceEvent::Commit(c1) = first.last().unwrap() else {
        panic!()
    };
    let SourceEvent::Commit(c2) = second.last().unwrap() else {
        panic!()
    };
    // Only the first is "durably applied": the slot must stop there, not at the second.
    src.acknowledge(&c1.position).await.unwrap();
    src.shutdown().await.unwrap();
    let after = confirmed_flush(&db).await;
    let Position::PgLsn { lsn: l1 } = c1.position else {
        panic!()
    };
    let Position::PgLsn { lsn: l2 } = c2.position else {
        panic!()
    };
    assert!(after > before);
    assert_eq!(
        after, l1,
        "confirmed_flush_lsn is the acknowledged commit end, not beyond"
    );
    assert!(after < l2);

    // A restart from the checkpoint re-delivers the unacknowledged transaction, only it.
    let mut src = PgSource::start(&ep, None, &[table("t")], Some(&c1.position))
        .await
        .unwrap();
    let again = transaction(&mut src).await;
    let SourceEvent::Change(c) = &again[1] else {
        panic!()
    };
    assert_eq!(
        c.row,
        RowChange::Insert {
            new: Row::from_values([Value::Int(2)])
        }
    );
    src.shutdown().await.unwrap();
}

#[tokio::test]
async fn source_idle_slot_advances_with_keepalives() {
    let pg = shared_pg().await;
    let db = pg.create_database("src_idle").await.unwrap();
    pg.psql(
        &db.name,
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE other (id int)",
    )
    .await
    .unwrap();
    let ep = endpoint(&db);
    let mut src = PgSource::start(&ep, None, &[table("t")], None)
        .await
        .unwrap();
    let before = confirmed_flush(&db).await;
    // Busy unpublished table, quiet published one; the source is polled as a pipeline would.
    pg.psql(
        &db.name,
        "INSERT INTO other SELECT generate_series(1, 1000); SELECT pg_switch_wal();",
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while confirmed_flush(&db).await <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "idle slot never advanced"
        );
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), src.next_event()).await;
    }
    src.shutdown().await.unwrap();
}

/// A pipeline that stops pulling (a slow target) for longer than the server's
/// `wal_sender_timeout` (10 s on the kit's servers) must not lose the connection: the
/// transport keeps sending status updates while its buffer is full, and the stream goes on
/// where it stopped, in the same WAL sender.
#[tokio::test]
async fn source_survives_a_stalled_pipeline_longer_than_wal_sender_timeout() {
    const ROWS: i32 = 20_000; // more than the transport buffers
    let pg = shared_pg().await;
    let db = pg.create_database("src_stall").await.unwrap();
    pg.psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let ep = endpoint(&db);
    let mut src = PgSource::start(&ep, None, &[table("t")], None)
        .await
        .unwrap();
    let sender_pid = || async {
        pg.psql(
            &db.name,
            &format!(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{}'",
                db.name
            ),
        )
        .await
        .unwrap()
        .trim()
        .to_owned()
    };
    let before = sender_pid().await;
    pg.psql(
        &db.name,
        &format!("INSERT INTO t SELECT generate_series(1, {ROWS})"),
    )
    .await
    .unwrap();
    assert!(matches!(next(&mut src).await, SourceEvent::Begin(_)));
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;

    let mut sum = 0i64;
    let mut changes = 0;
    loop {
        match next(&mut src).await {
            SourceEvent::Change(c) => {
                let RowChange::Insert { new } = c.row else {
                    panic!("{c:?}")
                };
                let Some(Cell::Value(Value::Int(id))) = new.get(0) else {
                    panic!("{new:?}")
                };
                sum += id;
                changes += 1;
            }
            SourceEvent::Commit(_) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(changes, ROWS);
    assert_eq!(sum, i64::from(ROWS) * i64::from(ROWS + 1) / 2);
    assert_eq!(
        sender_pid().await,
        before,
        "the same WAL sender streamed on"
    );
    // And the stream is still live: a later transaction arrives.
    pg.psql(&db.name, "INSERT INTO t VALUES (0)").await.unwrap();
    let tx = transaction(&mut src).await;
    assert!(matches!(tx.last(), Some(SourceEvent::Commit(_))), "{tx:?}");
    src.shutdown().await.unwrap();
}

#[tokio::test]
async fn source_missing_slot_on_resume_and_busy_slot_are_definite_errors() {
    let pg = shared_pg().await;
    let db = pg.create_database("src_slot").await.unwrap();
    pg.psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let ep = endpoint(&db);
    let mut src = PgSource::start(&ep, None, &[table("t")], None)
        .await
        .unwrap();

    // A second reader of the same slot is told who holds it.
    let err = PgSource::start(&ep, None, &[table("t")], None)
        .await
        .err()
        .expect("second reader refused");
    assert_eq!(err.class(), ErrorClass::Definite);
    assert!(err.to_string().contains("PID"), "{err}");
    src.shutdown().await.unwrap();

    // Dropped behind tandem's back while a checkpoint exists.
    pg.psql(
        &db.name,
        &format!("SELECT pg_drop_replication_slot('{}')", db.name),
    )
    .await
    .unwrap();
    let checkpoint = Position::PgLsn {
        lsn: tandem_core::Lsn(0x0100_0000),
    };
    let err = PgSource::start(&ep, None, &[table("t")], Some(&checkpoint))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.class(), ErrorClass::Definite, "{}", err.report());
    assert!(err.to_string().contains("does not exist"), "{err}");
}
