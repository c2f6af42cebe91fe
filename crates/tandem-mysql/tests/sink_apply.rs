//! MySqlSink against a real MariaDB from the test kit: every type family round-trips, the
//! extremes survive, checkpoints commit with the rows, bad values fail with the column's
//! name, and both loop-prevention modes tag what they write.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tandem_core::config::catalog::Catalog;
use tandem_core::config::{EndpointConfig, EndpointKind, LoopPrevention, TlsConfig};
use tandem_core::position::{GtidSet, Position};
use tandem_core::sink::{ConflictRecord, DeadLetter, RowWrite, Sink, TargetTable};
use tandem_core::{ErrorClass, TableId, Value};
use tandem_mysql::catalog::MySqlCatalog;
use tandem_mysql::connect::connect;
use tandem_mysql::sink::{AppliedLoopPrevention, MySqlSink};
use tandem_testkit::{shared_maria, TestDb};

fn endpoint(url: &str, loop_prevention: LoopPrevention) -> EndpointConfig {
    EndpointConfig {
        kind: EndpointKind::Mysql,
        url: url.to_owned(),
        password: None,
        tls: TlsConfig::default(),
        slot: None,
        publication: None,
        origin: None,
        server_id: None,
        loop_prevention,
        xa_held_rows: None,
    }
}

async fn setup(prefix: &str, ddl: &str) -> (TestDb, Conn) {
    let maria = shared_maria().await;
    let db = maria
        .create_database(prefix)
        .await
        .expect("create database");
    maria.sql(&db.name, ddl).await.expect("create tables");
    let conn = connect(&endpoint(db.url(), LoopPrevention::Auto), None)
        .await
        .expect("connect");
    (db, conn)
}

async fn sink(db: &TestDb, mode: LoopPrevention) -> MySqlSink {
    MySqlSink::connect(&endpoint(db.url(), mode), None)
        .await
        .expect("sink")
}

async fn target(conn: &mut Conn, db: &TestDb, table: &str) -> TargetTable {
    let cat = MySqlCatalog::load(conn, &db.name).await.expect("catalog");
    let t = cat
        .table(&TableId::new(&db.name, table))
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

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("timestamp literal")
}

fn pos(seq: u64) -> Position {
    let mut g = GtidSet::mariadb();
    g.record_mariadb(0, 1, seq).expect("gtid");
    Position::MySqlGtid {
        gtid: g,
        file: None,
        pos: None,
    }
}

const ALL_TYPES: &str = "CREATE TABLE t (
    id int PRIMARY KEY,
    b tinyint(1), ti tinyint, tu tinyint unsigned, si smallint, mi mediumint unsigned,
    i int, bi bigint, bu bigint unsigned,
    f float, d double, dec_big decimal(65,30), dec_money decimal(10,2),
    vc varchar(50), tx text, ch char(10), vb varbinary(64), bl blob,
    dt date, tm time(6), dtt datetime(6), tsz timestamp(6) NULL DEFAULT NULL,
    js json, en enum('a','b c')
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;";

fn typical_row() -> Vec<Value> {
    vec![
        Value::Int(1),
        Value::Bool(true),
        Value::Int(-5),
        Value::Int(200),
        Value::Int(-32768),
        Value::Int(16_777_215),
        Value::Int(123_456),
        Value::Int(-9_000_000_000),
        Value::Int(42),
        Value::Float(1.5),
        Value::Float(0.1),
        Value::Decimal(BigDecimal::from_str("12.345").expect("dec")),
        Value::Decimal(BigDecimal::from_str("19.99").expect("dec")),
        Value::Text("héllo".into()),
        Value::Text("long text".into()),
        Value::Text("fixed".into()),
        Value::Bytes(vec![1, 2, 3]),
        Value::Bytes(b"blob".to_vec()),
        Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).expect("date")),
        Value::Time(NaiveTime::from_hms_micro_opt(13, 14, 15, 123_456).expect("time")),
        Value::Timestamp(ts("2024-06-01 12:00:00.5")),
        Value::TimestampTz(ts("2024-06-01 12:00:00.000001").and_utc()),
        Value::Json(r#"{"a": [1, 2, {"b": null}]}"#.into()),
        Value::Text("b c".into()),
    ]
}

fn extreme_row() -> Vec<Value> {
    let max_dec = "99999999999999999999999999999999999.999999999999999999999999999999";
    vec![
        Value::Int(2),
        Value::Bool(false),
        Value::Int(-128),
        Value::Int(255),
        Value::Int(32767),
        Value::Int(0),
        Value::Int(i64::from(i32::MIN)),
        Value::Int(i64::MIN),
        Value::UInt(u64::MAX),
        Value::Float(f64::from(f32::MIN)),
        Value::Float(f64::MAX),
        Value::Decimal(BigDecimal::from_str(&format!("-{max_dec}")).expect("dec")),
        Value::Decimal(BigDecimal::from_str("-99999999.99").expect("dec")),
        Value::Text("emoji 🦀 and 中文 and 'quotes' \\ backslash".into()),
        Value::Text("\u{0}nul inside\u{0}".into()),
        Value::Text("".into()),
        Value::Bytes(vec![0, 0, 255, 0, 10, 13, 0x5c, 0x27, 0]),
        Value::Bytes(vec![0; 1000]),
        Value::Date(NaiveDate::from_ymd_opt(1000, 1, 1).expect("date")),
        Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("time")),
        Value::Timestamp(ts("9999-12-31 23:59:59.999999")),
        Value::TimestampTz(ts("2038-01-19 03:14:07.999999").and_utc()),
        Value::Json("[]".into()),
        Value::Text("a".into()),
    ]
}

fn null_row() -> Vec<Value> {
    let mut v = vec![Value::Null; 24];
    v[0] = Value::Int(3);
    v
}

fn assert_rows_equal(
    expected: &[Value],
    got: &[Value],
    names: &[(String, tandem_core::ColumnType)],
) {
    assert_eq!(expected.len(), got.len());
    for ((e, g), (name, _)) in expected.iter().zip(got).zip(names) {
        assert!(e.same_as(g), "column {name}: wrote {e:?}, read back {g:?}");
    }
}

