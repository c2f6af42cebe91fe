//! Metric names (Prometheus conventions) and the shared status the HTTP endpoint shows.
//!
//! Every metric tandem exports is named here, once; labels are low-cardinality
//! (`direction`, `mapping`, `kind`, `strategy`, `endpoint`) — never a row key. Stages
//! record per batch, not per row.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

pub const LAG_SECONDS: &str = "tandem_replication_lag_seconds";
pub const LAG_BYTES: &str = "tandem_replication_lag_bytes";
pub const CHANGES_APPLIED: &str = "tandem_changes_applied_total";
pub const TRANSACTIONS_APPLIED: &str = "tandem_transactions_applied_total";
pub const APPLY_BATCH_SECONDS: &str = "tandem_apply_batch_duration_seconds";
pub const CONFLICTS: &str = "tandem_conflicts_total";
pub const DEAD_LETTERS: &str = "tandem_dead_letters_total";
pub const RECONNECTS: &str = "tandem_reconnects_total";
pub const CHECKED_ROWS: &str = "tandem_apply_checked_rows_total";
pub const SNAPSHOT_ROWS: &str = "tandem_snapshot_rows_total";
pub const SNAPSHOT_ROWS_ESTIMATED: &str = "tandem_snapshot_rows_estimated";
pub const SNAPSHOT_SKIPPED_CHANGES: &str = "tandem_snapshot_skipped_changes_total";
pub const MAPPING_HALTED: &str = "tandem_mapping_halted";
pub const PG_SLOT_SAFE_WAL_BYTES: &str = "tandem_pg_slot_safe_wal_size_bytes";
pub const PG_SLOT_WAL_STATUS: &str = "tandem_pg_slot_wal_status";
pub const DIRECTION_UP: &str = "tandem_direction_up";
pub const VERIFY_LAST_RUN: &str = "tandem_verify_last_run_timestamp_seconds";
pub const VERIFY_DURATION: &str = "tandem_verify_duration_seconds";
pub const VERIFY_DIFFERENCES: &str = "tandem_verify_differences";
pub const VERIFY_FAILED: &str = "tandem_verify_failed";

/// Every metric with its help text, for registration and the README.
pub const ALL: &[(&str, &str)] = &[
    (
        LAG_SECONDS,
        "Seconds from source commit to target commit of the last applied transaction",
    ),
    (
        LAG_BYTES,
        "Bytes of source change log not yet applied (PostgreSQL slot, binlog)",
    ),
    (CHANGES_APPLIED, "Row changes applied to the target"),
    (
        TRANSACTIONS_APPLIED,
        "Source transactions applied to the target",
    ),
    (APPLY_BATCH_SECONDS, "Duration of one target commit group"),
    (CONFLICTS, "Conflicts detected, by kind and strategy"),
    (DEAD_LETTERS, "Changes written to the dead-letter table"),
    (
        RECONNECTS,
        "Reconnects after a lost connection or transient error",
    ),
    (
        CHECKED_ROWS,
        "Rows written with the conflict check inside the write, by outcome: applied, or reread (the target differed, or the sink could not check)",
    ),
    (SNAPSHOT_ROWS, "Rows copied by initial snapshots"),
    (
        SNAPSHOT_ROWS_ESTIMATED,
        "Estimated rows of the table being snapshotted",
    ),
    (
        SNAPSHOT_SKIPPED_CHANGES,
        "Streamed changes dropped because a resumed initial copy already holds them",
    ),
    (MAPPING_HALTED, "1 while a mapping is halted"),
    (
        PG_SLOT_SAFE_WAL_BYTES,
        "PostgreSQL slot safe_wal_size: WAL that may still be written before the slot is lost",
    ),
    (
        PG_SLOT_WAL_STATUS,
        "PostgreSQL slot wal_status (0 reserved, 1 extended, 2 unreserved, 3 lost)",
    ),
    (DIRECTION_UP, "1 while a direction is streaming"),
    (
        VERIFY_LAST_RUN,
        "Unix time the daemon's last [verify] run finished",
    ),
    (
        VERIFY_DURATION,
        "Seconds the daemon's last [verify] run took",
    ),
    (
        VERIFY_DIFFERENCES,
        "Keys that differ between both sides in the last [verify] run, by mapping",
    ),
    (
        VERIFY_FAILED,
        "1 when the last [verify] run could not compare the mapping (see /status)",
    ),
];

