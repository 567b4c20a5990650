//! The generic store suite (`herald_store::testkit`) against PostgreSQL, and the tests only
//! PostgreSQL has: migrations, and several stores ("nodes") on one schema.
//!
//! Each test gets a fresh schema of its own on the machine's PostgreSQL (URL from
//! `HERALD_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), dropped at
//! the end, so tests run in parallel without seeing each other's data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_store::roles::*;
use herald_store::testkit::Harness;
use herald_store::testkit::common::{app, attempt, endpoint, endpoint_spec, message, publication};
use herald_store::{AttemptStatus, DeliveryNext, now_ms};
use herald_store_postgres::{PostgresConfig, PostgresStore};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The URL without its password, for messages.
fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A schema name no other test (or test process) uses.
fn fresh_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("herald_t{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

fn config_for(schema: &str) -> PostgresConfig {
    let mut config = PostgresConfig::new(url());
    config.schema = schema.to_owned();
    config.pool_size = 4;
    config.connect_timeout = Duration::from_secs(3);
    config.max_batch = 256;
    config.queue_capacity = 1024;
    config
}

/// Drops its schema when dropped (declared after the store, so the store goes first).
struct SchemaGuard {
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Its own thread and runtime: this may run inside a runtime that is busy dropping us.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                let Ok(Ok((client, connection))) = tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio_postgres::connect(&url(), tokio_postgres::NoTls),
                )
                .await
                else {
                    return;
                };
                tokio::spawn(connection);
                let sql = format!("SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {schema} CASCADE");
                let _ = client.batch_execute(&sql).await;
            });
        })
        .join();
    }
}

/// A store on a fresh schema.
struct Postgres {
    store: PostgresStore,
    config: PostgresConfig,
    _guard: SchemaGuard,
}

async fn open_store(config: &PostgresConfig) -> PostgresStore {
    match PostgresStore::open(config).await {
        Ok(store) => store,
        Err(error) => panic!(
            "PostgreSQL is not usable at {}: {error}. Start it (scripts/test.sh does) or set HERALD_TEST_POSTGRES_URL.",
            shown_url(&config.url)
        ),
    }
}

impl Harness for Postgres {
    type Store = PostgresStore;

    async fn open() -> Self {
        let schema = fresh_schema();
        let config = config_for(&schema);
        let guard = SchemaGuard { schema };
        let store = open_store(&config).await;
        Self { store, config, _guard: guard }
    }

    fn store(&self) -> &PostgresStore {
        &self.store
    }

    async fn reopen(&mut self) {
        self.store = open_store(&self.config).await;
    }
}

herald_store::store_suite!(Postgres);

#[tokio::test]
async fn migrate_is_idempotent_and_reports_the_version() {
    let mut db = Postgres::open().await;
    let owner = app(db.store(), Some("keep")).await;
    assert_eq!(herald_store_postgres::migrate(&db.config).await.expect("migrate"), 1);
    assert_eq!(herald_store_postgres::migrate(&db.config).await.expect("migrate again"), 1);
    db.reopen().await;
    assert_eq!(db.store.get_app("keep").await.expect("get").map(|a| a.id), Some(owner.id));
    db.store.health().await.expect("healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let schema = fresh_schema();
    let config = config_for(&schema);
    let _guard = SchemaGuard { schema };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let config = config.clone();
        tasks.spawn(async move { herald_store_postgres::migrate(&config).await });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.expect("task").expect("migrate"), 1);
    }
}

