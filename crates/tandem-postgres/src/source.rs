//! [`PgSource`]: PostgreSQL's change log as tandem's [`Source`].
//!
//! The transport's worker task owns the socket (keepalives, status updates, a bounded
//! buffer — see [`crate::replication`]); `next_event` pulls from that buffer and decodes
//! one pgoutput message at a time, so a transaction is streamed change by change and never
//! held whole (invariant 6).
//!
//! Three marks are kept apart: `received` (the end LSN of the last transaction handed to
//! the pipeline, as a Commit or a Progress), `acked` (what the pipeline reported durably
//! applied) and what the transport has told the server. Only `acked` is ever reported —
//! plus one safe exception: while no transaction is open and everything handed out is
//! acknowledged, a keepalive's `wal_end` is, because nothing before it concerns tandem. An
//! idle slot then advances while other tables keep the server busy (without it a quiet slot
//! was seen retaining 12 GB of WAL).
//!
//! No echo: tandem's applier writes under a replication origin, and pgoutput sends an
//! Origin message right after such a transaction's Begin. The Begin is therefore held back
//! until the next message shows whether the transaction is tandem's own; an own
//! transaction emits nothing but a [`SourceEvent::Progress`] at its end, so the pipeline
//! can still checkpoint past it and the slot advances.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pgwire_replication::{ReplicationClient, ReplicationEvent};
use tandem_core::change::{SourceEvent, TableId, TxBegin, TxCommit};
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::position::{Lsn, Position};
use tandem_core::source::Source;
use tokio::task::JoinHandle;

use crate::pgoutput::decoder::pg_time;
use crate::pgoutput::{Decoded, Decoder, DecoderError};
use crate::replication::{self, STATUS_INTERVAL};

/// How long to wait for the server to accept `START_REPLICATION`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `shutdown` waits for the final status update to be written.
const FINAL_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// First server version with the `origin` option of pgoutput.
const PG16: i32 = 160_000;

/// Where the open transaction stands.
#[derive(Debug)]
enum Tx {
    Idle,
    /// Begin seen, not yet emitted: an Origin message may still mark it as tandem's own.
    Pending(TxBegin),
    Open,
    /// tandem's own transaction: dropped.
    Skipping,
}

/// PostgreSQL's change log through a pgoutput slot.
pub struct PgSource {
    client: ReplicationClient,
    decoder: Decoder,
    /// SQL session for catalog look-ups (enum labels of types created while streaming).
    catalog: tokio_postgres::Client,
    catalog_task: JoinHandle<()>,
    origin: String,
    slot: String,
    tx: Tx,
    pending: VecDeque<SourceEvent>,
    start: Lsn,
    received: Lsn,
    acked: Lsn,
    /// Highest LSN handed to the transport for reporting.
    reported: Lsn,
}

