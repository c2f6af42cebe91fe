//! A sink whose writes run behind the applier, on their own task.
//!
//! The applier and its target connection take turns: the applier maps, reads current rows,
//! resolves and encodes a batch, then waits while the server executes it, and the server
//! idles while the applier works on the next batch. Measured on the throughput benchmark
//! (BENCHMARKS.md, section 1) the two CPU times add up to the wall time. [`WriteBehind`]
//! owns the real sink on a task of its own and returns from [`Sink::write`] as soon as the
//! batch is queued, so the next batch's mapping overlaps the previous batch's statements.
//!
//! Order and atomicity are unchanged: every call goes through one FIFO queue to the one
//! connection, so a read of current rows runs after the writes queued before it, and
//! `commit` after all of them. A failed write is reported by the next call that waits for
//! an answer (a read, `record` or `commit`); until the applier rolls back, every further
//! call fails too, so nothing after a failed write can commit. At most [`QUEUED_JOBS`]
//! batches wait in the queue (bounded memory).

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::error::StageError;
use crate::sink::{
    CheckedWrite, ConflictRecord, DeadLetter, RowWrite, Sink, TargetTable, Unapplied,
};
use crate::value::Value;

/// Jobs waiting for the sink task at most (each a batch of writes, or a call): with the
/// one it runs and the one the applier builds, three batches are in memory at most.
pub const QUEUED_JOBS: usize = 1;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A call that answers: run on the sink unless an earlier write failed, then reply.
type Call =
    Box<dyn for<'a> FnOnce(&'a mut dyn Sink, Option<StageError>) -> BoxFuture<'a, ()> + Send>;

enum Job {
    Write {
        table: TargetTable,
        writes: Vec<RowWrite>,
    },
    Call(Call),
    /// Rollback (and begin) clear an earlier write's failure.
    Reset(Call),
}

/// See the module documentation.
pub struct WriteBehind {
    jobs: mpsc::Sender<Job>,
}

impl WriteBehind {
    /// Move `sink` onto a task of its own (needs a tokio runtime). The task ends when the
    /// `WriteBehind` is dropped, after the jobs queued before.
    pub fn spawn(sink: Box<dyn Sink>) -> WriteBehind {
        let (jobs, rx) = mpsc::channel(QUEUED_JOBS);
        tokio::spawn(run(sink, rx));
        WriteBehind { jobs }
    }

    async fn send(&self, job: Job) -> Result<(), StageError> {
        self.jobs.send(job).await.map_err(|_| gone())
    }

    /// Queue a call and return where its answer will arrive, without waiting for it.
    async fn queue<T: Send + 'static>(
        &self,
        reset: bool,
        f: impl for<'a> FnOnce(&'a mut dyn Sink) -> BoxFuture<'a, Result<T, StageError>>
            + Send
            + 'static,
    ) -> Result<oneshot::Receiver<Result<T, StageError>>, StageError> {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |sink, failed| {
            Box::pin(async move {
                let answer = match failed {
                    Some(e) => Err(e),
                    None => f(sink).await,
                };
                let _ = tx.send(answer);
            })
        });
        self.send(if reset {
            Job::Reset(call)
        } else {
            Job::Call(call)
        })
        .await?;
        Ok(rx)
    }

    async fn ask<T: Send + 'static>(
        &self,
        reset: bool,
        f: impl for<'a> FnOnce(&'a mut dyn Sink) -> BoxFuture<'a, Result<T, StageError>>
            + Send
            + 'static,
    ) -> Result<T, StageError> {
        self.queue(reset, f).await?.await.map_err(|_| gone())?
    }
}

fn gone() -> StageError {
    StageError::Transient {
        what: "the target connection's task ended".into(),
        source: None,
    }
}

async fn run(mut sink: Box<dyn Sink>, mut jobs: mpsc::Receiver<Job>) {
    // The first failure of a queued write, until it is reported; then `poisoned` until
    // the applier rolls back.
    let mut failed: Option<StageError> = None;
    let mut poisoned = false;
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Write { table, writes } => {
                if failed.is_none() && !poisoned {
                    if let Err(e) = sink.write(&table, &writes).await {
                        failed = Some(e);
                    }
                }
            }
            Job::Call(call) => {
                let report = failed.take().or_else(|| {
                    poisoned.then(|| StageError::Transient {
                        what: "an earlier write of this target transaction failed".into(),
                        source: None,
                    })
                });
                poisoned |= report.is_some();
                call(sink.as_mut(), report).await;
            }
            Job::Reset(call) => {
                failed = None;
                poisoned = false;
                call(sink.as_mut(), None).await;
            }
        }
    }
}

#[async_trait]
impl Sink for WriteBehind {
    async fn checkpoint_text(&mut self, key: &str) -> Result<Option<String>, StageError> {
        let key = key.to_owned();
        self.ask(false, move |s| {
            Box::pin(async move { s.checkpoint_text(&key).await })
        })
        .await
    }

    async fn begin(&mut self) -> Result<(), StageError> {
        self.ask(true, |s| Box::pin(async move { s.begin().await }))
            .await
    }

    async fn fetch_current(
        &mut self,
        table: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Option<Vec<Value>>>, StageError> {
        let (table, keys) = (table.clone(), keys.to_vec());
        self.ask(false, move |s| {
            Box::pin(async move { s.fetch_current(&table, &keys).await })
        })
        .await
    }

    async fn is_empty(&mut self, table: &TargetTable) -> Result<bool, StageError> {
        let table = table.clone();
        self.ask(false, move |s| {
            Box::pin(async move { s.is_empty(&table).await })
        })
        .await
    }

    async fn write(&mut self, table: &TargetTable, writes: &[RowWrite]) -> Result<(), StageError> {
        self.write_owned(table, writes.to_vec()).await
    }

    async fn write_owned(
        &mut self,
        table: &TargetTable,
        writes: Vec<RowWrite>,
    ) -> Result<(), StageError> {
        self.send(Job::Write {
            table: table.clone(),
            writes,
        })
        .await
    }

    /// Queued like a write: the applier goes on with the next batch and learns which
    /// rows were not applied before its next call to the sink.
    async fn write_if_unchanged(
        &mut self,
        table: &TargetTable,
        writes: Vec<CheckedWrite>,
    ) -> Result<Unapplied, StageError> {
        let table = table.clone();
        let rx = self
            .queue(false, move |s| {
                Box::pin(async move { s.write_if_unchanged(&table, writes).await?.wait().await })
            })
            .await?;
        Ok(Unapplied::Later(rx))
    }

    async fn record(
        &mut self,
        conflicts: &[ConflictRecord],
        dead_letters: &[DeadLetter],
    ) -> Result<(), StageError> {
        let (conflicts, dead) = (conflicts.to_vec(), dead_letters.to_vec());
        self.ask(false, move |s| {
            Box::pin(async move { s.record(&conflicts, &dead).await })
        })
        .await
    }

    async fn commit_text(
        &mut self,
        key: &str,
        text: &str,
        source_commit_time: DateTime<Utc>,
    ) -> Result<(), StageError> {
        let (key, text) = (key.to_owned(), text.to_owned());
        self.ask(false, move |s| {
            Box::pin(async move { s.commit_text(&key, &text, source_commit_time).await })
        })
        .await
    }

    async fn rollback(&mut self) -> Result<(), StageError> {
        self.ask(true, |s| Box::pin(async move { s.rollback().await }))
            .await
    }
}
