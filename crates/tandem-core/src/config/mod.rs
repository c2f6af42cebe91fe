//! tandem's configuration file.
//!
//! The shape DBAs write is fixed by the design doc (keys may be added, none renamed). It is
//! parsed in two steps: serde reads the file into [`Config`] with `deny_unknown_fields`
//! wherever a table's keys are fixed, then [`Config::validate`] checks what serde cannot —
//! cross references, strategies, directions — and reports *every* problem with its field
//! path, the broken constraint and the fix. Checks that need the databases' catalogs (does
//! column `stok_qty` exist?) live in [`catalog`], run by `tandem check` and at start-up.
//!
//! Mappings and their columns are keyed by endpoint name (`inventory = { table = … }`),
//! which serde cannot express with fixed fields; those tables are read as raw TOML and
//! parsed here, so that a misspelled key still gets a "did you mean" answer.

pub mod catalog;
mod error;
mod expressions;
mod mapping;
pub mod secret;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

pub use error::{suggest, ConfigError, ConfigErrors};
pub use mapping::{
    ColumnMapping, ConflictSpec, Direction, Mapping, OnError, Side, Strategy, DEFAULT_ON_ERROR,
};
pub use secret::{Secret, SecretRef};

/// Default HTTP listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";
/// Default lag above which `/readyz` reports not ready.
pub const DEFAULT_READY_LAG_SECONDS: f64 = 30.0;
/// Default PostgreSQL slot, publication and replication origin name.
pub const DEFAULT_PG_NAME: &str = "tandem";
/// Default server id tandem's binlog reader presents to MySQL/MariaDB.
pub const DEFAULT_SERVER_ID: u32 = 4_181_717;
/// Default cap on the rows a MySQL/MariaDB source holds in memory for prepared XA
/// transactions awaiting `XA COMMIT` (all of them together).
pub const DEFAULT_XA_HELD_ROWS: usize = 100_000;
/// Upper bound of `endpoints.NAME.xa_held_rows`: held rows live in memory (a row of a few
/// hundred bytes makes ten million rows several GiB), so a larger cap would let one
/// forgotten `XA PREPARE` exhaust the machine instead of stopping with a message.
pub const MAX_XA_HELD_ROWS: usize = 10_000_000;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// `tandem verify` run by the daemon itself.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// Endpoints in the order the file lists them: the first wins `last_writer_wins` ties.
    pub endpoints: IndexMap<String, EndpointConfig>,
    #[serde(default, rename = "mappings")]
    raw_mappings: Vec<toml::Table>,
    /// Parsed by [`Config::validate`].
    #[serde(skip)]
    pub mappings: Vec<Mapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer token required by the HTTP endpoint (except `/healthz`), if set.
    pub token: Option<SecretRef>,
    /// `/readyz` fails while a direction lags more than this many seconds.
    #[serde(default = "default_ready_lag")]
    pub ready_lag_seconds: f64,
    /// Transactions applied per target commit at most (grouping small ones).
    #[serde(default = "default_group")]
    pub max_group_transactions: usize,
    /// Rows per chunk the initial copy reads from the source (and per progress update).
    #[serde(default = "default_snapshot_chunk_rows")]
    pub snapshot_chunk_rows: usize,
}

/// Default rows per chunk of the initial copy.
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: usize = 5_000;
/// Upper bound of `daemon.snapshot_chunk_rows`: a chunk is held in memory.
pub const MAX_SNAPSHOT_CHUNK_ROWS: usize = 1_000_000;

fn default_listen() -> String {
    DEFAULT_LISTEN.to_owned()
}
fn default_ready_lag() -> f64 {
    DEFAULT_READY_LAG_SECONDS
}
fn default_group() -> usize {
    256
}
fn default_snapshot_chunk_rows() -> usize {
    DEFAULT_SNAPSHOT_CHUNK_ROWS
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: default_listen(),
            token: None,
            ready_lag_seconds: DEFAULT_READY_LAG_SECONDS,
            max_group_transactions: default_group(),
            snapshot_chunk_rows: DEFAULT_SNAPSHOT_CHUNK_ROWS,
        }
    }
}

