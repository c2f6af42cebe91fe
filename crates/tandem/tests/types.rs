//! Every type family crosses between PostgreSQL and MariaDB through the canonical value
//! model, in both directions and through both read paths (initial snapshot and stream),
//! with its edge values; values the other side cannot hold are dead-lettered with the
//! column and the reason, never changed silently.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_testkit::{shared_maria, shared_pg, MariaInstance, PgInstance};

const PG_TABLE: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE fam (
  id int PRIMARY KEY, b boolean, s smallint, i integer, big bigint, ubig numeric(20,0),
  dec numeric(65,30), f4 real, f8 double precision, t text, vc varchar(20), bin bytea,
  d date, tm time(6), ts timestamp(6), tz timestamptz(6), j jsonb, u uuid, e mood,
  loose numeric);
ALTER TABLE fam REPLICA IDENTITY FULL;";

const MY_TABLE: &str = "CREATE TABLE fam (
  id int PRIMARY KEY, b tinyint(1), s smallint, i int, big bigint, ubig bigint unsigned,
  `dec` decimal(65,30), f4 float, f8 double, t longtext, vc varchar(20), bin longblob,
  d date, tm time(6), ts datetime(6), tz datetime(6), j json, u char(36),
  e enum('sad','ok','happy'), loose decimal(12,2)) ENGINE=InnoDB";

const MAPPING: &str = r#"
[[mappings]]
name = "fam"
inventory = { table = "public.fam", key = ["id"] }
retail    = { table = "fam",        key = ["id"] }
conflict  = "manual"
columns = [
  { inventory = "id", retail = "id" }, { inventory = "b", retail = "b" },
  { inventory = "s", retail = "s" }, { inventory = "i", retail = "i" },
  { inventory = "big", retail = "big" }, { inventory = "ubig", retail = "ubig" },
  { inventory = "dec", retail = "dec" }, { inventory = "f4", retail = "f4" },
  { inventory = "f8", retail = "f8" }, { inventory = "t", retail = "t" },
  { inventory = "vc", retail = "vc" }, { inventory = "bin", retail = "bin" },
  { inventory = "d", retail = "d" }, { inventory = "tm", retail = "tm" },
  { inventory = "ts", retail = "ts" }, { inventory = "tz", retail = "tz" },
  { inventory = "j", retail = "j" }, { inventory = "u", retail = "u" },
  { inventory = "e", retail = "e" }, { inventory = "loose", retail = "loose" },
]
"#;

/// One canonical text line per row, rendered by each database itself.
/// Text as hex of its UTF-8 bytes, so that neither client's character set or escaping
/// can hide a difference; floats in shortest round-trip form.
const PG_RENDER: &str = "SELECT id, b::int, s, i, big, ubig, dec, f4, f8, encode(convert_to(t, 'UTF8'), 'hex'), \
  encode(convert_to(vc, 'UTF8'), 'hex'), encode(bin, 'hex'), d, \
  to_char(tm, 'HH24:MI:SS.US'), to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), \
  to_char(tz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), encode(convert_to(j->>'k', 'UTF8'), 'hex'), \
  (j->'n')::text, u, e, loose FROM fam WHERE id IN ({ids}) ORDER BY id";
const MY_RENDER: &str = "SELECT id, b, s, i, big, ubig, `dec`, f4, f8, LOWER(HEX(t)), LOWER(HEX(vc)), LOWER(HEX(bin)), d, \
  TIME_FORMAT(tm, '%H:%i:%s.%f'), DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), \
  DATE_FORMAT(tz, '%Y-%m-%d %H:%i:%s.%f'), LOWER(HEX(JSON_UNQUOTE(JSON_EXTRACT(j, '$.k')))), \
  JSON_EXTRACT(j, '$.n'), u, e, loose FROM fam WHERE id IN ({ids}) ORDER BY id";

fn pg_rows(first: i32) -> String {
    let r = |id: i32, vals: &str| format!("INSERT INTO fam VALUES ({}, {vals});", first + id);
    [
        // minimums and range ends
        r(0, "false, -32768, -2147483648, -9223372036854775808, 0, '-99999999999999999999999999999999999.999999999999999999999999999999', -1.5, -0.0, '', '', '\\x00', '1000-01-01', '00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:00+00', '{\"k\": \"\"}', '00000000-0000-0000-0000-000000000000', 'sad', -9999999999.99"),
        // maximums
        r(1, "true, 32767, 2147483647, 9223372036854775807, 18446744073709551615, '99999999999999999999999999999999999.999999999999999999999999999999', 3.5, 1.7976931348623157e308, 'emoji 😀 ünïcödé 𝄞', 'x😀x', '\\x00ff00', '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999', '2026-03-29 00:59:59.999999+00', '{\"k\": \"日本語 \\u00e9 😀\", \"n\": {\"deep\": [1, 2.5]}}', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'happy', 9999999999.99"),
        // NULL in every type
        r(2, "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"),
        // typical values, microseconds around a DST change (Europe/Berlin, 2026-10-25 01:00 UTC)
        r(3, "true, 7, 42, 1, 7, '0.000000000000000000000000000001', 0.25, 0.1, 'tab\tnewline\nquote''s \\\\ back', 'abc', '\\xdeadbeef', '2024-02-29', '12:34:56.000001', '2026-10-25 02:30:00.123456', '2026-10-25 00:59:59.999999+00', '{\"k\": \"v\"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'ok', 0.01"),
    ]
    .concat()
}

