//! The writer: group commit on PostgreSQL.
//!
//! Callers send requests over bounded channels (backpressure: a full queue makes `send` wait,
//! it never grows without bound). There are three lanes (see [`Lane`]: messages, attempts, and
//! everything else), each a task with its own queue: it waits for the first request, takes
//! whatever else is already queued, up to `max_batch`, takes a pooled connection and runs the
//! lot in one transaction, each request (or run of requests, below) inside its own SAVEPOINT
//! so a failing one (a unique violation, a deadlock victim) rolls back alone and gets its
//! error. Then it commits and only then answers every request: no caller hears "done" before
//! its write is durable. While one batch commits the next one queues up, so the batch grows
//! with the load by itself and no timer is needed; the lanes' batches commit side by side.
//!
//! Round trips are what a batch costs (the server's work per statement is small), so the
//! statements are pipelined wherever they depend on each other only inside the database (see
//! `rows::prepare_all`): the transaction's opening (BEGIN, the cluster lock, the first
//! savepoint) travels with the first request's first statement, each savepoint move with the
//! next request's, and a batch of one request needs no savepoint at all. A savepoint costs a
//! round trip of its own only to roll back a request that failed.
//!
//! A batch in which a request created delivery work also runs `pg_notify` with its COMMIT:
//! PostgreSQL delivers the notification at commit, never for a rolled-back batch, to every node
//! listening (this one too), and folds the notifications of one transaction into one.
//!
//! The hot writes have request kinds of their own ([`Batched`]), each run together in a fixed
//! number of round trips whatever the batch's size: durable-channel appends (each channel's row
//! locked and bumped once for the run), message creations (two: lookups, then insert, queue
//! locks and the whole fan-out) and attempt records (one: queue locks, insert, settle, next
//! heads). The requests of one kind in a batch form one run under one savepoint, whatever their
//! place in the queue: nobody has been answered yet, so any order among them is one that could
//! have happened. If a run fails, it is rolled back and its requests are redone one savepoint
//! each, so a bad one fails alone.
//!
//! The tasks end when the [`WriterHandle`] is gone, after finishing what is queued. A batch runs
//! to its end even if its callers went away (the task is never cancelled mid-batch), so a
//! pooled connection never goes back to the pool inside a transaction.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures_util::FutureExt;
use tokio::sync::{Notify, mpsc, oneshot};

use super::channels::append_run;
use super::deliveries::AttemptRecord;
use super::rows::{Conn, DbResultExt, led, pooled};
use herald_store::{NewMessage, NewPublication, StoreError, StoreResult, StreamPosition, Timestamp, now_ms};

pub(crate) use super::batched::{Batched, BoxFuture};

/// What the writer task is asked to do.
pub(crate) enum Request {
    /// Any write, as a closure.
    Job(Box<dyn Job>),
    /// Durable publications to append.
    Append(Pending<Publications>),
    /// A message to create and fan out.
    Message(Pending<NewMessage>),
    /// A delivery attempt to record.
    Attempt(Pending<AttemptRecord>),
}

/// A request of a [`Batched`] kind waiting for its run and then for the commit.
pub(crate) struct Pending<I: Batched> {
    input: I,
    outcome: Option<StoreResult<I::Output>>,
    reply: oneshot::Sender<StoreResult<I::Output>>,
}

impl<I: Batched> Pending<I> {
    fn finish(self, commit: Result<(), &StoreError>) {
        // The caller may have gone away (a cancelled request); the write stands anyway.
        let _ = self.reply.send(settle(commit, self.outcome));
    }

    fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(Ok(_)))
    }

    fn wakes(&self) -> bool {
        matches!(&self.outcome, Some(Ok(output)) if I::wakes(output))
    }
}

/// The publications of one append request.
pub(crate) struct Publications(pub(crate) Vec<NewPublication>);

impl Batched for Publications {
    type Output = Vec<StreamPosition>;
    const CHANGES_QUEUES: bool = false;

