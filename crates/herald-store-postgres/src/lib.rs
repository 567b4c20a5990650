//! The PostgreSQL backend of [`Store`]: several Herald nodes share one durable event log.
//!
//! # Design
//!
//! **Group commit.** As on SQLite, every write a caller waits for is a request to the writer
//! (`writer.rs`) over a bounded queue (`queue_capacity`; a full queue makes callers wait). Its
//! three lanes (messages, attempts, everything else) each run whatever is queued, up to
//! `max_batch`, in one transaction on a pooled connection, each request in its own savepoint,
//! commit, and only then answer each caller. One commit (one WAL flush on the server) carries a
//! whole batch, the batch grows with the load, and the hot writes (messages, attempts,
//! durable-channel appends) are run batch-wide in a fixed number of pipelined round trips.
//! Reads go straight to the pool (`pool_size` connections), one statement at a time, so a read
//! after a write's reply sees that write.
//!
//! **Claims** do not go through the writer: each runs in a transaction of its own (spawned, so
//! a caller that goes away cannot return a connection to the pool mid-transaction), taking due
//! deliveries with `FOR UPDATE SKIP LOCKED` in batches and marking them sending under a lease.
//! Claims on several nodes never take the same delivery, and an ordered endpoint never has two
//! in flight in the cluster: `deliveries.rs` explains the endpoint-row lock that makes the
//! ordering rule hold across nodes. A claim commits without waiting for the WAL flush: lost in
//! a crash, it only means the delivery is sent again, as after a lease expiry.
//!
//! **Plans.** Connections use generic plans (planned once per prepared statement, not per call)
//! and forget their prepared statements every few hundred uses, so the plans follow the tables
//! as they grow (`rows::pooled`).
//!
//! **Durable channels.** Offsets are assigned in the database per channel by bumping the
//! channel row's top offset under its row lock (`channels.rs`), so two nodes appending to one
//! channel produce one gapless sequence, and an epoch, once created, never changes.
//!
//! **Wake-ups.** A batch that created delivery work (a message with deliveries, a resend,
//! recovery, replay, an ordered endpoint's next head) runs `pg_notify` on this schema's channel
//! before COMMIT. Every node LISTENs on a dedicated connection that reconnects by itself
//! (`notify.rs`) and wakes [`PostgresStore::work_notify`]; after a reconnect it wakes once more,
//! since notifications sent meanwhile were lost. Dispatchers still poll as the backstop.
//!
//! **Schema.** All tables live in one PostgreSQL schema (`PostgresConfig::schema`), set as the
//! `search_path` of every connection; the migration runner (`schema.rs`) keeps a version table
//! there and migrates under an advisory lock, so nodes starting together do not race.
//!
//! **Errors.** Unique violations are [`StoreError::Conflict`]; connection, pool, timeout and
//! shutdown failures are [`StoreError::Unavailable`] (the server answers 503) and nothing is
//! acknowledged; a node recovers by itself when the database returns (the pool reconnects). No
//! message carries the connection URL (it may hold a password).

mod apps;
mod batched;
mod channels;
mod deliveries;
mod messages;
mod notify;
mod paging;
mod rows;
mod schema;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use self::channels::Retention;
use self::rows::{Conn, DbResultExt, led, pool_error, pooled};
use self::writer::{BoxFuture, Request, WriterHandle, WriterSetup};
use herald_store::roles::*;
use herald_store::{
    App, Attempt, AttemptFilter, ClaimedDelivery, Delivery, DeliveryCounts, DeliveryNext, Endpoint, EndpointHealth,
    EndpointUpdate, EventType, IdempotentResponse, Message, MessageFilter, NewApp, NewAttempt, NewEndpoint,
    NewEventType, NewMessage, NewPublication, Page, PageRequest, StoreError, StoreResult, StoredPublication,
    StreamPosition, Timestamp, now_ms,
};

/// Settings of the PostgreSQL store.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host:port/database`; never logged.
    pub url: String,
    /// The schema holding Herald's tables, created if missing: a plain lower-case identifier.
    pub schema: String,
    /// Connections in the pool (reads, claims and the writer's batches).
    pub pool_size: usize,
    /// How long connecting (or waiting for a pooled connection) may take.
    pub connect_timeout: Duration,
    /// `statement_timeout` of every connection.
    pub statement_timeout: Duration,
    /// Most writes group-committed in one transaction.
    pub max_batch: usize,
    /// Most writes waiting for the writer; callers beyond it wait.
    pub queue_capacity: usize,
}

