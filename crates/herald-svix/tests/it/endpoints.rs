//! Endpoints: shapes, the SDK kitchen-sink flow, secrets and rotation, headers, recovery,
//! validation and the SSRF check.

use http::StatusCode;
use serde_json::json;

use crate::helpers::{BLOCKED_HOST, TestApp, assert_timestamp, keys};

const ENDPOINT_KEYS: [&str; 15] = [
    "channels",
    "createdAt",
    "description",
    "disabled",
    "eventTypes",
    "filterTypes",
    "id",
    // Herald extension.
    "maxConcurrency",
    "metadata",
    "rateLimit",
    "throttleRate",
    "uid",
    "updatedAt",
    "url",
    "version",
];

#[tokio::test]
async fn create_returns_svix_shape_with_generated_secret() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({"url": "https://example.com", "channels": ["ch0", "ch1"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(keys(&body), ENDPOINT_KEYS);
    assert!(herald_store::ids::has_prefix(body["id"].as_str().expect("id"), "ep"), "{body}");
    assert_eq!(body["url"], "https://example.com/");
    assert_eq!(body["description"], "");
    assert_eq!(body["version"], 1);
    assert_eq!(body["disabled"], false);
    assert_eq!(body["uid"], json!(null));
    assert_eq!(body["eventTypes"], json!(null));
    assert_eq!(body["filterTypes"], json!(null));
    assert_eq!(body["channels"], json!(["ch0", "ch1"]));
    assert_eq!(body["throttleRate"], json!(null));
    assert_eq!(body["metadata"], json!({}));
    assert_timestamp(&body["createdAt"]);

    let id = body["id"].as_str().expect("id");
    let (status, secret) = app.get(&format!("/api/v1/app/{app_id}/endpoint/{id}/secret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&secret), ["key"]);
    let key = secret["key"].as_str().expect("key");
    assert!(key.starts_with("whsec_") && key.len() == "whsec_".len() + 44, "{key}");
}

/// The flow of the SDKs' kitchen-sink tests (`KitchenSink.test.ts`, `test_kitchen_sink.py`).
#[tokio::test]
async fn kitchen_sink_flow() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    app.event_type("event.started").await;
    app.event_type("event.ended").await;
    let (status, _) = app.post("/api/v1/event-type", json!({"name": "event.started", "description": "again"})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let ep = app.endpoint(&app_id, json!({"url": "https://example.svix.com/", "channels": ["ch0", "ch1"]})).await;
    let (status, patched) = app
        .patch(&format!("/api/v1/app/{app_id}/endpoint/{ep}"), json!({"eventTypes": ["event.started", "event.ended"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["channels"], json!(["ch0", "ch1"]));
    assert_eq!(patched["eventTypes"], json!(["event.started", "event.ended"]));
    assert_eq!(patched["filterTypes"], json!(["event.started", "event.ended"]));

    let (status, body) = app.delete(&format!("/api/v1/app/{app_id}/endpoint/{ep}")).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, json!(null)));
    let (status, _) = app.get(&format!("/api/v1/app/{app_id}/endpoint/{ep}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn uid_lookup_put_and_list() {
    let app = TestApp::new().await;
    let app_id = app.app("App", Some("the-app")).await;
    let ep = app
        .endpoint(
            "the-app",
            json!({"url": "https://a.example/hook", "uid": "ep-one", "description": "one", "filterTypes": null, "metadata": {"m": "1"}}),
        )
        .await;
    let (status, body) = app.get("/api/v1/app/the-app/endpoint/ep-one").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], ep.as_str());
    assert_eq!(body["uid"], "ep-one");

    let (status, body) = app
        .put(&format!("/api/v1/app/{app_id}/endpoint/ep-one"), json!({"url": "https://b.example/hook", "rateLimit": 7}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["url"], "https://b.example/hook");
    assert_eq!(body["uid"], json!(null), "PUT replaces every field");
    assert_eq!(body["throttleRate"], 7);
    assert_eq!(body["metadata"], json!({}));

    let (status, created) = app
        .put(&format!("/api/v1/app/{app_id}/endpoint/ep-two"), json!({"url": "https://c.example/", "uid": "ep-two"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (_, list) = app.get(&format!("/api/v1/app/{app_id}/endpoint")).await;
    let mut expected = vec![ep.clone(), created["id"].as_str().expect("id").to_owned()];
    expected.sort();
    expected.reverse();
    let ids: Vec<&str> = list["data"].as_array().expect("data").iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids, expected, "endpoints list newest first by default");
    assert_eq!(list["done"], true);
}

#[tokio::test]
async fn validation_refuses_bad_endpoints_and_changes_nothing() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let path = format!("/api/v1/app/{app_id}/endpoint");

    let (status, body) = app
        .post(
            &path,
            json!({
                "url": "ftp://example.com/",
                "secret": "whsec_short",
                "channels": (0..11).map(|i| format!("c{i}")).collect::<Vec<_>>(),
                "uid": "ep_123",
                "version": 0,
                "headers": {"content-type": "text/plain"},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let locs: Vec<String> = body["detail"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["loc"][1].as_str().expect("loc").to_owned())
        .collect();
    for field in ["url", "secret", "channels", "uid", "version", "headers"] {
        assert!(locs.iter().any(|l| l == field), "{field} missing from {body}");
    }

    let (status, body) = app.post(&path, json!({"url": format!("https://{BLOCKED_HOST}/hook")})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"detail": [{"loc": ["body", "url"], "msg": "address is not public", "type": "value_error"}]})
    );

    let (status, body) = app.post(&path, json!({"url": "https://example.com/", "eventTypes": ["no.such.type"]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["msg"], "The following event types don't exist: no.such.type");

    let (status, _) = app.post(&path, json!({"url": "https://example.com/", "eventTypes": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (_, list) = app.get(&path).await;
    assert_eq!(list["data"], json!([]));

    // A PATCH to a refused URL changes nothing either.
    let ep = app.endpoint(&app_id, json!({"url": "https://example.com/"})).await;
    let (status, _) = app.patch(&format!("{path}/{ep}"), json!({"url": format!("http://{BLOCKED_HOST}/")})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = app.get(&format!("{path}/{ep}")).await;
    assert_eq!(body["url"], "https://example.com/");

    let (status, _) = app.post("/api/v1/app/nope/endpoint", json!({"url": "https://example.com/"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn custom_secret_and_rotation() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let given = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let ep = app.endpoint(&app_id, json!({"url": "https://example.com/", "secret": given})).await;
    let secret_path = format!("/api/v1/app/{app_id}/endpoint/{ep}/secret");
    assert_eq!(app.get(&secret_path).await.1["key"], given);

    let (status, body) = app.post(&format!("{secret_path}/rotate"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, rotated) = app.get(&secret_path).await;
    assert_ne!(rotated["key"], given);
    assert_eq!(body["key"], rotated["key"], "rotate answers with the new secret");
    let stored = app.store.get_endpoint(&app_id, &ep).await.expect("get").expect("endpoint");
    assert_eq!(stored.previous_secrets.len(), 1);
    assert_eq!(stored.previous_secrets[0].secret, given);
    let overlap = herald_core::config::WebhooksConfig::default().secret_rotation_overlap.as_millis() as i64;
    let expected_expiry = herald_store::now_ms() + overlap;
    assert!((stored.previous_secrets[0].expires_at - expected_expiry).abs() < 60_000);

    // A given key without the prefix is stored with it.
    let bare = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, _) = app.post(&format!("{secret_path}/rotate"), json!({"key": bare, "gracePeriodSeconds": 0})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get(&secret_path).await.1["key"], format!("whsec_{bare}"));

    let (status, body) = app.post(&format!("{secret_path}/rotate"), json!({"key": "nope"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "key"]));
    let (status, _) = app.post(&format!("{secret_path}/rotate"), json!({"gracePeriodSeconds": 700_000})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn headers_get_put_patch() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let ep = app.endpoint(&app_id, json!({"url": "https://example.com/", "headers": {"X-Initial": "1"}})).await;
    let path = format!("/api/v1/app/{app_id}/endpoint/{ep}/headers");
    assert_eq!(app.get(&path).await.1, json!({"headers": {"X-Initial": "1"}, "sensitive": []}));

    let (status, _) = app.put(&path, json!({"headers": {"X-Foo": "bar", "Authorization": "Bearer s3cret"}})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.1, json!({"headers": {"X-Foo": "bar"}, "sensitive": ["Authorization"]}));

    let (status, _) = app.patch(&path, json!({"headers": {"X-Foo": null, "X-New": "2"}})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.1, json!({"headers": {"X-New": "2"}, "sensitive": ["Authorization"]}));
    let stored = app.store.get_endpoint(&app_id, &ep).await.expect("get").expect("endpoint");
    assert_eq!(stored.headers.get("Authorization").map(String::as_str), Some("Bearer s3cret"));

    let (status, _) = app.put(&path, json!({"headers": {"svix-id": "x"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.put(&path, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn recover_answers_like_a_background_task() {
    let app = TestApp::new().await;
    let app_id = app.app("App", None).await;
    let ep = app.endpoint(&app_id, json!({"url": "https://example.com/"})).await;
    app.message(&app_id, json!({"eventType": "a.b", "payload": {"n": 1}})).await;
    assert_eq!(app.deliver_all(500).await, 1);

    let since = "2020-01-01T00:00:00Z";
    let path = format!("/api/v1/app/{app_id}/endpoint/{ep}/recover");
    let (status, body) = app.post(&path, json!({"since": since})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "more than 14 days: {body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "since"]));

    let since = chrono_like_now_minus_hours(1);
    let (status, body) = app.post(&path, json!({"since": since})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(keys(&body), ["id", "status", "task", "updatedAt"]);
    assert!(body["id"].as_str().expect("id").starts_with("qtask_"));
    assert_eq!(body["task"], "endpoint.recover");
    assert_eq!(body["status"], "finished");
    // The failed message is due again.
    assert_eq!(app.deliver_all(200).await, 1);

    let (status, _) = app.post(&path, json!({"since": "yesterday"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// `now - hours` as RFC 3339 with an offset, the way Python's `isoformat()` writes it.
fn chrono_like_now_minus_hours(hours: i64) -> String {
    let ms = herald_store::now_ms() - hours * 3_600_000;
    let seconds = ms / 1000;
    let days = seconds / 86_400;
    let rem = seconds % 86_400;
    // Civil date from days since the epoch (same algorithm as the crate's formatter).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.123456+00:00", rem / 3600, rem / 60 % 60, rem % 60)
}
