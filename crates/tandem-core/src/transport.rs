//! The transport seam between a source and an applier.
//!
//! By default a bounded in-process channel: when the applier falls behind, the channel
//! fills and the reader waits, which is the backpressure that keeps memory bounded
//! (invariant 6) — the reader keeps answering the server's keepalives while it waits.
//! The acknowledgement path runs the other way through [`AckSender`]/[`AckReceiver`]: the
//! applier publishes each durably committed source position, the reader acknowledges it to
//! the server. A Kafka transport implements the same two traits (publish/consume, with the
//! consumer's committed offset as acknowledgement) without any change to sources or sinks.

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::change::SourceEvent;
use crate::error::StageError;
use crate::position::Position;

/// Default channel capacity in events: enough to keep the applier busy, small enough that
/// a stalled applier holds little memory.
pub const DEFAULT_CAPACITY: usize = 8192;

#[async_trait]
pub trait EventSender: Send {
    /// Waits while the transport is full.
    async fn send(&mut self, event: SourceEvent) -> Result<(), StageError>;
}

#[async_trait]
pub trait EventReceiver: Send {
    /// `None` when the sending side has shut down. Must be cancel-safe: the applier
    /// selects on it together with its stop signal.
    async fn recv(&mut self) -> Result<Option<SourceEvent>, StageError>;

    /// Whether another event is already waiting (the applier groups transactions while
    /// more are queued, and commits as soon as the queue is empty). `false` is always safe.
    fn has_pending(&self) -> bool {
        false
    }
}

/// The in-process transport.
pub fn channel(capacity: usize) -> (ChannelSender, ChannelReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ChannelSender(tx), ChannelReceiver(rx))
}

pub struct ChannelSender(mpsc::Sender<SourceEvent>);
pub struct ChannelReceiver(mpsc::Receiver<SourceEvent>);

impl ChannelSender {
    /// Wait until there is room, then send; used by readers that must keep serving their
    /// connection while they wait (call `reserve` inside a `select!`).
    pub async fn reserve(&self) -> Result<mpsc::Permit<'_, SourceEvent>, StageError> {
        self.0.reserve().await.map_err(|_| closed())
    }
}

fn closed() -> StageError {
    StageError::definite(
        "the applier side of the pipeline has stopped",
        "see the applier's error above",
    )
}

#[async_trait]
impl EventSender for ChannelSender {
    async fn send(&mut self, event: SourceEvent) -> Result<(), StageError> {
        self.0.send(event).await.map_err(|_| closed())
    }
}

#[async_trait]
impl EventReceiver for ChannelReceiver {
    async fn recv(&mut self) -> Result<Option<SourceEvent>, StageError> {
        Ok(self.0.recv().await)
    }

    fn has_pending(&self) -> bool {
        !self.0.is_empty()
    }
}

/// Publishes durably applied positions from the applier to the reader.
#[derive(Clone)]
pub struct AckSender(watch::Sender<Option<Position>>);

/// Receives durably applied positions; only the latest matters.
#[derive(Clone)]
pub struct AckReceiver(watch::Receiver<Option<Position>>);

pub fn ack_channel() -> (AckSender, AckReceiver) {
    let (tx, rx) = watch::channel(None);
    (AckSender(tx), AckReceiver(rx))
}

impl AckSender {
    pub fn applied(&self, position: Position) {
        self.0.send_replace(Some(position));
    }
}

impl AckReceiver {
    /// Wait for a new applied position; `None` when the applier is gone.
    pub async fn changed(&mut self) -> Option<Position> {
        self.0.changed().await.ok()?;
        self.0.borrow_and_update().clone()
    }

    /// The latest applied position without waiting.
    pub fn latest(&self) -> Option<Position> {
        self.0.borrow().clone()
    }
}
