//! The MySQL/MariaDB catalog of one database, read from `information_schema`.
//!
//! `tandem check` and start-up judge every mapping against this ([`Catalog`]): do the
//! tables and columns exist, is the mapping's key a primary or unique key, can the column
//! types carry each other's values. Columns are listed in ordinal order because that is the
//! order binlog rows and `SELECT *` use. Types go through [`crate::types`], the same parser
//! the binlog reader and the snapshot use, so the three never disagree on a column.
//!
//! MariaDB has no JSON type: `JSON` is an alias for `LONGTEXT` plus a `json_valid(col)`
//! check constraint, so such a column is reported as `ColumnType::Json` only when the
//! constraint is there (MySQL reports `json` itself). The catalog is a snapshot: it is read
//! once and does not follow later DDL.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tandem_core::change::{ColumnSchema, TableId, TableSchema};
use tandem_core::config::catalog::{Catalog, CatalogTable};
use tandem_core::error::StageError;

use crate::connect::{classify, is_mariadb};
use crate::types::column_type_from_sql_json;

/// One database's tables (base tables only, not views).
#[derive(Clone, Debug)]
pub struct MySqlCatalog {
    database: String,
    tables: BTreeMap<String, CatalogTable>,
    engines: BTreeMap<String, String>,
}

impl MySqlCatalog {
    /// Read the catalog of `database` (normally the endpoint URL's database).
    pub async fn load(conn: &mut Conn, database: &str) -> Result<MySqlCatalog, StageError> {
        let ctx =
            |what: &str| format!("Reading {what} of database {database} from information_schema");
        let tables: Vec<Row> = conn
            .exec(
                "SELECT TABLE_NAME, COALESCE(ENGINE, '') FROM information_schema.TABLES
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'",
                (database,),
            )
            .await
            .map_err(|e| classify(ctx("the tables"), e))?;
        let columns: Vec<Row> = conn
            .exec(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?
                 ORDER BY TABLE_NAME, ORDINAL_POSITION",
                (database,),
            )
            .await
            .map_err(|e| classify(ctx("the columns"), e))?;
        let keys: Vec<Row> = conn
            .exec(
                "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS
                 WHERE TABLE_SCHEMA = ? AND NON_UNIQUE = 0
                 ORDER BY TABLE_NAME, INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX",
                (database,),
            )
            .await
            .map_err(|e| classify(ctx("the keys"), e))?;
        // MySQL's CHECK_CONSTRAINTS has no TABLE_NAME, and MySQL has a real JSON type anyway.
        let checks: Vec<Row> = if is_mariadb(conn).await? {
            conn.exec(
                "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
                 WHERE CONSTRAINT_SCHEMA = ?",
                (database,),
            )
            .await
            .map_err(|e| classify(ctx("the check constraints"), e))?
        } else {
            Vec::new()
        };

        let mut json_columns: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in &checks {
            let (table, clause) = (text(row, 0)?, text(row, 1)?);
            if let Some(col) = json_valid_column(&clause) {
                json_columns.entry(table).or_default().push(col);
            }
        }

        let mut engines = BTreeMap::new();
        let mut by_table: BTreeMap<String, Vec<ColumnSchema>> = BTreeMap::new();
        for row in &tables {
            let name = text(row, 0)?;
            engines.insert(name.clone(), text(row, 1)?);
            by_table.insert(name, Vec::new());
        }
        for row in &columns {
            let table = text(row, 0)?;
            // Views are in COLUMNS too; only base tables were registered above.
            let Some(cols) = by_table.get_mut(&table) else {
                continue;
            };
            let name = text(row, 1)?;
            let native_type = text(row, 2)?;
            let is_json = json_columns.get(&table).is_some_and(|c| c.contains(&name));
            cols.push(ColumnSchema {
                column_type: column_type_from_sql_json(&native_type, is_json),
                name,
                native_type,
                nullable: text(row, 3)? == "YES",
            });
        }

        let mut unique: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
        for row in &keys {
            let (table, index, column) = (text(row, 0)?, text(row, 1)?, text(row, 2)?);
            let list = unique.entry(table).or_default();
            match list.last_mut() {
                Some((name, cols)) if *name == index => cols.push(column),
                _ => list.push((index, vec![column])),
            }
        }

        let tables = by_table
            .into_iter()
            .map(|(name, columns)| {
                let keys: Vec<(String, Vec<String>)> = unique.remove(&name).unwrap_or_default();
                let key = identity_key(&keys, &columns);
                let schema = TableSchema {
                    table: TableId::new(database, &name),
                    columns,
                    key,
                };
                let unique_keys = keys.into_iter().map(|(_, cols)| cols).collect();
                (
                    name,
                    CatalogTable {
                        schema,
                        unique_keys,
                    },
                )
            })
            .collect();
        Ok(MySqlCatalog {
            database: database.to_owned(),
            tables,
            engines,
        })
    }

