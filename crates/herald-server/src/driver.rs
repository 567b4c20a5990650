//! The connection driver: everything a client connection needs besides its transport.
//!
//! One task per connection, no separate reader and writer: [`run`] waits on the transport, the
//! connection's outbox and one timer at once, for every transport ([`Transport`]): the
//! WebSocket (`ws.rs`), HTTP streaming and SSE (`stream.rs`), and the uni-directional ones
//! (`uni.rs`). Timers, ping and pong, the connect deadline, token expiry, drain on shutdown,
//! write batching and the goodbye live here once.
//!
//! Writes batch: everything queued when the task wakes leaves as one batch (a WebSocket frame,
//! an HTTP chunk) and one flush. A write that does not finish within the ping interval means the
//! client stopped reading; the connection ends.
//!
//! Commands never hold up the connection: a frame of commands (or a control request from the
//! server API) runs as the connection's one piece of *work*, with the session moved into it.
//! Work that finishes at once (most commands) is done inline; work that waits on I/O (a store
//! write or read, a broker call) runs beside the transport, so pushes, pings and the write
//! timeout go on meanwhile. One frame at a time: the transport is not read while work is in
//! flight, which bounds the commands in flight per connection to
//! `client.max_commands_per_frame` and pushes back on the client. Deadlines that depend on the
//! client (connect, pong) and the session's expiry wait until the work is done.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use herald_protocol::{Protocol, Reply};

use crate::client::Session;
use crate::conn::ConnShared;
use crate::disconnect::Disconnect;
use crate::outbox::{Control, Item};
use crate::state::AppState;

/// What the client sent, as the driver acts on it.
pub(crate) enum Inbound {
    /// A frame of commands for the session.
    Commands(Vec<u8>),
    /// Something the transport dealt with itself (a WebSocket ping, an ignored message).
    Nothing,
    /// The client went away (`None`) or broke the transport's rules (the disconnect to send).
    End(Option<Disconnect>),
}

/// One way of carrying a connection: how commands come in and how batches of encoded replies
/// and pushes go out. The driver owns everything else.
pub(crate) trait Transport: Send + 'static {
    /// What [`Transport::recv`] yields; [`Transport::handle`] turns it into an [`Inbound`].
    type Event: Send;
    /// Whether each message leaves in a batch of its own (one WebSocket frame per push for
    /// clients without an SDK, which expect one JSON document per frame).
    const ONE_MESSAGE_PER_BATCH: bool = false;
    /// Bytes every batch starts with, for the transport's own header (the WebSocket frame
    /// header is written into them).
    const HEADER_ROOM: usize = 0;

    /// Whether the client answers pings. Uni-directional clients cannot: their pings are
    /// keep-alives only and no pong deadline runs.
    fn expects_pongs(&self) -> bool {
        true
    }

    /// Wait for the client. Cancel-safe: the driver drops it when anything else comes first.
    fn recv(&mut self) -> impl Future<Output = Self::Event> + Send;

    /// Act on what `recv` returned. Runs to completion (a reply on the transport is safe here).
    fn handle(&mut self, event: Self::Event) -> impl Future<Output = Inbound> + Send;

    /// Add one encoded reply or push (in the connection's protocol) to a batch.
    fn append(&mut self, batch: &mut Vec<u8>, message: &[u8]);

    /// Write a batch: [`Transport::HEADER_ROOM`] bytes, then what `append` put there.
    fn send(&mut self, batch: &mut Vec<u8>) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Tell the client why the connection ends (a close frame, a disconnect push). Best effort
    /// and bounded: a client that stopped reading does not keep the task.
    fn goodbye(&mut self, disconnect: &Disconnect) -> impl Future<Output = ()> + Send;
}

/// How long a goodbye may wait for a peer that stopped reading.
pub(crate) const GOODBYE_TIMEOUT: Duration = Duration::from_secs(3);

/// Deadlines the connection's single timer serves.
struct Timers {
    connect_deadline: Option<Instant>,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    expiry: Option<Instant>,
}

