//! Conversions between PostgreSQL rows and the model: error mapping, statement helpers (every
//! statement is prepared once per connection and cached), JSON columns, enum codes and the
//! column lists every query selects, so each table is read the same way everywhere.

use deadpool_postgres::ClientWrapper;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Row, Statement};

use herald_store::{
    App, Attempt, AttemptStatus, Delivery, DeliveryStatus, Endpoint, ErrorClass, EventType, Message, StoreError,
    StoreResult, TriggerType,
};

/// A pooled connection (statement cache included).
pub(crate) type Conn = ClientWrapper;
/// One statement parameter.
pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// Maps tokio-postgres errors to [`StoreError`]: unique violations are conflicts, a missing
/// referenced row is "not found", anything about the connection, the server's availability or
/// a timeout is "unavailable" (the server answers 503), the rest is a backend error. The
/// message never carries the connection string.
pub(crate) fn store_error(error: tokio_postgres::Error) -> StoreError {
    let Some(db) = error.as_db_error() else {
        // No server error: the connection failed, closed or timed out.
        return StoreError::Unavailable(format!("PostgreSQL connection: {error}"));
    };
    let detail = db.message().to_owned();
    let code = db.code();
    if *code == SqlState::UNIQUE_VIOLATION {
        StoreError::Conflict(detail)
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        StoreError::NotFound(detail)
    } else if is_unavailable(code) {
        StoreError::Unavailable(format!("PostgreSQL: {detail} ({})", code.code()))
    } else {
        StoreError::Backend(format!("PostgreSQL: {detail} ({})", code.code()))
    }
}

/// Server errors that mean "not now" rather than "never": connection exceptions (class 08),
/// insufficient resources (53), operator intervention (57: shutdown, statement timeout),
/// deadlocks and serialization failures (40), read-only replicas (25006).
fn is_unavailable(code: &SqlState) -> bool {
    let class = &code.code()[..2.min(code.code().len())];
    matches!(class, "08" | "53" | "57" | "40") || *code == SqlState::READ_ONLY_SQL_TRANSACTION
}

/// Pool errors (timeouts waiting for or creating a connection, a refused connection) are all
/// "unavailable".
pub(crate) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => match store_error(error) {
            StoreError::Unavailable(detail) => StoreError::Unavailable(detail),
            other => StoreError::Unavailable(other.to_string()),
        },
        other => StoreError::Unavailable(format!("PostgreSQL pool: {other}")),
    }
}

/// Uses of a pooled connection between two refreshes of its prepared statements.
const PLAN_REFRESH_USES: usize = 500;

/// A connection from the pool. Every [`PLAN_REFRESH_USES`] uses it forgets its prepared
/// statements, so they are prepared (and planned) again from the tables as they are then: the
/// connections use generic plans (see `connection_config`), and one made while the queue
/// tables were small (a fresh schema) goes on scanning them whole once they are large. Seen
/// here: webhook deliveries fell from 1,000/s to 500/s within a minute of a fresh start.
pub(crate) async fn pooled(pool: &deadpool_postgres::Pool) -> StoreResult<deadpool_postgres::Object> {
    let conn = pool.get().await.map_err(pool_error)?;
    if deadpool_postgres::Object::metrics(&conn).recycle_count % PLAN_REFRESH_USES == PLAN_REFRESH_USES - 1 {
        conn.statement_cache.clear();
    }
    Ok(conn)
}

/// Maps tokio-postgres results to [`StoreError`].
pub(crate) trait DbResultExt<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> DbResultExt<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> StoreResult<T> {
        self.map_err(store_error)
    }
}

