//! A database of its own for each test.
//!
//! Tests share server instances but never databases: each one asks for a database with a
//! unique name and gets it dropped when the handle goes. The drop is best effort (a test
//! that leaks connections or replication slots must not turn a pass into a hang), runs the
//! server's CLI synchronously because `Drop` cannot await, and first clears what would
//! block it: sessions still connected, and (PostgreSQL) the logical slots of the database.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sql_cli::SqlCli;

/// A throwaway database on a kit instance, dropped (best effort) on `Drop`.
#[derive(Debug)]
pub struct TestDb {
    /// The database name: the prefix given, sanitised, plus a unique suffix.
    pub name: String,
    url: String,
    drop_with: Option<(SqlCli, String)>,
}

impl TestDb {
    pub(crate) fn new(name: String, url: String, cli: SqlCli, drop_sql: String) -> Self {
        Self {
            name,
            url,
            drop_with: Some((cli, drop_sql)),
        }
    }

    /// The connection URL of this database (see the instance's `url`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((cli, sql)) = self.drop_with.take() {
            // Best effort: the instance may already be gone, e.g. at process exit.
            let _ = cli.run_blocking(&sql);
        }
    }
}

/// `<prefix>_<pid>_<n>_<time>`: lower-case ASCII, at most 63 bytes (PostgreSQL's limit),
/// unique across concurrent test processes sharing a persistent instance.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    if clean.is_empty() {
        clean.push_str("db");
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{clean}_{:x}_{n}_{nanos:x}", std::process::id())
}
