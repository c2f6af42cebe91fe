//! The binlog source against a real MariaDB from the test kit: whole transactions with
//! their GTID positions, loop prevention, DDL mid-stream, heartbeats, purged binlogs.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mysql_async::prelude::Queryable;
use tandem_core::change::{TxBegin, TxCommit};
use tandem_core::config::EndpointConfig;
use tandem_core::source::Source;
use tandem_core::{Cell, Change, GtidSet, OldRow, Position, RowChange, SourceEvent, Value};
use tandem_mysql::source::{MySqlSource, SourceOptions};
use tandem_testkit::{shared_maria, MariaInstance, TestDb};

const WAIT: Duration = Duration::from_secs(15);

fn endpoint(url: &str) -> EndpointConfig {
    toml::from_str(&format!("kind = \"mysql\"\nurl = \"{url}\"\n")).expect("endpoint config")
}

async fn gtid_pos(maria: &MariaInstance) -> GtidSet {
    let out = maria
        .sql("", "SELECT @@gtid_binlog_pos;")
        .await
        .expect("gtid pos");
    GtidSet::parse(out.lines().last().unwrap_or("").trim()).expect("gtid state")
}

async fn start(maria: &MariaInstance, db: &TestDb, heartbeat: Duration) -> MySqlSource {
    let from = Position::MySqlGtid {
        gtid: gtid_pos(maria).await,
        file: None,
        pos: None,
    };
    let ep = endpoint(db.url());
    let mut opts = SourceOptions::for_endpoint(&ep);
    opts.heartbeat = heartbeat;
    MySqlSource::start(&ep, None, &from, opts)
        .await
        .expect("source starts")
}

async fn next(src: &mut MySqlSource) -> SourceEvent {
    tokio::time::timeout(WAIT, src.next_event())
        .await
        .expect("an event in time")
        .expect("no error")
}

/// The next transaction, skipping `Progress`.
async fn next_tx(src: &mut MySqlSource) -> (TxBegin, Vec<Change>, TxCommit) {
    let begin = loop {
        match next(src).await {
            SourceEvent::Begin(b) => break b,
            SourceEvent::Progress { .. } => continue,
            other => panic!("expected Begin, got {other:?}"),
        }
    };
    let mut changes = Vec::new();
    loop {
        match next(src).await {
            SourceEvent::Change(c) => changes.push(c),
            SourceEvent::Commit(c) => return (begin, changes, c),
            other => panic!("expected Change or Commit, got {other:?}"),
        }
    }
}

fn seq(p: &Position, domain: u32) -> u64 {
    match p {
        Position::MySqlGtid {
            gtid: GtidSet::MariaDb(m),
            ..
        } => m.get(&domain).map_or(0, |x| x.1),
        other => panic!("not a MariaDB position: {other:?}"),
    }
}

fn vals(row: &tandem_core::Row) -> Vec<Value> {
    row.0
        .iter()
        .map(|c| c.value().cloned().unwrap_or(Value::Null))
        .collect()
}

