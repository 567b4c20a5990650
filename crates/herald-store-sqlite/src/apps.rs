//! Applications, event types and endpoints: the configuration side of webhooks. Plain CRUD,
//! except that changing whether an endpoint is enabled or ordered re-derives its queue (see
//! `deliveries.rs`).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::deliveries::refresh_endpoint_queue;
use super::paging::{KeyKind, Listing, fetch_page, is_descending};
use super::rows::{
    APP_COLUMNS, DbResultExt, ENDPOINT_COLUMNS, EVENT_TYPE_COLUMNS, app_from_row, endpoint_by_id, endpoint_from_row,
    event_type_from_row, json_col, require_app, require_endpoint, resolve_app, resolve_endpoint, to_json, to_json_opt,
};
use herald_store::ids::{self, new_id};
use herald_store::{
    App, Endpoint, EndpointHealth, EndpointUpdate, EventType, NewApp, NewEndpoint, NewEventType, Page, PageRequest,
    PreviousSecret, StoreError, StoreResult, Timestamp, now_ms,
};

// --- applications ---------------------------------------------------------------------------

pub(crate) fn create_app(conn: &Connection, new: NewApp) -> StoreResult<App> {
    let now = now_ms();
    let app = App {
        id: new_id(ids::APP),
        uid: new.uid,
        name: new.name,
        metadata: new.metadata,
        rate_limit: new.rate_limit,
        created_at: now,
        updated_at: now,
    };
    conn.prepare_cached(
        "INSERT INTO apps (id, uid, name, metadata, rate_limit, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(params![app.id, app.uid, app.name, to_json(&app.metadata)?, app.rate_limit, now, now])
    .db()?;
    Ok(app)
}

pub(crate) fn get_app(conn: &Connection, id_or_uid: &str) -> StoreResult<Option<App>> {
    let Some(id) = resolve_app(conn, id_or_uid)? else { return Ok(None) };
    conn.prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?1"))
        .db()?
        .query_row(params![id], app_from_row)
        .optional()
        .db()
}

pub(crate) fn list_apps(conn: &Connection, page: &PageRequest) -> StoreResult<Page<App>> {
    let select = format!("SELECT {APP_COLUMNS} FROM apps WHERE 1 = 1");
    let listing = Listing { select: &select, params: Vec::new(), key: "id", key_kind: KeyKind::Text };
    fetch_page(conn, listing, page, is_descending(page), |app: &App| app.id.clone(), app_from_row)
}

pub(crate) fn update_app(conn: &Connection, id_or_uid: &str, update: NewApp) -> StoreResult<App> {
    let id = require_app(conn, id_or_uid)?;
    conn.prepare_cached(
        "UPDATE apps SET uid = ?2, name = ?3, metadata = ?4, rate_limit = ?5, updated_at = ?6 WHERE id = ?1",
    )
    .db()?
    .execute(params![id, update.uid, update.name, to_json(&update.metadata)?, update.rate_limit, now_ms()])
    .db()?;
    get_app(conn, &id)?.ok_or_else(|| StoreError::NotFound(format!("application {id}")))
}

pub(crate) fn delete_app(conn: &Connection, id_or_uid: &str) -> StoreResult<()> {
    let id = require_app(conn, id_or_uid)?;
    // Endpoints, messages, deliveries and attempts go with it (ON DELETE CASCADE).
    conn.prepare_cached("DELETE FROM apps WHERE id = ?1").db()?.execute(params![id]).db()?;
    Ok(())
}

// --- event types ----------------------------------------------------------------------------

pub(crate) fn create_event_type(conn: &Connection, new: NewEventType) -> StoreResult<EventType> {
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO event_types (name, description, archived, schemas, feature_flag, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )
    .db()?
    .execute(params![
        new.name,
        new.description,
        new.archived,
        to_json_opt(new.schemas.as_ref())?,
        new.feature_flag,
        now
    ])
    .db()?;
    Ok(EventType {
        name: new.name,
        description: new.description,
        archived: new.archived,
        schemas: new.schemas,
        feature_flag: new.feature_flag,
        created_at: now,
        updated_at: now,
    })
}

pub(crate) fn get_event_type(conn: &Connection, name: &str) -> StoreResult<Option<EventType>> {
    conn.prepare_cached(&format!("SELECT {EVENT_TYPE_COLUMNS} FROM event_types WHERE name = ?1"))
        .db()?
        .query_row(params![name], event_type_from_row)
        .optional()
        .db()
}

pub(crate) fn list_event_types(
    conn: &Connection,
    page: &PageRequest,
    include_archived: bool,
) -> StoreResult<Page<EventType>> {
    let select = format!(
        "SELECT {EVENT_TYPE_COLUMNS} FROM event_types WHERE {}",
        if include_archived { "1 = 1" } else { "archived = 0" }
    );
    let listing = Listing { select: &select, params: Vec::new(), key: "name", key_kind: KeyKind::Text };
    fetch_page(conn, listing, page, is_descending(page), |et: &EventType| et.name.clone(), event_type_from_row)
}

pub(crate) fn update_event_type(conn: &Connection, name: &str, update: NewEventType) -> StoreResult<EventType> {
    // The name is the key: renaming is creating another type, so `update.name` is ignored.
    let changed = conn
        .prepare_cached(
            "UPDATE event_types SET description = ?2, archived = ?3, schemas = ?4, feature_flag = ?5, updated_at = ?6 \
             WHERE name = ?1",
        )
        .db()?
        .execute(params![
            name,
            update.description,
            update.archived,
            to_json_opt(update.schemas.as_ref())?,
            update.feature_flag,
            now_ms()
        ])
        .db()?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("event type {name}")));
    }
    get_event_type(conn, name)?.ok_or_else(|| StoreError::NotFound(format!("event type {name}")))
}