/// State of one direction, as `/status` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirectionStatus {
    pub state: String,
    pub source_position: Option<String>,
    pub applied_position: Option<String>,
    pub last_source_commit: Option<DateTime<Utc>>,
    pub last_applied_at: Option<DateTime<Utc>>,
    pub lag_seconds: Option<f64>,
    pub lag_bytes: Option<u64>,
    pub changes_applied: u64,
    pub transactions_applied: u64,
    pub conflicts: u64,
    pub dead_letters: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
    pub halted_mappings: BTreeMap<String, String>,
    pub snapshot: Option<SnapshotStatus>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SnapshotStatus {
    pub table: String,
    pub rows_done: u64,
    pub rows_estimated: u64,
    /// Rows per second of the table being copied.
    pub rows_per_second: u64,
    /// Estimated seconds until the table is copied, when its size is known.
    pub eta_seconds: Option<u64>,
    /// Tables whose copy is committed, including those a previous run finished.
    pub tables_done: usize,
    pub tables_total: usize,
    /// Tables a previous, interrupted run had already copied (not copied again).
    pub tables_resumed: usize,
}

/// Status of every direction, shared between the pipelines and the HTTP endpoint.
#[derive(Clone, Default)]
pub struct StatusBoard(Arc<Mutex<BTreeMap<String, DirectionStatus>>>);

impl StatusBoard {
    pub fn update(&self, direction: &str, f: impl FnOnce(&mut DirectionStatus)) {
        if let Ok(mut m) = self.0.lock() {
            f(m.entry(direction.to_owned()).or_default());
        }
    }

    /// Set a direction's state (`starting`, `snapshot`, `streaming`, `reconnecting`,
    /// `halted`, `stopped`), and [`DIRECTION_UP`] with it: 1 only while `streaming`.
    pub fn set_state(&self, direction: &str, state: &str, error: Option<String>) {
        let up = if state == "streaming" { 1.0 } else { 0.0 };
        metrics::gauge!(DIRECTION_UP, "direction" => direction.to_owned()).set(up);
        self.update(direction, |s| {
            s.state = state.to_owned();
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    /// An initial copy's table is committed on the target: count it, and when it was the
    /// last one the direction is streaming. (The reader finishes earlier; the state follows
    /// the target, so `/readyz` never reports ready before the copied rows are there.)
    pub fn snapshot_table_committed(&self, direction: &str) {
        let mut finished = false;
        self.update(direction, |s| {
            if let Some(snap) = s.snapshot.as_mut() {
                snap.tables_done += 1;
                if snap.tables_done >= snap.tables_total {
                    s.snapshot = None;
                    finished = true;
                }
            }
        });
        if finished {
            self.set_state(direction, "streaming", None);
        }
    }

    /// Whether an initial copy of `direction` is under way (not yet committed whole).
    pub fn copying(&self, direction: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|m| m.get(direction).is_some_and(|s| s.snapshot.is_some()))
    }

    pub fn snapshot(&self) -> BTreeMap<String, DirectionStatus> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// The daemon's last `[verify]` run, as `/status` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyStatus {
    pub interval_seconds: u64,
    pub last_run: Option<DateTime<Utc>>,
    pub seconds: f64,
    /// Every mapping compared equal.
    pub equal: Option<bool>,
    /// Why the run could not compare anything (an endpoint unreachable).
    pub error: Option<String>,
    pub mappings: BTreeMap<String, VerifyMappingStatus>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyMappingStatus {
    pub differing_keys: usize,
    /// The first differing keys, as `only in retail: {sku: "A-1"}`-style lines.
    pub differences: Vec<String>,
    pub error: Option<String>,
}

/// The last verify result, shared between the verify task and the HTTP endpoint.
#[derive(Clone, Default)]
pub struct VerifyBoard(Arc<Mutex<Option<VerifyStatus>>>);

impl VerifyBoard {
    pub fn set(&self, status: VerifyStatus) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(status);
        }
    }

    pub fn snapshot(&self) -> Option<VerifyStatus> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}
