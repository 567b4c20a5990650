//! Integration tests of herald-webhooks: the sender against a real HTTP receiver, and the
//! dispatcher end to end against each store backend (the in-memory test store and SQLite).

mod dispatcher;
mod memory_store;
mod sender;
mod support;

use std::sync::Arc;

use herald_store::Store;

/// Run each dispatcher scenario against each store backend: `memory::<scenario>` and
/// `sqlite::<scenario>`.
macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::dispatcher::$scenario(crate::memory_store()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let (store, _dir) = crate::sqlite_store();
                    crate::dispatcher::$scenario(store).await;
                }
            )*
        }
    };
}

fn memory_store() -> Arc<dyn Store> {
    Arc::new(memory_store::MemoryStore::default())
}

/// A fresh SQLite store in a temporary directory, removed when the returned guard drops.
fn sqlite_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = herald_store_sqlite::SqliteConfig::new(dir.path().join("herald.db"));
    let store = herald_store_sqlite::SqliteStore::open(&config).expect("the SQLite store opens");
    (Arc::new(store), dir)
}

scenarios!(
    delivers_in_order_signed,
    retries_until_success,
    dies_when_the_schedule_runs_out,
    gone_disables_the_endpoint,
    client_errors_are_final,
    hanging_receiver_times_out_and_retries,
    failing_too_long_disables,
    notify_wakes_the_dispatcher,
    per_endpoint_concurrency,
    per_endpoint_rate_limit,
    shutdown_finishes_requests_in_flight,
    refuses_loopback_without_allow_networks,
    rate_limited_past_the_lease_are_deferred,
);
