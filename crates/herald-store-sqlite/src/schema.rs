//! The schema and its migration runner: an ordered list of SQL scripts, the number applied kept
//! in `schema_version`. Each migration runs in its own transaction together with the version
//! bump, so a crash leaves the database at a whole version. A database whose version is newer
//! than [`MIGRATIONS`] is refused rather than guessed at.
//!
//! Never edit a migration that has shipped; append a new one.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::rows::DbResultExt;
use herald_store::{StoreError, StoreResult};

/// The migrations, oldest first; the schema version is how many have run.
pub(crate) const MIGRATIONS: &[&str] = &[V1_INITIAL];

/// The schema version this code writes.
pub(crate) fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Bring the database to [`latest_version`]; returns the version it is at.
pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<u32> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").db()?;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).db()?;
        let current = current_version(&tx)?;
        let latest = latest_version();
        if current > latest {
            return Err(StoreError::Backend(format!(
                "the database schema is at version {current}, newer than the {latest} this Herald knows: \
                 run a newer Herald, or restore a backup"
            )));
        }
        if current == latest {
            return Ok(current);
        }
        let script = MIGRATIONS[current as usize];
        tx.execute_batch(script)
            .map_err(|e| StoreError::Backend(format!("migration to schema version {} failed: {e}", current + 1)))?;
        tx.execute("DELETE FROM schema_version", []).db()?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [current + 1]).db()?;
        tx.commit().db()?;
    }
}

fn current_version(conn: &Connection) -> StoreResult<u32> {
    let version: Option<i64> =
        conn.query_row("SELECT MAX(version) FROM schema_version", [], |row| row.get(0)).optional().db()?.flatten();
    Ok(version.map(|v| u32::try_from(v).unwrap_or(u32::MAX)).unwrap_or(0))
}

/// Version 1: applications, event types, endpoints, the event log, deliveries and attempts,
/// idempotency keys and durable channel streams.
///
/// Deliveries carry `due_at`, the claim key: the time a delivery becomes claimable, NULL when it
/// is not claimable until something else changes (finished, behind the head of an ordered
/// endpoint, endpoint disabled). See `sqlite/deliveries.rs` for the rules that keep it.
const V1_INITIAL: &str = r#"
CREATE TABLE apps (
    id          TEXT PRIMARY KEY NOT NULL,
    uid         TEXT UNIQUE,
    name        TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    rate_limit  INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE event_types (
    name          TEXT PRIMARY KEY NOT NULL,
    description   TEXT NOT NULL,
    archived      INTEGER NOT NULL,
    schemas       TEXT,
    feature_flag  TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE endpoints (
    id                TEXT PRIMARY KEY NOT NULL,
    app_id            TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    uid               TEXT,
    url               TEXT NOT NULL,
    description       TEXT NOT NULL,
    version           INTEGER NOT NULL,
    disabled          INTEGER NOT NULL,
    disabled_reason   TEXT,
    event_types       TEXT,
    channels          TEXT,
    secret            TEXT NOT NULL,
    previous_secrets  TEXT NOT NULL,
    headers           TEXT NOT NULL,
    rate_limit        INTEGER,
    max_concurrency   INTEGER NOT NULL,
    metadata          TEXT NOT NULL,
    failing_since     INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (app_id, uid)
);
CREATE INDEX endpoints_app ON endpoints (app_id, id);

CREATE TABLE messages (
    id          TEXT PRIMARY KEY NOT NULL,
    app_id      TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    event_id    TEXT,
    event_type  TEXT NOT NULL,
    payload     BLOB NOT NULL,
    channels    TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (app_id, event_id)
);
CREATE INDEX messages_app ON messages (app_id, id);
CREATE INDEX messages_app_created ON messages (app_id, created_at);

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id           TEXT NOT NULL,
    msg_id           TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    endpoint_id      TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    status           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER,
    lease_until      INTEGER,
    due_at           INTEGER,
    trigger_type     INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
-- Claiming: the due deliveries, oldest due first.
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE due_at IS NOT NULL;
-- The head of an endpoint's queue: its oldest unfinished (pending or sending) delivery.
CREATE INDEX deliveries_unfinished ON deliveries (endpoint_id, id) WHERE status IN (1, 3);
-- Whether an endpoint has a delivery in flight.
CREATE INDEX deliveries_sending ON deliveries (endpoint_id, lease_until) WHERE status = 3;
-- Per message (listing, the latest delivery to an endpoint) and per endpoint (recovery, cascades).
CREATE INDEX deliveries_msg ON deliveries (msg_id, endpoint_id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, msg_id);
-- Dead letters by app, newest first.
CREATE INDEX deliveries_dead ON deliveries (app_id, id) WHERE status = 2;
CREATE INDEX deliveries_status ON deliveries (status);

CREATE TABLE attempts (
    id                    TEXT PRIMARY KEY NOT NULL,
    app_id                TEXT NOT NULL,
    msg_id                TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    endpoint_id           TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    delivery_id           INTEGER NOT NULL,
    url                   TEXT NOT NULL,
    status                INTEGER NOT NULL,
    response_status_code  INTEGER NOT NULL,
    response              TEXT NOT NULL,
    response_duration_ms  INTEGER NOT NULL,
    error_class           TEXT,
    trigger_type          INTEGER NOT NULL,
    created_at            INTEGER NOT NULL
);
CREATE INDEX attempts_endpoint ON attempts (endpoint_id, id);
CREATE INDEX attempts_msg ON attempts (msg_id, id);

CREATE TABLE idempotency_keys (
    idem_key      TEXT PRIMARY KEY NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER NOT NULL,
    body          BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- One row per durable channel: its stream's epoch and the offset of its newest publication.
CREATE TABLE channel_meta (
    id          INTEGER PRIMARY KEY,
    channel     TEXT NOT NULL UNIQUE,
    epoch       TEXT NOT NULL,
    top_offset  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- A channel's stream; offsets are consecutive from 1, and retention removes a prefix.
CREATE TABLE publications (
    channel_id     INTEGER NOT NULL,
    stream_offset  INTEGER NOT NULL,
    data           BLOB NOT NULL,
    info           BLOB,
    tags           TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (channel_id, stream_offset)
) WITHOUT ROWID;
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_an_empty_database_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().expect("open");
        assert_eq!(migrate(&mut conn).expect("migrate"), latest_version());
        assert_eq!(migrate(&mut conn).expect("migrate again"), latest_version());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn).expect("migrate");
        conn.execute("UPDATE schema_version SET version = ?1", [latest_version() + 1]).expect("bump");
        let error = migrate(&mut conn).expect_err("newer schema");
        assert!(error.to_string().contains("newer"), "{error}");
    }
}
