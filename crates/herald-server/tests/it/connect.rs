//! Connecting: tokens, anonymous access, expiry and refresh, bad input before connect.

use herald_core::auth::{MintClaims, mint_hs256};
use serde_json::json;

use crate::helpers::{Client, Closed, TestApp, base_config};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

#[tokio::test]
async fn connect_with_token_reports_client_and_ping() {
    let app = TestApp::start().await;
    let mut client = Client::open(&app.ws_url()).await;
    let reply = client.call(json!({ "connect": { "token": app.token("alice") } })).await;
    let connect = &reply["connect"];
    assert_eq!(connect["client"].as_str().map(str::len), Some(36), "{reply}");
    assert_eq!(connect["ping"], json!(25));
    assert_eq!(connect["pong"], json!(true));
    assert!(connect.get("expires").is_none(), "a token without exp never expires: {reply}");
}

#[tokio::test]
async fn token_signed_with_another_secret_closes_with_3500() {
    let app = TestApp::start().await;
    let mut client = Client::open(&app.ws_url()).await;
    let token =
        mint_hs256("another-secret", &MintClaims { sub: "mallory".into(), ..Default::default() }).expect("mint");
    client.send_text(&json!({ "id": 1, "connect": { "token": token } }).to_string()).await;
    assert_eq!(client.closed().await, Closed::Code(3500, "invalid token".into()));
}

#[tokio::test]
async fn garbage_token_closes_with_3500() {
    let app = TestApp::start().await;
    let mut client = Client::open(&app.ws_url()).await;
    client.send_text(r#"{"id":1,"connect":{"token":"not.a.jwt"}}"#).await;
    assert_eq!(client.closed().await, Closed::Code(3500, "invalid token".into()));
}

#[tokio::test]
async fn expired_token_gets_error_109_and_stays_open() {
    let app = TestApp::start().await;
    let mut client = Client::open(&app.ws_url()).await;
    let token = app.token_with(MintClaims { sub: "bob".into(), exp: Some(now() - 10), ..Default::default() });
    let reply = client.call(json!({ "connect": { "token": token } })).await;
    assert_eq!(reply["error"]["code"], json!(109), "{reply}");
    // The SDK now fetches a fresh token and connects again on the same socket or a new one.
    let reply = client.call(json!({ "connect": { "token": app.token("bob") } })).await;
    assert!(reply.get("connect").is_some(), "{reply}");
}

#[tokio::test]
async fn anonymous_refused_unless_allowed() {
    let mut config = base_config();
    config.client.allow_anonymous = false;
    let app = TestApp::start_with(config).await;
    let mut client = Client::open(&app.ws_url()).await;
    let reply = client.call(json!({ "connect": {} })).await;
    assert_eq!(reply["error"]["code"], json!(101), "{reply}");
}

#[tokio::test]
async fn command_before_connect_closes_with_3501() {
    let app = TestApp::start().await;
    let mut client = Client::open(&app.ws_url()).await;
    client.send_text(r#"{"id":1,"subscribe":{"channel":"news"}}"#).await;
    assert_eq!(client.closed().await, Closed::Code(3501, "bad request".into()));
}

#[tokio::test]
async fn malformed_json_closes_with_3501_and_is_counted() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.send_text("{not json").await;
    assert_eq!(client.closed().await, Closed::Code(3501, "bad request".into()));
    let metrics = app.http.get(format!("http://{}/metrics", app.addr)).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("herald_bad_input_total{kind=\"malformed_frame\"}"), "{text}");
}

