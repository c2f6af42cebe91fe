//! The MySQL/MariaDB binlog source: a replica dump connection turned into [`SourceEvent`]s.
//!
//! A background task reads the dump and sends events into a bounded channel; when the
//! pipeline falls behind, the channel fills, the task stops reading, and the server's
//! socket buffer applies backpressure (invariant 6). Transactions are streamed: `Begin` is
//! sent at the first row of a transaction, rows as their rows events are decoded, `Commit`
//! at XID/`COMMIT`.
//!
//! Events cross the channel in batches, not one by one: a message per row cost more than
//! decoding the row (channel send, wake-up and the receiving task's poll per row; measured
//! in `BENCHMARKS.md`). A batch is sent once it holds [`BATCH_EVENTS`] events (checked
//! after each rows event, whose rows are decoded straight into the batch) and at every
//! `Commit` and `Progress`, i.e. whenever the reader reaches the end of an event group and
//! may then wait on the server, so nothing read stays held while the stream is idle.
//! [`MySqlSource::next_event`] hands the batch out one event at a time, moving each event
//! out of the batch's own buffer. Memory stays bounded by events: the channel holds
//! `channel_capacity / BATCH_EVENTS` batches of at most `BATCH_EVENTS` events plus the
//! rows of one rows event (bounded by the event's size).
//!
//! Positions: the MariaDB GTID state is kept for every domain and advanced by *every*
//! event group, including those tandem drops (its own writes, other databases, DDL), so
//! that `Commit` and `Progress` positions resume exactly after what was read. Resuming
//! sends the whole state as `@slave_connect_state`.
//!
//! On MySQL ([`crate::flavor`]) the state is the executed GTID set (`uuid:1-5,…`), grown
//! by every GTID event's `uuid:gno` at the end of its transaction (dropped ones too) and by
//! each file's PREVIOUS_GTIDS; resuming sends the set with `COM_BINLOG_DUMP_GTID`, and the
//! server skips every transaction in it. An empty set (no GTID ever executed when the
//! snapshot was taken) resumes from the file/offset recorded with it instead, which on a
//! server with GTIDs off is the whole story (MySQL opens each transaction with an
//! ANONYMOUS_GTID event then).
//!
//! Loop prevention (design invariant 2): a transaction is dropped when
//! - its events carry `LOG_EVENT_SKIP_REPLICATION_F` (0x8000), written by a session with
//!   `skip_replication=1` — checked client-side always; optionally also filtered by the
//!   server ([`SourceOptions::server_side_skip`]: the dump session sets
//!   `skip_replication=1`, as a MariaDB replica with
//!   `replicate_events_marked_for_skip=FILTER_ON_MASTER` does). Server-side filtering
//!   hides those transactions' GTIDs, so the state advances at the next visible group
//!   instead; the default is client-side only;
//! - its first row belongs to `tandem_apply_marker` (marker mode; the applier writes the
//!   marker row first in each transaction, so the decision is made before any row of the
//!   transaction has been sent).
//!
//! Dropped transactions surface as [`SourceEvent::Progress`].
//!
//! XA transactions: `XA START … XA END; XA PREPARE` is written to the binlog at PREPARE
//! time as its own event group (MariaDB flags its GTID event `FL_PREPARED_XA`; MySQL
//! opens it with an `XA START` query), rows included, ending in XA_PREPARE (38); the later
//! `XA COMMIT xid` / `XA ROLLBACK xid` is a second group holding one query. The rows take
//! effect only at the commit, so the reader holds a prepared group's rows, keyed by xid,
//! and delivers them as one whole transaction at the `XA COMMIT`'s position (origin: the
//! PREPARE group's GTID); `XA ROLLBACK` discards them. `XA COMMIT … ONE PHASE` is an
//! ordinary BEGIN…XID group on MariaDB and an XA_PREPARE with `one_phase` set on MySQL:
//! both are ordinary transactions. Held rows of all prepared transactions together are
//! capped ([`SourceOptions::xa_held_rows`]); past the cap the stream stops with a definite
//! error naming the xid, never dropping or splitting the transaction.
//!
//! Positions with prepared XA transactions pending: a restart must read each pending
//! PREPARE again, or its rows would be lost; and it must not deliver again what was
//! delivered after that PREPARE. The `XA COMMIT`'s own position includes both its GTID
//! and the PREPARE's.
//! - MySQL (GTID set): the PREPARE group's GTID joins the executed set only at its commit
//!   or rollback. Positions meanwhile carry a set with that hole; the server, which skips
//!   exactly the transactions in the set, sends the PREPARE again and nothing else.
//! - MariaDB (one sequence number per domain, no holes): while any PREPARE is pending,
//!   every `Commit` and `Progress` carries as its GTID state the state *before the oldest
//!   pending PREPARE group* (where to resume reading), and as its `file`/`pos` the end of
//!   the last group read (how far effects were delivered; [`Position::try_cmp`] orders
//!   equal states by it, so later groups still count as new). On start, when this server's
//!   state at that file/offset (`BINLOG_GTID_POS`) is ahead of the position's, the groups
//!   up to it are read again but not delivered ("replayed"): their GTIDs advance the
//!   state, ordinary ones are dropped, a replayed PREPARE is held again, a replayed
//!   `XA COMMIT` discards what it committed. Positions report the replayed file/offset
//!   until the stream passes it, so a checkpoint never moves back.
//! - A stream positioned by file only (MySQL with GTIDs off) cannot hold its position back:
//!   there a restart between PREPARE and COMMIT loses the prepared rows, and the
//!   `XA COMMIT` logs a warning naming the xid (as it does for a transaction prepared
//!   before a snapshot's position).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Row};
use mysql_common::packets::{GnoInterval, Sid};
use tandem_core::change::{TxBegin, TxCommit};
use tandem_core::config::{EndpointConfig, Secret};
use tandem_core::error::StageError;
use tandem_core::source::Source;
use tandem_core::{Change, GtidSet, Position, SourceEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::binlog::catalog_cache::CatalogCache;
use crate::binlog::events::{self, MariaGtid, MySqlGtid, Query, QueryKind, Rotate, XaPrepare, Xid};
use crate::binlog::rows::RowsEvent;
use crate::binlog::schema::TableDecoder;
use crate::binlog::table_map::TableMap;
use crate::binlog::{event_type as et, BinlogError, EventHeader};
use crate::connect::{classify, connect};
use crate::flavor::ServerFlavor;

/// Default interval of server heartbeats on an idle stream.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default number of events buffered between the reader task and the pipeline.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 4096;
/// Events a batch is sent at (a rows event's rows are never split between batches).
pub const BATCH_EVENTS: usize = 256;
/// Room a batch is allocated with: a full batch and a rows event of typical size (about 100
/// rows of 8 KiB, `binlog_row_event_max_size`) fit without growing it.
const PENDING_CAPACITY: usize = 2 * BATCH_EVENTS;
/// Default cap on the rows held for prepared, not yet committed, XA transactions (all of
/// them together); the endpoint's `xa_held_rows` overrides it.
pub const DEFAULT_XA_HELD_ROWS: usize = tandem_core::config::DEFAULT_XA_HELD_ROWS;

/// One message of the reader task: events in stream order, or the error that ended it.
type Batch = Result<Vec<SourceEvent>, StageError>;

/// How the source reads.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// The id this reader registers with; must differ from every server's and replica's.
    pub server_id: u32,
    pub heartbeat: Duration,
    pub channel_capacity: usize,
    /// Emit changes of these databases only (empty: all). Other groups still advance the
    /// position.
    pub databases: Vec<String>,
    /// Also ask the server to filter `skip_replication` events (see the module docs).
    pub server_side_skip: bool,
    /// Most rows held in memory for prepared XA transactions awaiting `XA COMMIT`.
    pub xa_held_rows: usize,
}

