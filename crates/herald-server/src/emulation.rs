//! Bidirectional emulation: `POST /emulation` carries a client's later commands to its HTTP
//! stream or SSE connection.
//!
//! A connection opened over `/connection/http_stream` or `/connection/sse` registers a random
//! session id here, with a bounded queue of command frames (`client.emulation_max_queued_frames`)
//! that its driver reads as a WebSocket connection reads its socket. The connect result gives
//! the SDK that session id and this node's id; the SDK posts `{node, session, data}` (JSON, or
//! client.proto's `EmulationRequest` as protobuf), and the frame goes into the queue.
//!
//! The session id, unlike the client id, is never shown to anyone else (presence lists client
//! ids), so knowing a client id does not let anyone speak for it.
//!
//! One node today: a post naming another node is refused with 404. With a cluster broker the
//! post would travel as a control message to the node named in it (the SDK always names the
//! node that holds its stream), which queues it here.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use prost::Message as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::respond::{json_error, read_body};
use crate::state::AppState;

/// The JSON form of client.proto's `EmulationRequest`: `data` is a string holding the
/// commands (what centrifuge-js sends), or the command object itself.
#[derive(Deserialize)]
struct JsonEmulation<'a> {
    #[serde(default)]
    node: String,
    #[serde(default)]
    session: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// `POST /emulation`: queue a frame of commands for the session named in the body. 204 once
/// queued (the replies travel on the session's stream); 404 for an unknown session or node;
/// 429 when the session's queue stays full for a ping interval.
pub async fn handler(
    State(app): State<Arc<AppState>>,
    method: http::Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method != http::Method::POST {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let client = &app.config.client;
    let bytes = match read_body(body, client.max_frame_bytes, "emulation_body").await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let (node, session, data) = match decode(&headers, &bytes) {
        Ok(request) => request,
        Err(message) => {
            crate::metrics::bad_input("emulation_malformed");
            return json_error(StatusCode::BAD_REQUEST, &message);
        }
    };
    if node != app.node_id {
        return json_error(StatusCode::NOT_FOUND, "unknown node");
    }
    let Some(sender) = app.emulation.sender(&session) else {
        return json_error(StatusCode::NOT_FOUND, "unknown session");
    };
    match tokio::time::timeout(client.ping_interval, sender.send(data)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(_)) => json_error(StatusCode::NOT_FOUND, "unknown session"),
        Err(_) => {
            crate::metrics::bad_input("emulation_queue_full");
            json_error(StatusCode::TOO_MANY_REQUESTS, "the session's command queue is full")
        }
    }
}

/// Node, session and the frame of commands, from either encoding.
fn decode(headers: &HeaderMap, body: &Bytes) -> Result<(String, String, Vec<u8>), String> {
    if crate::stream::is_protobuf(headers) {
        let request = herald_protocol::EmulationRequest::decode(body.as_ref()).map_err(|e| e.to_string())?;
        return Ok((request.node, request.session, request.data.to_vec()));
    }
    let request: JsonEmulation = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let raw = request.data.get();
    let data = if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).map_err(|e| e.to_string())?.into_bytes()
    } else {
        raw.as_bytes().to_vec()
    };
    Ok((request.node, request.session, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_data_is_a_string_of_commands_or_an_object() {
        let headers = HeaderMap::new();
        let body = Bytes::from_static(br#"{"node":"n","session":"s","data":"{\"id\":2,\"ping\":{}}\n{}"}"#);
        let (node, session, data) = decode(&headers, &body).expect("test input decodes");
        assert_eq!((node.as_str(), session.as_str()), ("n", "s"));
        assert_eq!(data, b"{\"id\":2,\"ping\":{}}\n{}");
        let body = Bytes::from_static(br#"{"node":"n","session":"s","data":{"id":3}}"#);
        assert_eq!(decode(&headers, &body).expect("test input decodes").2, br#"{"id":3}"#);
        assert!(decode(&headers, &Bytes::from_static(b"{\"node\":1}")).is_err());
    }

    #[test]
    fn protobuf_body_is_an_emulation_request() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, "application/octet-stream".parse().expect("test input decodes"));
        let request =
            herald_protocol::EmulationRequest { node: "n".into(), session: "s".into(), data: Bytes::from_static(&[0]) };
        let body = Bytes::from(request.encode_to_vec());
        assert_eq!(decode(&headers, &body).expect("test input decodes"), ("n".into(), "s".into(), vec![0]));
        assert!(decode(&headers, &Bytes::from_static(&[0xff, 0xff])).is_err());
    }
}
