//! Opening endpoints by kind: the only place the runtime knows which crate serves which
//! database. Everything past this module talks to `Source`, `Sink` and `Catalog` traits.

use tandem_core::change::{SourceEvent, TableId};
use tandem_core::config::catalog::Catalog;
use tandem_core::config::{Config, EndpointConfig, EndpointKind, Secret};
use tandem_core::copy_progress::CopyProgress;
use tandem_core::error::StageError;
use tandem_core::position::Position;
use tandem_core::sink::Sink;
use tandem_core::source::Source;
use tandem_core::telemetry::StatusBoard;
use tandem_core::transport::{ChannelSender, EventSender};
use tandem_core::value::ColumnType;

use super::snapshot::{copy, oldest, CopyPlan, MySqlSnapshotReader, StreamFilter};

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

/// Open the source of a direction, resuming after `checkpoint`.
///
/// Without a checkpoint (the direction's first start) the endpoint's consistent snapshot
/// of the tables not finished in `copied` (what an interrupted earlier run committed of
/// each table, whole or in part) is sent first, in snapshot transactions, then the
/// direction's checkpoint is set to the oldest copy position, and streaming continues from
/// there. The returned filter drops streamed changes the copies already hold (see
/// `snapshot`).
#[allow(clippy::too_many_arguments)]
pub async fn open_source(
    cfg: &Config,
    name: &str,
    direction: &str,
    tables: &[TableId],
    checkpoint: Option<Position>,
    mut copied: Vec<(TableId, CopyProgress)>,
    tx: &mut ChannelSender,
    board: &StatusBoard,
) -> Result<(Box<dyn Source>, StreamFilter), StageError> {
    let ep = endpoint(cfg, name)?;
    let pw = password(name, ep)?;
    let chunk_rows = cfg.daemon.snapshot_chunk_rows;
    copied.retain(|(t, _)| tables.contains(t));
    let anything_copied = !copied.is_empty();
    let todo: Vec<(TableId, Option<CopyProgress>)> = tables
        .iter()
        .filter_map(|t| match copied.iter().find(|(c, _)| c == t) {
            None => Some((t.clone(), None)),
            Some((_, record)) if !record.is_finished() => Some((t.clone(), Some(record.clone()))),
            Some(_) => None,
        })
        .collect();
    copied.retain(|(_, record)| record.is_finished());
    let plan = CopyPlan {
        tables: &todo,
        tables_total: tables.len(),
        tables_resumed: copied.len(),
        chunk_rows,
    };
    let todo_tables: Vec<TableId> = todo.iter().map(|(t, _)| t.clone()).collect();
    let copy_needed = checkpoint.is_none() && !todo.is_empty();
    match ep.kind {
        EndpointKind::Postgres => {
            let resume_ep = resume_endpoint(ep);
            if anything_copied {
                // A crash may have left the resume slot behind; it would hold WAL forever.
                drop_slot_if_present(&resume_ep, pw.as_ref(), "left by a crashed resumed copy")
                    .await?;
            }
            if copy_needed {
                if !anything_copied {
                    // First start: a slot left by an interrupted earlier copy holds no
                    // applied change (nothing is committed), so it is safe to replace.
                    drop_slot_if_present(ep, pw.as_ref(), "left by an unfinished initial copy")
                        .await?;
                    let (snap, position) =
                        tandem_postgres::snapshot::PgSnapshot::begin(ep, pw.as_ref(), tables)
                            .await?;
                    let snap = snap.with_chunk_rows(chunk_rows);
                    copied
                        .extend(copy(Box::new(snap), plan, position, tx, board, direction).await?);
                } else {
                    // The direction's slot keeps the WAL since the oldest copied part's
                    // position; a second, short-lived slot gives the new snapshot.
                    require_slot(ep, pw.as_ref()).await?;
                    let (snap, position) = tandem_postgres::snapshot::PgSnapshot::begin(
                        &resume_ep,
                        pw.as_ref(),
                        tables,
                    )
                    .await?;
                    let snap = snap.with_chunk_rows(chunk_rows);
                    copied
                        .extend(copy(Box::new(snap), plan, position, tx, board, direction).await?);
                    drop_slot_if_present(&resume_ep, pw.as_ref(), "its snapshot is copied").await?;
                }
            }
            let (resume, filter) = stream_start(checkpoint, copied, tx).await?;
            let source =
                tandem_postgres::source::PgSource::start(ep, pw.as_ref(), tables, Some(&resume))
                    .await?;
            Ok((Box::new(source), filter))
        }
        EndpointKind::Mysql => {
            if copy_needed {
                let conn = tandem_mysql::connect::connect(ep, pw.as_ref()).await?;
                let snap = tandem_mysql::snapshot::Snapshot::begin(conn).await?;
                let position = snap.position.clone();
                let reader = MySqlSnapshotReader::open(snap, &todo_tables, chunk_rows).await?;
                copied.extend(copy(Box::new(reader), plan, position, tx, board, direction).await?);
            }
            let (resume, filter) = stream_start(checkpoint, copied, tx).await?;
            let options = tandem_mysql::source::SourceOptions::for_endpoint(ep);
            let source =
                tandem_mysql::source::MySqlSource::start(ep, pw.as_ref(), &resume, options).await?;
            Ok((Box::new(source), filter))
        }
    }
}

