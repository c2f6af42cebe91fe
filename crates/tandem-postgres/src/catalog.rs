//! The PostgreSQL endpoint's catalog, as `tandem check` and start-up judge mappings by it.
//!
//! Loaded once per run for the schemas the mappings name, in three queries (columns, keys,
//! enum labels) rather than one per table, so a database with thousands of tables costs
//! no more round trips than one with three. Column types come from
//! [`crate::types::column_type`], the same function the pgoutput decoder uses on Relation
//! messages, so a mapping accepted here is judged by the types the stream will deliver.
//! A domain is looked through to its base type (pgoutput sends the base type's text);
//! an enum gets its labels from `pg_enum`, which the stream does not carry.

use std::collections::BTreeMap;

use tandem_core::change::{ColumnSchema, TableId, TableSchema};
use tandem_core::config::catalog::{Catalog, CatalogTable};
use tandem_core::error::StageError;
use tandem_core::value::ColumnType;
use tokio_postgres::Client;

use crate::sink::classify;
use crate::types;

/// Tables of some schemas of one PostgreSQL database.
#[derive(Clone, Debug, Default)]
pub struct PgCatalog {
    tables: BTreeMap<TableId, CatalogTable>,
    replica_identity: BTreeMap<TableId, char>,
    default_schema: String,
}

const COLUMNS_SQL: &str = "
SELECT n.nspname::text, c.relname::text, c.relreplident::text, a.attname::text,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END AS type_oid,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS type_mod,
       CASE WHEN t.typtype = 'd' THEN bt.typname::text ELSE t.typname::text END AS type_name,
       CASE WHEN t.typtype = 'd' THEN bt.typtype::text ELSE t.typtype::text END AS type_kind,
       format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1)
ORDER BY 1, 2, a.attnum";

/// Unique indexes on plain columns (no expression, no predicate): the keys a mapping may
/// match rows by. The primary key sorts first, then the replica identity index.
const KEYS_SQL: &str = "
SELECT n.nspname::text, c.relname::text, i.indisprimary, i.indisreplident,
       array_agg(a.attname::text ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND n.nspname = ANY($1)
GROUP BY n.nspname, c.relname, i.indexrelid, i.indisprimary, i.indisreplident
ORDER BY 1, 2, i.indisprimary DESC, i.indisreplident DESC, i.indexrelid";

const ENUMS_SQL: &str = "
SELECT enumtypid, array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum GROUP BY 1";

impl PgCatalog {
    /// Read the tables of `schemas`. `default_schema` is where names without a schema go
    /// (`public` for most databases).
    pub async fn load(
        client: &Client,
        schemas: &[&str],
        default_schema: &str,
    ) -> Result<PgCatalog, StageError> {
        let schemas: Vec<String> = schemas.iter().map(|s| (*s).to_owned()).collect();
        let what = "Cannot read the PostgreSQL catalog";
        let enums: BTreeMap<u32, Vec<String>> = client
            .query(ENUMS_SQL, &[])
            .await
            .map_err(|e| classify(what, e))?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| classify(what, e))?;

        let mut cat = PgCatalog {
            default_schema: default_schema.to_owned(),
            ..Default::default()
        };
        let rows = client
            .query(COLUMNS_SQL, &[&schemas])
            .await
            .map_err(|e| classify(what, e))?;
        for row in rows {
            let column = (|| -> Result<_, tokio_postgres::Error> {
                let id = TableId::new(row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?);
                let ident: String = row.try_get(2)?;
                let oid: u32 = row.try_get(4)?;
                let typmod: i32 = row.try_get(5)?;
                let type_name: String = row.try_get(6)?;
                let kind: String = row.try_get(7)?;
                let column_type = if kind == "e" {
                    types::enum_type(enums.get(&oid).cloned().unwrap_or_default())
                } else {
                    types::column_type(oid, typmod, &type_name)
                };
                let col = ColumnSchema {
                    name: row.try_get(3)?,
                    column_type,
                    native_type: row.try_get(8)?,
                    nullable: row.try_get(9)?,
                };
                Ok((id, ident, col))
            })()
            .map_err(|e| classify(what, e))?;
            let (id, ident, col) = column;
            cat.replica_identity
                .insert(id.clone(), ident.chars().next().unwrap_or('d'));
            cat.tables
                .entry(id.clone())
                .or_insert_with(|| CatalogTable {
                    schema: TableSchema {
                        table: id,
                        columns: Vec::new(),
                        key: Vec::new(),
                    },
                    unique_keys: Vec::new(),
                })
                .schema
                .columns
                .push(col);
        }

        let rows = client
            .query(KEYS_SQL, &[&schemas])
            .await
            .map_err(|e| classify(what, e))?;
        for row in rows {
            let (id, primary, replident, cols) = (|| -> Result<_, tokio_postgres::Error> {
                let id = TableId::new(row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?);
                let cols: Vec<String> = row.try_get(4)?;
                Ok((
                    id,
                    row.try_get::<_, bool>(2)?,
                    row.try_get::<_, bool>(3)?,
                    cols,
                ))
            })()
            .map_err(|e| classify(what, e))?;
            let Some(table) = cat.tables.get_mut(&id) else {
                continue;
            };
            // Rows arrive primary key first, then the replica identity index: the first
            // key seen is the one rows are identified by.
            if table.schema.key.is_empty() && (primary || replident) {
                table.schema.key = cols
                    .iter()
                    .filter_map(|c| table.schema.column_index(c))
                    .collect();
            }
            table.unique_keys.push(cols);
        }
        Ok(cat)
    }

    /// `pg_class.relreplident` of a table: `d` default, `f` full, `i` index, `n` nothing.
    pub fn replica_identity(&self, table: &TableId) -> Option<char> {
        self.replica_identity.get(table).copied()
    }

    /// Every table loaded.
    pub fn tables(&self) -> impl Iterator<Item = &CatalogTable> {
        self.tables.values()
    }

    /// The canonical type of a column, if the table and column exist.
    pub fn column_type(&self, table: &TableId, column: &str) -> Option<&ColumnType> {
        let t = self.tables.get(table)?;
        t.schema
            .columns
            .iter()
            .find(|c| c.name == column)
            .map(|c| &c.column_type)
    }
}

impl Catalog for PgCatalog {
    fn table(&self, id: &TableId) -> Option<&CatalogTable> {
        self.tables.get(id)
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.keys().map(|t| t.to_string()).collect()
    }

    fn default_schema(&self) -> &str {
        &self.default_schema
    }
}
