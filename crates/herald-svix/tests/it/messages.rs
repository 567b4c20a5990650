//! Messages: shape, exact payload bytes, `on_message`, eventId, filters, limits.

use herald_core::config::WebhooksConfig;
use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_timestamp, keys};

#[tokio::test]
async fn create_returns_svix_shape_and_calls_on_message_once() {
    let app = TestApp::new().await;
    let app_id = app.app("App", Some("shop")).await;
    // The payload goes through byte for byte, whitespace and key order included.
    let body = r#"{"eventType":"order.paid","eventId":"evt-1","channels":["eu","orders"],"payload":{ "z": 1,  "a": [true, null] }}"#;
    let response = app.raw(Method::POST, "/api/v1/app/shop/msg", &[], Some(body)).await;
    assert_eq!(response.status, StatusCode::ACCEPTED);
    let message = response.json();
    assert_eq!(keys(&message), ["channels", "eventId", "eventType", "id", "payload", "timestamp"]);
    assert!(herald_store::ids::has_prefix(message["id"].as_str().expect("id"), "msg"), "{message}");
    assert_eq!(message["eventType"], "order.paid");
    assert_eq!(message["eventId"], "evt-1");
    assert_eq!(message["channels"], json!(["eu", "orders"]));
    assert_eq!(message["payload"], json!({"z": 1, "a": [true, null]}));
    assert_timestamp(&message["timestamp"]);
    let text = String::from_utf8_lossy(&response.body);
    assert!(text.contains(r#""payload":{ "z": 1,  "a": [true, null] }"#), "{text}");

    let recorded = app.messages.lock().clone();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].id, message["id"].as_str().expect("id"));
    assert_eq!(recorded[0].app_id, app_id);
    assert_eq!(&recorded[0].payload[..], br#"{ "z": 1,  "a": [true, null] }"#);

    // Get by id and by eventId.
    let id = message["id"].as_str().expect("id");
    let (status, by_id) = app.get(&format!("/api/v1/app/{app_id}/msg/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id, message);
    let (_, by_event_id) = app.get("/api/v1/app/shop/msg/evt-1").await;
    assert_eq!(by_event_id, message);
    let (_, without) = app.get("/api/v1/app/shop/msg/evt-1?with_content=false").await;
    assert_eq!(without["payload"], json!({}));

    // A reused eventId is a conflict and does not reach on_message.
    let (status, body) =
        app.post("/api/v1/app/shop/msg", json!({"eventType": "order.paid", "eventId": "evt-1", "payload": {}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "conflict");
    assert_eq!(app.messages.lock().len(), 1);

    let (status, body) =
        app.post("/api/v1/app/shop/msg?with_content=false", json!({"eventType": "x", "payload": {"a": 1}})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["payload"], json!({}));
    assert_eq!(body["eventId"], json!(null));
    assert_eq!(body["channels"], json!(null));
    assert_eq!(app.messages.lock().len(), 2);
}

#[tokio::test]
async fn validation_and_limits() {
    let webhooks = WebhooksConfig { max_payload_bytes: 1024, ..WebhooksConfig::default() };
    let app = TestApp::with_webhooks(webhooks).await;
    let app_id = app.app("App", None).await;
    let path = format!("/api/v1/app/{app_id}/msg");

    let (status, body) = app.post(&path, json!({"eventType": "bad type", "payload": [1], "eventId": "msg_x"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let locs: Vec<&serde_json::Value> = body["detail"].as_array().expect("items").iter().map(|i| &i["loc"]).collect();
    assert!(locs.contains(&&json!(["body", "eventType"])), "{body}");
    assert!(locs.contains(&&json!(["body", "payload"])), "{body}");
    assert!(locs.contains(&&json!(["body", "eventId"])), "{body}");

    let (status, body) = app.post(&path, json!({"eventType": "a"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "payload"]));

    let channels: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
    let (status, _) = app.post(&path, json!({"eventType": "a", "payload": {}, "channels": channels})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.post(&path, json!({"eventType": "a", "payload": {}, "channels": ["has space"]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.post(&path, json!({"eventType": "a", "payload": {}, "payloadRetentionPeriod": 91})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) =
        app.post(&path, json!({"eventType": "a", "payload": {}, "deliverAt": "2030-01-01T00:00:00Z"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let big = "x".repeat(2000);
    let (status, body) = app.post(&path, json!({"eventType": "a", "payload": {"big": big}})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, json!({"code": "payload_too_large", "detail": "Request payload is too large."}));
    let huge = "x".repeat(200_000);
    let (status, _) = app.post(&path, json!({"eventType": "a", "payload": {"huge": huge}})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // `data` is an alias of `payload`; `channels` may use Herald's `ns:name` form.
    let (status, body) = app
        .post(&path, json!({"eventType": "a", "data": {"ok": true}, "channels": ["chat:room"], "payloadRetentionPeriod": 30, "tags": ["t1"]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["payload"], json!({"ok": true}));

    let (status, body) = app.post("/api/v1/app/nope/msg", json!({"eventType": "a", "payload": {}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"code": "not_found", "detail": "Application not found"}));
    assert_eq!(app.messages.lock().len(), 1, "only the valid message reached on_message");
}

#[tokio::test]
async fn application_is_created_with_the_message() {
    let app = TestApp::new().await;
    let (status, body) = app
        .post(
            "/api/v1/app/new-app/msg",
            json!({"eventType": "a", "payload": {}, "application": {"name": "New", "uid": "other"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["type"], "application_uid_mismatch");
    let (status, body) = app
        .post("/api/v1/app/new-app/msg", json!({"eventType": "a", "payload": {}, "application": {"name": ""}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "application", "name"]));

    let (status, _) = app
        .post(
            "/api/v1/app/new-app/msg",
            json!({"eventType": "a", "payload": {}, "application": {"name": "New", "uid": "new-app"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, created) = app.get("/api/v1/app/new-app").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created["name"], "New");
}

#[tokio::test]
async fn list_filters_and_pages() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let mut ids = Vec::new();
    for (i, (event_type, channel)) in
        [("a.one", "x"), ("a.two", "y"), ("a.one", "y"), ("a.three", "x"), ("a.one", "x")].iter().enumerate()
    {
        ids.push(
            app.message(&app_id, json!({"eventType": event_type, "payload": {"i": i}, "channels": [channel]})).await,
        );
    }
    ids.sort();
    ids.reverse();
    let path = format!("/api/v1/app/{app_id}/msg");
    let id_list = |page: &serde_json::Value| -> Vec<String> {
        page["data"].as_array().expect("data").iter().map(|m| m["id"].as_str().expect("id").to_owned()).collect()
    };

    let (status, page1) = app.get(&format!("{path}?limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id_list(&page1), ids[0..2], "newest first");
    assert_eq!(page1["done"], false);
    let (_, page2) = app.get(&format!("{path}?limit=2&iterator={}", page1["iterator"].as_str().expect("it"))).await;
    assert_eq!(id_list(&page2), ids[2..4]);
    let (_, page3) = app.get(&format!("{path}?limit=2&iterator={}", page2["iterator"].as_str().expect("it"))).await;
    assert_eq!(id_list(&page3), ids[4..5]);
    assert_eq!(page3["done"], true);

    let (_, ones) = app.get(&format!("{path}?event_types=a.one")).await;
    assert_eq!(ones["data"].as_array().expect("data").len(), 3);
    let (_, some) = app.get(&format!("{path}?event_types=a.two,a.three")).await;
    assert_eq!(some["data"].as_array().expect("data").len(), 2);
    let (_, some) = app.get(&format!("{path}?event_types[]=a.two&event_types[]=a.three")).await;
    assert_eq!(some["data"].as_array().expect("data").len(), 2);
    let (_, in_x) = app.get(&format!("{path}?channel=x&event_types=a.one")).await;
    assert_eq!(in_x["data"].as_array().expect("data").len(), 2);
    let (_, none) = app.get(&format!("{path}?before=2000-01-01T00:00:00Z")).await;
    assert_eq!(none["data"], json!([]));
    let (_, all) = app.get(&format!("{path}?after=2000-01-01T00:00:00Z&with_content=false")).await;
    assert_eq!(all["data"].as_array().expect("data").len(), 5);
    assert_eq!(all["data"][0]["payload"], json!({}));
    let (status, _) = app.get(&format!("{path}?before=not-a-date")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.get(&format!("{path}?channel=bad%20channel")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
