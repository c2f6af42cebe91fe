//! The initial snapshot against a real server: snapshot + stream is exactly the table under
//! concurrent writes, and both paths decode every type family alike.
#![allow(clippy::unwrap_used)]

mod source_support;

use std::collections::BTreeMap;
use std::time::Duration;

use source_support::{endpoint, table, transaction};
use tandem_core::change::{RowChange, SourceEvent};
use tandem_core::source::Source;
use tandem_core::Value;
use tandem_postgres::snapshot::PgSnapshot;
use tandem_postgres::source::PgSource;
use tandem_testkit::shared_pg;

fn id_of(row: &tandem_core::Row) -> i64 {
    match row.get(0).and_then(|c| c.value()) {
        Some(Value::Int(i)) => *i,
        other => panic!("id {other:?}"),
    }
}

#[tokio::test]
async fn source_snapshot_plus_stream_is_the_table_under_concurrent_inserts() {
    let pg = shared_pg().await;
    let db = pg.create_database("snap_conc").await.unwrap();
    pg.psql(&db.name, "CREATE TABLE t (id bigserial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'pre' FROM generate_series(1, 500); ANALYZE t;")
        .await
        .unwrap();
    let ep = endpoint(&db);

    // A writer that commits small transactions throughout the snapshot.
    let writer = {
        let url = db.url().to_owned();
        tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            for _ in 0..150 {
                c.batch_execute("INSERT INTO t (v) VALUES ('live'), ('live')")
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (snap, start) = PgSnapshot::begin(&ep, None, &[table("t")]).await.unwrap();
    let mut snap = snap.with_chunk_rows(97);
    let estimate = snap.progress(&table("t")).unwrap().estimated_total;
    assert!(estimate.is_some_and(|n| n >= 500), "{estimate:?}");
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    let mut chunks = 0;
    while let Some(rows) = snap.next_chunk(&table("t")).await.unwrap() {
        chunks += 1;
        for r in &rows {
            *seen.entry(id_of(r)).or_default() += 1;
        }
    }
    let from_snapshot = seen.len();
    assert!(chunks > 1, "read in chunks");
    assert_eq!(
        snap.progress(&table("t")).unwrap().rows_done,
        from_snapshot as u64
    );
    snap.finish().await.unwrap();
    writer.await.unwrap();

    let total: i64 = pg
        .psql(&db.name, "SELECT count(*) FROM t")
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut src = PgSource::start(&ep, None, &[table("t")], Some(&start))
        .await
        .unwrap();
    while (seen.len() as i64) < total {
        for ev in transaction(&mut src).await {
            if let SourceEvent::Change(c) = ev {
                let RowChange::Insert { new } = &c.row else {
                    panic!("{:?}", c.row)
                };
                *seen.entry(id_of(new)).or_default() += 1;
            }
        }
    }
    src.shutdown().await.unwrap();
    assert!(
        from_snapshot >= 500 && (from_snapshot as i64) < total,
        "writes straddled the snapshot"
    );
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "rows delivered twice: {doubled:?}");
    let ids: Vec<i64> = seen.keys().copied().collect();
    assert_eq!(
        ids,
        (1..=total).collect::<Vec<_>>(),
        "every row exactly once"
    );
}

#[tokio::test]
async fn source_snapshot_and_stream_decode_every_type_alike() {
    let pg = shared_pg().await;
    let db = pg.create_database("snap_types").await.unwrap();
    let create = include_str!("source_stream.rs");
    let ddl = between(create, "pub const ALL_TYPES: &str = \"", "\";");
    let row = between(create, "pub const ALL_TYPES_ROW: &str = \"", "\";")
        .replace("\\\"", "\"")
        .replace("\\\\", "\\");
    pg.psql(&db.name, &ddl).await.unwrap();
    pg.psql(&db.name, &row).await.unwrap();
    let ep = endpoint(&db);
    let (mut snap, start) = PgSnapshot::begin(&ep, None, &[table("every_type")])
        .await
        .unwrap();
    let rows = snap
        .next_chunk(&table("every_type"))
        .await
        .unwrap()
        .unwrap();
    let snap_schema = snap.schema(&table("every_type")).unwrap();
    snap.finish().await.unwrap();

    let mut src = PgSource::start(&ep, None, &[table("every_type")], Some(&start))
        .await
        .unwrap();
    pg.psql(&db.name, &row.replace("VALUES (\n  1,", "VALUES (\n  2,"))
        .await
        .unwrap();
    let tx = transaction(&mut src).await;
    src.shutdown().await.unwrap();
    let SourceEvent::Change(c) = &tx[1] else {
        panic!("{:?}", tx[1])
    };
    let RowChange::Insert { new } = &c.row else {
        panic!()
    };
    assert_eq!(
        *c.table, *snap_schema,
        "both paths describe the table alike"
    );
    assert_eq!(rows.len(), 1);
    let (a, b) = (&rows[0].0, &new.0);
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate().skip(1) {
        let (Some(x), Some(y)) = (x.value(), y.value()) else {
            panic!("column {i}")
        };
        match (x, y) {
            (Value::Float(p), Value::Float(q)) => {
                assert!(p.to_bits() == q.to_bits(), "column {i}: {p} vs {q}")
            }
            _ => assert_eq!(x, y, "column {i} ({})", snap_schema.columns[i].name),
        }
    }
}

fn between(s: &str, start: &str, end: &str) -> String {
    let from = s.find(start).unwrap() + start.len();
    let len = s[from..].find(end).unwrap();
    s[from..from + len].to_owned()
}