impl Timers {
    /// The next deadline; only the ping one while work is in flight (the others wait for it).
    fn next(&self, busy: bool) -> Instant {
        let all = [self.connect_deadline, self.next_ping, self.pong_deadline, self.expiry];
        let due = if busy { [None, self.next_ping, None, None] } else { all };
        due.into_iter().flatten().min().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }
}

/// The session, running a frame of commands or a control request; it comes back when done.
type Work = Pin<Box<dyn Future<Output = (Box<Session>, Result<(), Disconnect>)> + Send>>;

enum Job {
    Frame(Vec<u8>),
    Control(Control),
}

/// Start `job` on `session`. Done at once when nothing in it waits (`Ok`), else in flight.
fn start(mut session: Box<Session>, job: Job) -> Result<(Box<Session>, Result<(), Disconnect>), Work> {
    let mut work: Work = Box::pin(async move {
        let result = match job {
            Job::Frame(frame) => session.handle_frame(&frame).await,
            Job::Control(control) => session.handle_control(control).await,
        };
        (session, result)
    });
    match (&mut work).now_or_never() {
        Some(done) => Ok(done),
        None => Err(work),
    }
}

/// Poll the work in flight; when it is done, put the session back. Pending when there is none.
/// The session goes straight into its slot rather than out through `select!`, whose output
/// would otherwise keep room for a second session in every connection's task.
fn poll_work(
    cx: &mut std::task::Context<'_>,
    work: &mut Option<Work>,
    session: &mut Option<Box<Session>>,
) -> std::task::Poll<Result<(), Disconnect>> {
    let Some(in_flight) = work else { return std::task::Poll::Pending };
    let (back, result) = std::task::ready!(in_flight.as_mut().poll(cx));
    *work = None;
    *session = Some(back);
    std::task::Poll::Ready(result)
}

/// Control requests the writer set aside for the session, boxed and only there while some wait.
type Controls = Option<Box<VecDeque<Control>>>;