    /// A catalog of a database with no tables (unit tests of the checks).
    #[cfg(test)]
    pub(crate) fn empty(database: &str) -> MySqlCatalog {
        MySqlCatalog {
            database: database.to_owned(),
            tables: BTreeMap::new(),
            engines: BTreeMap::new(),
        }
    }

    /// The storage engine of a table (`InnoDB`, `MyISAM`, …).
    pub fn engine(&self, table: &str) -> Option<&str> {
        self.engines.get(table).map(String::as_str)
    }

    /// The database this catalog describes.
    pub fn database(&self) -> &str {
        &self.database
    }
}

impl Catalog for MySqlCatalog {
    fn table(&self, id: &TableId) -> Option<&CatalogTable> {
        if id.schema != self.database {
            return None;
        }
        self.tables.get(&id.name)
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    fn default_schema(&self) -> &str {
        &self.database
    }
}

/// The key rows are identified by: the primary key, else the first unique key whose
/// columns are all NOT NULL (a nullable unique key lets many rows share "no key").
fn identity_key(keys: &[(String, Vec<String>)], columns: &[ColumnSchema]) -> Vec<usize> {
    let index_of = |n: &String| columns.iter().position(|c| &c.name == n);
    keys.iter()
        .find(|(name, cols)| {
            name == "PRIMARY"
                || cols.iter().all(|c| {
                    index_of(c)
                        .and_then(|i| columns.get(i))
                        .is_some_and(|c| !c.nullable)
                })
        })
        .map(|(_, cols)| cols.iter().filter_map(index_of).collect())
        .unwrap_or_default()
}

/// The column a MariaDB `json_valid(`col`)` check clause guards, if that is all it does.
fn json_valid_column(clause: &str) -> Option<String> {
    let c = clause.trim();
    let rest = c
        .get(..11)
        .filter(|p| p.eq_ignore_ascii_case("json_valid("))?;
    let inner = c.get(rest.len()..)?.strip_suffix(')')?.trim();
    let name = inner.strip_prefix('`')?.strip_suffix('`')?;
    Some(name.replace("``", "`"))
}

/// Column `i` of an information_schema row as text. Identifiers are UTF-8 in
/// information_schema; anything else is reported, not unwrapped.
pub(crate) fn text(row: &Row, i: usize) -> Result<String, StageError> {
    match row.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8(b.clone()).map_err(|_| {
            StageError::definite(
                format!("information_schema returned a name that is not UTF-8 (column {i})"),
                "rename the object to a UTF-8 name",
            )
        }),
        Some(mysql_async::Value::Int(n)) => Ok(n.to_string()),
        Some(mysql_async::Value::UInt(n)) => Ok(n.to_string()),
        Some(mysql_async::Value::NULL) => Ok(String::new()),
        other => Err(StageError::definite(
            format!("information_schema returned an unexpected value {other:?} (column {i})"),
            "report this as a tandem bug with the server version",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::ColumnType;

    #[test]
    fn json_valid_clauses_name_their_column() {
        assert_eq!(
            json_valid_column("json_valid(`doc`)").as_deref(),
            Some("doc")
        );
        assert_eq!(
            json_valid_column("JSON_VALID(`a``b`)").as_deref(),
            Some("a`b")
        );
        assert_eq!(json_valid_column("json_valid(`doc`) and `x` > 1"), None);
        assert_eq!(json_valid_column("`qty` > 0"), None);
    }

    fn col(name: &str, nullable: bool) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            column_type: ColumnType::Int {
                bytes: 4,
                unsigned: false,
            },
            native_type: "int".into(),
            nullable,
        }
    }

    #[test]
    fn identity_prefers_primary_then_not_null_unique() {
        let cols = vec![col("id", false), col("sku", false), col("ean", true)];
        let keys = vec![("PRIMARY".to_owned(), vec!["id".to_owned()])];
        assert_eq!(identity_key(&keys, &cols), vec![0]);
        let keys = vec![
            ("ean".to_owned(), vec!["ean".to_owned()]),
            ("sku".to_owned(), vec!["sku".to_owned()]),
        ];
        assert_eq!(identity_key(&keys, &cols), vec![1]);
        assert!(identity_key(&keys[..1], &cols).is_empty());
    }
}
