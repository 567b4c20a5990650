//! The event log: appending messages fans them out to their apps' matching endpoints as pending
//! deliveries in the same transaction (one `INSERT ... SELECT` for a whole run of messages and
//! all their endpoints); reading it back by id, event id or page.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use super::batched::{Batched, BoxFuture};
use super::paging::{KeyKind, Listing, OwnedParam, fetch_page, is_descending};
use super::rows::{
    Conn, DbResultExt, MESSAGE_COLUMNS, Param, get, message_from_row, message_from_row_at, prepare_all, query_opt,
    require_app, resolve_app, to_json_opt, to_u64,
};
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

/// Append a run of messages and fan them out in two round trips whatever the run's length:
/// first the applications and the event ids already used (one statement), then, pipelined (see
/// `rows::prepare_all`), the insert of the new messages, the locks of the ordered endpoints'
/// queues they go to, and the insert of every delivery. A message whose application does not
/// exist fails alone, before anything is written.
async fn create_messages(
    conn: &Conn,
    inputs: Vec<&NewMessage>,
    now: Timestamp,
) -> StoreResult<Vec<StoreResult<Created>>> {
    let [lookup, insert, lock, fan_out] = prepare_all(conn, [&LOOKUP, INSERT, &LOCK, &FAN_OUT]).await?;
    let keys: Vec<&str> = inputs.iter().map(|new| new.app_id.as_str()).collect();
    let event_ids: Vec<Option<&str>> = inputs.iter().map(|new| new.event_id.as_deref()).collect();
    let rows = conn.query(&lookup, &[&keys, &event_ids]).await.db()?;
    let mut found: Vec<(Option<String>, Option<Message>)> = vec![(None, None); inputs.len()];
    for row in &rows {
        let ord: i64 = get(row, 0)?;
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|idx| found.get_mut(idx))
            .ok_or_else(|| StoreError::Backend(format!("the message lookup answered for input {ord}")))?;
        let existing = match get::<Option<String>>(row, 2)? {
            Some(_) => Some(message_from_row_at(row, 2)?),
            None => None,
        };
        *slot = (get(row, 1)?, existing);
    }
    let mut outcomes: Vec<StoreResult<Created>> = Vec::with_capacity(inputs.len());
    let mut fresh: Vec<Message> = Vec::new();
    // Event ids first used earlier in this run: the first one stands.
    let mut in_run: HashMap<(String, String), usize> = HashMap::new();
    for (new, (app_id, existing)) in inputs.iter().zip(found) {
        let Some(app_id) = app_id else {
            outcomes.push(Err(StoreError::NotFound(format!("application {}", new.app_id))));
            continue;
        };
        if let Some(message) = existing {
            outcomes.push(Ok((message, false, 0)));
            continue;
        }
        if let Some(event_id) = &new.event_id {
            match in_run.entry((app_id.clone(), event_id.clone())) {
                Entry::Occupied(first) => {
                    outcomes.push(Ok((fresh[*first.get()].clone(), false, 0)));
                    continue;
                }
                Entry::Vacant(slot) => {
                    slot.insert(fresh.len());
                }
            }
        }
        let message = new_message(app_id, new, now);
        outcomes.push(Ok((message.clone(), true, 0)));
        fresh.push(message);
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
    let app_set: Vec<&str> = apps.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let insert_params: [Param<'_>; 7] = [&ids, &apps, &event_ids, &types, &payloads, &channels, &now];
    let lock_params: [Param<'_>; 2] = [&ids, &app_set];
    let fan_out_params: [Param<'_>; 3] = [&ids, &now, &(TriggerType::Scheduled as i16)];
    let (inserted, locked, counted) = tokio::join!(
        conn.execute(&insert, &insert_params),
        conn.execute(&lock, &lock_params),
        conn.query(&fan_out, &fan_out_params),
    );
    inserted.db()?;
    locked.db()?;
    let counts: HashMap<String, i64> =
        counted.db()?.iter().map(|row| Ok((get(row, 0)?, get(row, 1)?))).collect::<StoreResult<_>>()?;
    for (message, fresh, deliveries) in outcomes.iter_mut().flatten() {
        if *fresh {
            *deliveries = counts.get(&message.id).copied().map_or(0, to_u64);
        }
    }
    Ok(outcomes)
}

/// Per input (`$1` app id or uid, `$2` event id, numbered from 1): the application's id (an id
/// wins over another app's uid, as in `resolve_app`) and the message already logged under the
/// event id, if any.
static LOOKUP: LazyLock<String> = LazyLock::new(|| {
    let columns = MESSAGE_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT v.ord, a.id, {columns} FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS v (app_key, event_id, ord) \
         LEFT JOIN LATERAL (SELECT apps.id FROM apps WHERE apps.id = v.app_key OR apps.uid = v.app_key \
           ORDER BY (apps.id = v.app_key) DESC LIMIT 1) a ON TRUE \
         LEFT JOIN messages m ON m.app_id = a.id AND m.event_id = v.event_id"
    )
});

const INSERT: &str = "INSERT INTO messages (id, app_id, event_id, event_type, payload, channels, created_at) \
     SELECT v.id, v.app_id, v.event_id, v.event_type, v.payload, \
     CASE WHEN v.channels IS NULL THEN NULL ELSE ARRAY (SELECT c.name FROM \
       jsonb_array_elements_text(v.channels::jsonb) WITH ORDINALITY AS c (name, n) ORDER BY c.n) END, $7 \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[]) \
       WITH ORDINALITY AS v (id, app_id, event_id, event_type, payload, channels, ord) ORDER BY v.ord";

/// The queue locks of the ordered endpoints that messages `$1` (of apps `$2`) go to, in id
/// order (see `deliveries.rs`).
static LOCK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT e.id FROM endpoints e WHERE e.app_id = ANY ($2) AND e.max_concurrency = 1 AND EXISTS \
         (SELECT 1 FROM messages m WHERE m.id = ANY ($1) AND {MATCHES}) ORDER BY e.id FOR NO KEY UPDATE"
    )
});

