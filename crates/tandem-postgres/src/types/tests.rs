#![allow(clippy::unwrap_used)]
use super::*;

fn ty(oid: u32, typmod: i32) -> ColumnType {
    column_type(oid, typmod, "x")
}

/// Decode, check, encode, and decode again: text → value → text must be stable.
fn round_trip(t: &ColumnType, oid: u32, text: &str) -> Value {
    let v = decode_text(t, oid, text).unwrap();
    let again = decode_text(t, oid, &encode_text(&v).unwrap()).unwrap();
    assert_eq!(v, again, "{text} did not survive encode → decode");
    v
}

#[test]
fn column_types_follow_modifiers() {
    assert_eq!(
        ty(oid::NUMERIC, (12 << 16 | 2) + 4),
        ColumnType::Decimal {
            precision: Some(12),
            scale: Some(2)
        }
    );
    assert_eq!(
        ty(oid::NUMERIC, -1),
        ColumnType::Decimal {
            precision: None,
            scale: None
        }
    );
    assert!(matches!(
        ty(oid::NUMERIC, (5 << 16 | (-2i32 & 0x7ff)) + 4),
        ColumnType::Unsupported { .. }
    ));
    assert_eq!(
        ty(oid::VARCHAR, 40 + 4),
        ColumnType::Text {
            max_chars: Some(40),
            allows_nul: false
        }
    );
    assert_eq!(
        ty(oid::TEXT, -1),
        ColumnType::Text {
            max_chars: None,
            allows_nul: false
        }
    );
    assert_eq!(
        ty(oid::BPCHAR, 3 + 4),
        ColumnType::Text {
            max_chars: Some(3),
            allows_nul: false
        }
    );
    assert_eq!(ty(oid::TIME, 3), ColumnType::Time { fsp: 3 });
    assert_eq!(ty(oid::TIME, -1), ColumnType::Time { fsp: 6 });
    assert!(matches!(
        ty(oid::TIMESTAMPTZ, 0),
        ColumnType::TimestampTz { fsp: 0, .. }
    ));
    assert_eq!(
        column_type(1186, -1, "interval"),
        ColumnType::Unsupported {
            type_name: "interval".into()
        }
    );
    assert_eq!(
        column_type(99_999, -1, "mood"),
        ColumnType::Unsupported {
            type_name: "mood".into()
        }
    );
    match ty(oid::DATE, -1) {
        ColumnType::Date { min, .. } => assert_eq!(min.to_string(), "-4712-01-01"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn integers_at_their_limits() {
    let i2 = ty(oid::INT2, -1);
    assert_eq!(round_trip(&i2, oid::INT2, "-32768"), Value::Int(-32768));
    let i8 = ty(oid::INT8, -1);
    assert_eq!(
        round_trip(&i8, oid::INT8, "9223372036854775807"),
        Value::Int(i64::MAX)
    );
    assert_eq!(
        round_trip(&i8, oid::INT8, "-9223372036854775808"),
        Value::Int(i64::MIN)
    );
    assert!(decode_text(&i8, oid::INT8, "9223372036854775808").is_err());
    assert!(decode_text(&i8, oid::INT8, "").is_err());
    assert_eq!(
        round_trip(&ty(oid::OID, -1), oid::OID, "4294967295"),
        Value::Int(4_294_967_295)
    );
    let b = ty(oid::BOOL, -1);
    assert_eq!(round_trip(&b, oid::BOOL, "t"), Value::Bool(true));
    assert_eq!(round_trip(&b, oid::BOOL, "f"), Value::Bool(false));
    assert!(decode_text(&b, oid::BOOL, "true").is_err());
}

#[test]
fn numerics_keep_every_digit() {
    let n = ty(oid::NUMERIC, -1);
    let long = format!("-{}.{}", "9".repeat(1000), "1".repeat(1000));
    match round_trip(&n, oid::NUMERIC, &long) {
        Value::Decimal(d) => assert_eq!(d.to_plain_string(), long),
        other => panic!("{other:?}"),
    }
    // Trailing zeros are the column's scale: kept on the way back.
    let v = round_trip(&n, oid::NUMERIC, "1.50");
    assert_eq!(encode_text(&v).unwrap(), "1.50");
    assert_eq!(
        encode_text(&round_trip(&n, oid::NUMERIC, "0.000001")).unwrap(),
        "0.000001"
    );
    for special in ["NaN", "Infinity", "-Infinity"] {
        assert!(matches!(
            decode_text(&n, oid::NUMERIC, special).unwrap(),
            Value::Unsupported { .. }
        ));
    }
    assert!(decode_text(&n, oid::NUMERIC, "1e999999999").is_err());
    assert!(decode_text(&n, oid::NUMERIC, "12abc").is_err());
}

#[test]
fn floats_keep_sign_of_zero_and_specials() {
    let f8 = ty(oid::FLOAT8, -1);
    match round_trip(&f8, oid::FLOAT8, "-0") {
        Value::Float(x) => assert!(x == 0.0 && x.is_sign_negative()),
        other => panic!("{other:?}"),
    }
    assert_eq!(round_trip(&f8, oid::FLOAT8, "1e+300"), Value::Float(1e300));
    assert_eq!(
        round_trip(&f8, oid::FLOAT8, "2.2250738585072014e-308"),
        Value::Float(f64::MIN_POSITIVE)
    );
    assert_eq!(round_trip(&f8, oid::FLOAT8, "0.1"), Value::Float(0.1));
    assert_eq!(
        round_trip(&f8, oid::FLOAT8, "-Infinity"),
        Value::Float(f64::NEG_INFINITY)
    );
    assert!(matches!(decode_text(&f8, oid::FLOAT8, "NaN").unwrap(), Value::Float(x) if x.is_nan()));
    assert_eq!(encode_text(&Value::Float(f64::NAN)).unwrap(), "NaN");
    assert!(decode_text(&f8, oid::FLOAT8, "inf").is_err());
    // float4 text is the shortest for the f32; widening keeps the f32's exact value.
    let f4 = ty(oid::FLOAT4, -1);
    assert_eq!(
        decode_text(&f4, oid::FLOAT4, "0.1").unwrap(),
        Value::Float(f64::from(0.1f32))
    );
    assert_eq!(encode_text(&Value::Float(1e300)).unwrap(), "1e300");
    assert_eq!(encode_text(&Value::Float(1.5e-7)).unwrap(), "1.5e-7");
}

#[test]
fn dates_cover_bc_and_far_future() {
    let d = ty(oid::DATE, -1);
    assert_eq!(
        round_trip(&d, oid::DATE, "0044-03-15 BC"),
        Value::Date(NaiveDate::from_ymd_opt(-43, 3, 15).unwrap())
    );
    assert_eq!(
        round_trip(&d, oid::DATE, "4713-01-01 BC"),
        Value::Date(NaiveDate::from_ymd_opt(-4712, 1, 1).unwrap())
    );
    assert_eq!(
        round_trip(&d, oid::DATE, "0001-01-01"),
        Value::Date(NaiveDate::from_ymd_opt(1, 1, 1).unwrap())
    );
    assert_eq!(
        encode_text(&Value::Date(NaiveDate::from_ymd_opt(0, 12, 31).unwrap())).unwrap(),
        "0001-12-31 BC"
    );
    assert_eq!(
        round_trip(&d, oid::DATE, "12345-06-07"),
        Value::Date(NaiveDate::from_ymd_opt(12345, 6, 7).unwrap())
    );
    for unrepresentable in ["infinity", "-infinity", "5874897-12-31"] {
        assert!(matches!(
            decode_text(&d, oid::DATE, unrepresentable).unwrap(),
            Value::Unsupported { .. }
        ));
    }
    assert!(decode_text(&d, oid::DATE, "2024-02-30").is_err());
    assert!(decode_text(&d, oid::DATE, "2024-1-1x").is_err());
}

#[test]
fn times_and_timestamps_keep_microseconds() {
    let t = ty(oid::TIME, -1);
    assert_eq!(
        round_trip(&t, oid::TIME, "23:59:59.999999"),
        Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap())
    );
    assert_eq!(
        decode_text(&t, oid::TIME, "01:02:03.5").unwrap(),
        Value::Time(NaiveTime::from_hms_micro_opt(1, 2, 3, 500_000).unwrap())
    );
    assert!(matches!(
        decode_text(&t, oid::TIME, "24:00:00").unwrap(),
        Value::Unsupported { .. }
    ));
    assert!(decode_text(&t, oid::TIME, "12:00:60").is_err());
    assert!(decode_text(&t, oid::TIME, "12:00:00.1234567").is_err());

    let ts = ty(oid::TIMESTAMP, -1);
    let v = round_trip(&ts, oid::TIMESTAMP, "2024-03-31 02:30:00.123456");
    assert_eq!(encode_text(&v).unwrap(), "2024-03-31 02:30:00.123456");
    let bc = round_trip(&ts, oid::TIMESTAMP, "0044-03-15 12:00:00 BC");
    assert_eq!(encode_text(&bc).unwrap(), "0044-03-15 12:00:00.000000 BC");
    assert!(matches!(
        decode_text(&ts, oid::TIMESTAMP, "infinity").unwrap(),
        Value::Unsupported { .. }
    ));

    let tz = ty(oid::TIMESTAMPTZ, -1);
    let v = round_trip(&tz, oid::TIMESTAMPTZ, "2024-03-31 02:30:00.123456+00");
    assert_eq!(encode_text(&v).unwrap(), "2024-03-31 02:30:00.123456+00");
    // Another zone is converted, not misread as UTC.
    assert_eq!(
        decode_text(&tz, oid::TIMESTAMPTZ, "2024-03-31 08:00:00.123456+05:30").unwrap(),
        v
    );
    assert_eq!(
        decode_text(&tz, oid::TIMESTAMPTZ, "2024-03-30 21:30:00.123456-05").unwrap(),
        v
    );
    assert!(matches!(
        decode_text(&tz, oid::TIMESTAMPTZ, "-infinity").unwrap(),
        Value::Unsupported { .. }
    ));
    assert!(decode_text(&tz, oid::TIMESTAMPTZ, "2024-03-31 02:30:00").is_err());
    let bc = round_trip(&tz, oid::TIMESTAMPTZ, "0001-01-01 00:00:00+00 BC");
    assert_eq!(
        encode_text(&bc).unwrap(),
        "0001-01-01 00:00:00.000000+00 BC"
    );
}

#[test]
fn text_bytes_json_uuid() {
    let t = ty(oid::TEXT, -1);
    assert_eq!(
        round_trip(&t, oid::TEXT, "héllo 🦀\ttab"),
        Value::Text("héllo 🦀\ttab".into())
    );
    assert_eq!(round_trip(&t, oid::TEXT, ""), Value::Text(String::new()));
    let b = ty(oid::BYTEA, -1);
    assert_eq!(
        round_trip(&b, oid::BYTEA, "\\x00ff10"),
        Value::Bytes(vec![0, 255, 16])
    );
    assert_eq!(round_trip(&b, oid::BYTEA, "\\x"), Value::Bytes(vec![]));
    assert_eq!(
        decode_text(&b, oid::BYTEA, "a\\000\\\\").unwrap(),
        Value::Bytes(vec![b'a', 0, b'\\'])
    );
    assert!(decode_text(&b, oid::BYTEA, "\\x0").is_err());
    assert!(decode_text(&b, oid::BYTEA, "\\xzz").is_err());
    let j = ty(oid::JSONB, -1);
    assert_eq!(
        round_trip(&j, oid::JSONB, "{\"a\": [1, 2]}"),
        Value::Json("{\"a\": [1, 2]}".into())
    );
    let u = ty(oid::UUID, -1);
    let v = round_trip(&u, oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(
        encode_text(&v).unwrap(),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    assert_eq!(
        round_trip(&enum_type(vec![]), 70_000, "happy"),
        Value::Text("happy".into())
    );
    let other = column_type(1186, -1, "interval");
    assert_eq!(
        decode_text(&other, 1186, "1 day").unwrap(),
        Value::Unsupported {
            type_name: "interval".into(),
            text: "1 day".into()
        }
    );
    assert_eq!(encode_text(&Value::Null), None);
}

#[test]
fn decode_never_panics_on_garbage() {
    let types: Vec<ColumnType> = [
        oid::BOOL,
        oid::INT2,
        oid::INT8,
        oid::OID,
        oid::FLOAT4,
        oid::FLOAT8,
        oid::NUMERIC,
        oid::TEXT,
        oid::BYTEA,
        oid::DATE,
        oid::TIME,
        oid::TIMESTAMP,
        oid::TIMESTAMPTZ,
        oid::JSON,
        oid::UUID,
    ]
    .iter()
    .map(|o| ty(*o, -1))
    .collect();
    let inputs = [
        "",
        "-",
        "+",
        ".",
        "BC",
        " BC",
        "--",
        "1-1-1 1:1:1+",
        "99999999999-01-01",
        "2024-01-01 25:00:00",
        "\\x",
        "\\",
        "\\9",
        "é",
        "1.2.3",
        "-0-0-0",
        ":::",
        "0:0:0.",
        "2024-01-01 00:00:00+99:99:99:99",
        "+-1",
        "262143-12-31",
        "-262144-01-01",
    ];
    for t in &types {
        for s in inputs {
            let _ = decode_text(t, 0, s);
        }
    }
}

proptest::proptest! {
    /// The hand-written time format prints what chrono's `%H:%M:%S%.6f` prints, leap
    /// seconds (nanoseconds ≥ 10⁹ of second 59) included.
    #[test]
    fn time_format_matches_chrono(secs in 0u32..86_400, nano in 0u32..2_000_000_000) {
        let nano = if secs % 60 == 59 { nano } else { nano % 1_000_000_000 };
        if let Some(t) = NaiveTime::from_num_seconds_from_midnight_opt(secs, nano) {
            proptest::prop_assert_eq!(format_time(t), t.format("%H:%M:%S%.6f").to_string());
        }
    }
}