impl PostgresConfig {
    /// Defaults for a database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "herald".to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            max_batch: 1000,
            queue_capacity: 10_000,
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PostgresConfig")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("max_batch", &self.max_batch)
            .field("queue_capacity", &self.queue_capacity)
            .finish()
    }
}

/// The PostgreSQL [`Store`]. Cheap to clone; the writer's tasks and the listener stop once the
/// last clone is gone (the writer after committing what was queued).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    writer: WriterHandle,
    work: Arc<Notify>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Create or upgrade the schema; returns the schema version now in place. [`PostgresStore::open`]
/// runs this too.
pub async fn migrate(config: &PostgresConfig) -> StoreResult<u32> {
    let pg_config = connection_config(config)?;
    let (mut client, connection) = tokio::time::timeout(config.connect_timeout, pg_config.connect(NoTls))
        .await
        .map_err(|_| StoreError::Unavailable("connecting to PostgreSQL timed out".to_owned()))?
        .db()?;
    let driver = tokio::spawn(connection);
    let result = schema::migrate(&mut client, &config.schema).await;
    drop(client);
    let _ = driver.await;
    result
}

impl PostgresStore {
    /// Connect, migrate, and start the writer task and the LISTEN connection.
    pub async fn open(config: &PostgresConfig) -> StoreResult<Self> {
        migrate(config).await?;
        let pg_config = connection_config(config)?;
        let manager =
            Manager::from_config(pg_config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the PostgreSQL pool: {e}")))?;
        // Fail now rather than at the first request.
        drop(pool.get().await.map_err(pool_error)?);
        let work = Arc::new(Notify::new());
        let notify_channel = notify::channel_name(&config.schema);
        let writer = WriterHandle::spawn(WriterSetup {
            pool: pool.clone(),
            max_batch: config.max_batch,
            queue_capacity: config.queue_capacity,
            notify_channel: notify_channel.clone(),
            writer_lock: format!("herald-writer:{}", config.schema),
            local_wake: work.clone(),
        });
        let listener = tokio::spawn(notify::listen(pg_config, config.connect_timeout, notify_channel, work.clone()));
        Ok(Self { inner: Arc::new(Inner { pool, writer, work, listener }) })
    }

    /// Resolves whenever any node (this one included) committed new delivery work (a message
    /// with deliveries, a resend, recovery or replay, an ordered endpoint's next head): wakes
    /// every waiting dispatcher and leaves a permit for the next one to wait.
    pub fn work_notify(&self) -> Arc<Notify> {
        self.inner.work.clone()
    }

    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c Conn) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        self.inner.writer.write(work).await
    }

    async fn write_waking<T, F>(&self, work: F, wake: fn(&T) -> bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c Conn) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        self.inner.writer.write_waking(work, wake).await
    }

    /// A pooled connection for reads (and self-contained writes), outside any transaction:
    /// each statement is its own snapshot.
    async fn conn(&self) -> StoreResult<deadpool_postgres::Object> {
        pooled(&self.inner.pool).await
    }

    /// `work` in a transaction of its own, committed when it succeeds. Spawned, so that the
    /// transaction always ends before its connection goes back to the pool.
    async fn transaction<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c Conn) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let pool = self.inner.pool.clone();
        tokio::spawn(async move {
            let conn = pooled(&pool).await?;
            // BEGIN travels with the work's first statement.
            let outcome = match led(&conn, Some("BEGIN".to_owned()), work(&conn)).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    drop(deadpool_postgres::Object::take(conn));
                    return Err(error);
                }
            };
            match outcome {
                Ok(value) => {
                    conn.batch_execute("COMMIT").await.db()?;
                    Ok(value)
                }
                Err(error) => {
                    if conn.batch_execute("ROLLBACK").await.is_err() {
                        drop(deadpool_postgres::Object::take(conn));
                    }
                    Err(error)
                }
            }
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a store transaction failed: {e}")))?
    }
}

