//! The webhook path through the server: management API, dispatcher, signatures, live channels.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// One received webhook: headers and body.
pub type Received = (HeaderMap, Vec<u8>);

/// A webhook receiver on 127.0.0.1:0 that records requests and answers scripted statuses.
#[derive(Clone, Default)]
pub struct TestReceiver {
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer, in order; 200 once exhausted.
    pub script: Arc<Mutex<Vec<u16>>>,
}

impl TestReceiver {
    pub async fn start(script: Vec<u16>) -> (Self, String) {
        let receiver = TestReceiver { script: Arc::new(Mutex::new(script)), ..Default::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (receiver, url)
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let received = self.received.lock().clone();
            if received.len() >= n {
                return received;
            }
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} webhooks arrived", received.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(receiver): State<TestReceiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    receiver.received.lock().push((headers, body.to_vec()));
    let status = {
        let mut script = receiver.script.lock();
        if script.is_empty() { 200 } else { script.remove(0) }
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

async fn management(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let token = herald_svix::mint_token("test-management-secret", "org_test");
    let mut request = app.http.request(method, format!("http://{}/api/v1{path}", app.addr)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("management API reachable");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") })
}

fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let id = headers["webhook-id"].to_str().expect("id");
    let timestamp: i64 = headers["webhook-timestamp"].to_str().expect("ts").parse().expect("int");
    let signature = headers["webhook-signature"].to_str().expect("sig");
    herald_webhooks::signing::verify(id, timestamp, body, signature, &[secret], herald_store::now_ms() / 1000).is_ok()
}

#[tokio::test]
async fn message_is_delivered_signed_and_published_live() {
    let app = TestApp::start().await;
    let (receiver, url) = TestReceiver::start(vec![]).await;
    let (status, created) =
        management(&app, reqwest::Method::POST, "/app", Some(json!({ "name": "Shop", "uid": "shop" }))).await;
    assert_eq!(status, 201, "{created}");
    let app_id = created["id"].as_str().expect("app id").to_owned();
    let (status, endpoint) = management(
        &app,
        reqwest::Method::POST,
        "/app/shop/endpoint",
        Some(json!({ "url": url, "channels": ["orders"] })),
    )
    .await;
    assert_eq!(status, 201, "{endpoint}");
    let endpoint_id = endpoint["id"].as_str().expect("ep id").to_owned();
    let (_, secret) =
        management(&app, reqwest::Method::GET, &format!("/app/shop/endpoint/{endpoint_id}/secret"), None).await;
    let secret = secret["key"].as_str().expect("secret").to_owned();

    // A live subscriber of the app's channel sees the message too.
    let mut client = app.client("alice").await;
    let live = format!("apps:{app_id}:orders");
    client.call(json!({ "subscribe": { "channel": live } })).await;

    let (status, message) = management(
        &app,
        reqwest::Method::POST,
        "/app/shop/msg",
        Some(json!({ "eventType": "order.created", "payload": { "order": 42 }, "channels": ["orders"] })),
    )
    .await;
    assert_eq!(status, 202, "{message}");
    let msg_id = message["id"].as_str().expect("msg id").to_owned();

    let received = receiver.wait_for(1).await;
    let (headers, body) = &received[0];
    assert_eq!(headers["webhook-id"].to_str().expect("id"), msg_id);
    assert_eq!(serde_json::from_slice::<Value>(body).expect("json"), json!({ "order": 42 }));
    assert!(verify(&secret, headers, body), "signature verifies");

    let publication = client.next_pub(&live).await;
    assert_eq!(publication["data"], json!({ "order": 42 }));
    assert_eq!(publication["tags"]["event_type"], json!("order.created"));

    // The attempt is recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, attempts) =
            management(&app, reqwest::Method::GET, &format!("/app/shop/attempt/msg/{msg_id}"), None).await;
        if let Some(attempt) = attempts["data"].as_array().and_then(|a| a.first()) {
            assert_eq!(attempt["responseStatusCode"], json!(200), "{attempts}");
            assert_eq!(attempt["status"], json!(0));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn failing_receiver_is_retried_then_succeeds() {
    let app = TestApp::start().await;
    let (receiver, url) = TestReceiver::start(vec![500, 503]).await;
    management(&app, reqwest::Method::POST, "/app", Some(json!({ "name": "R", "uid": "r" }))).await;
    management(&app, reqwest::Method::POST, "/app/r/endpoint", Some(json!({ "url": url }))).await;
    let (_, message) = management(
        &app,
        reqwest::Method::POST,
        "/app/r/msg",
        Some(json!({ "eventType": "x.y", "payload": { "a": 1 } })),
    )
    .await;
    let msg_id = message["id"].as_str().expect("id").to_owned();
    let received = receiver.wait_for(3).await;
    let ids: Vec<_> = received.iter().map(|(h, _)| h["webhook-id"].to_str().expect("id").to_owned()).collect();
    assert_eq!(ids, vec![msg_id.clone(), msg_id.clone(), msg_id.clone()], "the same id on every retry");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, attempts) = management(&app, reqwest::Method::GET, &format!("/app/r/attempt/msg/{msg_id}"), None).await;
        let codes: Vec<_> =
            attempts["data"].as_array().expect("list").iter().map(|a| a["responseStatusCode"].clone()).collect();
        if codes.len() == 3 {
            assert!(
                codes.contains(&json!(500)) && codes.contains(&json!(503)) && codes.contains(&json!(200)),
                "{attempts}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "attempts: {attempts}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn server_api_publish_can_target_webhook_endpoints() {
    let app = TestApp::start().await;
    let (receiver, url) = TestReceiver::start(vec![]).await;
    management(&app, reqwest::Method::POST, "/app", Some(json!({ "name": "S", "uid": "s" }))).await;
    // As in Svix, an endpoint can only filter on event types that exist.
    let (status, body) = management(
        &app,
        reqwest::Method::POST,
        "/event-type",
        Some(json!({ "name": "user.signup", "description": "A user signed up" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = management(
        &app,
        reqwest::Method::POST,
        "/app/s/endpoint",
        Some(json!({ "url": url, "filterTypes": ["user.signup"], "channels": ["news"] })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, body) = app
        .api(
            "publish",
            json!({ "channel": "news", "data": { "hello": 1 }, "webhook": { "app": "s", "event_type": "user.signup" } }),
        )
        .await;
    let message_id = body["result"]["message_id"].as_str().expect("message id").to_owned();
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0].0["webhook-id"].to_str().expect("id"), message_id);
    // An event type the endpoint does not take is not delivered.
    let (_, body) = app
        .api("publish", json!({ "channel": "news", "data": 2, "webhook": { "app": "s", "event_type": "other.type" } }))
        .await;
    assert!(body["result"]["message_id"].is_string(), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received.lock().len(), 1);
}

#[tokio::test]
async fn endpoints_on_private_addresses_are_refused_without_an_allow_list() {
    let mut config = crate::helpers::base_config();
    config.webhooks.allow_networks.clear();
    let app = TestApp::start_with(config).await;
    management(&app, reqwest::Method::POST, "/app", Some(json!({ "name": "P", "uid": "p" }))).await;
    for url in ["http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook", "http://169.254.169.254/latest"]
    {
        let (status, body) =
            management(&app, reqwest::Method::POST, "/app/p/endpoint", Some(json!({ "url": url }))).await;
        assert_eq!(status, 422, "{url}: {body}");
    }
    let (_, list) = management(&app, reqwest::Method::GET, "/app/p/endpoint", None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0), "nothing was created");
}

#[tokio::test]
async fn ed25519_endpoint_gets_v1a_signatures() {
    let app = TestApp::start().await;
    let (receiver, url) = TestReceiver::start(vec![]).await;
    management(&app, reqwest::Method::POST, "/app", Some(json!({ "name": "E", "uid": "e" }))).await;
    let secret = herald_webhooks::signing::generate_ed25519_secret();
    let public = herald_webhooks::signing::public_key(&secret).expect("public key");
    let (status, body) =
        management(&app, reqwest::Method::POST, "/app/e/endpoint", Some(json!({ "url": url, "secret": secret }))).await;
    assert_eq!(status, 201, "{body}");
    management(&app, reqwest::Method::POST, "/app/e/msg", Some(json!({ "eventType": "a.b", "payload": { "k": 1 } })))
        .await;
    let received = receiver.wait_for(1).await;
    let (headers, body) = &received[0];
    let signature = headers["webhook-signature"].to_str().expect("sig");
    assert!(signature.starts_with("v1a,"), "{signature}");
    let id = headers["webhook-id"].to_str().expect("id");
    let timestamp: i64 = headers["webhook-timestamp"].to_str().expect("ts").parse().expect("int");
    let now = herald_store::now_ms() / 1000;
    herald_webhooks::signing::verify(id, timestamp, body, signature, &[&public], now).expect("verifies with whpk_");
    // A malformed whsk_ key is refused.
    let (status, _) =
        management(&app, reqwest::Method::POST, "/app/e/endpoint", Some(json!({ "url": url, "secret": "whsk_short" })))
            .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn max_concurrency_is_settable_and_validated() {
    let app = TestApp::start().await;
    let (_receiver, url) = TestReceiver::start(vec![]).await;
    management(&app, reqwest::Method::POST, "/app", Some(json!({ "name": "C", "uid": "c" }))).await;
    let (status, endpoint) =
        management(&app, reqwest::Method::POST, "/app/c/endpoint", Some(json!({ "url": url }))).await;
    assert_eq!(status, 201);
    assert_eq!(endpoint["maxConcurrency"], json!(1), "ordered by default");
    let id = endpoint["id"].as_str().expect("id").to_owned();
    let (status, patched) = management(
        &app,
        reqwest::Method::PATCH,
        &format!("/app/c/endpoint/{id}"),
        Some(json!({ "maxConcurrency": 16 })),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["maxConcurrency"], json!(16));
    let (status, body) = management(
        &app,
        reqwest::Method::PATCH,
        &format!("/app/c/endpoint/{id}"),
        Some(json!({ "maxConcurrency": 0 })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, created) =
        management(&app, reqwest::Method::POST, "/app/c/endpoint", Some(json!({ "url": url, "maxConcurrency": 8 })))
            .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["maxConcurrency"], json!(8));
}

#[tokio::test]
async fn recover_with_all_redelivers_successful_messages_too() {
    let app = TestApp::start().await;
    let (receiver, url) = TestReceiver::start(vec![]).await;
    management(&app, reqwest::Method::POST, "/app", Some(json!({ "name": "A", "uid": "a" }))).await;
    let (_, endpoint) = management(&app, reqwest::Method::POST, "/app/a/endpoint", Some(json!({ "url": url }))).await;
    let ep = endpoint["id"].as_str().expect("id").to_owned();
    management(&app, reqwest::Method::POST, "/app/a/msg", Some(json!({ "eventType": "x.y", "payload": { "n": 1 } })))
        .await;
    receiver.wait_for(1).await;
    let since = "2020-01-01T00:00:00Z";
    // Without `all`, a delivered message is not sent again (only failures are recovered).
    let (status, _) = management(
        &app,
        reqwest::Method::POST,
        &format!("/app/a/endpoint/{ep}/recover"),
        Some(json!({ "since": since })),
    )
    .await;
    assert_eq!(status, 422, "more than 14 days back is refused");
    let recent = minutes_ago_rfc3339(5);
    let (status, _) = management(
        &app,
        reqwest::Method::POST,
        &format!("/app/a/endpoint/{ep}/recover"),
        Some(json!({ "since": recent })),
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received.lock().len(), 1);
    let (status, _) = management(
        &app,
        reqwest::Method::POST,
        &format!("/app/a/endpoint/{ep}/recover"),
        Some(json!({ "since": recent, "all": true })),
    )
    .await;
    assert_eq!(status, 202);
    receiver.wait_for(2).await;
}

/// RFC 3339 time `minutes` ago.
fn minutes_ago_rfc3339(minutes: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(minutes * 60)).to_string()
}