    fn run<'a>(
        conn: &'a Conn,
        inputs: Vec<&'a Self>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Vec<StoreResult<Self::Output>>>> {
        Box::pin(async move {
            let groups: Vec<&[NewPublication]> = inputs.iter().map(|input| input.0.as_slice()).collect();
            Ok(append_run(conn, &groups, now).await?.into_iter().map(Ok).collect())
        })
    }

    fn wakes(_: &Self::Output) -> bool {
        false
    }
}

/// The answer for a caller whose own work succeeded (or never ran) once the commit is known.
fn settle<T>(commit: Result<(), &StoreError>, outcome: Option<StoreResult<T>>) -> StoreResult<T> {
    match (commit, outcome) {
        (_, Some(Err(own))) => Err(own),
        (Ok(()), Some(Ok(value))) => Ok(value),
        (Ok(()), None) => Err(StoreError::Backend("the write was not run (it panicked)".to_owned())),
        (Err(StoreError::Unavailable(detail)), _) => Err(StoreError::Unavailable(detail.clone())),
        (Err(commit_error), _) => {
            Err(StoreError::Unavailable(format!("the transaction could not be committed: {commit_error}")))
        }
    }
}

impl Request {
    fn finish(self, commit: Result<(), &StoreError>) {
        match self {
            Request::Job(job) => job.finish(commit),
            Request::Append(pending) => pending.finish(commit),
            Request::Message(pending) => pending.finish(commit),
            Request::Attempt(pending) => pending.finish(commit),
        }
    }

    fn succeeded(&self) -> bool {
        match self {
            Request::Job(job) => job.succeeded(),
            Request::Append(pending) => pending.succeeded(),
            Request::Message(pending) => pending.succeeded(),
            Request::Attempt(pending) => pending.succeeded(),
        }
    }

    fn wakes(&self) -> bool {
        match self {
            Request::Job(job) => job.wakes(),
            Request::Append(pending) => pending.wakes(),
            Request::Message(pending) => pending.wakes(),
            Request::Attempt(pending) => pending.wakes(),
        }
    }

    /// Whether the request may change endpoint queues (see [`run_transaction`]).
    fn changes_queues(&self) -> bool {
        match self {
            Request::Job(_) => true,
            Request::Append(_) => Publications::CHANGES_QUEUES,
            Request::Message(_) => NewMessage::CHANGES_QUEUES,
            Request::Attempt(_) => AttemptRecord::CHANGES_QUEUES,
        }
    }
}

/// One unit of work for the writer task.
pub(crate) trait Job: Send {
    /// Runs inside the batch's transaction (and the job's savepoint); returns whether it
    /// succeeded.
    fn run<'a>(&'a mut self, conn: &'a Conn) -> BoxFuture<'a, bool>;
    fn succeeded(&self) -> bool;
    /// Whether the job, having succeeded, created delivery work (the batch then notifies).
    fn wakes(&self) -> bool;
    /// Answers the caller once the batch is committed (`Ok`) or failed to commit (`Err`).
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

/// A closure job: its result goes back over a oneshot.
struct FnJob<T, F> {
    work: Option<F>,
    wake: fn(&T) -> bool,
    outcome: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Job for FnJob<T, F>
where
    T: Send,
    F: for<'c> FnOnce(&'c Conn) -> BoxFuture<'c, StoreResult<T>> + Send,
{
    fn run<'a>(&'a mut self, conn: &'a Conn) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(work) = self.work.take() else { return false };
            let outcome = AssertUnwindSafe(async move { work(conn).await })
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(StoreError::Backend("the write job panicked".to_owned())));
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(Ok(_)))
    }

    fn wakes(&self) -> bool {
        matches!(&self.outcome, Some(Ok(value)) if (self.wake)(value))
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let this = *self;
        // The caller may have gone away (a cancelled request); the write stands anyway.
        let _ = this.reply.send(settle(commit, this.outcome));
    }
}

/// The sending side, held by the store: one queue per lane (see [`Lane`]). The tasks end when
/// it is dropped, after finishing what is queued.
pub(crate) struct WriterHandle {
    lanes: [mpsc::Sender<Request>; Lane::COUNT],
}

