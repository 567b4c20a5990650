//! Applications, event types and endpoints: the configuration side of webhooks. Plain CRUD,
//! except that changing whether an endpoint is enabled or ordered re-derives its queue (see
//! `deliveries.rs`). Secrets, their rotation and endpoint health live here, in the shared
//! database, so every node signs with the same secrets and sees the same failure streak.

use super::deliveries::refresh_endpoint_queue;
use super::paging::{KeyKind, Listing, fetch_page, is_descending};
use super::rows::{
    APP_COLUMNS, Conn, ENDPOINT_COLUMNS, EVENT_TYPE_COLUMNS, app_from_row, endpoint_by_id, endpoint_from_row,
    event_type_from_row, execute, json_col, query_one, query_opt, require_app, require_endpoint, resolve_app,
    resolve_endpoint, to_json, to_json_opt,
};
use herald_store::ids::{self, new_id};
use herald_store::{
    App, Endpoint, EndpointHealth, EndpointUpdate, EventType, NewApp, NewEndpoint, NewEventType, Page, PageRequest,
    PreviousSecret, StoreError, StoreResult, Timestamp, now_ms,
};

fn rate(limit: Option<u32>) -> Option<i64> {
    limit.map(i64::from)
}

// --- applications ---------------------------------------------------------------------------

pub(crate) async fn create_app(conn: &Conn, new: NewApp) -> StoreResult<App> {
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
    execute(
        conn,
        "INSERT INTO apps (id, uid, name, metadata, rate_limit, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[&app.id, &app.uid, &app.name, &to_json(&app.metadata)?, &rate(app.rate_limit), &now],
    )
    .await?;
    Ok(app)
}

pub(crate) async fn get_app(conn: &Conn, id_or_uid: &str) -> StoreResult<Option<App>> {
    let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1 OR uid = $1 ORDER BY (id = $1) DESC LIMIT 1");
    query_opt(conn, &sql, &[&id_or_uid]).await?.map(|row| app_from_row(&row)).transpose()
}

pub(crate) async fn list_apps(conn: &Conn, page: &PageRequest) -> StoreResult<Page<App>> {
    let select = format!("SELECT {APP_COLUMNS} FROM apps WHERE TRUE");
    let listing = Listing { select: &select, params: Vec::new(), key: "id", key_kind: KeyKind::Text };
    fetch_page(conn, listing, page, is_descending(page), |app: &App| app.id.clone(), app_from_row).await
}

pub(crate) async fn update_app(conn: &Conn, id_or_uid: &str, update: NewApp) -> StoreResult<App> {
    let id = require_app(conn, id_or_uid).await?;
    let sql = format!(
        "UPDATE apps SET uid = $2, name = $3, metadata = $4, rate_limit = $5, updated_at = $6 WHERE id = $1 \
         RETURNING {APP_COLUMNS}"
    );
    let row = query_opt(
        conn,
        &sql,
        &[&id, &update.uid, &update.name, &to_json(&update.metadata)?, &rate(update.rate_limit), &now_ms()],
    )
    .await?;
    row.map(|row| app_from_row(&row)).transpose()?.ok_or_else(|| StoreError::NotFound(format!("application {id}")))
}

pub(crate) async fn delete_app(conn: &Conn, id_or_uid: &str) -> StoreResult<()> {
    let id = require_app(conn, id_or_uid).await?;
    // Endpoints, messages, deliveries and attempts go with it (ON DELETE CASCADE).
    execute(conn, "DELETE FROM apps WHERE id = $1", &[&id]).await?;
    Ok(())
}

// --- event types ----------------------------------------------------------------------------