impl PgSource {
    /// Connect, make sure publication and slot are usable, and start streaming from
    /// `resume_from` (the checkpoint of the last applied transaction) or, without one,
    /// from the slot's confirmed flush position. Without a checkpoint a missing slot is
    /// created; with one, a missing slot is a definite error (changes were lost).
    pub async fn start(
        ep: &EndpointConfig,
        password: Option<&Secret>,
        tables: &[TableId],
        resume_from: Option<&Position>,
    ) -> Result<PgSource, StageError> {
        let resume = match resume_from {
            None => None,
            Some(Position::PgLsn { lsn }) => Some(*lsn),
            Some(other) => {
                return Err(StageError::definite(
                    format!("The checkpoint {other} is not a PostgreSQL position"),
                    "the checkpoint table holds a position of another database; check the direction's checkpoint row",
                ))
            }
        };
        let (catalog, catalog_task) =
            crate::connect::connect(ep, password, "tandem-source").await?;
        let slot = ep.slot_name().to_owned();
        replication::ensure_publication(&catalog, ep.publication_name(), tables).await?;
        let state = match replication::read_slot(&catalog, &slot).await? {
            Some(state) => {
                replication::check_not_active(&slot, &state)?;
                state.confirmed_flush
            }
            None if resume.is_some() => {
                return Err(StageError::definite(
                    format!("Replication slot {slot:?} does not exist, but a checkpoint says tandem has read from it"),
                    "the slot was dropped behind tandem's back and the changes since the checkpoint are lost: \
                     drop tandem's checkpoint for this direction and run the initial sync again",
                ))
            }
            None => replication::create_slot(&catalog, &slot).await?,
        };
        if replication::server_version(&catalog).await? >= PG16 {
            // The transport cannot pass `origin 'none'` (see `crate::replication`); the
            // Origin message filter below drops the same transactions, at the cost of their
            // bytes on the wire.
            tracing::debug!(
                slot,
                "server-side origin filter not available in the transport; filtering own transactions by origin message"
            );
        }
        let mut decoder = Decoder::new();
        for (oid, labels) in replication::enum_labels(&catalog, None).await? {
            decoder.set_enum_labels(oid, labels);
        }
        let start = resume.map_or(state, |r| r.max(state));
        let cfg = replication::transport_config(ep, password, start)?;
        let mut client = ReplicationClient::connect(cfg).await.map_err(|e| {
            replication::transport_error("Cannot open the replication connection", e)
        })?;
        match tokio::time::timeout(START_TIMEOUT, client.wait_started()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(replication::transport_error(
                    "The server refused to start replication",
                    e,
                ))
            }
            Err(elapsed) => {
                return Err(StageError::transient(
                    "The server did not start replication in time",
                    elapsed,
                ))
            }
        }
        tracing::info!(slot, start = %start, "replication started");
        Ok(PgSource {
            client,
            decoder,
            catalog,
            catalog_task,
            origin: ep.origin_name().to_owned(),
            slot,
            tx: Tx::Idle,
            pending: VecDeque::new(),
            start,
            received: start,
            acked: start,
            reported: start,
        })
    }

    /// The slot this source reads.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    fn report(&mut self, lsn: Lsn) {
        if lsn > self.reported {
            self.reported = lsn;
            self.client
                .update_applied_lsn(pgwire_replication::Lsn(lsn.0));
        }
    }

    /// Emit a held-back Begin before the transaction's first change.
    fn open_tx(&mut self) {
        if let Tx::Pending(begin) = std::mem::replace(&mut self.tx, Tx::Open) {
            self.pending.push_back(SourceEvent::Begin(begin));
        }
    }

    fn end_tx(&mut self, end_lsn: Lsn, commit_time: chrono::DateTime<chrono::Utc>) {
        let event = match std::mem::replace(&mut self.tx, Tx::Idle) {
            Tx::Open => SourceEvent::Commit(TxCommit {
                position: Position::PgLsn { lsn: end_lsn },
                commit_time,
            }),
            // Own, empty or unknown transactions: only the position moves on.
            Tx::Skipping | Tx::Pending(_) | Tx::Idle => SourceEvent::Progress {
                position: Position::PgLsn { lsn: end_lsn },
                at: commit_time,
            },
        };
        self.received = self.received.max(end_lsn);
        self.pending.push_back(event);
    }

    async fn handle(&mut self, ev: ReplicationEvent) -> Result<(), StageError> {
        match ev {
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if matches!(self.tx, Tx::Idle) && self.acked >= self.received {
                    self.report(Lsn(wal_end.0));
                }
            }
            ReplicationEvent::Begin {
                commit_time_micros, ..
            } => {
                let commit_time = pg_time(commit_time_micros).map_err(decode_error)?;
                self.tx = Tx::Pending(TxBegin {
                    commit_time: Some(commit_time),
                    origin: None,
                    snapshot: false,
                });
            }
            ReplicationEvent::Commit {
                end_lsn,
                commit_time_micros,
                ..
            } => {
                let commit_time = pg_time(commit_time_micros).map_err(decode_error)?;
                self.end_tx(Lsn(end_lsn.0), commit_time);
            }
            ReplicationEvent::XLogData { data, .. } => {
                let decoded = self.decoder.decode(&data).map_err(decode_error)?;
                self.apply(decoded).await?;
            }
            // Logical decoding messages and the stop marker carry nothing for tandem.
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    async fn apply(&mut self, decoded: Decoded) -> Result<(), StageError> {
        match decoded {
            Decoded::Begin { commit_time, .. } => {
                self.tx = Tx::Pending(TxBegin {
                    commit_time: Some(commit_time),
                    origin: None,
                    snapshot: false,
                });
            }
            Decoded::Commit {
                end_lsn,
                commit_time,
                ..
            } => self.end_tx(end_lsn, commit_time),
            Decoded::Origin { name, .. } => match &mut self.tx {
                Tx::Pending(_) if name == self.origin => self.tx = Tx::Skipping,
                Tx::Pending(begin) => begin.origin = Some(name),
                Tx::Open | Tx::Skipping | Tx::Idle => {}
            },
            Decoded::Change(change) => {
                if !matches!(self.tx, Tx::Skipping) {
                    self.open_tx();
                    self.pending.push_back(SourceEvent::Change(change));
                }
            }
            Decoded::Truncate { tables, .. } => {
                if !matches!(self.tx, Tx::Skipping) {
                    self.open_tx();
                    self.pending.push_back(SourceEvent::Truncate { tables });
                }
            }
            Decoded::Type { oid, .. } => {
                // A type created after start: learn its labels if it is an enum, before
                // the Relation message that uses it.
                if !self.decoder.is_enum(oid) {
                    for (oid, labels) in replication::enum_labels(&self.catalog, Some(oid)).await? {
                        self.decoder.set_enum_labels(oid, labels);
                    }
                }
            }
            Decoded::Relation(_) | Decoded::Message { .. } => {}
        }
        Ok(())
    }
}

