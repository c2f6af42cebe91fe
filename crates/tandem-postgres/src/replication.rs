//! The replication connection, the slot and the publication.
//!
//! Transport: `pgwire-replication` 0.5 (decided, see below). Its worker task owns the
//! socket: it answers keepalives, sends standby status updates every
//! [`STATUS_INTERVAL`], and feeds a bounded channel. When that channel is full it keeps
//! sending status updates while it waits, so a slow pipeline stalls the stream (TCP flow
//! control) but never trips `wal_sender_timeout`. It carries SCRAM, md5 and TLS.
//!
//! Why not an own CopyBoth client: the measured throughput is the same (113k changes/s,
//! bound by the WAL sender, see `shared/notes/postgres-logical.md`), and the crate's gaps
//! are closable from outside: (1) it sends no final status update on stop — [`PgSource`]
//! waits until the worker reports the last acknowledged LSN as written before it stops
//! the stream; (2) it cannot pass pgoutput's `origin 'none'` (PostgreSQL ≥ 16; 15 refuses
//! it with "unrecognized pgoutput option: origin"). Its worker writes `START_REPLICATION`
//! itself with a fixed option list (`proto_version '1'`, `publication_names`,
//! `messages 'true'`, optionally `binary 'true'`); 0.5.0 is the newest release
//! (checked 2026-11-27) and has no option hook, and its gated session (`connect_gated` +
//! `simple_query`) cannot carry `START_REPLICATION` because it does not enter CopyBoth.
//! So tandem filters its own transactions client-side from the Origin message, which every
//! supported server version sends right after Begin: the effect is the same, the cost is
//! that those transactions' rows still cross the wire (see [`crate::source`]). Adding the
//! option needs an upstream change (a plugin-options list in `ReplicationConfig`), not a fork.
//!
//! Slot and publication rules: both are created when missing *on a first start*. On a
//! resume (the caller has a checkpoint) a missing or invalidated slot is a definite error:
//! the WAL between the checkpoint and now is gone and only a fresh initial sync can repair
//! it. A slot held by another process is a definite error naming that PID.
//!
//! [`PgSource`]: crate::source::PgSource

use std::time::Duration;

use pgwire_replication::{ReplicationConfig, TlsConfig};
use tandem_core::change::TableId;
use tandem_core::config::{EndpointConfig, Secret, TlsMode};
use tandem_core::error::StageError;
use tandem_core::position::Lsn;
use tokio_postgres::Client;

/// How often the transport reports progress to the server (and so how long a shutdown
/// waits at most for its final acknowledgement to go out).
pub const STATUS_INTERVAL: Duration = Duration::from_millis(500);
/// Events buffered between the transport's socket task and the decoder.
pub const TRANSPORT_BUFFER_EVENTS: usize = 4096;
/// The output plugin tandem decodes.
pub const PLUGIN: &str = "pgoutput";
/// Startup options of the replication session: the text format of values depends on them.
pub const REPLICATION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3";

/// Quote an identifier for SQL (`"my ""table"""`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a string literal for SQL (`'it''s'`).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn qualified(t: &TableId) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name))
}

fn sql_err(what: impl Into<String>, e: tokio_postgres::Error) -> StageError {
    if e.as_db_error().is_some() {
        let what = what.into();
        StageError::definite_from(
            what,
            "check the tandem role's privileges (REPLICATION, CREATE on the database, ownership of the tables) and the server log",
            e,
        )
    } else {
        StageError::transient(what, e)
    }
}

/// Translate a transport error: lost connections are transient, server refusals definite.
pub fn transport_error(what: &str, e: pgwire_replication::PgWireError) -> StageError {
    use pgwire_replication::PgWireError as E;
    match &e {
        E::Server(msg) if msg.contains("does not exist") => StageError::definite_from(
            format!("{what}: the replication slot or publication does not exist"),
            "the slot was dropped behind tandem's back, so changes since the last checkpoint are lost; \
             drop tandem's checkpoint for this direction and run the initial sync again",
            e,
        ),
        E::Server(msg) if msg.contains("is active for PID") => StageError::definite_from(
            format!("{what}: the replication slot is in use by another process"),
            "stop the other reader of this slot (see pg_replication_slots.active_pid) or configure another slot name",
            e,
        ),
        // Server shutting down or restarting, too many connections, connection failures.
        E::Server(msg)
            if ["SQLSTATE 57P", "SQLSTATE 08", "SQLSTATE 53", "SQLSTATE 55006"]
                .iter()
                .any(|code| msg.contains(code)) =>
        {
            StageError::transient(what.to_owned(), e)
        }
        E::Server(msg) if msg.contains("can no longer") || msg.contains("invalidated") => {
            StageError::definite_from(
                format!("{what}: the replication slot has been invalidated"),
                "the server removed WAL the slot still needed (max_slot_wal_keep_size); drop the slot and tandem's checkpoint and run the initial sync again",
                e,
            )
        }
        E::Auth(_) | E::Tls(_) => StageError::definite_from(
            format!("{what}: the server refused the replication login"),
            "check the password secret, the role's REPLICATION attribute, pg_hba.conf (a 'replication' entry is not needed for logical replication, the database's is) and the TLS settings",
            e,
        ),
        E::Server(_) | E::Protocol(_) | E::MessageTooLarge { .. } | E::Internal(_) => {
            StageError::definite_from(
                what.to_owned(),
                "read the server log for the reason; the stream cannot continue as configured",
                e,
            )
        }
        _ => StageError::transient(what.to_owned(), e),
    }
}