pub(crate) async fn query(conn: &Conn, sql: &str, params: &[Param<'_>]) -> StoreResult<Vec<Row>> {
    let statement = conn.prepare_cached(sql).await.db()?;
    conn.query(&statement, params).await.db()
}

pub(crate) async fn query_opt(conn: &Conn, sql: &str, params: &[Param<'_>]) -> StoreResult<Option<Row>> {
    let statement = conn.prepare_cached(sql).await.db()?;
    conn.query_opt(&statement, params).await.db()
}

pub(crate) async fn query_one(conn: &Conn, sql: &str, params: &[Param<'_>]) -> StoreResult<Row> {
    let statement = conn.prepare_cached(sql).await.db()?;
    conn.query_one(&statement, params).await.db()
}

pub(crate) async fn execute(conn: &Conn, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
    let statement = conn.prepare_cached(sql).await.db()?;
    conn.execute(&statement, params).await.db()
}

/// The prepared (cached) statements for `sqls`, in order: one round trip for all those not yet
/// in the connection's cache, none for the rest.
///
/// # Pipelining
///
/// A tokio-postgres query on a prepared statement sends its request when first polled, and the
/// connection answers requests in the order they were sent. So statements that depend on each
/// other only through the database (not through a value read back in Rust) can be issued
/// together and awaited together (`tokio::join!` polls in argument order): one round trip for
/// all, each still executed after the one before it. They must be prepared first, with this
/// function: a statement prepared on first use would send its execution only after its own
/// preparation came back, behind the statements issued after it.
pub(crate) async fn prepare_all<const N: usize>(conn: &Conn, sqls: [&str; N]) -> StoreResult<[Statement; N]> {
    let statements = futures_util::future::try_join_all(sqls.map(|sql| conn.prepare_cached(sql))).await.db()?;
    statements.try_into().map_err(|_| StoreError::Backend("a statement went missing while preparing".to_owned()))
}

/// Runs `work` after the simple query `lead` (if any), both sent before either is awaited
/// (pipelined, see [`prepare_all`]).
pub(crate) async fn led<T>(
    conn: &Conn,
    lead: Option<String>,
    work: impl std::future::Future<Output = T>,
) -> StoreResult<T> {
    let lead = async move {
        match lead {
            Some(sql) => conn.batch_execute(&sql).await.db(),
            None => Ok(()),
        }
    };
    let (lead, outcome) = tokio::join!(lead, work);
    lead.map(|()| outcome)
}

/// One column of a row.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(|e| StoreError::Backend(format!("cannot read column {idx}: {e}")))
}

/// JSON text for a JSON column.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot encode a JSON column: {e}")))
}

pub(crate) fn to_json_opt<T: Serialize>(value: Option<&T>) -> StoreResult<Option<String>> {
    value.map(to_json).transpose()
}

pub(crate) fn json_col<T: DeserializeOwned>(row: &Row, idx: usize) -> StoreResult<T> {
    let text: &str = get(row, idx)?;
    serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("cannot decode JSON column {idx}: {e}")))
}

pub(crate) fn json_opt<T: DeserializeOwned>(row: &Row, idx: usize) -> StoreResult<Option<T>> {
    let text: Option<&str> = get(row, idx)?;
    text.map(|text| {
        serde_json::from_str(text).map_err(|e| StoreError::Backend(format!("cannot decode JSON column {idx}: {e}")))
    })
    .transpose()
}

fn bad_code(what: &str, code: i64) -> StoreError {
    StoreError::Backend(format!("unknown {what} code {code}"))
}

pub(crate) fn delivery_status(code: i16) -> StoreResult<DeliveryStatus> {
    Ok(match code {
        0 => DeliveryStatus::Success,
        1 => DeliveryStatus::Pending,
        2 => DeliveryStatus::Failed,
        3 => DeliveryStatus::Sending,
        _ => return Err(bad_code("delivery status", code.into())),
    })
}

pub(crate) fn trigger(code: i16) -> StoreResult<TriggerType> {
    Ok(match code {
        0 => TriggerType::Scheduled,
        1 => TriggerType::Manual,
        _ => return Err(bad_code("trigger", code.into())),
    })
}

fn attempt_status(code: i16) -> StoreResult<AttemptStatus> {
    Ok(match code {
        0 => AttemptStatus::Success,
        2 => AttemptStatus::Fail,
        _ => return Err(bad_code("attempt status", code.into())),
    })
}