/// `[verify]`: the daemon runs `tandem verify` (never `--repair`) every `interval` and
/// exports the result as metrics and in `/status`. Off unless `interval` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// `"1h"`, `"30m"`…: time between the end of one run and the start of the next.
    pub interval: Option<String>,
}

/// Shortest `verify.interval`: each run reads every mapped table on both sides.
pub const MIN_VERIFY_INTERVAL: Duration = Duration::from_secs(1);

impl VerifyConfig {
    /// The interval, when verify is on (validated by [`Config::validate`]).
    pub fn interval(&self) -> Option<Duration> {
        self.interval.as_deref().and_then(parse_duration)
    }
}

/// Which database an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Postgres,
    #[serde(alias = "mariadb")]
    Mysql,
}

/// TLS to the database, in libpq's vocabulary (`sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    #[default]
    Prefer,
    /// TLS always, certificate not verified.
    Require,
    /// TLS, certificate chain verified against `ca_file`.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM file of CA certificates for `verify-ca`/`verify-full`.
    pub ca_file: Option<PathBuf>,
}

/// How tandem's writes into MySQL/MariaDB are kept out of its own binlog reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoopPrevention {
    /// MariaDB: applier sets `skip_replication=1`; the reader asks the server to filter.
    SkipReplication,
    /// Portable: each applied transaction writes a row to `tandem_apply_marker`.
    Marker,
    /// `skip_replication` on MariaDB, `marker` elsewhere.
    #[default]
    Auto,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub kind: EndpointKind,
    /// `postgres://user@host:port/db` or `mysql://user@host:port/db`, without a password.
    pub url: String,
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub tls: TlsConfig,
    /// PostgreSQL: replication slot name.
    pub slot: Option<String>,
    /// PostgreSQL: publication name.
    pub publication: Option<String>,
    /// PostgreSQL: replication origin tandem's applier writes under.
    pub origin: Option<String>,
    /// MySQL: the server id the binlog reader presents (unique among replicas).
    pub server_id: Option<u32>,
    #[serde(default)]
    pub loop_prevention: LoopPrevention,
    /// MySQL: most rows held in memory for prepared XA transactions awaiting `XA COMMIT`
    /// (default [`DEFAULT_XA_HELD_ROWS`]).
    pub xa_held_rows: Option<usize>,
}