#[tokio::test]
async fn every_type_family_and_the_extremes_round_trip() {
    let (db, mut conn) = setup("sink_types", ALL_TYPES).await;
    let t = target(&mut conn, &db, "t").await;
    assert_eq!(t.key, vec![0]);
    assert_eq!(
        t.columns.iter().find(|c| c.0 == "js").map(|c| &c.1),
        Some(&tandem_core::ColumnType::Json)
    );
    let mut s = sink(&db, LoopPrevention::Auto).await;
    assert_eq!(
        s.loop_prevention(),
        AppliedLoopPrevention::SkipReplication,
        "auto picks it on MariaDB"
    );
    let rows = [typical_row(), extreme_row(), null_row()];
    s.begin().await.expect("begin");
    let writes: Vec<RowWrite> = rows
        .iter()
        .map(|r| RowWrite::Insert { values: r.clone() })
        .collect();
    s.write(&t, &writes).await.expect("write");
    s.commit("retail", &pos(1), Utc::now())
        .await
        .expect("commit");

    s.begin().await.expect("begin");
    let keys = vec![
        vec![Value::Int(2)],
        vec![Value::Int(99)],
        vec![Value::Int(1)],
        vec![Value::Int(3)],
    ];
    let got = s.fetch_current(&t, &keys).await.expect("fetch");
    s.rollback().await.expect("rollback");
    assert_eq!(got.len(), 4);
    assert!(got[1].is_none(), "key 99 does not exist");
    assert_rows_equal(&rows[1], got[0].as_ref().expect("row 2"), &t.columns);
    assert_rows_equal(&rows[0], got[2].as_ref().expect("row 1"), &t.columns);
    assert_rows_equal(&rows[2], got[3].as_ref().expect("row 3"), &t.columns);

    // The server holds the exact text, not something the driver rounded.
    let text: Option<String> = conn
        .query_first("SELECT CONCAT(dec_big, '|', bu, '|', HEX(vb)) FROM t WHERE id = 2")
        .await
        .expect("q");
    assert_eq!(
        text.as_deref(),
        Some("-99999999999999999999999999999999999.999999999999999999999999999999|18446744073709551615|0000FF000A0D5C2700")
    );
}

#[tokio::test]
async fn updates_set_only_their_columns_and_writes_apply_in_order() {
    let (db, mut conn) = setup(
        "sink_updates",
        "CREATE TABLE p (a int, b varchar(10), title varchar(50), qty int NOT NULL, note text,
           PRIMARY KEY (a, b)) ENGINE=InnoDB;",
    )
    .await;
    let t = target(&mut conn, &db, "p").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    let row = |a: i64, b: &str, title: &str, qty: i64| RowWrite::Insert {
        values: vec![
            Value::Int(a),
            Value::Text(b.into()),
            Value::Text(title.into()),
            Value::Int(qty),
            Value::Null,
        ],
    };
    let key = |a: i64, b: &str| vec![Value::Int(a), Value::Text(b.into())];
    s.begin().await.expect("begin");
    let mut writes: Vec<RowWrite> = (0..300).map(|i| row(i, "x", "t", i)).collect();
    writes.push(RowWrite::Update {
        key: key(1, "x"),
        columns: vec![(3, Value::Int(1000))],
    });
    writes.push(RowWrite::Update {
        key: key(2, "x"),
        columns: vec![(3, Value::Int(2000))],
    });
    // Same key again in one batch: the later update must win.
    writes.push(RowWrite::Update {
        key: key(1, "x"),
        columns: vec![(3, Value::Int(1001))],
    });
    writes.push(RowWrite::Update {
        key: key(5, "x"),
        columns: vec![(2, Value::Text("new".into())), (4, Value::Text("n".into()))],
    });
    // An update of a key that does not exist creates nothing.
    writes.push(RowWrite::Update {
        key: key(999, "x"),
        columns: vec![(3, Value::Int(1))],
    });
    writes.push(RowWrite::Delete { key: key(7, "x") });
    writes.push(row(7, "x", "back", 77));
    writes.push(RowWrite::Delete { key: key(8, "x") });
    writes.push(RowWrite::Delete { key: key(9, "x") });
    s.write(&t, &writes).await.expect("write");
    s.commit("retail", &pos(2), Utc::now())
        .await
        .expect("commit");

    let rows: Vec<(i64, String, i64, Option<String>)> = conn
        .query("SELECT a, title, qty, note FROM p WHERE a IN (1, 2, 5, 7, 8, 999) ORDER BY a")
        .await
        .expect("q");
    assert_eq!(
        rows,
        vec![
            (1, "t".into(), 1001, None),
            (2, "t".into(), 2000, None),
            (5, "new".into(), 5, Some("n".into())),
            (7, "back".into(), 77, None),
        ]
    );
    let count: Option<i64> = conn.query_first("SELECT COUNT(*) FROM p").await.expect("q");
    assert_eq!(count, Some(298));
}

#[tokio::test]
async fn fetch_current_answers_each_key_in_order_in_one_batch() {
    let (db, mut conn) = setup(
        "sink_fetch",
        "CREATE TABLE k (a int, b varchar(10), v int, PRIMARY KEY (a, b)) ENGINE=InnoDB;
         INSERT INTO k VALUES (1, 'x', 10), (1, 'y', 11), (2, 'x', 20);",
    )
    .await;
    let t = target(&mut conn, &db, "k").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    let key = |a: i64, b: &str| vec![Value::Int(a), Value::Text(b.into())];
    s.begin().await.expect("begin");
    let keys = vec![
        key(2, "x"),
        key(1, "z"),
        key(1, "x"),
        key(2, "x"),
        key(3, "x"),
    ];
    let got = s.fetch_current(&t, &keys).await.expect("fetch");
    let v: Vec<Option<Value>> = got
        .iter()
        .map(|r| r.as_ref().map(|r| r[2].clone()))
        .collect();
    assert_eq!(
        v,
        vec![
            Some(Value::Int(20)),
            None,
            Some(Value::Int(10)),
            Some(Value::Int(20)),
            None
        ]
    );

    // The rows are locked until the sink's transaction ends.
    let mut other = connect(&endpoint(db.url(), LoopPrevention::Auto), None)
        .await
        .expect("connect");
    other
        .query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .expect("set");
    let blocked = other
        .query_drop("UPDATE k SET v = 0 WHERE a = 1 AND b = 'x'")
        .await;
    assert!(
        matches!(blocked, Err(mysql_async::Error::Server(ref e)) if e.code == 1205),
        "{blocked:?}"
    );
    s.rollback().await.expect("rollback");
    other
        .query_drop("UPDATE k SET v = 0 WHERE a = 1 AND b = 'x'")
        .await
        .expect("unlocked after rollback");
}

