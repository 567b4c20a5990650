//! Endpoints: CRUD under `/app/{app_id}/endpoint`, the signing secret (`/secret`,
//! `/secret/rotate`), extra headers (`/headers`) and `/recover` (Svix's
//! `v1/endpoints/endpoint/*.rs`).
//!
//! An endpoint's `eventTypes` (alias `filterTypes`) must name existing, unarchived event types,
//! and its URL must pass the server's SSRF guard ([`crate::SvixState::check_url`]); both are
//! checked after the body's own validation and before anything is written. A missing `secret`
//! is generated (`whsec_` + 32 random bytes). Deliveries keep message order per endpoint
//! (`max_concurrency` 1) unless created or changed with the Herald extension `maxConcurrency`
//! (1 to 1000 deliveries in flight; above 1, message order is not kept).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use herald_store::{App, Endpoint, EndpointUpdate, NewEndpoint, Order};
use http::StatusCode;
use serde::Serialize;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ValidationItem};
use crate::input::{Field, JsonBody, QueryParams, RateFields, metadata_field, uid_field};
use crate::output::{EndpointOut, ListOut, json};
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::validate;
use crate::{Inner, Route};

/// Rotations whose old secret is still valid, at most (Svix's `MAX_OLD_KEYS`).
const MAX_PREVIOUS_SECRETS: usize = 10;
/// Longest grace period a rotation may ask for: 7 days.
const MAX_GRACE_PERIOD_SECONDS: u64 = 604_800;
/// Furthest back a recovery may reach: 14 days, plus 5 minutes of clock skew, as in Svix.
const MAX_RECOVER_MS: i64 = (14 * 24 * 3600 + 5 * 60) * 1000;
/// New endpoints get ordered delivery.
const DEFAULT_MAX_CONCURRENCY: u32 = 1;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        ("/app/{app_id}/endpoint", post(create).get(list)),
        ("/app/{app_id}/endpoint/{endpoint_id}", get(fetch).put(update).patch(patch).delete(delete)),
        ("/app/{app_id}/endpoint/{endpoint_id}/secret", get(secret)),
        ("/app/{app_id}/endpoint/{endpoint_id}/secret/rotate", post(rotate_secret)),
        ("/app/{app_id}/endpoint/{endpoint_id}/headers", get(headers).put(replace_headers).patch(patch_headers)),
        ("/app/{app_id}/endpoint/{endpoint_id}/recover", post(recover)),
    ]
}

/// The user-settable fields of `EndpointIn` / `EndpointUpdate`.
struct EndpointInput {
    uid: Option<String>,
    url: String,
    description: String,
    version: i32,
    disabled: bool,
    event_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    rate_limit: Option<u32>,
    max_concurrency: u32,
    metadata: BTreeMap<String, String>,
}

/// Most deliveries in flight to one endpoint that `maxConcurrency` may allow.
const MAX_CONCURRENCY_LIMIT: u64 = 1000;

/// Herald extension `maxConcurrency`: deliveries in flight at once; 1 keeps message order.
fn max_concurrency(value: u64, errors: &mut Vec<ValidationItem>) -> u32 {
    if (1..=MAX_CONCURRENCY_LIMIT).contains(&value) {
        return value as u32;
    }
    errors.push(ValidationItem::value(
        &["body", "maxConcurrency"],
        "maxConcurrency must be between 1 (ordered delivery) and 1000",
    ));
    DEFAULT_MAX_CONCURRENCY
}

fn parse_endpoint_in(body: &mut JsonBody) -> EndpointInput {
    let mut errors = Vec::new();
    let url = body
        .required::<String>("url")
        .and_then(|url| validate::endpoint_url(&url, &["body", "url"], &mut errors))
        .unwrap_or_default();
    let description: String = body.optional(&["description"]).unwrap_or_default();
    validate::no_control_characters(&description, &["body", "description"], &mut errors);
    let uid = uid_field(body, "ep", &mut errors).into_option();
    let version = body.optional::<u64>(&["version"]).map_or(1, |v| version(v, &mut errors));
    let disabled: bool = body.optional(&["disabled"]).unwrap_or(false);
    let event_types = body
        .optional::<Vec<String>>(&["eventTypes", "filterTypes"])
        .map(|types| validate::endpoint_event_types(types, &["body", "eventTypes"], &mut errors));
    let channels = body
        .optional::<Vec<String>>(&["channels"])
        .map(|channels| validate::endpoint_channels(channels, &["body", "channels"], &mut errors));
    let rate_limit = RateFields::read(body, "Endpoint", &mut errors).value();
    let max_concurrency =
        body.optional::<u64>(&["maxConcurrency"]).map_or(DEFAULT_MAX_CONCURRENCY, |v| max_concurrency(v, &mut errors));
    let metadata = metadata_field(body, &mut errors).unwrap_or_default();
    body.extend(errors);
    EndpointInput {
        uid,
        url,
        description,
        version,
        disabled,
        event_types,
        channels,
        rate_limit,
        max_concurrency,
        metadata,
    }
}

