//! The bidirectional WebSocket transport at `/connection/websocket`.
//!
//! One task per connection, no separate reader and writer: the task waits on the socket, the
//! connection's outbox and one timer at once. That keeps an idle connection to one small future
//! plus the WebSocket's own buffers (sized from config; tungstenite's defaults would cost
//! 128 KiB per connection).
//!
//! Writes batch: everything queued when the task wakes leaves as one frame (JSON messages joined
//! by newlines, protobuf messages length-prefixed back to back) and one flush. A write that does
//! not finish within the ping interval means the client stopped reading; the connection ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use herald_protocol::{Protocol, Reply};

use crate::client::Session;
use crate::disconnect::Disconnect;
use crate::outbox::Item;

use crate::state::AppState;

pub async fn handler(State(app): State<Arc<AppState>>, upgrade: WebSocketUpgrade) -> Response {
    if app.is_draining() {
        return crate::http::json_error(http::StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let wants_protobuf = upgrade
        .requested_protocols()
        .any(|p| p.to_str().is_ok_and(|s| s.split(',').any(|p| p.trim() == Protocol::PROTOBUF_SUBPROTOCOL)));
    let protocol = if wants_protobuf { Protocol::Protobuf } else { Protocol::Json };
    let client = &app.config.client;
    let mut upgrade = upgrade
        .read_buffer_size(client.read_buffer_bytes)
        .write_buffer_size(client.write_buffer_bytes)
        .max_write_buffer_size(client.write_buffer_bytes + client.max_out_frame_bytes + 64 * 1024)
        .max_message_size(client.max_frame_bytes)
        .max_frame_size(client.max_frame_bytes);
    if wants_protobuf {
        upgrade = upgrade.protocols([Protocol::PROTOBUF_SUBPROTOCOL]);
    }
    let tracker = app.tracker.clone();
    upgrade
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed."))
        .on_upgrade(move |socket| tracker.track_future(run(app, socket, protocol)))
        .into_response()
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
    fn next(&self) -> Instant {
        [self.connect_deadline, self.next_ping, self.pong_deadline, self.expiry]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }
}

async fn run(app: Arc<AppState>, mut socket: WebSocket, protocol: Protocol) {
    // The HTTP connection's slot was released when it handed the socket over; hold one here.
    let _slot = crate::http::ConnectionSlot::acquire(&app.open_connections, usize::MAX);
    let app_for_metrics = app.clone();
    let metrics = app_for_metrics.hub.metrics();
    metrics.connections.increment(1.0);
    metrics.connections_opened.increment(1);
    let mut session = Session::new(app.clone(), protocol);
    let shared = session.shared.clone();
    let client_config = &app.config.client;
    let ping_interval = client_config.ping_interval;
    let pong_timeout = client_config.pong_timeout;
    let ping_bytes = herald_protocol::encode_reply_bytes(protocol, &Reply::default());

    let mut timers = Timers {
        connect_deadline: Some(Instant::now() + client_config.connect_timeout),
        next_ping: None,
        pong_deadline: None,
        expiry: None,
    };
    let sleep = tokio::time::sleep_until(timers.next().into());
    tokio::pin!(sleep);
    let mut items: Vec<Item> = Vec::new();
    let mut frame: Vec<u8> = Vec::new();
    let max_frame = client_config.max_out_frame_bytes;
    let mut shutting_down = false;

    let disconnect: Option<Disconnect> = loop {
        tokio::select! {
            biased;
            _ = app.shutdown.cancelled(), if !shutting_down => {
                // Send what is already queued, then close with 3001 so the SDKs reconnect.
                shutting_down = true;
                shared.outbox.close(Disconnect::SHUTDOWN);
            }
            _ = shared.outbox.ready() => {
                let mut writer = Writer { socket: &mut socket, protocol, frame: &mut frame, items: &mut items, max_frame, metrics };
                // A client that stops reading blocks the write; give up when its queue overflows
                // meanwhile (3008) or when the write takes longer than a ping interval.
                let result = tokio::select! {
                    result = tokio::time::timeout(ping_interval, Box::pin(writer.write_pending(&mut session))) => {
                        result.unwrap_or(Err(Some(Disconnect::WRITE_ERROR)))
                    }
                    disconnect = slow_close(&shared) => Err(Some(disconnect)),
                };
                if let Err(disconnect) = result {
                    break disconnect;
                }
                timers.expiry = session.next_expiry();
                sleep.as_mut().reset(timers.next().into());
            }
            message = socket.recv() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        tracing::debug!(%error, "WebSocket read failed.");
                        let text = error.to_string();
                        if text.contains("too long") || text.contains("Space limit") || text.contains("capacity") {
                            crate::metrics::bad_input("frame_too_large");
                            break Some(Disconnect::BAD_REQUEST);
                        }
                        break None;
                    }
                    None => break None,
                };
                let data: &[u8] = match (&message, protocol) {
                    (Message::Text(text), Protocol::Json) => text.as_bytes(),
                    (Message::Binary(bytes), Protocol::Protobuf) => bytes,
                    // Centrifugo accepts binary JSON frames too.
                    (Message::Binary(bytes), Protocol::Json) => bytes,
                    (Message::Text(_), Protocol::Protobuf) => {
                        crate::metrics::bad_input("text_frame_for_protobuf");
                        break Some(Disconnect::BAD_REQUEST);
                    }
                    (Message::Close(_), _) => break None,
                    (Message::Ping(_) | Message::Pong(_), _) => {
                        // tungstenite queued the pong; send it now.
                        if socket.flush().await.is_err() {
                            break None;
                        }
                        continue;
                    }
                };
                metrics.bytes_received.increment(data.len() as u64);
                timers.pong_deadline = None;
                let was_connected = session.is_connected();
                // Boxed: the command future is deep (store reads for durable channels) and would
                // otherwise sit inline in every idle connection's task.
                if let Err(disconnect) = Box::pin(session.handle_frame(data)).await {
                    break Some(disconnect);
                }
                if !was_connected && session.is_connected() {
                    timers.connect_deadline = None;
                    timers.next_ping = Some(Instant::now() + ping_interval);
                }
                timers.expiry = session.next_expiry();
                sleep.as_mut().reset(timers.next().into());
            }
            _ = &mut sleep => {
                let now = Instant::now();
                if timers.connect_deadline.is_some_and(|d| d <= now) {
                    break Some(Disconnect::STALE);
                }
                if timers.pong_deadline.is_some_and(|d| d <= now) {
                    break Some(Disconnect::NO_PONG);
                }
                if timers.next_ping.is_some_and(|d| d <= now) {
                    let _ = shared.outbox.push(ping_bytes.clone());
                    timers.next_ping = Some(now + ping_interval);
                    timers.pong_deadline = Some(now + pong_timeout);
                }
                if timers.expiry.is_some_and(|d| d <= now) {
                    if let Err(disconnect) = session.check_expiry() {
                        break Some(disconnect);
                    }
                    timers.expiry = session.next_expiry();
                }
                sleep.as_mut().reset(timers.next().into());
            }
        }
    };

    // Leave the hub first: nothing more is queued to a connection that is going away.
    session.close();
    shared.outbox.close(disconnect.clone().unwrap_or(Disconnect::SHUTDOWN));
    if let Some(disconnect) = &disconnect {
        crate::metrics::disconnect(disconnect.code);
        let close = CloseFrame { code: disconnect.code, reason: disconnect.reason.as_ref().into() };
        // A disconnect push first (the SDKs act on it as on the close frame; it also reaches
        // clients behind proxies that rewrite close codes), then the close frame. Best effort:
        // a client that stopped reading gets a bounded wait, not a stuck task.
        let push = herald_protocol::Push {
            disconnect: Some(herald_protocol::Disconnect {
                code: u32::from(disconnect.code),
                reason: disconnect.reason.to_string(),
                reconnect: disconnect.reconnects(),
            }),
            ..Default::default()
        };
        let bytes = herald_protocol::encode_reply_bytes(protocol, &Reply { push: Some(push), ..Default::default() });
        let mut frame = Vec::with_capacity(bytes.len());
        herald_protocol::append_to_frame(protocol, &mut frame, &bytes);
        let message = match protocol {
            Protocol::Json => Message::Text(String::from_utf8_lossy(&frame).into_owned().into()),
            Protocol::Protobuf => Message::Binary(frame.into()),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            socket.feed(message).await?;
            socket.send(Message::Close(Some(close))).await
        })
        .await;
    }
    metrics.connections.decrement(1.0);
}