/// A row answers a key its collation equates with its own ('abc' for 'ABC') only when the
/// batch does not also ask for its own key: under a binary collation both rows exist and
/// each key gets its own; under a case-insensitive one the row belongs to its own key, so
/// that a case-only rename (delete 'abc', insert 'ABC') reads 'ABC' as absent.
#[tokio::test]
async fn fetch_current_gives_a_row_to_its_own_key_before_an_equated_one() {
    let (db, mut conn) = setup(
        "sink_fetch_ci",
        "CREATE TABLE bin (k varchar(10) COLLATE utf8mb4_bin PRIMARY KEY, v int) ENGINE=InnoDB;
         INSERT INTO bin VALUES ('abc', 1), ('ABC', 2);
         CREATE TABLE ci (k varchar(10) COLLATE utf8mb4_general_ci PRIMARY KEY, v int) ENGINE=InnoDB;
         INSERT INTO ci VALUES ('abc', 1);",
    )
    .await;
    let text = |s: &str| vec![Value::Text(s.into())];
    let v = |rows: Vec<Option<Vec<Value>>>| -> Vec<Option<Value>> {
        rows.into_iter().map(|r| r.map(|r| r[1].clone())).collect()
    };
    let mut s = sink(&db, LoopPrevention::Auto).await;
    s.begin().await.expect("begin");
    let bin = target(&mut conn, &db, "bin").await;
    for keys in [
        vec![text("abc"), text("ABC")],
        vec![text("ABC"), text("abc")],
    ] {
        let got = v(s.fetch_current(&bin, &keys).await.expect("fetch"));
        let want: Vec<Option<Value>> = keys
            .iter()
            .map(|k| {
                Some(Value::Int(if k[0] == Value::Text("abc".into()) {
                    1
                } else {
                    2
                }))
            })
            .collect();
        assert_eq!(got, want, "{keys:?}");
    }
    let ci = target(&mut conn, &db, "ci").await;
    let got = v(s
        .fetch_current(&ci, &[text("abc"), text("ABC")])
        .await
        .expect("fetch"));
    assert_eq!(got, vec![Some(Value::Int(1)), None]);
    // Asked alone, the equated key still finds the row (the server's notion of the key).
    let got = v(s.fetch_current(&ci, &[text("ABC ")]).await.expect("fetch"));
    assert_eq!(got, vec![Some(Value::Int(1))]);
    s.rollback().await.expect("rollback");
}