fn decode_error(e: DecoderError) -> StageError {
    StageError::definite_from(
        "Cannot decode the pgoutput stream",
        "the slot has not advanced past the message; report this with the server version and the table's definition",
        e,
    )
}

#[async_trait]
impl Source for PgSource {
    /// Not cancel-safe while a catalog look-up for a new type is in flight.
    async fn next_event(&mut self) -> Result<SourceEvent, StageError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            match self.client.recv().await {
                Ok(Some(ev)) => self.handle(ev).await?,
                Ok(None) => {
                    return Err(StageError::Transient {
                        what: "The replication stream ended".into(),
                        source: None,
                    })
                }
                Err(e) => {
                    return Err(replication::transport_error(
                        "The replication stream failed",
                        e,
                    ))
                }
            }
        }
    }

    async fn acknowledge(&mut self, position: &Position) -> Result<(), StageError> {
        match position {
            Position::PgLsn { lsn } => {
                self.acked = self.acked.max(*lsn);
                self.report(*lsn);
                Ok(())
            }
            other => Err(StageError::definite(
                format!("Cannot acknowledge {other} to a PostgreSQL slot"),
                "this is a bug in the pipeline's wiring: report it",
            )),
        }
    }

    async fn shutdown(&mut self) -> Result<(), StageError> {
        // The transport sends no status update when it stops: wait until it has written
        // the last reported position, so the slot's confirmed_flush_lsn is not left behind.
        let target = self.reported;
        if target > self.start {
            let metrics = self.client.metrics();
            let deadline = Instant::now() + FINAL_ACK_TIMEOUT.max(STATUS_INTERVAL * 4);
            while metrics.last_applied_lsn().0 < target.0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if metrics.last_applied_lsn().0 < target.0 {
                tracing::warn!(slot = %self.slot, lsn = %target, "final acknowledgement not confirmed written");
            }
        }
        let result = self.client.shutdown().await;
        self.catalog_task.abort();
        result.map_err(|e| {
            replication::transport_error("The replication connection did not close cleanly", e)
        })
    }
}
