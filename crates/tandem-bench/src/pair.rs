//! A fresh database on each server with the benchmark's tables and a tandem config
//! mapping them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tandem_testkit::TestDb;

use crate::db::Side;
use crate::env::{write_config, write_config_toml, Mapping, Servers};

pub struct Pair {
    pub inv: TestDb,
    pub ret: TestDb,
    pub config: PathBuf,
    pub listen: String,
}

impl Pair {
    pub async fn create(
        servers: &Servers,
        prefix: &str,
        pg_sql: &str,
        maria_sql: &str,
        mappings: &[Mapping<'_>],
    ) -> Result<Pair> {
        let (inv, ret) = databases(servers, prefix, pg_sql, maria_sql).await?;
        let (config, listen) = write_config(servers, &inv, &ret, mappings)?;
        Ok(Pair {
            inv,
            ret,
            config,
            listen,
        })
    }

    /// Like [`Pair::create`], with the config's `[[mappings]]` given as TOML.
    pub async fn create_toml(
        servers: &Servers,
        prefix: &str,
        pg_sql: &str,
        maria_sql: &str,
        mappings_toml: &str,
    ) -> Result<Pair> {
        let (inv, ret) = databases(servers, prefix, pg_sql, maria_sql).await?;
        let (config, listen) = write_config_toml(servers, &inv, &ret, mappings_toml)?;
        Ok(Pair {
            inv,
            ret,
            config,
            listen,
        })
    }

    pub fn db(&self, side: Side) -> &TestDb {
        match side {
            Side::Pg => &self.inv,
            Side::Maria => &self.ret,
        }
    }
}

/// A fresh database on each server, with the given schema.
async fn databases(
    servers: &Servers,
    prefix: &str,
    pg_sql: &str,
    maria_sql: &str,
) -> Result<(TestDb, TestDb)> {
    let inv = servers.pg.create_database(&format!("{prefix}_inv")).await?;
    let ret = servers
        .maria
        .create_database(&format!("{prefix}_ret"))
        .await?;
    servers
        .pg
        .psql(&inv.name, pg_sql)
        .await
        .context("PostgreSQL schema")?;
    servers
        .maria
        .sql(&ret.name, maria_sql)
        .await
        .context("MariaDB schema")?;
    Ok((inv, ret))
}

/// `inventory->retail` when the source is PostgreSQL.
pub fn direction(source: Side) -> &'static str {
    match source {
        Side::Pg => "inventory->retail",
        Side::Maria => "retail->inventory",
    }
}
