//! The PostgreSQL sink against a real server: what it writes is what a DBA reads back,
//! atomically with the checkpoint, tagged with tandem's origin.
#![allow(clippy::unwrap_used)]

mod sink_support;

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{NaiveDate, TimeZone, Utc};
use sink_support::{client, database, sink, target};
use tandem_core::sink::{ConflictRecord, DeadLetter, RowWrite, Sink};
use tandem_core::{Lsn, Position, Value};
use tandem_testkit::shared_pg;

const ALL_TYPES: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE every_type (
  id bigint PRIMARY KEY,
  b boolean, i2 smallint, i4 integer, n numeric(12,2), nn numeric, f4 real, f8 double precision,
  t text, vc varchar(10), c char(5), by bytea, d date, tm time, ts timestamp, tstz timestamptz,
  j jsonb, js json, u uuid, e mood);";

fn dec(s: &str) -> Value {
    Value::Decimal(BigDecimal::from_str(s).unwrap())
}

fn full_row(id: i64) -> Vec<Value> {
    let day = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
    vec![
        Value::Int(id),
        Value::Bool(true),
        Value::Int(-32768),
        Value::Int(2_147_483_647),
        dec("1234567890.12"),
        dec("-0.000000000000000000001"),
        Value::Float(1.5),
        Value::Float(0.1),
        Value::Text("tab\there, quote ' and \\ backslash, ünïcode".into()),
        Value::Text("ten chars!".into()),
        Value::Text("abcde".into()),
        Value::Bytes(vec![0, 1, 0xfe, 0xff, b'\\']),
        Value::Date(day),
        Value::Time(day.and_hms_micro_opt(23, 59, 59, 999_999).unwrap().time()),
        Value::Timestamp(day.and_hms_micro_opt(12, 0, 0, 1).unwrap()),
        Value::TimestampTz(Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap()),
        Value::Json(r#"{"a": [1, 2.5, "x"], "b": null}"#.into()),
        Value::Json(r#"{"keep":  "spacing"}"#.into()),
        Value::Uuid(uuid::Uuid::from_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap()),
        Value::Text("happy".into()),
    ]
}

fn assert_same(got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.same_as(w), "column {i}: read back {g:?}, wrote {w:?}");
    }
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
}

