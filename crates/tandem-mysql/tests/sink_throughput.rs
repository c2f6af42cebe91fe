//! Apply rate of MySqlSink for 100k rows, against `LOAD DATA LOCAL INFILE` for comparison.
//! A measurement, not a test: run it alone with
//! `cargo nextest run -p tandem-mysql --test sink_throughput --run-ignored only --no-capture`.

use std::str::FromStr;
use std::time::Instant;

use bigdecimal::BigDecimal;
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use tandem_core::config::{EndpointConfig, EndpointKind, LoopPrevention, TlsConfig};
use tandem_core::position::{GtidSet, Position};
use tandem_core::sink::{RowWrite, Sink, TargetTable};
use tandem_core::{ColumnType, TableId, Value};
use tandem_mysql::connect::connect;
use tandem_mysql::sink::MySqlSink;
use tandem_testkit::shared_maria;

const ROWS: i64 = 100_000;
/// Writes handed to the sink per `write` call (the applier's batch).
const BATCH: usize = 5_000;

const DDL: &str = "CREATE TABLE products (id bigint PRIMARY KEY, sku varchar(32) NOT NULL,
    title varchar(100) NOT NULL, price decimal(12,2) NOT NULL, qty int NOT NULL,
    updated_at datetime(6) NOT NULL) ENGINE=InnoDB;";

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

fn table(db: &str) -> TargetTable {
    let (min, max) = (
        NaiveDate::MIN.and_hms_opt(0, 0, 0).expect("t"),
        NaiveDate::MAX.and_hms_opt(0, 0, 0).expect("t"),
    );
    TargetTable {
        table: TableId::new(db, "products"),
        columns: vec![
            (
                "id".into(),
                ColumnType::Int {
                    bytes: 8,
                    unsigned: false,
                },
            ),
            (
                "sku".into(),
                ColumnType::Text {
                    max_chars: Some(32),
                    allows_nul: true,
                },
            ),
            (
                "title".into(),
                ColumnType::Text {
                    max_chars: Some(100),
                    allows_nul: true,
                },
            ),
            (
                "price".into(),
                ColumnType::Decimal {
                    precision: Some(12),
                    scale: Some(2),
                },
            ),
            (
                "qty".into(),
                ColumnType::Int {
                    bytes: 4,
                    unsigned: false,
                },
            ),
            (
                "updated_at".into(),
                ColumnType::Timestamp { fsp: 6, min, max },
            ),
        ],
        key: vec![0],
    }
}

fn row(i: i64) -> Vec<Value> {
    let at = NaiveDate::from_ymd_opt(2024, 1, 1)
        .expect("d")
        .and_hms_micro_opt(0, 0, 0, 123_456)
        .expect("t");
    vec![
        Value::Int(i),
        Value::Text(format!("SKU-{i:08}")),
        Value::Text(format!("Product number {i} with a longer title")),
        Value::Decimal(BigDecimal::from_str(&format!("{}.{:02}", i % 1000, i % 100)).expect("dec")),
        Value::Int(i % 500),
        Value::Timestamp(at),
    ]
}

fn position() -> Position {
    let mut g = GtidSet::mariadb();
    g.record_mariadb(0, 1, 1).expect("gtid");
    Position::MySqlGtid {
        gtid: g,
        file: None,
        pos: None,
    }
}

async fn apply(sink: &mut MySqlSink, t: &TargetTable, writes: Vec<RowWrite>) -> f64 {
    let start = Instant::now();
    sink.begin().await.expect("begin");
    for batch in writes.chunks(BATCH) {
        sink.write(t, batch).await.expect("write");
    }
    sink.commit("bench", &position(), Utc::now())
        .await
        .expect("commit");
    writes.len() as f64 / start.elapsed().as_secs_f64()
}

/// One TSV line per row in LOAD DATA's default escaping.
fn tsv(i: i64) -> String {
    format!(
        "{i}\tSKU-{i:08}\tProduct number {i} with a longer title\t{}.{:02}\t{}\t2024-01-01 00:00:00.123456\n",
        i % 1000,
        i % 100,
        i % 500
    )
}

async fn load_data(conn: &mut mysql_async::Conn, replace: bool) -> f64 {
    let start = Instant::now();
    conn.set_infile_handler(async move {
        let chunks = (0..ROWS).step_by(1000).map(|from| {
            let s: String = (from..(from + 1000).min(ROWS)).map(tsv).collect();
            Ok(bytes::Bytes::from(s))
        });
        Ok(futures::stream::iter(chunks).boxed())
    });
    conn.query_drop("START TRANSACTION").await.expect("begin");
    let verb = if replace { "REPLACE" } else { "" };
    conn.query_drop(format!(
        "LOAD DATA LOCAL INFILE 'rows' {verb} INTO TABLE products CHARACTER SET utf8mb4 \
         (id, sku, title, price, qty, updated_at)"
    ))
    .await
    .expect("load data");
    assert_eq!(
        conn.get_warnings(),
        0,
        "LOAD DATA LOCAL turns bad values into warnings"
    );
    conn.query_drop("COMMIT").await.expect("commit");
    ROWS as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test]
#[ignore = "measurement; run alone"]
async fn apply_rate_100k_rows() {
    let maria = shared_maria().await;
    let db = maria.create_database("bench_sink").await.expect("db");
    maria.sql(&db.name, DDL).await.expect("ddl");
    let t = table(&db.name);
    let mut sink = MySqlSink::connect(&endpoint(db.url()), None)
        .await
        .expect("sink");

    let inserts: Vec<RowWrite> = (0..ROWS)
        .map(|i| RowWrite::Insert { values: row(i) })
        .collect();
    let insert_rate = apply(&mut sink, &t, inserts.clone()).await;
    let changed: Vec<RowWrite> = (0..ROWS)
        .map(|i| {
            let mut values = row(i);
            values[4] = Value::Int(i % 500 + 1);
            RowWrite::Insert { values }
        })
        .collect();
    let upsert_rate = apply(&mut sink, &t, changed).await;
    drop(inserts);
    let updates: Vec<RowWrite> = (0..ROWS)
        .map(|i| RowWrite::Update {
            key: vec![Value::Int(i)],
            columns: vec![(4, Value::Int(i % 77)), (2, Value::Text(format!("t{i}")))],
        })
        .collect();
    let update_rate = apply(&mut sink, &t, updates).await;
    let deletes: Vec<RowWrite> = (0..ROWS)
        .map(|i| RowWrite::Delete {
            key: vec![Value::Int(i)],
        })
        .collect();
    let delete_rate = apply(&mut sink, &t, deletes).await;

    let mut conn = connect(&endpoint(db.url()), None).await.expect("connect");
    let load_rate = load_data(&mut conn, false).await;
    let replace_rate = load_data(&mut conn, true).await;
    let count: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM products")
        .await
        .expect("q");
    assert_eq!(count, Some(ROWS));

    println!("sink INSERT … ON DUPLICATE KEY UPDATE, new rows:      {insert_rate:>9.0} rows/s");
    println!("sink INSERT … ON DUPLICATE KEY UPDATE, existing rows: {upsert_rate:>9.0} rows/s");
    println!("sink UPDATE … JOIN (2 columns):                       {update_rate:>9.0} rows/s");
    println!("sink DELETE … IN:                                     {delete_rate:>9.0} rows/s");
    println!("LOAD DATA LOCAL, new rows:                            {load_rate:>9.0} rows/s");
    println!("LOAD DATA LOCAL REPLACE, existing rows:               {replace_rate:>9.0} rows/s");
}
