//! Deliveries and attempts: the webhook queue.
//!
//! # The claim key
//!
//! Every delivery row has `due_at`, the time it becomes claimable, or NULL when it cannot be
//! claimed until something else changes. Claiming is then one range scan of a partial index,
//! `due_at <= now`, however long the backlog behind ordered endpoints is. The rules that keep
//! `due_at`, for an unfinished (pending or sending) delivery of an enabled endpoint:
//!
//! * its natural due time is `next_attempt_at` while pending and `lease_until` while sending
//!   (so a sending delivery whose worker died becomes claimable again when its lease ends);
//! * an endpoint with `max_concurrency` other than 1 ("unordered"): every unfinished delivery
//!   has its natural due time;
//! * an endpoint with `max_concurrency` 1 ("ordered"): only its head, the unfinished delivery
//!   with the smallest id, has its natural due time; the others have NULL. When the head
//!   finishes, the next one becomes the head. A head is claimed only if no other delivery of
//!   the endpoint is sending with a lease that has not ended (only possible after the endpoint
//!   was switched from unordered to ordered while deliveries were in flight).
//!
//! Finished deliveries, and every delivery of a disabled endpoint, have NULL. The hot paths
//! (fan-out, claim, record) keep these rules incrementally; rarer changes (enabling, disabling
//! or reordering an endpoint, replaying dead letters) re-derive one endpoint's queue with
//! [`refresh_endpoint_queue`]. The claim double-checks the head rule and repairs a row that
//! breaks it, so a bug here delays a delivery at worst; it cannot reorder an ordered endpoint.

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::paging::{KeyKind, Listing, fetch_page};
use super::rows::{
    ATTEMPT_COLUMNS, DELIVERY_COLUMNS, DbResultExt, attempt_from_row, delivery_from_row, endpoint_by_id,
    error_class_text, message_by_id, require_app, require_endpoint, require_message, to_i64, to_u64,
};
use herald_store::ids::{self, new_id};
use herald_store::{
    Attempt, AttemptFilter, ClaimedDelivery, Delivery, DeliveryCounts, DeliveryNext, DeliveryStatus, Endpoint, Message,
    NewAttempt, Page, PageRequest, StoreError, StoreResult, Timestamp, TriggerType, now_ms,
};

/// SQL for the natural due time of an unfinished delivery row.
const NATURAL_DUE: &str = "CASE status WHEN 1 THEN next_attempt_at ELSE lease_until END";

/// Where a new delivery goes: the endpoint and what decides its `due_at`.
pub(crate) struct QueueTarget {
    pub(crate) endpoint_id: String,
    /// `max_concurrency` is 1: deliveries go out one at a time, in order.
    pub(crate) ordered: bool,
    pub(crate) disabled: bool,
}

impl QueueTarget {
    fn of(endpoint: &Endpoint) -> Self {
        Self { endpoint_id: endpoint.id.clone(), ordered: endpoint.max_concurrency == 1, disabled: endpoint.disabled }
    }
}

/// Insert a pending delivery of `msg_id` to the target, due at `due`.
pub(crate) fn insert_delivery(
    conn: &Connection,
    target: &QueueTarget,
    app_id: &str,
    msg_id: &str,
    trigger: TriggerType,
    due: Timestamp,
    now: Timestamp,
) -> StoreResult<i64> {
    // The new row has the largest id, so on an ordered endpoint it is the head only if the
    // endpoint has no other unfinished delivery.
    let due_at = if target.disabled || (target.ordered && has_unfinished(conn, &target.endpoint_id)?) {
        None
    } else {
        Some(due)
    };
    conn.prepare_cached(
        "INSERT INTO deliveries (app_id, msg_id, endpoint_id, status, attempts, next_attempt_at, lease_until, due_at, \
         trigger_type, created_at, updated_at) VALUES (?1, ?2, ?3, 1, 0, ?4, NULL, ?5, ?6, ?7, ?7)",
    )
    .db()?
    .execute(params![app_id, msg_id, target.endpoint_id, due, due_at, trigger as i64, now])
    .db()?;
    Ok(conn.last_insert_rowid())
}