#[tokio::test]
async fn a_schema_from_a_newer_herald_is_refused() {
    let db = Postgres::open().await;
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("UPDATE {}.schema_version SET version = version + 1", db.config.schema))
        .await
        .expect("bump");
    let error = PostgresStore::open(&db.config).await.err().expect("refused");
    assert!(error.to_string().contains("newer"), "{error}");
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_quickly() {
    let mut config = PostgresConfig::new("postgres://postgres:secret@127.0.0.1:1/test");
    config.connect_timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let error = PostgresStore::open(&config).await.err().expect("no database there");
    assert!(matches!(error, herald_store::StoreError::Unavailable(_)), "{error}");
    assert!(!error.to_string().contains("secret"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_to_one_channel_get_one_gapless_sequence() {
    const TASKS: usize = 8;
    const APPENDS: usize = 50;
    let db = Postgres::open().await;
    let other = open_store(&db.config).await;
    let nodes = [db.store().clone(), other.clone()];
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = nodes[task % 2].clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            for i in 0..APPENDS {
                let batch = vec![publication("shared", &format!("{task}-{i}-a"), 1), publication("shared", "b", 1)];
                let positions = store.append_publications(batch).await.expect("append");
                assert_eq!(positions[1].offset, positions[0].offset + 1, "one request's offsets are consecutive");
                mine.extend(positions);
            }
            mine
        });
    }
    let mut offsets = Vec::new();
    let mut epochs = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        for position in done.expect("task") {
            offsets.push(position.offset);
            epochs.insert(position.epoch);
        }
    }
    offsets.sort_unstable();
    let total = (TASKS * APPENDS * 2) as u64;
    assert_eq!(offsets, (1..=total).collect::<Vec<_>>(), "each offset once, no gap");
    assert_eq!(epochs.len(), 1, "one epoch");
    for node in &nodes {
        let (history, position) = node.channel_history("shared", None, usize::MAX, false).await.expect("history");
        assert_eq!(position.offset, total);
        assert!(history.iter().zip(1u64..).all(|(p, offset)| p.offset == offset));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_never_share_a_delivery_and_ordered_endpoints_stay_serial() {
    let db = Postgres::open().await;
    let other = open_store(&db.config).await;
    let store = db.store();
    let owner = app(store, None).await;
    let ordered = endpoint(store, &owner.id, endpoint_spec("https://ordered.example")).await;
    let mut spec = endpoint_spec("https://parallel.example");
    spec.max_concurrency = 16;
    let parallel = endpoint(store, &owner.id, spec).await;
    const MESSAGES: usize = 40;
    let mut msg_order = Vec::new();
    for i in 0..MESSAGES {
        let node = if i % 2 == 0 { store } else { &other };
        msg_order.push(node.create_message(message(&owner.id, "x")).await.expect("create").0.id);
    }
    // Four workers, two per node, claim and settle until everything is delivered.
    let sent: Arc<tokio::sync::Mutex<Vec<(String, String, i64)>>> = Arc::default();
    let in_flight_ordered = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let node = if worker % 2 == 0 { store.clone() } else { other.clone() };
        let sent = sent.clone();
        let in_flight_ordered = in_flight_ordered.clone();
        let ordered_id = ordered.id.clone();
        workers.spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut idle_rounds = 0;
            while idle_rounds < 20 && std::time::Instant::now() < deadline {
                let claimed = node.claim_due_deliveries(now_ms() + 1_000, 5, 60_000).await.expect("claim");
                if claimed.is_empty() {
                    idle_rounds += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                idle_rounds = 0;
                for c in claimed {
                    let is_ordered = c.endpoint.id == ordered_id;
                    if is_ordered {
                        let before = in_flight_ordered.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(before, 0, "two deliveries to the ordered endpoint in flight");
                    }
                    sent.lock().await.push((c.endpoint.id.clone(), c.message.id.clone(), c.delivery.id));
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    if is_ordered {
                        in_flight_ordered.fetch_sub(1, Ordering::SeqCst);
                    }
                    node.record_attempt(c.delivery.id, attempt(AttemptStatus::Success, 200), DeliveryNext::Succeeded)
                        .await
                        .expect("record");
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("worker");
    }
    let sent = sent.lock().await.clone();
    let ids: Vec<i64> = sent.iter().map(|(_, _, id)| *id).collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a delivery was claimed twice");
    let mut per_endpoint: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (endpoint_id, msg_id, _) in sent {
        per_endpoint.entry(endpoint_id).or_default().push(msg_id);
    }
    assert_eq!(per_endpoint.get(&ordered.id), Some(&msg_order), "the ordered endpoint got every message, in order");
    assert_eq!(per_endpoint.get(&parallel.id).map(Vec::len), Some(MESSAGES));
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!((counts.succeeded, counts.pending, counts.sending), (2 * MESSAGES as u64, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_notify_fires_on_the_other_node_after_create_message() {
    let db = Postgres::open().await;
    let other = open_store(&db.config).await;
    let owner = app(db.store(), None).await;
    endpoint(db.store(), &owner.id, endpoint_spec("https://a.example")).await;
    let notify = other.work_notify();
    // Let the other node's LISTEN start, and use up the wake-up it gives when it does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while tokio::time::timeout(Duration::from_millis(50), notify.notified()).await.is_ok() {}
    // Nothing happened yet: no wake-up.
    assert!(tokio::time::timeout(Duration::from_millis(200), notify.notified()).await.is_err(), "spurious wake-up");
    let waiting = notify.notified();
    tokio::pin!(waiting);
    waiting.as_mut().enable();
    db.store().create_message(message(&owner.id, "x")).await.expect("create");
    tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the other node was woken");
    // Use up the permits a wake-up leaves (the local one and the notification's).
    tokio::time::sleep(Duration::from_millis(200)).await;
    while tokio::time::timeout(Duration::from_millis(50), notify.notified()).await.is_ok() {}
    // A schema of its own does not wake this one.
    let stranger = Postgres::open().await;
    let stranger_app = app(stranger.store(), None).await;
    endpoint(stranger.store(), &stranger_app.id, endpoint_spec("https://b.example")).await;
    stranger.store().create_message(message(&stranger_app.id, "x")).await.expect("create");
    assert!(tokio::time::timeout(Duration::from_millis(300), notify.notified()).await.is_err(), "cross-talk");
}
