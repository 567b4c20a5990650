//! Applications: `POST/GET /app`, `GET/PUT/PATCH/DELETE /app/{app_id}` (Svix's
//! `v1/endpoints/application.rs`).
//!
//! `{app_id}` is an id (`app_...`) or a uid. Creating with a uid that exists is a 409, or with
//! `?get_if_exists=true` a 200 with the existing application. PUT creates (201) when nothing
//! matches. Application tokens may read their own application but not list, create, change or
//! delete applications.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use herald_store::{NewApp, Order, StoreError};
use http::StatusCode;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ValidationItem};
use crate::input::{Field, JsonBody, QueryParams, read_body};
use crate::output::{AppOut, ListOut, json};
use crate::validate;
use crate::{Inner, Route};

const UID_TAKEN: &str = "An application with that id or uid already exists";

pub(crate) fn routes() -> Vec<Route> {
    vec![("/app", post(create).get(list)), ("/app/{app_id}", get(fetch).put(update).patch(patch).delete(delete))]
}

/// Read an `ApplicationIn` (`{name, uid?, throttleRate?, rateLimit?, metadata?}`). Problems are
/// recorded in `body`; the result is only meaningful when `body.finish()` passes.
pub(crate) fn parse_app_in(body: &mut JsonBody) -> NewApp {
    let mut errors = Vec::new();
    let name: Option<String> = body.required("name");
    if name.as_deref() == Some("") {
        errors.push(ValidationItem::value(&["body", "name"], "Application names must be at least one character"));
    }
    let name = name.unwrap_or_default();
    validate::no_control_characters(&name, &["body", "name"], &mut errors);
    let uid: Option<String> = body.optional(&["uid"]);
    if let Some(uid) = &uid {
        validate::uid(uid, "app", &["body", "uid"], &mut errors);
    }
    let throttle_rate = body
        .optional::<u64>(&["throttleRate"])
        .and_then(|rate| validate::rate(rate, "Application throttle rate", &["body", "throttleRate"], &mut errors));
    let rate_limit = body
        .optional::<u64>(&["rateLimit"])
        .and_then(|rate| validate::rate(rate, "Application rate limits", &["body", "rateLimit"], &mut errors));
    let metadata: BTreeMap<String, String> = body.optional(&["metadata"]).unwrap_or_default();
    validate::metadata(&metadata, &["body", "metadata"], &mut errors);
    body.extend(errors);
    NewApp { uid, name, metadata, rate_limit: throttle_rate.or(rate_limit) }
}

/// Create an application, turning a uid conflict into Svix's 409.
pub(crate) async fn create_app(inner: &Inner, new: NewApp) -> ApiResult<herald_store::App> {
    match inner.store().create_app(new).await {
        Ok(app) => Ok(app),
        Err(StoreError::Conflict(_)) => Err(ApiError::conflict(UID_TAKEN)),
        Err(error) => Err(error.into()),
    }
}

async fn list(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    principal.require_org()?;
    let page = QueryParams::parse(query.as_deref()).page(Order::Ascending)?;
    let apps = inner.store().list_apps(page).await?;
    Ok(json(StatusCode::OK, ListOut::from_page(apps, AppOut::from)))
}

async fn create(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    RawQuery(query): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    principal.require_org()?;
    let get_if_exists = QueryParams::parse(query.as_deref()).bool("get_if_exists", false)?;
    let mut body = JsonBody::parse(&read_body(body, inner.body_limit).await?)?;
    let new = parse_app_in(&mut body);
    body.finish()?;

    if let Some(uid) = &new.uid
        && let Some(existing) = inner.store().get_app(uid).await?
    {
        if get_if_exists {
            return Ok(json(StatusCode::OK, AppOut::from(existing)));
        }
        return Err(ApiError::conflict(UID_TAKEN));
    }
    let app = create_app(&inner, new).await?;
    Ok(json(StatusCode::CREATED, AppOut::from(app)))
}

async fn fetch(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(app_id): Path<String>,
) -> ApiResult<Response> {
    let app = inner.load_app(&principal, &app_id).await?;
    Ok(json(StatusCode::OK, AppOut::from(app)))
}

async fn update(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(app_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    principal.require_org()?;
    let mut body = JsonBody::parse(&read_body(body, inner.body_limit).await?)?;
    let new = parse_app_in(&mut body);
    body.finish()?;

    match inner.store().get_app(&app_id).await? {
        Some(existing) => {
            let app = inner.store().update_app(&existing.id, new).await.map_err(uid_conflict)?;
            Ok(json(StatusCode::OK, AppOut::from(app)))
        }
        None => {
            let app = create_app(&inner, new).await?;
            Ok(json(StatusCode::CREATED, AppOut::from(app)))
        }
    }
}

async fn patch(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(app_id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    principal.require_org()?;
    let mut body = JsonBody::parse(&read_body(body, inner.body_limit).await?)?;
    let mut errors = Vec::new();
    let name: Option<String> = body.non_null("name");
    if let Some(name) = &name {
        if name.is_empty() {
            errors.push(ValidationItem::value(&["body", "name"], "Application names must be at least one character"));
        }
        validate::no_control_characters(name, &["body", "name"], &mut errors);
    }
    let uid: Field<String> = body.field(&["uid"]);
    if let Field::Value(uid) = &uid {
        validate::uid(uid, "app", &["body", "uid"], &mut errors);
    }
    let throttle_rate = nullable_rate(&mut body, "throttleRate", "Application throttle rate", &mut errors);
    let rate_limit = nullable_rate(&mut body, "rateLimit", "Application rate limits", &mut errors);
    let metadata: Option<BTreeMap<String, String>> = match body.field(&["metadata"]) {
        Field::Value(metadata) => Some(metadata),
        Field::Null => Some(BTreeMap::new()),
        Field::Absent => None,
    };
    if let Some(metadata) = &metadata {
        validate::metadata(metadata, &["body", "metadata"], &mut errors);
    }
    body.extend(errors);
    body.finish()?;

    let app = inner.load_app(&principal, &app_id).await?;
    let mut new = NewApp { uid: app.uid, name: app.name, metadata: app.metadata, rate_limit: app.rate_limit };
    if let Some(name) = name {
        new.name = name;
    }
    match uid {
        Field::Value(uid) => new.uid = Some(uid),
        Field::Null => new.uid = None,
        Field::Absent => {}
    }
    // `throttleRate` wins over its deprecated alias when both are given.
    for rate in [rate_limit, throttle_rate] {
        match rate {
            Field::Value(rate) => new.rate_limit = Some(rate),
            Field::Null => new.rate_limit = None,
            Field::Absent => {}
        }
    }
    if let Some(metadata) = metadata {
        new.metadata = metadata;
    }
    let app = inner.store().update_app(&app.id, new).await.map_err(uid_conflict)?;
    Ok(json(StatusCode::OK, AppOut::from(app)))
}

async fn delete(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(app_id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require_org()?;
    let app = inner.load_app(&principal, &app_id).await?;
    inner.store().delete_app(&app.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A nullable rate field of a PATCH body.
pub(crate) fn nullable_rate(
    body: &mut JsonBody,
    name: &str,
    what: &str,
    errors: &mut Vec<ValidationItem>,
) -> Field<u32> {
    match body.field::<u64>(&[name]) {
        Field::Value(rate) => match validate::rate(rate, what, &["body", name], errors) {
            Some(rate) => Field::Value(rate),
            None => Field::Absent,
        },
        Field::Null => Field::Null,
        Field::Absent => Field::Absent,
    }
}

fn uid_conflict(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => ApiError::conflict(UID_TAKEN),
        other => other.into(),
    }
}