#[tokio::test]
async fn oversized_frame_closes_the_connection() {
    let mut config = base_config();
    config.client.max_frame_bytes = 2048;
    let app = TestApp::start_with(config).await;
    let mut client = app.client("alice").await;
    let big = format!(r#"{{"id":2,"publish":{{"channel":"news","data":"{}"}}}}"#, "x".repeat(4096));
    client.send_text(&big).await;
    match client.closed().await {
        Closed::Code(code, _) => assert!(code == 3501 || code == 1009, "code {code}"),
        Closed::NoFrame => {}
    }
    // The server is unaffected.
    let mut other = app.client("bob").await;
    let reply = other.call(json!({ "subscribe": { "channel": "news" } })).await;
    assert!(reply.get("subscribe").is_some(), "{reply}");
}

#[tokio::test]
async fn unknown_method_gets_error_104() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    // A command with an id and no known method.
    let reply = client.call(json!({ "nonsense": {} })).await;
    assert_eq!(reply["error"]["code"], json!(104), "{reply}");
}

#[tokio::test]
async fn rpc_is_not_available() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    let reply = client.call(json!({ "rpc": { "method": "x", "data": {} } })).await;
    assert_eq!(reply["error"]["code"], json!(108), "{reply}");
}

#[tokio::test]
async fn refresh_extends_an_expiring_connection() {
    let app = TestApp::start().await;
    let mut client = Client::open(&app.ws_url()).await;
    let token = app.token_with(MintClaims { sub: "carol".into(), exp: Some(now() + 100), ..Default::default() });
    let reply = client.call(json!({ "connect": { "token": token } })).await;
    assert_eq!(reply["connect"]["expires"], json!(true), "{reply}");
    let ttl = reply["connect"]["ttl"].as_u64().expect("ttl");
    assert!((95..=100).contains(&ttl), "ttl {ttl}");

    let fresh = app.token_with(MintClaims { sub: "carol".into(), exp: Some(now() + 1000), ..Default::default() });
    let reply = client.call(json!({ "refresh": { "token": fresh } })).await;
    let ttl = reply["refresh"]["ttl"].as_u64().expect("ttl");
    assert!(ttl > 900, "{reply}");

    // Another user's token is a protocol violation.
    let stolen = app.token_with(MintClaims { sub: "dave".into(), exp: Some(now() + 1000), ..Default::default() });
    client.send_text(&json!({ "id": 99, "refresh": { "token": stolen } }).to_string()).await;
    assert_eq!(client.closed().await, Closed::Code(3500, "invalid token".into()));
}

#[tokio::test]
async fn unrefreshed_connection_expires_with_3005() {
    let mut config = base_config();
    config.client.expired_close_delay = std::time::Duration::ZERO;
    let app = TestApp::start_with(config).await;
    let mut client = Client::open(&app.ws_url()).await;
    let token = app.token_with(MintClaims { sub: "erin".into(), exp: Some(now() + 2), ..Default::default() });
    let reply = client.call(json!({ "connect": { "token": token } })).await;
    assert_eq!(reply["connect"]["expires"], json!(true), "{reply}");
    assert_eq!(client.closed().await, Closed::Code(3005, "connection expired".into()));
}

#[tokio::test]
async fn missing_pong_closes_with_3012() {
    let mut config = base_config();
    config.client.ping_interval = std::time::Duration::from_secs(1);
    config.client.pong_timeout = std::time::Duration::from_millis(300);
    let app = TestApp::start_with(config).await;
    let mut client = app.client("alice").await;
    // Read raw frames without answering the ping.
    use futures_util::StreamExt;
    let mut saw_ping = false;
    let code = loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), client.ws.next())
            .await
            .expect("server acts in time")
            .expect("open")
            .expect("read");
        match message {
            tokio_tungstenite::tungstenite::Message::Text(text) if text.as_str() == "{}" => saw_ping = true,
            tokio_tungstenite::tungstenite::Message::Close(Some(frame)) => break u16::from(frame.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(saw_ping, "the server pings first");
    assert_eq!(code, 3012);
}

#[tokio::test]
async fn answered_pings_keep_the_connection() {
    let mut config = base_config();
    config.client.ping_interval = std::time::Duration::from_secs(1);
    config.client.pong_timeout = std::time::Duration::from_millis(500);
    let app = TestApp::start_with(config).await;
    let mut client = app.client("alice").await;
    // `wait_for` answers pings; stay connected across three ping intervals.
    let sub = client.call(json!({ "subscribe": { "channel": "news" } })).await;
    assert!(sub.get("subscribe").is_some());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for i in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        app.publish("news", json!({ "i": i })).await;
        let publication = client.next_pub("news").await;
        assert_eq!(publication["data"], json!({ "i": i }));
    }
}