#[tokio::test]
async fn every_type_family_round_trips_through_insert_update_delete() {
    let pg = shared_pg().await;
    let db = database(pg, "sink_types", ALL_TYPES).await;
    let table = target(&db, "every_type").await;
    let mut sink = sink(&db).await;

    let row = full_row(1);
    let mut nulls = vec![Value::Null; row.len()];
    nulls[0] = Value::Int(2);
    sink.begin().await.unwrap();
    let writes = vec![
        RowWrite::Insert {
            values: row.clone(),
        },
        RowWrite::Insert {
            values: nulls.clone(),
        },
    ];
    sink.write(&table, &writes).await.unwrap();
    sink.commit("p", &Position::PgLsn { lsn: Lsn(1) }, at())
        .await
        .unwrap();

    sink.begin().await.unwrap();
    let got = sink
        .fetch_current(&table, &[vec![Value::Int(1)], vec![Value::Int(2)]])
        .await
        .unwrap();
    assert_same(got[0].as_ref().expect("row 1"), &row);
    assert_same(got[1].as_ref().expect("row 2"), &nulls);
    // A DBA reading the table sees the values, not their text.
    let c = client(&db).await;
    let r = c
        .query_one(
            "SELECT n::text, by, tstz::text, e::text FROM every_type WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "1234567890.12");
    assert_eq!(r.get::<_, Vec<u8>>(1), vec![0, 1, 0xfe, 0xff, b'\\']);
    assert_eq!(r.get::<_, String>(2), "1999-12-31 23:59:59+00");
    assert_eq!(r.get::<_, String>(3), "happy");

    // Update a few columns of row 1 and every column of row 2; delete nothing yet.
    let writes = vec![
        RowWrite::Update {
            key: vec![Value::Int(1)],
            columns: vec![(4, dec("-0.01")), (19, Value::Text("sad".into()))],
        },
        RowWrite::Update {
            key: vec![Value::Int(2)],
            columns: row.iter().cloned().enumerate().skip(1).collect(),
        },
    ];
    sink.write(&table, &writes).await.unwrap();
    let got = sink
        .fetch_current(&table, &[vec![Value::Int(1)], vec![Value::Int(2)]])
        .await
        .unwrap();
    let mut want1 = row.clone();
    want1[4] = dec("-0.01");
    want1[19] = Value::Text("sad".into());
    assert_same(got[0].as_ref().unwrap(), &want1);
    let mut want2 = row.clone();
    want2[0] = Value::Int(2);
    assert_same(got[1].as_ref().unwrap(), &want2);

    sink.write(
        &table,
        &[RowWrite::Delete {
            key: vec![Value::Int(1)],
        }],
    )
    .await
    .unwrap();
    let got = sink
        .fetch_current(&table, &[vec![Value::Int(1)], vec![Value::Int(2)]])
        .await
        .unwrap();
    assert!(got[0].is_none(), "deleted row still there");
    assert!(got[1].is_some());
    sink.commit("p", &Position::PgLsn { lsn: Lsn(2) }, at())
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM every_type", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn rollback_leaves_neither_rows_nor_checkpoint_and_commit_writes_both() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "sink_atomic",
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
    )
    .await;
    let table = target(&db, "t").await;
    let mut sink = sink(&db).await;
    let c = client(&db).await;
    let pos = Position::from_checkpoint_text(
        &Position::PgLsn {
            lsn: Lsn(0x16_B374_D848),
        }
        .to_checkpoint_text(),
    )
    .unwrap();

    sink.begin().await.unwrap();
    sink.write(
        &table,
        &[RowWrite::Insert {
            values: vec![Value::Int(1), Value::Text("a".into())],
        }],
    )
    .await
    .unwrap();
    sink.rollback().await.unwrap();
    assert_eq!(sink.checkpoint("inventory").await.unwrap(), None);
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    sink.begin().await.unwrap();
    sink.write(
        &table,
        &[RowWrite::Insert {
            values: vec![Value::Int(1), Value::Text("a".into())],
        }],
    )
    .await
    .unwrap();
    // Not visible to others before commit, checkpoint included.
    let n: i64 = c
        .query_one("SELECT count(*) FROM tandem.checkpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    sink.commit("inventory", &pos, at()).await.unwrap();
    assert_eq!(
        sink.checkpoint("inventory").await.unwrap(),
        Some(pos.clone())
    );
    let r = c.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(r.get::<_, i64>(0), 1);

    // A later commit moves the same row forward.
    let later = Position::PgLsn {
        lsn: Lsn(0x17_0000_0000),
    };
    sink.begin().await.unwrap();
    sink.commit("inventory", &later, at()).await.unwrap();
    assert_eq!(sink.checkpoint("inventory").await.unwrap(), Some(later));
    let n: i64 = c
        .query_one("SELECT count(*) FROM tandem.checkpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn fetch_current_finds_present_keys_only_with_a_composite_key() {
    let pg = shared_pg().await;
    let setup = "CREATE TABLE stock (store text, sku text, qty int, PRIMARY KEY (store, sku));
                 INSERT INTO stock VALUES ('north', 'A-1', 5), ('south', 'A-1', 7), ('north', 'B''2', NULL);";
    let db = database(pg, "sink_fetch", setup).await;
    let table = target(&db, "stock").await;
    let mut sink = sink(&db).await;
    let k = |a: &str, b: &str| vec![Value::Text(a.into()), Value::Text(b.into())];
    sink.begin().await.unwrap();
    let got = sink
        .fetch_current(
            &table,
            &[
                k("south", "A-1"),
                k("east", "A-1"),
                k("north", "B'2"),
                k("north", "A-1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        got[0],
        Some(vec![
            Value::Text("south".into()),
            Value::Text("A-1".into()),
            Value::Int(7)
        ])
    );
    assert_eq!(got[1], None);
    assert_eq!(
        got[2],
        Some(vec![
            Value::Text("north".into()),
            Value::Text("B'2".into()),
            Value::Null
        ])
    );
    assert_eq!(got[3].as_ref().map(|r| r[2].clone()), Some(Value::Int(5)));
    sink.rollback().await.unwrap();
}

#[tokio::test]
async fn repeated_keys_in_one_batch_apply_in_order() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "sink_order",
        "CREATE TABLE t (id int PRIMARY KEY, v int)",
    )
    .await;
    let table = target(&db, "t").await;
    let mut sink = sink(&db).await;
    let ins = |id, v| RowWrite::Insert {
        values: vec![Value::Int(id), Value::Int(v)],
    };
    let upd = |id, v| RowWrite::Update {
        key: vec![Value::Int(id)],
        columns: vec![(1, Value::Int(v))],
    };
    let del = |id| RowWrite::Delete {
        key: vec![Value::Int(id)],
    };
    let writes = vec![
        ins(1, 1),
        ins(2, 1),
        upd(1, 2),
        upd(1, 3),
        del(2),
        ins(2, 9),
        del(1),
        ins(3, 1),
        upd(3, 4),
    ];
    sink.begin().await.unwrap();
    sink.write(&table, &writes).await.unwrap();
    sink.commit("p", &Position::PgLsn { lsn: Lsn(1) }, at())
        .await
        .unwrap();
    let c = client(&db).await;
    let rows: Vec<(i32, i32)> = c
        .query("SELECT id, v FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![(2, 9), (3, 4)]);
}

#[tokio::test]
async fn large_insert_batches_through_copy_keep_every_character() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "sink_copy",
        "CREATE TABLE t (id int PRIMARY KEY, v text, b bytea, n numeric(6,2))",
    )
    .await;
    let table = target(&db, "t").await;
    let mut sink = sink(&db).await;
    sink.set_copy_threshold(10);
    let text = |i: i64| match i % 4 {
        0 => Value::Text(format!("tab\t newline\n cr\r backslash\\ {i}")),
        1 => Value::Null,
        2 => Value::Text("\\N".into()),
        _ => Value::Text(String::new()),
    };
    let writes: Vec<RowWrite> = (0..50)
        .map(|i| RowWrite::Insert {
            values: vec![
                Value::Int(i),
                text(i),
                Value::Bytes(vec![9, 10, 92]),
                dec("1.25"),
            ],
        })
        .collect();
    sink.begin().await.unwrap();
    sink.write(&table, &writes).await.unwrap();
    // Twice in one transaction: the second batch finds every key taken and must not
    // overwrite them; the applier retries and merges instead.
    let again = sink.write(&table, &writes).await.unwrap_err();
    assert!(
        again.to_string().contains("0 of 50 rows inserted"),
        "{again}"
    );
    let keys: Vec<Vec<Value>> = (0..50).map(|i| vec![Value::Int(i)]).collect();
    let got = sink.fetch_current(&table, &keys).await.unwrap();
    sink.commit("p", &Position::PgLsn { lsn: Lsn(1) }, at())
        .await
        .unwrap();
    for (i, (row, w)) in got.iter().zip(&writes).enumerate() {
        let RowWrite::Insert { values } = w else {
            unreachable!()
        };
        assert_same(
            row.as_ref().unwrap_or_else(|| panic!("row {i} missing")),
            values,
        );
    }
    // The staging table went with the transaction.
    let c = client(&db).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 50);
}

