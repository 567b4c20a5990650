//! Herald's durable state: the event log, webhook applications, endpoints, deliveries and
//! attempts, and the streams of durable channels.
//!
//! # Design
//!
//! One [`Store`], made of role traits ([`Applications`], [`MessageLog`], [`DeliveryQueue`],
//! [`IdempotencyKeys`], [`ChannelLog`]), several backends (SQLite, in `herald-store-sqlite`,
//! embedded by default; PostgreSQL for scale-out). Callers only see these traits and the model
//! types in [`model`]: no SQL, no SQLite-only assumptions (no rowids, no single-writer
//! guarantees leak out). A backend proves itself by passing the generic suite in [`testkit`]
//! (feature `testkit`), proptest models included.
//!
//! Writes that a client waits for (creating a message, appending durable publications) are
//! group-committed: a backend may batch many callers' writes into one transaction, but returns
//! to each caller only after that transaction is durable. Acknowledging before the commit would
//! break the first invariant: nothing acknowledged is lost.
//!
//! Delivery work is claimed, not locked: [`DeliveryQueue::claim_due_deliveries`] marks deliveries as
//! sending with a lease that ends at `now + lease_ms`. A worker that dies mid-delivery leaves
//! the delivery to become due again when the lease ends; no transaction is held while the HTTP
//! call runs.

pub mod ids;
pub mod model;
#[cfg(feature = "testkit")]
pub mod testkit;

use async_trait::async_trait;

pub use model::*;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (uid, event type name, event id) is taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store cannot serve the request now (closed, overloaded, unreachable).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else the backend reports.
    #[error("store error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Durable state behind Herald's webhook and durable-channel paths: every role, plus a health
