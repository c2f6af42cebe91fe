//! Table descriptions from `information_schema`, cached for the binlog reader and the
//! snapshot.
//!
//! The cache holds the *current* schema of each table and is emptied on every DDL query
//! event, so a table altered mid-stream is looked up again at its next TABLE_MAP. Whether
//! a cached description may be used for a TABLE_MAP at all is decided by
//! [`super::schema::TableDecoder::new`] (same column count, same names).

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tandem_core::error::StageError;

use super::schema::CatalogColumn;
use crate::connect::classify;
use crate::types::column_type_from_sql_json;

/// Read one table's columns in ordinal order. An unknown table gives an empty list.
pub async fn load_table_columns(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Vec<CatalogColumn>, StageError> {
    let what = || format!("Reading the columns of {schema}.{table} from information_schema");
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLUMN_KEY
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
             ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .map_err(|e| classify(what(), e))?;
    // MariaDB's JSON is LONGTEXT plus CHECK (json_valid(`col`)). MySQL has no TABLE_NAME
    // in CHECK_CONSTRAINTS (and a real JSON type): there the query fails and is not needed.
    let checks: Vec<String> = conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (schema, table),
        )
        .await
        .unwrap_or_default();
    let json_cols: Vec<String> = checks.iter().filter_map(|c| json_valid_column(c)).collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let get = |i: usize| -> Option<String> {
            match row.as_ref(i) {
                Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            }
        };
        let name = get(0).unwrap_or_default();
        let native_type = get(1).unwrap_or_default();
        let is_json = json_cols.iter().any(|c| c == &name);
        out.push(CatalogColumn {
            column_type: column_type_from_sql_json(&native_type, is_json),
            nullable: get(2).as_deref() == Some("YES"),
            charset: get(3),
            in_primary_key: get(4).as_deref() == Some("PRI"),
            name,
            native_type,
        });
    }
    Ok(out)
}

fn json_valid_column(clause: &str) -> Option<String> {
    let c = clause.trim();
    let head = c.get(..11)?;
    if !head.eq_ignore_ascii_case("json_valid(") {
        return None;
    }
    let inner = c.get(11..)?.strip_suffix(')')?.trim();
    let name = inner.strip_prefix('`')?.strip_suffix('`')?;
    Some(name.replace("``", "`"))
}

/// Per-table cache of [`load_table_columns`], emptied on DDL.
#[derive(Debug, Default)]
pub struct CatalogCache {
    tables: HashMap<(String, String), Arc<Vec<CatalogColumn>>>,
}

impl CatalogCache {
    pub async fn get(
        &mut self,
        conn: &mut Conn,
        schema: &str,
        table: &str,
    ) -> Result<Arc<Vec<CatalogColumn>>, StageError> {
        let key = (schema.to_owned(), table.to_owned());
        if let Some(cols) = self.tables.get(&key) {
            return Ok(cols.clone());
        }
        let cols = Arc::new(load_table_columns(conn, schema, table).await?);
        self.tables.insert(key, cols.clone());
        Ok(cols)
    }

    /// Forget everything: a DDL statement may have changed any table.
    pub fn invalidate(&mut self) {
        self.tables.clear();
    }
}
