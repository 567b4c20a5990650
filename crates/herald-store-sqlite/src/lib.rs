//! The embedded SQLite backend of [`Store`]: one database file, one writer thread with group
//! commit, a small pool of read connections.
//!
//! # Design
//!
//! **One writer.** SQLite allows one writer at a time, so instead of many connections taking
//! turns at the lock, one thread owns the only write connection (`sqlite/writer.rs`). Every
//! write is a job sent to it over a bounded channel (`queue_capacity`; a full queue makes
//! callers wait, which is the backpressure). Async callers never block the runtime: they await
//! the channel send and a oneshot reply, and the thread is a plain OS thread.
//!
//! **Group commit.** The thread takes the first queued job and whatever else is queued, up to
//! `max_batch`, runs them in one transaction, each in its own SAVEPOINT (a failing job rolls back
//! alone and gets its error; the others commit), commits, and only then answers each caller.
//! With WAL and `synchronous=FULL` the commit is one fsync for the whole batch: durable
//! throughput is the batch size over the fsync time, and the batch grows by itself with the
//! load because jobs queue up while a commit is in flight. Nothing is acknowledged before it is
//! durable.
//!
//! **Readers.** Reads run on `read_connections` read-only connections under `spawn_blocking`,
//! each read in one transaction (one WAL snapshot). A read after a write's reply sees that write.
//!
//! **Durable channels.** Offsets are assigned by the writer inside the batch's transaction, so
//! requests of one batch that hit the same channel get consecutive offsets in queue order
//! (`sqlite/channels.rs`). Appends are the hot path and skip the closure machinery: a run of
//! consecutive append requests shares one savepoint and one read and one write of each
//! channel's row, falling back to one savepoint per request only if the run fails.
//!
//! **Claims and leases.** `claim_due_deliveries` is a write job: it marks due deliveries
//! `Sending` with `lease_until = now + lease_ms` and commits before returning them (without
//! waiting for an fsync: a claim lost to a power failure only makes the delivery claimable
//! again; see `sqlite/writer.rs`). No
//! transaction is held during the HTTP call. A worker that dies leaves its delivery `Sending`;
//! once the lease has ended it is due again and the next claim takes it (crash recovery). An
//! endpoint with `max_concurrency` 1 is ordered: only its oldest unfinished delivery is ever
//! claimable, and only while none of its deliveries is sending under a live lease. Claims read
//! a precomputed claim key, `due_at`, instead of evaluating that rule over the backlog; the
//! rules that maintain it are in `sqlite/deliveries.rs`.
//!
//! **Schema.** Our own migration runner (`sqlite/schema.rs`): an ordered list of SQL scripts and
//! a `schema_version` table. A database written by a newer Herald is refused.

mod apps;
mod channels;
mod deliveries;
mod messages;
mod paging;
mod reader;
mod rows;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};

use self::channels::Retention;
use self::reader::ReadPool;
use self::rows::DbResultExt;
use self::writer::WriterHandle;
use herald_store::roles::*;
use herald_store::{
    App, Attempt, AttemptFilter, ClaimedDelivery, Delivery, DeliveryCounts, DeliveryNext, Endpoint, EndpointHealth,
    EndpointUpdate, EventType, IdempotentResponse, Message, MessageFilter, NewApp, NewAttempt, NewEndpoint,
    NewEventType, NewMessage, NewPublication, Page, PageRequest, StoreError, StoreResult, StoredPublication,
    StreamPosition, Timestamp, now_ms,
};

/// Settings of the SQLite store. herald-core's `StoreConfig` maps onto it with
/// `path = data_dir.join("herald.db")`.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file; its directory is created if missing. The WAL lives beside it.
    pub path: PathBuf,
    /// Most writes group-committed in one transaction.
    pub max_batch: usize,
    /// Most writes waiting for the writer thread; callers beyond it wait.
    pub queue_capacity: usize,
    /// Read connections kept open.
    pub read_connections: usize,
}

impl SqliteConfig {
    /// Defaults for a database at `path` (the same as herald-core's defaults).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), max_batch: 1000, queue_capacity: 10_000, read_connections: 4 }
    }
}

/// The SQLite [`Store`]. Cheap to clone; the writer thread stops once the last clone is gone
/// (after committing what was queued).
#[derive(Clone)]
pub struct SqliteStore {
    writer: WriterHandle,
    readers: Arc<ReadPool>,
}

/// How long a connection waits for a lock held by another process (a backup, the CLI).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bring the database at `path` to the current schema; returns its schema version. Creates the
/// file (and its directory) if missing. [`SqliteStore::open`] runs this too.
pub fn migrate(path: &Path) -> StoreResult<u32> {
    let mut conn = open_connection(path)?;
    schema::migrate(&mut conn)
}

