//! Shutdown and connection limits.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Client, Closed, TestApp, base_config};

#[tokio::test]
async fn shutdown_delivers_queued_messages_then_closes_with_3001() {
    let mut app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "news" } })).await;
    app.publish("news", json!("before shutdown")).await;

    let server = app.server.take().expect("running");
    let readyz = format!("http://{}/readyz", app.addr);
    let shutdown = tokio::spawn(server.shutdown());

    assert_eq!(client.next_pub("news").await["data"], json!("before shutdown"));
    assert_eq!(client.closed().await, Closed::Code(3001, "shutdown".into()));
    // As Centrifugo: over a bidirectional WebSocket the close frame alone carries the
    // disconnect, with no disconnect push before it.
    assert!(
        !client.backlog.iter().any(|v| v.pointer("/push/disconnect").is_some()),
        "no disconnect push before the close frame: {:?}",
        client.backlog
    );
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("drains within the grace period")
        .expect("task")
        .expect("clean shutdown");
    // The listener is closed.
    assert!(app.http.get(readyz).send().await.is_err());
}

#[tokio::test]
async fn readiness_fails_while_draining() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "news" } })).await;
    app.server().app().start_draining();
    let response = app.http.get(format!("http://{}/readyz", app.addr)).send().await.expect("reachable");
    assert_eq!(response.status(), 503);
    // New WebSocket connections are refused while draining.
    let refused = tokio_tungstenite::connect_async(app.ws_url()).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn connection_limit_refuses_extra_connections() {
    let mut config = base_config();
    config.server.max_connections = 2;
    let app = TestApp::start_with(config).await;
    let _a = app.client("a").await;
    let _b = app.client("b").await;
    // Give the accept loop a moment to hand both sockets to their WebSocket tasks.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = tokio::time::timeout(Duration::from_secs(2), tokio_tungstenite::connect_async(app.ws_url())).await;
    assert!(matches!(third, Ok(Err(_))), "a third connection is refused");
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Client::open(&app.ws_url()).await;
    let reply = again.call(json!({ "connect": { "token": app.token("c") } })).await;
    assert!(reply.get("connect").is_some(), "a slot frees when a client leaves");
}

#[tokio::test]
async fn connect_timeout_closes_silent_sockets() {
    let mut config = base_config();
    config.client.connect_timeout = Duration::from_millis(300);
    let app = TestApp::start_with(config).await;
    let mut client = Client::open(&app.ws_url()).await;
    assert_eq!(client.closed().await, Closed::Code(3502, "stale".into()));
}
