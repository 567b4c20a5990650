//! Deliveries and attempts: the webhook queue, shared by every node.
//!
//! # The claim key
//!
//! As on SQLite (`herald-store-sqlite/src/deliveries.rs`), every delivery row has `due_at`, the
//! time it becomes claimable, or NULL when it cannot be claimed until something else changes.
//! Claiming is one range scan of a partial index, `due_at <= now`. For an unfinished (pending
//! or sending) delivery of an enabled endpoint:
//!
//! * its natural due time is `next_attempt_at` while pending and `lease_until` while sending
//!   (so a sending delivery whose worker died becomes claimable again when its lease ends);
//! * an endpoint with `max_concurrency` other than 1 ("unordered"): every unfinished delivery
//!   has its natural due time;
//! * an endpoint with `max_concurrency` 1 ("ordered"): only its head, the unfinished delivery
//!   with the smallest id, has its natural due time; the others have NULL. A head is claimed
//!   only if no other delivery of the endpoint is sending under a live lease.
//!
//! Finished deliveries and every delivery of a disabled endpoint have NULL.
//!
//! # Ordering across nodes: the endpoint row is the queue's lock
//!
//! SQLite gets these rules for free from its single writer. Here several nodes change one
//! endpoint's queue at once, so every transaction that changes which deliveries of an ordered
//! endpoint are unfinished, or which of them is due, first locks the endpoint's row with
//! `SELECT ... FOR NO KEY UPDATE`: fan-out to it, recording an attempt on it, resend, recovery,
//! replay, enabling, disabling or reordering it (an `UPDATE` of the row takes the same lock). In
//! READ COMMITTED each statement after the lock sees what the previous holder committed, so
//! "is there an unfinished delivery?" and "which is the head?" are always answered on the
//! whole queue, and a head can be neither lost (a queue stuck behind NULLs) nor doubled.
//! Claims lock the endpoint row too before taking an ordered endpoint's head, but with `SKIP
//! LOCKED`: a claim never waits (it leaves a busy endpoint to the next claim), so claims take
//! part in no deadlock, and the head and in-flight checks of two claims on two nodes are
//! serialized: an ordered endpoint has at most one delivery in flight in the whole cluster.
//! Recording an attempt on an unordered endpoint takes `FOR SHARE`, which many records hold at
//! once but which waits for a reorder to commit. The row lock was chosen over an advisory lock
//! (it is scoped to this schema and released with the transaction like every other lock)
//! and over a partial unique index on in-flight deliveries (which cannot express "under a live
//! lease", and would turn a lost race into an error instead of a skip).
//!
//! Delivery rows themselves are claimed with `FOR UPDATE SKIP LOCKED`, so claims on several
//! nodes never take the same delivery. A claim still double-checks the head rule and repairs a
//! row that breaks it (a fan-out that raced a reorder), so such a race can delay a delivery at
//! worst; it cannot reorder an ordered endpoint.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use super::batched::{Batched, BoxFuture};
use super::paging::{KeyKind, Listing, OwnedParam, fetch_page};
use super::rows::{
    ATTEMPT_COLUMNS, Conn, DELIVERY_COLUMNS, DbResultExt, ENDPOINT_COLUMNS, MESSAGE_COLUMNS, Param, attempt_from_row,
    delivery_from_row, endpoint_from_row, error_class_text, execute, get, message_from_row, prepare_all, query,
    query_one, query_opt, require_app, require_endpoint, require_message, to_i64, to_u64,
};
use herald_store::ids::{self, new_id};
use herald_store::{
    Attempt, AttemptFilter, ClaimedDelivery, Delivery, DeliveryCounts, DeliveryNext, DeliveryStatus, Endpoint, Message,
    NewAttempt, Page, PageRequest, StoreError, StoreResult, Timestamp, TriggerType, now_ms,
};

/// SQL for the natural due time of an unfinished delivery row.
const NATURAL_DUE: &str = "CASE status WHEN 1 THEN next_attempt_at ELSE lease_until END";

/// An endpoint's queue settings, read under its row lock.
#[derive(Clone, Copy)]
struct QueueState {
    ordered: bool,
    disabled: bool,
}