#[tokio::test]
async fn server_side_subscriptions_from_token() {
    let app = TestApp::start().await;
    let mut client = Client::open(&app.ws_url()).await;
    let token = app.token_with(MintClaims {
        sub: "frank".into(),
        channels: vec!["chat:lobby".into(), "news".into()],
        ..Default::default()
    });
    let reply = client.call(json!({ "connect": { "token": token } })).await;
    let subs = reply["connect"]["subs"].as_object().expect("subs in connect reply");
    assert!(subs.contains_key("chat:lobby") && subs.contains_key("news"), "{reply}");
    app.publish("chat:lobby", json!({ "hello": "lobby" })).await;
    let publication = client.next_pub("chat:lobby").await;
    assert_eq!(publication["data"], json!({ "hello": "lobby" }));
}

#[tokio::test]
async fn personal_channel_subscription() {
    let mut config = base_config();
    config.client.user_subscribe_to_personal = true;
    let app = TestApp::start_with(config).await;
    let mut client = Client::open(&app.ws_url()).await;
    let reply = client.call(json!({ "connect": { "token": app.token("gina") } })).await;
    assert!(reply["connect"]["subs"].get("#gina").is_some(), "{reply}");
    app.publish("#gina", json!("for gina")).await;
    assert_eq!(client.next_pub("#gina").await["data"], json!("for gina"));
}

#[tokio::test]
async fn protobuf_codec_connects_and_receives() {
    use futures_util::{SinkExt, StreamExt};
    use herald_protocol::{Command, ConnectRequest, Protocol, SubscribeRequest};
    use prost::Message as _;
    use tokio_tungstenite::tungstenite::Message;

    let app = TestApp::start().await;
    let mut ws = Client::open_with_protocol(&app.ws_url(), "centrifuge-protobuf").await;
    let mut frame = Vec::new();
    let connect = Command {
        id: 1,
        connect: Some(ConnectRequest { token: app.token("pat"), ..Default::default() }),
        ..Default::default()
    };
    connect.encode_length_delimited(&mut frame).expect("encode");
    let subscribe = Command {
        id: 2,
        subscribe: Some(SubscribeRequest { channel: "chat:proto".into(), ..Default::default() }),
        ..Default::default()
    };
    subscribe.encode_length_delimited(&mut frame).expect("encode");
    ws.send(Message::binary(frame)).await.expect("send");

    let mut replies = Vec::new();
    let mut published = false;
    while replies.len() < 3 {
        let message =
            tokio::time::timeout(crate::helpers::WAIT, ws.next()).await.expect("reply").expect("open").expect("ok");
        let Message::Binary(bytes) = message else { panic!("protobuf frames are binary: {message:?}") };
        let mut buf = &bytes[..];
        while !buf.is_empty() {
            let reply = herald_protocol::Reply::decode_length_delimited(&mut buf).expect("valid protobuf reply");
            replies.push(reply);
        }
        if replies.len() == 2 && !published {
            published = true;
            app.publish("chat:proto", json!({ "n": 1 })).await;
        }
    }
    assert_eq!(replies[0].id, 1);
    assert!(replies[0].connect.as_ref().is_some_and(|c| c.client.len() == 36));
    assert_eq!(replies[1].id, 2);
    assert!(replies[1].subscribe.is_some());
    let push = replies[2].push.as_ref().expect("push");
    let publication = push.publication.as_ref().expect("pub");
    assert_eq!(push.channel, "chat:proto");
    assert_eq!(&publication.data[..], br#"{"n":1}"#);
    assert_eq!(publication.offset, 1);
    let _ = Protocol::Protobuf;
}