pub(crate) fn error_class_text(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Ours => "ours",
        ErrorClass::Network => "network",
        ErrorClass::Receiver => "receiver",
    }
}

fn error_class(text: Option<&str>) -> StoreResult<Option<ErrorClass>> {
    let Some(text) = text else { return Ok(None) };
    Ok(Some(match text {
        "ours" => ErrorClass::Ours,
        "network" => ErrorClass::Network,
        "receiver" => ErrorClass::Receiver,
        _ => return Err(StoreError::Backend(format!("unknown error class {text}"))),
    }))
}

/// PostgreSQL has no unsigned integers: counts and offsets come back as u64 through this.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Counts and limits go in as i64 (saturating: "no limit" is `i64::MAX`).
pub(crate) fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

pub(crate) const APP_COLUMNS: &str = "id, uid, name, metadata, rate_limit, created_at, updated_at";

pub(crate) fn app_from_row(row: &Row) -> StoreResult<App> {
    Ok(App {
        id: get(row, 0)?,
        uid: get(row, 1)?,
        name: get(row, 2)?,
        metadata: json_col(row, 3)?,
        rate_limit: get::<Option<i64>>(row, 4)?.map(to_u32),
        created_at: get(row, 5)?,
        updated_at: get(row, 6)?,
    })
}

pub(crate) const EVENT_TYPE_COLUMNS: &str =
    "name, description, archived, schemas, feature_flag, created_at, updated_at";

pub(crate) fn event_type_from_row(row: &Row) -> StoreResult<EventType> {
    Ok(EventType {
        name: get(row, 0)?,
        description: get(row, 1)?,
        archived: get(row, 2)?,
        schemas: json_opt(row, 3)?,
        feature_flag: get(row, 4)?,
        created_at: get(row, 5)?,
        updated_at: get(row, 6)?,
    })
}

pub(crate) const ENDPOINT_COLUMNS: &str = "id, app_id, uid, url, description, version, disabled, disabled_reason, \
     event_types, channels, secret, previous_secrets, headers, rate_limit, max_concurrency, metadata, failing_since, \
     created_at, updated_at";

pub(crate) fn endpoint_from_row(row: &Row) -> StoreResult<Endpoint> {
    Ok(Endpoint {
        id: get(row, 0)?,
        app_id: get(row, 1)?,
        uid: get(row, 2)?,
        url: get(row, 3)?,
        description: get(row, 4)?,
        version: get(row, 5)?,
        disabled: get(row, 6)?,
        disabled_reason: get(row, 7)?,
        event_types: get(row, 8)?,
        channels: get(row, 9)?,
        secret: get(row, 10)?,
        previous_secrets: json_col(row, 11)?,
        headers: json_col(row, 12)?,
        rate_limit: get::<Option<i64>>(row, 13)?.map(to_u32),
        max_concurrency: to_u32(get(row, 14)?),
        metadata: json_col(row, 15)?,
        failing_since: get(row, 16)?,
        created_at: get(row, 17)?,
        updated_at: get(row, 18)?,
    })
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, app_id, event_id, event_type, payload, channels, created_at";

pub(crate) fn message_from_row(row: &Row) -> StoreResult<Message> {
    message_from_row_at(row, 0)
}

/// A message whose [`MESSAGE_COLUMNS`] start at column `at`.
pub(crate) fn message_from_row_at(row: &Row, at: usize) -> StoreResult<Message> {
    let payload: Vec<u8> = get(row, at + 4)?;
    Ok(Message {
        id: get(row, at)?,
        app_id: get(row, at + 1)?,
        event_id: get(row, at + 2)?,
        event_type: get(row, at + 3)?,
        payload: payload.into(),
        channels: get(row, at + 5)?,
        created_at: get(row, at + 6)?,
    })
}

pub(crate) const DELIVERY_COLUMNS: &str = "d.id, d.app_id, d.msg_id, d.endpoint_id, d.status, d.attempts, \
     d.next_attempt_at, d.trigger_type, d.created_at, d.updated_at";

pub(crate) fn delivery_from_row(row: &Row) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: get(row, 0)?,
        app_id: get(row, 1)?,
        msg_id: get(row, 2)?,
        endpoint_id: get(row, 3)?,
        status: delivery_status(get(row, 4)?)?,
        attempts: u32::try_from(get::<i32>(row, 5)?).unwrap_or(0),
        next_attempt_at: get(row, 6)?,
        trigger: trigger(get(row, 7)?)?,
        created_at: get(row, 8)?,
        updated_at: get(row, 9)?,
    })
}