impl EndpointConfig {
    pub fn slot_name(&self) -> &str {
        self.slot.as_deref().unwrap_or(DEFAULT_PG_NAME)
    }
    pub fn publication_name(&self) -> &str {
        self.publication.as_deref().unwrap_or(DEFAULT_PG_NAME)
    }
    pub fn origin_name(&self) -> &str {
        self.origin.as_deref().unwrap_or(DEFAULT_PG_NAME)
    }
    pub fn server_id(&self) -> u32 {
        self.server_id.unwrap_or(DEFAULT_SERVER_ID)
    }
    pub fn xa_held_rows(&self) -> usize {
        self.xa_held_rows.unwrap_or(DEFAULT_XA_HELD_ROWS)
    }
    /// The database name from the URL path.
    pub fn database(&self) -> Option<String> {
        let rest = self.url.split_once("://")?.1;
        let path = rest.split_once('/')?.1;
        let db = path.split(['?', '#']).next()?;
        (!db.is_empty()).then(|| db.to_owned())
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::one(ConfigError::new(
                path.display().to_string(),
                format!("cannot read the config file: {e}"),
                "pass the path of a readable TOML file with -c",
            ))
        })?;
        Config::parse(&text)
    }

    /// Parse and validate config text.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| ConfigErrors::one(error::from_toml(&e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check everything that does not need a database; fills `mappings`.
    pub fn validate(&mut self) -> Result<(), ConfigErrors> {
        let mut errs = ConfigErrors::default();
        self.validate_daemon(&mut errs);
        if let Some(text) = &self.verify.interval {
            match parse_duration(text) {
                Some(d) if d >= MIN_VERIFY_INTERVAL => {}
                Some(_) => errs.push(ConfigError::new(
                    "verify.interval",
                    format!("{text:?} is shorter than one second"),
                    "each run reads every mapped table on both sides: write it like \"1h\" or \"30m\"",
                )),
                None => errs.push(ConfigError::new(
                    "verify.interval",
                    format!("{text:?} is not a duration"),
                    "write it like \"1h\", \"30m\" or \"90s\" (or remove [verify] to turn it off)",
                )),
            }
        }
        self.validate_endpoints(&mut errs);
        let names: Vec<String> = self.endpoints.keys().cloned().collect();
        let mut seen = BTreeSet::new();
        let mut mappings = Vec::new();
        for (i, raw) in self.raw_mappings.iter().enumerate() {
            let path = format!("mappings[{i}]");
            if let Some(m) = mapping::parse(raw, &path, &names, &mut errs) {
                if !seen.insert(m.name.clone()) {
                    errs.push(ConfigError::new(
                        format!("{path}.name"),
                        format!("mapping name {:?} is used twice", m.name),
                        "give every mapping a unique name",
                    ));
                }
                mappings.push(m);
            }
        }
        if self.raw_mappings.is_empty() {
            errs.push(ConfigError::new(
                "mappings",
                "no mappings are configured",
                "add at least one [[mappings]] table naming a table on each endpoint",
            ));
        }
        self.mappings = mappings;
        errs.into_result()
    }

    fn validate_daemon(&self, errs: &mut ConfigErrors) {
        if self.daemon.listen.parse::<SocketAddr>().is_err() {
            errs.push(ConfigError::new(
                "daemon.listen",
                format!("{:?} is not an address and port", self.daemon.listen),
                format!("write it like \"{DEFAULT_LISTEN}\""),
            ));
        }
        if self.daemon.ready_lag_seconds.is_nan() || self.daemon.ready_lag_seconds <= 0.0 {
            errs.push(ConfigError::new(
                "daemon.ready_lag_seconds",
                "must be a positive number of seconds",
                format!("the default is {DEFAULT_READY_LAG_SECONDS}"),
            ));
        }
        if self.daemon.max_group_transactions == 0 {
            errs.push(ConfigError::new(
                "daemon.max_group_transactions",
                "must be at least 1",
                "the default is 256",
            ));
        }
        if !(1..=MAX_SNAPSHOT_CHUNK_ROWS).contains(&self.daemon.snapshot_chunk_rows) {
            errs.push(ConfigError::new(
                "daemon.snapshot_chunk_rows",
                format!("must be between 1 and {MAX_SNAPSHOT_CHUNK_ROWS}"),
                format!("the default is {DEFAULT_SNAPSHOT_CHUNK_ROWS}"),
            ));
        }
    }

    fn validate_endpoints(&self, errs: &mut ConfigErrors) {
        let pg = self
            .endpoints
            .values()
            .filter(|e| e.kind == EndpointKind::Postgres)
            .count();
        let my = self
            .endpoints
            .values()
            .filter(|e| e.kind == EndpointKind::Mysql)
            .count();
        if self.endpoints.len() != 2 || pg != 1 || my != 1 {
            errs.push(ConfigError::new(
                "endpoints",
                format!(
                    "tandem connects exactly one postgres and one mysql endpoint; found {pg} postgres and {my} mysql"
                ),
                "declare [endpoints.inventory] with kind = \"postgres\" and [endpoints.retail] with kind = \"mysql\"",
            ));
        }
        for (name, ep) in &self.endpoints {
            let path = format!("endpoints.{name}");
            let scheme = match ep.kind {
                EndpointKind::Postgres => "postgres",
                EndpointKind::Mysql => "mysql",
            };
            let Some((got_scheme, rest)) = ep.url.split_once("://") else {
                errs.push(ConfigError::new(
                    format!("{path}.url"),
                    "is not a URL",
                    format!("write it like \"{scheme}://tandem@127.0.0.1/dbname\""),
                ));
                continue;
            };
            let ok_scheme = match ep.kind {
                EndpointKind::Postgres => ["postgres", "postgresql"].contains(&got_scheme),
                EndpointKind::Mysql => ["mysql", "mariadb"].contains(&got_scheme),
            };
            if !ok_scheme {
                errs.push(ConfigError::new(
                    format!("{path}.url"),
                    format!("scheme {got_scheme:?} does not match kind = {scheme:?}"),
                    format!("start the URL with {scheme}://"),
                ));
            }
            let authority = rest.split('/').next().unwrap_or_default();
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if userinfo.contains(':') {
                    errs.push(ConfigError::new(
                        format!("{path}.url"),
                        "contains a password",
                        format!(
                            "remove it from the URL and set {path}.password = {{ env = \"NAME\" }} or {{ file = \"/run/secrets/NAME\" }}"
                        ),
                    ));
                }
            }
            if ep.database().is_none() {
                errs.push(ConfigError::new(
                    format!("{path}.url"),
                    "names no database",
                    format!("end the URL with the database name: {scheme}://user@host/dbname"),
                ));
            }
            if matches!(ep.tls.mode, TlsMode::VerifyCa | TlsMode::VerifyFull)
                && ep.tls.ca_file.is_none()
            {
                errs.push(ConfigError::new(
                    format!("{path}.tls.ca_file"),
                    "certificate verification needs the CA",
                    "set ca_file to the PEM file of the CA that signed the server's certificate",
                ));
            }
            for (field, value) in [
                ("slot", &ep.slot),
                ("publication", &ep.publication),
                ("origin", &ep.origin),
            ] {
                if let Some(v) = value {
                    if ep.kind != EndpointKind::Postgres {
                        errs.push(ConfigError::new(
                            format!("{path}.{field}"),
                            "only applies to postgres endpoints",
                            "remove it",
                        ));
                    } else if v.is_empty()
                        || v.len() > 63
                        || !v
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        errs.push(ConfigError::new(
                            format!("{path}.{field}"),
                            format!("{v:?} is not a valid name"),
                            "use 1 to 63 lowercase letters, digits and underscores",
                        ));
                    }
                }
            }
            if ep.kind == EndpointKind::Postgres && ep.server_id.is_some() {
                errs.push(ConfigError::new(
                    format!("{path}.server_id"),
                    "only applies to mysql endpoints",
                    "remove it",
                ));
            }
            if ep.server_id == Some(0) {
                errs.push(ConfigError::new(
                    format!("{path}.server_id"),
                    "0 is not a valid replica server id",
                    "pick a number unique among the server's replicas, e.g. 4181717",
                ));
            }
            if let Some(rows) = ep.xa_held_rows {
                if ep.kind != EndpointKind::Mysql {
                    errs.push(ConfigError::new(
                        format!("{path}.xa_held_rows"),
                        "only applies to mysql endpoints",
                        "remove it",
                    ));
                } else if !(1..=MAX_XA_HELD_ROWS).contains(&rows) {
                    errs.push(ConfigError::new(
                        format!("{path}.xa_held_rows"),
                        format!("must be between 1 and {MAX_XA_HELD_ROWS}"),
                        format!(
                            "the default is {DEFAULT_XA_HELD_ROWS}; set it above the row count of the largest XA transaction the retail side prepares"
                        ),
                    ));
                }
            }
        }
    }

    /// The endpoint of a kind (validated configs have exactly one of each).
    pub fn endpoint(&self, kind: EndpointKind) -> Option<(&str, &EndpointConfig)> {
        self.endpoints
            .iter()
            .find(|(_, e)| e.kind == kind)
            .map(|(n, e)| (n.as_str(), e))
    }

    /// Endpoint names in priority order (first listed wins ties).
    pub fn priority(&self) -> Vec<&str> {
        self.endpoints.keys().map(String::as_str).collect()
    }
}

/// Parse a human duration like `"30s"`, `"5m"`, `"24h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}