/// Lock an endpoint's row (the lock of its queue, see the module doc) and read its settings;
/// `None` when it does not exist.
async fn lock_endpoint(conn: &Conn, endpoint_id: &str) -> StoreResult<Option<QueueState>> {
    let row = query_opt(
        conn,
        "SELECT max_concurrency, disabled FROM endpoints WHERE id = $1 FOR NO KEY UPDATE",
        &[&endpoint_id],
    )
    .await?;
    row.map(|row| Ok(QueueState { ordered: get::<i64>(&row, 0)? == 1, disabled: get(&row, 1)? })).transpose()
}

async fn has_unfinished(conn: &Conn, endpoint_id: &str) -> StoreResult<bool> {
    let row = query_one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE endpoint_id = $1 AND status IN (1, 3))",
        &[&endpoint_id],
    )
    .await?;
    get(&row, 0)
}

/// Insert pending deliveries of `msg_ids` (in that order) to one endpoint, due at `now`:
/// resend and recovery. Takes the endpoint's queue lock.
pub(crate) async fn insert_deliveries(
    conn: &Conn,
    app_id: &str,
    endpoint_id: &str,
    msg_ids: &[String],
    trigger: TriggerType,
    now: Timestamp,
) -> StoreResult<()> {
    if msg_ids.is_empty() {
        return Ok(());
    }
    let state = lock_endpoint(conn, endpoint_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("endpoint {endpoint_id}")))?;
    // The new rows have the largest ids, so on an ordered endpoint the first is the head only if
    // the endpoint has no other unfinished delivery, and the others never are.
    let head_free = state.ordered && !state.disabled && !has_unfinished(conn, endpoint_id).await?;
    let due_ats: Vec<Option<i64>> = (0..msg_ids.len())
        .map(|idx| {
            let due = if state.disabled {
                false
            } else if state.ordered {
                head_free && idx == 0
            } else {
                true
            };
            due.then_some(now)
        })
        .collect();
    execute(
        conn,
        "INSERT INTO deliveries (app_id, msg_id, endpoint_id, status, attempts, next_attempt_at, lease_until, due_at, \
         trigger_type, created_at, updated_at) \
         SELECT $1, v.msg_id, $2, 1, 0, $3, NULL, v.due_at, $4, $3, $3 \
         FROM unnest($5::text[], $6::bigint[]) WITH ORDINALITY AS v (msg_id, due_at, ord) ORDER BY v.ord",
        &[&app_id, &endpoint_id, &now, &(trigger as i16), &msg_ids, &due_ats],
    )
    .await?;
    Ok(())
}

/// Give an ordered endpoint's head its natural due time; returns whether there was one.
async fn promote_head(conn: &Conn, endpoint_id: &str) -> StoreResult<bool> {
    let sql = format!(
        "UPDATE deliveries SET due_at = {NATURAL_DUE} WHERE id = \
         (SELECT id FROM deliveries WHERE endpoint_id = $1 AND status IN (1, 3) ORDER BY id LIMIT 1)"
    );
    Ok(execute(conn, &sql, &[&endpoint_id]).await? > 0)
}

/// Re-derive `due_at` for every unfinished delivery of an endpoint from the rules above.
/// Takes the endpoint's queue lock.
pub(crate) async fn refresh_endpoint_queue(conn: &Conn, endpoint_id: &str) -> StoreResult<()> {
    let Some(state) = lock_endpoint(conn, endpoint_id).await? else { return Ok(()) };
    if state.disabled || state.ordered {
        execute(
            conn,
            "UPDATE deliveries SET due_at = NULL WHERE endpoint_id = $1 AND status IN (1, 3) AND due_at IS NOT NULL",
            &[&endpoint_id],
        )
        .await?;
        if !state.disabled {
            promote_head(conn, endpoint_id).await?;
        }
    } else {
        let sql = format!("UPDATE deliveries SET due_at = {NATURAL_DUE} WHERE endpoint_id = $1 AND status IN (1, 3)");
        execute(conn, &sql, &[&endpoint_id]).await?;
    }
    Ok(())
}

