//! Messages: `POST/GET /app/{app_id}/msg`, `GET /app/{app_id}/msg/{msg_id}` (Svix's
//! `v1/endpoints/message.rs`).
//!
//! Creating a message validates the whole body first (event type name, payload an object no
//! larger than `webhooks.max_payload_bytes`, `eventId`, channels), then appends it with its
//! deliveries in one store call and only then calls [`crate::SvixState::on_message`]. The
//! payload is stored byte for byte as the client sent it. A reused `eventId` is a 409, as in
//! Svix, and does not call `on_message`. With `application` in the body, a missing application
//! is created first (its uid must match the path).
//!
//! Accepted but not stored (the store has no place for them): `tags`,
//! `payloadRetentionPeriod`/`payloadRetentionHours` (payloads are kept until the message is),
//! `transformationsParams`. `deliverAt` is refused: Herald cannot schedule a later delivery.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use herald_store::{MessageFilter, NewMessage, Order};
use http::StatusCode;

use crate::application::{create_app, parse_app_in};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ValidationItem};
use crate::input::{JsonBody, QueryParams};
use crate::output::{ListOut, MessageOut, json};
use crate::validate;
use crate::{Inner, Route};

/// `payloadRetentionPeriod` bounds, in days (the hosted API's).
const RETENTION_DAYS: std::ops::RangeInclusive<u64> = 1..=90;
/// `payloadRetentionHours` bounds.
const RETENTION_HOURS: std::ops::RangeInclusive<u64> = 1..=2160;
/// Tags: at most 5, each up to 128 characters of `[a-zA-Z0-9-_./\#]`.
const MAX_TAGS: usize = 5;

pub(crate) fn routes() -> Vec<Route> {
    vec![("/app/{app_id}/msg", post(create).get(list)), ("/app/{app_id}/msg/{msg_id}", get(fetch))]
}

async fn create(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    // As in Svix, sending messages takes an organisation token, not an application token.
    principal.require_org()?;
    let with_content = QueryParams::parse(query.as_deref()).bool("with_content", true)?;
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let mut errors = Vec::new();

    let payload = match body.raw(&["payload", "data"]) {
        None => {
            errors.push(ValidationItem {
                loc: vec!["body".to_owned(), "payload".to_owned()],
                msg: "field required".to_owned(),
                ty: "value_error.missing".to_owned(),
            });
            None
        }
        Some((_, raw)) if raw.get().len() > inner.svix.webhooks.max_payload_bytes => return Err(ApiError::too_large()),
        Some((name, raw)) if !raw.get().starts_with('{') => {
            errors.push(ValidationItem::value(&["body", name], "Payload must be an object."));
            None
        }
        Some((_, raw)) => Some(bytes::Bytes::copy_from_slice(raw.get().as_bytes())),
    };
    let event_type: Option<String> = body.required("eventType");
    if let Some(event_type) = &event_type {
        validate::event_type_name(event_type, &["body", "eventType"], &mut errors);
    }
    let event_type = event_type.unwrap_or_default();
    let event_id: Option<String> = body.optional(&["eventId"]);
    if let Some(event_id) = &event_id {
        validate::uid(event_id, "msg", &["body", "eventId"], &mut errors);
    }
    let channels = body
        .optional::<Vec<String>>(&["channels"])
        .map(|channels| validate::message_channels(channels, &["body", "channels"], &mut errors));
    check_ignored_fields(&mut body, &mut errors);
    let application = match body.raw(&["application"]) {
        Some((_, raw)) if raw.get() != "null" => {
            let mut nested = JsonBody::parse(raw.get().as_bytes())?;
            let new_app = parse_app_in(&mut nested);
            errors.extend(nested.into_errors().into_iter().map(|mut item| {
                item.loc.insert(1, "application".to_owned());
                item
            }));
            Some(new_app)
        }
        _ => None,
    };
    body.extend(errors);
    body.finish()?;
    let payload = payload.ok_or_else(|| ApiError::validation(&["body", "payload"], "field required"))?;

    let app = match inner.store().get_app(&app_id).await? {
        Some(app) => app,
        None => {
            let Some(new_app) = application else {
                return Err(ApiError::not_found_with("Application not found"));
            };
            match new_app.uid.as_deref() {
                None => return Err(uid_problem("Application UID not set in body", "application_uid_missing")),
                Some(uid) if uid != app_id => {
                    return Err(uid_problem(
                        "Application UID in the path and body must match",
                        "application_uid_mismatch",
                    ));
                }
                Some(_) => create_app(&inner, new_app).await?,
            }
        }
    };

    let new = NewMessage { app_id: app.id, event_id, event_type, payload, channels };
    let (message, created) = inner.store().create_message(new).await?;
    if !created {
        return Err(ApiError::conflict("A message with this eventId already exists"));
    }
    (inner.svix.on_message)(&message);
    Ok(json(StatusCode::ACCEPTED, MessageOut::new(message, with_content)))
}