impl SourceOptions {
    /// Options for an endpoint: its server id and its database.
    pub fn for_endpoint(ep: &EndpointConfig) -> SourceOptions {
        SourceOptions {
            server_id: ep.server_id(),
            heartbeat: DEFAULT_HEARTBEAT,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            databases: ep.database().into_iter().collect(),
            server_side_skip: false,
            xa_held_rows: ep.xa_held_rows(),
        }
    }
}

/// A running binlog reader.
pub struct MySqlSource {
    rx: mpsc::Receiver<Batch>,
    /// The rest of the last batch received, in stream order.
    buffered: std::vec::IntoIter<SourceEvent>,
    task: JoinHandle<()>,
    acknowledged: Option<Position>,
}

impl MySqlSource {
    /// Connect and start streaming after `from` (a [`Position::MySqlGtid`] state or a
    /// [`Position::MySqlFile`] offset, as a snapshot or a checkpoint gave it).
    pub async fn start(
        ep: &EndpointConfig,
        password: Option<&Secret>,
        from: &Position,
        opts: SourceOptions,
    ) -> Result<MySqlSource, StageError> {
        let mut dump = connect(ep, password).await?;
        let schema_conn = connect(ep, password).await?;
        let flavor = ServerFlavor::detect(&mut dump).await?;
        let checksum: Option<String> = dump
            .query_first("SELECT @@global.binlog_checksum")
            .await
            .map_err(|e| classify("Reading binlog_checksum", e))?;
        let checksum_on = checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        let heartbeat_ns = opts.heartbeat.as_nanos().max(1_000_000);
        let mut setup = vec![
            "SET @master_binlog_checksum = @@global.binlog_checksum".to_owned(),
            format!("SET @master_heartbeat_period = {heartbeat_ns}"),
        ];
        if flavor.is_mariadb() {
            // Without it MariaDB replaces GTID events by BEGIN queries.
            setup.push("SET @mariadb_slave_capability = 4".to_owned());
        } else {
            // MySQL ≥ 8.0.26's names for the same two settings.
            setup.push("SET @source_binlog_checksum = @@global.binlog_checksum".to_owned());
            setup.push(format!("SET @source_heartbeat_period = {heartbeat_ns}"));
        }
        if opts.server_side_skip {
            if !flavor.is_mariadb() {
                return Err(StageError::definite(
                    "Server-side skip_replication filtering needs MariaDB; this server is MySQL",
                    "use loop_prevention = \"marker\" (or \"auto\") for this endpoint",
                ));
            }
            setup.push("SET skip_replication = 1".to_owned());
        }
        let (mut state, request) = match from {
            Position::MySqlGtid { gtid, file, pos } if flavor.is_mariadb() => {
                let text = gtid.to_string();
                if !matches!(gtid, GtidSet::MariaDb(_)) && !gtid.is_empty() {
                    return Err(StageError::definite(
                        format!(
                            "GTID state {text:?} is a MySQL GTID set, and this server is MariaDB"
                        ),
                        "resume from a MariaDB checkpoint or re-snapshot",
                    ));
                }
                setup.push(format!("SET @slave_connect_state = '{text}'"));
                let gtid = if gtid.is_empty() {
                    GtidSet::mariadb()
                } else {
                    gtid.clone()
                };
                let replay_until = held_back_until(&mut dump, &gtid, file, *pos).await?;
                let mut st = StreamState::new(
                    Some(gtid),
                    file.clone().unwrap_or_default(),
                    pos.unwrap_or(4),
                );
                st.replay_until = replay_until;
                (st, BinlogStreamRequest::new(opts.server_id))
            }
            Position::MySqlGtid {
                gtid,
                file: Some(file),
                pos,
            } if gtid.is_empty() => {
                // No GTID executed before this position: the file offset says where, and
                // the GTIDs read from here on are the whole set.
                let pos = pos.unwrap_or(4);
                let st = StreamState::new(Some(GtidSet::mysql()), file.clone(), pos);
                let req = BinlogStreamRequest::new(opts.server_id)
                    .with_filename(file.as_bytes())
                    .with_pos(pos);
                (st, req)
            }
            Position::MySqlGtid { gtid, file, pos } => {
                let sids = match gtid {
                    GtidSet::MySql(set) => mysql_sids(set)?,
                    GtidSet::MariaDb(m) if m.is_empty() => Vec::new(),
                    GtidSet::MariaDb(_) => {
                        return Err(StageError::definite(
                            format!("GTID state {gtid} is MariaDB's, and this server is MySQL"),
                            "resume from a MySQL checkpoint or re-snapshot",
                        ))
                    }
                };
                let set = if gtid.is_empty() {
                    GtidSet::mysql()
                } else {
                    gtid.clone()
                };
                let st = StreamState::new(
                    Some(set),
                    file.clone().unwrap_or_default(),
                    pos.unwrap_or(4),
                );
                let req = BinlogStreamRequest::new(opts.server_id)
                    .with_gtid()
                    .with_gtid_set(sids);
                (st, req)
            }
            Position::MySqlFile { file, pos } => {
                let st = StreamState::new(None, file.clone(), *pos);
                let req = BinlogStreamRequest::new(opts.server_id)
                    .with_filename(file.as_bytes())
                    .with_pos(*pos);
                (st, req)
            }
            Position::PgLsn { .. } => {
                return Err(StageError::definite(
                    "A PostgreSQL position cannot start a MySQL binlog reader",
                    "check the checkpoint table of this direction",
                ))
            }
        };
        for q in &setup {
            dump.query_drop(q.as_str())
                .await
                .map_err(|e| classify(format!("Preparing the binlog dump ({q})"), e))?;
        }
        state.checksum_in_fake_rotate = checksum_on;
        // The request borrows the file name; the stream owns the connection afterwards.
        let stream = dump.get_binlog_stream(request).await.map_err(dump_error)?;
        let (tx, rx) = mpsc::channel((opts.channel_capacity / BATCH_EVENTS).max(2));
        let reader = Reader {
            state,
            opts,
            schema_conn,
            catalog: CatalogCache::default(),
            tables: HashMap::new(),
            out: tx,
            pending: Vec::with_capacity(PENDING_CAPACITY),
            prepared: Vec::new(),
            held_rows: 0,
        };
        let task = tokio::spawn(reader.run(stream));
        Ok(MySqlSource {
            rx,
            buffered: Vec::new().into_iter(),
            task,
            acknowledged: None,
        })
    }