/// The writer's lanes: each has its own task, queue and connection, so a batch of messages,
/// one of attempts and one of other writes commit side by side instead of one behind the
/// other. Each lane's batches hold one kind of batched run at most, whose endpoint locks are
/// taken in one statement in id order, so batches of different lanes (and nodes) cannot
/// deadlock on them (see [`run_transaction`]).
#[derive(Clone, Copy)]
enum Lane {
    /// Jobs and durable-channel appends.
    General = 0,
    Messages = 1,
    Attempts = 2,
}

impl Lane {
    const COUNT: usize = 3;

    fn of(request: &Request) -> Self {
        match request {
            Request::Job(_) | Request::Append(_) => Lane::General,
            Request::Message(_) => Lane::Messages,
            Request::Attempt(_) => Lane::Attempts,
        }
    }
}

/// What the writer task needs besides its queue.
pub(crate) struct WriterSetup {
    pub(crate) pool: Pool,
    pub(crate) max_batch: usize,
    pub(crate) queue_capacity: usize,
    /// The LISTEN/NOTIFY channel of this schema.
    pub(crate) notify_channel: String,
    /// Key of the advisory lock that orders writer batches across nodes (per schema).
    pub(crate) writer_lock: String,
    /// Woken at once after a commit that created delivery work (the notification reaches the
    /// other nodes, and this one again, through the listener).
    pub(crate) local_wake: Arc<Notify>,
}

impl WriterHandle {
    /// Start the writer's tasks on the current runtime.
    pub(crate) fn spawn(setup: WriterSetup) -> Self {
        let setup = Arc::new(setup);
        let lanes = std::array::from_fn(|_| {
            let (sender, receiver) = mpsc::channel(setup.queue_capacity.max(1));
            tokio::spawn(writer_loop(setup.clone(), receiver));
            sender
        });
        Self { lanes }
    }

    /// Run `work` in the next group commit; resolves once it is committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c Conn) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        self.write_waking(work, |_| false).await
    }

    /// Like [`Self::write`]; when `wake` says the result created delivery work, the batch
    /// notifies every node's dispatcher at commit.
    pub(crate) async fn write_waking<T, F>(&self, work: F, wake: fn(&T) -> bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c Conn) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(FnJob { work: Some(work), wake, outcome: None, reply });
        self.send(Request::Job(job)).await?;
        answer.await.map_err(|_| StoreError::Unavailable("the store writer stopped before answering".to_owned()))?
    }

    /// Run a request of a [`Batched`] kind in the next group commit; resolves once it is
    /// committed.
    pub(crate) async fn batched<I: Batched>(
        &self,
        input: I,
        wrap: fn(Pending<I>) -> Request,
    ) -> StoreResult<I::Output> {
        let (reply, answer) = oneshot::channel();
        self.send(wrap(Pending { input, outcome: None, reply })).await?;
        answer.await.map_err(|_| StoreError::Unavailable("the store writer stopped before answering".to_owned()))?
    }

    async fn send(&self, request: Request) -> StoreResult<()> {
        self.lanes[Lane::of(&request) as usize]
            .send(request)
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".to_owned()))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lanes.iter().any(mpsc::Sender::is_closed)
    }
}

async fn writer_loop(setup: Arc<WriterSetup>, mut receiver: mpsc::Receiver<Request>) {
    let max_batch = setup.max_batch.max(1);
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch.min(1024));
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        run_batch(&setup, &mut batch).await;
    }
}

fn fail_all(batch: &mut Vec<Request>, error: &StoreError) {
    for request in batch.drain(..) {
        request.finish(Err(error));
    }
}

/// Runs every request of `batch` in one transaction and answers them all; leaves `batch` empty.
async fn run_batch(setup: &WriterSetup, batch: &mut Vec<Request>) {
    let conn = match pooled(&setup.pool).await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(error = %error, "The store writer cannot get a PostgreSQL connection.");
            return fail_all(batch, &error);
        }
    };
    let outcome = run_transaction(&conn, setup, batch).await;
    match outcome {
        Ok(commit) => {
            let wake = commit.is_ok() && batch.iter().any(Request::wakes);
            for request in batch.drain(..) {
                request.finish(commit.as_ref().map(|_| ()));
            }
            if wake {
                setup.local_wake.notify_waiters();
                setup.local_wake.notify_one();
            }
        }
        Err(error) => {
            // The transaction's state is unknown: never hand this connection out again.
            let _ = conn.batch_execute("ROLLBACK").await;
            drop(deadpool_postgres::Object::take(conn));
            fail_all(batch, &error);
        }
    }
}