/// Runs inside a transaction of its own (see `lib.rs`): claims never wait for a lock. Three
/// round trips, each of pipelined statements (see `rows::prepare_all`): the candidates; the
/// queue locks, heads and in-flight deliveries of their ordered endpoints (only when there are
/// some); then taking the claimed deliveries with their messages and endpoints.
///
/// A claim commits without waiting for its WAL record to reach disk (`synchronous_commit =
/// off` for this transaction only). A claim lost in a crash leaves its deliveries pending,
/// claimable at once, where a kept one would have left them claimable when the lease ends:
/// sent again either way, which at-least-once delivery allows. Every later synchronous commit
/// (the attempt that settles the delivery) flushes the claim first.
pub(crate) async fn claim_due_deliveries(
    conn: &Conn,
    now: Timestamp,
    limit: usize,
    lease_ms: i64,
) -> StoreResult<Vec<ClaimedDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let lease_until = now.saturating_add(lease_ms.max(0));
    let [candidates, lock, heads, busy, clear, take, messages, endpoints] = prepare_all(
        conn,
        [CANDIDATES, LOCK_ORDERED, HEADS, IN_FLIGHT, CLEAR, &TAKE, &CLAIMED_MESSAGES, &CLAIMED_ENDPOINTS],
    )
    .await?;
    // A few extra candidates cover those skipped below.
    let fetch = to_i64(limit).saturating_mul(2).saturating_add(8);
    let params: [Param<'_>; 2] = [&now, &fetch];
    let (relaxed, candidates) =
        tokio::join!(conn.batch_execute("SET LOCAL synchronous_commit = off"), conn.query(&candidates, &params),);
    relaxed.db()?;
    let candidates = candidates.db()?;
    let mut ordered: Vec<&str> = Vec::new();
    for row in &candidates {
        if get::<i64>(row, 3)? == 1 && !get::<bool>(row, 4)? {
            ordered.push(get(row, 1)?);
        }
    }
    ordered.sort_unstable();
    ordered.dedup();
    // Ordered endpoints whose queue lock this claim holds, with their settings under the lock
    // (one missing: another transaction is changing that queue), their heads and those with a
    // delivery in flight, read after the lock is taken.
    let mut locked: HashMap<String, QueueState> = HashMap::new();
    let mut head_of: HashMap<String, i64> = HashMap::new();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    if !ordered.is_empty() {
        let one: [Param<'_>; 1] = [&ordered];
        let two: [Param<'_>; 2] = [&ordered, &now];
        let (locked_rows, head_rows, busy_rows) =
            tokio::join!(conn.query(&lock, &one), conn.query(&heads, &one), conn.query(&busy, &two));
        for row in &locked_rows.db()? {
            locked.insert(get(row, 0)?, QueueState { ordered: get::<i64>(row, 1)? == 1, disabled: get(row, 2)? });
        }
        for row in &head_rows.db()? {
            if let Some(head) = get::<Option<i64>>(row, 1)? {
                head_of.insert(get(row, 0)?, head);
            }
        }
        for row in &busy_rows.db()? {
            in_flight.insert(get(row, 0)?);
        }
    }
    let mut accepted: Vec<i64> = Vec::with_capacity(limit);
    let mut msg_ids: BTreeSet<&str> = BTreeSet::new();
    let mut endpoint_ids: BTreeSet<&str> = BTreeSet::new();
    let mut to_clear: Vec<i64> = Vec::new();
    for row in &candidates {
        if accepted.len() == limit {
            break;
        }
        let delivery_id: i64 = get(row, 0)?;
        let endpoint_id: &str = get(row, 1)?;
        let mut state = QueueState { ordered: get::<i64>(row, 3)? == 1, disabled: get(row, 4)? };
        if state.ordered && !state.disabled {
            // Busy: the next claim will see the queue as that transaction leaves it.
            let Some(under_lock) = locked.get(endpoint_id) else { continue };
            state = *under_lock;
        }
        if state.disabled || (state.ordered && head_of.get(endpoint_id) != Some(&delivery_id)) {
            // Breaks the rules (see the module doc): not claimable until the queue moves.
            to_clear.push(delivery_id);
            continue;
        }
        if state.ordered && !in_flight.insert(endpoint_id.to_owned()) {
            continue;
        }
        accepted.push(delivery_id);
        msg_ids.insert(get(row, 2)?);
        endpoint_ids.insert(endpoint_id);
    }
    if accepted.is_empty() {
        if !to_clear.is_empty() {
            conn.execute(&clear, &[&to_clear]).await.db()?;
        }
        return Ok(Vec::new());
    }
    let msg_ids: Vec<&str> = msg_ids.into_iter().collect();
    let endpoint_ids: Vec<&str> = endpoint_ids.into_iter().collect();
    let clear_params: [Param<'_>; 1] = [&to_clear];
    let take_params: [Param<'_>; 3] = [&accepted, &lease_until, &now];
    let message_params: [Param<'_>; 1] = [&msg_ids];
    let endpoint_params: [Param<'_>; 1] = [&endpoint_ids];
    let clear = async { if to_clear.is_empty() { Ok(0) } else { conn.execute(&clear, &clear_params).await } };
    let (cleared, taken, message_rows, endpoint_rows) = tokio::join!(
        clear,
        conn.query(&take, &take_params),
        conn.query(&messages, &message_params),
        conn.query(&endpoints, &endpoint_params),
    );
    cleared.db()?;
    let mut deliveries: HashMap<i64, Delivery> = HashMap::with_capacity(accepted.len());
    for row in &taken.db()? {
        let delivery = delivery_from_row(row)?;
        deliveries.insert(delivery.id, delivery);
    }
    let messages: HashMap<String, Message> = message_rows
        .db()?
        .iter()
        .map(|row| message_from_row(row).map(|m| (m.id.clone(), m)))
        .collect::<StoreResult<_>>()?;
    let endpoints: HashMap<String, Endpoint> = endpoint_rows
        .db()?
        .iter()
        .map(|row| endpoint_from_row(row).map(|e| (e.id.clone(), e)))
        .collect::<StoreResult<_>>()?;
    let mut claimed = Vec::with_capacity(accepted.len());
    for delivery_id in accepted {
        let delivery = deliveries
            .remove(&delivery_id)
            .ok_or_else(|| StoreError::Backend(format!("delivery {delivery_id} vanished")))?;
        let message = messages
            .get(&delivery.msg_id)
            .cloned()
            .ok_or_else(|| StoreError::Backend(format!("delivery {delivery_id} has no message")))?;
        let endpoint = endpoints
            .get(&delivery.endpoint_id)
            .cloned()
            .ok_or_else(|| StoreError::Backend(format!("delivery {delivery_id} has no endpoint")))?;
        claimed.push(ClaimedDelivery { delivery, message, endpoint });
    }
    Ok(claimed)
}

/// Due deliveries (`$1` now), oldest due first, `$2` at most, skipping those another claim holds.
const CANDIDATES: &str = "SELECT d.id, d.endpoint_id, d.msg_id, e.max_concurrency, e.disabled FROM deliveries d \
     JOIN endpoints e ON e.id = d.endpoint_id WHERE d.due_at <= $1 ORDER BY d.due_at, d.id LIMIT $2 \
     FOR UPDATE OF d SKIP LOCKED";

/// The queue locks of ordered endpoints `$1` that no other transaction holds, with their
/// settings under the lock.
const LOCK_ORDERED: &str = "SELECT id, max_concurrency, disabled FROM endpoints WHERE id = ANY ($1) \
     ORDER BY id FOR NO KEY UPDATE SKIP LOCKED";

/// The head of each endpoint of `$1`: its unfinished delivery with the smallest id.
const HEADS: &str = "SELECT x.id, (SELECT u.id FROM deliveries u WHERE u.endpoint_id = x.id AND u.status IN (1, 3) \
     ORDER BY u.id LIMIT 1) FROM unnest($1::text[]) AS x (id)";

/// The endpoints of `$1` with a delivery sending under a lease that has not ended at `$2`.
const IN_FLIGHT: &str = "SELECT DISTINCT endpoint_id FROM deliveries WHERE endpoint_id = ANY ($1) AND status = 3 \
     AND lease_until > $2";

const CLEAR: &str = "UPDATE deliveries SET due_at = NULL WHERE id = ANY ($1)";

static TAKE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries d SET status = 3, lease_until = $2, due_at = $2, updated_at = $3 WHERE id = ANY ($1) \
         RETURNING {DELIVERY_COLUMNS}"
    )
});

static CLAIMED_MESSAGES: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ANY ($1)"));

static CLAIMED_ENDPOINTS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = ANY ($1)"));

/// One attempt to record: the delivery, what happened, and what comes next.
pub(crate) struct AttemptRecord {
    pub(crate) delivery_id: i64,
    pub(crate) attempt: NewAttempt,
    pub(crate) next: DeliveryNext,
}

/// What recording one attempt returns: the attempt, and whether the endpoint's queue moved so
/// that another delivery may be due now (an ordered endpoint's next head).
pub(crate) type Recorded = (Attempt, bool);

impl Batched for AttemptRecord {
    type Output = Recorded;
    const CHANGES_QUEUES: bool = true;

    fn run<'a>(
        conn: &'a Conn,
        inputs: Vec<&'a Self>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Vec<StoreResult<Recorded>>>> {
        Box::pin(record_attempts(conn, inputs, now))
    }

    fn wakes((_, moved): &Recorded) -> bool {
        *moved
    }
}

/// Record a run of attempts in one round trip whatever its length: four statements pipelined
/// (see `rows::prepare_all`) that lock the endpoints' queues, insert the attempts with what
/// their deliveries say, settle the deliveries, and promote the next head of each ordered
/// endpoint involved. An unknown delivery fails alone: nothing is written for it.
async fn record_attempts(
    conn: &Conn,
    inputs: Vec<&AttemptRecord>,
    now: Timestamp,
) -> StoreResult<Vec<StoreResult<Recorded>>> {
    let delivery_ids: Vec<i64> = inputs.iter().map(|input| input.delivery_id).collect();
    if delivery_ids.iter().collect::<BTreeSet<_>>().len() != delivery_ids.len() {
        // One update cannot settle a delivery twice: the writer redoes the run one at a time.
        return Err(StoreError::Backend("a delivery has two attempts in one run".to_owned()));
    }
    let [lock, insert, settle, promote] = prepare_all(conn, [LOCK_QUEUES, INSERT_ATTEMPTS, SETTLE, &PROMOTE]).await?;
    let attempt_ids: Vec<String> = inputs.iter().map(|_| new_id(ids::ATTEMPT)).collect();
    let urls: Vec<&str> = inputs.iter().map(|input| input.attempt.url.as_str()).collect();
    let statuses: Vec<i16> = inputs.iter().map(|input| input.attempt.status as i16).collect();
    let codes: Vec<i32> = inputs.iter().map(|input| i32::from(input.attempt.response_status_code)).collect();
    let responses: Vec<&str> = inputs.iter().map(|input| input.attempt.response.as_str()).collect();
    let durations: Vec<i64> = inputs.iter().map(|input| input.attempt.response_duration_ms).collect();
    let classes: Vec<Option<&str>> =
        inputs.iter().map(|input| input.attempt.error_class.map(error_class_text)).collect();
    let triggers: Vec<i16> = inputs.iter().map(|input| input.attempt.trigger as i16).collect();
    let created: Vec<i64> = inputs.iter().map(|input| input.attempt.created_at).collect();
    let (next_statuses, next_at): (Vec<i16>, Vec<Option<i64>>) = inputs
        .iter()
        .map(|input| match input.next {
            DeliveryNext::Succeeded => (DeliveryStatus::Success as i16, None),
            DeliveryNext::RetryAt(at) => (DeliveryStatus::Pending as i16, Some(at)),
            DeliveryNext::Dead => (DeliveryStatus::Failed as i16, None),
        })
        .unzip();
    let insert_params: [Param<'_>; 10] =
        [&attempt_ids, &delivery_ids, &urls, &statuses, &codes, &responses, &durations, &classes, &triggers, &created];
    let settle_params: [Param<'_>; 4] = [&delivery_ids, &next_statuses, &next_at, &now];
    let ids_param: [Param<'_>; 1] = [&delivery_ids];
    let (locked, inserted, settled, promoted) = tokio::join!(
        conn.execute(&lock, &ids_param),
        conn.query(&insert, &insert_params),
        conn.execute(&settle, &settle_params),
        conn.query(&promote, &ids_param),
    );
    locked.db()?;
    let inserted = inserted.db()?;
    settled.db()?;
    let moved: BTreeSet<String> = promoted.db()?.iter().map(|row| get(row, 0)).collect::<StoreResult<_>>()?;
    // What each attempt's delivery said: (app, message, endpoint), by attempt id.
    let mut targets: HashMap<String, (String, String, String)> = HashMap::with_capacity(inserted.len());
    for row in &inserted {
        targets.insert(get(row, 0)?, (get(row, 1)?, get(row, 2)?, get(row, 3)?));
    }
    let outcomes = inputs
        .iter()
        .zip(attempt_ids)
        .map(|(input, id)| {
            let Some((app_id, msg_id, endpoint_id)) = targets.remove(&id) else {
                return Err(StoreError::NotFound(format!("delivery {}", input.delivery_id)));
            };
            let new = &input.attempt;
            let moved = moved.contains(&endpoint_id);
            let attempt = Attempt {
                id,
                app_id,
                msg_id,
                endpoint_id,
                url: new.url.clone(),
                status: new.status,
                response_status_code: new.response_status_code,
                response: new.response.clone(),
                response_duration_ms: new.response_duration_ms,
                error_class: new.error_class,
                trigger: new.trigger,
                created_at: new.created_at,
            };
            Ok((attempt, moved))
        })
        .collect();
    Ok(outcomes)
}

/// The queue locks (see the module doc) of the endpoints of deliveries `$1`, in id order, taken
/// before the delivery rows like every other writer. Exclusive for every endpoint: all writers
/// but claims already queue behind the cluster's writer lock, and claims lock ordered
/// endpoints only.
const LOCK_QUEUES: &str = "SELECT e.id FROM endpoints e WHERE e.id IN \
     (SELECT d.endpoint_id FROM deliveries d WHERE d.id = ANY ($1)) ORDER BY e.id FOR NO KEY UPDATE";

/// The attempts, with app, message and endpoint from their deliveries (none for an unknown one).
const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (id, app_id, msg_id, endpoint_id, delivery_id, url, status, \
     response_status_code, response, response_duration_ms, error_class, trigger_type, created_at) \
     SELECT v.id, d.app_id, d.msg_id, d.endpoint_id, v.delivery_id, v.url, v.status, v.code, v.response, \
     v.duration, v.error_class, v.trigger_type, v.created_at \
     FROM unnest($1::text[], $2::bigint[], $3::text[], $4::smallint[], $5::integer[], $6::text[], $7::bigint[], \
       $8::text[], $9::smallint[], $10::bigint[]) \
       AS v (id, delivery_id, url, status, code, response, duration, error_class, trigger_type, created_at) \
     JOIN deliveries d ON d.id = v.delivery_id ORDER BY v.id \
     RETURNING id, app_id, msg_id, endpoint_id";

/// Each delivery takes its new status. A finished one (success 0, failed 2) is never claimed
/// again, so an attempt on it is a late report from a worker whose lease ran out while another
/// finished the job: it keeps the attempt, not its verdict. A retry is due at its own time
/// unless the endpoint is ordered (its head is promoted below) or disabled (it stays out of
/// the queue until enabled, which refreshes it).
const SETTLE: &str = "UPDATE deliveries d SET attempts = d.attempts + 1, updated_at = $4, \
     status = CASE WHEN d.status IN (0, 2) THEN d.status ELSE v.status END, \
     next_attempt_at = CASE WHEN d.status IN (0, 2) THEN d.next_attempt_at ELSE v.next_at END, \
     lease_until = CASE WHEN d.status IN (0, 2) THEN d.lease_until ELSE NULL END, \
     due_at = CASE WHEN d.status IN (0, 2) THEN d.due_at WHEN e.max_concurrency = 1 OR e.disabled THEN NULL \
       ELSE v.next_at END \
     FROM unnest($1::bigint[], $2::smallint[], $3::bigint[]) AS v (id, status, next_at), endpoints e \
     WHERE d.id = v.id AND e.id = d.endpoint_id";

/// The next in line of each enabled ordered endpoint of deliveries `$1` gets its natural due
/// time (a head that already has it keeps it); returns the endpoints that have one.
static PROMOTE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET due_at = {NATURAL_DUE} WHERE id IN (SELECT (SELECT u.id FROM deliveries u \
         WHERE u.endpoint_id = e.id AND u.status IN (1, 3) ORDER BY u.id LIMIT 1) FROM endpoints e \
         WHERE e.max_concurrency = 1 AND NOT e.disabled \
         AND e.id IN (SELECT d.endpoint_id FROM deliveries d WHERE d.id = ANY ($1))) RETURNING endpoint_id"
    )
});

pub(crate) async fn resend(conn: &Conn, app_id_or_uid: &str, msg_id: &str, endpoint_id: &str) -> StoreResult<()> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let msg_id = require_message(conn, &app_id, msg_id).await?;
    let endpoint_id = require_endpoint(conn, &app_id, endpoint_id).await?;
    insert_deliveries(conn, &app_id, &endpoint_id, &[msg_id], TriggerType::Manual, now_ms()).await
}

pub(crate) async fn recover_endpoint(
    conn: &Conn,
    app_id_or_uid: &str,
    endpoint_id: &str,
    since: Timestamp,
    until: Option<Timestamp>,
    all: bool,
) -> StoreResult<u64> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let endpoint_id = require_endpoint(conn, &app_id, endpoint_id).await?;
    // Lock the queue before reading it, so the window's latest deliveries cannot change under us.
    lock_endpoint(conn, &endpoint_id).await?;
    // Messages of the window whose latest delivery to the endpoint is dead (or, with `all`,
    // finished either way), in message order so an ordered endpoint gets them in order.
    let statuses: &[i16] = if all { &[0, 2] } else { &[2] };
    let rows = query(
        conn,
        "SELECT m.id FROM messages m JOIN deliveries d ON d.msg_id = m.id AND d.endpoint_id = $2 \
         WHERE m.app_id = $1 AND m.created_at >= $3 AND m.created_at < $4 AND d.status = ANY($5) \
         AND d.id = (SELECT MAX(l.id) FROM deliveries l WHERE l.msg_id = m.id AND l.endpoint_id = $2) \
         ORDER BY m.created_at, m.id",
        &[&app_id, &endpoint_id, &since, &until.unwrap_or(i64::MAX), &statuses],
    )
    .await?;
    let msg_ids = rows.iter().map(|row| get(row, 0)).collect::<StoreResult<Vec<String>>>()?;
    insert_deliveries(conn, &app_id, &endpoint_id, &msg_ids, TriggerType::Manual, now_ms()).await?;
    Ok(msg_ids.len() as u64)
}

