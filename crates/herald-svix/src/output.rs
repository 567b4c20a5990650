//! Response shapes, field for field as the Svix server serialises them (`ApplicationOut`,
//! `EventTypeOut`, `EndpointOut`, `MessageOut`, `MessageAttemptOut`, `ListResponse_*`), built
//! from the store's model types.

use std::collections::BTreeMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use herald_store::{App, Attempt, AttemptStatus, DeliveryStatus, Endpoint, EventType, Message, Page, TriggerType};
use http::StatusCode;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::time::format_rfc3339;

/// `status` and a JSON body.
pub(crate) fn json(status: StatusCode, body: impl Serialize) -> Response {
    (status, Json(body)).into_response()
}

/// Svix's `ListResponse`: `prevIterator` is `-<id>` and left out when there is none.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListOut<T> {
    pub data: Vec<T>,
    pub iterator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_iterator: Option<String>,
    pub done: bool,
}

impl<T> ListOut<T> {
    pub fn from_page<S>(page: Page<S>, map: impl FnMut(S) -> T) -> Self {
        Self {
            data: page.data.into_iter().map(map).collect(),
            iterator: page.iterator,
            prev_iterator: page.prev_iterator.map(|id| format!("-{id}")),
            done: page.done,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub name: String,
    /// Deprecated alias of `throttleRate`, written only when set (as Svix does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    pub throttle_rate: Option<u32>,
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub metadata: BTreeMap<String, String>,
}

impl From<App> for AppOut {
    fn from(app: App) -> Self {
        Self {
            uid: app.uid,
            name: app.name,
            rate_limit: app.rate_limit,
            throttle_rate: app.rate_limit,
            id: app.id,
            created_at: format_rfc3339(app.created_at),
            updated_at: format_rfc3339(app.updated_at),
            metadata: app.metadata,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventTypeOut {
    pub name: String,
    pub description: String,
    pub archived: bool,
    /// Herald does not store `deprecated`; always false.
    pub deprecated: bool,
    pub schemas: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
    pub feature_flag: Option<String>,
}

impl EventTypeOut {
    pub fn new(event_type: EventType, with_schemas: bool) -> Self {
        Self {
            name: event_type.name,
            description: event_type.description,
            archived: event_type.archived,
            deprecated: false,
            schemas: if with_schemas { event_type.schemas } else { None },
            created_at: format_rfc3339(event_type.created_at),
            updated_at: format_rfc3339(event_type.updated_at),
            feature_flag: event_type.feature_flag,
        }
    }
}

/// The endpoint fields shared by `EndpointOut` and `MessageEndpointOut`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointCommonOut {
    pub description: String,
    pub rate_limit: Option<u32>,
    pub throttle_rate: Option<u32>,
    pub uid: Option<String>,
    pub url: String,
    pub version: i32,
    pub disabled: bool,
    pub event_types: Option<Vec<String>>,
    /// Deprecated alias of `eventTypes`.
    pub filter_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub created_at: String,
    pub updated_at: String,
}

impl EndpointCommonOut {
    fn new(endpoint: &Endpoint) -> Self {
        Self {
            description: endpoint.description.clone(),
            rate_limit: endpoint.rate_limit,
            throttle_rate: endpoint.rate_limit,
            uid: endpoint.uid.clone(),
            url: endpoint.url.clone(),
            version: endpoint.version,
            disabled: endpoint.disabled,
            event_types: endpoint.event_types.clone(),
            filter_types: endpoint.event_types.clone(),
            channels: endpoint.channels.clone(),
            created_at: format_rfc3339(endpoint.created_at),
            updated_at: format_rfc3339(endpoint.updated_at),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EndpointOut {
    #[serde(flatten)]
    pub common: EndpointCommonOut,
    pub id: String,
    pub metadata: BTreeMap<String, String>,
    /// Herald extension: deliveries in flight at once (1 keeps message order).
    pub max_concurrency: u32,
}

impl From<Endpoint> for EndpointOut {
    fn from(endpoint: Endpoint) -> Self {
        Self {
            common: EndpointCommonOut::new(&endpoint),
            id: endpoint.id,
            metadata: endpoint.metadata,
            max_concurrency: endpoint.max_concurrency,
        }
    }
}

/// An endpoint a message was (or is being) delivered to, with the delivery's state.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageEndpointOut {
    #[serde(flatten)]
    pub common: EndpointCommonOut,
    pub id: String,
    pub status: u8,
    pub status_text: &'static str,
    pub next_attempt: Option<String>,
}

impl MessageEndpointOut {
    pub fn new(endpoint: &Endpoint, status: DeliveryStatus, next_attempt_at: Option<i64>) -> Self {
        Self {
            common: EndpointCommonOut::new(endpoint),
            id: endpoint.id.clone(),
            status: status as u8,
            status_text: delivery_status_text(status),
            next_attempt: next_attempt_at.map(format_rfc3339),
        }
    }
}

/// Svix's `MessageStatusText`.
pub(crate) fn delivery_status_text(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Success => "success",
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Failed => "fail",
        DeliveryStatus::Sending => "sending",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageOut {
    pub event_id: Option<String>,
    pub event_type: String,
    pub payload: Box<RawValue>,
    pub channels: Option<Vec<String>>,
    pub id: String,
    pub timestamp: String,
}

impl MessageOut {
    /// Without content the payload is `{}`, as in Svix.
    pub fn new(message: Message, with_content: bool) -> Self {
        let payload = with_content
            .then(|| {
                std::str::from_utf8(&message.payload).ok().and_then(|text| RawValue::from_string(text.to_owned()).ok())
            })
            .flatten()
            .unwrap_or_else(empty_object);
        Self {
            event_id: message.event_id,
            event_type: message.event_type,
            payload,
            channels: message.channels,
            id: message.id,
            timestamp: format_rfc3339(message.created_at),
        }
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("`{{}}` is valid JSON"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptOut {
    pub url: String,
    pub response: String,
    pub response_status_code: u16,
    pub response_duration_ms: i64,
    pub status: u8,
    pub status_text: &'static str,
    pub trigger_type: u8,
    pub msg_id: String,
    pub endpoint_id: String,
    pub id: String,
    pub timestamp: String,
}

impl AttemptOut {
    /// Without content the response body reads `{}`, as in Svix.
    pub fn new(attempt: Attempt, with_content: bool) -> Self {
        let (status, status_text) = match attempt.status {
            AttemptStatus::Success => (AttemptStatus::Success as u8, "success"),
            AttemptStatus::Fail => (AttemptStatus::Fail as u8, "fail"),
        };
        Self {
            url: attempt.url,
            response: if with_content { attempt.response } else { "{}".to_owned() },
            response_status_code: attempt.response_status_code,
            response_duration_ms: attempt.response_duration_ms,
            status,
            status_text,
            trigger_type: match attempt.trigger {
                TriggerType::Scheduled => 0,
                TriggerType::Manual => 1,
            },
            msg_id: attempt.msg_id,
            endpoint_id: attempt.endpoint_id,
            id: attempt.id,
            timestamp: format_rfc3339(attempt.created_at),
        }
    }
}