pub(crate) async fn create_event_type(conn: &Conn, new: NewEventType) -> StoreResult<EventType> {
    let now = now_ms();
    execute(
        conn,
        "INSERT INTO event_types (name, description, archived, schemas, feature_flag, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[&new.name, &new.description, &new.archived, &to_json_opt(new.schemas.as_ref())?, &new.feature_flag, &now],
    )
    .await?;
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

pub(crate) async fn get_event_type(conn: &Conn, name: &str) -> StoreResult<Option<EventType>> {
    let sql = format!("SELECT {EVENT_TYPE_COLUMNS} FROM event_types WHERE name = $1");
    query_opt(conn, &sql, &[&name]).await?.map(|row| event_type_from_row(&row)).transpose()
}

pub(crate) async fn list_event_types(
    conn: &Conn,
    page: &PageRequest,
    include_archived: bool,
) -> StoreResult<Page<EventType>> {
    let select = format!(
        "SELECT {EVENT_TYPE_COLUMNS} FROM event_types WHERE {}",
        if include_archived { "TRUE" } else { "NOT archived" }
    );
    let listing = Listing { select: &select, params: Vec::new(), key: "name", key_kind: KeyKind::Text };
    fetch_page(conn, listing, page, is_descending(page), |et: &EventType| et.name.clone(), event_type_from_row).await
}

pub(crate) async fn update_event_type(conn: &Conn, name: &str, update: NewEventType) -> StoreResult<EventType> {
    // The name is the key: renaming is creating another type, so `update.name` is ignored.
    let sql = format!(
        "UPDATE event_types SET description = $2, archived = $3, schemas = $4, feature_flag = $5, updated_at = $6 \
         WHERE name = $1 RETURNING {EVENT_TYPE_COLUMNS}"
    );
    let row = query_opt(
        conn,
        &sql,
        &[
            &name,
            &update.description,
            &update.archived,
            &to_json_opt(update.schemas.as_ref())?,
            &update.feature_flag,
            &now_ms(),
        ],
    )
    .await?;
    row.map(|row| event_type_from_row(&row))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("event type {name}")))
}

pub(crate) async fn delete_event_type(conn: &Conn, name: &str, expunge: bool) -> StoreResult<()> {
    let changed = if expunge {
        execute(conn, "DELETE FROM event_types WHERE name = $1", &[&name]).await?
    } else {
        execute(conn, "UPDATE event_types SET archived = TRUE, updated_at = $2 WHERE name = $1", &[&name, &now_ms()])
            .await?
    };
    if changed == 0 {
        return Err(StoreError::NotFound(format!("event type {name}")));
    }
    Ok(())
}

// --- endpoints ------------------------------------------------------------------------------

pub(crate) async fn create_endpoint(conn: &Conn, app_id_or_uid: &str, new: NewEndpoint) -> StoreResult<Endpoint> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let now = now_ms();
    let endpoint = Endpoint::create(app_id, new, now);
    execute(
        conn,
        "INSERT INTO endpoints (id, app_id, uid, url, description, version, disabled, disabled_reason, event_types, \
         channels, secret, previous_secrets, headers, rate_limit, max_concurrency, metadata, failing_since, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10, $11, $12, $13, $14, $15, NULL, $16, $16)",
        &[
            &endpoint.id,
            &endpoint.app_id,
            &endpoint.uid,
            &endpoint.url,
            &endpoint.description,
            &endpoint.version,
            &endpoint.disabled,
            &endpoint.event_types,
            &endpoint.channels,
            &endpoint.secret,
            &to_json(&endpoint.previous_secrets)?,
            &to_json(&endpoint.headers)?,
            &rate(endpoint.rate_limit),
            &i64::from(endpoint.max_concurrency),
            &to_json(&endpoint.metadata)?,
            &now,
        ],
    )
    .await?;
    Ok(endpoint)
}

pub(crate) async fn get_endpoint(conn: &Conn, app_id_or_uid: &str, id_or_uid: &str) -> StoreResult<Option<Endpoint>> {
    let Some(app_id) = resolve_app(conn, app_id_or_uid).await? else { return Ok(None) };
    let Some(id) = resolve_endpoint(conn, &app_id, id_or_uid).await? else { return Ok(None) };
    endpoint_by_id(conn, &id).await
}

pub(crate) async fn list_endpoints(
    conn: &Conn,
    app_id_or_uid: &str,
    page: &PageRequest,
) -> StoreResult<Page<Endpoint>> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let select = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE app_id = $1");
    let listing = Listing { select: &select, params: vec![Box::new(app_id)], key: "id", key_kind: KeyKind::Text };
    fetch_page(conn, listing, page, is_descending(page), |ep: &Endpoint| ep.id.clone(), endpoint_from_row).await
}