/// Drive one connection until it ends. The session may already be connected (the
/// uni-directional transports connect before they answer the HTTP request).
pub(crate) async fn run<T: Transport>(app: Arc<AppState>, mut transport: T, session: Box<Session>) {
    let app_for_metrics = app.clone();
    let metrics = app_for_metrics.hub.metrics();
    metrics.connections.increment(1.0);
    metrics.connections_opened.increment(1);
    let shared = session.shared.clone();
    let protocol = shared.protocol;
    // Boxed: it moves into each piece of work and back; inline, the task's future kept room
    // for it more than once (measured: 1,208 bytes inline, 1,040 boxed).
    let mut session = Some(session);
    // Work in flight, and server API control requests waiting for the session.
    let mut work: Option<Work> = None;
    let mut controls: Controls = None;
    let client_config = &app.config.client;
    let ping_interval = client_config.ping_interval;
    let pong_timeout = client_config.pong_timeout;
    let ping_bytes = ping_message(protocol);

    let mut timers = Timers {
        connect_deadline: Some(Instant::now() + client_config.connect_timeout),
        next_ping: None,
        pong_deadline: None,
        expiry: None,
    };
    note_connected(&mut timers, session.as_deref(), ping_interval);
    let sleep = tokio::time::sleep_until(timers.next(false).into());
    tokio::pin!(sleep);
    let max_batch = client_config.max_out_frame_bytes;
    let mut shutting_down = false;

    let disconnect: Option<Disconnect> = 'conn: loop {
        // The session is here (no work in flight): give it the next control request, and take
        // back whatever finishes at once.
        while work.is_none()
            && let Some(control) = controls.as_mut().and_then(|c| c.pop_front())
        {
            let idle = session.take().expect("the session is here when no work is in flight");
            match start(idle, Job::Control(control)) {
                Ok((back, result)) => {
                    session = Some(back);
                    if let Err(disconnect) = result {
                        break 'conn Some(disconnect);
                    }
                }
                Err(in_flight) => work = Some(in_flight),
            }
        }
        if controls.as_ref().is_some_and(|c| c.is_empty()) {
            controls = None;
        }
        if let Some(session) = &session {
            timers.expiry = session.next_expiry();
        }
        let next: tokio::time::Instant = timers.next(work.is_some()).into();
        if sleep.deadline() != next {
            sleep.as_mut().reset(next);
        }

        tokio::select! {
            biased;
            _ = app.shutdown.cancelled(), if !shutting_down => {
                // Send what is already queued, then say 3001 so the SDKs reconnect.
                shutting_down = true;
                shared.outbox.close(Disconnect::SHUTDOWN);
            }
            result = std::future::poll_fn(|cx| poll_work(cx, &mut work, &mut session)) => {
                if let Err(disconnect) = result {
                    break Some(disconnect);
                }
                note_connected(&mut timers, session.as_deref(), ping_interval);
            }
            _ = shared.outbox.ready() => {
                let writer = Writer { transport: &mut transport, max_batch, metrics };
                // Boxed, like every path an idle connection is not waiting in: the task's
                // future stays the size of what it waits on (transport, outbox, timer).
                if let Err(disconnect) = Box::pin(writer.write_within(ping_interval, &shared, &mut controls)).await {
                    break disconnect;
                }
                if controls.as_ref().is_some_and(|c| c.len() > app.config.client.queue_max_messages) {
                    // Control requests pile up behind work that does not finish: as slow.
                    break Some(Disconnect::SLOW);
                }
            }
            event = transport.recv(), if work.is_none() => {
                let data = match Box::pin(transport.handle(event)).await {
                    Inbound::Commands(data) => data,
                    Inbound::Nothing => continue,
                    Inbound::End(disconnect) => break disconnect,
                };
                metrics.bytes_received.increment(data.len() as u64);
                timers.pong_deadline = None;
                let idle = session.take().expect("the transport is read only when no work is in flight");
                match start(idle, Job::Frame(data)) {
                    Ok((back, result)) => {
                        session = Some(back);
                        if let Err(disconnect) = result {
                            break Some(disconnect);
                        }
                        note_connected(&mut timers, session.as_deref(), ping_interval);
                    }
                    Err(in_flight) => work = Some(in_flight),
                }
            }
            _ = &mut sleep => {
                let now = Instant::now();
                let busy = work.is_some();
                if !busy && timers.connect_deadline.is_some_and(|d| d <= now) {
                    break Some(Disconnect::STALE);
                }
                if !busy && timers.pong_deadline.is_some_and(|d| d <= now) {
                    break Some(Disconnect::NO_PONG);
                }
                if timers.next_ping.is_some_and(|d| d <= now) {
                    let _ = shared.outbox.push(ping_bytes.clone());
                    timers.next_ping = Some(now + ping_interval);
                    if transport.expects_pongs() {
                        timers.pong_deadline = Some(now + pong_timeout);
                    }
                }
                if let Some(session) = &mut session
                    && timers.expiry.is_some_and(|d| d <= now)
                    && let Err(disconnect) = session.check_expiry()
                {
                    break Some(disconnect);
                }
            }
        }
    };

    // Work in flight finishes first (a store write or a broker call is bounded by its own
    // timeouts): the session has to leave the hub.
    if session.is_none()
        && let Some(in_flight) = work.take()
    {
        session = Some(in_flight.await.0);
    }
    // Leave the hub first: nothing more is queued to a connection that is going away.
    if let Some(session) = &mut session {
        session.close();
    }
    shared.outbox.close(disconnect.clone().unwrap_or(Disconnect::SHUTDOWN));
    if let Some(disconnect) = &disconnect {
        crate::metrics::disconnect(disconnect.code);
        Box::pin(transport.goodbye(disconnect)).await;
    }
    metrics.connections.decrement(1.0);
}

/// After a job: a session that just connected stops the connect deadline (which runs exactly
/// until then) and starts pings.
fn note_connected(timers: &mut Timers, session: Option<&Session>, ping_interval: Duration) {
    if timers.connect_deadline.is_some() && session.is_some_and(Session::is_connected) {
        timers.connect_deadline = None;
        timers.next_ping = Some(Instant::now() + ping_interval);
    }
}