impl SqliteStore {
    /// Open (creating if needed) and migrate the database, start the writer thread and the
    /// read connections.
    pub fn open(config: &SqliteConfig) -> StoreResult<SqliteStore> {
        let mut conn = open_connection(&config.path)?;
        schema::migrate(&mut conn)?;
        // Checkpoint less often than the default (1000 pages): each checkpoint is an fsync of
        // the database file on the writer thread, in the way of the next batch.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000).db()?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024).db()?;
        let readers = Arc::new(ReadPool::open(&config.path, config.read_connections)?);
        let (writer, _thread) = WriterHandle::spawn(conn, config.max_batch, config.queue_capacity)?;
        Ok(SqliteStore { writer, readers })
    }

    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.write(work).await
    }

    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.readers.read(work).await
    }
}

/// A connection with Herald's settings, for the writer (and migrations).
fn open_connection(path: &Path) -> StoreResult<Connection> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create the data directory {}: {e}", dir.display())))?;
    }
    let conn = schema_open(path)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).db()?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!("the database refused WAL mode (journal_mode is {mode})")));
    }
    Ok(conn)
}

/// Open a connection and apply the per-connection settings every connection needs.
pub(crate) fn schema_open(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open the database {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).db()?;
    conn.pragma_update(None, "synchronous", "FULL").db()?;
    conn.pragma_update(None, "foreign_keys", true).db()?;
    conn.pragma_update(None, "temp_store", "MEMORY").db()?;
    // 32 MiB of page cache per connection.
    conn.pragma_update(None, "cache_size", -32_768).db()?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        if self.writer.is_closed() {
            return Err(StoreError::Unavailable("the store writer has stopped".to_owned()));
        }
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).db()).await
    }
}

#[async_trait]
impl Applications for SqliteStore {
    async fn create_app(&self, new: NewApp) -> StoreResult<App> {
        self.write(move |conn| apps::create_app(conn, new)).await
    }

    async fn get_app(&self, id_or_uid: &str) -> StoreResult<Option<App>> {
        let id_or_uid = id_or_uid.to_owned();
        self.read(move |conn| apps::get_app(conn, &id_or_uid)).await
    }

    async fn list_apps(&self, page: PageRequest) -> StoreResult<Page<App>> {
        self.read(move |conn| apps::list_apps(conn, &page)).await
    }

    async fn update_app(&self, id: &str, update: NewApp) -> StoreResult<App> {
        let id = id.to_owned();
        self.write(move |conn| apps::update_app(conn, &id, update)).await
    }

    async fn delete_app(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| apps::delete_app(conn, &id)).await
    }

    // --- event types ------------------------------------------------------------------------

    async fn create_event_type(&self, new: NewEventType) -> StoreResult<EventType> {
        self.write(move |conn| apps::create_event_type(conn, new)).await
    }

    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>> {
        let name = name.to_owned();
        self.read(move |conn| apps::get_event_type(conn, &name)).await
    }

    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> StoreResult<Page<EventType>> {
        self.read(move |conn| apps::list_event_types(conn, &page, include_archived)).await
    }

    async fn update_event_type(&self, name: &str, update: NewEventType) -> StoreResult<EventType> {
        let name = name.to_owned();
        self.write(move |conn| apps::update_event_type(conn, &name, update)).await
    }

    async fn delete_event_type(&self, name: &str, expunge: bool) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |conn| apps::delete_event_type(conn, &name, expunge)).await
    }

    // --- endpoints --------------------------------------------------------------------------

    async fn create_endpoint(&self, app_id: &str, new: NewEndpoint) -> StoreResult<Endpoint> {
        let app_id = app_id.to_owned();
        self.write(move |conn| apps::create_endpoint(conn, &app_id, new)).await
    }

    async fn get_endpoint(&self, app_id: &str, id_or_uid: &str) -> StoreResult<Option<Endpoint>> {
        let (app_id, id_or_uid) = (app_id.to_owned(), id_or_uid.to_owned());
        self.read(move |conn| apps::get_endpoint(conn, &app_id, &id_or_uid)).await
    }

    async fn list_endpoints(&self, app_id: &str, page: PageRequest) -> StoreResult<Page<Endpoint>> {
        let app_id = app_id.to_owned();
        self.read(move |conn| apps::list_endpoints(conn, &app_id, &page)).await
    }

    async fn update_endpoint(&self, app_id: &str, id: &str, update: EndpointUpdate) -> StoreResult<Endpoint> {
        let (app_id, id) = (app_id.to_owned(), id.to_owned());
        self.write(move |conn| apps::update_endpoint(conn, &app_id, &id, update)).await
    }

    async fn delete_endpoint(&self, app_id: &str, id: &str) -> StoreResult<()> {
        let (app_id, id) = (app_id.to_owned(), id.to_owned());
        self.write(move |conn| apps::delete_endpoint(conn, &app_id, &id)).await
    }

    async fn rotate_endpoint_secret(
        &self,
        app_id: &str,
        id: &str,
        new_secret: String,
        old_expires_at: Timestamp,
    ) -> StoreResult<Endpoint> {
        let (app_id, id) = (app_id.to_owned(), id.to_owned());
        self.write(move |conn| apps::rotate_endpoint_secret(conn, &app_id, &id, new_secret, old_expires_at)).await
    }

    async fn set_endpoint_health(&self, endpoint_id: &str, health: EndpointHealth) -> StoreResult<()> {
        let endpoint_id = endpoint_id.to_owned();
        self.write(move |conn| apps::set_endpoint_health(conn, &endpoint_id, health)).await
    }
}

