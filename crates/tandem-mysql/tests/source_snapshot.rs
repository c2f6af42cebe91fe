//! Snapshot and stream agree: every type family decodes to the same values through the
//! binlog and through a snapshot read, and snapshot + stream under concurrent writes
//! reproduce the table exactly — with MariaDB's lock-free snapshot position and with the
//! short global read lock MySQL 8 needs (exercised here on MariaDB).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_core::config::EndpointConfig;
use tandem_core::source::Source;
use tandem_core::{Position, RowChange, SourceEvent, Value};
use tandem_mysql::snapshot::{Snapshot, SnapshotMethod};
use tandem_mysql::source::{MySqlSource, SourceOptions};
use tandem_testkit::shared_maria;

const WAIT: Duration = Duration::from_secs(15);

fn endpoint(url: &str) -> EndpointConfig {
    toml::from_str(&format!("kind = \"mysql\"\nurl = \"{url}\"\n")).expect("endpoint config")
}

fn values(row: &tandem_core::Row) -> Vec<Value> {
    row.0
        .iter()
        .map(|c| c.value().cloned().unwrap_or(Value::Null))
        .collect()
}

const TYPES_TABLE: &str = "CREATE TABLE types (
  id INT PRIMARY KEY,
  b TINYINT(1), ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT,
  miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, dec1 DECIMAL(10,2), dec2 DECIMAL(65,30), dec3 DECIMAL(5,0),
  c CHAR(5), vc VARCHAR(300), l1 VARCHAR(10) CHARACTER SET latin1, tx TEXT,
  bin BINARY(4), vb VARBINARY(10), bl BLOB,
  dt DATE, tm TIME(6), tm0 TIME, dtm DATETIME(6), dtm3 DATETIME(3), ts TIMESTAMP(6) NULL, yr YEAR,
  j JSON, e ENUM('a','b,c','it''s'), s SET('x','y','z'), bt BIT(5)
);";

const TYPES_ROWS: &str = "SET sql_mode = '';
INSERT INTO types VALUES
 (1, 1, -128, 255, -32768, -8388608, 16777215, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615,
  1.5, 0.30000000000000004, -12345678.91,
  '-99999999999999999999999999999999999.999999999999999999999999999999', 99999,
  'abc', 'héllo wörld 😀', 'café €', REPEAT('long text ', 50),
  x'01000000', x'00ff00', x'deadbeef00',
  '9999-12-31', '23:59:59.999999', '-01:02:03', '1000-01-01 00:00:00.000000',
  '2024-02-29 12:34:56.789', '2038-01-19 03:14:07.999999', 2155,
  '{\"a\": [1, 2.5, null, \"x\"]}', 'b,c', 'x,z', b'10101'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL),
 (3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.25, -1e300, 0.05, 0.000000000000000000000000000001, -1,
  '', '', '', '', x'00', x'', x'',
  '0000-00-00', '838:59:59.000000', '00:00:00', '0000-00-00 00:00:00', '2000-01-01 00:00:00.001',
  '1970-01-01 00:00:01', 0, '[]', 'it''s', '', b'0'),
 (4, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9223372036854775808, 3.25, 2.5, 1.10, 1.5, 7,
  'x', 'y', 'z', 'w', x'ff', x'01', x'02',
  '2024-02-29', '-838:59:59.5', '12:00:00', '2024-01-01 00:00:00', '2024-01-01 00:00:00',
  '0000-00-00 00:00:00', 1901, 'null', '', 'x,y,z', b'11111');";