/// Resolves when the outbox closes because the client is slow; never for other closes, which
/// let queued data go out first.
async fn slow_close(shared: &crate::client::ConnShared) -> Disconnect {
    let disconnect = shared.outbox.closed().await;
    if disconnect == Disconnect::SLOW {
        return disconnect;
    }
    std::future::pending().await
}

/// Rounds of draining one wake-up may take before yielding to reads and timers.
const MAX_WRITE_ROUNDS: usize = 16;

/// Writes what a connection's outbox holds: batches messages into frames, applies control
/// requests, flushes once per round.
struct Writer<'a> {
    socket: &'a mut WebSocket,
    protocol: Protocol,
    frame: &'a mut Vec<u8>,
    items: &'a mut Vec<Item>,
    max_frame: usize,
    metrics: &'a crate::metrics::Metrics,
}

impl Writer<'_> {
    /// Drain and write until the outbox is empty (or a few rounds passed). `Err` ends the
    /// connection: `Some` with a close code to send, `None` when the socket is already gone.
    async fn write_pending(&mut self, session: &mut Session) -> Result<(), Option<Disconnect>> {
        let shared = session.shared.clone();
        for _ in 0..MAX_WRITE_ROUNDS {
            let closing = shared.outbox.drain(self.items);
            if closing.as_ref() == Some(&Disconnect::SLOW) {
                // A slow client's backlog is dropped, not sent.
                self.items.clear();
                return Err(closing);
            }
            let mut n_messages = 0usize;
            let mut ended: Option<Disconnect> = None;
            let items = std::mem::take(self.items);
            let mut items_iter = items.into_iter();
            for item in items_iter.by_ref() {
                match item {
                    Item::Message(bytes) => {
                        if !self.frame.is_empty() && self.frame.len() + bytes.len() > self.max_frame {
                            self.feed().await.map_err(|_| None)?;
                        }
                        herald_protocol::append_to_frame(self.protocol, self.frame, &bytes);
                        n_messages += 1;
                    }
                    Item::Control(control) => {
                        if let Err(disconnect) = Box::pin(session.handle_control(*control)).await {
                            ended = Some(disconnect);
                            break;
                        }
                    }
                }
            }
            // Give the (now empty) buffer back for reuse.
            let mut reuse: Vec<Item> = items_iter.collect();
            reuse.clear();
            *self.items = reuse;
            if !self.frame.is_empty() {
                self.feed().await.map_err(|_| None)?;
            }
            if n_messages > 0 {
                self.flush().await?;
            }
            if let Some(disconnect) = ended.or(closing) {
                return Err(Some(disconnect));
            }
            if !shared.outbox.has_pending() {
                return Ok(());
            }
        }
        // Still more: come back after reads and timers had their turn.
        shared.outbox.wake();
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Option<Disconnect>> {
        self.socket.flush().await.map_err(|_| None)
    }

    /// Queue the frame built so far to the socket (without flushing) and clear it.
    async fn feed(&mut self) -> Result<(), axum::Error> {
        let payload = std::mem::take(self.frame);
        self.metrics.bytes_sent.increment(payload.len() as u64);
        self.metrics.frames_sent.increment(1);
        let message = match self.protocol {
            Protocol::Json => match String::from_utf8(payload) {
                Ok(text) => Message::Text(text.into()),
                Err(error) => Message::Binary(error.into_bytes().into()),
            },
            Protocol::Protobuf => Message::Binary(payload.into()),
        };
        self.socket.feed(message).await
    }
}
