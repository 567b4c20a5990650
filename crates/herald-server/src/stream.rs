//! Realtime over plain HTTP responses: HTTP streaming and Server-Sent Events.
//!
//! Bidirectional emulation, as the Centrifugo SDKs use it when a WebSocket cannot be had:
//! - `POST /connection/http_stream`: the first commands in the body; replies and pushes out as
//!   JSON lines, or protobuf length-prefixed when the request is `application/octet-stream`.
//! - `GET /connection/sse?cf_connect=<commands>` (or `POST` with them in the body): JSON
//!   replies and pushes as `data:` events.
//!
//! Later commands arrive through `POST /emulation` (`emulation.rs`).
//!
//! Uni-directional, for clients without an SDK (`curl`, a browser's `EventSource`): a bare
//! connect request in, pushes out, JSON only.
//! - `GET /connection/uni_sse?cf_connect=<connect request>` (or `POST` with it in the body),
//! - `POST /connection/uni_http_stream` with the connect request as the body.
//!
//! They connect before answering, so a refused connect is an HTTP error with a JSON body
//! (401 for a token problem), and a browser's `EventSource` stops instead of retrying forever.
//! Server-side subscriptions come from the token's `channels` (and the personal channel);
//! recovery from the connect request's `subs` positions, and on uni SSE from `Last-Event-ID`:
//! every event that moves a stream position carries an `id:` with the positions of all the
//! connection's positioned channels, so an `EventSource` that reconnects by itself resumes
//! exactly where it was.
//!
//! Each is a [`Transport`] for the connection driver: the same timers, bounds (3008 on
//! overflow), write timeout and drain as the WebSocket. A batch is one body chunk, handed to
//! hyper through a one-slot channel, so a client that stops reading stops the writes and the
//! write timeout ends the connection. The response body's end (the client went away) ends it
//! too.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use herald_protocol::{ConnectRequest, Protocol, Push, Reply};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::client::{Carrier, Refusal, Session};
use crate::disconnect::Disconnect;
use crate::driver::{GOODBYE_TIMEOUT, Inbound, Transport};
use crate::respond::{json_error, read_body};
use crate::sessions::{Registration, Sessions};
use crate::state::AppState;

/// How messages are laid out in the response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// One JSON message per line.
    Lines,
    /// Protobuf messages, each with its varint length prefix.
    Protobuf,
    /// One `data:` event per JSON message.
    Sse,
}

/// An HTTP response carrying a connection.
struct StreamTransport {
    body: mpsc::Sender<Bytes>,
    /// Commands posted to `/emulation`; `None` on uni-directional streams.
    commands: Option<mpsc::Receiver<Vec<u8>>>,
    /// The commands that came with the request, handed to the session first.
    initial: Option<Vec<u8>>,
    framing: Framing,
    protocol: Protocol,
    /// Uni-directional: pushes go out bare, not wrapped in a reply.
    unidirectional: bool,
    /// Uni SSE: the positions of the connection's positioned channels, for `id:`.
    positions: Option<Box<Positions>>,
    _registration: Option<Registration>,
}

impl Transport for StreamTransport {
    type Event = Option<Vec<u8>>;

    fn expects_pongs(&self) -> bool {
        !self.unidirectional
    }

    async fn recv(&mut self) -> Self::Event {
        if let Some(first) = self.initial.take() {
            return Some(first);
        }
        match &mut self.commands {
            Some(commands) => tokio::select! {
                frame = commands.recv() => frame,
                _ = self.body.closed() => None,
            },
            None => {
                self.body.closed().await;
                None
            }
        }
    }

    async fn handle(&mut self, event: Self::Event) -> Inbound {
        match event {
            Some(frame) => Inbound::Commands(frame),
            None => Inbound::End(None),
        }
    }

    fn append(&mut self, batch: &mut Vec<u8>, message: &[u8]) {
        let message = if self.unidirectional { unwrap_push(message) } else { message };
        match self.framing {
            Framing::Lines => {
                batch.extend_from_slice(message);
                batch.push(b'\n');
            }
            Framing::Protobuf => batch.extend_from_slice(message),
            Framing::Sse => {
                if let Some(positions) = &mut self.positions
                    && positions.observe(message)
                {
                    batch.extend_from_slice(b"id: ");
                    positions.write_id(batch);
                    batch.push(b'\n');
                }
                batch.extend_from_slice(b"data: ");
                batch.extend_from_slice(message);
                batch.extend_from_slice(b"\n\n");
            }
        }
    }

