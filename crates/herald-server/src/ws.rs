//! The bidirectional WebSocket transport at `/connection/websocket`.
//!
//! One task per connection, no separate reader and writer: the task waits on the socket, the
//! connection's outbox and one timer at once. With the framing in [`crate::websocket`] (read
//! buffer per worker thread, write buffers only while writing), an idle connection is that
//! future and its session, with no I/O buffer.
//!
//! Writes batch: everything queued when the task wakes leaves as one frame (JSON messages joined
//! by newlines, protobuf messages length-prefixed back to back) and one flush. A write that does
//! not finish within the ping interval means the client stopped reading; the connection ends.
//!
//! Commands never hold up the connection: a frame of commands (or a control request from the
//! server API) runs as the connection's one piece of *work*, with the session moved into it.
//! Work that finishes at once (most commands) is done inline; work that waits on I/O (a store
//! write or read, a broker call) runs beside the socket, so pushes, pings and the write timeout
//! go on meanwhile. One frame at a time: the socket is not read while work is in flight, which
//! bounds the commands in flight per connection to `client.max_commands_per_frame` and pushes
//! back on the client through TCP. Deadlines that depend on the client (connect, pong) and the
//! session's expiry wait until the work is done.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use herald_protocol::{Protocol, Reply};
use hyper_util::rt::TokioIo;

use crate::client::Session;
use crate::conn::ConnShared;
use crate::disconnect::Disconnect;
use crate::outbox::{Control, Item};
use crate::state::AppState;
use crate::websocket::{self, HEADER_ROOM, Limits, Opcode, Received, WebSocket};

type Socket = WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

pub async fn handler(State(app): State<Arc<AppState>>, mut request: Request) -> Response {
    if app.is_draining() {
        return crate::respond::json_error(http::StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let mut headers = match websocket::upgrade_response(request.method(), request.headers()) {
        Ok(headers) => headers,
        Err(error) => {
            crate::metrics::bad_input("websocket_handshake");
            return crate::respond::json_error(error.status(), &error.to_string());
        }
    };
    let wants_protobuf = request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .any(|p| p.to_str().is_ok_and(|s| s.split(',').any(|p| p.trim() == Protocol::PROTOBUF_SUBPROTOCOL)));
    let protocol = if wants_protobuf { Protocol::Protobuf } else { Protocol::Json };
    if wants_protobuf {
        headers.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static(Protocol::PROTOBUF_SUBPROTOCOL),
        );
    }
    let client = &app.config.client;
    let limits = Limits {
        max_frame: client.max_frame_bytes,
        max_message: client.max_frame_bytes,
        read_chunk: client.read_buffer_bytes,
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let tracker = app.tracker.clone();
    tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(app, WebSocket::new(TokioIo::new(upgraded), limits), protocol).await,
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed."),
        }
    });
    let mut response = http::StatusCode::SWITCHING_PROTOCOLS.into_response();
    response.headers_mut().extend(headers);
    response
}

/// How long a closing connection waits for its close frame to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

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

async fn run(app: Arc<AppState>, mut socket: Socket, protocol: Protocol) {
    // The HTTP connection's slot was released when it handed the socket over; hold one here.
    let _slot = crate::state::ConnectionSlot::acquire(&app.open_connections, usize::MAX);
    let app_for_metrics = app.clone();
    let metrics = app_for_metrics.hub.metrics();
    metrics.connections.increment(1.0);
    metrics.connections_opened.increment(1);
    // Boxed: it moves into each piece of work and back; inline, the task's future kept room
    // for it more than once (measured: 1,208 bytes inline, 1,040 boxed).
    let session = Box::new(Session::new(app.clone(), protocol));
    let shared = session.shared.clone();
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
    let sleep = tokio::time::sleep_until(timers.next(false).into());
    tokio::pin!(sleep);
    let max_frame = client_config.max_out_frame_bytes;
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
                // Send what is already queued, then close with 3001 so the SDKs reconnect.
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
                let writer = Writer { socket: &mut socket, protocol, max_frame, metrics };
                // Boxed, like every path an idle connection is not waiting in: the task's
                // future stays the size of what it waits on (socket, outbox, timer).
                if let Err(disconnect) = Box::pin(writer.write_within(ping_interval, &shared, &mut controls)).await {
                    break disconnect;
                }
                if controls.as_ref().is_some_and(|c| c.len() > app.config.client.queue_max_messages) {
                    // Control requests pile up behind work that does not finish: as slow.
                    break Some(Disconnect::SLOW);
                }
            }
            received = socket.recv(), if work.is_none() => {
                let received = match received {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::debug!(%error, "WebSocket read failed.");
                        if matches!(error, websocket::WsError::TooLong) {
                            crate::metrics::bad_input("frame_too_large");
                            break Some(Disconnect::BAD_REQUEST);
                        }
                        if !matches!(error, websocket::WsError::Io(_)) {
                            crate::metrics::bad_input("websocket_protocol");
                            let _ = Box::pin(close_quietly(&mut socket, error.close_code(), "protocol error")).await;
                        }
                        break None;
                    }
                };
                match (received, protocol) {
                    (Received::Text, Protocol::Json) | (Received::Binary, _) => {}
                    (Received::Text, Protocol::Protobuf) => {
                        crate::metrics::bad_input("text_frame_for_protobuf");
                        break Some(Disconnect::BAD_REQUEST);
                    }
                    (Received::Ping, _) => {
                        if Box::pin(pong(&mut socket)).await.is_err() {
                            break None;
                        }
                        continue;
                    }
                    (Received::Pong, _) => continue,
                    (Received::Close(code), _) => {
                        // Answer the close handshake, echoing the peer's code.
                        let _ = Box::pin(close_quietly(&mut socket, code.unwrap_or(1000), "")).await;
                        break None;
                    }
                    (Received::Eof, _) => break None,
                }
                let data = socket.message();
                metrics.bytes_received.increment(data.len() as u64);
                timers.pong_deadline = None;
                let idle = session.take().expect("the socket is read only when no work is in flight");
                match start(idle, Job::Frame(data.to_vec())) {
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
                    timers.pong_deadline = Some(now + pong_timeout);
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
        Box::pin(say_goodbye(&mut socket, disconnect)).await;
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

/// The close frame carries the disconnect (code and reason), as Centrifugo does on a
/// bidirectional WebSocket: no disconnect push before it. A push makes centrifuge-python see the
/// connection closing before it handled the push, read no close code, and reconnect forever
/// (an invalid token would never stop at 3500). Transports without a close frame use the push.
/// Best effort: a client that stopped reading gets a bounded wait, not a stuck task.
async fn say_goodbye(socket: &mut Socket, disconnect: &Disconnect) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send_close(Some(disconnect.code), &disconnect.reason)).await;
}

