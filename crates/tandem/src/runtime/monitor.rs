//! Lag in bytes and the health of the PostgreSQL slot, polled beside the pipelines.
//!
//! The applier measures lag in seconds as it commits; how much change log is still unread
//! is only known to the servers, so this task asks them every few seconds: PostgreSQL
//! `pg_current_wal_lsn() − confirmed_flush_lsn` of tandem's slot, with the slot's
//! `wal_status` and `safe_wal_size` — the disk a stalled tandem would fill is the DBA's
//! first fear. Failures here are logged at debug level and retried: monitoring never stops
//! replication.

use std::time::Duration;

use tandem_core::config::EndpointKind;
use tandem_core::telemetry::{self, StatusBoard};
use tokio::sync::watch;

use super::{endpoints, SharedConfig};

pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

fn wal_status_code(s: &str) -> f64 {
    match s {
        "reserved" => 0.0,
        "extended" => 1.0,
        "unreserved" => 2.0,
        _ => 3.0,
    }
}

pub async fn run(cfg: SharedConfig, board: StatusBoard, mut stop: watch::Receiver<bool>) {
    let Some((pg_name, ep)) = cfg.endpoint(EndpointKind::Postgres) else {
        return;
    };
    let Some((my_name, _)) = cfg.endpoint(EndpointKind::Mysql) else {
        return;
    };
    let direction = format!("{pg_name}->{my_name}");
    if !cfg
        .mappings
        .iter()
        .any(|m| m.direction.flows(pg_name, my_name))
    {
        return;
    }
    let mut client = None;
    loop {
        if client.is_none() {
            let pw = endpoints::password(pg_name, ep).ok().flatten();
            match tandem_postgres::connect::connect(ep, pw.as_ref(), "tandem monitor").await {
                Ok((c, _conn)) => client = Some(c),
                Err(e) => tracing::debug!(error = %e.report(), "lag monitor cannot connect"),
            }
        }
        if let Some(c) = &client {
            match tandem_postgres::replication::lag(c, ep.slot_name()).await {
                Ok(lag) => {
                    let bytes = lag.bytes_behind.max(0) as u64;
                    metrics::gauge!(telemetry::LAG_BYTES, "direction" => direction.clone())
                        .set(bytes as f64);
                    if let Some(status) = &lag.wal_status {
                        metrics::gauge!(telemetry::PG_SLOT_WAL_STATUS, "endpoint" => pg_name.to_owned())
                            .set(wal_status_code(status));
                    }
                    if let Some(safe) = lag.safe_wal_size {
                        metrics::gauge!(telemetry::PG_SLOT_SAFE_WAL_BYTES, "endpoint" => pg_name.to_owned())
                            .set(safe as f64);
                    }
                    board.update(&direction, |s| s.lag_bytes = Some(bytes));
                }
                Err(e) => {
                    tracing::debug!(error = %e.report(), "lag monitor query failed");
                    if c.is_closed() {
                        client = None;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}
