//! Idempotency keys: replay, conflict, and no caching of failures.

use http::{Method, StatusCode};

use crate::helpers::TestApp;

#[tokio::test]
async fn same_key_same_request_replays_without_running_again() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let path = format!("/api/v1/app/{app_id}/msg");
    let body = r#"{"eventType":"a.b","payload":{"n":1}}"#;
    let headers = [("idempotency-key", "auto_1234")];

    let first = app.raw(Method::POST, &path, &headers, Some(body)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = app.raw(Method::POST, &path, &headers, Some(body)).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/json"[..]));
    assert_eq!(app.messages.lock().len(), 1, "on_message ran once");
    let (_, list) = app.get(&path).await;
    assert_eq!(list["data"].as_array().expect("data").len(), 1, "one message stored");

    // The same key from another caller is another key.
    let other = herald_svix::mint_token(crate::helpers::JWT_SECRET, "org_other");
    let auth = format!("Bearer {other}");
    let third =
        app.raw(Method::POST, &path, &[("idempotency-key", "auto_1234"), ("authorization", &auth)], Some(body)).await;
    assert_eq!(third.status, StatusCode::ACCEPTED);
    assert_ne!(third.body, first.body);
    assert_eq!(app.messages.lock().len(), 2);
}

#[tokio::test]
async fn same_key_other_request_is_a_conflict() {
    let app = TestApp::new().await;
    let headers = [("idempotency-key", "key-1")];
    let first = app.raw(Method::POST, "/api/v1/app", &headers, Some(r#"{"name":"One"}"#)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app.raw(Method::POST, "/api/v1/app", &headers, Some(r#"{"name":"Two"}"#)).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.json()["code"], "conflict");
    let (_, list) = app.get("/api/v1/app").await;
    assert_eq!(list["data"].as_array().expect("data").len(), 1);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let app = TestApp::new().await;
    let headers = [("idempotency-key", "retry-me")];
    let bad = app.raw(Method::POST, "/api/v1/app", &headers, Some(r#"{"name":""}"#)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_again = app.raw(Method::POST, "/api/v1/app", &headers, Some(r#"{"name":""}"#)).await;
    assert_eq!(bad_again.status, StatusCode::UNPROCESSABLE_ENTITY);
    // After fixing the request, the same key works (a 4xx was not remembered).
    let good = app.raw(Method::POST, "/api/v1/app", &headers, Some(r#"{"name":"Fixed"}"#)).await;
    assert_eq!(good.status, StatusCode::CREATED);
    let replay = app.raw(Method::POST, "/api/v1/app", &headers, Some(r#"{"name":"Fixed"}"#)).await;
    assert_eq!((replay.status, replay.body), (StatusCode::CREATED, good.body));
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_message() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let app_id = app.app("App", None).await;
    let path = format!("/api/v1/app/{app_id}/msg");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            app.raw(Method::POST, &path, &[("idempotency-key", "same")], Some(r#"{"eventType":"a","payload":{}}"#))
                .await
        }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let response = task.await.expect("task");
        assert_eq!(response.status, StatusCode::ACCEPTED);
        bodies.push(response.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(app.messages.lock().len(), 1);
}

#[tokio::test]
async fn one_key_on_two_urls_is_two_keys() {
    let app = TestApp::new().await;
    let headers = [("idempotency-key", "shared")];
    let created = app.raw(Method::POST, "/api/v1/app", &headers, Some(r#"{"name":"One"}"#)).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let event_type =
        app.raw(Method::POST, "/api/v1/event-type", &headers, Some(r#"{"name":"a.b","description":"x"}"#)).await;
    assert_eq!(event_type.status, StatusCode::CREATED);
}
