//! The catalog tandem judges mappings by: types as the stream will deliver them, keys,
//! replica identity.
#![allow(clippy::unwrap_used)]

mod sink_support;

use sink_support::{client, database};
use tandem_core::config::catalog::Catalog;
use tandem_core::{ColumnType, TableId};
use tandem_postgres::catalog::PgCatalog;
use tandem_testkit::shared_pg;

#[tokio::test]
async fn catalog_reads_types_keys_and_replica_identity() {
    let pg = shared_pg().await;
    let setup = "CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE DOMAIN qty AS integer CHECK (VALUE >= 0);
        CREATE SCHEMA shop;
        CREATE TABLE shop.\"Items\" (id bigint PRIMARY KEY, sku varchar(12) NOT NULL UNIQUE,
            price numeric(12,2), on_hand qty, m mood, note text);
        ALTER TABLE shop.\"Items\" REPLICA IDENTITY FULL;
        CREATE TABLE public.other (a int);";
    let db = database(pg, "catalog", setup).await;
    let c = client(&db).await;
    let cat = PgCatalog::load(&c, &["shop"], "shop").await.unwrap();
    let id = TableId::new("shop", "Items");
    let t = cat.table(&id).expect("Items loaded");
    assert_eq!(
        cat.table_names(),
        vec!["shop.Items".to_owned()],
        "public.other is not asked for"
    );
    assert_eq!(cat.replica_identity(&id), Some('f'));
    let names: Vec<&str> = t.schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "sku", "price", "on_hand", "m", "note"]);
    assert_eq!(t.schema.key, vec![0]);
    assert!(t.unique_keys.contains(&vec!["id".to_owned()]));
    assert!(t.unique_keys.contains(&vec!["sku".to_owned()]));
    let col = |n: &str| t.schema.columns.iter().find(|c| c.name == n).unwrap();
    assert_eq!(col("sku").native_type, "character varying(12)");
    assert!(!col("sku").nullable && col("note").nullable);
    assert_eq!(
        col("price").column_type,
        ColumnType::Decimal {
            precision: Some(12),
            scale: Some(2)
        }
    );
    assert_eq!(
        col("on_hand").column_type,
        ColumnType::Int {
            bytes: 4,
            unsigned: false
        },
        "domain seen through"
    );
    assert_eq!(col("on_hand").native_type, "qty");
    assert_eq!(
        col("m").column_type,
        ColumnType::Enum {
            labels: vec!["sad".into(), "happy".into()]
        }
    );

    let public = PgCatalog::load(&c, &["public"], "public").await.unwrap();
    assert_eq!(
        public.replica_identity(&TableId::new("public", "other")),
        Some('d')
    );
    assert!(public
        .table(&TableId::new("public", "other"))
        .unwrap()
        .schema
        .key
        .is_empty());
}
