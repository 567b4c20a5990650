//! The schema and its migration runner: an ordered list of SQL scripts, the number applied kept
//! in `schema_version` inside Herald's schema. All pending migrations run in one transaction
//! that first takes a transaction-level advisory lock derived from the schema name, so several
//! nodes starting at once queue up behind the first: the first migrates, the others then find
//! the schema current. A crash leaves the schema at a whole version. A schema whose version is
//! newer than [`MIGRATIONS`] is refused rather than guessed at.
//!
//! Never edit a migration that has shipped; append a new one.

use tokio_postgres::Client;

use super::rows::DbResultExt;
use super::stable_hash;
use herald_store::{StoreError, StoreResult};

/// The migrations, oldest first; the schema version is how many have run.
pub(crate) const MIGRATIONS: &[&str] = &[V1_INITIAL];

/// The schema version this code writes.
pub(crate) fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Bring `schema` to [`latest_version`] on `client` (a connection of its own); returns the
/// version it is at. `schema` has been checked to be a plain identifier.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> StoreResult<u32> {
    let tx = client.transaction().await.db()?;
    // The lock key: a stable hash of the schema name, so two schemas migrate independently.
    let key = stable_hash(&format!("herald-migrate:{schema}")) as i64;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).await.db()?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; SET LOCAL search_path TO {schema}; \
         CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
    ))
    .await
    .db()?;
    let current: Option<i32> = tx.query_one("SELECT MAX(version) FROM schema_version", &[]).await.db()?.get(0);
    let current = u32::try_from(current.unwrap_or(0)).unwrap_or(0);
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::Backend(format!(
            "the database schema {schema} is at version {current}, newer than the {latest} this Herald knows: \
             run a newer Herald, or restore a backup"
        )));
    }
    if current == latest {
        tx.commit().await.db()?;
        return Ok(current);
    }
    for (idx, script) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(script)
            .await
            .map_err(|e| StoreError::Backend(format!("migration to schema version {} failed: {e}", idx + 1)))?;
    }
    tx.execute("DELETE FROM schema_version", &[]).await.db()?;
    tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&(latest as i32)]).await.db()?;
    tx.commit().await.db()?;
    Ok(latest)
}

/// Version 1: applications, event types, endpoints, the event log, deliveries and attempts,
/// idempotency keys and durable channel streams. The same tables as SQLite's version 1, with
/// PostgreSQL types: event type and channel filters are `text[]` so fan-out filters in SQL. Keys
/// that listings sort by (ids, names, channels) use the "C" collation: ids sort by creation only
/// in byte order, and retention walks a namespace as one contiguous range of channel names.
///
/// `deliveries` is the queue and stays narrow (no payload): claims scan the partial index on
/// `due_at`, the claim key (see `deliveries.rs`).
const V1_INITIAL: &str = r#"
CREATE TABLE apps (
    id          TEXT COLLATE "C" PRIMARY KEY,
    uid         TEXT UNIQUE,
    name        TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    rate_limit  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE event_types (
    name          TEXT COLLATE "C" PRIMARY KEY,
    description   TEXT NOT NULL,
    archived      BOOLEAN NOT NULL,
    schemas       TEXT,
    feature_flag  TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id                TEXT COLLATE "C" PRIMARY KEY,
    app_id            TEXT COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    uid               TEXT,
    url               TEXT NOT NULL,
    description       TEXT NOT NULL,
    version           INTEGER NOT NULL,
    disabled          BOOLEAN NOT NULL,
    disabled_reason   TEXT,
    event_types       TEXT[],
    channels          TEXT[],
    secret            TEXT NOT NULL,
    previous_secrets  TEXT NOT NULL,
    headers           TEXT NOT NULL,
    rate_limit        BIGINT,
    max_concurrency   BIGINT NOT NULL,
    metadata          TEXT NOT NULL,
    failing_since     BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (app_id, uid)
);
CREATE INDEX endpoints_app ON endpoints (app_id, id);

CREATE TABLE messages (
    id          TEXT COLLATE "C" PRIMARY KEY,
    app_id      TEXT COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    event_id    TEXT,
    event_type  TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    channels    TEXT[],
    created_at  BIGINT NOT NULL,
    UNIQUE (app_id, event_id)
);
CREATE INDEX messages_app ON messages (app_id, id);
CREATE INDEX messages_app_created ON messages (app_id, created_at);

CREATE TABLE deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id           TEXT COLLATE "C" NOT NULL,
    msg_id           TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    endpoint_id      TEXT COLLATE "C" NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    status           SMALLINT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT,
    lease_until      BIGINT,
    due_at           BIGINT,
    trigger_type     SMALLINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- Claiming: the due deliveries, oldest due first.
CREATE INDEX deliveries_due ON deliveries (due_at, id) WHERE due_at IS NOT NULL;
-- The head of an endpoint's queue: its oldest unfinished (pending or sending) delivery.
CREATE INDEX deliveries_unfinished ON deliveries (endpoint_id, id) WHERE status IN (1, 3);
-- Whether an endpoint has a delivery in flight.
CREATE INDEX deliveries_sending ON deliveries (endpoint_id, lease_until) WHERE status = 3;
-- Per message (listing, the latest delivery to an endpoint) and per endpoint (recovery, cascades).
CREATE INDEX deliveries_msg ON deliveries (msg_id, endpoint_id, id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, msg_id);
-- Dead letters by app, newest first.
CREATE INDEX deliveries_dead ON deliveries (app_id, id) WHERE status = 2;
CREATE INDEX deliveries_status ON deliveries (status);

CREATE TABLE attempts (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    app_id                TEXT COLLATE "C" NOT NULL,
    msg_id                TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    endpoint_id           TEXT COLLATE "C" NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    delivery_id           BIGINT NOT NULL,
    url                   TEXT NOT NULL,
    status                SMALLINT NOT NULL,
    response_status_code  INTEGER NOT NULL,
    response              TEXT NOT NULL,
    response_duration_ms  BIGINT NOT NULL,
    error_class           TEXT,
    trigger_type          SMALLINT NOT NULL,
    created_at            BIGINT NOT NULL
);
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, id);
CREATE INDEX attempts_msg ON attempts (msg_id, id);

CREATE TABLE idempotency_keys (
    idem_key      TEXT COLLATE "C" PRIMARY KEY,
    request_hash  TEXT NOT NULL,
    status        INTEGER NOT NULL,
    body          BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- One row per durable channel: its stream's epoch and the offset of its newest publication.
-- Appends bump `top_offset` under the row's lock, so offsets are gapless across nodes.
CREATE TABLE channel_meta (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel     TEXT COLLATE "C" NOT NULL UNIQUE,
    epoch       TEXT NOT NULL,
    top_offset  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A channel's stream; offsets are consecutive from 1, and retention removes a prefix.
CREATE TABLE publications (
    channel_id     BIGINT NOT NULL,
    stream_offset  BIGINT NOT NULL,
    data           BYTEA NOT NULL,
    info           BYTEA,
    tags           TEXT,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (channel_id, stream_offset)
);
"#;