pub(crate) const ATTEMPT_COLUMNS: &str = "id, app_id, msg_id, endpoint_id, url, status, response_status_code, \
     response, response_duration_ms, error_class, trigger_type, created_at";

pub(crate) fn attempt_from_row(row: &Row) -> StoreResult<Attempt> {
    Ok(Attempt {
        id: get(row, 0)?,
        app_id: get(row, 1)?,
        msg_id: get(row, 2)?,
        endpoint_id: get(row, 3)?,
        url: get(row, 4)?,
        status: attempt_status(get(row, 5)?)?,
        response_status_code: u16::try_from(get::<i32>(row, 6)?).unwrap_or(0),
        response: get(row, 7)?,
        response_duration_ms: get(row, 8)?,
        error_class: error_class(get(row, 9)?)?,
        trigger: trigger(get(row, 10)?)?,
        created_at: get(row, 11)?,
    })
}

/// The id of the app named by id or uid (an id wins over another app's equal uid).
pub(crate) async fn resolve_app(conn: &Conn, id_or_uid: &str) -> StoreResult<Option<String>> {
    let row =
        query_opt(conn, "SELECT id FROM apps WHERE id = $1 OR uid = $1 ORDER BY (id = $1) DESC LIMIT 1", &[&id_or_uid])
            .await?;
    row.map(|row| get(&row, 0)).transpose()
}

pub(crate) async fn require_app(conn: &Conn, id_or_uid: &str) -> StoreResult<String> {
    resolve_app(conn, id_or_uid).await?.ok_or_else(|| StoreError::NotFound(format!("application {id_or_uid}")))
}

/// The id of the endpoint named by id or uid within an app.
pub(crate) async fn resolve_endpoint(conn: &Conn, app_id: &str, id_or_uid: &str) -> StoreResult<Option<String>> {
    let row = query_opt(
        conn,
        "SELECT id FROM endpoints WHERE app_id = $1 AND (id = $2 OR uid = $2) ORDER BY (id = $2) DESC LIMIT 1",
        &[&app_id, &id_or_uid],
    )
    .await?;
    row.map(|row| get(&row, 0)).transpose()
}

pub(crate) async fn require_endpoint(conn: &Conn, app_id: &str, id_or_uid: &str) -> StoreResult<String> {
    resolve_endpoint(conn, app_id, id_or_uid)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("endpoint {id_or_uid}")))
}

/// The id of the message named by id or event id within an app.
pub(crate) async fn resolve_message(conn: &Conn, app_id: &str, id_or_event_id: &str) -> StoreResult<Option<String>> {
    let row = query_opt(
        conn,
        "SELECT id FROM messages WHERE app_id = $1 AND (id = $2 OR event_id = $2) ORDER BY (id = $2) DESC LIMIT 1",
        &[&app_id, &id_or_event_id],
    )
    .await?;
    row.map(|row| get(&row, 0)).transpose()
}

pub(crate) async fn require_message(conn: &Conn, app_id: &str, id_or_event_id: &str) -> StoreResult<String> {
    resolve_message(conn, app_id, id_or_event_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("message {id_or_event_id}")))
}

/// An endpoint by id (no app check): for the delivery paths, which know the id.
pub(crate) async fn endpoint_by_id(conn: &Conn, id: &str) -> StoreResult<Option<Endpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1");
    query_opt(conn, &sql, &[&id]).await?.map(|row| endpoint_from_row(&row)).transpose()
}