fn has_unfinished(conn: &Connection, endpoint_id: &str) -> StoreResult<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM deliveries WHERE endpoint_id = ?1 AND status IN (1, 3))")
        .db()?
        .query_row(params![endpoint_id], |row| row.get(0))
        .db()
}

/// The head of an endpoint's queue: its unfinished delivery with the smallest id.
fn head_of(conn: &Connection, endpoint_id: &str) -> StoreResult<Option<i64>> {
    conn.prepare_cached("SELECT id FROM deliveries WHERE endpoint_id = ?1 AND status IN (1, 3) ORDER BY id LIMIT 1")
        .db()?
        .query_row(params![endpoint_id], |row| row.get(0))
        .optional()
        .db()
}

/// Give an ordered endpoint's head its natural due time.
fn promote_head(conn: &Connection, endpoint_id: &str) -> StoreResult<()> {
    conn.prepare_cached(&format!(
        "UPDATE deliveries SET due_at = {NATURAL_DUE} WHERE id = \
         (SELECT id FROM deliveries WHERE endpoint_id = ?1 AND status IN (1, 3) ORDER BY id LIMIT 1)"
    ))
    .db()?
    .execute(params![endpoint_id])
    .db()?;
    Ok(())
}

/// Re-derive `due_at` for every unfinished delivery of an endpoint from the rules above.
pub(crate) fn refresh_endpoint_queue(conn: &Connection, endpoint_id: &str) -> StoreResult<()> {
    let Some(endpoint) = endpoint_by_id(conn, endpoint_id)? else { return Ok(()) };
    let target = QueueTarget::of(&endpoint);
    if target.disabled || target.ordered {
        conn.prepare_cached(
            "UPDATE deliveries SET due_at = NULL WHERE endpoint_id = ?1 AND status IN (1, 3) AND due_at IS NOT NULL",
        )
        .db()?
        .execute(params![endpoint_id])
        .db()?;
        if !target.disabled {
            promote_head(conn, endpoint_id)?;
        }
    } else {
        conn.prepare_cached(&format!(
            "UPDATE deliveries SET due_at = {NATURAL_DUE} WHERE endpoint_id = ?1 AND status IN (1, 3)"
        ))
        .db()?
        .execute(params![endpoint_id])
        .db()?;
    }
    Ok(())
}

pub(crate) fn claim_due_deliveries(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
    lease_ms: i64,
) -> StoreResult<Vec<ClaimedDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let lease_until = now.saturating_add(lease_ms.max(0));
    // Read the candidates first: updating rows of the index being scanned is not safe. A few
    // extra cover candidates skipped below.
    let candidates: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, endpoint_id FROM deliveries WHERE due_at <= ?1 ORDER BY due_at, id LIMIT ?2")
        .db()?
        .query_map(params![now, to_i64(limit).saturating_mul(2).saturating_add(8)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let mut endpoints: HashMap<String, Option<Endpoint>> = HashMap::new();
    let mut messages: HashMap<String, Message> = HashMap::new();
    let mut claimed = Vec::with_capacity(limit.min(candidates.len()));
    for (delivery_id, endpoint_id) in candidates {
        if claimed.len() == limit {
            break;
        }
        if !endpoints.contains_key(&endpoint_id) {
            let endpoint = endpoint_by_id(conn, &endpoint_id)?;
            endpoints.insert(endpoint_id.clone(), endpoint);
        }
        let Some(Some(endpoint)) = endpoints.get(&endpoint_id) else { continue };
        let target = QueueTarget::of(endpoint);
        if target.disabled || (target.ordered && head_of(conn, &endpoint_id)? != Some(delivery_id)) {
            // Breaks the rules (see the module doc): not claimable until the queue moves.
            clear_due(conn, delivery_id)?;
            continue;
        }
        if target.ordered && other_in_flight(conn, &endpoint_id, delivery_id, now)? {
            continue;
        }
        conn.prepare_cached(
            "UPDATE deliveries SET status = 3, lease_until = ?2, due_at = ?2, updated_at = ?3 WHERE id = ?1",
        )
        .db()?
        .execute(params![delivery_id, lease_until, now])
        .db()?;
        let delivery = delivery_by_id(conn, delivery_id)?;
        let message = match messages.get(&delivery.msg_id) {
            Some(message) => message.clone(),
            None => {
                let message = message_by_id(conn, &delivery.msg_id)?
                    .ok_or_else(|| StoreError::Backend(format!("delivery {delivery_id} has no message")))?;
                messages.insert(message.id.clone(), message.clone());
                message
            }
        };
        claimed.push(ClaimedDelivery { delivery, message, endpoint: endpoint.clone() });
    }
    Ok(claimed)
}

fn clear_due(conn: &Connection, delivery_id: i64) -> StoreResult<()> {
    conn.prepare_cached("UPDATE deliveries SET due_at = NULL WHERE id = ?1")
        .db()?
        .execute(params![delivery_id])
        .db()?;
    Ok(())
}

/// Whether another delivery of the endpoint is sending under a lease that has not ended.
fn other_in_flight(conn: &Connection, endpoint_id: &str, delivery_id: i64, now: Timestamp) -> StoreResult<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE endpoint_id = ?1 AND status = 3 AND lease_until > ?2 \
         AND id != ?3)",
    )
    .db()?
    .query_row(params![endpoint_id, now, delivery_id], |row| row.get(0))
    .db()
}

