#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proptest::prelude::*;
use tandem_core::change::{Cell, OldRow, RowChange};
use tandem_core::position::Lsn;
use tandem_core::value::{ColumnType, Value};

use super::*;
use crate::types::oid;

/// Builds wire messages the way the server does, for tests.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn tag(t: u8) -> Self {
        Msg(vec![t])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    /// TupleData: `None` = `n`, `Some(None)` = `u`, `Some(Some(text))` = `t`.
    fn tuple(mut self, cells: &[Option<Option<&str>>]) -> Self {
        self = self.i16(i16::try_from(cells.len()).unwrap());
        for c in cells {
            self = match c {
                None => self.u8(b'n'),
                Some(None) => self.u8(b'u'),
                Some(Some(t)) => {
                    let mut m = self.u8(b't').i32(i32::try_from(t.len()).unwrap());
                    m.0.extend_from_slice(t.as_bytes());
                    m
                }
            };
        }
        self
    }
}

/// `public.items(sku int4 key, name text, price numeric(12,2), note text)`.
fn relation(identity: u8, key_flags: [u8; 4]) -> Vec<u8> {
    Msg::tag(b'R')
        .u32(16400)
        .str("public")
        .str("items")
        .u8(identity)
        .i16(4)
        .u8(key_flags[0])
        .str("sku")
        .u32(oid::INT4)
        .i32(-1)
        .u8(key_flags[1])
        .str("name")
        .u32(oid::TEXT)
        .i32(-1)
        .u8(key_flags[2])
        .str("price")
        .u32(oid::NUMERIC)
        .i32((12 << 16 | 2) + 4)
        .u8(key_flags[3])
        .str("note")
        .u32(oid::TEXT)
        .i32(-1)
        .0
}

fn samples() -> Vec<Vec<u8>> {
    vec![
        Msg::tag(b'B').u64(0x100).u64(7).u32(42).0,
        Msg::tag(b'C').u8(0).u64(0x100).u64(0x180).u64(7).0,
        Msg::tag(b'O').u64(0x55).str("tandem").0,
        relation(b'f', [1, 1, 1, 1]),
        Msg::tag(b'Y').u32(70000).str("public").str("mood").0,
        Msg::tag(b'I')
            .u32(16400)
            .u8(b'N')
            .tuple(&[Some(Some("1")), Some(Some("a")), None, None])
            .0,
        Msg::tag(b'U')
            .u32(16400)
            .u8(b'O')
            .tuple(&[
                Some(Some("1")),
                Some(Some("a")),
                Some(Some("1.00")),
                Some(Some("long")),
            ])
            .u8(b'N')
            .tuple(&[
                Some(Some("1")),
                Some(Some("b")),
                Some(Some("2.00")),
                Some(None),
            ])
            .0,
        Msg::tag(b'D')
            .u32(16400)
            .u8(b'K')
            .tuple(&[Some(Some("1")), None, None, None])
            .0,
        Msg::tag(b'T').u32(1).u8(3).u32(16400).0,
        Msg::tag(b'M')
            .u8(1)
            .u64(0x90)
            .str("tandem")
            .u32(3)
            .u8(1)
            .u8(2)
            .u8(3)
            .0,
    ]
}

#[test]
fn every_message_kind_parses() {
    let samples = samples();
    let kinds: Vec<_> = samples
        .iter()
        .map(|m| std::mem::discriminant(&parse(m).unwrap()))
        .collect();
    let unique: std::collections::HashSet<_> = kinds.iter().collect();
    assert_eq!(unique.len(), 10, "all ten message kinds");
}