#[tokio::test]
async fn every_type_family_decodes_the_same_through_snapshot_and_stream() {
    let maria = shared_maria().await;
    let db = maria.create_database("snap_types").await.unwrap();
    maria.sql(&db.name, TYPES_TABLE).await.unwrap();
    let ep = endpoint(db.url());
    let conn = tandem_mysql::connect::connect(&ep, None).await.unwrap();
    let snap = Snapshot::begin(conn).await.unwrap();
    let from = snap.position.clone();
    drop(snap);
    let mut src = MySqlSource::start(&ep, None, &from, SourceOptions::for_endpoint(&ep))
        .await
        .unwrap();
    maria.sql(&db.name, TYPES_ROWS).await.unwrap();

    let mut streamed = BTreeMap::new();
    while streamed.len() < 4 {
        let ev = tokio::time::timeout(WAIT, src.next_event())
            .await
            .unwrap()
            .unwrap();
        if let SourceEvent::Change(c) = ev {
            match c.row {
                RowChange::Insert { new } => {
                    let v = values(&new);
                    streamed.insert(v[0].to_string(), v);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    let conn = tandem_mysql::connect::connect(&ep, None).await.unwrap();
    let mut snap = Snapshot::begin(conn).await.unwrap();
    let mut snapped = BTreeMap::new();
    snap.read_table(&db.name, "types", 3, None, |_, rows, _| {
        for r in rows {
            let v = values(&r);
            snapped.insert(v[0].to_string(), v);
        }
    })
    .await
    .unwrap();
    assert_eq!(snapped.len(), 4);
    let names = [
        "id", "b", "ti", "tu", "si", "mi", "miu", "i", "iu", "bi", "bu", "f", "d", "dec1", "dec2",
        "dec3", "c", "vc", "l1", "tx", "bin", "vb", "bl", "dt", "tm", "tm0", "dtm", "dtm3", "ts",
        "yr", "j", "e", "s", "bt",
    ];
    let mut mismatches = Vec::new();
    for (id, s) in &streamed {
        let p = &snapped[id];
        for (k, (a, b)) in s.iter().zip(p).enumerate() {
            if a != b {
                mismatches.push(format!(
                    "row {id} column {}: stream {a:?} snapshot {b:?}",
                    names[k]
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // Spot checks that the shared values are the right ones, not merely equal.
    let r1 = &streamed["1"];
    assert_eq!(r1[1], Value::Bool(true));
    assert_eq!(r1[10], Value::UInt(u64::MAX));
    assert_eq!(r1[12], Value::Float(0.30000000000000004));
    assert_eq!(r1[18], Value::Text("café €".into()));
    assert_eq!(r1[20], Value::Bytes(vec![1, 0, 0, 0]));
    assert_eq!(r1[28].to_string(), "2038-01-19 03:14:07.999999+00");
    assert_eq!(r1[31], Value::Text("b,c".into()));
    assert_eq!(r1[32], Value::Text("x,z".into()));
    assert!(matches!(&r1[30], Value::Json(j) if j.contains("2.5")));
    let r3 = &streamed["3"];
    assert_eq!(
        r3[23],
        Value::Unsupported {
            type_name: "date".into(),
            text: "0000-00-00".into()
        }
    );
    assert!(matches!(&r3[24], Value::Unsupported { type_name, .. } if type_name == "time"));
    assert!(streamed["2"][1..].iter().all(Value::is_null));
}

#[tokio::test]
async fn snapshot_then_stream_under_concurrent_inserts_gives_exact_contents() {
    snapshot_then_stream_is_exact("snap_conc", SnapshotMethod::SnapshotStatus).await;
}

/// MySQL 8's method: `FLUSH TABLES WITH READ LOCK` around opening the read view and
/// reading `SHOW MASTER STATUS`.
#[tokio::test]
async fn the_global_read_lock_snapshot_is_exact_under_concurrent_writes() {
    snapshot_then_stream_is_exact("snap_ftwrl", SnapshotMethod::GlobalReadLock).await;
}

/// Snapshot while a writer inserts, updates and deletes, then stream from the snapshot's
/// position: every streamed change must apply to the copied state exactly once (an insert
/// of a new key, an update or delete whose before image is the current row), and the end
/// result must equal the table.
async fn snapshot_then_stream_is_exact(prefix: &str, method: SnapshotMethod) {
    let maria = shared_maria().await;
    let db = maria.create_database(prefix).await.unwrap();
    maria
        .sql(
            &db.name,
            "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL);
             INSERT INTO t (v) SELECT seq FROM seq_1_to_2000;",
        )
        .await
        .unwrap();
    let ep = endpoint(db.url());
    let url = db.url().to_owned();
    // Writers run while the snapshot opens and copies.
    let writer = tokio::spawn(async move {
        let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
        use mysql_async::prelude::Queryable;
        for i in 0..300 {
            conn.exec_drop("INSERT INTO t (v) VALUES (?)", (100_000 + i,))
                .await
                .unwrap();
            if i % 3 == 0 {
                conn.exec_drop("UPDATE t SET v = v + 1 WHERE id = ?", (i + 1,))
                    .await
                    .unwrap();
            }
            if i % 7 == 0 {
                conn.exec_drop("DELETE FROM t WHERE id = ?", (i + 500,))
                    .await
                    .unwrap();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let conn = tandem_mysql::connect::connect(&ep, None).await.unwrap();
    let mut snap = Snapshot::begin_with(conn, method).await.unwrap();
    let from = snap.position.clone();
    assert!(
        matches!(&from, Position::MySqlGtid { file: Some(_), pos: Some(_), gtid } if !gtid.is_empty()),
        "{from:?}"
    );
    let mut table: BTreeMap<i64, i64> = BTreeMap::new();
    let mut chunks = 0;
    let progress = snap
        .read_table(&db.name, "t", 500, None, |_, rows, _| {
            chunks += 1;
            for r in rows {
                let v = values(&r);
                if let (Value::Int(k), Value::Int(x)) = (&v[0], &v[1]) {
                    table.insert(*k, *x);
                }
            }
        })
        .await
        .unwrap();
    assert!(chunks >= 4 && progress.estimated_total > 0, "{progress:?}");
    snap.finish().await.unwrap();
    writer.await.unwrap();
    let final_pos: String = maria.sql("", "SELECT @@gtid_binlog_pos;").await.unwrap();
    let final_pos = tandem_core::GtidSet::parse(final_pos.lines().last().unwrap().trim()).unwrap();

    let mut src = MySqlSource::start(&ep, None, &from, SourceOptions::for_endpoint(&ep))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, src.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            SourceEvent::Change(c) => {
                let int = |v: &Value| match v {
                    Value::Int(x) => *x,
                    other => panic!("int expected, got {other:?}"),
                };
                let full = |old: tandem_core::OldRow| match old {
                    tandem_core::OldRow::Full(old) => values(&old),
                    other => panic!("full image expected, got {other:?}"),
                };
                match c.row {
                    RowChange::Insert { new } => {
                        let v = values(&new);
                        let had = table.insert(int(&v[0]), int(&v[1]));
                        assert_eq!(had, None, "insert of {v:?} was already in the snapshot");
                    }
                    RowChange::Update { old, new } => {
                        let (old, v) = (full(old), values(&new));
                        let had = table.insert(int(&v[0]), int(&v[1]));
                        assert_eq!(had, Some(int(&old[1])), "update {old:?} -> {v:?}");
                    }
                    RowChange::Delete { old } => {
                        let old = full(old);
                        let had = table.remove(&int(&old[0]));
                        assert_eq!(had, Some(int(&old[1])), "delete of {old:?}");
                    }
                }
            }
            SourceEvent::Commit(tandem_core::change::TxCommit { position, .. })
            | SourceEvent::Progress { position, .. } => {
                let done = Position::MySqlGtid {
                    gtid: final_pos.clone(),
                    file: None,
                    pos: None,
                };
                if position.try_cmp(&done).map(|o| o.is_ge()).unwrap_or(false) {
                    break;
                }
            }
            _ => {}
        }
    }
    let out = maria
        .sql(&db.name, "SELECT id, v FROM t ORDER BY id;")
        .await
        .unwrap();
    let expected: BTreeMap<i64, i64> = out
        .lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    assert_eq!(expected.len(), table.len());
    assert!(
        expected == table,
        "snapshot + stream differs from the table"
    );
}