fn uid_problem(msg: &str, ty: &str) -> ApiError {
    ApiError::Validation(vec![ValidationItem {
        loc: vec!["body".to_owned(), "application".to_owned(), "uid".to_owned()],
        msg: msg.to_owned(),
        ty: ty.to_owned(),
    }])
}

/// Fields of the hosted API's `MessageIn` that Herald accepts without storing, checked
/// against their documented bounds so a bad value is still a 422.
fn check_ignored_fields(body: &mut JsonBody, errors: &mut Vec<ValidationItem>) {
    let days = body.optional::<u64>(&["payloadRetentionPeriod"]);
    if days.is_some_and(|days| !RETENTION_DAYS.contains(&days)) {
        errors.push(ValidationItem::value(&["body", "payloadRetentionPeriod"], "must be between 1 and 90 days"));
    }
    let hours = body.optional::<u64>(&["payloadRetentionHours"]);
    if hours.is_some_and(|hours| !RETENTION_HOURS.contains(&hours)) {
        errors.push(ValidationItem::value(&["body", "payloadRetentionHours"], "must be between 1 and 2160 hours"));
    }
    if days.is_some() && hours.is_some() {
        errors.push(ValidationItem::value(
            &["body", "payloadRetentionHours"],
            "payloadRetentionPeriod and payloadRetentionHours are mutually exclusive",
        ));
    }
    if let Some(tags) = body.optional::<Vec<String>>(&["tags"]) {
        let valid_tag = |tag: &String| {
            !tag.is_empty()
                && tag.len() <= 128
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./\\#".contains(&b))
        };
        if tags.len() > MAX_TAGS || !tags.iter().all(valid_tag) {
            errors.push(ValidationItem::value(
                &["body", "tags"],
                "Tags must have at most 5 items, each matching [a-zA-Z0-9\\-_./\\\\#]{1,128}.",
            ));
        }
    }
    if body.optional::<serde_json::Value>(&["deliverAt"]).is_some() {
        errors.push(ValidationItem::value(
            &["body", "deliverAt"],
            "Herald does not support scheduled delivery (deliverAt).",
        ));
    }
}

async fn list(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let query = QueryParams::parse(query.as_deref());
    // Svix lists messages newest first and takes no `order`.
    let page = query.page(Order::Descending)?;
    let with_content = query.bool("with_content", true)?;
    let filter = message_filter(&query)?;
    let app = inner.load_app(&principal, &app_id).await?;
    let messages = inner.store().list_messages(&app.id, page, filter).await?;
    Ok(json(StatusCode::OK, ListOut::from_page(messages, |m| MessageOut::new(m, with_content))))
}

/// `event_types`, `channel`, `before` and `after` of a message list.
pub(crate) fn message_filter(query: &QueryParams) -> ApiResult<MessageFilter> {
    let mut errors = Vec::new();
    let event_types = query.list("event_types");
    for name in &event_types {
        validate::event_type_name(name, &["query", "event_types"], &mut errors);
    }
    let channel = query.get("channel").filter(|c| !c.is_empty()).map(str::to_owned);
    if let Some(channel) = &channel {
        validate::channel(channel, &["query", "channel"], &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(MessageFilter {
        event_types: (!event_types.is_empty()).then_some(event_types),
        channel,
        before: query.timestamp("before")?,
        after: query.timestamp("after")?,
    })
}

async fn fetch(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, msg_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let with_content = QueryParams::parse(query.as_deref()).bool("with_content", true)?;
    let app = inner.load_app(&principal, &app_id).await?;
    let message = inner.load_message(&app, &msg_id).await?;
    Ok(json(StatusCode::OK, MessageOut::new(message, with_content)))
}