#[tokio::test]
async fn a_transaction_comes_out_whole_with_its_gtid_position() {
    let maria = shared_maria().await;
    let db = maria.create_database("src_tx").await.unwrap();
    maria
        .sql(
            &db.name,
            "CREATE TABLE t (id INT PRIMARY KEY, qty INT UNSIGNED, name VARCHAR(20));",
        )
        .await
        .unwrap();
    let start_seq = gtid_pos(maria).await;
    let mut src = start(maria, &db, Duration::from_secs(1)).await;
    maria
        .sql(
            &db.name,
            "BEGIN; INSERT INTO t VALUES (1, 4000000000, 'a'), (2, 5, 'b');
             UPDATE t SET name = 'bb' WHERE id = 2; DELETE FROM t WHERE id = 1; COMMIT;",
        )
        .await
        .unwrap();
    let (begin, changes, commit) = next_tx(&mut src).await;
    assert!(
        begin.origin.as_deref().is_some_and(|o| o.starts_with("0-")),
        "{begin:?}"
    );
    assert_eq!(changes.len(), 4);
    let names: Vec<&str> = changes[0]
        .table
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["id", "qty", "name"]);
    assert_eq!(changes[0].table.key, vec![0]);
    match &changes[0].row {
        RowChange::Insert { new } => {
            assert_eq!(
                vals(new),
                [
                    Value::Int(1),
                    Value::Int(4_000_000_000),
                    Value::Text("a".into())
                ]
            )
        }
        other => panic!("{other:?}"),
    }
    match &changes[2].row {
        RowChange::Update {
            old: OldRow::Full(old),
            new,
        } => {
            assert_eq!(vals(old)[2], Value::Text("b".into()));
            assert_eq!(vals(new)[2], Value::Text("bb".into()));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &changes[3].row,
        RowChange::Delete {
            old: OldRow::Full(_)
        }
    ));
    // The commit position is the server's GTID state right after the transaction.
    let after = gtid_pos(maria).await;
    assert_eq!(
        seq(&commit.position, 0),
        seq(
            &Position::MySqlGtid {
                gtid: after,
                file: None,
                pos: None
            },
            0
        )
    );
    assert_eq!(
        seq(&commit.position, 0),
        seq(
            &Position::MySqlGtid {
                gtid: start_seq,
                file: None,
                pos: None
            },
            0
        ) + 1
    );
    match &commit.position {
        Position::MySqlGtid {
            file: Some(f),
            pos: Some(p),
            ..
        } => {
            assert!(f.starts_with("binlog.") && *p > 4, "{f}:{p}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn skip_replication_and_marker_transactions_never_come_out_but_advance_the_state() {
    let maria = shared_maria().await;
    let db = maria.create_database("src_loop").await.unwrap();
    maria
        .sql(
            &db.name,
            "CREATE TABLE t (id INT PRIMARY KEY, v INT);
             CREATE TABLE tandem_apply_marker (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6));",
        )
        .await
        .unwrap();
    let start = gtid_pos(maria).await;
    let start_seq = seq(
        &Position::MySqlGtid {
            gtid: start,
            file: None,
            pos: None,
        },
        0,
    );
    let mut src = self::start(maria, &db, Duration::from_secs(1)).await;
    maria
        .sql(
            &db.name,
            "SET skip_replication = 1; INSERT INTO t VALUES (1, 1);",
        )
        .await
        .unwrap();
    maria
        .sql(
            &db.name,
            "BEGIN; INSERT INTO tandem_apply_marker (at) VALUES (NOW(6)); INSERT INTO t VALUES (2, 2); COMMIT;",
        )
        .await
        .unwrap();
    maria
        .sql(&db.name, "INSERT INTO t VALUES (3, 3);")
        .await
        .unwrap();
    // Only the third transaction comes out; the two before it are Progress.
    let mut progress = Vec::new();
    let begin = loop {
        match next(&mut src).await {
            SourceEvent::Progress { position, .. } => progress.push(seq(&position, 0)),
            SourceEvent::Begin(b) => break b,
            other => panic!("{other:?}"),
        }
    };
    assert!(begin.origin.is_some());
    assert!(
        progress.contains(&(start_seq + 1)),
        "skipped GTID recorded: {progress:?}"
    );
    assert!(
        progress.contains(&(start_seq + 2)),
        "marker GTID recorded: {progress:?}"
    );
    let SourceEvent::Change(c) = next(&mut src).await else {
        panic!("change expected")
    };
    assert_eq!(
        vals(match &c.row {
            RowChange::Insert { new } => new,
            other => panic!("{other:?}"),
        }),
        [Value::Int(3), Value::Int(3)]
    );
    let SourceEvent::Commit(commit) = next(&mut src).await else {
        panic!("commit expected")
    };
    assert_eq!(seq(&commit.position, 0), start_seq + 3);
}

#[tokio::test]
async fn alter_table_mid_stream_decodes_the_new_column() {
    let maria = shared_maria().await;
    let db = maria.create_database("src_ddl").await.unwrap();
    maria
        .sql(&db.name, "CREATE TABLE t (id INT PRIMARY KEY, a INT);")
        .await
        .unwrap();
    let mut src = start(maria, &db, Duration::from_secs(1)).await;
    maria
        .sql(&db.name, "INSERT INTO t VALUES (1, 10);")
        .await
        .unwrap();
    maria
        .sql(&db.name, "ALTER TABLE t ADD COLUMN b VARCHAR(10) NOT NULL DEFAULT 'x'; INSERT INTO t VALUES (2, 20, 'yy');")
        .await
        .unwrap();
    let (_, first, _) = next_tx(&mut src).await;
    assert_eq!(first[0].table.columns.len(), 2);
    let (_, second, _) = next_tx(&mut src).await;
    let cols: Vec<&str> = second[0]
        .table
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["id", "a", "b"]);
    match &second[0].row {
        RowChange::Insert { new } => {
            assert_eq!(new.get(2), Some(&Cell::Value(Value::Text("yy".into()))))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn heartbeats_keep_an_idle_stream_alive() {
    let maria = shared_maria().await;
    let db = maria.create_database("src_idle").await.unwrap();
    maria
        .sql(&db.name, "CREATE TABLE t (id INT PRIMARY KEY);")
        .await
        .unwrap();
    let mut src = start(maria, &db, Duration::from_millis(200)).await;
    // Idle for longer than several heartbeat periods: the stream stays up...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    maria
        .sql(&db.name, "INSERT INTO t VALUES (7);")
        .await
        .unwrap();
    // ...and still delivers.
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(changes.len(), 1);
}

#[tokio::test]
async fn a_purged_resume_point_is_a_definite_error_with_advice() {
    let maria = shared_maria().await;
    let db = maria.create_database("src_purged").await.unwrap();
    let ep = endpoint(db.url());
    let from = Position::MySqlFile {
        file: "binlog.000999".into(),
        pos: 4,
    };
    let result = MySqlSource::start(&ep, None, &from, SourceOptions::for_endpoint(&ep)).await;
    let err = match result {
        Err(e) => e,
        Ok(mut src) => tokio::time::timeout(WAIT, src.next_event())
            .await
            .expect("an answer")
            .expect_err("the server refuses"),
    };
    assert_eq!(
        err.class(),
        tandem_core::ErrorClass::Definite,
        "{}",
        err.report()
    );
    assert!(err.to_string().contains("re-snapshot"), "{err}");
}

#[tokio::test]
async fn other_databases_are_not_emitted() {
    let maria = shared_maria().await;
    let db = maria.create_database("src_mine").await.unwrap();
    let other = maria.create_database("src_other").await.unwrap();
    maria
        .sql(&db.name, "CREATE TABLE t (id INT PRIMARY KEY);")
        .await
        .unwrap();
    maria
        .sql(&other.name, "CREATE TABLE t (id INT PRIMARY KEY);")
        .await
        .unwrap();
    let mut src = start(maria, &db, Duration::from_secs(1)).await;
    maria
        .sql(&other.name, "INSERT INTO t VALUES (1);")
        .await
        .unwrap();
    maria
        .sql(&db.name, "INSERT INTO t VALUES (2);")
        .await
        .unwrap();
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(changes[0].table.table.schema, db.name);
    let mut conn = mysql_async::Conn::from_url(db.url()).await.unwrap();
    let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(1));
}

/// The marker mode MySQL 8 relies on (it has no `skip_replication`), end to end on
/// MariaDB: a transaction tandem's sink applies in marker mode never comes out of the
/// source, the application's next one does, and the GTID state still counts tandem's.
#[tokio::test]
async fn a_marker_mode_sinks_own_transactions_never_come_out() {
    use tandem_core::config::LoopPrevention;
    use tandem_core::sink::{RowWrite, Sink, TargetTable};
    use tandem_core::ColumnType;
    use tandem_mysql::sink::{AppliedLoopPrevention, MySqlSink};

    let maria = shared_maria().await;
    let db = maria.create_database("src_marker_sink").await.unwrap();
    maria
        .sql(&db.name, "CREATE TABLE t (id INT PRIMARY KEY, v INT);")
        .await
        .unwrap();
    let ep = endpoint(db.url());
    let conn = tandem_mysql::connect::connect(&ep, None).await.unwrap();
    let mut sink = MySqlSink::from_conn(conn, LoopPrevention::Marker)
        .await
        .unwrap();
    assert_eq!(sink.loop_prevention(), AppliedLoopPrevention::Marker);
    let target = TargetTable {
        table: tandem_core::TableId::new(&db.name, "t"),
        columns: vec![
            (
                "id".into(),
                ColumnType::Int {
                    bytes: 4,
                    unsigned: false,
                },
            ),
            (
                "v".into(),
                ColumnType::Int {
                    bytes: 4,
                    unsigned: false,
                },
            ),
        ],
        key: vec![0],
    };
    let start_gtid = gtid_pos(maria).await;
    let at = |g: GtidSet| Position::MySqlGtid {
        gtid: g,
        file: None,
        pos: None,
    };
    let start_seq = seq(&at(start_gtid), 0);
    let mut src = start(maria, &db, Duration::from_secs(1)).await;

    sink.begin().await.unwrap();
    sink.write(
        &target,
        &[RowWrite::Insert {
            values: vec![Value::Int(1), Value::Int(10)],
        }],
    )
    .await
    .unwrap();
    sink.commit(
        "inventory->retail",
        &at(GtidSet::mariadb()),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    maria
        .sql(&db.name, "INSERT INTO t VALUES (2, 20);")
        .await
        .unwrap();

    let (_, changes, commit) = next_tx(&mut src).await;
    let rows: Vec<Vec<Value>> = changes
        .iter()
        .map(|c| match &c.row {
            RowChange::Insert { new } => vals(new),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(rows, vec![vec![Value::Int(2), Value::Int(20)]]);
    assert_eq!(
        seq(&commit.position, 0),
        start_seq + 2,
        "tandem's transaction is counted in the state"
    );
}

/// The ids inserted by a transaction's changes, in order.
fn inserted_ids(changes: &[Change]) -> Vec<Value> {
    changes
        .iter()
        .map(|c| match &c.row {
            RowChange::Insert { new } => vals(new)[0].clone(),
            other => panic!("insert expected, got {other:?}"),
        })
        .collect()
}

async fn xa_db(maria: &MariaInstance, name: &str) -> TestDb {
    let db = maria.create_database(name).await.unwrap();
    maria
        .sql(
            &db.name,
            "CREATE TABLE t (id INT PRIMARY KEY); CREATE TABLE o (id INT PRIMARY KEY);",
        )
        .await
        .unwrap();
    db
}

/// `XA START … XA PREPARE` of `ids` into `t` under xid `xid`.
async fn xa_prepare(maria: &MariaInstance, db: &TestDb, xid: &str, ids: &[i32]) {
    let values: Vec<String> = ids.iter().map(|i| format!("({i})")).collect();
    maria
        .sql(
            &db.name,
            &format!(
                "XA START '{xid}'; INSERT INTO t VALUES {}; XA END '{xid}'; XA PREPARE '{xid}';",
                values.join(", ")
            ),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_prepared_xa_transaction_comes_out_whole_at_its_commit_after_others() {
    let maria = shared_maria().await;
    let db = xa_db(maria, "src_xa_commit").await;
    let before = seq(
        &Position::MySqlGtid {
            gtid: gtid_pos(maria).await,
            file: None,
            pos: None,
        },
        0,
    );
    let mut src = start(maria, &db, Duration::from_secs(1)).await;
    xa_prepare(maria, &db, "x1", &[1, 2]).await;
    // An ordinary transaction between PREPARE and COMMIT comes through first, and its
    // position stays before the pending PREPARE (a restart must read it again).
    maria
        .sql(&db.name, "INSERT INTO o VALUES (10);")
        .await
        .unwrap();
    let (_, changes, commit) = next_tx(&mut src).await;
    assert_eq!(changes[0].table.table.name, "o");
    assert_eq!(inserted_ids(&changes), [Value::Int(10)]);
    assert_eq!(seq(&commit.position, 0), before, "held before the PREPARE");
    match &commit.position {
        Position::MySqlGtid {
            file: Some(_),
            pos: Some(p),
            ..
        } => assert!(*p > 4),
        other => panic!("{other:?}"),
    }

    maria.sql(&db.name, "XA COMMIT 'x1';").await.unwrap();
    let (begin, changes, commit) = next_tx(&mut src).await;
    assert!(begin.origin.as_deref().is_some_and(|o| o.starts_with("0-")));
    assert_eq!(changes[0].table.table.name, "t");
    assert_eq!(inserted_ids(&changes), [Value::Int(1), Value::Int(2)]);
    // PREPARE, the ordinary transaction and the COMMIT: all three consumed.
    assert_eq!(seq(&commit.position, 0), before + 3);
    assert_eq!(
        seq(&commit.position, 0),
        seq(
            &Position::MySqlGtid {
                gtid: gtid_pos(maria).await,
                file: None,
                pos: None
            },
            0
        )
    );

    // Exactly once: the next transaction out is the next one written.
    maria
        .sql(&db.name, "INSERT INTO o VALUES (11);")
        .await
        .unwrap();
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(11)]);
}

#[tokio::test]
async fn a_rolled_back_xa_transaction_never_comes_out_and_one_phase_is_ordinary() {
    let maria = shared_maria().await;
    let db = xa_db(maria, "src_xa_rollback").await;
    let mut src = start(maria, &db, Duration::from_secs(1)).await;
    xa_prepare(maria, &db, "r1", &[1, 2]).await;
    maria.sql(&db.name, "XA ROLLBACK 'r1';").await.unwrap();
    maria
        .sql(
            &db.name,
            "XA START 'p1'; INSERT INTO t VALUES (3); XA END 'p1'; XA COMMIT 'p1' ONE PHASE;",
        )
        .await
        .unwrap();
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(3)]);
    let after = seq(
        &Position::MySqlGtid {
            gtid: gtid_pos(maria).await,
            file: None,
            pos: None,
        },
        0,
    );
    maria
        .sql(&db.name, "INSERT INTO o VALUES (10);")
        .await
        .unwrap();
    let (_, changes, commit) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(10)]);
    // Nothing is held any more: the position is the server's.
    assert_eq!(seq(&commit.position, 0), after + 1);
}

#[tokio::test]
async fn a_restart_between_prepare_and_commit_delivers_the_xa_rows_once() {
    let maria = shared_maria().await;
    let db = xa_db(maria, "src_xa_restart").await;
    let mut src = start(maria, &db, Duration::from_secs(1)).await;
    xa_prepare(maria, &db, "s1", &[1, 2, 3]).await;
    maria
        .sql(&db.name, "INSERT INTO o VALUES (10);")
        .await
        .unwrap();
    maria
        .sql(&db.name, "INSERT INTO o VALUES (11);")
        .await
        .unwrap();
    // The pipeline applies the first ordinary transaction, then the source restarts.
    let (_, changes, applied) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(10)]);
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(11)]);
    drop(src);

    let ep = endpoint(db.url());
    let mut src = MySqlSource::start(
        &ep,
        None,
        &applied.position,
        SourceOptions::for_endpoint(&ep),
    )
    .await
    .expect("source restarts");
    // The applied transaction is not delivered again; the one after it is, and its
    // position counts as not yet applied (the applier's "already applied" test).
    let (_, changes, second) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(11)]);
    assert!(!second.position.is_at_or_before(&applied.position).unwrap());
    // The prepared rows were read again and come out once, at the commit.
    maria.sql(&db.name, "XA COMMIT 's1';").await.unwrap();
    let (_, changes, commit) = next_tx(&mut src).await;
    assert_eq!(
        inserted_ids(&changes),
        [Value::Int(1), Value::Int(2), Value::Int(3)]
    );
    let server = Position::MySqlGtid {
        gtid: gtid_pos(maria).await,
        file: None,
        pos: None,
    };
    assert_eq!(seq(&commit.position, 0), seq(&server, 0));
    maria
        .sql(&db.name, "INSERT INTO o VALUES (12);")
        .await
        .unwrap();
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(12)]);

    // A restart from the XA COMMIT's position delivers none of them again.
    drop(src);
    let mut src = MySqlSource::start(
        &ep,
        None,
        &commit.position,
        SourceOptions::for_endpoint(&ep),
    )
    .await
    .expect("source restarts");
    maria
        .sql(&db.name, "INSERT INTO o VALUES (13);")
        .await
        .unwrap();
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(12)]);
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(13)]);
}

