//! The bidirectional WebSocket transport at `/connection/websocket`: a [`Transport`] for the
//! connection driver (`driver.rs`).
//!
//! With the framing in [`crate::websocket`] (read buffer per worker thread, write buffers only
//! while writing), an idle connection is the driver's future and its session, with no I/O
//! buffer. A batch is one frame: JSON messages joined by newlines, protobuf messages
//! length-prefixed back to back. The disconnect goes in the close frame.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use herald_protocol::Protocol;
use hyper_util::rt::TokioIo;

use crate::client::{Carrier, Refusal, Session};
use crate::disconnect::Disconnect;
use crate::driver::{GOODBYE_TIMEOUT, Inbound, Transport};
use crate::state::AppState;
use crate::websocket::{self, HEADER_ROOM, Limits, Opcode, Received, WebSocket, WsError};

type Socket = WebSocket<TokioIo<hyper::upgrade::Upgraded>>;

/// `/connection/websocket`: the bidirectional Centrifugo protocol.
pub async fn handler(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let wants_protobuf = request
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .any(|p| p.to_str().is_ok_and(|s| s.split(',').any(|p| p.trim() == Protocol::PROTOBUF_SUBPROTOCOL)));
    let protocol = if wants_protobuf { Protocol::Protobuf } else { Protocol::Json };
    upgrade(app, request, protocol, move |app, socket| async move {
        let session = Box::new(Session::new(app.clone(), protocol, Carrier::WebSocket));
        crate::driver::run(app, WsTransport::<false> { socket, protocol }, session).await
    })
}

/// `/connection/uni_websocket`: a bare connect request in (the `cf_connect` query parameter,
/// or else the first message), JSON pushes out, one per frame; later messages are ignored.
/// With `cf_connect` the connect happens before the upgrade, so a refusal is an HTTP error.
pub async fn uni_handler(
    State(app): State<Arc<AppState>>,
    Query(query): Query<crate::stream::ConnectQuery>,
    request: Request,
) -> Response {
    let new_session = |app: &Arc<AppState>| {
        let id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
        Box::new(Session::new(app.clone(), Protocol::Json, Carrier::Unidirectional { session: id }))
    };
    let connected = match query.cf_connect {
        Some(text) => {
            let request = match crate::stream::parse_connect_request(text.as_bytes()) {
                Ok(request) => request,
                Err(message) => return crate::respond::json_error(http::StatusCode::BAD_REQUEST, &message),
            };
            let mut session = new_session(&app);
            if let Err(refusal) = session.connect_unidirectional(request).await {
                session.close();
                return crate::stream::refusal_response(refusal);
            }
            Some(session)
        }
        None => None,
    };
    upgrade(app, request, Protocol::Json, move |app, mut socket| async move {
        let session = match connected {
            Some(session) => session,
            None => {
                let mut session = new_session(&app);
                if let Err(disconnect) = connect_from_first_message(&app, &mut socket, &mut session).await {
                    session.close();
                    crate::metrics::disconnect(disconnect.code);
                    let _ = close_quietly(&mut socket, disconnect.code, &disconnect.reason).await;
                    return;
                }
                session
            }
        };
        crate::driver::run(app, WsTransport::<true> { socket, protocol: Protocol::Json }, session).await
    })
}

/// Uni WebSocket without `cf_connect`: the first message is the connect request, within
/// `client.connect_timeout`.
async fn connect_from_first_message(
    app: &AppState,
    socket: &mut Socket,
    session: &mut Session,
) -> Result<(), Disconnect> {
    let first = tokio::time::timeout(app.config.client.connect_timeout, async {
        loop {
            match socket.recv().await {
                Ok(Received::Text | Received::Binary) => return Some(socket.message().to_vec()),
                Ok(Received::Ping) => {
                    let payload = socket.message().to_vec();
                    socket.send_control(Opcode::Pong, &payload).await.ok()?;
                }
                Ok(Received::Pong) => {}
                Ok(Received::Close(_) | Received::Eof) | Err(_) => return None,
            }
        }
    })
    .await
    .map_err(|_| Disconnect::STALE)?
    .ok_or(Disconnect::BAD_REQUEST)?;
    let request = crate::stream::parse_connect_request(&first).map_err(|_| Disconnect::BAD_REQUEST)?;
    session.connect_unidirectional(request).await.map_err(|refusal| match refusal {
        Refusal::Disconnect(disconnect) => disconnect,
        Refusal::Error(code) => match code.code {
            100 => Disconnect::SERVER_ERROR,
            109 => Disconnect::EXPIRED,
            101 => Disconnect::INVALID_TOKEN,
            _ => Disconnect::BAD_REQUEST,
        },
    })
}

/// Answer a WebSocket handshake, and run `connection` on the upgraded socket.
fn upgrade<F, Fut>(app: Arc<AppState>, mut request: Request, protocol: Protocol, connection: F) -> Response
where
    F: FnOnce(Arc<AppState>, Socket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
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
    if protocol == Protocol::Protobuf {
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
                connection(app, WebSocket::new(TokioIo::new(upgraded), limits)).await
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed."),
        }
    });
    let mut response = http::StatusCode::SWITCHING_PROTOCOLS.into_response();
    response.headers_mut().extend(headers);
    response
}

/// A WebSocket connection. Bidirectional: frames of commands in, frames of replies and pushes
/// out. Uni-directional (`UNI`): client messages are ignored, one bare push per frame out, and
/// no pongs are expected (the pings are keep-alives).
struct WsTransport<const UNI: bool> {
    socket: Socket,
    protocol: Protocol,
}

impl<const UNI: bool> Transport for WsTransport<UNI> {
    type Event = Result<Received, WsError>;
    const ONE_MESSAGE_PER_BATCH: bool = UNI;
    const HEADER_ROOM: usize = HEADER_ROOM;

    fn expects_pongs(&self) -> bool {
        !UNI
    }

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
        let message = if UNI { crate::stream::unwrap_push(message) } else { message };
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