/// Answer a ping with its payload.
async fn pong(socket: &mut Socket) -> std::io::Result<()> {
    let payload = socket.message().to_vec();
    socket.send_control(Opcode::Pong, &payload).await
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

/// Answer or start a close handshake without waiting long for a peer that stopped reading.
async fn close_quietly(socket: &mut Socket, code: u16, reason: &str) -> std::io::Result<()> {
    tokio::time::timeout(CLOSE_TIMEOUT, socket.send_close(Some(code), reason)).await.unwrap_or(Ok(()))
}

/// Text frames for JSON (always UTF-8 from our encoder; binary if a payload somehow is not).
fn data_opcode(protocol: Protocol, payload: &[u8]) -> Opcode {
    match protocol {
        Protocol::Json if std::str::from_utf8(payload).is_ok() => Opcode::Text,
        _ => Opcode::Binary,
    }
}

/// Writes what a connection's outbox holds: batches messages into frames, applies control
/// requests. Each frame is built in a fresh buffer that is freed once written, so an idle
/// connection keeps none.
struct Writer<'a> {
    socket: &'a mut Socket,
    protocol: Protocol,
    max_frame: usize,
    metrics: &'a crate::metrics::Metrics,
}

impl Writer<'_> {
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
    /// connection: `Some` with a close code to send, `None` when the socket is already gone.
    async fn write_pending(&mut self, shared: &ConnShared, controls: &mut Controls) -> Result<(), Option<Disconnect>> {
        let mut items = VecDeque::new();
        for _ in 0..MAX_WRITE_ROUNDS {
            let closing = shared.outbox.take(&mut items);
            if closing.as_ref() == Some(&Disconnect::SLOW) {
                // A slow client's backlog is dropped, not sent.
                return Err(closing);
            }
            let mut frame: Vec<u8> = Vec::new();
            // Drained in place, so the queue's capacity goes back to the outbox next round.
            while let Some(item) = items.pop_front() {
                match item {
                    Item::Message(bytes) => {
                        if frame.len() > HEADER_ROOM && frame.len() + bytes.len() > self.max_frame + HEADER_ROOM {
                            self.write_frame(&mut frame).await.map_err(|_| None)?;
                        }
                        if frame.is_empty() {
                            frame.reserve(HEADER_ROOM + bytes.len());
                            frame.resize(HEADER_ROOM, 0);
                        } else if self.protocol == Protocol::Json {
                            frame.push(b'\n');
                        }
                        frame.extend_from_slice(&bytes);
                    }
                    Item::Control(control) => controls.get_or_insert_with(Box::default).push_back(*control),
                }
            }
            if !frame.is_empty() {
                self.write_frame(&mut frame).await.map_err(|_| None)?;
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

    /// Write the frame built so far and clear it (header room included: the next message
    /// starts a new buffer).
    async fn write_frame(&mut self, frame: &mut Vec<u8>) -> std::io::Result<()> {
        let payload = &frame[HEADER_ROOM..];
        self.metrics.bytes_sent.increment(payload.len() as u64);
        self.metrics.frames_sent.increment(1);
        let opcode = data_opcode(self.protocol, payload);
        self.socket.send(opcode, frame).await?;
        frame.clear();
        Ok(())
    }
}
