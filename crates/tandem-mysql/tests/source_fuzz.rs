//! Fuzzing the binlog decoders: random bytes, and mutations of well-formed events, never
//! make a parser panic — they decode or return a typed error.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tandem_mysql::binlog::events::{self, MariaGtid, MySqlGtid, Query, Rotate, XaPrepare, Xid};
use tandem_mysql::binlog::json;
use tandem_mysql::binlog::rows::RowsEvent;
use tandem_mysql::binlog::schema::TableDecoder;
use tandem_mysql::binlog::table_map::{column_type as ct, TableMap};
use tandem_mysql::binlog::EventHeader;

/// A TABLE_MAP covering every column type the decoder knows, with FULL metadata.
fn wide_table_map() -> Vec<u8> {
    let types: Vec<(u8, Vec<u8>)> = vec![
        (ct::TINY, vec![]),
        (ct::SHORT, vec![]),
        (ct::INT24, vec![]),
        (ct::LONG, vec![]),
        (ct::LONGLONG, vec![]),
        (ct::FLOAT, vec![4]),
        (ct::DOUBLE, vec![8]),
        (ct::NEWDECIMAL, vec![65, 30]),
        (ct::NEWDECIMAL, vec![10, 2]),
        (ct::YEAR, vec![]),
        (ct::DATE, vec![]),
        (ct::TIME2, vec![6]),
        (ct::TIME2, vec![3]),
        (ct::DATETIME2, vec![6]),
        (ct::TIMESTAMP2, vec![2]),
        (ct::TIME, vec![]),
        (ct::DATETIME, vec![]),
        (ct::TIMESTAMP, vec![]),
        (ct::VARCHAR, vec![0x2c, 0x01]),
        (ct::STRING, vec![ct::STRING, 40]),
        (ct::BLOB, vec![2]),
        (ct::BLOB, vec![4]),
        (ct::JSON, vec![4]),
        (ct::STRING, vec![ct::ENUM, 1]),
        (ct::STRING, vec![ct::SET, 2]),
        (ct::BIT, vec![5, 1]),
        (ct::GEOMETRY, vec![4]),
    ];
    let mut d = vec![42, 0, 0, 0, 0, 0, 1, 0, 2];
    d.extend(b"db\0");
    d.push(1);
    d.extend(b"t\0");
    d.push(u8::try_from(types.len()).unwrap());
    d.extend(types.iter().map(|(t, _)| *t));
    let meta: Vec<u8> = types.iter().flat_map(|(_, m)| m.clone()).collect();
    d.push(u8::try_from(meta.len()).unwrap());
    d.extend(meta);
    d.extend(vec![0xff; types.len().div_ceil(8)]);
    d.extend([1, 2, 0x80, 0]); // signedness
    d.extend([2, 1, 45]); // default charset utf8mb4
    d.extend([6, 3, 1, 1, b'a']); // enum labels
    d.extend([5, 5, 2, 1, b'x', 1, b'y']); // set labels
    d
}

fn rows_event(type_code_v2: bool, update: bool, n: usize, body: &[u8]) -> Vec<u8> {
    let mut d = vec![42, 0, 0, 0, 0, 0, 1, 0];
    if type_code_v2 {
        d.extend([2, 0]);
    }
    d.push(u8::try_from(n).unwrap());
    d.extend(vec![0xff; n.div_ceil(8) * if update { 2 } else { 1 }]);
    d.extend(body);
    d
}

/// A MySQL binary JSON document: `{"a": [1, "xy", {"k": null}], "bb": 2.5}` (small
/// containers, keys sorted by length as MySQL stores them).
fn json_doc() -> Vec<u8> {
    // Innermost object {"k": null}: count 1, size 12, key entry (off 11, len 1), value
    // entry (literal null inlined), key.
    let inner: Vec<u8> = vec![1, 0, 12, 0, 11, 0, 1, 0, 0x04, 0, 0, b'k'];
    let inner_len = inner.len();
    // Array [1, "xy", inner]: header 4 + 3 entries of 3 bytes = 13; "xy" at 13, inner at 16.
    let mut arr: Vec<u8> = vec![3, 0];
    arr.extend(u16::try_from(16 + inner_len).unwrap().to_le_bytes());
    arr.extend([0x05, 1, 0, 0x0c, 13, 0, 0x00, 16, 0]);
    arr.extend([2, b'x', b'y']);
    arr.extend(&inner);
    // Object: header 4 + 2 key entries (4) + 2 value entries (3) = 18, keys "a" "bb" at
    // 18..21, array at 21, double after it.
    let dbl_at = 21 + arr.len();
    let mut obj: Vec<u8> = vec![2, 0];
    obj.extend(u16::try_from(dbl_at + 8).unwrap().to_le_bytes());
    obj.extend([18, 0, 1, 0, 19, 0, 2, 0]);
    obj.extend([0x02, 21, 0, 0x0b]);
    obj.extend(u16::try_from(dbl_at).unwrap().to_le_bytes());
    obj.extend(b"abb");
    obj.extend(&arr);
    obj.extend(2.5f64.to_le_bytes());
    let mut doc = vec![0x00];
    doc.extend(obj);
    doc
}