/// Where the stream starts, and what it must drop: after the checkpoint if there is one;
/// otherwise (every table copied) at the oldest position a part of a table was copied at,
/// which becomes the direction's checkpoint.
async fn stream_start(
    checkpoint: Option<Position>,
    copied: Vec<(TableId, CopyProgress)>,
    tx: &mut ChannelSender,
) -> Result<(Position, StreamFilter), StageError> {
    let start = match checkpoint {
        Some(cp) => cp,
        None => {
            let positions: Vec<&Position> = copied
                .iter()
                .flat_map(|(_, record)| record.parts.iter().map(|p| &p.at))
                .collect();
            let start = oldest(&positions)?.ok_or_else(|| {
                StageError::definite(
                    "The direction has no table to copy",
                    "map at least one table in this direction",
                )
            })?;
            tx.send(SourceEvent::Progress {
                position: start.clone(),
                at: chrono::Utc::now(),
            })
            .await?;
            start
        }
    };
    let filter = StreamFilter::new(copied, &start)?;
    Ok((start, filter))
}

/// The endpoint with the name of the slot that serves a resumed copy's new snapshot.
fn resume_endpoint(ep: &EndpointConfig) -> EndpointConfig {
    let mut resume = ep.clone();
    resume.slot = Some(format!("{}_resume", ep.slot_name()));
    resume
}

async fn require_slot(ep: &EndpointConfig, pw: Option<&Secret>) -> Result<(), StageError> {
    let (client, _conn) = tandem_postgres::connect::connect(ep, pw, "tandem setup").await?;
    let slot = ep.slot_name();
    if tandem_postgres::replication::read_slot(&client, slot)
        .await?
        .is_none()
    {
        return Err(StageError::definite(
            format!("The initial copy was interrupted, and the replication slot {slot:?} that holds the changes since is gone"),
            "copy again: stop tandem, delete this direction's rows (pipeline LIKE '<direction>%') from the target's checkpoint table, and start it",
        ));
    }
    Ok(())
}

async fn drop_slot_if_present(
    ep: &EndpointConfig,
    pw: Option<&Secret>,
    why: &str,
) -> Result<(), StageError> {
    let (client, _conn) = tandem_postgres::connect::connect(ep, pw, "tandem setup").await?;
    let slot = ep.slot_name();
    for attempt in 0..20 {
        let Some(state) = tandem_postgres::replication::read_slot(&client, slot).await? else {
            return Ok(());
        };
        if state.active_pid.is_some() && attempt < 19 {
            // The walsender of the session that created it may still be exiting.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            continue;
        }
        tandem_postgres::replication::check_not_active(slot, &state)?;
        tracing::info!(slot, why, "dropping replication slot");
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
        return Ok(());
    }
    Ok(())
}