    async fn send(&mut self, batch: &mut Vec<u8>) -> std::io::Result<()> {
        let chunk = Bytes::from(std::mem::take(batch));
        self.body.send(chunk).await.map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }

    /// A disconnect push, then the end of the body.
    async fn goodbye(&mut self, disconnect: &Disconnect) {
        let push = Push {
            disconnect: Some(herald_protocol::Disconnect {
                code: u32::from(disconnect.code),
                reason: disconnect.reason.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let message =
            herald_protocol::encode_reply_bytes(self.protocol, &Reply { push: Some(push), ..Default::default() });
        let mut batch = Vec::new();
        self.append(&mut batch, &message);
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, self.send(&mut batch)).await;
    }
}

/// A push as the uni-directional transports send it: the `Push` itself, not the reply around
/// it (`{"push":X}` becomes `X`). The connect reply has no id here, so it already reads as the
/// connect push, and the ping `{}` stays `{}`.
pub(crate) fn unwrap_push(message: &[u8]) -> &[u8] {
    message.strip_prefix(b"{\"push\":").and_then(|rest| rest.strip_suffix(b"}")).unwrap_or(message)
}

/// Stream positions of a uni SSE connection's channels, carried in each event's `id:` so that
/// `Last-Event-ID` resumes every channel at once. The id is compact JSON,
/// `{"channel":[offset,"epoch"],...}`, which never holds a newline.
#[derive(Default)]
struct Positions(BTreeMap<String, (u64, String)>);

/// The parts of a uni push that move positions.
#[derive(Deserialize)]
struct PushView {
    #[serde(default)]
    channel: String,
    #[serde(rename = "pub")]
    publication: Option<OffsetView>,
    connect: Option<ConnectView>,
    subscribe: Option<PositionView>,
    unsubscribe: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct OffsetView {
    #[serde(default)]
    offset: u64,
}

#[derive(Deserialize)]
struct PositionView {
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    offset: u64,
}

#[derive(Deserialize)]
struct ConnectView {
    #[serde(default)]
    subs: BTreeMap<String, PositionView>,
}

impl Positions {
    /// Take in one outgoing push; true when it moved a position (the event gets an id).
    fn observe(&mut self, message: &[u8]) -> bool {
        let Ok(view) = serde_json::from_slice::<PushView>(message) else { return false };
        if let Some(connect) = view.connect {
            for (channel, position) in connect.subs {
                if !position.epoch.is_empty() {
                    self.0.insert(channel, (position.offset, position.epoch));
                }
            }
            return true;
        }
        if let Some(publication) = view.publication {
            if let Some(entry) = self.0.get_mut(&view.channel)
                && publication.offset > entry.0
            {
                entry.0 = publication.offset;
                return true;
            }
            return false;
        }
        if let Some(position) = view.subscribe
            && !position.epoch.is_empty()
        {
            self.0.insert(view.channel, (position.offset, position.epoch));
            return true;
        }
        if view.unsubscribe.is_some() {
            return self.0.remove(&view.channel).is_some();
        }
        false
    }

    fn write_id(&self, out: &mut Vec<u8>) {
        let map: BTreeMap<&str, (u64, &str)> =
            self.0.iter().map(|(c, (o, e))| (c.as_str(), (*o, e.as_str()))).collect();
        let _ = serde_json::to_writer(out, &map);
    }

    /// Positions from a `Last-Event-ID` header, as connect-request `subs` asking to recover.
    fn parse_last_event_id(text: &str) -> BTreeMap<String, (u64, String)> {
        serde_json::from_str(text).unwrap_or_default()
    }
}

#[derive(Deserialize)]
pub struct ConnectQuery {
    pub cf_connect: Option<String>,
}

/// Whether a request's body is protobuf (`Content-Type: application/octet-stream`).
pub(crate) fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"))
}

/// The commands (or connect request) of a stream request: the `cf_connect` query parameter on
/// GET, the body on POST; 405 for a method not in `allowed`.
async fn request_data(
    app: &AppState,
    method: &Method,
    allowed: &[Method],
    query: ConnectQuery,
    body: Body,
    required: bool,
) -> Result<Vec<u8>, Response> {
    if !allowed.contains(method) {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        return Err(json_error(StatusCode::METHOD_NOT_ALLOWED, &format!("use {}", names.join(" or "))));
    }
    let limit = app.config.client.max_frame_bytes;
    let data = if *method == Method::GET {
        match query.cf_connect {
            Some(text) => text.into_bytes(),
            None if required => {
                crate::metrics::bad_input("stream_without_connect");
                return Err(json_error(StatusCode::BAD_REQUEST, "cf_connect query parameter is required"));
            }
            None => Vec::new(),
        }
    } else {
        read_body(body, limit, "stream_body").await?.to_vec()
    };
    if data.len() > limit {
        crate::metrics::bad_input("stream_body");
        return Err(json_error(StatusCode::PAYLOAD_TOO_LARGE, &format!("connect data over {limit} bytes")));
    }
    Ok(data)
}

/// `POST /connection/http_stream`.
pub async fn http_stream(
    State(app): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    query: Query<ConnectQuery>,
    body: Body,
) -> Response {
    let (protocol, framing) =
        if is_protobuf(&headers) { (Protocol::Protobuf, Framing::Protobuf) } else { (Protocol::Json, Framing::Lines) };
    match request_data(&app, &method, &[Method::POST], query.0, body, true).await {
        Ok(commands) => open_emulated(app, protocol, framing, commands),
        Err(response) => response,
    }
}

/// `GET` or `POST /connection/sse`.
pub async fn sse(State(app): State<Arc<AppState>>, method: Method, query: Query<ConnectQuery>, body: Body) -> Response {
    match request_data(&app, &method, &[Method::GET, Method::POST], query.0, body, true).await {
        Ok(commands) => open_emulated(app, Protocol::Json, Framing::Sse, commands),
        Err(response) => response,
    }
}

fn open_emulated(app: Arc<AppState>, protocol: Protocol, framing: Framing, commands: Vec<u8>) -> Response {
    if app.is_draining() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let (registration, queue) = Sessions::register(&app.emulation, app.config.client.emulation_max_queued_frames);
    let session = Session::new(app.clone(), protocol, Carrier::Emulated { session: registration.id().clone() });
    let (body, chunks) = mpsc::channel(1);
    let transport = StreamTransport {
        body,
        commands: Some(queue),
        initial: Some(commands),
        framing,
        protocol,
        unidirectional: false,
        positions: None,
        _registration: Some(registration),
    };
    app.tracker.spawn(crate::driver::run(app.clone(), transport, Box::new(session)));
    stream_response(framing, chunks)
}

/// `GET` or `POST /connection/uni_sse`.
pub async fn uni_sse(
    State(app): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    query: Query<ConnectQuery>,
    body: Body,
) -> Response {
    let data = match request_data(&app, &method, &[Method::GET, Method::POST], query.0, body, false).await {
        Ok(data) => data,
        Err(response) => return response,
    };
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    open_unidirectional(app, Framing::Sse, &data, last_event_id).await
}

/// `POST /connection/uni_http_stream`.
pub async fn uni_http_stream(
    State(app): State<Arc<AppState>>,
    method: Method,
    query: Query<ConnectQuery>,
    body: Body,
) -> Response {
    match request_data(&app, &method, &[Method::POST], query.0, body, false).await {
        Ok(data) => open_unidirectional(app, Framing::Lines, &data, None).await,
        Err(response) => response,
    }
}

/// Parse a bare connect request (empty means no token, no data).
pub(crate) fn parse_connect_request(data: &[u8]) -> Result<ConnectRequest, String> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(ConnectRequest::default());
    }
    serde_json::from_slice(data).map_err(|error| {
        crate::metrics::bad_input("uni_connect_malformed");
        format!("malformed connect request: {error}")
    })
}

