//! The order in which MySqlSink applies one call's writes, against a real MariaDB from the
//! test kit. The applier gives a batch's writes in the order their keys first appear, so a
//! batch of several source transactions alternates deletes, updates and inserts; the sink
//! applies the deletes first, then the updates, then the inserts (one statement per kind)
//! where that cannot change the outcome, and keeps the given order where it could: a
//! foreign key from the table to itself, a trigger, or keys the server may equate.

use chrono::Utc;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tandem_core::config::catalog::Catalog;
use tandem_core::config::{EndpointConfig, EndpointKind, LoopPrevention, TlsConfig};
use tandem_core::position::{GtidSet, Position};
use tandem_core::sink::{RowWrite, Sink, TargetTable};
use tandem_core::{ErrorClass, TableId, Value};
use tandem_mysql::catalog::MySqlCatalog;
use tandem_mysql::connect::connect;
use tandem_mysql::sink::MySqlSink;
use tandem_testkit::{shared_maria, TestDb};

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

async fn setup(prefix: &str, ddl: &str) -> (TestDb, Conn, MySqlSink) {
    let maria = shared_maria().await;
    let db = maria
        .create_database(prefix)
        .await
        .expect("create database");
    maria.sql(&db.name, ddl).await.expect("create tables");
    let conn = connect(&endpoint(db.url()), None).await.expect("connect");
    let sink = MySqlSink::connect(&endpoint(db.url()), None)
        .await
        .expect("sink");
    (db, conn, sink)
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

fn pos(seq: u64) -> Position {
    let mut g = GtidSet::mariadb();
    g.record_mariadb(0, 1, seq).expect("gtid");
    Position::MySqlGtid {
        gtid: g,
        file: None,
        pos: None,
    }
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
    let (db, mut conn, mut s) = setup(
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
    let (db, mut conn, mut s) = setup(
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
    let (db, mut conn, mut s) = setup(
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
    let (db, mut conn, mut s) = setup(
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
