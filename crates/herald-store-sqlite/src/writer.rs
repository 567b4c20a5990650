//! The writer thread: the one owner of the write connection, and group commit.
//!
//! Callers send jobs over a bounded channel (backpressure: a full queue makes `send` wait, it
//! never grows without bound). The thread blocks for the first job, then takes whatever else is
//! already queued, up to `max_batch`, and runs the lot in one transaction, each job inside its
//! own SAVEPOINT so a failing job rolls back alone. Then it commits (with `synchronous=FULL`, an
//! fsync of the WAL) and only then answers every job: no caller hears "done" before its write
//! is durable. While one batch commits, the next one queues up, so the batch size adapts to the
//! load by itself and no timer is needed.
//!
//! Delivery claims are the exception to "durable before answered": a claim only marks a
//! delivery as leased, and a claim lost to a power failure leaves the delivery claimable again,
//! which at-least-once delivery allows anyway. A batch made only of such requests
//! ([`WriterHandle::write_lease`]) commits with `synchronous=NORMAL` (written to the WAL, no
//! fsync; a process crash still loses nothing, and the next full commit's fsync covers it).
//! That takes one of the two fsyncs off every delivery to an in-order endpoint, where claim and
//! settle alternate and cannot share a batch.
//!
//! Durable-channel appends are the hot path (one small publication per request, many
//! thousands a second), so they have a request kind of their own: a run of consecutive appends
//! in a batch is written under one savepoint with each channel's top offset read and written
//! once for the run, instead of a savepoint and two channel-row statements per request. If the
//! run fails, it is rolled back and its requests are retried one savepoint each, so a bad one
//! still fails alone.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::channels::append_run;
use super::rows::DbResultExt;
use herald_store::{NewPublication, StoreError, StoreResult, StreamPosition, now_ms};

/// What the writer thread is asked to do.
pub(crate) enum Request {
    /// Any write, as a closure.
    Job(Box<dyn Job>),
    /// A write whose loss on power failure breaks no rule (a lease); see the module doc.
    Lease(Box<dyn Job>),
    /// Durable publications to append (batched with its neighbours; see the module doc).
    Append(AppendRequest),
}

pub(crate) struct AppendRequest {
    publications: Vec<NewPublication>,
    outcome: Option<StoreResult<Vec<StreamPosition>>>,
    reply: oneshot::Sender<StoreResult<Vec<StreamPosition>>>,
}

impl AppendRequest {
    fn finish(self, commit: Result<(), &StoreError>) {
        let result = match (commit, self.outcome) {
            (_, Some(Err(own))) => Err(own),
            (Ok(()), Some(Ok(positions))) => Ok(positions),
            (Ok(()), None) => Err(StoreError::Backend("the append was not run".to_owned())),
            (Err(commit_error), _) => {
                Err(StoreError::Unavailable(format!("the transaction could not be committed: {commit_error}")))
            }
        };
        let _ = self.reply.send(result);
    }
}

impl Request {
    fn finish(self, commit: Result<(), &StoreError>) {
        match self {
            Request::Job(job) | Request::Lease(job) => job.finish(commit),
            Request::Append(append) => append.finish(commit),
        }
    }
}

/// One unit of work for the writer thread.
pub(crate) trait Job: Send {
    /// Runs inside the batch's transaction and the job's savepoint; returns whether it
    /// succeeded (a failed job's savepoint is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch is committed (`Ok`) or failed to commit (`Err`).
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

/// A closure job: its result goes back over a oneshot.
struct FnJob<T, F> {
    work: Option<F>,
    outcome: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for FnJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let outcome = work(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match (commit, self.outcome) {
            (_, Some(Err(own))) => Err(own),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(commit_error), Some(Ok(_))) => {
                Err(StoreError::Unavailable(format!("the transaction could not be committed: {commit_error}")))
            }
            (Err(commit_error), None) => {
                Err(StoreError::Unavailable(format!("the transaction could not be started: {commit_error}")))
            }
            (Ok(()), None) => Err(StoreError::Backend("the write job panicked".to_owned())),
        };
        // The caller may have gone away (a cancelled request); the write stands anyway.
        let _ = self.reply.send(result);
    }
}

/// The sending side, held by every [`super::SqliteStore`] clone. The thread ends when the last
/// one is dropped, after finishing what is queued.
#[derive(Clone)]
pub(crate) struct WriterHandle {
    sender: mpsc::Sender<Request>,
}

impl WriterHandle {
    /// Start the writer thread on `conn`.
    pub(crate) fn spawn(
        conn: Connection,
        max_batch: usize,
        queue_capacity: usize,
    ) -> StoreResult<(Self, JoinHandle<()>)> {
        let (sender, receiver) = mpsc::channel(queue_capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("herald-store-writer".to_owned())
            .spawn(move || writer_loop(conn, receiver, max_batch.max(1)))
            .map_err(|e| StoreError::Backend(format!("cannot start the store writer thread: {e}")))?;
        Ok((Self { sender }, thread))
    }

    /// Run `work` in the next group commit; resolves once it is durable.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.job(work, Request::Job).await
    }

