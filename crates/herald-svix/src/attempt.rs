//! Delivery attempts and destinations (Svix's `v1/endpoints/attempt.rs`): attempts by endpoint
//! and by message, one attempt, the endpoints a message goes to, and manual resend.
//!
//! The store pages attempts by endpoint or by message only. The other Svix filters (`status`,
//! `status_code_class`, `endpoint_id`, `event_types`, `channel`, `before`, `after`) are applied
//! to each page as it comes from the store, so a page can hold fewer than `limit` items while
//! `done` is still false; `iterator` always continues after the last attempt the store
//! returned, so walking the pages until `done` sees every match exactly once.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use herald_store::{App, Attempt, AttemptFilter, Message, Order, PageRequest};
use http::StatusCode;
use serde_json::json as json_value;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::input::{MAX_LIMIT, QueryParams};
use crate::message::message_filter;
use crate::output::{AttemptOut, ListOut, MessageEndpointOut, json};
use crate::{Inner, Route};

pub(crate) fn routes() -> Vec<Route> {
    vec![
        ("/app/{app_id}/attempt/endpoint/{endpoint_id}", get(by_endpoint)),
        ("/app/{app_id}/attempt/msg/{msg_id}", get(by_message)),
        // Deprecated Svix routes, still used by older SDKs.
        ("/app/{app_id}/msg/{msg_id}/attempt", get(by_message)),
        ("/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/attempt", get(by_message_and_endpoint)),
        ("/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}", get(one)),
        ("/app/{app_id}/msg/{msg_id}/endpoint", get(destinations)),
        ("/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend", post(resend)),
    ]
}

/// The per-page filters of the attempt lists.
struct AttemptQuery {
    page: PageRequest,
    with_content: bool,
    status: Option<u8>,
    status_code_class: Option<u16>,
    endpoint_id: Option<String>,
    event_types: Option<Vec<String>>,
    channel: Option<String>,
    before: Option<i64>,
    after: Option<i64>,
}

impl AttemptQuery {
    fn parse(query: Option<&str>) -> ApiResult<Self> {
        let query = QueryParams::parse(query);
        let filter = message_filter(&query)?;
        let status = match query.get("status") {
            None | Some("") => None,
            Some(text) => Some(text.parse::<u8>().ok().filter(|s| *s <= 3).ok_or_else(|| {
                ApiError::bad_request(format!("Failed to deserialize query string: status: invalid value `{text}`"))
            })?),
        };
        let status_code_class = match query.get("status_code_class") {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<u16>().ok().filter(|c| [0, 100, 200, 300, 400, 500].contains(c)).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Failed to deserialize query string: status_code_class: invalid value `{text}`"
                    ))
                })?,
            ),
        };
        Ok(Self {
            // Svix lists attempts newest first and takes no `order`.
            page: query.page(Order::Descending)?,
            with_content: query.bool("with_content", true)?,
            status,
            status_code_class,
            endpoint_id: query.get("endpoint_id").filter(|s| !s.is_empty()).map(str::to_owned),
            event_types: filter.event_types,
            channel: filter.channel,
            before: filter.before,
            after: filter.after,
        })
    }

    fn needs_message(&self) -> bool {
        self.event_types.is_some() || self.channel.is_some()
    }

    fn matches(&self, attempt: &Attempt, message: Option<&Message>) -> bool {
        if self.status.is_some_and(|status| status != attempt.status as u8) {
            return false;
        }
        if let Some(class) = self.status_code_class {
            let code = attempt.response_status_code;
            let in_class = if class == 0 { code < 100 } else { code / 100 * 100 == class };
            if !in_class {
                return false;
            }
        }
        if self.endpoint_id.as_ref().is_some_and(|id| *id != attempt.endpoint_id) {
            return false;
        }
        if self.before.is_some_and(|before| attempt.created_at >= before) {
            return false;
        }
        if self.after.is_some_and(|after| attempt.created_at <= after) {
            return false;
        }
        if let Some(message) = message {
            if self.event_types.as_ref().is_some_and(|types| !types.contains(&message.event_type)) {
                return false;
            }
            if let Some(channel) = &self.channel
                && !message.channels.as_ref().is_some_and(|channels| channels.contains(channel))
            {
                return false;
            }
        }
        true
    }
}

/// One page of attempts, filtered.
async fn attempt_page(inner: &Inner, app: &App, filter: AttemptFilter, query: AttemptQuery) -> ApiResult<Response> {
    let page = inner.store().list_attempts(&app.id, filter, query.page.clone()).await?;
    let mut messages: HashMap<String, Option<Message>> = HashMap::new();
    if query.needs_message() {
        for attempt in &page.data {
            if !messages.contains_key(&attempt.msg_id) {
                let message = inner.store().get_message(&app.id, &attempt.msg_id).await?;
                messages.insert(attempt.msg_id.clone(), message);
            }
        }
    }
    let mut out = ListOut::from_page(page, |attempt| attempt);
    out.data.retain(|attempt| {
        let message = messages.get(&attempt.msg_id).and_then(Option::as_ref);
        if query.needs_message() && message.is_none() {
            return false;
        }
        query.matches(attempt, message)
    });
    let out = ListOut {
        data: out.data.into_iter().map(|a| AttemptOut::new(a, query.with_content)).collect(),
        iterator: out.iterator,
        prev_iterator: out.prev_iterator,
        done: out.done,
    };
    Ok(json(StatusCode::OK, out))
}

