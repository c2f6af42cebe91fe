//! Binlog events, decoded from raw bytes.
//!
//! `mysql_async` frames the replication stream into events (header, body, checksum cut
//! off); everything after that is decoded here, from the bytes, for two reasons measured
//! in `shared/notes/mariadb-binlog.md`: `mysql_common` does not know MariaDB's own events
//! (GTID, GTID_LIST, BINLOG_CHECKPOINT: 160–163), and its row path is ten times slower
//! than a decoder that borrows the event body and resolves every column's decoding once per
//! TABLE_MAP instead of once per value.
//!
//! The invariant every function here keeps: **any byte sequence yields a value or a typed
//! [`BinlogError`], never a panic.** All reads go through [`cursor::Cursor`], which checks
//! bounds; no slice indexing, no unchecked arithmetic on lengths from the wire. A proptest
//! (`tests/source_fuzz.rs`) feeds random and mutated captured events to every parser.
//!
//! Layouts: <https://mariadb.com/kb/en/replication-protocol/> (events and row format),
//! MySQL's `libbinlogevents` for TABLE_MAP optional metadata and the packed temporal and
//! decimal formats.
//!
//! - [`events`]: the small control events (MariaDB's and MySQL's GTIDs, rotate, query,
//!   XID, …);
//! - [`json`]: MySQL's binary JSON (column type 245 in MySQL's binlog) to JSON text;
//! - [`table_map`]: TABLE_MAP with optional metadata (names, signedness, charsets, enum and
//!   set labels, primary key);
//! - [`rows`]: WRITE/UPDATE/DELETE_ROWS v1 and v2 and the row decoder.
//! - [`schema`]: the table schema a row decoder uses, from TABLE_MAP metadata and/or the
//!   catalog.

pub mod catalog_cache;
pub mod cursor;
pub mod events;
pub mod json;
pub mod rows;
pub mod schema;
pub mod table_map;
mod values;

use crate::types::DecodeError;

/// Event type codes tandem handles (MySQL's and MariaDB's numbering).
pub mod event_type {
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const TABLE_MAP: u8 = 19;
    pub const WRITE_ROWS_V1: u8 = 23;
    pub const UPDATE_ROWS_V1: u8 = 24;
    pub const DELETE_ROWS_V1: u8 = 25;
    pub const HEARTBEAT: u8 = 27;
    pub const WRITE_ROWS_V2: u8 = 30;
    pub const UPDATE_ROWS_V2: u8 = 31;
    pub const DELETE_ROWS_V2: u8 = 32;
    /// MySQL GTID (opens a transaction with `uuid:gno`).
    pub const MYSQL_GTID: u8 = 33;
    /// MySQL transaction without a GTID (`gtid_mode` OFF or in transition).
    pub const MYSQL_ANONYMOUS_GTID: u8 = 34;
    /// MySQL: the GTIDs of all earlier binlog files, at the start of each file.
    pub const MYSQL_PREVIOUS_GTIDS: u8 = 35;
    /// XA PREPARE (MySQL and MariaDB ≥ 10.5): ends the first half of an XA transaction.
    pub const XA_PREPARE: u8 = 38;
    /// MySQL: rows event of `binlog_row_value_options=PARTIAL_JSON` (JSON diffs only).
    pub const MYSQL_PARTIAL_UPDATE_ROWS: u8 = 39;
    /// MySQL: a compressed transaction (`binlog_transaction_compression=ON`).
    pub const MYSQL_TRANSACTION_PAYLOAD: u8 = 40;
    /// MySQL ≥ 8.0.26 heartbeat.
    pub const MYSQL_HEARTBEAT_V2: u8 = 41;
    /// MySQL ≥ 8.3 GTID with a tag (`uuid:tag:gno`).
    pub const MYSQL_GTID_TAGGED: u8 = 42;
    pub const MARIADB_ANNOTATE_ROWS: u8 = 160;
    pub const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
    pub const MARIADB_GTID: u8 = 162;
    pub const MARIADB_GTID_LIST: u8 = 163;
    pub const MARIADB_START_ENCRYPTION: u8 = 164;
    /// First and last of MariaDB's compressed events (QUERY_COMPRESSED,
    /// WRITE/UPDATE/DELETE_ROWS_COMPRESSED v1 and v2).
    pub const MARIADB_COMPRESSED_FIRST: u8 = 165;
    pub const MARIADB_COMPRESSED_LAST: u8 = 171;
}