/// check. A backend implements each role trait and this one; callers hold `Arc<dyn Store>` and
/// bring the roles they call into scope (`use herald_store::roles::*`).
///
/// The roles are separate traits so that a backend's code and its tests are organised by what
/// each part must guarantee (see each trait), and so that the generic test suite
/// ([`testkit`], feature `testkit`) can be run unchanged by every backend.
#[async_trait]
pub trait Store:
    Applications + MessageLog + DeliveryQueue + IdempotencyKeys + ChannelLog + Send + Sync + 'static
{
    /// Cheap liveness check for `/readyz` (a trivial query).
    async fn health(&self) -> StoreResult<()>;

    /// For a store that several nodes share: notified whenever any node commits new delivery
    /// work (a message with deliveries, a resend, a recovery, a replay), so every node's
    /// dispatcher wakes within milliseconds instead of at its next poll. `None` for a store
    /// only this process writes: its own commits wake its dispatcher directly.
    fn work_notify(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

/// Webhook applications, their endpoints (with secrets and health) and the global event types.
#[async_trait]
pub trait Applications: Send + Sync {
    /// Create an application. `uid` must be unique.
    async fn create_app(&self, new: NewApp) -> StoreResult<App>;
    /// Find by id (`app_...`) or uid.
    async fn get_app(&self, id_or_uid: &str) -> StoreResult<Option<App>>;
    async fn list_apps(&self, page: PageRequest) -> StoreResult<Page<App>>;
    /// Replace name, uid, metadata and rate limit; bumps `updated_at`.
    async fn update_app(&self, id: &str, update: NewApp) -> StoreResult<App>;
    /// Delete an application with its endpoints, messages, deliveries and attempts.
    async fn delete_app(&self, id: &str) -> StoreResult<()>;

    // --- event types (global, as in Svix) ------------------------------------------------

    async fn create_event_type(&self, new: NewEventType) -> StoreResult<EventType>;
    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>>;
    /// Archived types are listed only with `include_archived`.
    async fn list_event_types(&self, page: PageRequest, include_archived: bool) -> StoreResult<Page<EventType>>;
    async fn update_event_type(&self, name: &str, update: NewEventType) -> StoreResult<EventType>;
    /// Archive (soft delete) or, with `expunge`, remove.
    async fn delete_event_type(&self, name: &str, expunge: bool) -> StoreResult<()>;

    // --- endpoints --------------------------------------------------------------------------

    async fn create_endpoint(&self, app_id: &str, new: NewEndpoint) -> StoreResult<Endpoint>;
    /// Find by id (`ep_...`) or uid within the app.
    async fn get_endpoint(&self, app_id: &str, id_or_uid: &str) -> StoreResult<Option<Endpoint>>;
    async fn list_endpoints(&self, app_id: &str, page: PageRequest) -> StoreResult<Page<Endpoint>>;
    /// Replace the user-settable fields; keeps the secret; bumps `updated_at`.
    async fn update_endpoint(&self, app_id: &str, id: &str, update: EndpointUpdate) -> StoreResult<Endpoint>;
    async fn delete_endpoint(&self, app_id: &str, id: &str) -> StoreResult<()>;
    /// Install `new_secret`; the old one stays valid (signed alongside) until `old_expires_at`.
    async fn rotate_endpoint_secret(
        &self,
        app_id: &str,
        id: &str,
        new_secret: String,
        old_expires_at: Timestamp,
    ) -> StoreResult<Endpoint>;
    /// Record endpoint health: `failing_since` set on the first failure of a streak, cleared on
    /// success; `disabled` with a reason when the dispatcher disables it (410 Gone, or failing
    /// for longer than the configured time).
    async fn set_endpoint_health(&self, endpoint_id: &str, health: EndpointHealth) -> StoreResult<()>;
}

/// The event log: messages, each appended with its deliveries in one transaction.
#[async_trait]
pub trait MessageLog: Send + Sync {
    /// Append a message and create one pending delivery (due now) for every enabled endpoint of
    /// the app whose filters match, in one durable transaction. With an `event_id` already used
    /// in this app, nothing is written and the existing message is returned with `false`.
    async fn create_message(&self, new: NewMessage) -> StoreResult<(Message, bool)>;
    /// Find by id (`msg_...`) or event id within the app.
    async fn get_message(&self, app_id: &str, id_or_event_id: &str) -> StoreResult<Option<Message>>;
    /// Newest first unless the page asks for ascending order.
    async fn list_messages(&self, app_id: &str, page: PageRequest, filter: MessageFilter)
    -> StoreResult<Page<Message>>;
}

/// The delivery queue: claims with leases, attempts, retries, dead letters and replay.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Claim up to `limit` deliveries due at `now`: mark them sending until `now + lease_ms`
    /// and return them with their message and endpoint. For an endpoint that does not allow
    /// concurrency (`max_concurrency` of 1), only its oldest unfinished delivery is ever
    /// claimable, and only while no other of its deliveries is sending: deliveries to it go out
    /// in message order.
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Record one attempt and the delivery's next state in one transaction.
    async fn record_attempt(&self, delivery_id: i64, attempt: NewAttempt, next: DeliveryNext) -> StoreResult<Attempt>;
    /// A fresh pending delivery of one message to one endpoint (manual trigger).
    async fn resend(&self, app_id: &str, msg_id: &str, endpoint_id: &str) -> StoreResult<()>;
    /// New pending deliveries to `endpoint_id` for messages created in `[since, until)`:
    /// only those whose last delivery to it failed (dead), or all with `all`. Returns how many.
    async fn recover_endpoint(
        &self,
        app_id: &str,
        endpoint_id: &str,
        since: Timestamp,
        until: Option<Timestamp>,
        all: bool,
    ) -> StoreResult<u64>;
    /// Dead-lettered deliveries (newest first).
    async fn list_dead_letters(&self, app_id: Option<&str>, page: PageRequest) -> StoreResult<Page<Delivery>>;
    /// Make every dead-lettered delivery of the app (or of all apps) pending again. Returns how many.
    async fn replay_dead_letters(&self, app_id: Option<&str>, endpoint_id: Option<&str>) -> StoreResult<u64>;
    /// Attempts for an endpoint or a message, newest first.
    async fn list_attempts(&self, app_id: &str, filter: AttemptFilter, page: PageRequest)
    -> StoreResult<Page<Attempt>>;
    /// Deliveries of one message (one per endpoint, latest state).
    async fn list_deliveries_for_message(&self, app_id: &str, msg_id: &str) -> StoreResult<Vec<Delivery>>;
    /// Counts by state, for metrics and `herald attempts`.
    async fn delivery_counts(&self) -> StoreResult<DeliveryCounts>;
}

/// Idempotency keys of the management API's POSTs, shared by every node.
#[async_trait]
pub trait IdempotencyKeys: Send + Sync {
    async fn idempotency_get(&self, key: &str) -> StoreResult<Option<IdempotentResponse>>;
    /// Remember a 2xx response for `key`; an existing key is kept (first writer wins).
    async fn idempotency_put(&self, key: &str, response: IdempotentResponse) -> StoreResult<()>;
    /// Forget keys created before `before`.
    async fn idempotency_prune(&self, before: Timestamp) -> StoreResult<u64>;
}

/// The streams of durable channels: offsets, history, retention.
#[async_trait]
pub trait ChannelLog: Send + Sync {
    /// Append publications to durable channels, group-committed. Each gets the next offset of
    /// its channel's stream; a channel seen for the first time gets a fresh epoch. Returned in
    /// input order.
    async fn append_publications(&self, publications: Vec<NewPublication>) -> StoreResult<Vec<StreamPosition>>;
    /// The stream position of a channel (a fresh epoch and offset 0 for an unknown channel,
    /// which is created so the epoch stays stable).
    async fn channel_position(&self, channel: &str) -> StoreResult<StreamPosition>;
    /// Publications after `since_offset` (or the newest `limit` with `reverse`), oldest first
    /// unless `reverse`.
    async fn channel_history(
        &self,
        channel: &str,
        since_offset: Option<u64>,
        limit: usize,
        reverse: bool,
    ) -> StoreResult<(Vec<StoredPublication>, StreamPosition)>;
    /// Remove a channel's publications; its position stays.
    async fn channel_history_remove(&self, channel: &str) -> StoreResult<()>;
    /// Enforce retention: per channel matching `prefix` (a namespace, `ns:`; empty for channels
    /// without a namespace, which must then contain no `:`), keep at most `max_count`
    /// publications and none older than `max_age_ms`. Returns how many were removed.
    async fn prune_channels(&self, prefix: &str, max_count: usize, max_age_ms: i64, now: Timestamp)
    -> StoreResult<u64>;
}

/// The role traits, to bring their methods into scope: `use herald_store::roles::*;`.
pub mod roles {
    pub use crate::{Applications, ChannelLog, DeliveryQueue, IdempotencyKeys, MessageLog, Store};
}
