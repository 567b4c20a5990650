//! Applications: `POST/GET /app`, `GET/PUT/PATCH/DELETE /app/{app_id}` (Svix's
//! `v1/endpoints/application.rs`).
//!
//! `{app_id}` is an id (`app_...`) or a uid. Creating with a uid that exists is a 409, or with
//! `?get_if_exists=true` a 200 with the existing application. PUT creates (201) when nothing
//! matches. Application tokens may read their own application but not list, create, change or
//! delete applications.

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
use crate::input::{JsonBody, QueryParams, RateFields, metadata_field, uid_field};
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
    if let Some(name) = &name {
        check_name(name, &mut errors);
    }
    let name = name.unwrap_or_default();
    let uid = uid_field(body, "app", &mut errors).into_option();
    let rate_limit = RateFields::read(body, "Application", &mut errors).value();
    let metadata = metadata_field(body, &mut errors).unwrap_or_default();
    body.extend(errors);
    NewApp { uid, name, metadata, rate_limit }
}

fn check_name(name: &str, errors: &mut Vec<ValidationItem>) {
    if name.is_empty() {
        errors.push(ValidationItem::value(&["body", "name"], "Application names must be at least one character"));
    }
    validate::no_control_characters(name, &["body", "name"], errors);
}

/// Create an application, turning a uid conflict into Svix's 409.
pub(crate) async fn create_app(inner: &Inner, new: NewApp) -> ApiResult<herald_store::App> {
    inner.store().create_app(new).await.map_err(uid_conflict)
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
    let mut body = JsonBody::read(body, inner.body_limit).await?;
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
    let mut body = JsonBody::read(body, inner.body_limit).await?;
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
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let mut errors = Vec::new();
    let name: Option<String> = body.non_null("name");
    if let Some(name) = &name {
        check_name(name, &mut errors);
    }
    let uid = uid_field(&mut body, "app", &mut errors);
    let rate_limit = RateFields::read(&mut body, "Application", &mut errors);
    let metadata = metadata_field(&mut body, &mut errors);
    body.extend(errors);
    body.finish()?;

    let app = inner.load_app(&principal, &app_id).await?;
    let mut new = NewApp { uid: app.uid, name: app.name, metadata: app.metadata, rate_limit: app.rate_limit };
    if let Some(name) = name {
        new.name = name;
    }
    uid.apply_to(&mut new.uid);
    rate_limit.apply_to(&mut new.rate_limit);
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

fn uid_conflict(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => ApiError::conflict(UID_TAKEN),
        other => other.into(),
    }
}