fn delivery_by_id(conn: &Connection, delivery_id: i64) -> StoreResult<Delivery> {
    conn.prepare_cached(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"))
        .db()?
        .query_row(params![delivery_id], delivery_from_row)
        .optional()
        .db()?
        .ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))
}

pub(crate) fn record_attempt(
    conn: &Connection,
    delivery_id: i64,
    new: NewAttempt,
    next: DeliveryNext,
) -> StoreResult<Attempt> {
    let delivery = delivery_by_id(conn, delivery_id)?;
    let attempt = Attempt {
        id: new_id(ids::ATTEMPT),
        app_id: delivery.app_id,
        msg_id: delivery.msg_id,
        endpoint_id: delivery.endpoint_id,
        url: new.url,
        status: new.status,
        response_status_code: new.response_status_code,
        response: new.response,
        response_duration_ms: new.response_duration_ms,
        error_class: new.error_class,
        trigger: new.trigger,
        created_at: new.created_at,
    };
    conn.prepare_cached(
        "INSERT INTO attempts (id, app_id, msg_id, endpoint_id, delivery_id, url, status, response_status_code, \
         response, response_duration_ms, error_class, trigger_type, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .db()?
    .execute(params![
        attempt.id,
        attempt.app_id,
        attempt.msg_id,
        attempt.endpoint_id,
        delivery_id,
        attempt.url,
        attempt.status as i64,
        attempt.response_status_code,
        attempt.response,
        attempt.response_duration_ms,
        attempt.error_class.map(error_class_text),
        attempt.trigger as i64,
        attempt.created_at,
    ])
    .db()?;
    if matches!(delivery.status, DeliveryStatus::Success | DeliveryStatus::Failed) {
        // A finished delivery is never claimed again, so this is a late report from a worker
        // whose lease ran out while another finished the job: keep the attempt, not its verdict.
        conn.prepare_cached("UPDATE deliveries SET attempts = attempts + 1, updated_at = ?2 WHERE id = ?1")
            .db()?
            .execute(params![delivery_id, now_ms()])
            .db()?;
        return Ok(attempt);
    }
    let (status, next_attempt_at) = match next {
        DeliveryNext::Succeeded => (DeliveryStatus::Success, None),
        DeliveryNext::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
        DeliveryNext::Dead => (DeliveryStatus::Failed, None),
    };
    conn.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = attempts + 1, next_attempt_at = ?3, lease_until = NULL, \
         due_at = NULL, updated_at = ?4 WHERE id = ?1",
    )
    .db()?
    .execute(params![delivery_id, status as i64, next_attempt_at, now_ms()])
    .db()?;
    // Requeue: the delivery itself when it retries, or the next in line of an ordered endpoint.
    if let Some(endpoint) = endpoint_by_id(conn, &attempt.endpoint_id)? {
        let target = QueueTarget::of(&endpoint);
        if target.disabled {
            // Stays out of the queue until the endpoint is enabled (which refreshes it).
        } else if target.ordered {
            promote_head(conn, &target.endpoint_id)?;
        } else if let Some(at) = next_attempt_at {
            conn.prepare_cached("UPDATE deliveries SET due_at = ?2 WHERE id = ?1")
                .db()?
                .execute(params![delivery_id, at])
                .db()?;
        }
    }
    Ok(attempt)
}

