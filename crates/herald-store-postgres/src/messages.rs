//! The event log: appending messages fans them out to their apps' matching endpoints as pending
//! deliveries in the same transaction (one `INSERT ... SELECT` for a whole run of messages and
//! all their endpoints); reading it back by id, event id or page.

use std::collections::{BTreeSet, HashMap};

use super::paging::{KeyKind, Listing, OwnedParam, fetch_page, is_descending};
use super::rows::{
    Conn, MESSAGE_COLUMNS, Param, execute, get, message_from_row, query, query_opt, require_app, resolve_app,
    to_json_opt, to_u64,
};
use super::writer::{Batched, BoxFuture};
use herald_store::ids::{self, new_id};
use herald_store::{
    Message, MessageFilter, NewMessage, Page, PageRequest, StoreError, StoreResult, Timestamp, TriggerType,
};

/// Whether endpoint `e` takes message `m`: enabled, no event type filter or one naming the
/// message's type, and no channel filter or one sharing a channel with it (a message without
/// channels passes only endpoints without a channel filter).
const MATCHES: &str = "e.app_id = m.app_id AND NOT e.disabled \
     AND (e.event_types IS NULL OR m.event_type = ANY (e.event_types)) \
     AND (e.channels IS NULL OR COALESCE(e.channels && m.channels, FALSE))";

/// What creating one message returns: the message, whether it is new, and how many deliveries
/// it created.
pub(crate) type Created = (Message, bool, u64);

impl Batched for NewMessage {
    type Output = Created;
    const CHANGES_QUEUES: bool = true;

    fn run<'a>(
        conn: &'a Conn,
        inputs: Vec<&'a Self>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Vec<StoreResult<Created>>>> {
        Box::pin(create_messages(conn, inputs, now))
    }

    fn wakes((_, _, deliveries): &Created) -> bool {
        *deliveries > 0
    }
}