/// A refused uni-directional connect as an HTTP error: 401 when the token is the problem.
pub(crate) fn refusal_response(refusal: Refusal) -> Response {
    let (status, code, message) = match refusal {
        Refusal::Error(code) => {
            let status = match code.code {
                101 | 109 => StatusCode::UNAUTHORIZED,
                100 => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, code.code, code.message.to_owned())
        }
        Refusal::Disconnect(disconnect) => {
            let status = if disconnect == Disconnect::INVALID_TOKEN {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            };
            (status, u32::from(disconnect.code), disconnect.reason.to_string())
        }
    };
    (status, axum::Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
}

async fn open_unidirectional(
    app: Arc<AppState>,
    framing: Framing,
    data: &[u8],
    last_event_id: Option<&str>,
) -> Response {
    if app.is_draining() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let mut request = match parse_connect_request(data) {
        Ok(request) => request,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    if let Some(text) = last_event_id {
        for (channel, (offset, epoch)) in Positions::parse_last_event_id(text) {
            let sub = request.subs.entry(channel).or_default();
            sub.recover = true;
            sub.offset = offset;
            sub.epoch = epoch;
        }
    }
    let session_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
    let mut session = Session::new(app.clone(), Protocol::Json, Carrier::Unidirectional { session: session_id });
    if let Err(refusal) = session.connect_unidirectional(request).await {
        session.close();
        return refusal_response(refusal);
    }
    let (body, chunks) = mpsc::channel(1);
    let transport = StreamTransport {
        body,
        commands: None,
        initial: None,
        framing,
        protocol: Protocol::Json,
        unidirectional: true,
        positions: (framing == Framing::Sse).then(Box::default),
        _registration: None,
    };
    app.tracker.spawn(crate::driver::run(app.clone(), transport, Box::new(session)));
    stream_response(framing, chunks)
}

/// The streaming response: headers that keep proxies from buffering or caching it, and a body
/// fed by the connection's driver. SSE starts with a blank line so the headers leave at once.
fn stream_response(framing: Framing, mut chunks: mpsc::Receiver<Bytes>) -> Response {
    let content_type = match framing {
        Framing::Lines => "application/json",
        Framing::Protobuf => "application/octet-stream",
        Framing::Sse => "text/event-stream; charset=utf-8",
    };
    let preamble = (framing == Framing::Sse).then(|| Bytes::from_static(b"\r\n"));
    let mut preamble = preamble;
    let stream = futures_util::stream::poll_fn(move |cx| {
        if let Some(first) = preamble.take() {
            return std::task::Poll::Ready(Some(Ok::<_, std::convert::Infallible>(first)));
        }
        chunks.poll_recv(cx).map(|chunk| chunk.map(Ok))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uni_pushes_lose_their_reply_wrapper() {
        assert_eq!(
            unwrap_push(br#"{"push":{"channel":"a","pub":{"data":{}}}}"#),
            br#"{"channel":"a","pub":{"data":{}}}"#
        );
        assert_eq!(unwrap_push(br#"{"connect":{"client":"c"}}"#), br#"{"connect":{"client":"c"}}"#);
        assert_eq!(unwrap_push(b"{}"), b"{}");
    }

    #[test]
    fn positions_follow_connect_publications_and_unsubscribes() {
        let mut positions = Positions::default();
        assert!(positions.observe(br#"{"connect":{"client":"c","subs":{"a":{"epoch":"e","offset":3},"b":{}}}}"#));
        assert!(positions.observe(br#"{"channel":"a","pub":{"data":{"x":1},"offset":4}}"#));
        // No position to move: an unpositioned channel, or an old offset.
        assert!(!positions.observe(br#"{"channel":"b","pub":{"data":1}}"#));
        assert!(!positions.observe(br#"{"channel":"a","pub":{"data":1,"offset":2}}"#));
        assert!(!positions.observe(b"{}"));
        let mut id = Vec::new();
        positions.write_id(&mut id);
        assert_eq!(id, br#"{"a":[4,"e"]}"#);
        let parsed = Positions::parse_last_event_id(std::str::from_utf8(&id).expect("test input decodes"));
        assert_eq!(parsed.get("a"), Some(&(4, "e".to_owned())));
        assert!(positions.observe(br#"{"channel":"a","unsubscribe":{"code":2000}}"#));
        assert!(Positions::parse_last_event_id("not json").is_empty());
    }
}