pub(crate) fn delete_event_type(conn: &Connection, name: &str, expunge: bool) -> StoreResult<()> {
    let changed = if expunge {
        conn.prepare_cached("DELETE FROM event_types WHERE name = ?1").db()?.execute(params![name]).db()?
    } else {
        conn.prepare_cached("UPDATE event_types SET archived = 1, updated_at = ?2 WHERE name = ?1")
            .db()?
            .execute(params![name, now_ms()])
            .db()?
    };
    if changed == 0 {
        return Err(StoreError::NotFound(format!("event type {name}")));
    }
    Ok(())
}

// --- endpoints ------------------------------------------------------------------------------

pub(crate) fn create_endpoint(conn: &Connection, app_id_or_uid: &str, new: NewEndpoint) -> StoreResult<Endpoint> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let now = now_ms();
    let endpoint = Endpoint::create(app_id, new, now);
    conn.prepare_cached(
        "INSERT INTO endpoints (id, app_id, uid, url, description, version, disabled, disabled_reason, event_types, \
         channels, secret, previous_secrets, headers, rate_limit, max_concurrency, metadata, failing_since, created_at, \
         updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, NULL, ?16, ?16)",
    )
    .db()?
    .execute(params![
        endpoint.id,
        endpoint.app_id,
        endpoint.uid,
        endpoint.url,
        endpoint.description,
        endpoint.version,
        endpoint.disabled,
        to_json_opt(endpoint.event_types.as_ref())?,
        to_json_opt(endpoint.channels.as_ref())?,
        endpoint.secret,
        to_json(&endpoint.previous_secrets)?,
        to_json(&endpoint.headers)?,
        endpoint.rate_limit,
        endpoint.max_concurrency,
        to_json(&endpoint.metadata)?,
        now,
    ])
    .db()?;
    Ok(endpoint)
}

pub(crate) fn get_endpoint(conn: &Connection, app_id_or_uid: &str, id_or_uid: &str) -> StoreResult<Option<Endpoint>> {
    let Some(app_id) = resolve_app(conn, app_id_or_uid)? else { return Ok(None) };
    let Some(id) = resolve_endpoint(conn, &app_id, id_or_uid)? else { return Ok(None) };
    endpoint_by_id(conn, &id)
}

pub(crate) fn list_endpoints(
    conn: &Connection,
    app_id_or_uid: &str,
    page: &PageRequest,
) -> StoreResult<Page<Endpoint>> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let select = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE app_id = ?1");
    let listing = Listing { select: &select, params: vec![Value::Text(app_id)], key: "id", key_kind: KeyKind::Text };
    fetch_page(conn, listing, page, is_descending(page), |ep: &Endpoint| ep.id.clone(), endpoint_from_row)
}