/// Build the transport's configuration from the endpoint.
pub fn transport_config(
    ep: &EndpointConfig,
    password: Option<&Secret>,
    start: Lsn,
) -> Result<ReplicationConfig, StageError> {
    let pg: tokio_postgres::Config = ep.url.parse().map_err(|e| {
        StageError::definite_from(
            "The PostgreSQL endpoint URL cannot be parsed",
            "write it like postgres://user@host:5432/dbname (without a password)",
            e,
        )
    })?;
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let user = pg.get_user().unwrap_or("postgres").to_owned();
    let database = ep.database().ok_or_else(|| {
        StageError::definite(
            "The PostgreSQL endpoint URL names no database",
            "end the URL with /dbname",
        )
    })?;
    let tls = match ep.tls.mode {
        TlsMode::Disable => TlsConfig::disabled(),
        TlsMode::Prefer => TlsConfig {
            mode: pgwire_replication::SslMode::Prefer,
            ..TlsConfig::disabled()
        },
        TlsMode::Require => TlsConfig::require(),
        TlsMode::VerifyCa => TlsConfig::verify_ca(ep.tls.ca_file.clone()),
        // pgwire-replication refuses verify-full with an IP address as the host unless the
        // name to check is given explicitly; libpq checks the IP against the certificate's
        // IP addresses, and naming the IP does the same here.
        TlsMode::VerifyFull if host.parse::<std::net::IpAddr>().is_ok() => {
            TlsConfig::verify_full(ep.tls.ca_file.clone()).with_sni_hostname(host.clone())
        }
        TlsMode::VerifyFull => TlsConfig::verify_full(ep.tls.ca_file.clone()),
    };
    // publication_names is parsed as an identifier list: quote to keep the case.
    let publication = quote_ident(ep.publication_name());
    Ok(ReplicationConfig::new(
        host,
        user,
        password.map(|p| p.expose().to_owned()).unwrap_or_default(),
        database,
        ep.slot_name(),
        publication,
    )
    .with_port(port)
    .with_tls(tls)
    .with_start_lsn(pgwire_replication::Lsn(start.0))
    .with_ack_lsn(pgwire_replication::Lsn(start.0))
    .with_status_interval(STATUS_INTERVAL)
    .with_buffer_size(TRANSPORT_BUFFER_EVENTS)
    .with_options(REPLICATION_OPTIONS)
    .with_application_name("tandem-source"))
}

/// Make sure the publication exists and publishes every mapped table.
pub async fn ensure_publication(
    client: &Client,
    name: &str,
    tables: &[TableId],
) -> Result<(), StageError> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await
        .map_err(|e| sql_err("Cannot read pg_publication", e))?
        .is_some();
    let list = |ts: &[&TableId]| {
        ts.iter()
            .map(|t| qualified(t))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !exists {
        let all: Vec<&TableId> = tables.iter().collect();
        let sql = format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            quote_ident(name),
            list(&all)
        );
        tracing::info!(
            publication = name,
            tables = all.len(),
            "creating publication"
        );
        return client
            .batch_execute(&sql)
            .await
            .map_err(|e| sql_err(format!("Cannot create publication {name:?}"), e));
    }
    let rows = client
        .query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", &[&name])
        .await
        .map_err(|e| sql_err("Cannot read pg_publication_tables", e))?;
    let published: Vec<TableId> = rows
        .iter()
        .map(|r| {
            Ok(TableId::new(
                r.try_get::<_, String>(0)?,
                r.try_get::<_, String>(1)?,
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| sql_err("Cannot read pg_publication_tables", e))?;
    let missing: Vec<&TableId> = tables.iter().filter(|t| !published.contains(t)).collect();
    if !missing.is_empty() {
        let sql = format!(
            "ALTER PUBLICATION {} ADD TABLE {}",
            quote_ident(name),
            list(&missing)
        );
        tracing::info!(
            publication = name,
            tables = missing.len(),
            "adding tables to publication"
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| sql_err(format!("Cannot add tables to publication {name:?}"), e))?;
    }
    Ok(())
}

/// What `pg_replication_slots` says about tandem's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub confirmed_flush: Lsn,
    pub active_pid: Option<i32>,
    pub wal_status: Option<String>,
}

/// Read the slot; `None` when it does not exist. Wrong plugin, wrong database or a lost
/// slot are definite errors.
pub async fn read_slot(client: &Client, slot: &str) -> Result<Option<SlotState>, StageError> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, active_pid, wal_status, \
             confirmed_flush_lsn::text, current_database()::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| sql_err("Cannot read pg_replication_slots", e))?;
    let Some(row) = row else { return Ok(None) };
    let plugin: Option<String> = row
        .try_get(0)
        .map_err(|e| sql_err("Cannot read the replication slot", e))?;
    let database: Option<String> = row
        .try_get(1)
        .map_err(|e| sql_err("Cannot read the replication slot", e))?;
    let current: String = row
        .try_get(5)
        .map_err(|e| sql_err("Cannot read the replication slot", e))?;
    if plugin.as_deref() != Some(PLUGIN) {
        return Err(StageError::definite(
            format!("Replication slot {slot:?} uses plugin {plugin:?}, not {PLUGIN}"),
            "configure another slot name for tandem, or drop this slot if nothing else uses it",
        ));
    }
    if database.as_deref() != Some(current.as_str()) {
        return Err(StageError::definite(
            format!("Replication slot {slot:?} belongs to database {database:?}, not {current:?}"),
            "configure another slot name for this endpoint",
        ));
    }
    let wal_status: Option<String> = row
        .try_get(3)
        .map_err(|e| sql_err("Cannot read the replication slot", e))?;
    if wal_status.as_deref() == Some("lost") {
        return Err(StageError::definite(
            format!("Replication slot {slot:?} is invalidated (wal_status = lost)"),
            "the server removed WAL the slot needed (raise max_slot_wal_keep_size); drop the slot and \
             tandem's checkpoint for this direction, then run the initial sync again",
        ));
    }
    let confirmed: Option<String> = row
        .try_get(4)
        .map_err(|e| sql_err("Cannot read the replication slot", e))?;
    let confirmed_flush = confirmed
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Lsn(0));
    Ok(Some(SlotState {
        confirmed_flush,
        active_pid: row
            .try_get(2)
            .map_err(|e| sql_err("Cannot read the replication slot", e))?,
        wal_status,
    }))
}