async fn by_endpoint(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let query = AttemptQuery::parse(query.as_deref())?;
    let (app, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    attempt_page(&inner, &app, AttemptFilter::Endpoint(endpoint.id), query).await
}

async fn by_message(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, msg_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let query = AttemptQuery::parse(query.as_deref())?;
    message_attempts(&inner, &principal, &app_id, &msg_id, query).await
}

async fn by_message_and_endpoint(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, msg_id, endpoint_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let mut query = AttemptQuery::parse(query.as_deref())?;
    query.endpoint_id = Some(endpoint_id);
    message_attempts(&inner, &principal, &app_id, &msg_id, query).await
}

async fn message_attempts(
    inner: &Inner,
    principal: &Principal,
    app_id: &str,
    msg_id: &str,
    mut query: AttemptQuery,
) -> ApiResult<Response> {
    let app = inner.load_app(principal, app_id).await?;
    let message = inner.load_message(&app, msg_id).await?;
    // `endpoint_id` may be a uid: filter on the id it names.
    if let Some(endpoint_id) = &query.endpoint_id {
        query.endpoint_id = Some(inner.load_endpoint(&app, endpoint_id).await?.id);
    }
    // The message is the same for every attempt: check its filters once.
    if query.needs_message() {
        let matches = query.event_types.as_ref().is_none_or(|types| types.contains(&message.event_type))
            && query
                .channel
                .as_ref()
                .is_none_or(|channel| message.channels.as_ref().is_some_and(|channels| channels.contains(channel)));
        if !matches {
            let empty = ListOut::<AttemptOut> { data: Vec::new(), iterator: None, prev_iterator: None, done: true };
            return Ok(json(StatusCode::OK, empty));
        }
        query.event_types = None;
        query.channel = None;
    }
    attempt_page(inner, &app, AttemptFilter::Message(message.id), query).await
}

async fn one(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, msg_id, attempt_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let app = inner.load_app(&principal, &app_id).await?;
    let message = inner.load_message(&app, &msg_id).await?;
    let mut page = PageRequest::first(MAX_LIMIT, Order::Descending);
    loop {
        let attempts =
            inner.store().list_attempts(&app.id, AttemptFilter::Message(message.id.clone()), page.clone()).await?;
        if let Some(attempt) = attempts.data.into_iter().find(|attempt| attempt.id == attempt_id) {
            return Ok(json(StatusCode::OK, AttemptOut::new(attempt, true)));
        }
        match attempts.iterator {
            Some(iterator) if !attempts.done => page.iterator = Some(iterator),
            _ => return Err(ApiError::not_found()),
        }
    }
}

/// The endpoints a message is delivered to, one entry per endpoint with its delivery's state,
/// ordered by endpoint id.
async fn destinations(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, msg_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let page = QueryParams::parse(query.as_deref()).page(Order::Ascending)?;
    let app = inner.load_app(&principal, &app_id).await?;
    let message = inner.load_message(&app, &msg_id).await?;
    let mut deliveries = inner.store().list_deliveries_for_message(&app.id, &message.id).await?;
    deliveries.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
    // One entry per endpoint: the latest delivery (a resend adds a newer one).
    let mut latest: Vec<herald_store::Delivery> = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        match latest.last_mut() {
            Some(last) if last.endpoint_id == delivery.endpoint_id => {
                if delivery.created_at >= last.created_at {
                    *last = delivery;
                }
            }
            _ => latest.push(delivery),
        }
    }

    let (window, done): (Vec<herald_store::Delivery>, bool) = match (&page.iterator, page.prev) {
        (Some(iterator), true) => {
            let before: Vec<_> = latest.into_iter().filter(|d| d.endpoint_id < *iterator).collect();
            let done = before.len() <= page.limit;
            // The `limit` entries just before the iterator.
            let start = before.len().saturating_sub(page.limit);
            (before[start..].to_vec(), done)
        }
        (Some(iterator), false) => {
            let after: Vec<_> = latest.into_iter().filter(|d| d.endpoint_id > *iterator).collect();
            let done = after.len() <= page.limit;
            (after, done)
        }
        (None, _) => {
            let done = latest.len() <= page.limit;
            (latest, done)
        }
    };
    let mut data = Vec::with_capacity(page.limit.min(window.len()));
    for delivery in window.into_iter().take(page.limit) {
        if let Some(endpoint) = inner.store().get_endpoint(&app.id, &delivery.endpoint_id).await? {
            data.push(MessageEndpointOut::new(&endpoint, delivery.status, delivery.next_attempt_at));
        }
    }
    let out = ListOut {
        iterator: data.last().map(|d| d.id.clone()),
        prev_iterator: data.first().map(|d| format!("-{}", d.id)),
        data,
        done,
    };
    Ok(json(StatusCode::OK, out))
}

async fn resend(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, msg_id, endpoint_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let app = inner.load_app(&principal, &app_id).await?;
    let message = inner.load_message(&app, &msg_id).await?;
    let endpoint = inner.load_endpoint(&app, &endpoint_id).await?;
    inner.store().resend(&app.id, &message.id, &endpoint.id).await?;
    (inner.svix.on_rescheduled)();
    Ok(json(StatusCode::ACCEPTED, json_value!({})))
}
