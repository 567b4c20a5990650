//! Attempts, destinations and resend, with deliveries played by the test (the store's claim
//! and record calls stand in for the dispatcher).

use http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_timestamp, keys};

const ATTEMPT_KEYS: [&str; 11] = [
    "endpointId",
    "id",
    "msgId",
    "response",
    "responseDurationMs",
    "responseStatusCode",
    "status",
    "statusText",
    "timestamp",
    "triggerType",
    "url",
];

#[tokio::test]
async fn attempts_by_endpoint_and_by_message() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let ep = app.endpoint(&app_id, json!({"url": "https://example.com/hook", "uid": "main"})).await;
    let msg = app.message(&app_id, json!({"eventType": "a.b", "eventId": "e1", "payload": {}})).await;
    assert_eq!(app.deliver_all(200).await, 1);

    let (status, page) = app.get(&format!("/api/v1/app/{app_id}/attempt/endpoint/{ep}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["done"], true);
    let attempt = &page["data"][0];
    assert_eq!(keys(attempt), ATTEMPT_KEYS);
    assert!(attempt["id"].as_str().expect("id").starts_with("atmpt_"));
    assert_eq!(attempt["msgId"], msg.as_str());
    assert_eq!(attempt["endpointId"], ep.as_str());
    assert_eq!(attempt["url"], "https://example.com/hook");
    assert_eq!(attempt["response"], r#"{"answer":200}"#);
    assert_eq!(attempt["responseStatusCode"], 200);
    assert_eq!(attempt["responseDurationMs"], 12);
    assert_eq!(attempt["status"], 0);
    assert_eq!(attempt["statusText"], "success");
    assert_eq!(attempt["triggerType"], 0);
    assert_timestamp(&attempt["timestamp"]);

    // By uid and eventId, by message, on the deprecated routes, and one attempt by id.
    let (_, by_uid) = app.get(&format!("/api/v1/app/{app_id}/attempt/endpoint/main")).await;
    assert_eq!(by_uid["data"], page["data"]);
    let (_, by_msg) = app.get(&format!("/api/v1/app/{app_id}/attempt/msg/e1")).await;
    assert_eq!(by_msg["data"], page["data"]);
    let (_, old) = app.get(&format!("/api/v1/app/{app_id}/msg/{msg}/attempt")).await;
    assert_eq!(old["data"], page["data"]);
    let (_, old) = app.get(&format!("/api/v1/app/{app_id}/msg/{msg}/endpoint/main/attempt")).await;
    assert_eq!(old["data"], page["data"]);
    let attempt_id = attempt["id"].as_str().expect("id");
    let (status, one) = app.get(&format!("/api/v1/app/{app_id}/msg/{msg}/attempt/{attempt_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&one, attempt);
    let (status, _) = app.get(&format!("/api/v1/app/{app_id}/msg/{msg}/attempt/atmpt_nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Filters applied to the page.
    let (_, failed) = app.get(&format!("/api/v1/app/{app_id}/attempt/endpoint/{ep}?status=2")).await;
    assert_eq!(failed["data"], json!([]));
    let (_, ok) =
        app.get(&format!("/api/v1/app/{app_id}/attempt/endpoint/{ep}?status_code_class=200&event_types=a.b")).await;
    assert_eq!(ok["data"].as_array().expect("data").len(), 1);
    let (_, other_type) = app.get(&format!("/api/v1/app/{app_id}/attempt/msg/{msg}?event_types=x.y")).await;
    assert_eq!(other_type["data"], json!([]));
    let (_, no_content) = app.get(&format!("/api/v1/app/{app_id}/attempt/msg/{msg}?with_content=false")).await;
    assert_eq!(no_content["data"][0]["response"], "{}");
    let (status, _) = app.get(&format!("/api/v1/app/{app_id}/attempt/endpoint/{ep}?status=9")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.get(&format!("/api/v1/app/{app_id}/attempt/endpoint/ep_nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn destinations_and_resend() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let ep1 = app.endpoint(&app_id, json!({"url": "https://one.example/"})).await;
    let ep2 = app.endpoint(&app_id, json!({"url": "https://two.example/"})).await;
    let msg = app.message(&app_id, json!({"eventType": "a.b", "payload": {}})).await;
    assert_eq!(app.deliver_all(500).await, 2);

    let (status, page) = app.get(&format!("/api/v1/app/{app_id}/msg/{msg}/endpoint")).await;
    assert_eq!(status, StatusCode::OK);
    let mut expected = vec![ep1.clone(), ep2.clone()];
    expected.sort();
    let ids: Vec<&str> = page["data"].as_array().expect("data").iter().map(|d| d["id"].as_str().expect("id")).collect();
    assert_eq!(ids, expected);
    let destination = &page["data"][0];
    for key in ["status", "statusText", "nextAttempt", "url", "eventTypes", "channels", "createdAt"] {
        assert!(destination.get(key).is_some(), "{key} missing from {destination}");
    }
    assert_eq!(destination["status"], 2);
    assert_eq!(destination["statusText"], "fail");
    assert_eq!(page["done"], true);

    let (_, first) = app.get(&format!("/api/v1/app/{app_id}/msg/{msg}/endpoint?limit=1")).await;
    assert_eq!(first["data"][0]["id"], expected[0].as_str());
    assert_eq!(first["done"], false);
    let (_, second) = app
        .get(&format!(
            "/api/v1/app/{app_id}/msg/{msg}/endpoint?limit=1&iterator={}",
            first["iterator"].as_str().expect("it")
        ))
        .await;
    assert_eq!(second["data"][0]["id"], expected[1].as_str());
    assert_eq!(second["done"], true);

    let (status, body) =
        app.call(Method::POST, &format!("/api/v1/app/{app_id}/msg/{msg}/endpoint/{ep1}/resend"), None).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({})));
    assert_eq!(app.deliver_all(200).await, 1, "the resend is one new delivery");
    let (_, attempts) = app.get(&format!("/api/v1/app/{app_id}/attempt/endpoint/{ep1}")).await;
    let attempts = attempts["data"].as_array().expect("data");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["triggerType"], 1, "newest first, manual");
    assert_eq!(attempts[0]["status"], 0);

    let (status, _) =
        app.call(Method::POST, &format!("/api/v1/app/{app_id}/msg/msg_nope/endpoint/{ep1}/resend"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        app.call(Method::POST, &format!("/api/v1/app/{app_id}/msg/{msg}/endpoint/ep_nope/resend"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
