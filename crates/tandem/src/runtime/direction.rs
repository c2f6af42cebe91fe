//! One direction: source → channel → applier → sink, supervised.
//!
//! The reader task owns the source: it forwards events into the bounded channel (waiting
//! when the applier is behind — backpressure) and passes every durably applied position
//! from the applier back to the source as its acknowledgement. When the applier ends, the
//! reader acknowledges the last applied position and shuts the source down, so the server
//! learns of every commit before the connection closes.

use std::time::Duration;

use tandem_core::apply::{Applier, ApplierSettings, WriteBack, DEFAULT_BATCH_ROWS};
use tandem_core::error::{ErrorClass, StageError};
use tandem_core::mapper::RowMapper;
use tandem_core::source::Source;
use tandem_core::telemetry::{self, StatusBoard};
use tandem_core::transport::{self, AckReceiver, ChannelSender, EventSender};
use tandem_core::write_behind::WriteBehind;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::backoff::Backoff;
use super::endpoints;
use super::SharedConfig;

pub struct Direction {
    cfg: SharedConfig,
    from: String,
    to: String,
    name: String,
    board: StatusBoard,
    wb_out: mpsc::Sender<WriteBack>,
    wb_in: Option<mpsc::Receiver<WriteBack>>,
}

impl Direction {
    pub fn new(
        cfg: SharedConfig,
        from: String,
        to: String,
        board: StatusBoard,
        wb_out: mpsc::Sender<WriteBack>,
        wb_in: mpsc::Receiver<WriteBack>,
    ) -> Direction {
        let name = format!("{from}->{to}");
        Direction {
            cfg,
            from,
            to,
            name,
            board,
            wb_out,
            wb_in: Some(wb_in),
        }
    }

    fn set_state(&self, state: &str, error: Option<String>) {
        self.board.set_state(&self.name, state, error);
    }

    /// Run until `stop`, restarting after transient errors.
    pub async fn supervise(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            self.set_state("connecting", None);
            let started = std::time::Instant::now();
            let result = self.run_once(stop.clone()).await;
            if started.elapsed() > Duration::from_secs(60) {
                // It ran for a while: this is a new incident, not the same one again.
                backoff.reset();
            }
            if *stop.borrow() {
                self.set_state("stopped", None);
                info!(direction = %self.name, "direction stopped");
                return;
            }
            let err = match result {
                Ok(()) => StageError::Transient {
                    what: "the source closed the stream".into(),
                    source: None,
                },
                Err(e) => e,
            };
            let report = err.report();
            match err.class() {
                ErrorClass::Transient => {
                    let delay = backoff.next_delay();
                    warn!(direction = %self.name, error = %report, retry_in_ms = delay.as_millis() as u64, "direction interrupted; reconnecting");
                    metrics::counter!(telemetry::RECONNECTS, "direction" => self.name.clone())
                        .increment(1);
                    self.board.update(&self.name, |s| s.reconnects += 1);
                    self.set_state("reconnecting", Some(report));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => { self.set_state("stopped", None); return; }
                    }
                }
                ErrorClass::Definite => {
                    error!(direction = %self.name, error = %report, "direction halted; fix the cause and restart tandem");
                    self.set_state("halted", Some(report));
                    let _ = stop.changed().await;
                    return;
                }
            }
        }
    }

    async fn run_once(&mut self, stop: watch::Receiver<bool>) -> Result<(), StageError> {
        let cfg = &self.cfg;
        let target = endpoints::open_target(cfg, &self.to).await?;
        let priority = cfg.priority();
        let mut mappers = Vec::new();
        for m in cfg
            .mappings
            .iter()
            .filter(|m| m.direction.flows(&self.from, &self.to))
        {
            let (Some(src), Some(dst)) = (m.sides.get(&self.from), m.sides.get(&self.to)) else {
                continue;
            };
            let source_table = endpoints::table_id(cfg, &self.from, &src.table);
            let target_table = endpoints::table_id(cfg, &self.to, &dst.table);
            let lookup = |c: &str| target.column_type(&target_table, c);
            match RowMapper::new(
                m,
                &self.from,
                &self.to,
                source_table,
                target_table.clone(),
                &lookup,
                &priority,
            ) {
                Ok(mapper) => mappers.push(mapper),
                Err(e) => {
                    // This mapping halts; the others go on.
                    error!(direction = %self.name, mapping = %m.name, error = %e, "mapping halted");
                    metrics::gauge!(telemetry::MAPPING_HALTED, "direction" => self.name.clone(), "mapping" => m.name.clone()).set(1.0);
                    self.board.update(&self.name, |s| {
                        s.halted_mappings.insert(m.name.clone(), e.to_string());
                    });
                }
            }
        }
        if mappers.is_empty() {
            return Err(StageError::definite(
                format!("No mapping of direction {} can run", self.name),
                "see the halted mappings above",
            ));
        }
        let tables: Vec<_> = mappers.iter().map(|m| m.source_table.clone()).collect();
        let (ack_tx, ack_rx) = transport::ack_channel();
        let mut applier = Applier::new(
            ApplierSettings {
                pipeline: self.name.clone(),
                max_group: cfg.daemon.max_group_transactions,
                batch_rows: DEFAULT_BATCH_ROWS,
            },
            // Writes run behind the applier, overlapping its work on the next batch.
            Box::new(WriteBehind::spawn(target.sink)),
            mappers,
            ack_tx,
            self.board.clone(),
            Some(self.wb_out.clone()),
            self.wb_in.take(),
        );
        let checkpoint = applier.load_checkpoint().await;
        let checkpoint = match checkpoint {
            Ok(c) => c,
            Err(e) => {
                self.wb_in = applier.take_write_back_in();
                return Err(e);
            }
        };
        // What the initial copy committed of each table, whole or in part (kept after it,
        // for the stream filter).
        let mut copied = Vec::new();
        for t in &tables {
            match applier.copy_progress(t).await {
                Ok(Some(p)) => copied.push((t.clone(), p)),
                Ok(None) => {}
                Err(e) => {
                    self.wb_in = applier.take_write_back_in();
                    return Err(e);
                }
            }
        }
        info!(direction = %self.name, checkpoint = ?checkpoint.as_ref().map(ToString::to_string), tables_copied = copied.len(), "starting");
        let (tx, mut rx) = transport::channel(transport::DEFAULT_CAPACITY);
        let (done_tx, done_rx) = oneshot::channel();
        let reader = tokio::spawn(read(
            self.cfg.clone(),
            self.from.clone(),
            self.name.clone(),
            tables,
            checkpoint,
            copied,
            tx,
            ack_rx,
            done_rx,
            self.board.clone(),
        ));
        // `streaming` once the source is open and no initial copy is under way (then the
        // applier says so when the copy's last table is committed).
        self.set_state("starting", None);
        let applied = applier.run(&mut rx, stop).await;
        self.wb_in = applier.take_write_back_in();
        drop(rx);
        let _ = done_tx.send(());
        let read_result = reader.await.unwrap_or_else(|e| {
            Err(StageError::Transient {
                what: format!("the reader task failed: {e}"),
                source: None,
            })
        });
        // An applier error explains a reader that stopped because the channel closed.
        applied?;
        read_result
    }
}