#[tokio::test]
async fn checkpoint_commits_with_the_rows_or_not_at_all() {
    let (db, mut conn) = setup(
        "sink_ckpt",
        "CREATE TABLE c (id int PRIMARY KEY, v int) ENGINE=InnoDB;",
    )
    .await;
    let t = target(&mut conn, &db, "c").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    assert_eq!(
        s.checkpoint("retail->inventory").await.expect("checkpoint"),
        None
    );

    let commit_time = ts("2024-05-05 05:05:05.123456").and_utc();
    s.begin().await.expect("begin");
    s.write(
        &t,
        &[RowWrite::Insert {
            values: vec![Value::Int(1), Value::Int(1)],
        }],
    )
    .await
    .expect("write");
    s.commit("retail->inventory", &pos(10), commit_time)
        .await
        .expect("commit");
    assert_eq!(
        s.checkpoint("retail->inventory").await.expect("checkpoint"),
        Some(pos(10))
    );

    // A transaction rolled back leaves neither its rows nor a checkpoint.
    s.begin().await.expect("begin");
    s.write(
        &t,
        &[RowWrite::Insert {
            values: vec![Value::Int(2), Value::Int(2)],
        }],
    )
    .await
    .expect("write");
    s.rollback().await.expect("rollback");
    assert_eq!(
        s.checkpoint("retail->inventory").await.expect("checkpoint"),
        Some(pos(10))
    );

    // Until commit, another session sees neither the rows nor the new checkpoint.
    s.begin().await.expect("begin");
    s.write(
        &t,
        &[RowWrite::Insert {
            values: vec![Value::Int(3), Value::Int(3)],
        }],
    )
    .await
    .expect("write");
    let seen: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM c WHERE id = 3")
        .await
        .expect("q");
    assert_eq!(seen, Some(0));
    s.commit("retail->inventory", &pos(11), commit_time)
        .await
        .expect("commit");
    let seen: Vec<(i64, String, String)> = conn
        .query("SELECT (SELECT COUNT(*) FROM c), position, CAST(source_commit_time AS CHAR) FROM tandem_checkpoints")
        .await
        .expect("q");
    assert_eq!(
        seen,
        vec![(
            2,
            pos(11).to_checkpoint_text(),
            "2024-05-05 05:05:05.123456".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_value_the_column_cannot_hold_is_a_definite_error_naming_it() {
    let (db, mut conn) = setup(
        "sink_bad",
        "CREATE TABLE s (id int PRIMARY KEY, qty tinyint unsigned NOT NULL, code varchar(3)) ENGINE=InnoDB;",
    )
    .await;
    let t = target(&mut conn, &db, "s").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    let row = |id, qty, code: &str| RowWrite::Insert {
        values: vec![Value::Int(id), Value::Int(qty), Value::Text(code.into())],
    };

    s.begin().await.expect("begin");
    let err = s
        .write(&t, &[row(1, 5, "ok"), row(2, 300, "ok")])
        .await
        .expect_err("300 does not fit");
    assert_eq!(err.class(), ErrorClass::Definite);
    let msg = err.report();
    assert!(
        msg.contains("column qty") && msg.contains("write 1 of the batch") && msg.contains(".s"),
        "{msg}"
    );
    s.rollback().await.expect("rollback");

    s.begin().await.expect("begin");
    let err = s
        .write(&t, &[row(3, 1, "toolong")])
        .await
        .expect_err("too long");
    assert_eq!(err.class(), ErrorClass::Definite);
    assert!(err.report().contains("column code"), "{}", err.report());
    s.rollback().await.expect("rollback");

    s.begin().await.expect("begin");
    s.write(&t, &[row(4, 1, "a")]).await.expect("write");
    let err = s
        .write(
            &t,
            &[RowWrite::Update {
                key: vec![Value::Int(4)],
                columns: vec![(1, Value::Int(-1))],
            }],
        )
        .await
        .expect_err("negative into unsigned");
    assert!(err.report().contains("column qty"), "{}", err.report());
    s.rollback().await.expect("rollback");
    let count: Option<i64> = conn.query_first("SELECT COUNT(*) FROM s").await.expect("q");
    assert_eq!(
        count,
        Some(0),
        "nothing was stored, not even a clipped value"
    );
}

#[tokio::test]
async fn conflicts_and_dead_letters_are_recorded_in_the_transaction() {
    let (db, mut conn) = setup("sink_record", "SELECT 1;").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    let conflict = ConflictRecord {
        mapping: "products".into(),
        kind: "update_differs".into(),
        strategy: "delta".into(),
        decision: "merged".into(),
        key: serde_json::json!({"sku": "A-1"}),
        before: Some(serde_json::json!({"qty": 5})),
        after: Some(serde_json::json!({"qty": 3})),
        current: None,
        source_commit_time: Some(ts("2024-01-01 00:00:00.000001").and_utc()),
    };
    let dead = DeadLetter {
        mapping: "products".into(),
        key: serde_json::json!({"sku": "B-2"}),
        change: serde_json::json!({"insert": {"qty": 300}}),
        reason: "Column \"qty\": out of range".into(),
        source_position: "0-1-7".into(),
    };
    s.begin().await.expect("begin");
    s.record(&[conflict.clone(), conflict], &[dead])
        .await
        .expect("record");
    s.commit("inventory->retail", &pos(3), Utc::now())
        .await
        .expect("commit");
    let c: Vec<(String, String, Option<String>, String)> = conn
        .query("SELECT kind, JSON_EXTRACT(`key`, '$.sku'), `current`, CAST(source_commit_time AS CHAR) FROM tandem_conflicts")
        .await
        .expect("q");
    assert_eq!(c.len(), 2);
    assert_eq!(
        c[0],
        (
            "update_differs".into(),
            "\"A-1\"".into(),
            None,
            "2024-01-01 00:00:00.000001".into()
        )
    );
    let d: Option<(String, String)> = conn
        .query_first(
            "SELECT reason, JSON_EXTRACT(`change`, '$.insert.qty') FROM tandem_dead_letters",
        )
        .await
        .expect("q");
    assert_eq!(
        d,
        Some(("Column \"qty\": out of range".into(), "300".into()))
    );
}

/// Binlog events written between two positions of one file: (type, flags, table name of a
/// TABLE_MAP event).
async fn binlog_events(
    conn: &mut Conn,
    file: &str,
    from: u64,
    to: u64,
) -> Vec<(u8, u16, Option<String>)> {
    let dir: Option<String> = conn
        .query_first("SELECT @@log_bin_basename")
        .await
        .expect("q");
    let path = std::path::Path::new(&dir.expect("log_bin_basename")).with_file_name(file);
    let bytes = std::fs::read(&path).expect("read binlog");
    let mut out = Vec::new();
    let mut at = usize::try_from(from).expect("pos");
    let end = usize::try_from(to).expect("pos");
    while at + 19 <= end {
        let h = &bytes[at..at + 19];
        let kind = h[4];
        let size = u32::from_le_bytes([h[9], h[10], h[11], h[12]]) as usize;
        let flags = u16::from_le_bytes([h[17], h[18]]);
        let table = (kind == 19).then(|| {
            // TABLE_MAP post-header: table id (6), flags (2); then db and table names.
            let body = &bytes[at + 19..at + size];
            let db_len = body[8] as usize;
            let t = 8 + 1 + db_len + 1;
            let t_len = body[t] as usize;
            String::from_utf8_lossy(&body[t + 1..t + 1 + t_len]).into_owned()
        });
        out.push((kind, flags, table));
        at += size;
    }
    out
}

async fn master_pos(conn: &mut Conn) -> (String, u64) {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await.expect("q");
    let row = row.expect("binlog on");
    (
        row.get::<String, _>(0).expect("file"),
        row.get::<u64, _>(1).expect("pos"),
    )
}

const GTID_EVENT: u8 = 162;
const ROW_EVENTS: [u8; 6] = [23, 24, 25, 30, 31, 32];
const SKIP_REPLICATION_FLAG: u16 = 0x8000;

#[tokio::test]
async fn skip_replication_flags_every_event_the_applier_writes() {
    let (db, mut conn) = setup(
        "sink_skip",
        "CREATE TABLE l (id int PRIMARY KEY) ENGINE=InnoDB;",
    )
    .await;
    let t = target(&mut conn, &db, "l").await;
    let mut s = sink(&db, LoopPrevention::SkipReplication).await;
    assert_eq!(s.loop_prevention(), AppliedLoopPrevention::SkipReplication);
    let flag: Option<i64> = s
        .conn()
        .query_first("SELECT @@session.skip_replication")
        .await
        .expect("q");
    assert_eq!(flag, Some(1));

    let (file, before) = master_pos(&mut conn).await;
    s.begin().await.expect("begin");
    s.write(
        &t,
        &[RowWrite::Insert {
            values: vec![Value::Int(1)],
        }],
    )
    .await
    .expect("write");
    s.commit("p", &pos(1), Utc::now()).await.expect("commit");
    // An ordinary application write, for contrast.
    conn.query_drop("INSERT INTO l VALUES (2)")
        .await
        .expect("insert");
    let (file2, after) = master_pos(&mut conn).await;
    assert_eq!(file, file2, "no rotation during the test");

    let events = binlog_events(&mut conn, &file, before, after).await;
    let gtids: Vec<u16> = events
        .iter()
        .filter(|e| e.0 == GTID_EVENT)
        .map(|e| e.1)
        .collect();
    assert_eq!(gtids.len(), 2, "{events:?}");
    assert_ne!(
        gtids[0] & SKIP_REPLICATION_FLAG,
        0,
        "tandem's transaction is flagged"
    );
    assert_eq!(
        gtids[1] & SKIP_REPLICATION_FLAG,
        0,
        "the application's is not"
    );
    let row_flags: Vec<u16> = events
        .iter()
        .filter(|e| ROW_EVENTS.contains(&e.0))
        .map(|e| e.1)
        .collect();
    assert_eq!(
        row_flags.len(),
        3,
        "two row events of tandem's, one of the application's: {events:?}"
    );
    assert!(row_flags[..2]
        .iter()
        .all(|f| f & SKIP_REPLICATION_FLAG != 0));
    let markers: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM tandem_apply_marker")
        .await
        .expect("q");
    assert_eq!(markers, Some(0), "no marker rows in skip_replication mode");
}

#[tokio::test]
async fn marker_mode_writes_the_marker_first_in_every_transaction() {
    let (db, mut conn) = setup(
        "sink_marker",
        "CREATE TABLE l (id int PRIMARY KEY) ENGINE=InnoDB;",
    )
    .await;
    let t = target(&mut conn, &db, "l").await;
    let mut s = sink(&db, LoopPrevention::Marker).await;
    assert_eq!(s.loop_prevention(), AppliedLoopPrevention::Marker);
    let flag: Option<i64> = s
        .conn()
        .query_first("SELECT @@session.skip_replication")
        .await
        .expect("q");
    assert_eq!(flag, Some(0));

    let (file, before) = master_pos(&mut conn).await;
    for id in 1..=2 {
        s.begin().await.expect("begin");
        s.write(
            &t,
            &[RowWrite::Insert {
                values: vec![Value::Int(id)],
            }],
        )
        .await
        .expect("write");
        s.commit("p", &pos(id as u64), Utc::now())
            .await
            .expect("commit");
    }
    let (_, after) = master_pos(&mut conn).await;
    let txn: Option<i64> = conn
        .query_first("SELECT txn FROM tandem_apply_marker WHERE id = 1")
        .await
        .expect("q");
    assert_eq!(txn, Some(2), "one marker update per transaction");

    let events = binlog_events(&mut conn, &file, before, after).await;
    assert!(events.iter().all(|e| e.1 & SKIP_REPLICATION_FLAG == 0));
    // In each transaction, the first table touched is the marker.
    let mut first_tables = Vec::new();
    let mut expect_first = false;
    for (kind, _, table) in &events {
        if *kind == GTID_EVENT {
            expect_first = true;
        } else if let (19, Some(name)) = (*kind, table) {
            if expect_first {
                first_tables.push(name.clone());
                expect_first = false;
            }
        }
    }
    assert_eq!(
        first_tables,
        vec![
            "tandem_apply_marker".to_owned(),
            "tandem_apply_marker".to_owned()
        ],
        "{events:?}"
    );
}

#[tokio::test]
async fn updates_work_when_the_key_collation_differs_from_the_session() {
    let (db, mut conn) = setup(
        "sink_coll",
        "CREATE TABLE c (code varchar(10) COLLATE utf8mb4_unicode_ci PRIMARY KEY, n int)
           DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
         INSERT INTO c VALUES ('a', 1), ('B', 2), ('c', 3);",
    )
    .await;
    let t = target(&mut conn, &db, "c").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    let upd = |k: &str, n| RowWrite::Update {
        key: vec![Value::Text(k.into())],
        columns: vec![(1, Value::Int(n))],
    };
    for round in 0..2 {
        s.begin().await.expect("begin");
        s.write(&t, &[upd("a", 10 + round), upd("b", 20 + round)])
            .await
            .expect("write");
        s.commit("p", &pos(1), Utc::now()).await.expect("commit");
    }
    let rows: Vec<(String, i64)> = conn
        .query("SELECT code, n FROM c ORDER BY code")
        .await
        .expect("q");
    assert_eq!(
        rows,
        vec![("a".into(), 11), ("B".into(), 21), ("c".into(), 3)]
    );
    // A case-insensitive key finds its row whatever the case asked for.
    s.begin().await.expect("begin");
    let got = s
        .fetch_current(&t, &[vec![Value::Text("b".into())]])
        .await
        .expect("fetch");
    s.rollback().await.expect("rollback");
    assert_eq!(
        got[0].as_ref().map(|r| r[0].clone()),
        Some(Value::Text("B".into()))
    );
}

/// `Com_load` of the sink's session: how many `LOAD DATA` statements it ran.
async fn loads(s: &mut MySqlSink) -> u64 {
    let row: Option<(String, u64)> = s
        .conn()
        .query_first("SHOW SESSION STATUS LIKE 'Com_load'")
        .await
        .expect("status");
    row.map_or(0, |r| r.1)
}

#[tokio::test]
async fn load_data_round_trips_every_type_family_and_never_clips_or_overwrites() {
    let (db, mut conn) = setup("sink_load", ALL_TYPES).await;
    let t = target(&mut conn, &db, "t").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    s.set_load_data_min_rows(1);
    let mut tricky = typical_row();
    tricky[0] = Value::Int(4);
    tricky[13] = Value::Text("tab\there\nnewline\r\\N back\\slash 🦀".into());
    tricky[14] = Value::Text("\\".into());
    tricky[17] = Value::Bytes(b"\\N".to_vec());
    let rows = [typical_row(), extreme_row(), null_row(), tricky];
    let before = loads(&mut s).await;
    s.begin().await.expect("begin");
    let writes: Vec<RowWrite> = rows
        .iter()
        .map(|r| RowWrite::Insert { values: r.clone() })
        .collect();
    s.write(&t, &writes).await.expect("write");
    s.commit("retail", &pos(1), Utc::now())
        .await
        .expect("commit");
    assert_eq!(
        loads(&mut s).await,
        before + 1,
        "the rows went in by LOAD DATA"
    );

    s.begin().await.expect("begin");
    let keys: Vec<Vec<Value>> = (1..=4).map(|k| vec![Value::Int(k)]).collect();
    let got = s.fetch_current(&t, &keys).await.expect("fetch");
    s.rollback().await.expect("rollback");
    let by_id = |id: i64| {
        rows.iter()
            .find(|r| r[0].same_as(&Value::Int(id)))
            .expect("row")
    };
    for (i, g) in got.iter().enumerate() {
        let id = i as i64 + 1;
        assert_rows_equal(by_id(id), g.as_ref().expect("row read back"), &t.columns);
    }
    let nulls: Option<(Option<String>, Option<Vec<u8>>)> = conn
        .query_first("SELECT ch, bl FROM t WHERE id = 3")
        .await
        .expect("q");
    assert_eq!(nulls, Some((None, None)), "\\N is NULL, not text");
    let empty: Option<(Option<String>, Option<Vec<u8>>)> = conn
        .query_first("SELECT ch, bl FROM t WHERE id = 4")
        .await
        .expect("q");
    assert_eq!(
        empty,
        Some((Some("fixed".into()), Some(b"\\N".to_vec()))),
        "the text \\N is text"
    );

    // A key that exists: the row is kept and the write is a transient error.
    let mut again = typical_row();
    again[13] = Value::Text("overwritten?".into());
    let fresh = {
        let mut r = typical_row();
        r[0] = Value::Int(5);
        r
    };
    s.begin().await.expect("begin");
    let err = s
        .write(
            &t,
            &[
                RowWrite::Insert { values: fresh },
                RowWrite::Insert { values: again },
            ],
        )
        .await
        .expect_err("key 1 exists");
    assert_eq!(err.class(), ErrorClass::Transient, "{}", err.report());
    s.rollback().await.expect("rollback");
    let vc: Option<String> = conn
        .query_first("SELECT vc FROM t WHERE id = 1")
        .await
        .expect("q");
    assert_eq!(vc.as_deref(), Some("héllo"));
}

#[tokio::test]
async fn a_value_load_data_would_clip_fails_as_on_the_insert_path() {
    let (db, mut conn) = setup(
        "sink_load_bad",
        "CREATE TABLE s (id int PRIMARY KEY, qty tinyint unsigned NOT NULL, code varchar(3)) ENGINE=InnoDB;",
    )
    .await;
    let t = target(&mut conn, &db, "s").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    s.set_load_data_min_rows(1);
    let row = |id, qty, code: &str| RowWrite::Insert {
        values: vec![Value::Int(id), Value::Int(qty), Value::Text(code.into())],
    };
    for (bad, column) in [
        (row(2, 300, "ok"), "column qty"),
        (row(2, 1, "toolong"), "column code"),
    ] {
        s.begin().await.expect("begin");
        s.write(&t, &[row(9, 1, "a")])
            .await
            .expect("an earlier write");
        let err = s
            .write(&t, &[row(1, 5, "ok"), bad])
            .await
            .expect_err("does not fit");
        assert_eq!(err.class(), ErrorClass::Definite);
        let msg = err.report();
        assert!(
            msg.contains(column) && msg.contains("write 1 of the batch"),
            "{msg}"
        );
        s.rollback().await.expect("rollback");
    }
    let count: Option<i64> = conn.query_first("SELECT COUNT(*) FROM s").await.expect("q");
    assert_eq!(
        count,
        Some(0),
        "nothing was stored, not even a clipped value"
    );
}

// ---------------------------------------------------------------------------------------
// The order in which MySqlSink applies one call's writes. The applier gives a batch's
// writes in the order their keys first appear, so a batch of several source transactions
// alternates deletes, updates and inserts; the sink applies the deletes first, then the
// updates, then the inserts (one statement per kind) where that cannot change the outcome,
// and keeps the given order where it could: a foreign key from the table to itself, a
// trigger, or keys the server may equate.

async fn setup_with_sink(prefix: &str, ddl: &str) -> (TestDb, Conn, MySqlSink) {
    let (db, conn) = setup(prefix, ddl).await;
    let s = sink(&db, LoopPrevention::Auto).await;
    (db, conn, s)
}

fn insert(id: i64, code: &str) -> RowWrite {
    RowWrite::Insert {
        values: vec![Value::Int(id), Value::Text(code.into())],
    }
}

fn update(id: i64, code: &str) -> RowWrite {
    RowWrite::Update {
        key: vec![Value::Int(id)],
        columns: vec![(1, Value::Text(code.into()))],
    }
}

fn delete(id: i64) -> RowWrite {
    RowWrite::Delete {
        key: vec![Value::Int(id)],
    }
}

async fn rows(conn: &mut Conn, sql: &str) -> Vec<(i64, Option<String>)> {
    conn.query(sql).await.expect("read rows")
}

#[tokio::test]
async fn alternating_kinds_apply_as_one_statement_each_with_the_same_outcome() {
    let (db, mut conn, mut s) = setup_with_sink(
        "order_kinds",
        "CREATE TABLE t (id int PRIMARY KEY, code varchar(10) UNIQUE) ENGINE=InnoDB;
         INSERT INTO t VALUES (1, 'a'), (2, 'b'), (4, 'd'), (5, 'e');",
    )
    .await;
    let t = target(&mut conn, &db, "t").await;
    s.begin().await.expect("begin");
    // Two source transactions' writes as the applier gives them. The insert of 6 takes the
    // unique code 'd' that the later delete of 4 frees: in the given order the server
    // would refuse it, with the deletes first it goes in.
    s.write(
        &t,
        &[
            delete(1),
            update(2, "bb"),
            insert(3, "c"),
            insert(6, "d"),
            delete(4),
            update(5, "ee"),
            insert(7, "g"),
        ],
    )
    .await
    .expect("write");
    s.commit("p", &pos(1), Utc::now()).await.expect("commit");
    assert_eq!(
        rows(&mut conn, "SELECT id, code FROM t ORDER BY id").await,
        vec![
            (2, Some("bb".into())),
            (3, Some("c".into())),
            (5, Some("ee".into())),
            (6, Some("d".into())),
            (7, Some("g".into())),
        ]
    );
}

#[tokio::test]
async fn a_failed_write_is_named_by_its_place_in_the_call_not_in_the_statement() {
    let (db, mut conn, mut s) = setup_with_sink(
        "order_errors",
        "CREATE TABLE t (id int PRIMARY KEY, code varchar(3)) ENGINE=InnoDB;
         INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    )
    .await;
    let t = target(&mut conn, &db, "t").await;
    s.begin().await.expect("begin");
    // The inserts run after the deletes; the long code is the call's write 3.
    let err = s
        .write(
            &t,
            &[
                insert(3, "c"),
                delete(1),
                insert(4, "d"),
                insert(5, "toolong"),
                delete(2),
            ],
        )
        .await
        .expect_err("too long for varchar(3)");
    assert_eq!(err.class(), ErrorClass::Definite);
    let msg = err.report();
    assert!(
        msg.contains("column code") && msg.contains("write 3 of the batch"),
        "{msg}"
    );
    s.rollback().await.expect("rollback");
}

#[tokio::test]
async fn a_foreign_key_to_the_table_itself_keeps_the_given_order() {
    let (db, mut conn, mut s) = setup_with_sink(
        "order_fk",
        "CREATE TABLE t (id int PRIMARY KEY, parent int NULL,
           FOREIGN KEY (parent) REFERENCES t (id)) ENGINE=InnoDB;
         INSERT INTO t VALUES (1, NULL), (2, NULL), (3, 1);",
    )
    .await;
    let t = target(&mut conn, &db, "t").await;
    let reparent = |id: i64, parent: i64| RowWrite::Update {
        key: vec![Value::Int(id)],
        columns: vec![(1, Value::Int(parent))],
    };
    s.begin().await.expect("begin");
    // 3 moves from parent 1 to 2, then 1 goes: deleting 1 first would break the key.
    s.write(
        &t,
        &[
            RowWrite::Insert {
                values: vec![Value::Int(4), Value::Int(2)],
            },
            reparent(3, 2),
            delete(1),
        ],
    )
    .await
    .expect("write in the given order");
    s.commit("p", &pos(1), Utc::now()).await.expect("commit");
    let got: Vec<(i64, Option<i64>)> = conn
        .query("SELECT id, parent FROM t ORDER BY id")
        .await
        .expect("read rows");
    assert_eq!(got, vec![(2, None), (3, Some(2)), (4, Some(2))]);
}

#[tokio::test]
async fn a_trigger_sees_the_writes_in_the_given_order() {
    let (db, mut conn, mut s) = setup_with_sink(
        "order_trigger",
        "CREATE TABLE t (id int PRIMARY KEY, code varchar(10)) ENGINE=InnoDB;
         CREATE TABLE seen (n int AUTO_INCREMENT PRIMARY KEY, what varchar(20)) ENGINE=InnoDB;
         CREATE TRIGGER t_ins AFTER INSERT ON t FOR EACH ROW
           INSERT INTO seen (what) VALUES (CONCAT('insert ', NEW.id));
         CREATE TRIGGER t_del AFTER DELETE ON t FOR EACH ROW
           INSERT INTO seen (what) VALUES (CONCAT('delete ', OLD.id));
         INSERT INTO t VALUES (1, 'a');",
    )
    .await;
    let t = target(&mut conn, &db, "t").await;
    s.begin().await.expect("begin");
    s.write(&t, &[insert(2, "b"), delete(1)])
        .await
        .expect("write");
    s.commit("p", &pos(1), Utc::now()).await.expect("commit");
    let seen: Vec<String> = conn
        .query("SELECT what FROM seen WHERE what <> 'insert 1' ORDER BY n")
        .await
        .expect("read log");
    assert_eq!(seen, vec!["insert 2".to_owned(), "delete 1".to_owned()]);
}

/// The writes of `writes` that `s` did not apply, once it has answered.
async fn unapplied(
    s: &mut MySqlSink,
    t: &TargetTable,
    writes: Vec<tandem_core::sink::CheckedWrite>,
) -> Vec<usize> {
    s.write_if_unchanged(t, writes)
        .await
        .expect("write")
        .wait()
        .await
        .expect("answer")
}

/// `write_if_unchanged`: where every row holds what its write expects (compared as the
/// resolver compares: decimals by value, text byte for byte even in a case-insensitive
/// collation, NULL equal to NULL), the batch applies whole; where one row does not, none
/// applies (the savepoint is rolled back) and every row is reported.
#[tokio::test]
async fn checked_writes_apply_whole_or_not_at_all() {
    use tandem_core::sink::CheckedWrite;
    let (db, mut conn) = setup(
        "sink_checked",
        "CREATE TABLE c (id int PRIMARY KEY, name varchar(20) COLLATE utf8mb4_general_ci,
           price decimal(10,2), note text, at datetime(6)) ENGINE=InnoDB;
         INSERT INTO c VALUES (1, 'abc', 1.50, NULL, '2026-01-01 00:00:00.000001'),
           (2, 'abc', 1.50, NULL, '2026-01-01 00:00:00.000001'),
           (3, 'abc', 1.50, NULL, '2026-01-01 00:00:00.000001');",
    )
    .await;
    let t = target(&mut conn, &db, "c").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    let at = ts("2026-01-01 00:00:00.000001");
    let dec = |s: &str| Value::Decimal(BigDecimal::from_str(s).expect("decimal"));
    let key = |id: i64| vec![Value::Int(id)];
    let new_row = |id: i64| CheckedWrite::Insert {
        values: vec![
            Value::Int(id),
            Value::Text("new".into()),
            dec("2"),
            Value::Null,
            Value::Null,
        ],
    };
    let holding = vec![
        CheckedWrite::Update {
            key: key(1),
            expect: vec![
                (1, Value::Text("abc".into())),
                (2, dec("1.500")),
                (3, Value::Null),
            ],
            columns: vec![(1, Value::Text("one".into()))],
        },
        CheckedWrite::Delete {
            key: key(2),
            expect: vec![
                (0, Value::Int(2)),
                (1, Value::Text("abc".into())),
                (2, dec("1.5")),
                (3, Value::Null),
                (4, Value::Timestamp(at)),
            ],
        },
        new_row(10),
        CheckedWrite::Check {
            key: key(3),
            expect: Some(vec![(1, Value::Text("abc".into()))]),
        },
        CheckedWrite::Check {
            key: key(50),
            expect: None,
        },
    ];
    s.begin().await.expect("begin");
    assert_eq!(unapplied(&mut s, &t, holding).await, Vec::<usize>::new());
    // Each of these has one row that differs: equal to the collation but not byte for
    // byte; a microsecond off; an existing key; a missing row; a row expected absent; a
    // row expected but absent.
    let differing = [
        CheckedWrite::Update {
            key: key(3),
            expect: vec![(1, Value::Text("ABC".into()))],
            columns: vec![(1, Value::Text("three".into()))],
        },
        CheckedWrite::Delete {
            key: key(3),
            expect: vec![(4, Value::Timestamp(at - chrono::Duration::microseconds(1)))],
        },
        new_row(1),
        CheckedWrite::Update {
            key: key(99),
            expect: vec![(1, Value::Text("abc".into()))],
            columns: vec![(1, Value::Text("x".into()))],
        },
        CheckedWrite::Check {
            key: key(3),
            expect: None,
        },
        CheckedWrite::Check {
            key: key(51),
            expect: Some(vec![]),
        },
    ];
    for bad in differing {
        // Together with writes that would hold: none of them may stay.
        let writes = vec![
            new_row(11),
            bad,
            CheckedWrite::Delete {
                key: key(10),
                expect: vec![],
            },
        ];
        assert_eq!(unapplied(&mut s, &t, writes).await, vec![0, 1, 2]);
    }
    s.commit("retail", &pos(3), Utc::now())
        .await
        .expect("commit");
    let rows: Vec<(i64, String)> = conn
        .query("SELECT id, name FROM c ORDER BY id")
        .await
        .expect("rows");
    assert_eq!(
        rows,
        vec![(1, "one".into()), (3, "abc".into()), (10, "new".into())]
    );
}

/// Checked writes of many rows per statement: text of every width in any order (the joined
/// rows' column must be as wide as its widest row, not its first: MariaDB 10.11 types a
/// `VALUES` list of parameters by its first row and cuts the others silently, which is why
/// tandem joins `UNION ALL SELECT`s) and decimals of different scales; every row holds, so
/// the batch applies whole.
#[tokio::test]
async fn checked_writes_of_many_rows_hold_whatever_their_widths() {
    use tandem_core::sink::CheckedWrite;
    let name = |id: i64| "n".repeat(usize::try_from(id).expect("small"));
    let price = |id: i64| format!("{}.{}", id * 37, "5".repeat((id % 4) as usize));
    let dec = |s: &str| Value::Decimal(BigDecimal::from_str(s).expect("decimal"));
    let ids = 1..=40i64;
    let rows: Vec<String> = ids
        .clone()
        .map(|id| format!("({id}, '{}', {})", name(id), price(id)))
        .collect();
    let (db, mut conn) = setup(
        "sink_wide",
        &format!(
            "CREATE TABLE w (id int PRIMARY KEY, name varchar(60), price decimal(12,4))
                   ENGINE=InnoDB;
                 INSERT INTO w VALUES {};",
            rows.join(", ")
        ),
    )
    .await;
    let t = target(&mut conn, &db, "w").await;
    let mut s = sink(&db, LoopPrevention::Auto).await;
    let held = |id: i64| vec![(1, Value::Text(name(id))), (2, dec(&price(id)))];
    let mut writes = Vec::new();
    let mut want: Vec<(i64, String, String)> = Vec::new();
    for id in ids.clone() {
        match id % 4 {
            0 => writes.push(CheckedWrite::Delete {
                key: vec![Value::Int(id)],
                expect: held(id),
            }),
            1 => {
                let new = "y".repeat(usize::try_from(60 - id).expect("small"));
                writes.push(CheckedWrite::Update {
                    key: vec![Value::Int(id)],
                    expect: held(id),
                    columns: vec![(1, Value::Text(new.clone()))],
                });
                want.push((id, new, price(id)));
            }
            2 => {
                writes.push(CheckedWrite::Check {
                    key: vec![Value::Int(id)],
                    expect: Some(held(id)),
                });
                want.push((id, name(id), price(id)));
            }
            _ => {
                let new = format!("{}.125", id * 1000);
                writes.push(CheckedWrite::Update {
                    key: vec![Value::Int(id)],
                    expect: vec![(2, dec(&price(id)))],
                    columns: vec![(2, dec(&new))],
                });
                want.push((id, name(id), new));
            }
        }
    }
    for id in 101..=110i64 {
        let n = "i".repeat(usize::try_from(id - 100).expect("small") * 5);
        writes.push(CheckedWrite::Insert {
            values: vec![Value::Int(id), Value::Text(n.clone()), dec(&price(id))],
        });
        want.push((id, n, price(id)));
    }
    s.begin().await.expect("begin");
    assert_eq!(unapplied(&mut s, &t, writes).await, Vec::<usize>::new());
    s.commit("retail", &pos(4), Utc::now())
        .await
        .expect("commit");
    let got: Vec<(i64, String, String)> = conn
        .query("SELECT id, name, CAST(price AS char) FROM w ORDER BY id")
        .await
        .expect("rows");
    let want: Vec<(i64, String, String)> = want
        .into_iter()
        .map(|(id, n, p)| {
            let p = BigDecimal::from_str(&p).expect("decimal").with_scale(4);
            (id, n, p.to_string())
        })
        .collect();
    assert_eq!(got, want);
}
