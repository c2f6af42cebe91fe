//! Opening endpoints by kind: the only place the runtime knows which crate serves which
//! database. Everything past this module talks to `Source`, `Sink` and `Catalog` traits.

use tandem_core::change::TableId;
use tandem_core::config::catalog::Catalog;
use tandem_core::config::{Config, EndpointConfig, EndpointKind, Secret};
use tandem_core::error::StageError;
use tandem_core::position::Position;
use tandem_core::sink::Sink;
use tandem_core::source::Source;
use tandem_core::telemetry::StatusBoard;
use tandem_core::transport::ChannelSender;
use tandem_core::value::ColumnType;

/// A target: where rows are written, and what its tables look like.
pub struct Target {
    pub sink: Box<dyn Sink>,
    pub catalog: Box<dyn Catalog + Send + Sync>,
}

impl Target {
    pub fn column_type(&self, table: &TableId, column: &str) -> Option<ColumnType> {
        let t = self.catalog.table(table)?;
        let i = t.schema.column_index(column)?;
        t.schema.columns.get(i).map(|c| c.column_type.clone())
    }
}

pub fn endpoint<'a>(cfg: &'a Config, name: &str) -> Result<&'a EndpointConfig, StageError> {
    cfg.endpoints.get(name).ok_or_else(|| {
        StageError::definite(format!("No endpoint named {name:?}"), "check the config")
    })
}

pub fn password(name: &str, ep: &EndpointConfig) -> Result<Option<Secret>, StageError> {
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

fn schemas_of(cfg: &Config, endpoint: &str) -> Vec<String> {
    let mut v: Vec<String> = cfg
        .mappings
        .iter()
        .filter_map(|m| m.sides.get(endpoint))
        .map(|s| table_id(cfg, endpoint, &s.table).schema)
        .collect();
    v.sort();
    v.dedup();
    v
}

pub async fn open_target(cfg: &Config, name: &str) -> Result<Target, StageError> {
    let ep = endpoint(cfg, name)?;
    let pw = password(name, ep)?;
    match ep.kind {
        EndpointKind::Postgres => {
            let (client, conn) =
                tandem_postgres::connect::connect(ep, pw.as_ref(), "tandem applier").await?;
            let schemas = schemas_of(cfg, name);
            let refs: Vec<&str> = schemas.iter().map(String::as_str).collect();
            let catalog =
                tandem_postgres::catalog::PgCatalog::load(&client, &refs, "public").await?;
            let sink = tandem_postgres::sink::PgSink::open(
                client,
                Some(conn),
                ep.origin_name(),
                tandem_postgres::ddl::DEFAULT_SCHEMA,
            )
            .await?;
            Ok(Target {
                sink: Box::new(sink),
                catalog: Box::new(catalog),
            })
        }
        EndpointKind::Mysql => {
            let mut conn = tandem_mysql::connect::connect(ep, pw.as_ref()).await?;
            let db = ep.database().unwrap_or_default();
            let catalog = tandem_mysql::catalog::MySqlCatalog::load(&mut conn, &db).await?;
            let sink = tandem_mysql::sink::MySqlSink::from_conn(conn, ep.loop_prevention).await?;
            Ok(Target {
                sink: Box::new(sink),
                catalog: Box::new(catalog),
            })
        }
    }
}

/// Open the source of a direction, resuming after `checkpoint`. Without a checkpoint (the
/// direction's first start) the endpoint's consistent snapshot of `tables` is sent first,
/// as one transaction ending at the snapshot's position, and streaming continues from there.
pub async fn open_source(
    cfg: &Config,
    name: &str,
    direction: &str,
    tables: &[TableId],
    checkpoint: Option<Position>,
    tx: &mut ChannelSender,
    board: &StatusBoard,
) -> Result<Box<dyn Source>, StageError> {
    let ep = endpoint(cfg, name)?;
    let pw = password(name, ep)?;
    match ep.kind {
        EndpointKind::Postgres => {
            let resume = match checkpoint {
                Some(cp) => cp,
                None => {
                    // First start: a slot left by an interrupted earlier copy holds no
                    // applied change (there is no checkpoint), so it is safe to replace.
                    drop_stale_slot(ep, pw.as_ref()).await?;
                    let (snap, position) =
                        tandem_postgres::snapshot::PgSnapshot::begin(ep, pw.as_ref(), tables)
                            .await?;
                    super::snapshot::copy(
                        Box::new(snap),
                        tables,
                        position.clone(),
                        tx,
                        board,
                        direction,
                    )
                    .await?;
                    position
                }
            };
            let source =
                tandem_postgres::source::PgSource::start(ep, pw.as_ref(), tables, Some(&resume))
                    .await?;
            Ok(Box::new(source))
        }
        EndpointKind::Mysql => {
            let resume = match checkpoint {
                Some(cp) => cp,
                None => {
                    let conn = tandem_mysql::connect::connect(ep, pw.as_ref()).await?;
                    let snap = tandem_mysql::snapshot::Snapshot::begin(conn).await?;
                    let position = snap.position.clone();
                    let reader = super::snapshot::MySqlSnapshotReader::open(snap, tables).await?;
                    super::snapshot::copy(
                        Box::new(reader),
                        tables,
                        position.clone(),
                        tx,
                        board,
                        direction,
                    )
                    .await?;
                    position
                }
            };
            let options = tandem_mysql::source::SourceOptions::for_endpoint(ep);
            let source =
                tandem_mysql::source::MySqlSource::start(ep, pw.as_ref(), &resume, options).await?;
            Ok(Box::new(source))
        }
    }
}

async fn drop_stale_slot(ep: &EndpointConfig, pw: Option<&Secret>) -> Result<(), StageError> {
    let (client, _conn) = tandem_postgres::connect::connect(ep, pw, "tandem setup").await?;
    let slot = ep.slot_name();
    if let Some(state) = tandem_postgres::replication::read_slot(&client, slot).await? {
        tandem_postgres::replication::check_not_active(slot, &state)?;
        tracing::warn!(
            slot,
            "dropping the replication slot of an initial copy that did not finish"
        );
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map_err(|e| {
                StageError::definite_from(
                    format!("Cannot drop the unfinished slot {slot:?}"),
                    format!("drop it by hand: SELECT pg_drop_replication_slot('{slot}')"),
                    e,
                )
            })?;
    }
    Ok(())
}
