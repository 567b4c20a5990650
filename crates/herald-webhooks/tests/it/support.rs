//! Test helpers: a scripted webhook receiver on 127.0.0.1:0, a webhooks config for tests, and
//! builders of claimed deliveries.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::config::WebhooksConfig;
use herald_store::{
    ClaimedDelivery, Delivery, DeliveryStatus, Endpoint, Message, PreviousSecret, Timestamp, TriggerType,
};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// A status with a body.
    Body(u16, String),
    /// A status with one extra header.
    Header(u16, &'static str, String),
    /// Wait this long, then answer 200.
    Slow(Duration),
    /// Never answer.
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

#[derive(Default)]
struct ReceiverState {
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A webhook sink: records every request, answers from a script, then 200 once the script is
/// used up.
#[derive(Clone)]
pub struct TestReceiver {
    pub port: u16,
    state: Arc<ReceiverState>,
}

impl TestReceiver {
    pub async fn start(script: impl IntoIterator<Item = Reply>) -> TestReceiver {
        let state = Arc::new(ReceiverState::default());
        state.script.lock().extend(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = listener.local_addr().expect("has an address").port();
        let handler_state = Arc::clone(&state);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&handler_state);
            async move { handle(state, uri.path().to_owned(), headers, body).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestReceiver { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().clone()
    }

    /// The most requests handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Wait until `count` requests have arrived; panics after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("expected {count} requests within {timeout:?}, got {}", self.received().len());
            }
        }
    }
}

async fn handle(state: Arc<ReceiverState>, path: String, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    state.received.lock().push(Received { path, headers, body, at: Instant::now() });
    state.arrived.notify_waiters();
    let reply = state.script.lock().pop_front().unwrap_or(Reply::Status(200));
    let response = match reply {
        Reply::Status(code) => status(code).into_response(),
        Reply::Body(code, body) => (status(code), body).into_response(),
        Reply::Header(code, name, value) => {
            let mut response = status(code).into_response();
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), HeaderValue::from_str(&value).expect("a header value"));
            response
        }
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK.into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).expect("a status code")
}

/// A config for tests: loopback allowed, short timeouts, quick retries without jitter.
pub fn test_config() -> WebhooksConfig {
    WebhooksConfig {
        workers: 8,
        claim_batch: 8,
        poll_interval: Duration::from_millis(50),
        lease: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        retry_schedule: vec![Duration::from_millis(100); 3],
        retry_jitter: 0.0,
        allow_networks: vec!["127.0.0.0/8".to_owned()],
        ..WebhooksConfig::default()
    }
}

pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A claimed delivery of one message to an endpoint at `url`, for sender tests.
pub fn claimed(url: &str, payload: &'static [u8]) -> ClaimedDelivery {
    let now = herald_store::now_ms();
    ClaimedDelivery {
        delivery: Delivery {
            id: 1,
            app_id: "app_test".to_owned(),
            msg_id: "msg_test".to_owned(),
            endpoint_id: "ep_test".to_owned(),
            status: DeliveryStatus::Sending,
            attempts: 0,
            next_attempt_at: Some(now),
            trigger: TriggerType::Scheduled,
            created_at: now,
            updated_at: now,
        },
        message: Message {
            id: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".to_owned(),
            app_id: "app_test".to_owned(),
            event_id: None,
            event_type: "user.created".to_owned(),
            payload: Bytes::from_static(payload),
            channels: None,
            created_at: now,
        },
        endpoint: Endpoint {
            id: "ep_test".to_owned(),
            app_id: "app_test".to_owned(),
            uid: None,
            url: url.to_owned(),
            description: String::new(),
            version: 1,
            disabled: false,
            disabled_reason: None,
            event_types: None,
            channels: None,
            secret: SECRET.to_owned(),
            previous_secrets: Vec::new(),
            headers: BTreeMap::new(),
            rate_limit: None,
            max_concurrency: 1,
            metadata: BTreeMap::new(),
            failing_since: None,
            created_at: now,
            updated_at: now,
        },
    }
}

pub fn previous(secret: &str, expires_at: Timestamp) -> PreviousSecret {
    PreviousSecret { secret: secret.to_owned(), expires_at }
}

/// Poll `check` every 20 ms until it holds; panics after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