/// The tokio-postgres settings of every connection: the URL's, plus the schema as search path,
/// the statement timeout and the connect timeout.
fn connection_config(config: &PostgresConfig) -> StoreResult<tokio_postgres::Config> {
    check_schema_name(&config.schema)?;
    // The parse error is reported without the URL, which may hold a password.
    let mut pg_config = tokio_postgres::Config::from_str(&config.url)
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
    pg_config.connect_timeout(config.connect_timeout);
    pg_config.application_name("herald");
    // Custom plans: a statement's plan is made for each execution, from the tables as they are
    // then. PostgreSQL's default keeps a generic plan made at a connection's first calls, and a
    // plan made while the queue tables were nearly empty (a fresh schema, or statistics not yet
    // gathered) scans them whole once they are large: deliveries fell from 1,000/s to 500/s
    // within a minute of a fresh start. Planning costs far less than that.
    // Generic plans, made once per prepared statement (see `rows::pooled`, which has them made
    // again as the tables grow): every statement here is keyed on ids, arrays of ids or
    // ranges, whose best plan does not depend on the values, and re-planning each execution
    // cost a quarter of the webhook throughput.
    pg_config.options(format!(
        "-c search_path={} -c statement_timeout={} -c plan_cache_mode=force_generic_plan",
        config.schema,
        config.statement_timeout.as_millis().max(1)
    ));
    Ok(pg_config)
}

/// The schema name goes into SQL and connection options unquoted: only plain identifiers.
fn check_schema_name(schema: &str) -> StoreResult<()> {
    let mut chars = schema.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if first_ok && schema.len() <= 63 && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid PostgreSQL schema name {schema:?}: use lower-case letters, digits and underscores, at most 63"
        )))
    }
}

/// FNV-1a, 64 bits: a hash that every node and every version computes alike (advisory lock
/// keys, channel names).
pub(crate) fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[async_trait]
impl Store for PostgresStore {
    async fn health(&self) -> StoreResult<()> {
        if self.inner.writer.is_closed() {
            return Err(StoreError::Unavailable("the store writer has stopped".to_owned()));
        }
        let conn = self.conn().await?;
        conn.simple_query("SELECT 1").await.db()?;
        Ok(())
    }

    fn work_notify(&self) -> Option<Arc<Notify>> {
        Some(PostgresStore::work_notify(self))
    }
}

#[async_trait]
impl Applications for PostgresStore {
    async fn create_app(&self, new: NewApp) -> StoreResult<App> {
        self.write(move |conn| Box::pin(apps::create_app(conn, new))).await
    }

    async fn get_app(&self, id_or_uid: &str) -> StoreResult<Option<App>> {
        {
            let conn = self.conn().await?;
            apps::get_app(&conn, id_or_uid).await
        }
    }

    async fn list_apps(&self, page: PageRequest) -> StoreResult<Page<App>> {
        {
            let conn = self.conn().await?;
            apps::list_apps(&conn, &page).await
        }
    }

    async fn update_app(&self, id: &str, update: NewApp) -> StoreResult<App> {
        let id = id.to_owned();
        self.write(move |conn| Box::pin(async move { apps::update_app(conn, &id, update).await })).await
    }

    async fn delete_app(&self, id: &str) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |conn| Box::pin(async move { apps::delete_app(conn, &id).await })).await
    }

    // --- event types ------------------------------------------------------------------------

    async fn create_event_type(&self, new: NewEventType) -> StoreResult<EventType> {
        self.write(move |conn| Box::pin(apps::create_event_type(conn, new))).await
    }

    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>> {
        {
            let conn = self.conn().await?;
            apps::get_event_type(&conn, name).await
        }
    }

    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> StoreResult<Page<EventType>> {
        {
            let conn = self.conn().await?;
            apps::list_event_types(&conn, &page, include_archived).await
        }
    }

    async fn update_event_type(&self, name: &str, update: NewEventType) -> StoreResult<EventType> {
        let name = name.to_owned();
        self.write(move |conn| Box::pin(async move { apps::update_event_type(conn, &name, update).await })).await
    }

    async fn delete_event_type(&self, name: &str, expunge: bool) -> StoreResult<()> {
        let name = name.to_owned();
        self.write(move |conn| Box::pin(async move { apps::delete_event_type(conn, &name, expunge).await })).await
    }

    // --- endpoints --------------------------------------------------------------------------

    async fn create_endpoint(&self, app_id: &str, new: NewEndpoint) -> StoreResult<Endpoint> {
        let app_id = app_id.to_owned();
        self.write(move |conn| Box::pin(async move { apps::create_endpoint(conn, &app_id, new).await })).await
    }

    async fn get_endpoint(&self, app_id: &str, id_or_uid: &str) -> StoreResult<Option<Endpoint>> {
        {
            let conn = self.conn().await?;
            apps::get_endpoint(&conn, app_id, id_or_uid).await
        }
    }

    async fn list_endpoints(&self, app_id: &str, page: PageRequest) -> StoreResult<Page<Endpoint>> {
        {
            let conn = self.conn().await?;
            apps::list_endpoints(&conn, app_id, &page).await
        }
    }

    async fn update_endpoint(&self, app_id: &str, id: &str, update: EndpointUpdate) -> StoreResult<Endpoint> {
        let (app_id, id) = (app_id.to_owned(), id.to_owned());
        self.write(move |conn| Box::pin(async move { apps::update_endpoint(conn, &app_id, &id, update).await })).await
    }

    async fn delete_endpoint(&self, app_id: &str, id: &str) -> StoreResult<()> {
        let (app_id, id) = (app_id.to_owned(), id.to_owned());
        self.write(move |conn| Box::pin(async move { apps::delete_endpoint(conn, &app_id, &id).await })).await
    }

    async fn rotate_endpoint_secret(
        &self,
        app_id: &str,
        id: &str,
        new_secret: String,
        old_expires_at: Timestamp,
    ) -> StoreResult<Endpoint> {
        let (app_id, id) = (app_id.to_owned(), id.to_owned());
        self.write(move |conn| {
            Box::pin(async move { apps::rotate_endpoint_secret(conn, &app_id, &id, new_secret, old_expires_at).await })
        })
        .await
    }

    async fn set_endpoint_health(&self, endpoint_id: &str, health: EndpointHealth) -> StoreResult<()> {
        let endpoint_id = endpoint_id.to_owned();
        self.write(move |conn| Box::pin(async move { apps::set_endpoint_health(conn, &endpoint_id, health).await }))
            .await
    }
}