fn version(value: u64, errors: &mut Vec<ValidationItem>) -> i32 {
    match i32::try_from(value) {
        Ok(version) if version >= 1 && value <= u64::from(u16::MAX) => version,
        _ => {
            errors.push(ValidationItem::value(&["body", "version"], "Endpoint versions must be at least one if set"));
            1
        }
    }
}

/// `EndpointIn`'s optional `secret` and `headers` (not part of `EndpointUpdate`).
fn parse_secret_and_headers(body: &mut JsonBody) -> (Option<String>, BTreeMap<String, String>) {
    let mut errors = Vec::new();
    let secret = body
        .optional::<String>(&["secret"])
        .and_then(|secret| validate::secret(&secret, &["body", "secret"], &mut errors));
    let headers: BTreeMap<String, String> = body.optional(&["headers"]).unwrap_or_default();
    validate::headers(&headers, &["body", "headers"], &mut errors);
    body.extend(errors);
    (secret, headers)
}

/// The checks that need the store or the network, run once the body is known to be valid:
/// the event types exist, and the URL passes the SSRF guard.
async fn check_references(inner: &Inner, event_types: Option<&[String]>, url: Option<&str>) -> ApiResult<()> {
    if let Some(event_types) = event_types {
        let mut missing = Vec::new();
        for name in event_types {
            match inner.store().get_event_type(name).await? {
                Some(event_type) if !event_type.archived => {}
                _ => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            let msg = format!("The following event types don't exist: {}", missing.join(", "));
            return Err(ApiError::validation(&["body", "eventTypes"], msg));
        }
    }
    if let Some(url) = url {
        (inner.svix.check_url)(url).map_err(|reason| ApiError::validation(&["body", "url"], reason))?;
    }
    Ok(())
}

/// An endpoint's current settings as an update, to change some of them.
fn update_from(endpoint: &Endpoint) -> EndpointUpdate {
    EndpointUpdate {
        uid: endpoint.uid.clone(),
        url: endpoint.url.clone(),
        description: endpoint.description.clone(),
        version: endpoint.version,
        disabled: endpoint.disabled,
        event_types: endpoint.event_types.clone(),
        channels: endpoint.channels.clone(),
        headers: endpoint.headers.clone(),
        rate_limit: endpoint.rate_limit,
        max_concurrency: endpoint.max_concurrency,
        metadata: endpoint.metadata.clone(),
    }
}

async fn create_endpoint(
    inner: &Inner,
    app: &App,
    input: EndpointInput,
    secret: Option<String>,
    headers: BTreeMap<String, String>,
) -> ApiResult<Endpoint> {
    let new = NewEndpoint {
        uid: input.uid,
        url: input.url,
        description: input.description,
        version: input.version,
        disabled: input.disabled,
        event_types: input.event_types,
        channels: input.channels,
        secret: secret.unwrap_or_else(validate::generate_secret),
        headers,
        rate_limit: input.rate_limit,
        max_concurrency: input.max_concurrency,
        metadata: input.metadata,
    };
    Ok(inner.store().create_endpoint(&app.id, new).await?)
}

async fn list(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let page = QueryParams::parse(query.as_deref()).page(Order::Descending)?;
    let app = inner.load_app(&principal, &app_id).await?;
    let endpoints = inner.store().list_endpoints(&app.id, page).await?;
    Ok(json(StatusCode::OK, ListOut::from_page(endpoints, EndpointOut::from)))
}

async fn create(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(app_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let input = parse_endpoint_in(&mut body);
    let (secret, headers) = parse_secret_and_headers(&mut body);
    body.finish()?;

    let app = inner.load_app(&principal, &app_id).await?;
    check_references(&inner, input.event_types.as_deref(), Some(&input.url)).await?;
    let endpoint = create_endpoint(&inner, &app, input, secret, headers).await?;
    Ok(json(StatusCode::CREATED, EndpointOut::from(endpoint)))
}

async fn fetch(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    Ok(json(StatusCode::OK, EndpointOut::from(endpoint)))
}

async fn update(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let input = parse_endpoint_in(&mut body);
    body.finish()?;

    let app = inner.load_app(&principal, &app_id).await?;
    check_references(&inner, input.event_types.as_deref(), Some(&input.url)).await?;
    let Some(existing) = inner.store().get_endpoint(&app.id, &endpoint_id).await? else {
        let endpoint = create_endpoint(&inner, &app, input, None, BTreeMap::new()).await?;
        return Ok(json(StatusCode::CREATED, EndpointOut::from(endpoint)));
    };
    let update = EndpointUpdate {
        uid: input.uid,
        url: input.url,
        description: input.description,
        version: input.version,
        disabled: input.disabled,
        event_types: input.event_types,
        channels: input.channels,
        rate_limit: input.rate_limit,
        max_concurrency: input.max_concurrency,
        metadata: input.metadata,
        ..update_from(&existing)
    };
    let endpoint = inner.store().update_endpoint(&app.id, &existing.id, update).await?;
    Ok(json(StatusCode::OK, EndpointOut::from(endpoint)))
}

async fn patch(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let mut errors = Vec::new();
    let description: Option<String> = body.non_null("description");
    if let Some(description) = &description {
        validate::no_control_characters(description, &["body", "description"], &mut errors);
    }
    let uid = uid_field(&mut body, "ep", &mut errors);
    let url =
        body.non_null::<String>("url").and_then(|url| validate::endpoint_url(&url, &["body", "url"], &mut errors));
    let version = body.non_null::<u64>("version").map(|v| version(v, &mut errors));
    let disabled: Option<bool> = body.non_null("disabled");
    let event_types = body
        .field::<Vec<String>>(&["eventTypes", "filterTypes"])
        .map(|types| validate::endpoint_event_types(types, &["body", "eventTypes"], &mut errors));
    let channels = body
        .field::<Vec<String>>(&["channels"])
        .map(|channels| validate::endpoint_channels(channels, &["body", "channels"], &mut errors));
    let rate_limit = RateFields::read(&mut body, "Endpoint", &mut errors);
    let concurrency = body.non_null::<u64>("maxConcurrency").map(|v| max_concurrency(v, &mut errors));
    let metadata = metadata_field(&mut body, &mut errors);
    body.extend(errors);
    body.finish()?;

    let (app, existing) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    let new_event_types = match &event_types {
        Field::Value(types) => Some(types.as_slice()),
        _ => None,
    };
    check_references(&inner, new_event_types, url.as_deref()).await?;

    let mut update = update_from(&existing);
    if let Some(description) = description {
        update.description = description;
    }
    uid.apply_to(&mut update.uid);
    if let Some(url) = url {
        update.url = url;
    }
    if let Some(version) = version {
        update.version = version;
    }
    if let Some(disabled) = disabled {
        update.disabled = disabled;
    }
    event_types.apply_to(&mut update.event_types);
    channels.apply_to(&mut update.channels);
    rate_limit.apply_to(&mut update.rate_limit);
    if let Some(concurrency) = concurrency {
        update.max_concurrency = concurrency;
    }
    if let Some(metadata) = metadata {
        update.metadata = metadata;
    }
    let endpoint = inner.store().update_endpoint(&app.id, &existing.id, update).await?;
    Ok(json(StatusCode::OK, EndpointOut::from(endpoint)))
}

async fn delete(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    inner.store().delete_endpoint(&app.id, &endpoint.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct SecretOut {
    key: String,
}

async fn secret(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    Ok(json(StatusCode::OK, SecretOut { key: endpoint.secret }))
}

async fn rotate_secret(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let mut errors = Vec::new();
    let key = body.optional::<String>(&["key"]).and_then(|key| validate::secret(&key, &["body", "key"], &mut errors));
    let grace_ms = match body.optional::<u64>(&["gracePeriodSeconds"]) {
        Some(seconds) if seconds > MAX_GRACE_PERIOD_SECONDS => {
            errors
                .push(ValidationItem::value(&["body", "gracePeriodSeconds"], "Duration must be between 0 and 7 days"));
            0
        }
        Some(seconds) => i64::try_from(seconds).unwrap_or(0) * 1000,
        None => i64::try_from(inner.svix.webhooks.secret_rotation_overlap.as_millis()).unwrap_or(i64::MAX),
    };
    body.extend(errors);
    body.finish()?;

    let (app, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    let now = herald_store::now_ms();
    let still_valid = endpoint.previous_secrets.iter().filter(|previous| previous.expires_at > now).count();
    if still_valid + usize::from(grace_ms > 0) > MAX_PREVIOUS_SECRETS {
        let next_expiry = endpoint.previous_secrets.iter().map(|p| p.expires_at).filter(|&at| at > now).min();
        return Err(ApiError::http(
            StatusCode::BAD_REQUEST,
            "limit_reached",
            format!(
                "You can only rotate a key {MAX_PREVIOUS_SECRETS} times; please wait for old keys to expire. Your next key expires at {}.",
                next_expiry.map(format_rfc3339).unwrap_or_default()
            ),
        ));
    }
    let new_secret = key.unwrap_or_else(validate::generate_secret);
    inner
        .store()
        .rotate_endpoint_secret(&app.id, &endpoint.id, new_secret.clone(), now.saturating_add(grace_ms))
        .await?;
    // The open-source Svix server answers 204; the current SDKs (svix 2.9 for Python) parse
    // the new secret from the body. 200 with `{key}` serves both.
    Ok(json(StatusCode::OK, SecretOut { key: new_secret }))
}

#[derive(Serialize)]
struct HeadersOut {
    headers: BTreeMap<String, String>,
    sensitive: Vec<String>,
}

async fn headers(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    let (headers, sensitive) = validate::split_sensitive(&endpoint.headers);
    Ok(json(StatusCode::OK, HeadersOut { headers, sensitive }))
}

async fn replace_headers(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<StatusCode> {
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let headers: BTreeMap<String, String> = body.required("headers").unwrap_or_default();
    let mut errors = Vec::new();
    validate::headers(&headers, &["body", "headers"], &mut errors);
    body.extend(errors);
    body.finish()?;

    let (app, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    let update = EndpointUpdate { headers, ..update_from(&endpoint) };
    inner.store().update_endpoint(&app.id, &endpoint.id, update).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn patch_headers(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<StatusCode> {
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let changes: BTreeMap<String, Option<String>> = body.required("headers").unwrap_or_default();
    let mut errors = Vec::new();
    for (name, value) in &changes {
        validate::header_name(name, &["body", "headers", name], &mut errors);
        if let Some(value) = value {
            validate::header_value(value, &["body", "headers", name], &mut errors);
        }
    }
    body.extend(errors);
    body.finish()?;

    let (app, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    let mut update = update_from(&endpoint);
    for (name, value) in changes {
        match value {
            Some(value) => update.headers.insert(name, value),
            None => update.headers.remove(&name),
        };
    }
    inner.store().update_endpoint(&app.id, &endpoint.id, update).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecoverOut {
    id: String,
    status: &'static str,
    task: &'static str,
    updated_at: String,
}

/// Redeliver the messages whose delivery to this endpoint failed, created in
/// `[since, until)`. Svix runs this as a background task and answers `running`; Herald's store
/// schedules the deliveries in one call, so the task is already `finished`.
async fn recover(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path((app_id, endpoint_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let since = body.required::<String>("since").and_then(|text| date_time(&mut body, "since", &text));
    let until = body.optional::<String>(&["until"]).and_then(|text| date_time(&mut body, "until", &text));
    // Herald extension: `all: true` redelivers every message of the period, not only the failed.
    let all: bool = body.optional(&["all"]).unwrap_or(false);
    let now = herald_store::now_ms();
    if let Some(since) = since
        && since < until.unwrap_or(now) - MAX_RECOVER_MS
    {
        body.push(ValidationItem::value(&["body", "since"], "Cannot recover more than 14 days of messages"));
    }
    body.finish()?;
    let since = since.ok_or_else(|| ApiError::validation(&["body", "since"], "field required"))?;

    let (app, endpoint) = inner.load_app_endpoint(&principal, &app_id, &endpoint_id).await?;
    let scheduled = inner.store().recover_endpoint(&app.id, &endpoint.id, since, until, all).await?;
    (inner.svix.on_rescheduled)();
    tracing::info!(app_id = %app.id, endpoint_id = %endpoint.id, scheduled, all, "Recovering deliveries.");
    let out = RecoverOut {
        id: herald_store::ids::new_id("qtask"),
        status: "finished",
        task: "endpoint.recover",
        updated_at: format_rfc3339(now),
    };
    Ok(json(StatusCode::ACCEPTED, out))
}

fn date_time(body: &mut JsonBody, name: &str, text: &str) -> Option<i64> {
    let parsed = parse_rfc3339(text);
    if parsed.is_none() {
        body.push(ValidationItem {
            loc: vec!["body".to_owned(), name.to_owned()],
            msg: format!("invalid date-time `{text}`"),
            ty: "value_error.jsondecode".to_owned(),
        });
    }
    parsed
}