/// Dead deliveries that no later delivery of the same message to the same endpoint replaced.
const LATEST_DEAD: &str = "d.status = 2 AND NOT EXISTS (SELECT 1 FROM deliveries n \
     WHERE n.msg_id = d.msg_id AND n.endpoint_id = d.endpoint_id AND n.id > d.id)";

pub(crate) async fn list_dead_letters(
    conn: &Conn,
    app_id_or_uid: Option<&str>,
    page: &PageRequest,
) -> StoreResult<Page<Delivery>> {
    let mut params: Vec<OwnedParam> = Vec::new();
    let select = match app_id_or_uid {
        Some(app) => {
            params.push(Box::new(require_app(conn, app).await?));
            format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE {LATEST_DEAD} AND d.app_id = $1")
        }
        None => format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE {LATEST_DEAD}"),
    };
    let listing = Listing { select: &select, params, key: "d.id", key_kind: KeyKind::Integer };
    // Newest first, whatever the page's order: that is the contract.
    fetch_page(conn, listing, page, true, |d: &Delivery| d.id.to_string(), delivery_from_row).await
}

pub(crate) async fn replay_dead_letters(
    conn: &Conn,
    app_id_or_uid: Option<&str>,
    endpoint_id: Option<&str>,
) -> StoreResult<u64> {
    let mut sql = format!("SELECT DISTINCT d.endpoint_id FROM deliveries d WHERE {LATEST_DEAD}");
    let mut params: Vec<OwnedParam> = Vec::new();
    let app_id = match app_id_or_uid {
        Some(app) => Some(require_app(conn, app).await?),
        None => None,
    };
    if let Some(app_id) = &app_id {
        if let Some(endpoint) = endpoint_id {
            params.push(Box::new(require_endpoint(conn, app_id, endpoint).await?));
            sql.push_str(&format!(" AND d.endpoint_id = ${}", params.len()));
        }
        params.push(Box::new(app_id.clone()));
        sql.push_str(&format!(" AND d.app_id = ${}", params.len()));
    } else if let Some(endpoint) = endpoint_id {
        params.push(Box::new(endpoint.to_owned()));
        sql.push_str(&format!(" AND d.endpoint_id = ${}", params.len()));
    }
    let refs: Vec<super::rows::Param<'_>> = params.iter().map(|p| p.as_ref() as super::rows::Param<'_>).collect();
    let mut endpoints =
        query(conn, &sql, &refs).await?.iter().map(|row| get(row, 0)).collect::<StoreResult<Vec<String>>>()?;
    // Lock the queues in id order (the order every multi-endpoint writer uses), then replay
    // what is dead under the locks.
    endpoints.sort();
    let now = now_ms();
    let mut replayed = 0;
    for endpoint in &endpoints {
        lock_endpoint(conn, endpoint).await?;
        // A replay starts a fresh retry schedule: the dispatcher derives the next delay from
        // `attempts`, and a replayed delivery would otherwise die after one more try.
        let sql = format!(
            "UPDATE deliveries d SET status = 1, attempts = 0, next_attempt_at = $2, lease_until = NULL, \
             due_at = NULL, updated_at = $2 WHERE d.endpoint_id = $1 AND {LATEST_DEAD}{}",
            if app_id.is_some() { " AND d.app_id = $3" } else { "" }
        );
        let changed = match &app_id {
            Some(app_id) => execute(conn, &sql, &[endpoint, &now, app_id]).await?,
            None => execute(conn, &sql, &[endpoint, &now]).await?,
        };
        replayed += changed;
        refresh_endpoint_queue(conn, endpoint).await?;
    }
    Ok(replayed)
}