#[async_trait]
impl MessageLog for SqliteStore {
    async fn create_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        self.write(move |conn| messages::create_message(conn, new)).await
    }

    async fn get_message(&self, app_id: &str, id_or_event_id: &str) -> StoreResult<Option<Message>> {
        let (app_id, id_or_event_id) = (app_id.to_owned(), id_or_event_id.to_owned());
        self.read(move |conn| messages::get_message(conn, &app_id, &id_or_event_id)).await
    }

    async fn list_messages(
        &self,
        app_id: &str,
        page: PageRequest,
        filter: MessageFilter,
    ) -> StoreResult<Page<Message>> {
        let app_id = app_id.to_owned();
        self.read(move |conn| messages::list_messages(conn, &app_id, &page, filter)).await
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // A lease: see the writer's module doc for why a claim need not wait for an fsync.
        self.writer.write_lease(move |conn| deliveries::claim_due_deliveries(conn, now, limit, lease_ms)).await
    }

    async fn record_attempt(&self, delivery_id: i64, attempt: NewAttempt, next: DeliveryNext) -> StoreResult<Attempt> {
        self.write(move |conn| deliveries::record_attempt(conn, delivery_id, attempt, next)).await
    }

    async fn resend(&self, app_id: &str, msg_id: &str, endpoint_id: &str) -> StoreResult<()> {
        let (app_id, msg_id, endpoint_id) = (app_id.to_owned(), msg_id.to_owned(), endpoint_id.to_owned());
        self.write(move |conn| deliveries::resend(conn, &app_id, &msg_id, &endpoint_id)).await
    }

    async fn recover_endpoint(
        &self,
        app_id: &str,
        endpoint_id: &str,
        since: Timestamp,
        until: Option<Timestamp>,
        all: bool,
    ) -> StoreResult<u64> {
        let (app_id, endpoint_id) = (app_id.to_owned(), endpoint_id.to_owned());
        self.write(move |conn| deliveries::recover_endpoint(conn, &app_id, &endpoint_id, since, until, all)).await
    }

    async fn list_dead_letters(&self, app_id: Option<&str>, page: PageRequest) -> StoreResult<Page<Delivery>> {
        let app_id = app_id.map(str::to_owned);
        self.read(move |conn| deliveries::list_dead_letters(conn, app_id.as_deref(), &page)).await
    }

    async fn replay_dead_letters(&self, app_id: Option<&str>, endpoint_id: Option<&str>) -> StoreResult<u64> {
        let (app_id, endpoint_id) = (app_id.map(str::to_owned), endpoint_id.map(str::to_owned));
        self.write(move |conn| deliveries::replay_dead_letters(conn, app_id.as_deref(), endpoint_id.as_deref())).await
    }

    async fn list_attempts(
        &self,
        app_id: &str,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Attempt>> {
        let app_id = app_id.to_owned();
        self.read(move |conn| deliveries::list_attempts(conn, &app_id, filter, &page)).await
    }

    async fn list_deliveries_for_message(&self, app_id: &str, msg_id: &str) -> StoreResult<Vec<Delivery>> {
        let (app_id, msg_id) = (app_id.to_owned(), msg_id.to_owned());
        self.read(move |conn| deliveries::list_deliveries_for_message(conn, &app_id, &msg_id)).await
    }

    async fn delivery_counts(&self) -> StoreResult<DeliveryCounts> {
        self.read(deliveries::delivery_counts).await
    }
}

#[async_trait]
impl IdempotencyKeys for SqliteStore {
    async fn idempotency_get(&self, key: &str) -> StoreResult<Option<IdempotentResponse>> {
        let key = key.to_owned();
        self.read(move |conn| idempotency::get(conn, &key)).await
    }

