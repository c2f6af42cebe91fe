//! What the operator commands share: both endpoints opened as [`Ledger`]s with their
//! catalogs, ids that name the endpoint a row is stored in (`retail:4`), and mapped tables
//! built from the config and a catalog.
//!
//! A conflict or dead letter is stored in the database the change was being applied to, so
//! the endpoint in its id is the change's *target*; the mapping's other side is its source.

use std::path::Path;

use tandem_core::change::TableId;
use tandem_core::config::catalog::Catalog;
use tandem_core::config::{Config, EndpointKind, Mapping, Secret};
use tandem_core::error::StageError;
use tandem_core::ledger::{Ledger, StoredConflict, StoredDeadLetter};
use tandem_core::sink::TargetTable;
use tandem_core::value::ColumnType;
use tandem_mysql::admin::MySqlLedger;
use tandem_postgres::admin::PgLedger;

/// The endpoint-specific handle behind a [`Ledger`].
pub enum Handle {
    Pg(Box<PgLedger>),
    My(MySqlLedger),
}

/// One endpoint, opened for the operator.
pub struct Side {
    pub name: String,
    pub handle: Handle,
    pub catalog: Box<dyn Catalog + Send + Sync>,
}

impl Side {
    pub fn ledger(&mut self) -> &mut dyn Ledger {
        match &mut self.handle {
            Handle::Pg(l) => l.as_mut(),
            Handle::My(l) => l,
        }
    }

    /// Whether writes here can be tagged as tandem's own right now (PostgreSQL: not while
    /// `tandem run` holds the replication origin).
    pub async fn can_tag(&self) -> bool {
        match &self.handle {
            Handle::Pg(l) => l.can_tag().await,
            Handle::My(_) => true,
        }
    }

    pub fn column_type(&self, table: &TableId, column: &str) -> Option<ColumnType> {
        let t = self.catalog.table(table)?;
        let i = t.schema.column_index(column)?;
        t.schema.columns.get(i).map(|c| c.column_type.clone())
    }
}

/// Load the config (exit code 2 when unusable, with the reasons printed).
pub fn load(path: &Path) -> Result<Config, u8> {
    super::check::load_config(path)
}

pub fn password(cfg: &Config, name: &str) -> Result<Option<Secret>, StageError> {
    let ep = cfg.endpoints.get(name).ok_or_else(|| {
        StageError::definite(format!("No endpoint named {name:?}"), "check the config")
    })?;
    match &ep.password {
        None => Ok(None),
        Some(r) => r.resolve().map(Some).map_err(|why| {
            StageError::definite(
                format!("endpoints.{name}.password: {why}"),
                "provide the secret",
            )
        }),
    }
}

/// A mapping's table name as a `TableId` on its endpoint.
pub fn table_id(cfg: &Config, endpoint: &str, table: &str) -> TableId {
    let default_schema = match cfg.endpoints.get(endpoint) {
        Some(ep) if ep.kind == EndpointKind::Mysql => ep.database().unwrap_or_default(),
        _ => "public".to_owned(),
    };
    TableId::parse(table, &default_schema)
}

/// Open every endpoint of the config, in config order, with the catalog of its mapped
/// schemas.
pub async fn open(cfg: &Config) -> Result<Vec<Side>, StageError> {
    let mut sides = Vec::new();
    for (name, ep) in &cfg.endpoints {
        let pw = password(cfg, name)?;
        let (handle, catalog): (Handle, Box<dyn Catalog + Send + Sync>) = match ep.kind {
            EndpointKind::Postgres => {
                let ledger = PgLedger::connect(ep, pw.as_ref()).await?;
                let mut schemas: Vec<String> = cfg
                    .mappings
                    .iter()
                    .filter_map(|m| m.sides.get(name))
                    .map(|s| table_id(cfg, name, &s.table).schema)
                    .collect();
                schemas.sort();
                schemas.dedup();
                let refs: Vec<&str> = schemas.iter().map(String::as_str).collect();
                let catalog =
                    tandem_postgres::catalog::PgCatalog::load(ledger.client(), &refs, "public")
                        .await?;
                (Handle::Pg(Box::new(ledger)), Box::new(catalog))
            }
            EndpointKind::Mysql => {
                let mut ledger = MySqlLedger::connect(ep, pw.as_ref()).await?;
                let db = ep.database().unwrap_or_default();
                let catalog = tandem_mysql::catalog::MySqlCatalog::load(ledger.conn(), &db).await?;
                (Handle::My(ledger), Box::new(catalog))
            }
        };
        sides.push(Side {
            name: name.clone(),
            handle,
            catalog,
        });
    }
    Ok(sides)
}