pub(crate) fn resend(conn: &Connection, app_id_or_uid: &str, msg_id: &str, endpoint_id: &str) -> StoreResult<()> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let msg_id = require_message(conn, &app_id, msg_id)?;
    let endpoint_id = require_endpoint(conn, &app_id, endpoint_id)?;
    let endpoint =
        endpoint_by_id(conn, &endpoint_id)?.ok_or_else(|| StoreError::NotFound(format!("endpoint {endpoint_id}")))?;
    let now = now_ms();
    insert_delivery(conn, &QueueTarget::of(&endpoint), &app_id, &msg_id, TriggerType::Manual, now, now)?;
    Ok(())
}

pub(crate) fn recover_endpoint(
    conn: &Connection,
    app_id_or_uid: &str,
    endpoint_id: &str,
    since: Timestamp,
    until: Option<Timestamp>,
    all: bool,
) -> StoreResult<u64> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let endpoint_id = require_endpoint(conn, &app_id, endpoint_id)?;
    let endpoint =
        endpoint_by_id(conn, &endpoint_id)?.ok_or_else(|| StoreError::NotFound(format!("endpoint {endpoint_id}")))?;
    // Messages of the window whose latest delivery to the endpoint is dead (or, with `all`,
    // finished either way), in message order so an ordered endpoint gets them in order.
    let statuses = if all { "(0, 2)" } else { "(2)" };
    let msg_ids: Vec<String> = conn
        .prepare_cached(&format!(
            "SELECT m.id FROM messages m JOIN deliveries d ON d.msg_id = m.id AND d.endpoint_id = ?2 \
             WHERE m.app_id = ?1 AND m.created_at >= ?3 AND m.created_at < ?4 AND d.status IN {statuses} \
             AND d.id = (SELECT MAX(l.id) FROM deliveries l WHERE l.msg_id = m.id AND l.endpoint_id = ?2) \
             ORDER BY m.created_at, m.id"
        ))
        .db()?
        .query_map(params![app_id, endpoint_id, since, until.unwrap_or(i64::MAX)], |row| row.get(0))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let target = QueueTarget::of(&endpoint);
    let now = now_ms();
    for msg_id in &msg_ids {
        insert_delivery(conn, &target, &app_id, msg_id, TriggerType::Manual, now, now)?;
    }
    Ok(msg_ids.len() as u64)
}

/// Dead deliveries that no later delivery of the same message to the same endpoint replaced.
const LATEST_DEAD: &str = "d.status = 2 AND NOT EXISTS (SELECT 1 FROM deliveries n \
     WHERE n.msg_id = d.msg_id AND n.endpoint_id = d.endpoint_id AND n.id > d.id)";

pub(crate) fn list_dead_letters(
    conn: &Connection,
    app_id_or_uid: Option<&str>,
    page: &PageRequest,
) -> StoreResult<Page<Delivery>> {
    let mut params = Vec::new();
    let select = match app_id_or_uid {
        Some(app) => {
            params.push(Value::Text(require_app(conn, app)?));
            // Without statistics the planner would walk every app's dead letters.
            format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d INDEXED BY deliveries_dead WHERE {LATEST_DEAD} AND d.app_id = ?1"
            )
        }
        None => format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE {LATEST_DEAD}"),
    };
    let listing = Listing { select: &select, params, key: "d.id", key_kind: KeyKind::Integer };
    // Newest first, whatever the page's order: that is the contract.
    fetch_page(conn, listing, page, true, |d: &Delivery| d.id.to_string(), delivery_from_row)
}