    /// The last position acknowledged by the pipeline.
    pub fn acknowledged(&self) -> Option<&Position> {
        self.acknowledged.as_ref()
    }
}

/// Where the replay of a held-back MariaDB position ends (see the module docs): its
/// file/offset, when this server's GTID state there is ahead of the position's state.
///
/// Asking the server (`BINLOG_GTID_POS`, which reads that binlog file up to the offset)
/// rather than trusting the file/offset keeps a position from another server (after a
/// failover, whose binlog files differ) from suppressing anything: there the file is
/// missing or its state unrelated, and nothing is replayed.
async fn held_back_until(
    conn: &mut Conn,
    gtid: &GtidSet,
    file: &Option<String>,
    pos: Option<u64>,
) -> Result<Option<(String, u64)>, StageError> {
    let (Some(file), Some(pos)) = (file, pos) else {
        return Ok(None);
    };
    if gtid.is_empty() {
        return Ok(None);
    }
    let there: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.as_str(), pos))
        .await
        .map_err(|e| classify("Reading BINLOG_GTID_POS of the resume position", e))?;
    let Some(Ok(there)) = there.flatten().map(|t| GtidSet::parse(&t)) else {
        return Ok(None);
    };
    let state_only = |gtid: GtidSet| Position::MySqlGtid {
        gtid,
        file: None,
        pos: None,
    };
    let ahead = state_only(there)
        .try_cmp(&state_only(gtid.clone()))
        .is_ok_and(|o| o == std::cmp::Ordering::Greater);
    Ok(ahead.then(|| (file.clone(), pos)))
}

/// A MySQL GTID set as `COM_BINLOG_DUMP_GTID` carries it (intervals end-exclusive).
fn mysql_sids(
    set: &std::collections::BTreeMap<String, Vec<(u64, u64)>>,
) -> Result<Vec<Sid<'static>>, StageError> {
    let mut out = Vec::with_capacity(set.len());
    for (uuid, ranges) in set.iter().filter(|(_, r)| !r.is_empty()) {
        let bytes = uuid::Uuid::parse_str(uuid).map_err(|_| {
            StageError::definite(
                format!("GTID set entry {uuid:?} is not a server UUID"),
                "correct the checkpoint's GTID set or re-snapshot",
            )
        })?;
        let intervals = ranges
            .iter()
            .map(|&(a, b)| GnoInterval::new(a, b.saturating_add(1)))
            .collect();
        out.push(Sid::new(*bytes.as_bytes()).with_intervals(intervals));
    }
    Ok(out)
}

