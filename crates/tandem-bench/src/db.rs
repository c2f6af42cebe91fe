//! One connection to either side, so that a benchmark can be written once for both
//! directions.

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use tandem_testkit::TestDb;

use crate::env::Servers;
use crate::workload;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// PostgreSQL, the inventory.
    Pg,
    /// MariaDB, the retail.
    Maria,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Pg => Side::Maria,
            Side::Maria => Side::Pg,
        }
    }

    pub fn ddl(self, table: &str) -> String {
        match self {
            Side::Pg => workload::pg_ddl(table),
            Side::Maria => workload::maria_ddl(table),
        }
    }
}

pub enum Conn {
    Pg(tokio_postgres::Client),
    Maria(mysql_async::Conn),
}

impl Conn {
    pub async fn open(servers: &Servers, side: Side, db: &TestDb) -> Result<Conn> {
        Ok(match side {
            Side::Pg => Conn::Pg(servers.pg_client(db).await?),
            Side::Maria => Conn::Maria(servers.maria_conn(db).await?),
        })
    }

    /// Runs any number of `;`-separated statements in one round trip.
    pub async fn exec(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Pg(c) => c.batch_execute(sql).await.context("PostgreSQL statement")?,
            Conn::Maria(c) => c.query_drop(sql).await.context("MariaDB statement")?,
        }
        Ok(())
    }

    /// The first column of the first row, as an integer (0 if there is none).
    pub async fn int(&mut self, sql: &str) -> Result<i64> {
        match self {
            Conn::Pg(c) => {
                let rows = c.simple_query(sql).await.context("PostgreSQL query")?;
                Ok(rows
                    .iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
                        _ => None,
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0))
            }
            Conn::Maria(c) => {
                let v: Option<Option<String>> =
                    c.query_first(sql).await.context("MariaDB query")?;
                Ok(v.flatten().and_then(|v| v.parse().ok()).unwrap_or(0))
            }
        }
    }

    /// Two integer columns of every row.
    pub async fn pairs(&mut self, sql: &str) -> Result<Vec<(i64, i64)>> {
        match self {
            Conn::Pg(c) => {
                let rows = c.simple_query(sql).await.context("PostgreSQL query")?;
                Ok(rows
                    .iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some((r.get(0)?.parse().ok()?, r.get(1)?.parse().ok()?))
                        }
                        _ => None,
                    })
                    .collect())
            }
            Conn::Maria(c) => c.query(sql).await.context("MariaDB query"),
        }
    }

    /// `count(*)` and `sum(qty)` of a benchmark table.
    pub async fn fingerprint(&mut self, table: &str) -> Result<(i64, i64)> {
        self.fingerprint_where(table, "TRUE").await
    }

    /// `count(*)` and `sum(qty)` of the rows of a benchmark table matching `cond`.
    pub async fn fingerprint_where(&mut self, table: &str, cond: &str) -> Result<(i64, i64)> {
        let n = self
            .int(&format!("SELECT count(*) FROM {table} WHERE {cond}"))
            .await?;
        let q = self
            .int(&format!(
                "SELECT CAST(coalesce(sum(qty), 0) AS {}) FROM {table} WHERE {cond}",
                self.int_type()
            ))
            .await?;
        Ok((n, q))
    }

    fn int_type(&self) -> &'static str {
        match self {
            Conn::Pg(_) => "bigint",
            Conn::Maria(_) => "SIGNED",
        }
    }

    /// Whether the row with `id` exists.
    pub async fn has(&mut self, table: &str, id: i64) -> Result<bool> {
        Ok(self
            .int(&format!("SELECT count(*) FROM {table} WHERE id = {id}"))
            .await?
            > 0)
    }

    /// One transaction of the workload on this side.
    pub async fn apply_ops(&mut self, table: &str, ops: &[workload::Op]) -> Result<()> {
        let sql = match self {
            Conn::Pg(_) => workload::pg_sql(table, ops),
            Conn::Maria(_) => workload::maria_sql(table, ops),
        };
        self.exec(&sql).await
    }

    /// The raw client's batch: the deletes and a multi-row upsert in one transaction.
    pub async fn apply_batch(
        &mut self,
        table: &str,
        ups: &[(i64, u32)],
        dels: &[i64],
    ) -> Result<()> {
        let mut sql = String::with_capacity(ups.len() * 80 + dels.len() * 10 + 200);
        sql.push_str(match self {
            Conn::Pg(_) => "BEGIN;",
            Conn::Maria(_) => "START TRANSACTION;",
        });
        if !dels.is_empty() {
            let ids: Vec<String> = dels.iter().map(i64::to_string).collect();
            sql.push_str(&format!(
                "DELETE FROM {table} WHERE id IN ({});",
                ids.join(",")
            ));
        }
        if !ups.is_empty() {
            sql.push_str(&format!("INSERT INTO {table} VALUES "));
            for (i, (id, rev)) in ups.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&workload::row_literal(*id, *rev));
            }
            sql.push_str(match self {
                Conn::Pg(_) => {
                    " ON CONFLICT (id) DO UPDATE SET sku = EXCLUDED.sku, name = EXCLUDED.name, \
                     qty = EXCLUDED.qty, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at;"
                }
                Conn::Maria(_) => {
                    " ON DUPLICATE KEY UPDATE sku = VALUES(sku), name = VALUES(name), \
                     qty = VALUES(qty), price = VALUES(price), updated_at = VALUES(updated_at);"
                }
            });
        }
        sql.push_str("COMMIT;");
        self.exec(&sql).await
    }
}
