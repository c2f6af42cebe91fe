//! Apply rate of 100k upserts, `unnest` arrays against `COPY` + `INSERT … ON CONFLICT`.
//! A measurement, not a check: ignored by default, run with
//! `cargo nextest run -p tandem-postgres --run-ignored only -E 'binary(sink_apply_rate)' --no-capture`.
#![allow(clippy::unwrap_used)]

mod sink_support;

use std::str::FromStr;
use std::time::Instant;

use bigdecimal::BigDecimal;
use chrono::{TimeZone, Utc};
use sink_support::{client, database, sink, target};
use tandem_core::sink::{RowWrite, Sink};
use tandem_core::{Lsn, Position, Value};
use tandem_testkit::shared_pg;

const ROWS: i64 = 100_000;

fn row(i: i64, pass: i64) -> RowWrite {
    RowWrite::Insert {
        values: vec![
            Value::Int(i),
            Value::Text(format!("SKU-{i:08}")),
            Value::Text(format!("Product number {i}, pass {pass}")),
            Value::Int(i % 1000 + pass),
            Value::Decimal(
                BigDecimal::from_str(&format!("{}.{:02}", i % 10_000, i % 100)).unwrap_or_default(),
            ),
            Value::TimestampTz(Utc.timestamp_opt(1_700_000_000 + i, 0).unwrap()),
        ],
    }
}

#[tokio::test]
#[ignore = "measurement; see the module docs"]
async fn apply_rate_of_100k_upserts() {
    let pg = shared_pg().await;
    let setup = "CREATE TABLE items (id bigint PRIMARY KEY, sku text UNIQUE, name text, qty int,
                 price numeric(12,2), updated_at timestamptz)";
    let db = database(pg, "apply_rate", setup).await;
    let table = target(&db, "items").await;
    let c = client(&db).await;
    let mut lsn = 0;
    for (label, copy) in [("copy+merge", true), ("unnest", false)] {
        for batch in [20_000usize, 5_000, 1_000] {
            let mut sink = sink(&db).await;
            sink.set_copy_threshold(if copy { 1 } else { usize::MAX });
            c.batch_execute("TRUNCATE items").await.unwrap();
            // Pass 0 inserts fresh keys, pass 1 updates every row through ON CONFLICT.
            for pass in 0..2 {
                let started = Instant::now();
                let mut i = 0;
                while i < ROWS {
                    let end = (i + batch as i64).min(ROWS);
                    let writes: Vec<RowWrite> = (i..end).map(|k| row(k, pass)).collect();
                    sink.begin().await.unwrap();
                    sink.write(&table, &writes).await.unwrap();
                    lsn += 1;
                    sink.commit("bench", &Position::PgLsn { lsn: Lsn(lsn) }, Utc::now())
                        .await
                        .unwrap();
                    i = end;
                }
                let secs = started.elapsed().as_secs_f64();
                let kind = if pass == 0 { "insert" } else { "upsert-over" };
                println!(
                    "{label:>10} batch {batch:>6} {kind:>11}: {ROWS} rows in {secs:6.2} s = {:>7.0} rows/s",
                    ROWS as f64 / secs
                );
            }
            let n: i64 = c
                .query_one("SELECT count(*) FROM items WHERE qty = id % 1000 + 1", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, ROWS);
        }
    }
}
