//! Conversions between SQLite rows and the model: error mapping, JSON columns, enum codes and
//! the column lists every query selects, so each table is read the same way everywhere.

use rusqlite::types::Type;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use herald_store::{
    App, Attempt, AttemptStatus, Delivery, DeliveryStatus, Endpoint, ErrorClass, EventType, Message, StoreError,
    StoreResult, TriggerType,
};

/// Maps rusqlite's results to [`StoreError`] without a public `From` impl (SQLite types must not
/// leak out of this module).
pub(crate) trait DbResultExt<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> DbResultExt<T> for Result<T, rusqlite::Error> {
    fn db(self) -> StoreResult<T> {
        self.map_err(store_error)
    }
}

pub(crate) fn store_error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let detail = message.clone().unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::ConstraintViolation => match failure.extended_code {
                    rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::NotFound(detail),
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                        StoreError::Conflict(detail)
                    }
                    _ => StoreError::Backend(detail),
                },
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Unavailable(detail),
                ErrorCode::DiskFull | ErrorCode::CannotOpen | ErrorCode::ReadOnly => StoreError::Unavailable(detail),
                _ => StoreError::Backend(detail),
            }
        }
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound("no such row".to_owned()),
        _ => StoreError::Backend(error.to_string()),
    }
}

/// JSON text for a JSON column.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot encode a JSON column: {e}")))
}

/// JSON text for a nullable JSON column.
pub(crate) fn to_json_opt<T: Serialize>(value: Option<&T>) -> StoreResult<Option<String>> {
    value.map(to_json).transpose()
}

/// Decodes a JSON column; a NULL column decodes as `T::default()` only through [`json_opt`].
pub(crate) fn json_col<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

pub(crate) fn json_opt<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    })
    .transpose()
}

fn bad_code(idx: usize, what: &str, code: i64) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, format!("unknown {what} code {code}").into())
}

pub(crate) fn delivery_status(idx: usize, code: i64) -> rusqlite::Result<DeliveryStatus> {
    Ok(match code {
        0 => DeliveryStatus::Success,
        1 => DeliveryStatus::Pending,
        2 => DeliveryStatus::Failed,
        3 => DeliveryStatus::Sending,
        _ => return Err(bad_code(idx, "delivery status", code)),
    })
}

pub(crate) fn trigger(idx: usize, code: i64) -> rusqlite::Result<TriggerType> {
    Ok(match code {
        0 => TriggerType::Scheduled,
        1 => TriggerType::Manual,
        _ => return Err(bad_code(idx, "trigger", code)),
    })
}

fn attempt_status(idx: usize, code: i64) -> rusqlite::Result<AttemptStatus> {
    Ok(match code {
        0 => AttemptStatus::Success,
        2 => AttemptStatus::Fail,
        _ => return Err(bad_code(idx, "attempt status", code)),
    })
}

pub(crate) fn error_class_text(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Ours => "ours",
        ErrorClass::Network => "network",
        ErrorClass::Receiver => "receiver",
    }
}

fn error_class(idx: usize, text: Option<String>) -> rusqlite::Result<Option<ErrorClass>> {
    let Some(text) = text else { return Ok(None) };
    Ok(Some(match text.as_str() {
        "ours" => ErrorClass::Ours,
        "network" => ErrorClass::Network,
        "receiver" => ErrorClass::Receiver,
        _ => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                idx,
                Type::Text,
                format!("unknown error class {text}").into(),
            ));
        }
    }))
}

/// SQLite stores integers as i64; counts and offsets come back as u64 through this.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Counts and limits go into SQLite as i64 (saturating: "no limit" is `i64::MAX`).
pub(crate) fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) const APP_COLUMNS: &str = "id, uid, name, metadata, rate_limit, created_at, updated_at";