fn dump_error(e: mysql_async::Error) -> StageError {
    match &e {
        mysql_async::Error::Server(s) if s.code == 1236 => StageError::definite_from(
            "The server can no longer send the binlog from tandem's resume position",
            "the binlog files holding that position were purged (or the GTID state is not in \
             the server's binlog): re-snapshot the mapped tables, and keep binlogs longer \
             (binlog_expire_logs_seconds) than tandem may be stopped",
            e,
        ),
        mysql_async::Error::Server(s) if s.code == 1047 || s.code == 1227 || s.code == 1045 => {
            StageError::definite_from(
                "The server refused the binlog dump",
                "grant REPLICATION SLAVE to tandem's user and check the server is a MariaDB or MySQL with a binlog",
                e,
            )
        }
        _ => classify("Reading the binlog", e),
    }
}

#[async_trait]
impl Source for MySqlSource {
    /// Cancel-safe: an event is either returned or stays buffered (the only await is the
    /// channel's `recv`, itself cancel-safe; a received batch is stored before returning).
    async fn next_event(&mut self) -> Result<SourceEvent, StageError> {
        loop {
            if let Some(ev) = self.buffered.next() {
                return Ok(ev);
            }
            match self.rx.recv().await {
                Some(Ok(batch)) => self.buffered = batch.into_iter(),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(StageError::Transient {
                        what: "The binlog reader stopped".into(),
                        source: None,
                    })
                }
            }
        }
    }

    /// The server keeps binlogs by age, not by replica progress: nothing to tell it.
    async fn acknowledge(&mut self, position: &Position) -> Result<(), StageError> {
        self.acknowledged = Some(position.clone());
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), StageError> {
        self.task.abort();
        Ok(())
    }
}

impl Drop for MySqlSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Position bookkeeping of the stream.
#[derive(Debug)]
struct StreamState {
    gtid: Option<GtidSet>,
    file: String,
    pos: u64,
    seen_fde: bool,
    checksum_in_fake_rotate: bool,
    /// Position last reported by a `Commit` or `Progress`.
    reported: Option<Position>,
    /// While prepared XA transactions are pending: the GTID state before the oldest
    /// PREPARE group, reported instead of `gtid` (see the module docs).
    held_gtid: Option<GtidSet>,
    /// After a restart: groups ending at or before this file/offset were delivered
    /// already (see the module docs). Cleared at the first group past it.
    replay_until: Option<(String, u64)>,
}

impl StreamState {
    fn new(gtid: Option<GtidSet>, file: String, pos: u64) -> Self {
        StreamState {
            gtid,
            file,
            pos,
            seen_fde: false,
            checksum_in_fake_rotate: false,
            reported: None,
            held_gtid: None,
            replay_until: None,
        }
    }

    fn position(&self) -> Position {
        let (file, pos) = match &self.replay_until {
            Some((f, p)) => (f.clone(), *p),
            None => (self.file.clone(), self.pos),
        };
        match self.held_gtid.as_ref().or(self.gtid.as_ref()) {
            Some(g) => Position::MySqlGtid {
                gtid: g.clone(),
                file: Some(file),
                pos: Some(pos),
            },
            None => Position::MySqlFile { file, pos },
        }
    }

    /// Whether the group whose first event ends at the current offset was delivered
    /// before a restart; clears the replay mark once past it.
    fn replaying(&mut self) -> bool {
        let Some((file, pos)) = &self.replay_until else {
            return false;
        };
        let before = if *file == self.file {
            self.pos <= *pos
        } else {
            match (binlog_number(&self.file), binlog_number(file)) {
                (Some((base_a, a)), Some((base_b, b))) if base_a == base_b => a < b,
                _ => false,
            }
        };
        if !before {
            self.replay_until = None;
        }
        before
    }
}

/// `binlog.000042` as (`binlog`, 42).
fn binlog_number(name: &str) -> Option<(&str, u64)> {
    let (base, num) = name.rsplit_once('.')?;
    Some((base, num.parse().ok()?))
}

/// The GTID that opened an event group.
#[derive(Debug, Clone, Copy)]
enum TxGtid {
    MariaDb { domain: u32, server: u32, seq: u64 },
    MySql(MySqlGtid),
}

impl TxGtid {
    /// Where the transaction was first written (for [`TxBegin::origin`]).
    fn origin(&self) -> String {
        match self {
            TxGtid::MariaDb { domain, server, .. } => format!("{domain}-{server}"),
            TxGtid::MySql(g) => g.uuid_text(&mut [0u8; 36]).to_owned(),
        }
    }
}

/// The transaction being read.
#[derive(Debug, Default)]
struct OpenTx {
    gtid: Option<TxGtid>,
    /// One statement with no BEGIN/COMMIT around it (DDL): it ends with itself.
    standalone: bool,
    /// Own (skip_replication or marker) transaction: read to its end, emit nothing.
    dropped: bool,
    /// Delivered before a restart (see the module docs): read, emit nothing.
    replayed: bool,
    /// Rows seen (and `Begin` sent, unless the rows are held).
    begun: bool,
    start_time: Option<DateTime<Utc>>,
    /// The first half of an XA transaction: rows are held in `held`, not streamed.
    xa: bool,
    xid: Option<Xid>,
    held: Vec<Change>,
}

impl OpenTx {
    fn opened(gtid: Option<TxGtid>, at: DateTime<Utc>) -> OpenTx {
        OpenTx {
            gtid,
            start_time: Some(at),
            ..OpenTx::default()
        }
    }
}

/// A prepared XA transaction awaiting its `XA COMMIT` or `XA ROLLBACK`.
struct Prepared {
    xid: Xid,
    /// MariaDB: the GTID state before its PREPARE group, where a restart resumes to read
    /// it again.
    resume: Option<GtidSet>,
    /// MySQL: the PREPARE group's GTID, added to the executed set only at the commit or
    /// rollback, so that a restart is sent the PREPARE again.
    deferred: Option<TxGtid>,
    origin: Option<String>,
    changes: Vec<Change>,
    /// Own transaction (or one of a database not read): nothing to deliver.
    dropped: bool,
}

