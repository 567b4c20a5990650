//! The generic store suite (`herald_store::testkit`) against SQLite, each test on its own
//! database in a temporary directory, and the tests only SQLite has (its schema version).

use herald_store::roles::*;
use herald_store::testkit::Harness;
use herald_store::testkit::common::app;
use herald_store_sqlite::{SqliteConfig, SqliteStore};
use tempfile::TempDir;

/// A store on a fresh database; the directory goes when this is dropped.
struct Sqlite {
    store: SqliteStore,
    config: SqliteConfig,
    /// Kept for its lifetime: the directory is removed when it drops.
    _dir: TempDir,
}

impl Harness for Sqlite {
    type Store = SqliteStore;

    async fn open() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // A nested path, so `open` has to create the directory.
        let config = SqliteConfig {
            path: dir.path().join("data").join("herald.db"),
            max_batch: 256,
            queue_capacity: 1024,
            read_connections: 2,
        };
        let store = SqliteStore::open(&config).expect("open store");
        Self { store, config, _dir: dir }
    }

    fn store(&self) -> &SqliteStore {
        &self.store
    }

    async fn reopen(&mut self) {
        self.store = SqliteStore::open(&self.config).expect("reopen store");
    }
}

herald_store::store_suite!(Sqlite);

#[tokio::test]
async fn migrate_reports_the_version_and_reopening_keeps_data() {
    let mut db = Sqlite::open().await;
    let owner = app(db.store(), Some("keep")).await;
    assert_eq!(herald_store_sqlite::migrate(&db.config.path).expect("migrate"), 1);
    db.reopen().await;
    assert_eq!(db.store.get_app("keep").await.expect("get").map(|a| a.id), Some(owner.id));
    db.store.health().await.expect("healthy");
}

#[tokio::test]
async fn a_database_from_a_newer_herald_is_refused() {
    let db = Sqlite::open().await;
    {
        let conn = rusqlite::Connection::open(&db.config.path).expect("open raw");
        conn.execute("UPDATE schema_version SET version = version + 1", []).expect("bump");
    }
    let error = SqliteStore::open(&db.config).err().expect("refused");
    assert!(error.to_string().contains("newer"), "{error}");
}
