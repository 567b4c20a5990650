//! Event types: `POST/GET /event-type`, `GET/PUT/PATCH/DELETE /event-type/{name}` (Svix's
//! `v1/endpoints/event_type.rs`).
//!
//! Event types are global, as in Svix. Creating a name that exists is a 409
//! `event_type_exists`, unless it is archived: then it is unarchived and updated (201).
//! `DELETE` archives; `?expunge=true` removes. Lists leave `schemas` out unless
//! `?with_content=true`, and archived types out unless `?include_archived=true`.
//! `deprecated` is accepted but not stored (always `false` on output).

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use herald_store::{EventType, NewEventType, Order, StoreError};
use http::StatusCode;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ValidationItem};
use crate::input::{Field, JsonBody, QueryParams};
use crate::output::{EventTypeOut, ListOut, json};
use crate::validate;
use crate::{Inner, Route};

pub(crate) fn routes() -> Vec<Route> {
    vec![
        ("/event-type", post(create).get(list)),
        ("/event-type/{event_type_name}", get(fetch).put(update).patch(patch).delete(delete)),
    ]
}

fn exists() -> ApiError {
    ApiError::http(StatusCode::CONFLICT, "event_type_exists", "An event_type with this name already exists")
}

/// A store conflict on create means another request took the name first.
fn name_conflict(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => exists(),
        other => other.into(),
    }
}

async fn load(inner: &Inner, name: &str) -> ApiResult<EventType> {
    inner.store().get_event_type(name).await?.ok_or_else(ApiError::not_found)
}

/// The fields shared by `EventTypeIn` and `EventTypeUpdate` (everything but the name).
fn parse_event_type_fields(body: &mut JsonBody, name: String) -> NewEventType {
    let mut errors = Vec::new();
    let description: String = body.required("description").unwrap_or_default();
    validate::no_control_characters(&description, &["body", "description"], &mut errors);
    let archived: bool = body.optional(&["archived"]).unwrap_or(false);
    // Accepted for compatibility; the store has no column for it.
    let _deprecated: Option<bool> = body.optional(&["deprecated"]);
    let schemas = schemas(body, &mut errors).into_option();
    let feature_flag: Option<String> = body.optional(&["featureFlag"]);
    if let Some(flag) = &feature_flag {
        validate::event_type_name(flag, &["body", "featureFlag"], &mut errors);
    }
    body.extend(errors);
    NewEventType { name, description, archived, schemas, feature_flag }
}

/// `schemas` must be an object (versions to JSON schemas) or `null`.
fn schemas(body: &mut JsonBody, errors: &mut Vec<ValidationItem>) -> Field<serde_json::Value> {
    match body.field::<serde_json::Value>(&["schemas"]) {
        Field::Value(value) if !value.is_object() => {
            errors.push(ValidationItem::value(&["body", "schemas"], "schemas must be an object"));
            Field::Absent
        }
        other => other,
    }
}

async fn list(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let query = QueryParams::parse(query.as_deref());
    let page = query.page(Order::Ascending)?;
    let include_archived = query.bool("include_archived", false)?;
    let with_content = query.bool("with_content", false)?;
    let event_types = inner.store().list_event_types(page, include_archived).await?;
    Ok(json(StatusCode::OK, ListOut::from_page(event_types, |et| EventTypeOut::new(et, with_content))))
}

async fn create(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    body: Body,
) -> ApiResult<Response> {
    principal.require_org()?;
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let mut errors = Vec::new();
    let name: Option<String> = body.required("name");
    if let Some(name) = &name {
        validate::event_type_name(name, &["body", "name"], &mut errors);
    }
    let name = name.unwrap_or_default();
    body.extend(errors);
    let new = parse_event_type_fields(&mut body, name);
    body.finish()?;

    let event_type = match inner.store().get_event_type(&new.name).await? {
        Some(existing) if existing.archived => inner.store().update_event_type(&existing.name, new).await?,
        Some(_) => return Err(exists()),
        None => inner.store().create_event_type(new).await.map_err(name_conflict)?,
    };
    Ok(json(StatusCode::CREATED, EventTypeOut::new(event_type, true)))
}

async fn fetch(State(inner): State<Arc<Inner>>, Path(name): Path<String>) -> ApiResult<Response> {
    let event_type = load(&inner, &name).await?;
    Ok(json(StatusCode::OK, EventTypeOut::new(event_type, true)))
}

async fn update(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    principal.require_org()?;
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let mut errors = Vec::new();
    validate::event_type_name(&name, &["path", "event_type_name"], &mut errors);
    body.extend(errors);
    let new = parse_event_type_fields(&mut body, name);
    body.finish()?;

    match inner.store().get_event_type(&new.name).await? {
        Some(existing) => {
            let event_type = inner.store().update_event_type(&existing.name, new).await?;
            Ok(json(StatusCode::OK, EventTypeOut::new(event_type, true)))
        }
        None => {
            let event_type = inner.store().create_event_type(new).await.map_err(name_conflict)?;
            Ok(json(StatusCode::CREATED, EventTypeOut::new(event_type, true)))
        }
    }
}

async fn patch(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    principal.require_org()?;
    let mut body = JsonBody::read(body, inner.body_limit).await?;
    let mut errors = Vec::new();
    let description: Option<String> = body.non_null("description");
    if let Some(description) = &description {
        validate::no_control_characters(description, &["body", "description"], &mut errors);
    }
    let archived: Option<bool> = body.non_null("archived");
    let _deprecated: Option<bool> = body.non_null("deprecated");
    let schemas = schemas(&mut body, &mut errors);
    let feature_flag: Field<String> = body.field(&["featureFlag"]);
    if let Field::Value(flag) = &feature_flag {
        validate::event_type_name(flag, &["body", "featureFlag"], &mut errors);
    }
    body.extend(errors);
    body.finish()?;

    let existing = load(&inner, &name).await?;
    let mut new = NewEventType {
        name: existing.name,
        description: description.unwrap_or(existing.description),
        archived: archived.unwrap_or(existing.archived),
        schemas: existing.schemas,
        feature_flag: existing.feature_flag,
    };
    schemas.apply_to(&mut new.schemas);
    feature_flag.apply_to(&mut new.feature_flag);
    let event_type = inner.store().update_event_type(&new.name.clone(), new).await?;
    Ok(json(StatusCode::OK, EventTypeOut::new(event_type, true)))
}

async fn delete(
    State(inner): State<Arc<Inner>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<StatusCode> {
    principal.require_org()?;
    let expunge = QueryParams::parse(query.as_deref()).bool("expunge", false)?;
    let existing = load(&inner, &name).await?;
    inner.store().delete_event_type(&existing.name, expunge).await?;
    Ok(StatusCode::NO_CONTENT)
}