#[tokio::test]
async fn a_held_back_position_from_another_servers_binlog_suppresses_nothing() {
    let maria = shared_maria().await;
    let db = xa_db(maria, "src_xa_failover").await;
    let mut src = start(maria, &db, Duration::from_secs(1)).await;
    xa_prepare(maria, &db, "f1", &[1]).await;
    maria
        .sql(&db.name, "INSERT INTO o VALUES (10);")
        .await
        .unwrap();
    let (_, _, applied) = next_tx(&mut src).await;
    drop(src);
    // The same GTID state, with a file/offset this server's binlog does not have (as after
    // a failover): the stream cannot tell what was delivered, so it delivers again rather
    // than lose anything.
    let Position::MySqlGtid { gtid, .. } = applied.position else {
        panic!("{applied:?}")
    };
    let elsewhere = Position::MySqlGtid {
        gtid,
        file: Some("binlog.999999".into()),
        pos: Some(4),
    };
    let ep = endpoint(db.url());
    let mut src = MySqlSource::start(&ep, None, &elsewhere, SourceOptions::for_endpoint(&ep))
        .await
        .expect("source restarts");
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(10)]);
    maria.sql(&db.name, "XA COMMIT 'f1';").await.unwrap();
    let (_, changes, _) = next_tx(&mut src).await;
    assert_eq!(inserted_ids(&changes), [Value::Int(1)]);
}