    /// Run `work` (a lease: its loss on power failure must break no rule) in the next group
    /// commit; resolves once it is committed, not necessarily fsynced.
    pub(crate) async fn write_lease<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.job(work, Request::Lease).await
    }

    async fn job<T, F>(&self, work: F, kind: fn(Box<dyn Job>) -> Request) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(FnJob { work: Some(work), outcome: None, reply });
        self.send(kind(job)).await?;
        answer.await.map_err(|_| StoreError::Unavailable("the store writer stopped before answering".to_owned()))?
    }

    /// Append durable publications in the next group commit; resolves once they are durable.
    pub(crate) async fn append(&self, publications: Vec<NewPublication>) -> StoreResult<Vec<StreamPosition>> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append(AppendRequest { publications, outcome: None, reply })).await?;
        answer.await.map_err(|_| StoreError::Unavailable("the store writer stopped before answering".to_owned()))?
    }

    async fn send(&self, request: Request) -> StoreResult<()> {
        self.sender.send(request).await.map_err(|_| StoreError::Unavailable("the store writer has stopped".to_owned()))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

fn writer_loop(conn: Connection, mut receiver: mpsc::Receiver<Request>, max_batch: usize) {
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
    // The connection is opened with synchronous=FULL.
    let mut full_sync = true;
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let needs_full = batch.iter().any(|request| !matches!(request, Request::Lease(_)));
        if needs_full != full_sync {
            let mode = if needs_full { "FULL" } else { "NORMAL" };
            if let Err(error) = conn.pragma_update(None, "synchronous", mode).db() {
                for request in batch.drain(..) {
                    request.finish(Err(&error));
                }
                continue;
            }
            full_sync = needs_full;
        }
        run_batch(&conn, &mut batch);
    }
}

/// Runs every request of `batch` in one transaction and answers them all; leaves `batch` empty.
fn run_batch(conn: &Connection, batch: &mut Vec<Request>) {
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE").db() {
        for request in batch.drain(..) {
            request.finish(Err(&error));
        }
        return;
    }
    if let Err(error) = run_requests(conn, batch) {
        // The savepoint machinery itself failed: the transaction cannot be trusted.
        let _ = conn.execute_batch("ROLLBACK");
        for request in batch.drain(..) {
            request.finish(Err(&error));
        }
        return;
    }
    let commit = conn.execute_batch("COMMIT").db();
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for request in batch.drain(..) {
        request.finish(commit.as_ref().map(|_| ()));
    }
}

/// Runs the requests in order: jobs one savepoint each, runs of appends together.
fn run_requests(conn: &Connection, batch: &mut [Request]) -> StoreResult<()> {
    let mut idx = 0;
    while idx < batch.len() {
        let run_len = batch[idx..].iter().take_while(|request| matches!(request, Request::Append(_))).count();
        if run_len == 0 {
            if let Request::Job(job) | Request::Lease(job) = &mut batch[idx] {
                savepoint(conn, || catch_unwind(AssertUnwindSafe(|| job.run(conn))).unwrap_or(false))?;
            }
            idx += 1;
            continue;
        }
        let mut run: Vec<&mut AppendRequest> = batch[idx..idx + run_len]
            .iter_mut()
            .filter_map(|request| match request {
                Request::Append(append) => Some(append),
                Request::Job(_) | Request::Lease(_) => None,
            })
            .collect();
        run_appends(conn, &mut run)?;
        idx += run_len;
    }
    Ok(())
}

fn run_appends(conn: &Connection, run: &mut [&mut AppendRequest]) -> StoreResult<()> {
    let now = now_ms();
    let mut outcomes = None;
    let together = savepoint(conn, || {
        let groups: Vec<&[NewPublication]> = run.iter().map(|append| append.publications.as_slice()).collect();
        match catch_unwind(AssertUnwindSafe(|| append_run(conn, &groups, now))) {
            Ok(Ok(positions)) => {
                outcomes = Some(positions);
                true
            }
            _ => false,
        }
    })?;
    if let (true, Some(outcomes)) = (together, outcomes) {
        for (append, positions) in run.iter_mut().zip(outcomes) {
            append.outcome = Some(Ok(positions));
        }
        return Ok(());
    }
    // Something in the run failed: find out which, one savepoint per request.
    for append in run.iter_mut() {
        let mut outcome = None;
        savepoint(conn, || {
            let result = catch_unwind(AssertUnwindSafe(|| append_run(conn, &[append.publications.as_slice()], now)))
                .unwrap_or_else(|_| Err(StoreError::Backend("the append panicked".to_owned())))
                .map(|mut positions| positions.pop().unwrap_or_default());
            let ok = result.is_ok();
            outcome = Some(result);
            ok
        })?;
        append.outcome = outcome;
    }
    Ok(())
}

/// Runs `work` inside a savepoint, rolling back to it when `work` reports failure. Returns
/// what `work` reported; an error only when the savepoint statements themselves fail.
fn savepoint(conn: &Connection, work: impl FnOnce() -> bool) -> StoreResult<bool> {
    conn.prepare_cached("SAVEPOINT job").db()?.execute([]).db()?;
    let ok = work();
    if !ok {
        conn.prepare_cached("ROLLBACK TO job").db()?.execute([]).db()?;
    }
    conn.prepare_cached("RELEASE job").db()?.execute([]).db()?;
    Ok(ok)
}
