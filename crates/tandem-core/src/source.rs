//! The source seam: a change log read as a stream of [`SourceEvent`]s.
//!
//! A source owns its connection to the database's log (pgoutput slot, binlog dump) and
//! hides everything protocol-specific behind two calls. It tracks three marks: what it has
//! received, what the pipeline reports as durably applied ([`Source::acknowledge`]), and
//! what it has acknowledged to the server. Only durably applied positions are ever
//! acknowledged, so a crash re-delivers from the last target commit and the sink's
//! checkpoint makes the effect exactly-once.

use async_trait::async_trait;

use crate::change::SourceEvent;
use crate::error::StageError;
use crate::position::Position;

#[async_trait]
pub trait Source: Send {
    /// The next event. Keepalives and other protocol chatter are handled inside; the
    /// future is cancel-safe only where the implementation says so.
    async fn next_event(&mut self) -> Result<SourceEvent, StageError>;

    /// Every transaction up to and including `position` is durably committed on the target.
    /// The source may now let the server discard that part of its log.
    async fn acknowledge(&mut self, position: &Position) -> Result<(), StageError>;

    /// Stop reading; the last acknowledgement reaches the server before the connection
    /// closes.
    async fn shutdown(&mut self) -> Result<(), StageError>;
}