/// Refuse a slot another process is reading.
pub fn check_not_active(slot: &str, state: &SlotState) -> Result<(), StageError> {
    match state.active_pid {
        Some(pid) => Err(StageError::definite(
            format!("Replication slot {slot:?} is in use by PID {pid}"),
            format!(
                "another reader holds the slot; stop it (SELECT pg_terminate_backend({pid}) if it is a \
                 stale tandem) or configure another slot name"
            ),
        )),
        None => Ok(()),
    }
}

/// Create a logical slot without a snapshot (streaming-only start).
pub async fn create_slot(client: &Client, slot: &str) -> Result<Lsn, StageError> {
    tracing::info!(slot, "creating replication slot");
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(|e| sql_err(format!("Cannot create replication slot {slot:?}"), e))?;
    let lsn: String = row
        .try_get(0)
        .map_err(|e| sql_err("Cannot read the replication slot", e))?;
    lsn.parse().map_err(|e| {
        StageError::definite_from(
            "The server returned an unreadable LSN",
            "report this as a bug",
            e,
        )
    })
}

/// `server_version_num` (e.g. 150004).
pub async fn server_version(client: &Client) -> Result<i32, StageError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| sql_err("Cannot read the server version", e))?;
    row.try_get(0)
        .map_err(|e| sql_err("Cannot read the replication slot", e))
}

/// Every enum type's labels in sort order, so columns of them decode as enums.
pub async fn enum_labels(
    client: &Client,
    only: Option<u32>,
) -> Result<Vec<(u32, Vec<String>)>, StageError> {
    let rows = client
        .query(
            "SELECT enumtypid::oid, array_agg(enumlabel::text ORDER BY enumsortorder) \
             FROM pg_enum WHERE $1::oid IS NULL OR enumtypid = $1::oid GROUP BY enumtypid",
            &[&only],
        )
        .await
        .map_err(|e| sql_err("Cannot read pg_enum", e))?;
    rows.iter()
        .map(|r| Ok((r.try_get::<_, u32>(0)?, r.try_get::<_, Vec<String>>(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| sql_err("Cannot read pg_enum", e))
}

/// How far a slot lags behind the server's WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLag {
    /// WAL bytes between the slot's confirmed flush position and the current insert position.
    pub bytes_behind: i64,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes that can still be written before the slot is in danger of losing WAL
    /// (`None` when `max_slot_wal_keep_size` is unlimited).
    pub safe_wal_size: Option<i64>,
}

/// Read `slot`'s lag from `pg_replication_slots`.
pub async fn lag(client: &Client, slot: &str) -> Result<SlotLag, StageError> {
    let row = client
        .query_opt(
            "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, wal_status, safe_wal_size \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| sql_err("Cannot read pg_replication_slots", e))?
        .ok_or_else(|| {
            StageError::definite(
                format!("Replication slot {slot:?} does not exist"),
                "start tandem to create it, or check the endpoint's slot name",
            )
        })?;
    let read = |e| sql_err("Cannot read pg_replication_slots", e);
    Ok(SlotLag {
        bytes_behind: row.try_get::<_, Option<i64>>(0).map_err(read)?.unwrap_or(0),
        wal_status: row.try_get(1).map_err(read)?,
        safe_wal_size: row.try_get(2).map_err(read)?,
    })
}