/// A string as an SQL literal (the lock key and the channel name go into simple queries).
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// BEGIN, the requests, then COMMIT (or ROLLBACK when nothing succeeded). `Err` when the
/// transaction machinery itself failed; `Ok(commit)` otherwise, with the commit's outcome.
/// Opening and closing are one round trip each.
async fn run_transaction(
    conn: &Conn,
    setup: &WriterSetup,
    batch: &mut [Request],
) -> StoreResult<Result<(), StoreError>> {
    let mut open = String::from("BEGIN");
    let key = sql_literal(&setup.writer_lock);
    if batch.iter().any(|request| matches!(request, Request::Job(_))) {
        // The cluster's writer lock, exclusive: a job may lock endpoints' rows (ordered queues,
        // cascades) one statement after another, in no global order, and hold them to the
        // commit; two such batches, or one and a batched run, could then wait on each other
        // (deadlock, PostgreSQL kills one). Taken first, this lock orders them.
        open.push_str(&format!("; SELECT pg_advisory_xact_lock(hashtext({key}))"));
    } else if batch.iter().any(Request::changes_queues) {
        // Shared: batched runs lock every endpoint they need in one statement, in id order, and
        // a lane's batch holds one kind of run, so runs never deadlock with each other; they
        // only wait for jobs. Claims never wait on anything (SKIP LOCKED) and durable-channel
        // appends lock channel rows in name order, so neither takes it.
        open.push_str(&format!("; SELECT pg_advisory_xact_lock_shared(hashtext({key}))"));
    }
    let state = if batch.len() > 1 {
        open.push_str("; SAVEPOINT job");
        Savepoint::Fresh
    } else {
        Savepoint::Off
    };
    // The opening travels with the first request's first statement.
    let mut savepoint = Leads { open: Some(open), state };
    run_requests(conn, batch, &mut savepoint).await?;
    if let Some(open) = savepoint.open.take() {
        conn.batch_execute(&open).await.db()?;
    }
    if !batch.iter().any(Request::succeeded) {
        conn.batch_execute("ROLLBACK").await.db()?;
        return Ok(Ok(()));
    }
    // COMMIT releases the last savepoint with the rest.
    let close = if batch.iter().any(Request::wakes) {
        format!("SELECT pg_notify({}, ''); COMMIT", sql_literal(&setup.notify_channel))
    } else {
        "COMMIT".to_owned()
    };
    match conn.batch_execute(&close).await.db() {
        Ok(()) => Ok(Ok(())),
        Err(error) => {
            tracing::warn!(error = %error, "A store batch could not be committed.");
            Err(error)
        }
    }
}

/// Where the batch stands with its savepoint `job`: every request (or run) but a batch's only
/// one runs inside a savepoint of its own, so a failing one rolls back alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Savepoint {
    /// A batch of one request: none needed, it commits or rolls back whole.
    Off,
    /// Set and unused: the next request runs in it.
    Fresh,
    /// Holds the work of a request that succeeded: released before the next one.
    Used,
    /// Rolled back and released after a failure: set anew before the next request.
    Gone,
}

/// What goes before each request of a batch: the transaction's opening before the first, and
/// the savepoint moves (see [`Savepoint`]).
struct Leads {
    open: Option<String>,
    state: Savepoint,
}

impl Leads {
    /// What to send before the next request, pipelined with its first statement (see
    /// `rows::prepare_all`): no round trip of its own.
    fn lead(&mut self) -> Option<String> {
        let savepoint = match self.state {
            Savepoint::Off => None,
            Savepoint::Fresh => None,
            Savepoint::Used => Some("RELEASE SAVEPOINT job; SAVEPOINT job"),
            Savepoint::Gone => Some("SAVEPOINT job"),
        };
        if self.state != Savepoint::Off {
            self.state = Savepoint::Used;
        }
        match (self.open.take(), savepoint) {
            (Some(open), Some(savepoint)) => Some(format!("{open}; {savepoint}")),
            (Some(open), None) => Some(open),
            (None, savepoint) => savepoint.map(str::to_owned),
        }
    }