#[async_trait]
impl MessageLog for PostgresStore {
    async fn create_message(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        let (message, fresh, _) = self.inner.writer.batched(new, Request::Message).await?;
        Ok((message, fresh))
    }

    async fn get_message(&self, app_id: &str, id_or_event_id: &str) -> StoreResult<Option<Message>> {
        {
            let conn = self.conn().await?;
            messages::get_message(&conn, app_id, id_or_event_id).await
        }
    }

    async fn list_messages(
        &self,
        app_id: &str,
        page: PageRequest,
        filter: MessageFilter,
    ) -> StoreResult<Page<Message>> {
        {
            let conn = self.conn().await?;
            messages::list_messages(&conn, app_id, &page, filter).await
        }
    }
}

#[async_trait]
impl DeliveryQueue for PostgresStore {
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        self.transaction(move |conn| Box::pin(deliveries::claim_due_deliveries(conn, now, limit, lease_ms))).await
    }

    async fn record_attempt(&self, delivery_id: i64, attempt: NewAttempt, next: DeliveryNext) -> StoreResult<Attempt> {
        let record = deliveries::AttemptRecord { delivery_id, attempt, next };
        let (attempt, _) = self.inner.writer.batched(record, Request::Attempt).await?;
        Ok(attempt)
    }

    async fn resend(&self, app_id: &str, msg_id: &str, endpoint_id: &str) -> StoreResult<()> {
        let (app_id, msg_id, endpoint_id) = (app_id.to_owned(), msg_id.to_owned(), endpoint_id.to_owned());
        self.write_waking(
            move |conn| Box::pin(async move { deliveries::resend(conn, &app_id, &msg_id, &endpoint_id).await }),
            |_| true,
        )
        .await
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
        self.write_waking(
            move |conn| {
                Box::pin(
                    async move { deliveries::recover_endpoint(conn, &app_id, &endpoint_id, since, until, all).await },
                )
            },
            |recovered| *recovered > 0,
        )
        .await
    }

    async fn list_dead_letters(&self, app_id: Option<&str>, page: PageRequest) -> StoreResult<Page<Delivery>> {
        {
            let conn = self.conn().await?;
            deliveries::list_dead_letters(&conn, app_id, &page).await
        }
    }

    async fn replay_dead_letters(&self, app_id: Option<&str>, endpoint_id: Option<&str>) -> StoreResult<u64> {
        let (app_id, endpoint_id) = (app_id.map(str::to_owned), endpoint_id.map(str::to_owned));
        self.write_waking(
            move |conn| {
                Box::pin(async move {
                    deliveries::replay_dead_letters(conn, app_id.as_deref(), endpoint_id.as_deref()).await
                })
            },
            |replayed| *replayed > 0,
        )
        .await
    }

    async fn list_attempts(
        &self,
        app_id: &str,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Attempt>> {
        {
            let conn = self.conn().await?;
            deliveries::list_attempts(&conn, app_id, filter, &page).await
        }
    }

    async fn list_deliveries_for_message(&self, app_id: &str, msg_id: &str) -> StoreResult<Vec<Delivery>> {
        {
            let conn = self.conn().await?;
            deliveries::list_deliveries_for_message(&conn, app_id, msg_id).await
        }
    }

    async fn delivery_counts(&self) -> StoreResult<DeliveryCounts> {
        {
            let conn = self.conn().await?;
            deliveries::delivery_counts(&conn).await
        }
    }
}