pub(crate) fn app_from_row(row: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        id: row.get(0)?,
        uid: row.get(1)?,
        name: row.get(2)?,
        metadata: json_col(row, 3)?,
        rate_limit: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

pub(crate) const EVENT_TYPE_COLUMNS: &str =
    "name, description, archived, schemas, feature_flag, created_at, updated_at";

pub(crate) fn event_type_from_row(row: &Row<'_>) -> rusqlite::Result<EventType> {
    Ok(EventType {
        name: row.get(0)?,
        description: row.get(1)?,
        archived: row.get(2)?,
        schemas: json_opt(row, 3)?,
        feature_flag: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

pub(crate) const ENDPOINT_COLUMNS: &str = "id, app_id, uid, url, description, version, disabled, disabled_reason, \
     event_types, channels, secret, previous_secrets, headers, rate_limit, max_concurrency, metadata, failing_since, \
     created_at, updated_at";

pub(crate) fn endpoint_from_row(row: &Row<'_>) -> rusqlite::Result<Endpoint> {
    Ok(Endpoint {
        id: row.get(0)?,
        app_id: row.get(1)?,
        uid: row.get(2)?,
        url: row.get(3)?,
        description: row.get(4)?,
        version: row.get(5)?,
        disabled: row.get(6)?,
        disabled_reason: row.get(7)?,
        event_types: json_opt(row, 8)?,
        channels: json_opt(row, 9)?,
        secret: row.get(10)?,
        previous_secrets: json_col(row, 11)?,
        headers: json_col(row, 12)?,
        rate_limit: row.get(13)?,
        max_concurrency: row.get(14)?,
        metadata: json_col(row, 15)?,
        failing_since: row.get(16)?,
        created_at: row.get(17)?,
        updated_at: row.get(18)?,
    })
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, app_id, event_id, event_type, payload, channels, created_at";

pub(crate) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let payload: Vec<u8> = row.get(4)?;
    Ok(Message {
        id: row.get(0)?,
        app_id: row.get(1)?,
        event_id: row.get(2)?,
        event_type: row.get(3)?,
        payload: payload.into(),
        channels: json_opt(row, 5)?,
        created_at: row.get(6)?,
    })
}

pub(crate) const DELIVERY_COLUMNS: &str =
    "id, app_id, msg_id, endpoint_id, status, attempts, next_attempt_at, trigger_type, created_at, updated_at";

pub(crate) fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get(0)?,
        app_id: row.get(1)?,
        msg_id: row.get(2)?,
        endpoint_id: row.get(3)?,
        status: delivery_status(4, row.get(4)?)?,
        attempts: row.get(5)?,
        next_attempt_at: row.get(6)?,
        trigger: trigger(7, row.get(7)?)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

pub(crate) const ATTEMPT_COLUMNS: &str = "id, app_id, msg_id, endpoint_id, url, status, response_status_code, \
     response, response_duration_ms, error_class, trigger_type, created_at";

pub(crate) fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: row.get(0)?,
        app_id: row.get(1)?,
        msg_id: row.get(2)?,
        endpoint_id: row.get(3)?,
        url: row.get(4)?,
        status: attempt_status(5, row.get(5)?)?,
        response_status_code: row.get(6)?,
        response: row.get(7)?,
        response_duration_ms: row.get(8)?,
        error_class: error_class(9, row.get(9)?)?,
        trigger: trigger(10, row.get(10)?)?,
        created_at: row.get(11)?,
    })
}

/// The id of the app named by id or uid (an id wins over another app's equal uid).
pub(crate) fn resolve_app(conn: &Connection, id_or_uid: &str) -> StoreResult<Option<String>> {
    conn.prepare_cached("SELECT id FROM apps WHERE id = ?1 OR uid = ?1 ORDER BY id = ?1 DESC LIMIT 1")
        .db()?
        .query_row(params![id_or_uid], |row| row.get(0))
        .optional()
        .db()
}

/// Like [`resolve_app`], but a missing app is an error.
pub(crate) fn require_app(conn: &Connection, id_or_uid: &str) -> StoreResult<String> {
    resolve_app(conn, id_or_uid)?.ok_or_else(|| StoreError::NotFound(format!("application {id_or_uid}")))
}

/// The id of the endpoint named by id or uid within an app.
pub(crate) fn resolve_endpoint(conn: &Connection, app_id: &str, id_or_uid: &str) -> StoreResult<Option<String>> {
    conn.prepare_cached(
        "SELECT id FROM endpoints WHERE app_id = ?1 AND (id = ?2 OR uid = ?2) ORDER BY id = ?2 DESC LIMIT 1",
    )
    .db()?
    .query_row(params![app_id, id_or_uid], |row| row.get(0))
    .optional()
    .db()
}

pub(crate) fn require_endpoint(conn: &Connection, app_id: &str, id_or_uid: &str) -> StoreResult<String> {
    resolve_endpoint(conn, app_id, id_or_uid)?.ok_or_else(|| StoreError::NotFound(format!("endpoint {id_or_uid}")))
}

/// The id of the message named by id or event id within an app.
pub(crate) fn resolve_message(conn: &Connection, app_id: &str, id_or_event_id: &str) -> StoreResult<Option<String>> {
    conn.prepare_cached(
        "SELECT id FROM messages WHERE app_id = ?1 AND (id = ?2 OR event_id = ?2) ORDER BY id = ?2 DESC LIMIT 1",
    )
    .db()?
    .query_row(params![app_id, id_or_event_id], |row| row.get(0))
    .optional()
    .db()
}

pub(crate) fn require_message(conn: &Connection, app_id: &str, id_or_event_id: &str) -> StoreResult<String> {
    resolve_message(conn, app_id, id_or_event_id)?
        .ok_or_else(|| StoreError::NotFound(format!("message {id_or_event_id}")))
}

/// An endpoint by id (no app check): for the delivery paths, which know the id.
pub(crate) fn endpoint_by_id(conn: &Connection, id: &str) -> StoreResult<Option<Endpoint>> {
    conn.prepare_cached(&format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = ?1"))
        .db()?
        .query_row(params![id], endpoint_from_row)
        .optional()
        .db()
}

/// A message by id (no app check): for the delivery paths.
pub(crate) fn message_by_id(conn: &Connection, id: &str) -> StoreResult<Option<Message>> {
    conn.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"))
        .db()?
        .query_row(params![id], message_from_row)
        .optional()
        .db()
}
