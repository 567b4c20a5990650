//! The bidirectional WebSocket transport at `/connection/websocket`: a [`Transport`] for the
//! connection driver (`driver.rs`).
//!
//! With the framing in [`crate::websocket`] (read buffer per worker thread, write buffers only
//! while writing), an idle connection is the driver's future and its session, with no I/O
//! buffer. A batch is one frame: JSON messages joined by newlines, protobuf messages
//! length-prefixed back to back. The disconnect goes in the close frame.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use herald_protocol::Protocol;
use hyper_util::rt::TokioIo;

use crate::client::Session;
use crate::disconnect::Disconnect;
use crate::driver::{GOODBYE_TIMEOUT, Inbound, Transport};
use crate::state::AppState;
use crate::websocket::{self, HEADER_ROOM, Limits, Opcode, Received, WebSocket, WsError};

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
            Ok(upgraded) => {
                // The HTTP connection's slot was released when it handed the socket over; hold
                // one here.
                let _slot = crate::state::ConnectionSlot::acquire(&app.open_connections, usize::MAX);
                let transport = WsTransport { socket: WebSocket::new(TokioIo::new(upgraded), limits), protocol };
                let session = Box::new(Session::new(app.clone(), protocol));
                crate::driver::run(app, transport, session).await
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed."),
        }
    });
    let mut response = http::StatusCode::SWITCHING_PROTOCOLS.into_response();
    response.headers_mut().extend(headers);
    response
}

/// The bidirectional WebSocket: frames of commands in, frames of replies and pushes out.
struct WsTransport {
    socket: Socket,
    protocol: Protocol,
}

impl Transport for WsTransport {
    type Event = Result<Received, WsError>;
    const HEADER_ROOM: usize = HEADER_ROOM;

    async fn recv(&mut self) -> Self::Event {
        self.socket.recv().await
    }

    async fn handle(&mut self, event: Self::Event) -> Inbound {
        let received = match event {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "WebSocket read failed.");
                if matches!(error, WsError::TooLong) {
                    crate::metrics::bad_input("frame_too_large");
                    return Inbound::End(Some(Disconnect::BAD_REQUEST));
                }
                if !matches!(error, WsError::Io(_)) {
                    crate::metrics::bad_input("websocket_protocol");
                    let _ = close_quietly(&mut self.socket, error.close_code(), "protocol error").await;
                }
                return Inbound::End(None);
            }
        };
        match (received, self.protocol) {
            (Received::Text, Protocol::Json) | (Received::Binary, _) => {
                Inbound::Commands(self.socket.message().to_vec())
            }
            (Received::Text, Protocol::Protobuf) => {
                crate::metrics::bad_input("text_frame_for_protobuf");
                Inbound::End(Some(Disconnect::BAD_REQUEST))
            }
            (Received::Ping, _) => {
                let payload = self.socket.message().to_vec();
                match self.socket.send_control(Opcode::Pong, &payload).await {
                    Ok(()) => Inbound::Nothing,
                    Err(_) => Inbound::End(None),
                }
            }
            (Received::Pong, _) => Inbound::Nothing,
            (Received::Close(code), _) => {
                // Answer the close handshake, echoing the peer's code.
                let _ = close_quietly(&mut self.socket, code.unwrap_or(1000), "").await;
                Inbound::End(None)
            }
            (Received::Eof, _) => Inbound::End(None),
        }
    }

    fn append(&mut self, batch: &mut Vec<u8>, message: &[u8]) {
        if batch.len() > HEADER_ROOM && self.protocol == Protocol::Json {
            batch.push(b'\n');
        }
        batch.extend_from_slice(message);
    }

    async fn send(&mut self, batch: &mut Vec<u8>) -> std::io::Result<()> {
        let opcode = data_opcode(self.protocol, &batch[HEADER_ROOM..]);
        self.socket.send(opcode, batch).await
    }

    /// The close frame carries the disconnect (code and reason), as Centrifugo does on a
    /// bidirectional WebSocket: no disconnect push before it. A push makes centrifuge-python
    /// see the connection closing before it handled the push, read no close code, and
    /// reconnect forever (an invalid token would never stop at 3500).
    async fn goodbye(&mut self, disconnect: &Disconnect) {
        let _ = close_quietly(&mut self.socket, disconnect.code, &disconnect.reason).await;
    }
}

/// Answer or start a close handshake without waiting long for a peer that stopped reading.
async fn close_quietly(socket: &mut Socket, code: u16, reason: &str) -> std::io::Result<()> {
    tokio::time::timeout(GOODBYE_TIMEOUT, socket.send_close(Some(code), reason)).await.unwrap_or(Ok(()))
}

/// Text frames for JSON (always UTF-8 from our encoder; binary if a payload somehow is not).
fn data_opcode(protocol: Protocol, payload: &[u8]) -> Opcode {
    match protocol {
        Protocol::Json if std::str::from_utf8(payload).is_ok() => Opcode::Text,
        _ => Opcode::Binary,
    }
}