async fn wait_equal(pg: &PgInstance, inv: &str, maria: &MariaInstance, ret: &str, ids: &str) {
    let pq = PG_RENDER.replace("{ids}", ids);
    let mq = MY_RENDER.replace("{ids}", ids);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = pg
            .psql(inv, &pq)
            .await
            .unwrap()
            .replace('|', "\t")
            .replace("e+", "e");
        let b = maria.sql(ret, &mq).await.unwrap().replace("NULL", "");
        if !a.trim().is_empty() && a.trim() == b.trim() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "values differ for ids {ids}:\npostgres:\n{a}\nmariadb:\n{b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn every_type_family_crosses_both_ways_through_snapshot_and_stream() {
    let pg = shared_pg().await;
    let maria = shared_maria().await;
    let pair = demo_pair(pg, maria, 0).await;
    let (inv, ret) = (pair.inventory.name.clone(), pair.retail.name.clone());
    pg.psql(&inv, PG_TABLE).await.unwrap();
    maria.sql(&ret, MY_TABLE).await.unwrap();
    // Rows present before the first start travel through the initial snapshot.
    pg.psql(&inv, &pg_rows(0)).await.unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(&pair, pg, maria, &listen, |t| {
        format!(
            "{}{MAPPING}",
            t.split("[[mappings]]").next().unwrap_or_default()
        )
    });
    let daemon = Daemon::start(&cfg);
    wait_equal(pg, &inv, maria, &ret, "0,1,2,3").await;
    // The same values through the stream, PostgreSQL → MariaDB.
    pg.psql(&inv, &pg_rows(10)).await.unwrap();
    wait_equal(pg, &inv, maria, &ret, "10,11,12,13").await;
    // And back: MariaDB → PostgreSQL, written on the MariaDB side.
    maria
        .sql(
            &ret,
            "INSERT INTO fam SELECT id + 20, b, s, i, big, ubig, `dec`, f4, f8, t, vc, bin, d, tm, ts, tz, j, u, e, loose FROM fam WHERE id < 4",
        )
        .await
        .unwrap();
    wait_equal(pg, &inv, maria, &ret, "20,21,22,23").await;

    // Values the other side cannot hold: dead-lettered with the column and the reason.
    pg.psql(&inv, "INSERT INTO fam (id, f8) VALUES (30, 'NaN'); INSERT INTO fam (id, tz) VALUES (31, 'infinity'); \
                    INSERT INTO fam (id, d) VALUES (32, '0999-12-31'); INSERT INTO fam (id, loose) VALUES (33, 123456789012.5);")
        .await
        .unwrap();
    maria
        .sql(
            &ret,
            "INSERT INTO fam (id, t) VALUES (40, CONCAT('a', CHAR(0), 'b'))",
        )
        .await
        .unwrap();
    maria
        .sql(
            &ret,
            "SET SESSION sql_mode=''; INSERT INTO fam (id, d) VALUES (41, '0000-00-00')",
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut to_retail, mut to_inventory);
    loop {
        to_retail = maria
            .sql(&ret, "SELECT reason FROM tandem_dead_letters ORDER BY id")
            .await
            .unwrap();
        to_inventory = pg
            .psql(&inv, "SELECT reason FROM tandem.dead_letters ORDER BY id")
            .await
            .unwrap();
        if to_retail.lines().count() >= 4 && to_inventory.lines().count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters missing:\nretail:\n{to_retail}\ninventory:\n{to_inventory}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (needle, side) in [
        ("\"f8\"", &to_retail),
        ("\"tz\"", &to_retail),
        ("\"d\"", &to_retail),
        ("\"loose\"", &to_retail),
        ("NUL", &to_inventory),
        ("\"d\"", &to_inventory),
    ] {
        assert!(
            side.contains(needle),
            "no dead letter mentions {needle}:\n{side}"
        );
    }
    // Nothing of those rows crossed.
    assert_eq!(
        maria
            .sql(&ret, "SELECT count(*) FROM fam WHERE id BETWEEN 30 AND 33")
            .await
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        pg.psql(&inv, "SELECT count(*) FROM fam WHERE id IN (40, 41)")
            .await
            .unwrap()
            .trim(),
        "0"
    );
    drop(daemon);
}