pub(crate) async fn update_endpoint(
    conn: &Conn,
    app_id_or_uid: &str,
    id_or_uid: &str,
    update: EndpointUpdate,
) -> StoreResult<Endpoint> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let id = require_endpoint(conn, &app_id, id_or_uid).await?;
    // Read under the queue lock: the decisions below depend on the state this replaces.
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1 FOR NO KEY UPDATE");
    let before = query_opt(conn, &sql, &[&id])
        .await?
        .map(|row| endpoint_from_row(&row))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))?;
    // Herald's reason stays while the endpoint stays disabled; a user disabling it gives none.
    // Enabling it again also ends the failure streak, which would otherwise disable it at once.
    let disabled_reason = if update.disabled && before.disabled { before.disabled_reason.clone() } else { None };
    let failing_since = if before.disabled && !update.disabled { None } else { before.failing_since };
    execute(
        conn,
        "UPDATE endpoints SET uid = $2, url = $3, description = $4, version = $5, disabled = $6, disabled_reason = $7, \
         event_types = $8, channels = $9, headers = $10, rate_limit = $11, max_concurrency = $12, metadata = $13, \
         failing_since = $14, updated_at = $15 WHERE id = $1",
        &[
            &id,
            &update.uid,
            &update.url,
            &update.description,
            &update.version,
            &update.disabled,
            &disabled_reason,
            &update.event_types,
            &update.channels,
            &to_json(&update.headers)?,
            &rate(update.rate_limit),
            &i64::from(update.max_concurrency),
            &to_json(&update.metadata)?,
            &failing_since,
            &now_ms(),
        ],
    )
    .await?;
    if before.disabled != update.disabled || (before.max_concurrency == 1) != (update.max_concurrency == 1) {
        refresh_endpoint_queue(conn, &id).await?;
    }
    endpoint_by_id(conn, &id).await?.ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))
}

pub(crate) async fn delete_endpoint(conn: &Conn, app_id_or_uid: &str, id_or_uid: &str) -> StoreResult<()> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let id = require_endpoint(conn, &app_id, id_or_uid).await?;
    // Its deliveries and attempts go with it (ON DELETE CASCADE).
    execute(conn, "DELETE FROM endpoints WHERE id = $1", &[&id]).await?;
    Ok(())
}

pub(crate) async fn rotate_endpoint_secret(
    conn: &Conn,
    app_id_or_uid: &str,
    id_or_uid: &str,
    new_secret: String,
    old_expires_at: Timestamp,
) -> StoreResult<Endpoint> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let id = require_endpoint(conn, &app_id, id_or_uid).await?;
    let now = now_ms();
    // Locked, so two nodes rotating at once both keep the secret the other replaced.
    let row = query_one(conn, "SELECT secret, previous_secrets FROM endpoints WHERE id = $1 FOR NO KEY UPDATE", &[&id])
        .await?;
    let old_secret: String = super::rows::get(&row, 0)?;
    let mut previous: Vec<PreviousSecret> = json_col(&row, 1)?;
    // Secrets whose grace period is over are of no use to anyone: drop them here.
    previous.retain(|p| p.expires_at > now);
    previous.push(PreviousSecret { secret: old_secret, expires_at: old_expires_at });
    execute(
        conn,
        "UPDATE endpoints SET secret = $2, previous_secrets = $3, updated_at = $4 WHERE id = $1",
        &[&id, &new_secret, &to_json(&previous)?, &now],
    )
    .await?;
    endpoint_by_id(conn, &id).await?.ok_or_else(|| StoreError::NotFound(format!("endpoint {id}")))
}

pub(crate) async fn set_endpoint_health(conn: &Conn, endpoint_id: &str, health: EndpointHealth) -> StoreResult<()> {
    let row = query_one(conn, "SELECT EXISTS (SELECT 1 FROM endpoints WHERE id = $1)", &[&endpoint_id]).await?;
    if !super::rows::get::<bool>(&row, 0)? {
        return Err(StoreError::NotFound(format!("endpoint {endpoint_id}")));
    }
    // Only real changes write: most calls report what is already recorded.
    match health {
        EndpointHealth::Failing { at } => {
            execute(
                conn,
                "UPDATE endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL",
                &[&endpoint_id, &at],
            )
            .await?;
        }
        EndpointHealth::Healthy => {
            execute(
                conn,
                "UPDATE endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
                &[&endpoint_id],
            )
            .await?;
        }
        EndpointHealth::Disabled { reason, at } => {
            execute(
                conn,
                "UPDATE endpoints SET disabled = TRUE, disabled_reason = $2, updated_at = $3 WHERE id = $1",
                &[&endpoint_id, &reason, &at],
            )
            .await?;
            refresh_endpoint_queue(conn, endpoint_id).await?;
        }
    }
    Ok(())
}