    fn is_off(&self) -> bool {
        self.state == Savepoint::Off
    }

    /// After a request: drops its work if it failed. A round trip only then.
    async fn after(&mut self, conn: &Conn, ok: bool) -> StoreResult<()> {
        if ok || self.is_off() {
            return Ok(());
        }
        conn.batch_execute("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job").await.db()?;
        self.state = Savepoint::Gone;
        Ok(())
    }
}

/// Runs the requests: jobs one savepoint each, in queue order, then each batched kind as one
/// run.
async fn run_requests(conn: &Conn, batch: &mut [Request], savepoint: &mut Leads) -> StoreResult<()> {
    for request in batch.iter_mut() {
        if let Request::Job(job) = request {
            let ok = led(conn, savepoint.lead(), job.run(conn)).await?;
            savepoint.after(conn, ok).await?;
        }
    }
    let mut appends: Vec<&mut Pending<Publications>> =
        batch.iter_mut().filter_map(|r| if let Request::Append(p) = r { Some(p) } else { None }).collect();
    run_batched(conn, &mut appends, savepoint).await?;
    let mut messages: Vec<&mut Pending<NewMessage>> =
        batch.iter_mut().filter_map(|r| if let Request::Message(p) = r { Some(p) } else { None }).collect();
    run_batched(conn, &mut messages, savepoint).await?;
    let mut attempts: Vec<&mut Pending<AttemptRecord>> =
        batch.iter_mut().filter_map(|r| if let Request::Attempt(p) = r { Some(p) } else { None }).collect();
    run_batched(conn, &mut attempts, savepoint).await
}

/// Runs `I::run` once after `lead`, panics turned into errors.
async fn run_once<I: Batched>(
    conn: &Conn,
    lead: Option<String>,
    inputs: Vec<&I>,
    now: Timestamp,
) -> StoreResult<Vec<StoreResult<I::Output>>> {
    let run = AssertUnwindSafe(I::run(conn, inputs, now)).catch_unwind();
    led(conn, lead, run).await?.unwrap_or_else(|_| Err(StoreError::Backend("a store write panicked".to_owned())))
}

/// One run of a batched kind: all together, or, if that fails, one savepoint each.
async fn run_batched<I: Batched>(conn: &Conn, run: &mut [&mut Pending<I>], savepoint: &mut Leads) -> StoreResult<()> {
    if run.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let lead = savepoint.lead();
    let together = run_once(conn, lead, run.iter().map(|pending| &pending.input).collect(), now).await;
    let error = match together {
        Ok(outcomes) if outcomes.len() == run.len() => {
            let ok = outcomes.iter().any(Result::is_ok);
            for (pending, outcome) in run.iter_mut().zip(outcomes) {
                pending.outcome = Some(outcome);
            }
            return savepoint.after(conn, ok).await;
        }
        Ok(_) => StoreError::Backend("a store run answered the wrong number of requests".to_owned()),
        Err(error) => error,
    };
    savepoint.after(conn, false).await?;
    if savepoint.is_off() || run.len() == 1 {
        for pending in run.iter_mut() {
            pending.outcome = Some(Err(clone_error(&error)));
        }
        return Ok(());
    }
    // Something in the run failed: find out which, one savepoint per request.
    for pending in run.iter_mut() {
        let result = run_once(conn, savepoint.lead(), vec![&pending.input], now)
            .await
            .and_then(|mut outcomes| {
                outcomes.pop().ok_or_else(|| StoreError::Backend("a store run answered nothing".to_owned()))
            })
            .and_then(|outcome| outcome);
        let ok = result.is_ok();
        pending.outcome = Some(result);
        savepoint.after(conn, ok).await?;
    }
    Ok(())
}

fn clone_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict(detail) => StoreError::Conflict(detail.clone()),
        StoreError::NotFound(detail) => StoreError::NotFound(detail.clone()),
        StoreError::Unavailable(detail) => StoreError::Unavailable(detail.clone()),
        StoreError::Backend(detail) => StoreError::Backend(detail.clone()),
    }
}
