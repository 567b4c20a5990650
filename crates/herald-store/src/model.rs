//! The store's model types. Plain data: no SQL, no HTTP. Names follow Svix's where a Svix
//! concept exists (application, endpoint, message, attempt).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Timestamp = i64;

pub fn now_ms() -> Timestamp {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A page request: `limit` rows after `iterator` (exclusive), in `order`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    /// An id returned as `iterator` or `prev_iterator` by a previous page.
    pub iterator: Option<String>,
    /// With `prev`, the page before `iterator` instead of after it.
    pub prev: bool,
    pub order: Order,
}

impl PageRequest {
    pub fn first(limit: usize, order: Order) -> Self {
        Self { limit, iterator: None, prev: false, order }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Ascending,
    Descending,
}

/// One page, shaped like Svix's `{data, iterator, prevIterator, done}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `iterator` for the next page.
    pub iterator: Option<String>,
    /// Pass as `iterator` with `prev` for the previous page.
    pub prev_iterator: Option<String>,
    /// No more rows after this page.
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct App {
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    /// Messages per second the app's endpoints receive at most (Svix `throttleRate`).
    pub rate_limit: Option<u32>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewApp {
    pub uid: Option<String>,
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    pub rate_limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub archived: bool,
    /// JSON schemas by version, as given.
    pub schemas: Option<serde_json::Value>,
    pub feature_flag: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewEventType {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub schemas: Option<serde_json::Value>,
    pub feature_flag: Option<String>,
}

/// A secret that remains valid for signing until `expires_at` after a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: String,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub app_id: String,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub version: i32,
    pub disabled: bool,
    /// Why it was disabled by Herald (410 Gone, failing too long); `None` when by a user.
    pub disabled_reason: Option<String>,
    /// Event types it receives; `None` receives all.
    pub event_types: Option<Vec<String>>,
    /// Channels it receives; `None` receives all. A message matches when it shares a channel.
    pub channels: Option<Vec<String>>,
    /// `whsec_<base64>` for HMAC (v1), or `whsk_<base64>` (an ed25519 secret key) for v1a.
    pub secret: String,
    pub previous_secrets: Vec<PreviousSecret>,
    /// Extra request headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
    /// Deliveries per second at most.
    pub rate_limit: Option<u32>,
    /// Concurrent deliveries at most; 1 (the default) also keeps message order.
    pub max_concurrency: u32,
    pub metadata: BTreeMap<String, String>,
    /// Start of the current failure streak.
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Endpoint {
    /// A new endpoint of `app_id` as every backend creates it: a fresh id, enabled state and
    /// secret from `new`, no failure streak, created and updated `now`.
    pub fn create(app_id: String, new: NewEndpoint, now: Timestamp) -> Endpoint {
        Endpoint {
            id: crate::ids::new_id(crate::ids::ENDPOINT),
            app_id,
            uid: new.uid,
            url: new.url,
            description: new.description,
            version: new.version,
            disabled: new.disabled,
            disabled_reason: None,
            event_types: new.event_types,
            channels: new.channels,
            secret: new.secret,
            previous_secrets: Vec::new(),
            headers: new.headers,
            rate_limit: new.rate_limit,
            max_concurrency: new.max_concurrency,
            metadata: new.metadata,
            failing_since: None,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewEndpoint {
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub version: i32,
    pub disabled: bool,
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub secret: String,
    pub headers: BTreeMap<String, String>,
    pub rate_limit: Option<u32>,
    pub max_concurrency: u32,
    pub metadata: BTreeMap<String, String>,
}

/// The user-settable fields of an endpoint (everything but the secret).
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointUpdate {
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub version: i32,
    pub disabled: bool,
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub headers: BTreeMap<String, String>,
    pub rate_limit: Option<u32>,
    pub max_concurrency: u32,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointHealth {
    /// A failure; starts the streak if none is running.
    Failing { at: Timestamp },
    /// A success; ends the streak.
    Healthy,
    /// Disabled by Herald.
    Disabled { reason: String, at: Timestamp },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: String,
    pub app_id: String,
    /// The caller's id for the event (Svix `eventId`), unique per app when set.
    pub event_id: Option<String>,
    pub event_type: String,
    /// The payload as JSON text, exactly as received.
    pub payload: Bytes,
    pub channels: Option<Vec<String>>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub app_id: String,
    pub event_id: Option<String>,
    pub event_type: String,
    pub payload: Bytes,
    pub channels: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub event_types: Option<Vec<String>>,
    pub channel: Option<String>,
    pub before: Option<Timestamp>,
    pub after: Option<Timestamp>,
}

/// Svix `MessageStatus` numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Success = 0,
    Pending = 1,
    /// Dead-lettered after the last attempt (or a final 4xx).
    Failed = 2,
    Sending = 3,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub app_id: String,
    pub msg_id: String,
    pub endpoint_id: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub trigger: TriggerType,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A delivery handed to a dispatcher worker, with what it needs to send it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub message: Message,
    pub endpoint: Endpoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggerType {
    Scheduled = 0,
    Manual = 1,
}

/// Svix `MessageAttemptStatus`-compatible outcome of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptStatus {
    Success = 0,
    Fail = 2,
}

/// Whose fault a failed attempt was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Herald could not build or send the request (bad URL, refused by the SSRF guard, ...).
    Ours,
    /// Connect error, reset, timeout, TLS.
    Network,
    /// The receiver answered with a non-2xx status.
    Receiver,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewAttempt {
    pub url: String,
    pub status: AttemptStatus,
    /// 0 when no response was received.
    pub response_status_code: u16,
    /// A bounded prefix of the response body.
    pub response: String,
    pub response_duration_ms: i64,
    pub error_class: Option<ErrorClass>,
    pub trigger: TriggerType,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub id: String,
    pub app_id: String,
    pub msg_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub status: AttemptStatus,
    pub response_status_code: u16,
    pub response: String,
    pub response_duration_ms: i64,
    pub error_class: Option<ErrorClass>,
    pub trigger: TriggerType,
    pub created_at: Timestamp,
}

/// What happens to a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryNext {
    Succeeded,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// No more tries: dead letter.
    Dead,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptFilter {
    Endpoint(String),
    Message(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub sending: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// A cached 2xx response for an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// Hash of method, path and body, so a reused key with another request is detectable.
    pub request_hash: String,
    pub status: u16,
    pub body: Bytes,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    pub epoch: String,
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewPublication {
    pub channel: String,
    /// The payload as the client protocols carry it (JSON text or bytes).
    pub data: Bytes,
    /// Encoded `ClientInfo` of the publisher, if any (opaque to the store).
    pub info: Option<Bytes>,
    pub tags: BTreeMap<String, String>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredPublication {
    pub channel: String,
    pub offset: u64,
    pub data: Bytes,
    pub info: Option<Bytes>,
    pub tags: BTreeMap<String, String>,
    pub created_at: Timestamp,
}