/// A row of an endpoint's ledger that `list` commands show: conflicts and dead letters.
pub trait Listed: serde::Serialize {
    fn id(&self) -> i64;
    fn at(&self) -> chrono::DateTime<chrono::Utc>;
}

impl Listed for StoredConflict {
    fn id(&self) -> i64 {
        self.id
    }
    fn at(&self) -> chrono::DateTime<chrono::Utc> {
        self.at
    }
}

impl Listed for StoredDeadLetter {
    fn id(&self) -> i64 {
        self.id
    }
    fn at(&self) -> chrono::DateTime<chrono::Utc> {
        self.at
    }
}

/// `fetch` from every endpoint's ledger, paired with the endpoint's name, newest first, at
/// most `limit` rows in all.
pub async fn gather<T: Listed>(
    cfg: &Config,
    limit: usize,
    mut fetch: impl std::ops::AsyncFnMut(&mut dyn Ledger) -> Result<Vec<T>, StageError>,
) -> Result<Vec<(String, T)>, String> {
    let mut sides = open(cfg).await.map_err(|e| e.report())?;
    let mut rows = Vec::new();
    for side in &mut sides {
        let name = side.name.clone();
        let found = fetch(side.ledger())
            .await
            .map_err(|e| format!("{name}: {}", e.report()))?;
        rows.extend(found.into_iter().map(|r| (name.clone(), r)));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.at()));
    rows.truncate(limit);
    Ok(rows)
}

/// A listed row as JSON, with its endpoint and its `endpoint:number` id.
pub fn listed_json<T: Listed>(endpoint: &str, row: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(row).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), format!("{endpoint}:{}", row.id()).into());
        o.insert("endpoint".into(), endpoint.into());
    }
    v
}

/// `retail:4` → `("retail", 4)`.
pub fn parse_id(s: &str, cfg: &Config) -> Result<(String, i64), String> {
    let names: Vec<&str> = cfg.endpoints.keys().map(String::as_str).collect();
    let (ep, n) = s.split_once(':').ok_or_else(|| {
        format!(
            "{s:?} is not an id: write ENDPOINT:NUMBER, e.g. {}:17",
            names.first().unwrap_or(&"inventory")
        )
    })?;
    if !names.contains(&ep) {
        return Err(format!(
            "{s:?}: no endpoint named {ep:?} (the config has {})",
            names.join(", ")
        ));
    }
    let n = n
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a number"))?;
    Ok((ep.to_owned(), n))
}

pub fn find_mapping<'a>(cfg: &'a Config, name: &str) -> Result<&'a Mapping, StageError> {
    cfg.mappings.iter().find(|m| m.name == name).ok_or_else(|| {
        StageError::definite(
            format!("Mapping {name:?} is no longer in the config"),
            "restore the mapping, or settle this row by hand",
        )
    })
}

/// The mapping's endpoint other than `endpoint`.
pub fn other_side<'a>(mapping: &'a Mapping, endpoint: &str) -> Result<&'a str, StageError> {
    mapping
        .sides
        .keys()
        .find(|k| k.as_str() != endpoint)
        .map(String::as_str)
        .ok_or_else(|| {
            StageError::definite(
                format!(
                    "Mapping {:?} has no side other than {endpoint}",
                    mapping.name
                ),
                "check the config",
            )
        })
}

/// The table of `mapping` on `side`, with the given columns (names on that endpoint; key
/// columns first, in key order, so `key` is `0..n`).
pub fn mapped_table(
    cfg: &Config,
    side: &Side,
    mapping: &Mapping,
    columns: &[String],
) -> Result<TargetTable, StageError> {
    let s = mapping.sides.get(&side.name).ok_or_else(|| {
        StageError::definite(
            format!("Mapping {:?} has no side on {}", mapping.name, side.name),
            "check the config",
        )
    })?;
    let table = table_id(cfg, &side.name, &s.table);
    let mut cols = Vec::new();
    for name in s
        .key
        .iter()
        .chain(columns.iter().filter(|c| !s.key.contains(c)))
    {
        let ty = side.column_type(&table, name).ok_or_else(|| {
            StageError::definite(
                format!("Column {name:?} does not exist in {table} on {}", side.name),
                "run tandem check; the table changed since the row was recorded",
            )
        })?;
        cols.push((name.clone(), ty));
    }
    Ok(TargetTable {
        table,
        key: (0..s.key.len()).collect(),
        columns: cols,
    })
}

/// A stored JSON image, pretty-printed (or `-` when absent).
pub fn pretty(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "-".to_owned(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()),
    }
}

/// A stored JSON value on one line, cut to `max` characters.
pub fn short(v: &serde_json::Value, max: usize) -> String {
    let s = v.to_string();
    if s.chars().count() > max {
        let head: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    } else {
        s
    }
}