#[tokio::test]
async fn writes_carry_tandems_origin_and_are_skipped_by_an_origin_filter() {
    let pg = shared_pg().await;
    let db = database(
        pg,
        "sink_origin",
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
    )
    .await;
    let table = target(&db, "t").await;
    let mut sink = sink(&db).await;
    let on: bool = sink
        .client()
        .query_one("SELECT pg_replication_origin_session_is_setup()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(on, "the applying session is not bound to an origin");

    let c = client(&db).await;
    c.execute(
        "SELECT pg_create_logical_replication_slot('origin_probe', 'test_decoding')",
        &[],
    )
    .await
    .unwrap();
    sink.begin().await.unwrap();
    sink.write(
        &table,
        &[RowWrite::Insert {
            values: vec![Value::Int(1), Value::Text("from tandem".into())],
        }],
    )
    .await
    .unwrap();
    sink.commit("p", &Position::PgLsn { lsn: Lsn(1) }, at())
        .await
        .unwrap();
    c.execute("INSERT INTO t VALUES (2, 'from an application')", &[])
        .await
        .unwrap();

    // test_decoding's only-local skips changes that carry an origin, as tandem's reader does.
    let changes = |only_local: &'static str| {
        let c = &c;
        async move {
            let rows = c
                .query(
                    "SELECT data FROM pg_logical_slot_peek_changes('origin_probe', NULL, NULL, 'only-local', $1)
                     WHERE data LIKE 'table public.t:%'",
                    &[&only_local],
                )
                .await
                .unwrap();
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    let all = changes("0").await;
    assert_eq!(all.len(), 2, "{all:?}");
    let local = changes("1").await;
    assert_eq!(local.len(), 1, "{local:?}");
    assert!(local[0].contains("from an application"), "{local:?}");
    c.execute("SELECT pg_drop_replication_slot('origin_probe')", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn conflicts_and_dead_letters_are_recorded_with_the_transaction() {
    let pg = shared_pg().await;
    let db = database(pg, "sink_record", "").await;
    let mut sink = sink(&db).await;
    let conflict = ConflictRecord {
        mapping: "products".into(),
        kind: "update_differs".into(),
        strategy: "last_writer_wins".into(),
        decision: "applied".into(),
        key: serde_json::json!({"sku": "A-1"}),
        before: Some(serde_json::json!({"qty": 1})),
        after: Some(serde_json::json!({"qty": 2})),
        current: None,
        source_commit_time: Some(at()),
    };
    let dead = DeadLetter {
        mapping: "products".into(),
        key: serde_json::json!({"sku": "B-2"}),
        change: serde_json::json!({"insert": {"qty": -1}}),
        reason: "violates qty_positive".into(),
        source_position: "gtid 0-1-5".into(),
    };
    sink.begin().await.unwrap();
    sink.record(std::slice::from_ref(&conflict), std::slice::from_ref(&dead))
        .await
        .unwrap();
    sink.rollback().await.unwrap();
    let c = client(&db).await;
    let count = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM tandem.conflicts").await, 0);

    sink.begin().await.unwrap();
    sink.record(&[conflict.clone(), conflict], &[dead])
        .await
        .unwrap();
    sink.commit("p", &Position::PgLsn { lsn: Lsn(1) }, at())
        .await
        .unwrap();
    assert_eq!(
        count(
            "SELECT count(*) FROM tandem.conflicts WHERE key->>'sku' = 'A-1' AND current IS NULL"
        )
        .await,
        2
    );
    let r = c
        .query_one(
            "SELECT reason, change->'insert'->>'qty', source_position FROM tandem.dead_letters",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "violates qty_positive");
    assert_eq!(r.get::<_, String>(1), "-1");
    assert_eq!(r.get::<_, String>(2), "gtid 0-1-5");
}

/// A sink started on a small table keeps finding current rows through the key's index once
/// the table has grown, instead of scanning it whole for every batch (which made the
/// retail→inventory direction fall behind a steady stream; see the sink's "Plans" docs).
/// Autovacuum is off for the table so no ANALYZE can rescue a stale plan.
#[tokio::test]
async fn fetch_current_uses_the_key_index_after_the_table_grew() {
    let pg = shared_pg().await;
    let setup = "CREATE TABLE ticks (id bigint PRIMARY KEY, payload text NOT NULL)
                 WITH (autovacuum_enabled = false);";
    let db = database(pg, "sink_plan", setup).await;
    let table = target(&db, "ticks").await;
    let mut sink = sink(&db).await;
    // Enough small batches for PostgreSQL to settle on a plan for the tiny table.
    for batch in 0..8i64 {
        let ids: Vec<i64> = (batch * 100..batch * 100 + 100).collect();
        let keys: Vec<Vec<Value>> = ids.iter().map(|&i| vec![Value::Int(i)]).collect();
        sink.begin().await.unwrap();
        let current = sink.fetch_current(&table, &keys).await.unwrap();
        assert!(current.iter().all(Option::is_none));
        let writes: Vec<RowWrite> = ids
            .iter()
            .map(|&i| RowWrite::Insert {
                values: vec![Value::Int(i), Value::Text("x".into())],
            })
            .collect();
        sink.write(&table, &writes).await.unwrap();
        let pos = Position::PgLsn {
            lsn: Lsn(u64::try_from(batch + 1).unwrap()),
        };
        sink.commit("plan-test", &pos, at()).await.unwrap();
    }
    client(&db)
        .await
        .batch_execute("INSERT INTO ticks SELECT g, 'y' FROM generate_series(1000, 60999) g")
        .await
        .unwrap();
    // The counter includes earlier transactions not yet flushed to the statistics: compare
    // before and after, inside one transaction (nothing is flushed during it).
    sink.begin().await.unwrap();
    let before = seq_scans(sink.client()).await;
    let keys: Vec<Vec<Value>> = (30_000..30_100).map(|i| vec![Value::Int(i)]).collect();
    let current = sink.fetch_current(&table, &keys).await.unwrap();
    assert!(current.iter().all(Option::is_some));
    let scans = seq_scans(sink.client()).await - before;
    sink.rollback().await.unwrap();
    assert_eq!(scans, 0, "reading 100 current rows scanned the whole table");
}

/// A large batch against a large table (2,000 keys, 200,000 rows, never analysed) is
/// also read and updated through the key's index: PostgreSQL's default costs prefer a
/// sequential scan and hash join there, which cost 17x the index probes in the throughput
/// benchmark (see the sink's "Plans" docs).
#[tokio::test]
async fn large_batches_use_the_key_index_too() {
    let pg = shared_pg().await;
    let setup = "CREATE TABLE ticks (id bigint PRIMARY KEY, payload text NOT NULL)
                 WITH (autovacuum_enabled = false);
                 INSERT INTO ticks SELECT g, 'y' FROM generate_series(1, 200000) g;";
    let db = database(pg, "sink_plan_large", setup).await;
    let table = target(&db, "ticks").await;
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    let before = seq_scans(sink.client()).await;
    let ids: Vec<i64> = (0..2_000).map(|i| 1 + i * 97).collect();
    let keys: Vec<Vec<Value>> = ids.iter().map(|&i| vec![Value::Int(i)]).collect();
    let current = sink.fetch_current(&table, &keys).await.unwrap();
    assert!(current.iter().all(Option::is_some));
    let writes: Vec<RowWrite> = ids
        .iter()
        .map(|&i| RowWrite::Update {
            key: vec![Value::Int(i)],
            columns: vec![(1, Value::Text("z".into()))],
        })
        .collect();
    sink.write(&table, &writes).await.unwrap();
    let scans = seq_scans(sink.client()).await - before;
    sink.rollback().await.unwrap();
    assert_eq!(scans, 0, "a 2,000-key batch scanned the whole table");
}

/// Sequential scans of `ticks` counted in this session, flushed or not.
async fn seq_scans(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(seq_scan), 0)::bigint FROM pg_stat_xact_user_tables WHERE relname = 'ticks'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// `write_if_unchanged`: a write applies exactly where the row holds what it expects
/// (compared as the resolver compares: numeric by value, text byte for byte, NULL equal to
/// NULL, json by its text), and every other row is reported and left as it was.
#[tokio::test]
async fn checked_writes_apply_only_where_the_row_is_as_expected() {
    use tandem_core::sink::CheckedWrite;
    let pg = shared_pg().await;
    let db = database(
        pg,
        "sink_checked",
        "CREATE TABLE c (id int PRIMARY KEY, name text, price numeric(10,2), note text,
           at timestamptz, doc json);
         INSERT INTO c SELECT g, 'abc', 1.50, NULL, '2026-01-01 00:00:00.000001+00', '{\"a\": 1}'
           FROM generate_series(1, 8) g;",
    )
    .await;
    let table = target(&db, "c").await;
    let mut sink = sink(&db).await;
    let c = client(&db).await;
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::microseconds(1);
    let key = |id: i64| vec![Value::Int(id)];
    let whole = |id: i64| {
        vec![
            (0, Value::Int(id)),
            (1, Value::Text("abc".into())),
            (2, dec("1.5")),
            (3, Value::Null),
            (4, Value::TimestampTz(at)),
            (5, Value::Json("{\"a\": 1}".into())),
        ]
    };
    let writes = vec![
        // 0: holds (1.5 is 1.50 by value), sets the name.
        CheckedWrite::Update {
            key: key(1),
            expect: vec![(2, dec("1.500")), (3, Value::Null)],
            columns: vec![(1, Value::Text("one".into()))],
        },
        // 1: differs by case only: not the same text.
        CheckedWrite::Update {
            key: key(2),
            expect: vec![(1, Value::Text("ABC".into()))],
            columns: vec![(1, Value::Text("two".into()))],
        },
        // 2: a whole before-image that holds: deleted.
        CheckedWrite::Delete {
            key: key(3),
            expect: whole(3),
        },
        // 3: the timestamp is a microsecond off: kept.
        CheckedWrite::Delete {
            key: key(4),
            expect: vec![(
                4,
                Value::TimestampTz(at - chrono::Duration::microseconds(1)),
            )],
        },
        // 4: json spelled differently: kept (its text differs).
        CheckedWrite::Delete {
            key: key(5),
            expect: vec![(5, Value::Json("{\"a\":1}".into()))],
        },
        // 5: an existing key: not inserted.
        CheckedWrite::Insert {
            values: vec![
                Value::Int(6),
                Value::Text("new".into()),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        },
        // 6: a new key: inserted.
        CheckedWrite::Insert {
            values: vec![
                Value::Int(20),
                Value::Text("new".into()),
                dec("2"),
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        },
        // 7: a missing row: nothing to update.
        CheckedWrite::Update {
            key: key(99),
            expect: vec![(1, Value::Text("abc".into()))],
            columns: vec![(1, Value::Text("x".into()))],
        },
        // 8–11: checks that write nothing: a row expected absent but there, one absent,
        // one there as expected, one expected but absent.
        CheckedWrite::Check {
            key: key(7),
            expect: None,
        },
        CheckedWrite::Check {
            key: key(50),
            expect: None,
        },
        CheckedWrite::Check {
            key: key(8),
            expect: Some(vec![(1, Value::Text("abc".into()))]),
        },
        CheckedWrite::Check {
            key: key(60),
            expect: Some(vec![]),
        },
    ];
    sink.begin().await.unwrap();
    let unapplied = sink
        .write_if_unchanged(&table, writes)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(unapplied, vec![1, 3, 4, 5, 7, 8, 11]);
    sink.commit("p", &Position::PgLsn { lsn: Lsn(5) }, at)
        .await
        .unwrap();
    let rows: Vec<(i32, String)> = c
        .query("SELECT id, name FROM c ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(i32, String)> = [
        (1, "one"),
        (2, "abc"),
        (4, "abc"),
        (5, "abc"),
        (6, "abc"),
        (7, "abc"),
        (8, "abc"),
        (20, "new"),
    ]
    .iter()
    .map(|(i, n)| (*i, n.to_string()))
    .collect();
    assert_eq!(rows, expected);
}
