//! The event log: appending a message fans it out to the app's matching endpoints as pending
//! deliveries in the same transaction; reading it back by id, event id or page.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::deliveries::{QueueTarget, insert_delivery};
use super::paging::{KeyKind, Listing, fetch_page, is_descending};
use super::rows::{DbResultExt, MESSAGE_COLUMNS, json_opt, message_from_row, require_app, resolve_app, to_json_opt};
use herald_store::ids::{self, new_id};
use herald_store::{Message, MessageFilter, NewMessage, Page, PageRequest, StoreResult, TriggerType, now_ms};

pub(crate) fn create_message(conn: &Connection, new: NewMessage) -> StoreResult<(Message, bool)> {
    let app_id = require_app(conn, &new.app_id)?;
    if let Some(event_id) = &new.event_id
        && let Some(existing) = message_by_event_id(conn, &app_id, event_id)?
    {
        return Ok((existing, false));
    }
    let now = now_ms();
    let message = Message {
        id: new_id(ids::MESSAGE),
        app_id,
        event_id: new.event_id,
        event_type: new.event_type,
        payload: new.payload,
        channels: new.channels,
        created_at: now,
    };
    conn.prepare_cached(
        "INSERT INTO messages (id, app_id, event_id, event_type, payload, channels, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(params![
        message.id,
        message.app_id,
        message.event_id,
        message.event_type,
        message.payload.as_ref(),
        to_json_opt(message.channels.as_ref())?,
        now,
    ])
    .db()?;
    for target in matching_endpoints(conn, &message)? {
        insert_delivery(conn, &target, &message.app_id, &message.id, TriggerType::Scheduled, now, now)?;
    }
    Ok((message, true))
}

/// The enabled endpoints of the message's app whose filters let it through: no event type
/// filter or one naming its type, and no channel filter or one sharing a channel with it (a
/// message without channels passes only endpoints without a channel filter).
fn matching_endpoints(conn: &Connection, message: &Message) -> StoreResult<Vec<QueueTarget>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, event_types, channels, max_concurrency FROM endpoints \
             WHERE app_id = ?1 AND disabled = 0 ORDER BY id",
        )
        .db()?;
    let rows = stmt
        .query_map(params![message.app_id], |row| {
            let event_types: Option<Vec<String>> = json_opt(row, 1)?;
            let channels: Option<Vec<String>> = json_opt(row, 2)?;
            let max_concurrency: u32 = row.get(3)?;
            Ok((row.get::<_, String>(0)?, event_types, channels, max_concurrency))
        })
        .db()?;
    let mut targets = Vec::new();
    for row in rows {
        let (endpoint_id, event_types, channels, max_concurrency) = row.db()?;
        let type_matches = event_types.is_none_or(|types| types.contains(&message.event_type));
        let channel_matches = match (&channels, &message.channels) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(wanted), Some(has)) => wanted.iter().any(|c| has.contains(c)),
        };
        if type_matches && channel_matches {
            targets.push(QueueTarget { endpoint_id, ordered: max_concurrency == 1, disabled: false });
        }
    }
    Ok(targets)
}

fn message_by_event_id(conn: &Connection, app_id: &str, event_id: &str) -> StoreResult<Option<Message>> {
    conn.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = ?1 AND event_id = ?2"))
        .db()?
        .query_row(params![app_id, event_id], message_from_row)
        .optional()
        .db()
}

pub(crate) fn get_message(
    conn: &Connection,
    app_id_or_uid: &str,
    id_or_event_id: &str,
) -> StoreResult<Option<Message>> {
    let Some(app_id) = resolve_app(conn, app_id_or_uid)? else { return Ok(None) };
    conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = ?1 AND (id = ?2 OR event_id = ?2) \
         ORDER BY id = ?2 DESC LIMIT 1"
    ))
    .db()?
    .query_row(params![app_id, id_or_event_id], message_from_row)
    .optional()
    .db()
}

pub(crate) fn list_messages(
    conn: &Connection,
    app_id_or_uid: &str,
    page: &PageRequest,
    filter: MessageFilter,
) -> StoreResult<Page<Message>> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let mut select = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = ?1");
    let mut params = vec![Value::Text(app_id)];
    if let Some(types) = filter.event_types {
        // An empty list selects nothing, as `IN ()` would.
        let mut placeholders = Vec::with_capacity(types.len());
        for event_type in types {
            params.push(Value::Text(event_type));
            placeholders.push(format!("?{}", params.len()));
        }
        if placeholders.is_empty() {
            select.push_str(" AND 0 = 1");
        } else {
            select.push_str(&format!(" AND event_type IN ({})", placeholders.join(", ")));
        }
    }
    if let Some(channel) = filter.channel {
        params.push(Value::Text(channel));
        select.push_str(&format!(" AND EXISTS (SELECT 1 FROM json_each(channels) WHERE value = ?{})", params.len()));
    }
    if let Some(before) = filter.before {
        params.push(Value::Integer(before));
        select.push_str(&format!(" AND created_at < ?{}", params.len()));
    }
    if let Some(after) = filter.after {
        params.push(Value::Integer(after));
        select.push_str(&format!(" AND created_at > ?{}", params.len()));
    }
    let listing = Listing { select: &select, params, key: "id", key_kind: KeyKind::Text };
    fetch_page(conn, listing, page, is_descending(page), |m: &Message| m.id.clone(), message_from_row)
}