#[tokio::test]
async fn prepared_xa_rows_past_the_cap_are_a_definite_error_naming_the_xid() {
    let maria = shared_maria().await;
    let db = xa_db(maria, "src_xa_cap").await;
    let from = Position::MySqlGtid {
        gtid: gtid_pos(maria).await,
        file: None,
        pos: None,
    };
    let ep = endpoint(db.url());
    let mut opts = SourceOptions::for_endpoint(&ep);
    opts.xa_held_rows = 2;
    let mut src = MySqlSource::start(&ep, None, &from, opts).await.unwrap();
    xa_prepare(maria, &db, "c1", &[1, 2]).await;
    xa_prepare(maria, &db, "c2", &[3]).await;
    let err = loop {
        match tokio::time::timeout(WAIT, src.next_event())
            .await
            .expect("in time")
        {
            Ok(SourceEvent::Progress { .. }) => continue,
            Ok(other) => panic!("nothing may come out of a prepared transaction: {other:?}"),
            Err(e) => break e,
        }
    };
    let text = format!("{err:?}");
    assert!(
        matches!(err, tandem_core::error::StageError::Definite { .. }),
        "{text}"
    );
    assert!(text.contains("X'6332',X'',1"), "names the xid: {text}");
    assert!(text.contains("xa_held_rows"), "{text}");
    maria
        .sql(&db.name, "XA ROLLBACK 'c1'; XA ROLLBACK 'c2';")
        .await
        .unwrap();
}