#[test]
fn the_json_document_is_well_formed() {
    assert_eq!(
        json::to_text(&json_doc()).unwrap(),
        r#"{"a": [1, "xy", {"k": null}], "bb": 2.5}"#
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), t in any::<u8>()) {
        let _ = EventHeader::parse(&data);
        let _ = MariaGtid::parse(&data);
        let _ = events::parse_gtid_list(&data);
        let _ = events::parse_binlog_checkpoint(&data);
        let _ = Rotate::parse(&data, true);
        let _ = Query::parse(&data).map(|q| (q.kind(), q.xid()));
        let _ = events::parse_xid(&data);
        let _ = XaPrepare::parse(&data);
        let _ = Xid::parse_sql(&String::from_utf8_lossy(&data));
        let _ = MySqlGtid::parse(&data, t % 2 == 0);
        let _ = events::parse_previous_gtids(&data);
        let _ = json::to_text(&data);
        let _ = events::check_decodable(t);
        if let Ok(map) = TableMap::parse(&data) {
            if let Ok(dec) = TableDecoder::new(&map, None) {
                if let Ok(ev) = RowsEvent::parse(30 + t % 3, &data) {
                    let _ = dec.decode_rows(&ev, |_| {});
                }
            }
        }
        let _ = RowsEvent::parse(t, &data);
    }

    #[test]
    fn xa_statements_and_events_never_panic(tail in ".{0,80}", verb in prop::sample::select(vec!["COMMIT", "ROLLBACK", "START"]), body in proptest::collection::vec(any::<u8>(), 0..200), flags in any::<u8>()) {
        let mut q = vec![0u8; 8];
        q.extend([0, 0, 0, 0, 0, 0]); // schema length, error code, status length
        q.extend(format!("XA {verb} {tail}").as_bytes());
        let _ = Query::parse(&q).map(|q| (q.kind(), q.xid()));
        let _ = Xid::parse_sql(&tail);
        let mut gtid = 7u64.to_le_bytes().to_vec();
        gtid.extend(0u32.to_le_bytes());
        gtid.push(flags | MariaGtid::FL_PREPARED_XA);
        gtid.extend(&body);
        let _ = MariaGtid::parse(&gtid);
        let mut prep = vec![0u8];
        prep.extend(&body);
        let _ = XaPrepare::parse(&prep);
    }

    #[test]
    fn mutated_json_documents_never_panic(idx in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut d = json_doc();
        let i = idx.index(d.len());
        d[i] = byte;
        d.truncate(cut.index(d.len() + 1).max(i));
        let _ = json::to_text(&d);
    }

    #[test]
    fn mutated_table_maps_never_panic(idx in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut d = wide_table_map();
        let i = idx.index(d.len());
        d[i] = byte;
        d.truncate(cut.index(d.len() + 1).max(i));
        if let Ok(map) = TableMap::parse(&d) {
            let _ = TableDecoder::new(&map, None);
        }
    }

    #[test]
    fn random_rows_through_a_wide_table_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), v2 in any::<bool>(), kind in 0u8..3) {
        let map = TableMap::parse(&wide_table_map()).unwrap();
        let dec = TableDecoder::new(&map, None).unwrap();
        let ev = rows_event(v2, kind == 1, map.columns.len(), &body);
        let code = if v2 { 30 + kind } else { 23 + kind };
        let parsed = RowsEvent::parse(code, &ev).unwrap();
        let _ = dec.decode_rows(&parsed, |_| {});
    }
}

#[test]
fn the_wide_table_map_is_well_formed() {
    let map = TableMap::parse(&wide_table_map()).unwrap();
    assert_eq!(map.columns.len(), 27);
    let dec = TableDecoder::new(&map, None).unwrap();
    assert!(!dec.from_catalog);
    // A row of all NULLs decodes.
    let body = vec![0xff; 4];
    let ev = rows_event(false, false, 27, &body);
    let parsed = RowsEvent::parse(23, &ev).unwrap();
    let mut n = 0;
    dec.decode_rows(&parsed, |_| n += 1).unwrap();
    assert_eq!(n, 1);
}