/// Header flag MariaDB sets on events of a session with `skip_replication=1`.
pub const LOG_EVENT_SKIP_REPLICATION_F: u16 = 0x8000;

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinlogError {
    #[error("Binlog event is truncated reading {what}: needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("Binlog event has an invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error(
        "The binlog holds a compressed event (type {type_code}), which tandem cannot decode. \
         Run SET GLOBAL log_bin_compress=OFF on the server and re-snapshot the tables \
         changed while compression was on"
    )]
    Compressed { type_code: u8 },
    #[error(
        "The binlog holds a compressed MySQL transaction (TRANSACTION_PAYLOAD event), which \
         tandem cannot decode. Run SET GLOBAL binlog_transaction_compression = OFF (and set it \
         in my.cnf), then re-snapshot the tables changed while compression was on"
    )]
    CompressedTransaction,
    #[error(
        "The binlog holds a partial JSON update (PARTIAL_UPDATE_ROWS event), which carries no \
         full after image. Run SET GLOBAL binlog_row_value_options = '' (and remove it from \
         my.cnf), then re-snapshot the tables changed meanwhile"
    )]
    PartialJson,
    #[error(
        "The binlog holds a tagged GTID (MySQL 8.4 `uuid:tag:n`), which tandem does not track. \
         Stop assigning tagged GTIDs (SET gtid_next with a tag) on this server"
    )]
    TaggedGtid,
    #[error(
        "The binlog is encrypted on the wire (START_ENCRYPTION event). Binlog events sent to \
         replicas should be decrypted by the server; check the server's encryption settings"
    )]
    Encrypted,
    #[error("Rows event for table id {table_id} arrived without its TABLE_MAP event")]
    UnknownTable { table_id: u64 },
    #[error("Column {column} of {table}: {source}")]
    Value {
        table: String,
        column: String,
        #[source]
        source: DecodeError,
    },
}

impl BinlogError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        BinlogError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// The 19-byte common header of every event, as `mysql_common` hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub timestamp: u32,
    pub type_code: u8,
    pub server_id: u32,
    pub event_size: u32,
    /// Offset of the next event in the binlog file (0 for artificial events).
    pub log_pos: u32,
    pub flags: u16,
}

impl EventHeader {
    pub const LEN: usize = 19;

    /// Parse a header from raw bytes (used by the fuzz tests and captured events).
    pub fn parse(bytes: &[u8]) -> Result<EventHeader, BinlogError> {
        let mut c = cursor::Cursor::new(bytes);
        Ok(EventHeader {
            timestamp: c.u32("event timestamp")?,
            type_code: c.u8("event type")?,
            server_id: c.u32("server id")?,
            event_size: c.u32("event size")?,
            log_pos: c.u32("log position")?,
            flags: c.u16("event flags")?,
        })
    }

    pub fn from_mysql_common(h: &mysql_common::binlog::events::BinlogEventHeader) -> Self {
        EventHeader {
            timestamp: h.timestamp(),
            type_code: h.event_type_raw(),
            server_id: h.server_id(),
            event_size: h.event_size(),
            log_pos: h.log_pos(),
            flags: h.flags_raw(),
        }
    }

    /// Written by a session with `skip_replication=1` (tandem's own applier on MariaDB).
    pub fn skip_replication(&self) -> bool {
        self.flags & LOG_EVENT_SKIP_REPLICATION_F != 0
    }
}