/// Append a run of messages and fan them out, in five statements whatever the run's length:
/// resolve the applications, look up event ids already used, insert the new messages, lock the
/// queues of the ordered endpoints they go to, and insert every delivery. A message whose
/// application does not exist fails alone, before anything is written.
async fn create_messages(
    conn: &Conn,
    inputs: Vec<&NewMessage>,
    now: Timestamp,
) -> StoreResult<Vec<StoreResult<Created>>> {
    // Applications by id or uid (an id wins over another app's uid, as in `resolve_app`).
    let keys: Vec<&str> = inputs.iter().map(|new| new.app_id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    let rows = query(conn, "SELECT id, uid FROM apps WHERE id = ANY ($1) OR uid = ANY ($1)", &[&keys]).await?;
    let mut by_id: HashMap<String, String> = HashMap::new();
    let mut by_uid: HashMap<String, String> = HashMap::new();
    for row in &rows {
        let id: String = get(row, 0)?;
        if let Some(uid) = get::<Option<String>>(row, 1)? {
            by_uid.insert(uid, id.clone());
        }
        by_id.insert(id.clone(), id);
    }
    let app_of = |key: &str| by_id.get(key).or_else(|| by_uid.get(key)).cloned();
    // Event ids already in the log: those messages are answered as they are.
    let (known_apps, known_events): (Vec<String>, Vec<&str>) =
        inputs.iter().filter_map(|new| Some((app_of(&new.app_id)?, new.event_id.as_deref()?))).unzip();
    let mut existing: HashMap<(String, String), Message> = HashMap::new();
    if !known_events.is_empty() {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE (app_id, event_id) IN \
             (SELECT * FROM unnest($1::text[], $2::text[]))"
        );
        for row in query(conn, &sql, &[&known_apps, &known_events]).await? {
            let message = message_from_row(&row)?;
            let key = (message.app_id.clone(), message.event_id.clone().unwrap_or_default());
            existing.insert(key, message);
        }
    }
    let mut outcomes: Vec<StoreResult<Created>> = Vec::with_capacity(inputs.len());
    let mut fresh: Vec<Message> = Vec::new();
    for new in &inputs {
        let Some(app_id) = app_of(&new.app_id) else {
            outcomes.push(Err(StoreError::NotFound(format!("application {}", new.app_id))));
            continue;
        };
        if let Some(event_id) = &new.event_id {
            // Known before this run, or new earlier in it: the first one stands.
            let key = (app_id.clone(), event_id.clone());
            if let Some(message) = existing.get(&key) {
                outcomes.push(Ok((message.clone(), false, 0)));
                continue;
            }
            let message = new_message(app_id, new, now);
            existing.insert(key, message.clone());
            outcomes.push(Ok((message.clone(), true, 0)));
            fresh.push(message);
        } else {
            let message = new_message(app_id, new, now);
            outcomes.push(Ok((message.clone(), true, 0)));
            fresh.push(message);
        }
    }
    if fresh.is_empty() {
        return Ok(outcomes);
    }
    let ids: Vec<&str> = fresh.iter().map(|m| m.id.as_str()).collect();
    let apps: Vec<&str> = fresh.iter().map(|m| m.app_id.as_str()).collect();
    let event_ids: Vec<Option<&str>> = fresh.iter().map(|m| m.event_id.as_deref()).collect();
    let types: Vec<&str> = fresh.iter().map(|m| m.event_type.as_str()).collect();
    let payloads: Vec<&[u8]> = fresh.iter().map(|m| m.payload.as_ref()).collect();
    // Channel lists travel as JSON: PostgreSQL arrays of arrays must be rectangular.
    let channels: Vec<Option<String>> =
        fresh.iter().map(|m| to_json_opt(m.channels.as_ref())).collect::<StoreResult<_>>()?;
    let params: [Param<'_>; 7] = [&ids, &apps, &event_ids, &types, &payloads, &channels, &now];
    execute(
        conn,
        "INSERT INTO messages (id, app_id, event_id, event_type, payload, channels, created_at) \
         SELECT v.id, v.app_id, v.event_id, v.event_type, v.payload, \
         CASE WHEN v.channels IS NULL THEN NULL ELSE ARRAY (SELECT c.name FROM \
           jsonb_array_elements_text(v.channels::jsonb) WITH ORDINALITY AS c (name, n) ORDER BY c.n) END, $7 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[]) \
           WITH ORDINALITY AS v (id, app_id, event_id, event_type, payload, channels, ord) ORDER BY v.ord",
        &params,
    )
    .await?;
    let app_set: Vec<&str> = apps.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    // The queue locks of the matching ordered endpoints, in id order (see `deliveries.rs`).
    let lock = format!(
        "SELECT e.id FROM endpoints e WHERE e.app_id = ANY ($2) AND e.max_concurrency = 1 AND EXISTS \
         (SELECT 1 FROM messages m WHERE m.id = ANY ($1) AND {MATCHES}) ORDER BY e.id FOR NO KEY UPDATE"
    );
    let locked = query(conn, &lock, &[&ids, &app_set])
        .await?
        .iter()
        .map(|row| get(row, 0))
        .collect::<StoreResult<Vec<String>>>()?;
    // One statement for the whole fan-out, in message order. A delivery to an ordered endpoint
    // is its head (due now) only if it is the endpoint's first in this run and the endpoint has
    // no other unfinished delivery; an endpoint that turned ordered after the lock above was
    // taken is left due and repaired by the claim.
    let fan_out = format!(
        "WITH m AS (SELECT msg.id, msg.app_id, msg.event_type, msg.channels, v.ord \
           FROM unnest($1::text[]) WITH ORDINALITY AS v (id, ord) JOIN messages msg ON msg.id = v.id), \
         t AS (SELECT m.app_id, m.id AS msg_id, m.ord, e.id AS endpoint_id, \
           e.max_concurrency = 1 AND e.id = ANY ($2::text[]) AS ordered, \
           row_number() OVER (PARTITION BY e.id ORDER BY m.ord) AS nth \
           FROM m JOIN endpoints e ON {MATCHES}), \
         ins AS (INSERT INTO deliveries (app_id, msg_id, endpoint_id, status, attempts, next_attempt_at, lease_until, \
           due_at, trigger_type, created_at, updated_at) \
           SELECT t.app_id, t.msg_id, t.endpoint_id, 1, 0, $3::bigint, NULL, \
           CASE WHEN t.ordered AND (t.nth > 1 OR EXISTS (SELECT 1 FROM deliveries u \
             WHERE u.endpoint_id = t.endpoint_id AND u.status IN (1, 3))) THEN NULL ELSE $3::bigint END, \
           $4::smallint, $3::bigint, $3::bigint FROM t ORDER BY t.ord, t.endpoint_id RETURNING msg_id) \
         SELECT msg_id, count(*) FROM ins GROUP BY msg_id"
    );
    let counts: HashMap<String, i64> = query(conn, &fan_out, &[&ids, &locked, &now, &(TriggerType::Scheduled as i16)])
        .await?
        .iter()
        .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
        .collect::<StoreResult<_>>()?;
    for (message, fresh, deliveries) in outcomes.iter_mut().flatten() {
        if *fresh {
            *deliveries = counts.get(&message.id).copied().map_or(0, to_u64);
        }
    }
    Ok(outcomes)
}

fn new_message(app_id: String, new: &NewMessage, now: Timestamp) -> Message {
    Message {
        id: new_id(ids::MESSAGE),
        app_id,
        event_id: new.event_id.clone(),
        event_type: new.event_type.clone(),
        payload: new.payload.clone(),
        channels: new.channels.clone(),
        created_at: now,
    }
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