#[test]
fn begin_commit_origin_carry_positions_and_times() {
    let mut d = Decoder::new();
    let begin = d
        .decode(&Msg::tag(b'B').u64(0x1_0000_0100).u64(1_000_000).u32(9).0)
        .unwrap();
    match begin {
        Decoded::Begin {
            final_lsn,
            commit_time,
            xid,
        } => {
            assert_eq!(final_lsn, Lsn(0x1_0000_0100));
            assert_eq!(commit_time.to_rfc3339(), "2000-01-01T00:00:01+00:00");
            assert_eq!(xid, 9);
        }
        other => panic!("{other:?}"),
    }
    let commit = d
        .decode(&Msg::tag(b'C').u8(0).u64(0x100).u64(0x180).u64(0).0)
        .unwrap();
    assert!(matches!(
        commit,
        Decoded::Commit {
            end_lsn: Lsn(0x180),
            commit_lsn: Lsn(0x100),
            ..
        }
    ));
    let origin = d.decode(&Msg::tag(b'O').u64(5).str("tandem").0).unwrap();
    assert_eq!(
        origin,
        Decoded::Origin {
            name: "tandem".into(),
            origin_lsn: Lsn(5)
        }
    );
}

#[test]
fn relation_key_flags_and_full_identity() {
    let mut d = Decoder::new();
    // DEFAULT identity: only sku is flagged.
    let Decoded::Relation(s) = d.decode(&relation(b'd', [1, 0, 0, 0])).unwrap() else {
        panic!()
    };
    assert_eq!(s.key, vec![0]);
    assert_eq!(s.table.to_string(), "public.items");
    assert_eq!(
        s.columns[2].column_type,
        ColumnType::Decimal {
            precision: Some(12),
            scale: Some(2)
        }
    );
    assert_eq!(s.columns[2].native_type, "numeric(12,2)");
    // FULL marks every column even if a server left a flag off.
    let Decoded::Relation(s) = d.decode(&relation(b'f', [1, 1, 0, 1])).unwrap() else {
        panic!()
    };
    assert_eq!(s.key, vec![0, 1, 2, 3]);
    // The cache holds the newest version.
    assert_eq!(d.relation(16400).unwrap().key, vec![0, 1, 2, 3]);
}

#[test]
fn update_under_full_fills_unchanged_toast_from_old_image() {
    let mut d = Decoder::new();
    d.decode(&relation(b'f', [1, 1, 1, 1])).unwrap();
    let Decoded::Change(c) = d.decode(&samples()[6]).unwrap() else {
        panic!()
    };
    let RowChange::Update {
        old: OldRow::Full(old),
        new,
    } = c.row
    else {
        panic!()
    };
    assert_eq!(old.0[3], Cell::Value(Value::Text("long".into())));
    assert_eq!(
        new.0[3],
        Cell::Value(Value::Text("long".into())),
        "filled from the old image"
    );
    assert_eq!(new.0[1], Cell::Value(Value::Text("b".into())));
}

#[test]
fn update_without_old_image_keeps_unchanged_and_missing() {
    let mut d = Decoder::new();
    d.decode(&relation(b'd', [1, 0, 0, 0])).unwrap();
    let msg = Msg::tag(b'U')
        .u32(16400)
        .u8(b'N')
        .tuple(&[Some(Some("1")), Some(Some("b")), None, Some(None)])
        .0;
    let Decoded::Change(c) = d.decode(&msg).unwrap() else {
        panic!()
    };
    let RowChange::Update { old, new } = c.row else {
        panic!()
    };
    assert_eq!(old, OldRow::Missing);
    assert_eq!(new.0[3], Cell::Unchanged);
    assert_eq!(new.0[2], Cell::Value(Value::Null));
    // A key change sends a K image.
    let msg = Msg::tag(b'U')
        .u32(16400)
        .u8(b'K')
        .tuple(&[Some(Some("1")), None, None, None])
        .u8(b'N')
        .tuple(&[Some(Some("2")), Some(Some("b")), None, None])
        .0;
    let Decoded::Change(c) = d.decode(&msg).unwrap() else {
        panic!()
    };
    let RowChange::Update {
        old: OldRow::KeyOnly(k),
        ..
    } = c.row
    else {
        panic!()
    };
    assert_eq!(k.0[0], Cell::Value(Value::Int(1)));
}

#[test]
fn delete_and_truncate_name_their_tables() {
    let mut d = Decoder::new();
    d.decode(&relation(b'd', [1, 0, 0, 0])).unwrap();
    let Decoded::Change(c) = d.decode(&samples()[7]).unwrap() else {
        panic!()
    };
    assert!(matches!(
        c.row,
        RowChange::Delete {
            old: OldRow::KeyOnly(_)
        }
    ));
    let Decoded::Truncate {
        tables,
        cascade,
        restart_identity,
    } = d.decode(&samples()[8]).unwrap()
    else {
        panic!()
    };
    assert!(cascade && restart_identity);
    assert!(Arc::ptr_eq(&tables[0], d.relation(16400).unwrap()));
}