    async fn idempotency_put(&self, key: &str, response: IdempotentResponse) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |conn| idempotency::put(conn, &key, &response)).await
    }

    async fn idempotency_prune(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| idempotency::prune(conn, before)).await
    }
}

#[async_trait]
impl ChannelLog for SqliteStore {
    async fn append_publications(&self, publications: Vec<NewPublication>) -> StoreResult<Vec<StreamPosition>> {
        if publications.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.append(publications).await
    }

    async fn channel_position(&self, channel: &str) -> StoreResult<StreamPosition> {
        let owned = channel.to_owned();
        if let Some(position) = self.read(move |conn| channels::find_position(conn, &owned)).await? {
            return Ok(position);
        }
        let channel = channel.to_owned();
        self.write(move |conn| channels::ensure_position(conn, &channel, now_ms())).await
    }

    async fn channel_history(
        &self,
        channel: &str,
        since_offset: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> StoreResult<(Vec<StoredPublication>, StreamPosition)> {
        let owned = channel.to_owned();
        let found = self.read(move |conn| channels::history(conn, &owned, since_offset, limit, reverse)).await?;
        match found {
            Some(found) => Ok(found),
            // An unknown channel has no history, but gets its epoch now so it stays stable.
            None => Ok((Vec::new(), self.channel_position(channel).await?)),
        }
    }

    async fn channel_history_remove(&self, channel: &str) -> StoreResult<()> {
        let channel = channel.to_owned();
        self.write(move |conn| channels::history_remove(conn, &channel)).await
    }

    async fn prune_channels(
        &self,
        prefix: &str,
        max_count: usize,
        max_age_ms: i64,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let rule = Retention { prefix: prefix.to_owned(), max_count, max_age_ms, now };
        let mut cursor: Option<String> = None;
        let mut removed = 0;
        // One writer job per chunk of channels: other writes get their turn in between.
        loop {
            let rule = rule.clone();
            let after = cursor.take();
            let (chunk_removed, next) =
                self.write(move |conn| channels::prune_chunk(conn, &rule, after.as_deref())).await?;
            removed += chunk_removed;
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(removed),
            }
        }
    }
}

/// Idempotency keys of the management API.
mod idempotency {
    use rusqlite::{Connection, OptionalExtension, params};

    use super::rows::DbResultExt;
    use herald_store::{IdempotentResponse, StoreResult, Timestamp};

    pub(super) fn get(conn: &Connection, key: &str) -> StoreResult<Option<IdempotentResponse>> {
        conn.prepare_cached("SELECT request_hash, status, body, created_at FROM idempotency_keys WHERE idem_key = ?1")
            .db()?
            .query_row(params![key], |row| {
                let body: Vec<u8> = row.get(2)?;
                Ok(IdempotentResponse {
                    request_hash: row.get(0)?,
                    status: row.get(1)?,
                    body: body.into(),
                    created_at: row.get(3)?,
                })
            })
            .optional()
            .db()
    }

    pub(super) fn put(conn: &Connection, key: &str, response: &IdempotentResponse) -> StoreResult<()> {
        // First writer wins: a key already there is kept as it is.
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (idem_key, request_hash, status, body, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (idem_key) DO NOTHING",
        )
        .db()?
        .execute(params![key, response.request_hash, response.status, response.body.as_ref(), response.created_at])
        .db()?;
        Ok(())
    }

    pub(super) fn prune(conn: &Connection, before: Timestamp) -> StoreResult<u64> {
        let removed = conn
            .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")
            .db()?
            .execute(params![before])
            .db()?;
        Ok(removed as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_connection_is_durable_wal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_connection(&dir.path().join("nested").join("herald.db")).expect("open");
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("journal_mode");
        let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0)).expect("synchronous");
        let foreign_keys: bool = conn.query_row("PRAGMA foreign_keys", [], |row| row.get(0)).expect("foreign_keys");
        assert_eq!((mode.as_str(), synchronous, foreign_keys), ("wal", 2, true), "WAL, synchronous=FULL, foreign keys");
    }

    #[tokio::test]
    async fn only_lease_batches_commit_without_fsync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open_connection(&dir.path().join("herald.db")).expect("open");
        let (writer, _thread) = WriterHandle::spawn(conn, 16, 16).expect("writer");
        let synchronous = |conn: &Connection| conn.query_row("PRAGMA synchronous", [], |row| row.get::<_, i64>(0)).db();
        // 1 = NORMAL (no fsync at commit), 2 = FULL.
        assert_eq!(writer.write_lease(synchronous).await.expect("lease"), 1);
        assert_eq!(writer.write(synchronous).await.expect("write"), 2);
        assert_eq!(writer.write_lease(synchronous).await.expect("lease"), 1);
        assert_eq!(writer.write(synchronous).await.expect("write"), 2);
    }
}
