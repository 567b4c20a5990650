//! The event log: appending a message fans it out to the app's matching endpoints as pending
//! deliveries in the same transaction (one `INSERT ... SELECT` for all endpoints); reading it
//! back by id, event id or page.

use super::paging::{KeyKind, Listing, OwnedParam, fetch_page, is_descending};
use super::rows::{Conn, MESSAGE_COLUMNS, execute, get, message_from_row, query, query_opt, require_app, resolve_app};
use herald_store::ids::{self, new_id};
use herald_store::{Message, MessageFilter, NewMessage, Page, PageRequest, StoreResult, TriggerType, now_ms};

/// The endpoints of app `$1` a message of type `$2` with channels `$3` goes to: enabled, no
/// event type filter or one naming its type, and no channel filter or one sharing a channel with
/// it (a message without channels, `$3` NULL, passes only endpoints without a channel filter).
const MATCHING: &str = "e.app_id = $1::text AND NOT e.disabled \
     AND (e.event_types IS NULL OR $2::text = ANY (e.event_types)) \
     AND (e.channels IS NULL OR COALESCE(e.channels && $3::text[], FALSE))";

/// Append a message and fan it out. Returns the message, whether it is new, and how many
/// deliveries it created.
pub(crate) async fn create_message(conn: &Conn, new: NewMessage) -> StoreResult<(Message, bool, u64)> {
    let app_id = require_app(conn, &new.app_id).await?;
    if let Some(event_id) = &new.event_id
        && let Some(existing) = message_by_event_id(conn, &app_id, event_id).await?
    {
        return Ok((existing, false, 0));
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
    execute(
        conn,
        "INSERT INTO messages (id, app_id, event_id, event_type, payload, channels, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &message.id,
            &message.app_id,
            &message.event_id,
            &message.event_type,
            &message.payload.as_ref(),
            &message.channels,
            &now,
        ],
    )
    .await?;
    // The queue locks of the matching ordered endpoints, in id order (see `deliveries.rs`).
    let lock = format!(
        "SELECT e.id FROM endpoints e WHERE {MATCHING} AND e.max_concurrency = 1 ORDER BY e.id FOR NO KEY UPDATE"
    );
    let locked = query(conn, &lock, &[&message.app_id, &message.event_type, &message.channels])
        .await?
        .iter()
        .map(|row| get(row, 0))
        .collect::<StoreResult<Vec<String>>>()?;
    // One statement for the whole fan-out. A delivery to an ordered endpoint is its head (due
    // now) only if the endpoint has no other unfinished delivery; an endpoint that turned
    // ordered after the lock above was taken is left due and repaired by the claim.
    let fan_out = format!(
        "INSERT INTO deliveries (app_id, msg_id, endpoint_id, status, attempts, next_attempt_at, lease_until, due_at, \
         trigger_type, created_at, updated_at) \
         SELECT $1::text, $4::text, e.id, 1, 0, $5::bigint, NULL, \
         CASE WHEN e.max_concurrency = 1 AND e.id = ANY ($6::text[]) AND EXISTS \
           (SELECT 1 FROM deliveries u WHERE u.endpoint_id = e.id AND u.status IN (1, 3)) THEN NULL ELSE $5::bigint END, \
         $7::smallint, $5::bigint, $5::bigint FROM endpoints e WHERE {MATCHING} ORDER BY e.id"
    );
    let created = execute(
        conn,
        &fan_out,
        &[
            &message.app_id,
            &message.event_type,
            &message.channels,
            &message.id,
            &now,
            &locked,
            &(TriggerType::Scheduled as i16),
        ],
    )
    .await?;
    Ok((message, true, created))
}

async fn message_by_event_id(conn: &Conn, app_id: &str, event_id: &str) -> StoreResult<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = $1 AND event_id = $2");
    query_opt(conn, &sql, &[&app_id, &event_id]).await?.map(|row| message_from_row(&row)).transpose()
}

pub(crate) async fn get_message(
    conn: &Conn,
    app_id_or_uid: &str,
    id_or_event_id: &str,
) -> StoreResult<Option<Message>> {
    let Some(app_id) = resolve_app(conn, app_id_or_uid).await? else { return Ok(None) };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = $1 AND (id = $2 OR event_id = $2) \
         ORDER BY (id = $2) DESC LIMIT 1"
    );
    query_opt(conn, &sql, &[&app_id, &id_or_event_id]).await?.map(|row| message_from_row(&row)).transpose()
}

pub(crate) async fn list_messages(
    conn: &Conn,
    app_id_or_uid: &str,
    page: &PageRequest,
    filter: MessageFilter,
) -> StoreResult<Page<Message>> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let mut select = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = $1");
    let mut params: Vec<OwnedParam> = vec![Box::new(app_id)];
    if let Some(types) = filter.event_types {
        // An empty list selects nothing.
        params.push(Box::new(types));
        select.push_str(&format!(" AND event_type = ANY (${})", params.len()));
    }
    if let Some(channel) = filter.channel {
        params.push(Box::new(channel));
        select.push_str(&format!(" AND ${} = ANY (channels)", params.len()));
    }
    if let Some(before) = filter.before {
        params.push(Box::new(before));
        select.push_str(&format!(" AND created_at < ${}", params.len()));
    }
    if let Some(after) = filter.after {
        params.push(Box::new(after));
        select.push_str(&format!(" AND created_at > ${}", params.len()));
    }
    let listing = Listing { select: &select, params, key: "id", key_kind: KeyKind::Text };
    fetch_page(conn, listing, page, is_descending(page), |m: &Message| m.id.clone(), message_from_row).await
}