/// A table id's decoder and the TABLE_MAP bytes it was built from.
struct CachedTable {
    raw: Vec<u8>,
    decoder: Option<Arc<TableDecoder>>,
}

struct Reader {
    state: StreamState,
    opts: SourceOptions,
    schema_conn: Conn,
    catalog: CatalogCache,
    tables: HashMap<u64, CachedTable>,
    out: mpsc::Sender<Batch>,
    /// Events not sent yet (see the module docs for when they are).
    pending: Vec<SourceEvent>,
    /// Prepared XA transactions, oldest PREPARE first.
    prepared: Vec<Prepared>,
    /// Rows held in `prepared` and in the open XA group.
    held_rows: usize,
}

/// Why the read loop ended.
enum Stop {
    /// The pipeline dropped the source.
    Closed,
    Error(StageError),
}

impl From<StageError> for Stop {
    fn from(e: StageError) -> Self {
        Stop::Error(e)
    }
}

fn binlog_error(e: BinlogError) -> StageError {
    match e {
        BinlogError::Compressed { .. }
        | BinlogError::CompressedTransaction
        | BinlogError::PartialJson
        | BinlogError::TaggedGtid
        | BinlogError::Encrypted => StageError::definite(
            e.to_string(),
            "see the message for the server setting to change",
        ),
        other => StageError::definite_from(
            "A binlog event could not be decoded",
            "report it with the event position; tandem stops rather than skip a change",
            other,
        ),
    }
}

impl Reader {
    async fn run(mut self, mut stream: mysql_async::BinlogStream) {
        let mut tx: Option<OpenTx> = None;
        loop {
            let item = stream.next().await;
            let result = match item {
                None => Err(Stop::Error(StageError::Transient {
                    what: "The server ended the binlog dump".into(),
                    source: None,
                })),
                Some(Err(e)) => Err(Stop::Error(dump_error(e))),
                Some(Ok(event)) => self.handle(&event, &mut tx).await,
            };
            match result {
                Ok(()) => {}
                Err(Stop::Closed) => return,
                Err(Stop::Error(e)) => {
                    // Whatever was read before the error is valid: deliver it first.
                    if self.flush().await.is_ok() {
                        let _ = self.out.send(Err(e)).await;
                    }
                    return;
                }
            }
        }
    }