pub(crate) fn replay_dead_letters(
    conn: &Connection,
    app_id_or_uid: Option<&str>,
    endpoint_id: Option<&str>,
) -> StoreResult<u64> {
    let mut sql = format!("SELECT d.id, d.endpoint_id FROM deliveries d WHERE {LATEST_DEAD}");
    let mut params = Vec::new();
    if let Some(app) = app_id_or_uid {
        let app_id = require_app(conn, app)?;
        if let Some(endpoint) = endpoint_id {
            params.push(Value::Text(require_endpoint(conn, &app_id, endpoint)?));
            sql.push_str(&format!(" AND d.endpoint_id = ?{}", params.len()));
        }
        params.push(Value::Text(app_id));
        sql.push_str(&format!(" AND d.app_id = ?{}", params.len()));
    } else if let Some(endpoint) = endpoint_id {
        params.push(Value::Text(endpoint.to_owned()));
        sql.push_str(&format!(" AND d.endpoint_id = ?{}", params.len()));
    }
    sql.push_str(" ORDER BY d.id");
    let rows: Vec<(i64, String)> = conn
        .prepare_cached(&sql)
        .db()?
        .query_map(rusqlite::params_from_iter(params), |row| Ok((row.get(0)?, row.get(1)?)))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let now = now_ms();
    let mut touched = HashSet::new();
    for (delivery_id, endpoint_id) in &rows {
        // A replay starts a fresh retry schedule: the dispatcher derives the next delay from
        // `attempts`, and a replayed delivery would otherwise die after one more try.
        conn.prepare_cached(
            "UPDATE deliveries SET status = 1, attempts = 0, next_attempt_at = ?2, lease_until = NULL, due_at = NULL, \
             updated_at = ?2 WHERE id = ?1",
        )
        .db()?
        .execute(params![delivery_id, now])
        .db()?;
        touched.insert(endpoint_id.as_str());
    }
    for endpoint_id in touched {
        refresh_endpoint_queue(conn, endpoint_id)?;
    }
    Ok(rows.len() as u64)
}

pub(crate) fn list_attempts(
    conn: &Connection,
    app_id_or_uid: &str,
    filter: AttemptFilter,
    page: &PageRequest,
) -> StoreResult<Page<Attempt>> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let (column, key) = match filter {
        AttemptFilter::Endpoint(endpoint) => ("endpoint_id", require_endpoint(conn, &app_id, &endpoint)?),
        AttemptFilter::Message(message) => ("msg_id", require_message(conn, &app_id, &message)?),
    };
    let select = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE {column} = ?1 AND app_id = ?2");
    let listing = Listing {
        select: &select,
        params: vec![Value::Text(key), Value::Text(app_id)],
        key: "id",
        key_kind: KeyKind::Text,
    };
    // Newest first, whatever the page's order: that is the contract.
    fetch_page(conn, listing, page, true, |a: &Attempt| a.id.clone(), attempt_from_row)
}

pub(crate) fn list_deliveries_for_message(
    conn: &Connection,
    app_id_or_uid: &str,
    msg_id: &str,
) -> StoreResult<Vec<Delivery>> {
    let app_id = require_app(conn, app_id_or_uid)?;
    let msg_id = require_message(conn, &app_id, msg_id)?;
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.msg_id = ?1 AND d.id = \
         (SELECT MAX(n.id) FROM deliveries n WHERE n.msg_id = d.msg_id AND n.endpoint_id = d.endpoint_id) \
         ORDER BY d.endpoint_id"
    ))
    .db()?
    .query_map(params![msg_id], delivery_from_row)
    .db()?
    .collect::<Result<_, _>>()
    .db()
}

pub(crate) fn delivery_counts(conn: &Connection) -> StoreResult<DeliveryCounts> {
    let mut counts = DeliveryCounts::default();
    let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM deliveries GROUP BY status").db()?;
    let rows = stmt.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))).db()?;
    for row in rows {
        let (status, count) = row.db()?;
        let count = to_u64(count);
        match status {
            0 => counts.succeeded = count,
            1 => counts.pending = count,
            2 => counts.failed = count,
            3 => counts.sending = count,
            _ => {}
        }
    }
    Ok(counts)
}