pub(crate) fn update_endpoint(
    conn: &Connection,
    app_id_or_uid: &str,
    id_or_uid: &str,
    update: EndpointUpdate,
) -> StoreResult<Endpoint> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let id = require_endpoint(conn, &app_id, id_or_uid)?;
    let before = endpoint_by_id(conn, &id)?.ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))?;
    // Herald's reason stays while the endpoint stays disabled; a user disabling it gives none.
    // Enabling it again also ends the failure streak, which would otherwise disable it at once.
    let disabled_reason = if update.disabled && before.disabled { before.disabled_reason.clone() } else { None };
    let failing_since = if before.disabled && !update.disabled { None } else { before.failing_since };
    conn.prepare_cached(
        "UPDATE endpoints SET uid = ?2, url = ?3, description = ?4, version = ?5, disabled = ?6, disabled_reason = ?7, \
         event_types = ?8, channels = ?9, headers = ?10, rate_limit = ?11, max_concurrency = ?12, metadata = ?13, \
         failing_since = ?14, updated_at = ?15 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        id,
        update.uid,
        update.url,
        update.description,
        update.version,
        update.disabled,
        disabled_reason,
        to_json_opt(update.event_types.as_ref())?,
        to_json_opt(update.channels.as_ref())?,
        to_json(&update.headers)?,
        update.rate_limit,
        update.max_concurrency,
        to_json(&update.metadata)?,
        failing_since,
        now_ms(),
    ])
    .db()?;
    if before.disabled != update.disabled || (before.max_concurrency == 1) != (update.max_concurrency == 1) {
        refresh_endpoint_queue(conn, &id)?;
    }
    endpoint_by_id(conn, &id)?.ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))
}

pub(crate) fn delete_endpoint(conn: &Connection, app_id_or_uid: &str, id_or_uid: &str) -> StoreResult<()> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let id = require_endpoint(conn, &app_id, id_or_uid)?;
    // Its deliveries and attempts go with it (ON DELETE CASCADE).
    conn.prepare_cached("DELETE FROM endpoints WHERE id = ?1").db()?.execute(params![id]).db()?;
    Ok(())
}

pub(crate) fn rotate_endpoint_secret(
    conn: &Connection,
    app_id_or_uid: &str,
    id_or_uid: &str,
    new_secret: String,
    old_expires_at: Timestamp,
) -> StoreResult<Endpoint> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let id = require_endpoint(conn, &app_id, id_or_uid)?;
    let now = now_ms();
    let (old_secret, mut previous): (String, Vec<PreviousSecret>) = conn
        .prepare_cached("SELECT secret, previous_secrets FROM endpoints WHERE id = ?1")
        .db()?
        .query_row(params![id], |row| Ok((row.get(0)?, json_col(row, 1)?)))
        .db()?;
    // Secrets whose grace period is over are of no use to anyone: drop them here.
    previous.retain(|p| p.expires_at > now);
    previous.push(PreviousSecret { secret: old_secret, expires_at: old_expires_at });
    conn.prepare_cached("UPDATE endpoints SET secret = ?2, previous_secrets = ?3, updated_at = ?4 WHERE id = ?1")
        .db()?
        .execute(params![id, new_secret, to_json(&previous)?, now])
        .db()?;
    endpoint_by_id(conn, &id)?.ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))
}

pub(crate) fn set_endpoint_health(conn: &Connection, endpoint_id: &str, health: EndpointHealth) -> StoreResult<()> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM endpoints WHERE id = ?1)")
        .db()?
        .query_row(params![endpoint_id], |row| row.get(0))
        .db()?;
    if !exists {
        return Err(StoreError::NotFound(format!("endpoint {endpoint_id}")));
    }
    match health {
        EndpointHealth::Failing { at } => {
            conn.prepare_cached("UPDATE endpoints SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL")
                .db()?
                .execute(params![endpoint_id, at])
                .db()?;
        }
        EndpointHealth::Healthy => {
            conn.prepare_cached(
                "UPDATE endpoints SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
            )
            .db()?
            .execute(params![endpoint_id])
            .db()?;
        }
        EndpointHealth::Disabled { reason, at } => {
            conn.prepare_cached(
                "UPDATE endpoints SET disabled = 1, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1",
            )
            .db()?
            .execute(params![endpoint_id, reason, at])
            .db()?;
            refresh_endpoint_queue(conn, endpoint_id)?;
        }
    }
    Ok(())
}