#[async_trait]
impl IdempotencyKeys for PostgresStore {
    async fn idempotency_get(&self, key: &str) -> StoreResult<Option<IdempotentResponse>> {
        {
            let conn = self.conn().await?;
            idempotency::get_response(&conn, key).await
        }
    }

    async fn idempotency_put(&self, key: &str, response: IdempotentResponse) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |conn| Box::pin(async move { idempotency::put(conn, &key, &response).await })).await
    }

    async fn idempotency_prune(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |conn| Box::pin(idempotency::prune(conn, before))).await
    }
}

#[async_trait]
impl ChannelLog for PostgresStore {
    async fn append_publications(&self, publications: Vec<NewPublication>) -> StoreResult<Vec<StreamPosition>> {
        if publications.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.writer.batched(writer::Publications(publications), Request::Append).await
    }

    async fn channel_position(&self, channel: &str) -> StoreResult<StreamPosition> {
        let conn = self.conn().await?;
        match channels::find_position(&conn, channel).await? {
            Some(position) => Ok(position),
            None => channels::ensure_position(&conn, channel, now_ms()).await,
        }
    }

    async fn channel_history(
        &self,
        channel: &str,
        since_offset: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> StoreResult<(Vec<StoredPublication>, StreamPosition)> {
        let found = {
            let conn = self.conn().await?;
            channels::history(&conn, channel, since_offset, limit, reverse).await
        }?;
        match found {
            Some(found) => Ok(found),
            // An unknown channel has no history, but gets its epoch now so it stays stable.
            None => Ok((Vec::new(), self.channel_position(channel).await?)),
        }
    }

    async fn channel_history_remove(&self, channel: &str) -> StoreResult<()> {
        let channel = channel.to_owned();
        self.write(move |conn| Box::pin(async move { channels::history_remove(conn, &channel).await })).await
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
            let (chunk_removed, next) = self
                .write(move |conn| Box::pin(async move { channels::prune_chunk(conn, &rule, after.as_deref()).await }))
                .await?;
            removed += chunk_removed;
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(removed),
            }
        }
    }
}

/// Idempotency keys of the management API, shared by every node.
mod idempotency {
    use super::rows::{Conn, execute, get, query_opt};
    use herald_store::{IdempotentResponse, StoreResult, Timestamp};

    pub(super) async fn get_response(conn: &Conn, key: &str) -> StoreResult<Option<IdempotentResponse>> {
        let row = query_opt(
            conn,
            "SELECT request_hash, status, body, created_at FROM idempotency_keys WHERE idem_key = $1",
            &[&key],
        )
        .await?;
        let Some(row) = row else { return Ok(None) };
        let body: Vec<u8> = get(&row, 2)?;
        Ok(Some(IdempotentResponse {
            request_hash: get(&row, 0)?,
            status: u16::try_from(get::<i32>(&row, 1)?).unwrap_or(0),
            body: body.into(),
            created_at: get(&row, 3)?,
        }))
    }

    pub(super) async fn put(conn: &Conn, key: &str, response: &IdempotentResponse) -> StoreResult<()> {
        // First writer wins: a key already there (from any node) is kept as it is.
        execute(
            conn,
            "INSERT INTO idempotency_keys (idem_key, request_hash, status, body, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idem_key) DO NOTHING",
            &[&key, &response.request_hash, &i32::from(response.status), &response.body.as_ref(), &response.created_at],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn prune(conn: &Conn, before: Timestamp) -> StoreResult<u64> {
        execute(conn, "DELETE FROM idempotency_keys WHERE created_at < $1", &[&before]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema_name("herald").is_ok());
        assert!(check_schema_name("_t_1").is_ok());
        for bad in ["", "Herald", "1abc", "a-b", "a b", "a\"b", &"x".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_url_never_shows_in_debug_output_or_errors() {
        let config = PostgresConfig::new("postgres://herald:s3cret@db:5432/herald");
        assert!(!format!("{config:?}").contains("s3cret"));
        let mut bad = PostgresConfig::new("postgres://herald:s3cret@db:notaport/herald");
        bad.schema = "herald".to_owned();
        let error = connection_config(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!error.contains("s3cret"), "{error}");
    }
}