/// The whole fan-out of messages `$1`, in message order, with the number of deliveries per
/// message. A delivery to an ordered endpoint is its head (due now) only if it is the
/// endpoint's first in this run and the endpoint has no other unfinished delivery. No endpoint
/// changes between the lock above and this statement: every change to one is a writer job,
/// and writer batches run one at a time across the cluster.
static FAN_OUT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH m AS (SELECT msg.id, msg.app_id, msg.event_type, msg.channels, v.ord \
           FROM unnest($1::text[]) WITH ORDINALITY AS v (id, ord) JOIN messages msg ON msg.id = v.id), \
         t AS (SELECT m.app_id, m.id AS msg_id, m.ord, e.id AS endpoint_id, e.max_concurrency = 1 AS ordered, \
           row_number() OVER (PARTITION BY e.id ORDER BY m.ord) AS nth \
           FROM m JOIN endpoints e ON {MATCHES}), \
         ins AS (INSERT INTO deliveries (app_id, msg_id, endpoint_id, status, attempts, next_attempt_at, lease_until, \
           due_at, trigger_type, created_at, updated_at) \
           SELECT t.app_id, t.msg_id, t.endpoint_id, 1, 0, $2::bigint, NULL, \
           CASE WHEN t.ordered AND (t.nth > 1 OR EXISTS (SELECT 1 FROM deliveries u \
             WHERE u.endpoint_id = t.endpoint_id AND u.status IN (1, 3))) THEN NULL ELSE $2::bigint END, \
           $3::smallint, $2::bigint, $2::bigint FROM t ORDER BY t.ord, t.endpoint_id RETURNING msg_id) \
         SELECT msg_id, count(*) FROM ins GROUP BY msg_id"
    )
});

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