#[test]
fn enums_known_before_their_relation_decode_as_enum() {
    let mut d = Decoder::new();
    let t = d.decode(&samples()[4]).unwrap();
    assert_eq!(
        t,
        Decoded::Type {
            oid: 70000,
            name: "mood".into()
        }
    );
    d.set_enum_labels(70000, vec!["sad".into(), "happy".into()]);
    let rel = Msg::tag(b'R')
        .u32(1)
        .str("s")
        .str("t")
        .u8(b'd')
        .i16(1)
        .u8(1)
        .str("m")
        .u32(70000)
        .i32(-1)
        .0;
    let Decoded::Relation(s) = d.decode(&rel).unwrap() else {
        panic!()
    };
    assert_eq!(
        s.columns[0].column_type,
        ColumnType::Enum {
            labels: vec!["sad".into(), "happy".into()]
        }
    );
    assert_eq!(s.columns[0].native_type, "mood");
    assert_eq!(s.table.to_string(), "s.t");
    let ins = Msg::tag(b'I')
        .u32(1)
        .u8(b'N')
        .tuple(&[Some(Some("happy"))])
        .0;
    let Decoded::Change(c) = d.decode(&ins).unwrap() else {
        panic!()
    };
    assert_eq!(
        c.row,
        RowChange::Insert {
            new: tandem_core::Row::from_values([Value::Text("happy".into())])
        }
    );
}

#[test]
fn malformed_input_is_a_typed_error() {
    let mut d = Decoder::new();
    assert!(matches!(
        d.decode(&[]),
        Err(DecoderError::Parse(ParseError::Truncated { .. }))
    ));
    assert!(matches!(
        d.decode(b"Z"),
        Err(DecoderError::Parse(ParseError::UnknownTag { tag: b'Z' }))
    ));
    // A row before its relation.
    assert_eq!(
        d.decode(&samples()[5]),
        Err(DecoderError::UnknownRelation { oid: 16400 })
    );
    d.decode(&relation(b'd', [1, 0, 0, 0])).unwrap();
    // Wrong column count.
    let short = Msg::tag(b'I')
        .u32(16400)
        .u8(b'N')
        .tuple(&[Some(Some("1"))])
        .0;
    assert!(matches!(
        d.decode(&short),
        Err(DecoderError::ColumnCount {
            expected: 4,
            got: 1,
            ..
        })
    ));
    // A value that is not the column's type.
    let bad = Msg::tag(b'I')
        .u32(16400)
        .u8(b'N')
        .tuple(&[Some(Some("x")), None, None, None])
        .0;
    assert!(matches!(d.decode(&bad), Err(DecoderError::Value { .. })));
    // Trailing garbage.
    let mut long = samples()[0].clone();
    long.push(0);
    assert!(matches!(
        d.decode(&long),
        Err(DecoderError::Parse(ParseError::TrailingBytes { .. }))
    ));
    // A hostile truncate count does not allocate.
    let t = Msg::tag(b'T').u32(u32::MAX).u8(0).0;
    assert!(d.decode(&t).is_err());
    // Every strict prefix of every valid message is an error, never a panic.
    for m in samples() {
        for n in 0..m.len() {
            assert!(parse(&m[..n]).is_err(), "prefix {n} of {m:?}");
        }
    }
}

/// A decoder that has seen the sample relation, so row messages reach the value decoders.
fn primed() -> Decoder {
    let mut d = Decoder::new();
    d.decode(&relation(b'f', [1, 1, 1, 1])).unwrap();
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = primed().decode(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0usize..10,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<Option<usize>>(),
    ) {
        let mut m = samples().swap_remove(which);
        for (pos, byte) in edits {
            if !m.is_empty() {
                let i = pos % m.len();
                m[i] = byte;
            }
        }
        if let Some(c) = cut {
            m.truncate(c % (m.len() + 1));
        }
        let _ = primed().decode(&m);
    }
}
