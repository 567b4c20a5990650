//! The server API: auth, bad input, and the methods not covered elsewhere.

use serde_json::json;

use crate::helpers::{API_KEY, TestApp, base_config};

#[tokio::test]
async fn wrong_or_missing_key_is_401_with_json() {
    let app = TestApp::start().await;
    let (status, body) = app.api_raw("info", b"{}".to_vec(), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], json!(101));
    let (status, _) = app.api_raw("info", b"{}".to_vec(), Some("wrong")).await;
    assert_eq!(status, 401);

    // `Authorization: apikey <key>` works too.
    let response = app
        .http
        .post(format!("http://{}/api/info", app.addr))
        .header("Authorization", format!("apikey {API_KEY}"))
        .body("{}")
        .send()
        .await
        .expect("reachable");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn malformed_body_unknown_method_and_oversize_are_4xx_and_change_nothing() {
    let mut config = base_config();
    config.server.max_body_bytes = 4096;
    let app = TestApp::start_with(config).await;

    let (status, body) = app.api_raw("publish", b"{nope".to_vec(), Some(API_KEY)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], json!(107));

    let (status, body) = app.api_raw("launch_rockets", b"{}".to_vec(), Some(API_KEY)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], json!(104));

    let big = json!({ "channel": "chat:big", "data": "x".repeat(10_000) }).to_string();
    let (status, body) = app.api_raw("publish", big.into_bytes(), Some(API_KEY)).await;
    assert_eq!(status, 413, "{body}");

    // Missing fields are a method-level bad request.
    let (status, body) = app.api("publish", json!({ "channel": "chat:big" })).await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], json!(107), "{body}");

    // Nothing was published by any of the above.
    let (_, body) = app.api("history", json!({ "channel": "chat:big", "limit": -1 })).await;
    assert_eq!(body["result"]["offset"].as_u64().unwrap_or(0), 0, "{body}");
}

#[tokio::test]
async fn unknown_namespace_is_error_102() {
    let app = TestApp::start().await;
    let (status, body) = app.api("publish", json!({ "channel": "nope:x", "data": {} })).await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], json!(102), "{body}");
}

#[tokio::test]
async fn broadcast_and_batch() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "chat:b1" } })).await;
    client.call(json!({ "subscribe": { "channel": "news" } })).await;

    let (_, body) = app.api("broadcast", json!({ "channels": ["chat:b1", "news", "nope:x"], "data": "all" })).await;
    let responses = body["result"]["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 3);
    assert_eq!(responses[0]["result"]["offset"], json!(1));
    assert_eq!(responses[2]["error"]["code"], json!(102));
    assert_eq!(client.next_pub("chat:b1").await["data"], json!("all"));
    assert_eq!(client.next_pub("news").await["data"], json!("all"));

    let (_, body) = app
        .api(
            "batch",
            json!({ "commands": [
                { "publish": { "channel": "chat:b1", "data": 2 } },
                { "presence_stats": { "channel": "chat:b1" } },
                { "unknown": {} },
            ] }),
        )
        .await;
    // Centrifugo answers batch without the `result` wrapper.
    let replies = body["replies"].as_array().expect("replies");
    assert_eq!(replies[0]["publish"]["offset"], json!(2), "{body}");
    assert_eq!(replies[1]["presence_stats"]["num_clients"], json!(1), "{body}");
    assert_eq!(replies[2]["error"]["code"], json!(104), "{body}");
}

#[tokio::test]
async fn b64data_publishes_binary_payloads() {
    let app = TestApp::start().await;
    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "news" } })).await;
    // base64 of `{"b":1}`.
    let (_, body) = app.api("publish", json!({ "channel": "news", "b64data": "eyJiIjoxfQ==" })).await;
    assert!(body.get("result").is_some(), "{body}");
    assert_eq!(client.next_pub("news").await["data"], json!({ "b": 1 }));
    let (_, body) = app.api("publish", json!({ "channel": "news", "b64data": "!!!" })).await;
    assert_eq!(body["error"]["code"], json!(107), "{body}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::start().await;
    let get = |path: &'static str| {
        let url = format!("http://{}{path}", app.addr);
        let http = app.http.clone();
        async move { http.get(url).send().await.expect("reachable") }
    };
    assert_eq!(get("/healthz").await.status(), 200);
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], json!("ready"), "{body}");
    assert_eq!(body["checks"]["store"], json!("ok"), "{body}");

    let mut client = app.client("alice").await;
    client.call(json!({ "subscribe": { "channel": "news" } })).await;
    app.publish("news", json!(1)).await;
    client.next_pub("news").await;
    let text = get("/metrics").await.text().await.expect("text");
    for name in [
        "herald_connections",
        "herald_subscriptions",
        "herald_publications_total",
        "herald_deliveries_total",
        "herald_commands_total{method=\"subscribe\",result=\"ok\"}",
        "herald_command_duration_seconds_bucket",
        "herald_api_requests_total{method=\"publish\",result=\"ok\"}",
        "herald_sent_bytes_total",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
    let missing = get("/nope").await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("404 has a JSON body");
    assert!(body.get("error").is_some());
}
