//! The seam `tandem verify` compares two tables through: checksums computed inside each
//! database, and the rows of the chunks whose checksums differ.
//!
//! Pulling millions of rows through tandem to compare them costs minutes; asking each
//! database for a checksum per chunk of rows costs one scan. For the two databases'
//! checksums to be comparable, both endpoint crates compute them from the same **canonical
//! text** of a row and split rows into the same chunks. The contract, which
//! `tandem_postgres::verify` and `tandem_mysql::verify` both implement in SQL:
//!
//! - **Column text.** Each mapped column renders as text that is equal on both sides for
//!   values tandem considers equal: integers and decimals in plain decimal with trailing
//!   fractional zeros (and a trailing point) removed (`12.50` → `12.5`, `7.00` → `7`);
//!   booleans as `1`/`0`; dates `YYYY-MM-DD`; times `HH:MM:SS.ffffff`; timestamps
//!   `YYYY-MM-DD HH:MM:SS.ffffff` in UTC; text as its UTF-8 characters; binary as lowercase
//!   hex; NULL as the single character U+001E. JSON columns are left out of the checksum
//!   (`jsonb` reorders keys, MariaDB keeps the text as written) and compared value by value
//!   in the rows fetched for differing chunks only.
//! - **Key text** ([`KeyedRow::key`]): the key columns' texts joined with U+001F.
//! - **Chunk** of a row: the first 8 hex digits of `md5(key text)` as an unsigned number,
//!   modulo the chunk count. Chunks by hash, not by key range, because the two databases
//!   order text keys by different collations (MariaDB's default is even case-insensitive):
//!   a range `'a' ≤ k < 'b'` can hold different rows on each side, a hash bucket cannot.
//! - **Row hash**: the first 15 hex digits of `md5` of the row text (the columns' texts
//!   joined with U+001F), as an unsigned number below 2⁶⁰; a chunk's checksum is the row
//!   count and the exact sum of its rows' hashes (order-free, so no sort is needed).
//!
//! Canonical texts only decide which chunks are fetched. Whether two rows differ is decided
//! on the fetched, decoded values with [`crate::Value::same_as`], so a type whose text
//! differs between the databases for equal values (floats print differently) costs speed,
//! never a false report.

use async_trait::async_trait;

use crate::change::TableId;
use crate::error::StageError;
use crate::sink::{ConflictRecord, RowWrite, TargetTable};
use crate::value::{ColumnType, Value};

/// The character a NULL column renders as in the row text.
pub const NULL_MARK: char = '\u{1e}';
/// The character between column texts.
pub const SEPARATOR: char = '\u{1f}';

/// One mapped table as verify reads it on one endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyTable {
    pub table: TableId,
    /// The mapped columns on this endpoint, in mapping order, with their types.
    pub columns: Vec<(String, ColumnType)>,
    /// Indexes into `columns` of the key, in the key's order.
    pub key: Vec<usize>,
}

/// Row count and hash sum of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSum {
    pub chunk: u32,
    pub rows: u64,
    pub hash: u128,
}

/// A row read for comparison: its key text and its mapped columns' values.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedRow {
    pub key: String,
    pub values: Vec<Value>,
}

/// What `tandem verify` needs from an endpoint.
#[async_trait]
pub trait VerifyReader: Send {
    /// About how many rows the table holds (the catalog's estimate; exact for small tables).
    async fn estimate_rows(&mut self, table: &VerifyTable) -> Result<u64, StageError>;

    /// Count and hash sum of every non-empty chunk, the rows split into `chunks` chunks.
    async fn chunk_sums(
        &mut self,
        table: &VerifyTable,
        chunks: u32,
    ) -> Result<Vec<ChunkSum>, StageError>;

    /// The rows of the listed chunks.
    async fn rows_in_chunks(
        &mut self,
        table: &VerifyTable,
        chunks: u32,
        which: &[u32],
    ) -> Result<Vec<KeyedRow>, StageError>;

    /// The rows with these keys (each in key order, in this endpoint's types); missing keys
    /// are simply absent from the result.
    async fn rows_by_key(
        &mut self,
        table: &VerifyTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<KeyedRow>, StageError>;

    /// Apply repair writes and record them, in one transaction, tagged as tandem's own so
    /// that the daemon's reader does not replicate them back (a repaired counter would be
    /// counted twice under `delta`).
    async fn repair(
        &mut self,
        table: &TargetTable,
        writes: &[RowWrite],
        records: &[ConflictRecord],
    ) -> Result<(), StageError>;
}
