//! `TestApp`: a router over a fresh SQLite store, a recorder for `on_message`, and typed
//! request helpers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use herald_core::config::{ManagementConfig, WebhooksConfig};
use herald_store::{AttemptStatus, DeliveryNext, ErrorClass, Message, NewAttempt, Store};
use herald_store_sqlite::{SqliteConfig, SqliteStore};
use herald_svix::{SvixState, mint_token};
use http::{HeaderMap, Method, Request, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

pub const JWT_SECRET: &str = "test-jwt-secret";
pub const STATIC_TOKEN: &str = "test-static-token";
/// URLs on this host are refused by the test SSRF guard.
pub const BLOCKED_HOST: &str = "blocked.internal";

pub struct TestApp {
    pub router: Router,
    pub store: Arc<dyn Store>,
    pub messages: Arc<parking_lot::Mutex<Vec<Message>>>,
    pub token: String,
    _dir: tempfile::TempDir,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_webhooks(WebhooksConfig::default()).await
    }

    pub async fn with_webhooks(webhooks: WebhooksConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&SqliteConfig::new(dir.path().join("herald.db"))).expect("open store"));
        let messages = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let recorded = messages.clone();
        let state = SvixState {
            store: store.clone(),
            management: ManagementConfig {
                jwt_secret: Some(SecretString::from(JWT_SECRET.to_owned())),
                token: Some(SecretString::from(STATIC_TOKEN.to_owned())),
                ..ManagementConfig::default()
            },
            webhooks,
            on_message: Arc::new(move |message: &Message| recorded.lock().push(message.clone())),
            on_rescheduled: Arc::new(|| {}),
            check_url: Arc::new(|url: &str| {
                if url.contains(BLOCKED_HOST) { Err("address is not public".to_owned()) } else { Ok(()) }
            }),
        };
        let router = Router::new().nest("/api/v1", herald_svix::router(Arc::new(state)));
        let token = mint_token(JWT_SECRET, "org_23rb8YdGqMT0qIzpgGwdXfHirMu");
        Self { router, store, messages, token, _dir: dir }
    }

    /// A request with the test token; `body` is sent as is.
    pub async fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> TestResponse {
        let mut request = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization")) {
            request = request.header("authorization", format!("Bearer {}", self.token));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned()))).expect("request");
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        TestResponse { status, headers, body }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let text = body.map(|b| b.to_string());
        let response = self.raw(method, path, &[], text.as_deref()).await;
        let json = if response.body.is_empty() { Value::Null } else { response.json() };
        (response.status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Create an application and return its id.
    pub async fn app(&self, name: &str, uid: Option<&str>) -> String {
        let mut body = serde_json::json!({ "name": name });
        if let Some(uid) = uid {
            body["uid"] = uid.into();
        }
        let (status, app) = self.post("/api/v1/app", body).await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        app["id"].as_str().expect("id").to_owned()
    }

    pub async fn event_type(&self, name: &str) {
        let (status, body) =
            self.post("/api/v1/event-type", serde_json::json!({"name": name, "description": name})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Create an endpoint and return its id.
    pub async fn endpoint(&self, app_id: &str, body: Value) -> String {
        let (status, endpoint) = self.post(&format!("/api/v1/app/{app_id}/endpoint"), body).await;
        assert_eq!(status, StatusCode::CREATED, "{endpoint}");
        endpoint["id"].as_str().expect("id").to_owned()
    }

    /// Create a message and return its id.
    pub async fn message(&self, app_id: &str, body: Value) -> String {
        let (status, message) = self.post(&format!("/api/v1/app/{app_id}/msg"), body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{message}");
        message["id"].as_str().expect("id").to_owned()
    }

    /// Play the dispatcher: claim every due delivery and record one attempt for each, with
    /// `status_code` (2xx succeeds, anything else fails for good).
    pub async fn deliver_all(&self, status_code: u16) -> usize {
        let claimed = self.store.claim_due_deliveries(herald_store::now_ms(), 100, 60_000).await.expect("claim");
        for claim in &claimed {
            let ok = (200..300).contains(&status_code);
            let attempt = NewAttempt {
                url: claim.endpoint.url.clone(),
                status: if ok { AttemptStatus::Success } else { AttemptStatus::Fail },
                response_status_code: status_code,
                response: format!("{{\"answer\":{status_code}}}"),
                response_duration_ms: 12,
                error_class: (!ok).then_some(ErrorClass::Receiver),
                trigger: claim.delivery.trigger,
                created_at: herald_store::now_ms(),
            };
            let next = if ok { DeliveryNext::Succeeded } else { DeliveryNext::Dead };
            self.store.record_attempt(claim.delivery.id, attempt, next).await.expect("record");
        }
        claimed.len()
    }
}

/// The keys of a JSON object, sorted.
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

/// Assert `value` is an RFC 3339 UTC timestamp as the API writes them.
pub fn assert_timestamp(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(text.len() >= 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T', "{text}");
}
