//! tandem's own tables in the target MySQL/MariaDB database.
//!
//! - `tandem_checkpoints`: one row per pipeline (direction), the source position of the last
//!   applied source transaction. It is written in the same transaction as the applied rows
//!   (design invariant 1), which is why it lives in the target database and is InnoDB.
//! - `tandem_conflicts`: every conflict with both images, the current row and the decision.
//! - `tandem_dead_letters`: every change that could not be applied, with its reason.
//! - `tandem_apply_marker`: one row the applier updates first in every transaction when
//!   loop prevention uses markers; the binlog reader drops transactions that touch it
//!   (design invariant 2).
//!
//! The statements are `CREATE TABLE IF NOT EXISTS`: running them at every start is cheap
//! and never touches data. `pipeline` is `varchar(191)` so that the primary key fits
//! InnoDB's 767-byte index limit in utf8mb4 on old row formats. `` `key` `` is a reserved
//! word and is always quoted.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tandem_core::error::StageError;

use crate::connect::classify;

/// Checkpoint table name.
pub const CHECKPOINTS: &str = "tandem_checkpoints";
/// Conflict log table name.
pub const CONFLICTS: &str = "tandem_conflicts";
/// Dead-letter table name.
pub const DEAD_LETTERS: &str = "tandem_dead_letters";
/// Loop-prevention marker table name.
pub const APPLY_MARKER: &str = "tandem_apply_marker";

/// Every table tandem creates, for `tandem check` and for filtering them out of sources.
pub const TANDEM_TABLES: [&str; 4] = [CHECKPOINTS, CONFLICTS, DEAD_LETTERS, APPLY_MARKER];

/// The `CREATE TABLE IF NOT EXISTS` statements, in creation order.
pub fn statements() -> [String; 4] {
    const OPTS: &str = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
                pipeline varchar(191) NOT NULL PRIMARY KEY,
                position text NOT NULL,
                source_commit_time datetime(6) NULL,
                applied_at datetime(6) NULL
            ) {OPTS}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {CONFLICTS} (
                id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
                at datetime(6) NOT NULL,
                mapping varchar(191) NOT NULL,
                kind varchar(32) NOT NULL,
                strategy varchar(191) NOT NULL,
                decision varchar(32) NOT NULL,
                `key` json NOT NULL,
                `before` json NULL,
                `after` json NULL,
                `current` json NULL,
                source_commit_time datetime(6) NULL,
                resolved_at datetime(6) NULL,
                resolution text NULL,
                KEY tandem_conflicts_unresolved (resolved_at, mapping)
            ) {OPTS}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {DEAD_LETTERS} (
                id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
                at datetime(6) NOT NULL,
                mapping varchar(191) NOT NULL,
                `key` json NOT NULL,
                `change` json NOT NULL,
                reason text NOT NULL,
                source_position text NOT NULL,
                retried_at datetime(6) NULL,
                KEY tandem_dead_letters_mapping (mapping, id)
            ) {OPTS}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {APPLY_MARKER} (
                id tinyint NOT NULL PRIMARY KEY,
                txn bigint NOT NULL,
                at datetime(6) NOT NULL
            ) {OPTS}"
        ),
    ]
}

/// Create tandem's tables in the connection's current database where they are missing.
pub async fn ensure_tables(conn: &mut Conn) -> Result<(), StageError> {
    for sql in statements() {
        conn.query_drop(sql.as_str())
            .await
            .map_err(|e| classify("Creating tandem's tables in the target database", e))?;
    }
    Ok(())
}