#[allow(clippy::too_many_arguments)]
async fn read(
    cfg: SharedConfig,
    from: String,
    name: String,
    tables: Vec<tandem_core::change::TableId>,
    checkpoint: Option<tandem_core::position::Position>,
    copied: Vec<(
        tandem_core::change::TableId,
        tandem_core::copy_progress::CopyProgress,
    )>,
    mut tx: ChannelSender,
    mut acks: AckReceiver,
    mut done: oneshot::Receiver<()>,
    board: StatusBoard,
) -> Result<(), StageError> {
    let (mut source, mut filter): (Box<dyn Source>, _) = endpoints::open_source(
        &cfg, &from, &name, &tables, checkpoint, copied, &mut tx, &board,
    )
    .await?;
    if !board.copying(&name) {
        board.set_state(&name, "streaming", None);
    }
    let result = loop {
        tokio::select! {
            _ = &mut done => break Ok(()),
            pos = acks.changed() => {
                match pos {
                    Some(p) => {
                        if let Err(e) = source.acknowledge(&p).await { break Err(e) }
                    }
                    None => break Ok(()),
                }
            }
            ev = source.next_event() => {
                let ev = match ev { Ok(ev) => ev, Err(e) => break Err(e) };
                if let tandem_core::change::SourceEvent::Commit(c) = &ev {
                    let p = c.position.to_string();
                    board.update(&name, |s| s.source_position = Some(p));
                }
                let events = match filter.process(ev) { Ok(evs) => evs, Err(e) => break Err(e) };
                let mut closed = false;
                for ev in events {
                    tokio::select! {
                        sent = tx.send(ev) => if sent.is_err() { closed = true; break },
                        _ = &mut done => { closed = true; break },
                    }
                }
                if closed { break Ok(()) }
            }
        }
    };
    if let Some(p) = acks.latest() {
        if let Err(e) = source.acknowledge(&p).await {
            warn!(direction = %name, error = %e.report(), "last acknowledgement failed");
        }
    }
    if let Err(e) = source.shutdown().await {
        warn!(direction = %name, error = %e.report(), "source shutdown failed");
    }
    result
}