pub(crate) async fn list_attempts(
    conn: &Conn,
    app_id_or_uid: &str,
    filter: AttemptFilter,
    page: &PageRequest,
) -> StoreResult<Page<Attempt>> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let (column, key) = match filter {
        AttemptFilter::Endpoint(endpoint) => ("endpoint_id", require_endpoint(conn, &app_id, &endpoint).await?),
        AttemptFilter::Message(message) => ("msg_id", require_message(conn, &app_id, &message).await?),
    };
    let select = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE {column} = $1 AND app_id = $2");
    let listing =
        Listing { select: &select, params: vec![Box::new(key), Box::new(app_id)], key: "id", key_kind: KeyKind::Text };
    // Newest first, whatever the page's order: that is the contract.
    fetch_page(conn, listing, page, true, |a: &Attempt| a.id.clone(), attempt_from_row).await
}

pub(crate) async fn list_deliveries_for_message(
    conn: &Conn,
    app_id_or_uid: &str,
    msg_id: &str,
) -> StoreResult<Vec<Delivery>> {
    let app_id = require_app(conn, app_id_or_uid).await?;
    let msg_id = require_message(conn, &app_id, msg_id).await?;
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE d.msg_id = $1 AND d.id = \
         (SELECT MAX(n.id) FROM deliveries n WHERE n.msg_id = d.msg_id AND n.endpoint_id = d.endpoint_id) \
         ORDER BY d.endpoint_id"
    );
    query(conn, &sql, &[&msg_id]).await?.iter().map(delivery_from_row).collect()
}

pub(crate) async fn delivery_counts(conn: &Conn) -> StoreResult<DeliveryCounts> {
    let mut counts = DeliveryCounts::default();
    for row in query(conn, "SELECT status, COUNT(*) FROM deliveries GROUP BY status", &[]).await? {
        let (status, count): (i16, i64) = (get(&row, 0)?, get(&row, 1)?);
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