/// The Centrifugo ping (an empty reply), encoded once per protocol.
fn ping_message(protocol: Protocol) -> bytes::Bytes {
    static PINGS: std::sync::OnceLock<[bytes::Bytes; 2]> = std::sync::OnceLock::new();
    let pings = PINGS.get_or_init(|| {
        [Protocol::Json, Protocol::Protobuf]
            .map(|p| bytes::Bytes::from(herald_protocol::encode_reply_bytes(p, &Reply::default()).to_vec()))
    });
    pings[usize::from(protocol == Protocol::Protobuf)].clone()
}

/// Resolves when the outbox closes because the client is slow; never for other closes, which
/// let queued data go out first.
async fn slow_close(shared: &ConnShared) -> Disconnect {
    let disconnect = shared.outbox.closed().await;
    if disconnect == Disconnect::SLOW {
        return disconnect;
    }
    std::future::pending().await
}

/// Rounds of draining one wake-up may take before yielding to reads and timers.
const MAX_WRITE_ROUNDS: usize = 16;

/// Writes what a connection's outbox holds: batches messages, applies control requests. Each
/// batch is built in a fresh buffer that is freed once written, so an idle connection keeps
/// none.
struct Writer<'a, T> {
    transport: &'a mut T,
    max_batch: usize,
    metrics: &'a crate::metrics::Metrics,
}

impl<T: Transport> Writer<'_, T> {
    /// [`Self::write_pending`], unless the client stops reading: give up when its queue
    /// overflows meanwhile (3008) or when the writes take longer than `limit`.
    async fn write_within(
        mut self,
        limit: Duration,
        shared: &ConnShared,
        controls: &mut Controls,
    ) -> Result<(), Option<Disconnect>> {
        tokio::select! {
            result = tokio::time::timeout(limit, self.write_pending(shared, controls)) => {
                result.unwrap_or(Err(Some(Disconnect::WRITE_ERROR)))
            }
            disconnect = slow_close(shared) => Err(Some(disconnect)),
        }
    }

    /// Drain and write until the outbox is empty (or a few rounds passed); control requests
    /// go to `controls`, for the session to run in order once it is free. `Err` ends the
    /// connection: `Some` with a disconnect to send, `None` when the transport is already gone.
    async fn write_pending(&mut self, shared: &ConnShared, controls: &mut Controls) -> Result<(), Option<Disconnect>> {
        let mut items = VecDeque::new();
        for _ in 0..MAX_WRITE_ROUNDS {
            let closing = shared.outbox.take(&mut items);
            if closing.as_ref() == Some(&Disconnect::SLOW) {
                // A slow client's backlog is dropped, not sent.
                return Err(closing);
            }
            let mut batch: Vec<u8> = Vec::new();
            // Drained in place, so the queue's capacity goes back to the outbox next round.
            while let Some(item) = items.pop_front() {
                match item {
                    Item::Message(bytes) => {
                        if batch.len() > T::HEADER_ROOM && batch.len() + bytes.len() > self.max_batch + T::HEADER_ROOM {
                            self.write_batch(&mut batch).await.map_err(|_| None)?;
                        }
                        if batch.is_empty() {
                            batch.reserve(T::HEADER_ROOM + bytes.len() + 16);
                            batch.resize(T::HEADER_ROOM, 0);
                        }
                        self.transport.append(&mut batch, &bytes);
                        if T::ONE_MESSAGE_PER_BATCH {
                            self.write_batch(&mut batch).await.map_err(|_| None)?;
                        }
                    }
                    Item::Control(control) => controls.get_or_insert_with(Box::default).push_back(*control),
                }
            }
            if !batch.is_empty() {
                self.write_batch(&mut batch).await.map_err(|_| None)?;
            }
            if let Some(disconnect) = closing {
                return Err(Some(disconnect));
            }
            items.clear();
            if shared.outbox.release_if_empty() {
                return Ok(());
            }
        }
        // Still more: come back after reads and timers had their turn.
        shared.outbox.wake();
        Ok(())
    }

    /// Write the batch built so far and clear it (header room included: the next message
    /// starts a new buffer).
    async fn write_batch(&mut self, batch: &mut Vec<u8>) -> std::io::Result<()> {
        self.metrics.bytes_sent.increment((batch.len() - T::HEADER_ROOM) as u64);
        self.metrics.frames_sent.increment(1);
        self.transport.send(batch).await?;
        batch.clear();
        Ok(())
    }
}
