//! The HTTP transports: HTTP streaming and SSE with bidirectional emulation, the
//! uni-directional SSE, HTTP stream and WebSocket, and the browser-origin check.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_core::auth::MintClaims;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{TestApp, WAIT, base_config};

/// A streaming response read message by message: JSON lines, or SSE events (`id`, `data`).
struct Stream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    sse: bool,
}

/// One SSE event, or one line of an HTTP stream (`id` empty).
#[derive(Debug)]
struct Event {
    id: Option<String>,
    data: Value,
}

impl Stream {
    fn new(response: reqwest::Response, sse: bool) -> Self {
        assert_eq!(response.status(), 200, "stream opens");
        Self { response, buffer: Vec::new(), sse }
    }

    async fn next(&mut self) -> Event {
        let separator: &[u8] = if self.sse { b"\n\n" } else { b"\n" };
        loop {
            if let Some(at) = self.buffer.windows(separator.len()).position(|w| w == separator) {
                let raw: Vec<u8> = self.buffer.drain(..at + separator.len()).collect();
                let text = String::from_utf8(raw).expect("utf-8");
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                if !self.sse {
                    return Event { id: None, data: serde_json::from_str(text).expect("a JSON line") };
                }
                let mut event = Event { id: None, data: Value::Null };
                for line in text.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(data).expect("JSON data");
                    }
                }
                return event;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("timed out waiting for the stream")
                .expect("stream readable")
                .expect("stream still open");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next message that is not a ping.
    async fn next_message(&mut self) -> Event {
        loop {
            let event = self.next().await;
            if event.data != json!({}) {
                return event;
            }
        }
    }

    /// The body ends (the server closed the stream).
    async fn ended(mut self) -> Vec<Value> {
        let mut rest = Vec::new();
        while let Ok(Some(chunk)) =
            tokio::time::timeout(WAIT, self.response.chunk()).await.expect("timed out waiting for the end")
        {
            self.buffer.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(self.buffer).expect("utf-8");
        for line in text.lines() {
            let line = line.strip_prefix("data: ").unwrap_or(line).trim();
            if !line.is_empty() && !line.starts_with("id: ") {
                rest.push(serde_json::from_str(line).expect("JSON"));
            }
        }
        rest
    }
}

/// `url?key=value`, the value percent-encoded.
fn with_query(url: &str, key: &str, value: &str) -> String {
    let mut encoded = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{url}?{key}={encoded}")
}

fn channels_token(app: &TestApp, user: &str, channels: &[&str]) -> String {
    app.token_with(MintClaims {
        sub: user.into(),
        channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    })
}

#[tokio::test]
async fn uni_http_stream_sends_bare_pushes_from_token_channels() {
    let app = TestApp::start().await;
    let token = channels_token(&app, "alice", &["chat:uni"]);
    let response = app
        .http
        .post(format!("http://{}/connection/uni_http_stream", app.addr))
        .body(json!({ "token": token }).to_string())
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.headers()["content-type"], "application/json");
    let mut stream = Stream::new(response, false);
    let connect = stream.next_message().await.data;
    let result = &connect["connect"];
    assert!(result["client"].as_str().is_some_and(|c| !c.is_empty()), "{connect}");
    assert!(result["session"].as_str().is_some_and(|s| !s.is_empty()), "uni connect has a session: {connect}");
    assert!(result.get("pong").is_none(), "uni clients do not answer pings: {connect}");
    assert!(result["subs"].get("chat:uni").is_some(), "server-side subscription from the token: {connect}");

    app.publish("chat:uni", json!({ "n": 1 })).await;
    let publication = loop {
        let message = stream.next_message().await.data;
        if message.get("pub").is_some() {
            break message;
        }
        assert!(message.get("join").is_some(), "only the join push may come first: {message}");
    };
    assert_eq!(publication["channel"], "chat:uni");
    assert_eq!(publication["pub"]["data"], json!({ "n": 1 }));

    // The server API disconnect ends the stream with a bare disconnect push.
    let (status, _) = app.api("disconnect", json!({ "user": "alice" })).await;
    assert_eq!(status, 200);
    let rest = stream.ended().await;
    assert!(rest.iter().any(|m| m.get("disconnect").is_some()), "disconnect push before the end: {rest:?}");
}

#[tokio::test]
async fn uni_connect_refusals_are_http_errors_with_json_bodies() {
    let mut config = base_config();
    config.client.allow_anonymous = false;
    let app = TestApp::start_with(config).await;
    let url = format!("http://{}/connection/uni_sse", app.addr);
    let bad_token =
        app.http.get(with_query(&url, "cf_connect", r#"{"token":"nope"}"#)).send().await.expect("reachable");
    assert_eq!(bad_token.status(), 401);
    let body: Value = bad_token.json().await.expect("JSON body");
    assert_eq!(body["error"]["code"], 3500, "{body}");

    let anonymous = app.http.get(&url).send().await.expect("reachable");
    assert_eq!(anonymous.status(), 401, "no token and no anonymous access");

    let malformed = app.http.get(with_query(&url, "cf_connect", "{not json")).send().await.expect("reachable");
    assert_eq!(malformed.status(), 400);
    assert!(malformed.json::<Value>().await.expect("JSON body")["error"]["message"].is_string());

    let put = app.http.put(&url).send().await.expect("reachable");
    assert_eq!(put.status(), 405);
    let get_stream =
        app.http.get(format!("http://{}/connection/uni_http_stream", app.addr)).send().await.expect("reachable");
    assert_eq!(get_stream.status(), 405);
}

#[tokio::test]
async fn uni_sse_resumes_from_last_event_id_without_a_gap() {
    let app = TestApp::start().await;
    let token = channels_token(&app, "bob", &["live:feed"]);
    let cf_connect = json!({ "token": token }).to_string();
    let url = format!("http://{}/connection/uni_sse", app.addr);
    let open = |last_event_id: Option<String>| {
        let mut request = app.http.get(with_query(&url, "cf_connect", &cf_connect));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        request.send()
    };
    let response = open(None).await.expect("reachable");
    assert_eq!(response.headers()["content-type"], "text/event-stream; charset=utf-8");
    let mut stream = Stream::new(response, true);
    let connect = stream.next_message().await;
    assert!(connect.id.is_some(), "the connect event carries the positions: {connect:?}");
    for n in 1..=2 {
        app.publish("live:feed", json!({ "n": n })).await;
    }
    let mut last_id = None;
    for n in 1..=2 {
        let event = stream.next_message().await;
        assert_eq!(event.data["pub"]["data"], json!({ "n": n }));
        assert!(event.id.is_some(), "a publication moves the position: {event:?}");
        last_id = event.id;
    }
    drop(stream);

    // Missed while away.
    for n in 3..=5 {
        app.publish("live:feed", json!({ "n": n })).await;
    }
    let mut resumed = Stream::new(open(last_id).await.expect("reachable"), true);
    let connect = resumed.next_message().await;
    let sub = &connect.data["connect"]["subs"]["live:feed"];
    assert_eq!(sub["recovered"], true, "{connect:?}");
    let missed: Vec<Value> =
        sub["publications"].as_array().expect("recovered publications").iter().map(|p| p["data"].clone()).collect();
    assert_eq!(missed, vec![json!({ "n": 3 }), json!({ "n": 4 }), json!({ "n": 5 })]);
    let id: Value = serde_json::from_str(connect.id.as_deref().expect("an id")).expect("JSON id");
    assert_eq!(id["live:feed"][0], 5, "the id after recovery points at the top: {id}");
}

#[tokio::test]
async fn uni_websocket_takes_the_connect_request_as_first_message_and_sends_one_push_per_frame() {
    let app = TestApp::start().await;
    let url = format!("ws://{}/connection/uni_websocket", app.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("upgrade");
    let token = channels_token(&app, "carol", &["chat:ws"]);
    ws.send(Message::text(json!({ "token": token }).to_string())).await.expect("send");
    let mut next = async || -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame").expect("open").expect("ok");
            if let Message::Text(text) = message {
                assert!(!text.contains('\n'), "one push per frame: {text}");
                return serde_json::from_str(&text).expect("JSON");
            }
        }
    };
    let connect = next().await;
    assert!(connect["connect"]["subs"].get("chat:ws").is_some(), "{connect}");
    app.publish("chat:ws", json!({ "n": 1 })).await;
    app.publish("chat:ws", json!({ "n": 2 })).await;
    let mut pubs = Vec::new();
    while pubs.len() < 2 {
        let message = next().await;
        if let Some(publication) = message.get("pub") {
            pubs.push(publication["data"].clone());
        }
    }
    assert_eq!(pubs, vec![json!({ "n": 1 }), json!({ "n": 2 })]);

    // With cf_connect, a bad token is refused before the upgrade.
    let refused = app
        .http
        .get(with_query(&format!("http://{}/connection/uni_websocket", app.addr), "cf_connect", r#"{"token":"bad"}"#))
        .send()
        .await
        .expect("reachable");
    assert_eq!(refused.status(), 401);
}

#[tokio::test]
async fn http_stream_session_takes_commands_through_emulation_and_forgets_them_when_gone() {
    let app = TestApp::start().await;
    let connect = json!({ "id": 1, "connect": { "token": app.token("dave") } }).to_string();
    let response = app
        .http
        .post(format!("http://{}/connection/http_stream", app.addr))
        .header("content-type", "application/json")
        .body(connect)
        .send()
        .await
        .expect("reachable");
    let mut stream = Stream::new(response, false);
    let reply = stream.next_message().await.data;
    let result = &reply["connect"];
    assert_eq!(reply["id"], 1);
    assert_eq!(result["pong"], true);
    let session = result["session"].as_str().expect("session").to_owned();
    let node = result["node"].as_str().expect("node").to_owned();

    let emulation = format!("http://{}/emulation", app.addr);
    let post = |data: String, session: &str, node: &str| {
        app.http.post(&emulation).body(json!({ "session": session, "node": node, "data": data }).to_string()).send()
    };
    let subscribe = json!({ "id": 2, "subscribe": { "channel": "chat:emu" } }).to_string();
    let answer = post(subscribe, &session, &node).await.expect("reachable");
    assert_eq!(answer.status(), 204);
    let reply = stream.next_message().await.data;
    assert_eq!(reply["id"], 2);
    assert!(reply.get("subscribe").is_some(), "{reply}");
    app.publish("chat:emu", json!({ "via": "api" })).await;
    let push = stream.next_message().await.data;
    assert_eq!(push["push"]["pub"]["data"], json!({ "via": "api" }));

    // Unknown session or node: 404 with a JSON error, nothing queued anywhere.
    for (session, node) in [("no-such-session", node.as_str()), (session.as_str(), "other-node")] {
        let answer = post("{}".into(), session, node).await.expect("reachable");
        assert_eq!(answer.status(), 404);
        assert!(answer.json::<Value>().await.expect("JSON")["error"]["message"].is_string());
    }
    let malformed = app.http.post(&emulation).body("{").send().await.expect("reachable");
    assert_eq!(malformed.status(), 400);
    let too_large = app.http.post(&emulation).body(vec![b' '; 128 * 1024]).send().await.expect("reachable");
    assert_eq!(too_large.status(), 413);
    let get = app.http.get(&emulation).send().await.expect("reachable");
    assert_eq!(get.status(), 405);

    // The client goes away: the session is gone for /emulation too.
    drop(stream);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = post("{}".into(), &session, &node).await.expect("reachable").status();
        if status == 404 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "session still registered after the stream ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stream_without_a_connect_ends_with_a_disconnect_push() {
    let mut config = base_config();
    config.client.connect_timeout = Duration::from_millis(300);
    let app = TestApp::start_with(config).await;
    // No commands at all: the connect deadline ends it (3502, stale).
    let response =
        app.http.post(format!("http://{}/connection/http_stream", app.addr)).send().await.expect("reachable");
    let rest = Stream::new(response, false).ended().await;
    let disconnect = rest.iter().find_map(|m| m.pointer("/push/disconnect")).expect("a disconnect push");
    assert_eq!(disconnect["code"], 3502, "{rest:?}");

    // A command other than connect first: a bad request.
    let response = app
        .http
        .get(with_query(&format!("http://{}/connection/sse", app.addr), "cf_connect", r#"{"id":1,"ping":{}}"#))
        .send()
        .await
        .expect("reachable");
    let stream = Stream::new(response, true);
    let rest = stream.ended().await;
    let disconnect = rest.iter().find_map(|m| m.pointer("/push/disconnect")).expect("a disconnect push");
    assert_eq!(disconnect["code"], 3501, "a command before connect is a bad request: {rest:?}");

    let missing = app.http.get(format!("http://{}/connection/sse", app.addr)).send().await.expect("reachable");
    assert_eq!(missing.status(), 400, "bidirectional SSE needs cf_connect");
}

#[tokio::test]
async fn browser_origins_are_checked_on_every_transport() {
    let mut config = base_config();
    config.client.allowed_origins = vec!["http://app.test".into()];
    let app = TestApp::start_with(config).await;
    let base = format!("http://{}", app.addr);

    // A listed origin gets CORS headers; preflight is answered.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{base}/emulation"))
        .header("Origin", "http://app.test")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .expect("reachable");
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "http://app.test");
    assert!(preflight.headers()["access-control-allow-methods"].to_str().expect("ascii").contains("POST"));
    let allowed = app
        .http
        .post(format!("{base}/connection/uni_http_stream"))
        .header("Origin", "http://app.test")
        .body(json!({ "token": app.token("erin") }).to_string())
        .send()
        .await
        .expect("reachable");
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "http://app.test");
    drop(allowed);

    // Any other origin: 403 before a connection exists, on every door.
    for path in ["/connection/uni_sse", "/connection/sse?cf_connect=%7B%7D", "/emulation"] {
        let refused =
            app.http.get(format!("{base}{path}")).header("Origin", "http://evil.test").send().await.expect("reachable");
        assert_eq!(refused.status(), 403, "{path}");
        assert!(refused.headers().get("access-control-allow-origin").is_none());
    }
    let mut request = app.ws_url().into_client_request().expect("request");
    request.headers_mut().insert("Origin", "http://evil.test".parse().expect("header"));
    let upgrade = tokio_tungstenite::connect_async(request).await;
    assert!(upgrade.is_err(), "a WebSocket from another origin is refused");
    let mut request = app.ws_url().into_client_request().expect("request");
    request.headers_mut().insert("Origin", "http://app.test".parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(request).await.is_ok(), "the listed origin may open a WebSocket");
    // Same origin (a page served by this host) passes without being listed.
    let same = app
        .http
        .get(format!("{base}/connection/uni_sse"))
        .header("Origin", format!("http://{}", app.addr))
        .send()
        .await
        .expect("reachable");
    assert_eq!(same.status(), 200);
}

#[tokio::test]
async fn an_sse_client_that_stops_reading_is_dropped_as_slow_and_costs_nothing_more() {
    let mut config = base_config();
    config.client.queue_max_messages = 16;
    config.client.queue_max_bytes = 256 * 1024;
    let app = TestApp::start_with(config).await;
    let token = channels_token(&app, "slow", &["chat:slow"]);
    let url = with_query(
        &format!("http://{}/connection/uni_sse", app.addr),
        "cf_connect",
        &json!({ "token": token }).to_string(),
    );
    let response = app.http.get(url).send().await.expect("reachable");
    assert_eq!(response.status(), 200);
    // Not read meanwhile: once the socket buffers are full the queue fills, and passes its bound.
    let big = "x".repeat(60_000);
    let published = 200;
    for n in 0..published {
        app.publish("chat:slow", json!({ "n": n, "pad": big })).await;
    }
    let mut stream = Stream::new(response, true);
    let mut received = 0;
    while let Ok(Some(chunk)) = tokio::time::timeout(WAIT * 2, stream.response.chunk()).await.expect("the stream ends")
    {
        received += chunk.windows(7).filter(|w| w == b"\"pub\":{").count();
    }
    assert!(received < published, "the slow client was dropped before it got all {published}: got {received}");
    // The hub forgot it: a new publication reaches nobody.
    let (status, body) = app.api("channels", json!({})).await;
    assert_eq!(status, 200);
    assert!(body["result"]["channels"].get("chat:slow").is_none(), "no subscriber left: {body}");
}

#[tokio::test]
async fn uni_streams_get_keepalive_pings_and_are_never_closed_for_missing_pongs() {
    let mut config = base_config();
    config.client.ping_interval = Duration::from_millis(400);
    config.client.pong_timeout = Duration::from_millis(200);
    let app = TestApp::start_with(config).await;
    let token = channels_token(&app, "quiet", &["chat:quiet"]);
    let response = app
        .http
        .post(format!("http://{}/connection/uni_http_stream", app.addr))
        .body(json!({ "token": token }).to_string())
        .send()
        .await
        .expect("reachable");
    let mut stream = Stream::new(response, false);
    // Well past several ping intervals plus the pong timeout: pings only, no disconnect.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(2000);
    while tokio::time::Instant::now() < until {
        let message = stream.next().await.data;
        assert!(message.get("disconnect").is_none(), "a uni client cannot pong, it must not be dropped: {message}");
        if message == json!({}) {
            pings += 1;
        }
    }
    assert!(pings >= 3, "keep-alive pings: {pings}");
    app.publish("chat:quiet", json!({ "still": "here" })).await;
    let publication = stream.next_message().await.data;
    assert_eq!(publication["pub"]["data"], json!({ "still": "here" }));
}