    /// Queue `ev`; sends the batch once it is full.
    async fn send(&mut self, ev: SourceEvent) -> Result<(), Stop> {
        self.pending.push(ev);
        if self.pending.len() >= BATCH_EVENTS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Send the queued events, if any.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(PENDING_CAPACITY));
        self.out.send(Ok(batch)).await.map_err(|_| Stop::Closed)
    }

    async fn progress(&mut self, at: DateTime<Utc>) -> Result<(), Stop> {
        let position = self.state.position();
        if self.state.reported.as_ref() != Some(&position) {
            self.state.reported = Some(position.clone());
            self.send(SourceEvent::Progress { position, at }).await?;
        }
        self.flush().await
    }

    /// Add a group's GTID to the state.
    fn record_gtid(&mut self, tx: &OpenTx) -> Result<(), Stop> {
        match tx.gtid {
            Some(TxGtid::MariaDb {
                domain,
                server,
                seq,
            }) => {
                let g = self.state.gtid.get_or_insert_with(GtidSet::mariadb);
                g.record_mariadb(domain, server, seq).map_err(|e| {
                    StageError::definite_from(
                        "Recording a MariaDB GTID",
                        "resume from a MariaDB position",
                        e,
                    )
                })?;
            }
            // Tracked only when the stream is positioned by GTID set (a file-positioned
            // stream keeps file positions, which stay exact).
            Some(TxGtid::MySql(g)) => {
                if let Some(set) = self.state.gtid.as_mut() {
                    let mut buf = [0u8; 36];
                    set.record_mysql(g.uuid_text(&mut buf), g.gno)
                        .map_err(|e| {
                            StageError::definite_from(
                                "Recording a MySQL GTID",
                                "resume from a MySQL position",
                                e,
                            )
                        })?;
                }
            }
            None => {}
        }
        Ok(())
    }

    /// End of a group: record its GTID, then `Commit` or `Progress`.
    async fn finish(&mut self, tx: Option<OpenTx>, at: DateTime<Utc>) -> Result<(), Stop> {
        let Some(mut tx) = tx else {
            return self.progress(at).await;
        };
        self.record_gtid(&tx)?;
        if tx.xa {
            // Held rows of a group that ended as a whole (MySQL's one-phase XA commit).
            self.held_rows = self.held_rows.saturating_sub(tx.held.len());
            if tx.begun && !tx.dropped && !tx.replayed {
                let begin = TxBegin {
                    commit_time: tx.start_time,
                    origin: tx.gtid.as_ref().map(TxGtid::origin),
                    snapshot: false,
                };
                self.send(SourceEvent::Begin(begin)).await?;
                for change in std::mem::take(&mut tx.held) {
                    self.send(SourceEvent::Change(change)).await?;
                }
            }
        }
        if tx.begun && !tx.dropped && !tx.replayed {
            let position = self.state.position();
            self.state.reported = Some(position.clone());
            self.send(SourceEvent::Commit(TxCommit {
                position,
                commit_time: at,
            }))
            .await?;
            self.flush().await
        } else {
            self.progress(at).await
        }
    }

    /// XA_PREPARE: the group's rows wait for their `XA COMMIT`.
    async fn prepare(
        &mut self,
        tx: Option<OpenTx>,
        xid: Xid,
        at: DateTime<Utc>,
    ) -> Result<(), Stop> {
        let tx = tx.unwrap_or_default();
        if self.prepared.iter().any(|p| p.xid == xid) {
            return Err(StageError::definite(
                format!("XA transaction {xid} was prepared twice in the binlog without a commit or rollback between"),
                "report it with the binlog position; tandem stops rather than guess which one commits",
            )
            .into());
        }
        let (resume, deferred) = match (&tx.gtid, &self.state.gtid) {
            (Some(g @ TxGtid::MySql(_)), Some(_)) => (None, Some(*g)),
            (Some(TxGtid::MariaDb { .. }), state) => (state.clone(), None),
            _ => (None, None),
        };
        if deferred.is_none() {
            self.record_gtid(&tx)?;
        }
        self.prepared.push(Prepared {
            xid,
            resume,
            deferred,
            origin: tx.gtid.as_ref().map(TxGtid::origin),
            changes: tx.held,
            dropped: tx.dropped,
        });
        self.hold_back();
        self.progress(at).await
    }

    /// `XA COMMIT` / `XA ROLLBACK` of `xid`: deliver or discard its held rows.
    async fn complete(
        &mut self,
        tx: Option<OpenTx>,
        xid: Xid,
        commit: bool,
        at: DateTime<Utc>,
    ) -> Result<(), Stop> {
        let tx = tx.unwrap_or_default();
        self.record_gtid(&tx)?;
        let Some(i) = self.prepared.iter().position(|p| p.xid == xid) else {
            if !tx.replayed {
                // Prepared before the stream's start (a snapshot taken, or a file-positioned
                // stream restarted, between PREPARE and COMMIT): its rows were never read.
                tracing::warn!(
                    xid = %xid,
                    commit,
                    "xa transaction completed whose prepare tandem did not read; its rows are not delivered, compare the tables with tandem verify"
                );
            }
            return self.progress(at).await;
        };
        let p = self.prepared.remove(i);
        if let Some(g) = p.deferred {
            self.record_gtid(&OpenTx::opened(Some(g), at))?;
        }
        self.held_rows = self.held_rows.saturating_sub(p.changes.len());
        self.hold_back();
        if !commit || p.dropped || tx.replayed || p.changes.is_empty() {
            return self.progress(at).await;
        }
        let begin = TxBegin {
            commit_time: Some(at),
            origin: p.origin,
            snapshot: false,
        };
        self.send(SourceEvent::Begin(begin)).await?;
        for change in p.changes {
            self.send(SourceEvent::Change(change)).await?;
        }
        let position = self.state.position();
        self.state.reported = Some(position.clone());
        self.send(SourceEvent::Commit(TxCommit {
            position,
            commit_time: at,
        }))
        .await?;
        self.flush().await
    }

    /// Report positions from before the oldest pending PREPARE (see the module docs).
    fn hold_back(&mut self) {
        self.state.held_gtid = self.prepared.iter().find_map(|p| p.resume.clone());
    }

    /// A new group starts: the previous one must have ended.
    fn open(&mut self, tx: &mut Option<OpenTx>, next: OpenTx) -> Result<(), Stop> {
        if let Some(old) = tx.as_ref() {
            if old.begun && !old.dropped && !old.replayed {
                return Err(StageError::definite(
                    format!(
                        "A binlog transaction with rows ended without COMMIT, XID or XA PREPARE before the next event group at {}:{}",
                        self.state.file, self.state.pos
                    ),
                    "report it with the binlog position; tandem stops rather than deliver half a transaction",
                )
                .into());
            }
        }
        let mut next = next;
        next.replayed = self.state.replaying();
        *tx = Some(next);
        Ok(())
    }

    async fn handle(
        &mut self,
        event: &mysql_common::binlog::events::Event,
        tx: &mut Option<OpenTx>,
    ) -> Result<(), Stop> {
        let header = EventHeader::from_mysql_common(&event.header());
        let data = event.data();
        let at =
            crate::types::utc_from_epoch(i64::from(header.timestamp), 0).unwrap_or_else(Utc::now);
        events::check_decodable(header.type_code).map_err(binlog_error)?;
        if header.log_pos != 0 {
            self.state.pos = u64::from(header.log_pos);
        }
        match header.type_code {
            et::FORMAT_DESCRIPTION => self.state.seen_fde = true,
            et::ROTATE => {
                let fake = !self.state.seen_fde && self.state.checksum_in_fake_rotate;
                let r = Rotate::parse(data, fake).map_err(binlog_error)?;
                self.state.file = r.file;
                self.state.pos = r.pos;
                // A new file starts with a new FORMAT_DESCRIPTION; table ids restart.
                self.tables.clear();
            }
            et::HEARTBEAT | et::MYSQL_HEARTBEAT_V2 if tx.is_none() => {
                self.progress(Utc::now()).await?
            }
            et::MYSQL_GTID | et::MYSQL_ANONYMOUS_GTID => {
                let anonymous = header.type_code == et::MYSQL_ANONYMOUS_GTID;
                let g = MySqlGtid::parse(data, anonymous).map_err(binlog_error)?;
                // A transaction's BEGIN clears `standalone`; DDL has none.
                let mut next = OpenTx::opened((!anonymous).then_some(TxGtid::MySql(g)), at);
                next.standalone = true;
                self.open(tx, next)?;
            }
            et::MYSQL_PREVIOUS_GTIDS => {
                let previous = events::parse_previous_gtids(data).map_err(binlog_error)?;
                if let Some(set) = self.state.gtid.as_mut() {
                    set.union(&previous).map_err(|e| {
                        StageError::definite_from(
                            "Merging the binlog's previous GTIDs",
                            "resume from a MySQL position",
                            e,
                        )
                    })?;
                }
            }
            et::MARIADB_GTID => {
                let g = MariaGtid::parse(data).map_err(binlog_error)?;
                let gtid = TxGtid::MariaDb {
                    domain: g.domain,
                    server: header.server_id,
                    seq: g.seq,
                };
                let mut next = OpenTx::opened(Some(gtid), at);
                next.standalone = g.standalone();
                next.dropped = header.skip_replication();
                next.xa = g.prepared_xa();
                next.xid = g.xid;
                self.open(tx, next)?;
            }
            et::MARIADB_GTID_LIST => {
                let list = events::parse_gtid_list(data).map_err(binlog_error)?;
                let g = self.state.gtid.get_or_insert_with(GtidSet::mariadb);
                if let GtidSet::MariaDb(map) = g {
                    for e in list {
                        let newer = map.get(&e.domain).is_none_or(|&(_, seq)| seq < e.seq);
                        if newer {
                            map.insert(e.domain, (e.server, e.seq));
                        }
                    }
                }
            }
            et::QUERY => {
                let q = Query::parse(data).map_err(binlog_error)?;
                match q.kind() {
                    QueryKind::Begin => match tx {
                        Some(open) => open.standalone = false,
                        None => self.open(tx, OpenTx::opened(None, at))?,
                    },
                    QueryKind::XaStart => {
                        let xid = q.xid().map_err(binlog_error)?;
                        if tx.is_none() {
                            self.open(tx, OpenTx::opened(None, at))?;
                        }
                        if let Some(open) = tx.as_mut() {
                            open.standalone = false;
                            open.xa = true;
                            open.xid = Some(xid);
                        }
                    }
                    QueryKind::XaCommit | QueryKind::XaRollback => {
                        let xid = q.xid().map_err(binlog_error)?;
                        let t = tx.take();
                        let commit = q.kind() == QueryKind::XaCommit;
                        self.complete(t, xid, commit, at).await?;
                    }
                    QueryKind::Commit | QueryKind::Rollback => {
                        let t = tx.take();
                        self.finish(t, at).await?;
                    }
                    QueryKind::Other => {}
                    QueryKind::Ddl => {
                        // Cached schemas may be stale now.
                        self.catalog.invalidate();
                        self.tables.clear();
                        let standalone = tx.as_ref().is_none_or(|t| t.standalone);
                        if standalone {
                            let t = tx.take();
                            self.finish(t, at).await?;
                        }
                    }
                }
            }
            et::XID => {
                let t = tx.take();
                self.finish(t, at).await?;
            }
            et::XA_PREPARE => {
                let p = XaPrepare::parse(data).map_err(binlog_error)?;
                let t = tx.take();
                if p.one_phase {
                    self.finish(t, at).await?;
                } else {
                    self.prepare(t, p.xid, at).await?;
                }
            }
            et::TABLE_MAP => self.table_map(data).await?,
            et::WRITE_ROWS_V1
            | et::UPDATE_ROWS_V1
            | et::DELETE_ROWS_V1
            | et::WRITE_ROWS_V2
            | et::UPDATE_ROWS_V2
            | et::DELETE_ROWS_V2 => {
                if tx.is_none() {
                    self.open(tx, OpenTx::opened(None, at))?;
                }
                let Some(open) = tx.as_mut() else {
                    return Ok(());
                };
                if header.skip_replication() {
                    open.dropped = true;
                }
                // A replayed prepared group is held again: its commit may be ahead.
                if open.dropped || (open.replayed && !open.xa) {
                    return Ok(());
                }
                let rows = RowsEvent::parse(header.type_code, data).map_err(binlog_error)?;
                let Some(cached) = self.tables.get(&rows.table_id) else {
                    return Err(binlog_error(BinlogError::UnknownTable {
                        table_id: rows.table_id,
                    })
                    .into());
                };
                let Some(decoder) = cached.decoder.clone() else {
                    return Ok(()); // a table of a database this source does not read
                };
                if decoder.is_marker {
                    if open.begun {
                        return Err(StageError::definite(
                            format!(
                                "A tandem marker row in {} came after other rows of its transaction",
                                decoder.schema.table
                            ),
                            "the applier must write the marker row first; check that only tandem writes tandem_apply_marker",
                        )
                        .into());
                    }
                    open.dropped = true;
                    return Ok(());
                }
                if open.xa {
                    // Decode the whole event before holding anything: a bad row must not
                    // leave half of its event held.
                    let mut changes = Vec::new();
                    decoder
                        .decode_rows(&rows, |row| changes.push(row))
                        .map_err(binlog_error)?;
                    let held = self.held_rows.saturating_add(changes.len());
                    if held > self.opts.xa_held_rows {
                        let xid = open
                            .xid
                            .as_ref()
                            .map_or_else(|| "(xid unknown)".to_owned(), Xid::to_string);
                        return Err(StageError::definite(
                            format!(
                                "Prepared XA transactions hold more than {} rows; XA transaction {xid} passed the limit",
                                self.opts.xa_held_rows
                            ),
                            "tandem keeps a prepared XA transaction's rows in memory until its XA COMMIT and never splits it: commit or roll back long-prepared XA transactions (XA RECOVER lists them), or raise the retail endpoint's xa_held_rows (endpoints.NAME.xa_held_rows, default 100000) above the row count of the largest XA transaction, then restart",
                        )
                        .into());
                    }
                    self.held_rows = held;
                    open.begun = true;
                    open.held.extend(changes.into_iter().map(|row| Change {
                        table: decoder.schema.clone(),
                        row,
                    }));
                    return Ok(());
                }
                // The rows go straight into the batch being filled. A bad row takes back
                // everything this event queued (its `Begin` included): no half of an event
                // is ever delivered.
                let mark = self.pending.len();
                if !open.begun {
                    let origin = open.gtid.as_ref().map(TxGtid::origin);
                    self.pending.push(SourceEvent::Begin(TxBegin {
                        commit_time: open.start_time,
                        origin,
                        snapshot: false,
                    }));
                }
                let pending = &mut self.pending;
                let table = &decoder.schema;
                let decoded = decoder.decode_rows(&rows, |row| {
                    pending.push(SourceEvent::Change(Change {
                        table: Arc::clone(table),
                        row,
                    }));
                });
                if let Err(e) = decoded {
                    self.pending.truncate(mark);
                    return Err(binlog_error(e).into());
                }
                open.begun = true;
                if self.pending.len() >= BATCH_EVENTS {
                    self.flush().await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn table_map(&mut self, data: &[u8]) -> Result<(), Stop> {
        let map = TableMap::parse(data).map_err(binlog_error)?;
        if let Some(c) = self.tables.get(&map.table_id) {
            if c.raw == data {
                return Ok(());
            }
        }
        let wanted =
            self.opts.databases.is_empty() || self.opts.databases.iter().any(|d| d == &map.schema);
        let decoder = if wanted {
            let cols = self
                .catalog
                .get(&mut self.schema_conn, &map.schema, &map.table)
                .await?;
            Some(Arc::new(
                TableDecoder::new(&map, Some(&cols)).map_err(binlog_error)?,
            ))
        } else {
            None
        };
        self.tables.insert(
            map.table_id,
            CachedTable {
                raw: data.to_vec(),
                decoder,
            },
        );
        Ok(())
    }
}

/// How far the server's binlog is ahead of a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogLag {
    /// Bytes of binlog written after `applied` (None when the position names no file).
    pub bytes_behind: Option<u64>,
    /// Binlog files after the applied one.
    pub files_behind: Option<u64>,
    pub server_file: String,
    pub server_pos: u64,
}

/// Lag of `applied` behind the server's current binlog position (`SHOW MASTER STATUS` or
/// MySQL 8.4's `SHOW BINARY LOG STATUS`, `SHOW BINARY LOGS`; needs BINLOG MONITOR /
/// REPLICATION CLIENT).
pub async fn lag(conn: &mut Conn, applied: &Position) -> Result<BinlogLag, StageError> {
    let sql = ServerFlavor::detect(conn).await?.binlog_status_sql();
    let status: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(|e| classify(format!("Reading {sql}"), e))?;
    let Some(status) = status else {
        return Err(StageError::definite(
            "The server writes no binlog (SHOW MASTER STATUS is empty)",
            "enable the binlog: log_bin, binlog_format=ROW",
        ));
    };
    let server_file: String = status.get_opt(0).and_then(Result::ok).unwrap_or_default();
    let server_pos: u64 = status.get_opt(1).and_then(Result::ok).unwrap_or(0);
    let logs: Vec<Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| classify("Reading SHOW BINARY LOGS", e))?;
    let logs: Vec<(String, u64)> = logs
        .into_iter()
        .map(|r| {
            (
                r.get_opt::<String, _>(0)
                    .and_then(Result::ok)
                    .unwrap_or_default(),
                r.get_opt::<u64, _>(1).and_then(Result::ok).unwrap_or(0),
            )
        })
        .collect();
    let (file, pos) = match applied {
        Position::MySqlGtid {
            file: Some(f),
            pos: Some(p),
            ..
        } => (f.clone(), *p),
        Position::MySqlFile { file, pos } => (file.clone(), *pos),
        _ => {
            return Ok(BinlogLag {
                bytes_behind: None,
                files_behind: None,
                server_file,
                server_pos,
            })
        }
    };
    Ok(BinlogLag {
        bytes_behind: bytes_between(&logs, &file, pos, &server_file, server_pos),
        files_behind: logs
            .iter()
            .position(|(f, _)| *f == file)
            .zip(logs.iter().position(|(f, _)| *f == server_file))
            .map(|(a, b)| u64::try_from(b.saturating_sub(a)).unwrap_or(0)),
        server_file,
        server_pos,
    })
}

/// Bytes from `(file, pos)` to `(end_file, end_pos)` over the server's binlog list.
fn bytes_between(
    logs: &[(String, u64)],
    file: &str,
    pos: u64,
    end_file: &str,
    end_pos: u64,
) -> Option<u64> {
    if file == end_file {
        return Some(end_pos.saturating_sub(pos));
    }
    let start = logs.iter().position(|(f, _)| f == file)?;
    let end = logs.iter().position(|(f, _)| f == end_file)?;
    if end < start {
        return Some(0);
    }
    let mut total = logs.get(start)?.1.saturating_sub(pos);
    for (_, size) in logs.get(start + 1..end)? {
        total = total.saturating_add(*size);
    }
    Some(total.saturating_add(end_pos))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_xa_bound_comes_from_the_endpoint_config() {
        let ep = |extra: &str| -> EndpointConfig {
            toml::from_str(&format!(
                "kind = \"mysql\"\nurl = \"mysql://t@127.0.0.1/retail\"\n{extra}"
            ))
            .unwrap()
        };
        assert_eq!(
            SourceOptions::for_endpoint(&ep("")).xa_held_rows,
            DEFAULT_XA_HELD_ROWS
        );
        assert_eq!(
            SourceOptions::for_endpoint(&ep("xa_held_rows = 7")).xa_held_rows,
            7
        );
    }

    #[test]
    fn lag_counts_bytes_across_files() {
        let logs = vec![
            ("b.000001".to_owned(), 1000),
            ("b.000002".to_owned(), 500),
            ("b.000003".to_owned(), 300),
        ];
        assert_eq!(
            bytes_between(&logs, "b.000003", 100, "b.000003", 300),
            Some(200)
        );
        assert_eq!(
            bytes_between(&logs, "b.000001", 900, "b.000003", 200),
            Some(100 + 500 + 200)
        );
        assert_eq!(bytes_between(&logs, "b.000000", 4, "b.000003", 200), None);
    }
}
