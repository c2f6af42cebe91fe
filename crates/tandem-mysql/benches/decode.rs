//! Row-decoder throughput without a server: 200k rows of a typical retail table
//! (int key, varchar, decimal, int, datetime(6), timestamp(6)) in rows events of 100 rows,
//! decoded into tandem changes. `cargo bench -p tandem-mysql --bench decode`.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use tandem_mysql::binlog::rows::RowsEvent;
use tandem_mysql::binlog::schema::TableDecoder;
use tandem_mysql::binlog::table_map::{column_type as ct, TableMap};

fn table_map() -> Vec<u8> {
    let mut d = vec![1, 0, 0, 0, 0, 0, 1, 0, 2];
    d.extend(b"db\0");
    d.push(8);
    d.extend(b"products\0");
    d.push(6);
    d.extend([
        ct::LONG,
        ct::VARCHAR,
        ct::NEWDECIMAL,
        ct::LONG,
        ct::DATETIME2,
        ct::TIMESTAMP2,
    ]);
    let meta = [0xfc, 0x03, 12, 2, 6, 6];
    d.push(6);
    d.extend(meta);
    d.push(0b111110);
    d.extend([2, 1, 45]);
    d
}

fn row(i: u32) -> Vec<u8> {
    let mut r = vec![0u8]; // null bitmap
    r.extend(i.to_le_bytes());
    let name = format!("product number {i}");
    r.extend(u16::try_from(name.len()).unwrap().to_le_bytes());
    r.extend(name.as_bytes());
    // DECIMAL(12,2): 10 integer digits (1 + 4 bytes), 2 fraction digits (1 byte).
    r.extend([0x80, 0, 0, 0x30, 0x39, 0x63]);
    r.extend((i % 1000).to_le_bytes());
    // DATETIME(6) 2024-11-27 12:34:56.123456 (a valid date: a zero month or day would take
    // the `Value::Unsupported` text path instead of the one real rows take).
    r.extend([0x99, 0xb4, 0xf6, 0xc8, 0xb8, 0x01, 0xe2, 0x40]);
    // TIMESTAMP(6) 2023-09-12 06:06:56.123456 UTC.
    r.extend([0x65, 0x00, 0x00, 0x00, 0x01, 0xe2, 0x40]);
    r
}

fn main() {
    let map = TableMap::parse(&table_map()).unwrap();
    let dec = TableDecoder::new(&map, None).unwrap();
    let events: Vec<Vec<u8>> = (0..2000u32)
        .map(|e| {
            let mut d = vec![1, 0, 0, 0, 0, 0, 1, 0, 6, 0x3f];
            for i in 0..100 {
                d.extend(row(e * 100 + i));
            }
            d
        })
        .collect();
    // The bytes are valid values of their columns, as a server's are.
    let first = RowsEvent::parse(23, &events[0]).unwrap();
    dec.decode_rows(&first, |c| {
        let tandem_core::RowChange::Insert { new } = c else {
            panic!("not an insert");
        };
        assert!(new.0.iter().all(|cell| !matches!(
            cell,
            tandem_core::Cell::Value(tandem_core::Value::Unsupported { .. })
        )));
    })
    .unwrap();
    for round in 0..3 {
        let start = Instant::now();
        let mut rows = 0usize;
        for ev in &events {
            let parsed = RowsEvent::parse(23, ev).unwrap();
            rows += dec
                .decode_rows(&parsed, |c| drop(std::hint::black_box(c)))
                .unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {rows} rows in {secs:.3} s = {:.0} rows/s",
            rows as f64 / secs
        );
    }
}
