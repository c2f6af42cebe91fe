//! `tandem run`: the daemon.
//!
//! One pipeline per direction (`inventory->retail`, `retail->inventory`), each with its own
//! source, transport, applier, checkpoint and backpressure, supervised here: a transient
//! error (connection lost, deadlock, server restart) restarts that direction after a capped,
//! jittered backoff — the source re-delivers from the target's checkpoint, so nothing is
//! lost or applied twice; a definite error halts that direction with the reason in the log
//! and in `/status`, and the other direction goes on. SIGTERM/SIGINT stop reading, let the
//! appliers commit complete transactions (an incomplete one is rolled back and re-delivered
//! on the next start), send the last acknowledgements and exit 0.

mod backoff;
mod direction;
mod endpoints;
mod monitor;
mod snapshot;
mod verify;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tandem_core::config::{Config, EndpointKind};
use tandem_core::telemetry::{self, StatusBoard, VerifyBoard};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::http::{self, HttpState};

/// How long shutdown waits for the directions to finish before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Queue of owner values to write back to the other side (`prefer:<endpoint>`).
const WRITE_BACK_CAPACITY: usize = 10_000;

pub async fn run(path: &Path) -> u8 {
    let cfg = match crate::cli::check::load_config(path) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    for w in cfg.mappings.iter().flat_map(|m| &m.warnings) {
        warn!(warning = %w, "configuration");
    }
    let prometheus = match PrometheusBuilder::new().install_recorder() {
        Ok(h) => h,
        Err(e) => {
            error!(error = %e, "cannot install the metrics recorder");
            return 1;
        }
    };
    for (name, help) in telemetry::ALL {
        metrics::describe_counter!(*name, *help);
    }
    let token = match &cfg.daemon.token {
        None => None,
        Some(r) => match r.resolve() {
            Ok(t) => Some(Arc::new(t)),
            Err(why) => {
                eprintln!("daemon.token: {why}");
                return 2;
            }
        },
    };
    let addr: SocketAddr = match cfg.daemon.listen.parse() {
        Ok(a) => a,
        Err(_) => return 2, // validated already
    };
    let board = StatusBoard::default();
    let verify_board = VerifyBoard::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = HttpState {
        board: board.clone(),
        verify: verify_board.clone(),
        prometheus,
        token,
        ready_lag_seconds: cfg.daemon.ready_lag_seconds,
        started_at: chrono::Utc::now(),
    };
    let http_task = tokio::spawn(http::serve(addr, state, stop_rx.clone()));

    let (Some((pg, _)), Some((my, _))) = (
        cfg.endpoint(EndpointKind::Postgres),
        cfg.endpoint(EndpointKind::Mysql),
    ) else {
        return 2;
    };
    let (pg, my) = (pg.to_owned(), my.to_owned());
    // Write-back queues: what one direction's applier decides, the other's writes.
    let (wb_to_my_tx, wb_to_my_rx) = mpsc::channel(WRITE_BACK_CAPACITY);
    let (wb_to_pg_tx, wb_to_pg_rx) = mpsc::channel(WRITE_BACK_CAPACITY);
    let mut tasks = Vec::new();
    for (from, to, wb_out, wb_in) in [
        (pg.clone(), my.clone(), wb_to_pg_tx, wb_to_my_rx),
        (my.clone(), pg.clone(), wb_to_my_tx, wb_to_pg_rx),
    ] {
        if !cfg.mappings.iter().any(|m| m.direction.flows(&from, &to)) {
            continue;
        }
        let d = direction::Direction::new(cfg.clone(), from, to, board.clone(), wb_out, wb_in);
        tasks.push(tokio::spawn(d.supervise(stop_rx.clone())));
    }
    let monitor = tokio::spawn(monitor::run(cfg.clone(), board.clone(), stop_rx.clone()));
    let verifier = tokio::spawn(verify::run(cfg.clone(), verify_board, stop_rx.clone()));
    info!(directions = tasks.len(), listen = %addr, "tandem running");

    wait_for_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let all = futures_join(tasks);
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        warn!(
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "directions did not stop in time; exiting anyway"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    monitor.abort();
    verifier.abort();
    info!("stopped");
    0
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Config shared by the directions.
pub type SharedConfig = Arc<Config>;
