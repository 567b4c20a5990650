//! Helpers shared by the store tests: a fresh database per test and builders for the inputs.

use std::collections::BTreeMap;

use bytes::Bytes;
use herald_store::{
    App, AttemptStatus, Endpoint, NewApp, NewAttempt, NewEndpoint, NewMessage, NewPublication, SqliteConfig,
    SqliteStore, Store, TriggerType, now_ms,
};
use tempfile::TempDir;

/// A store on a fresh database; the directory goes when this is dropped.
pub struct TestDb {
    pub store: SqliteStore,
    pub config: SqliteConfig,
    /// Kept for its lifetime: the directory is removed when it drops.
    _dir: TempDir,
}

impl TestDb {
    pub fn new() -> Self {
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

    /// Close the store and open the same database again.
    pub fn reopen(&mut self) {
        self.store = SqliteStore::open(&self.config).expect("reopen store");
    }
}

pub async fn app(store: &SqliteStore, uid: Option<&str>) -> App {
    store
        .create_app(NewApp { uid: uid.map(str::to_owned), name: "Test app".to_owned(), ..NewApp::default() })
        .await
        .expect("create app")
}

pub fn endpoint_spec(url: &str) -> NewEndpoint {
    NewEndpoint {
        uid: None,
        url: url.to_owned(),
        description: String::new(),
        version: 1,
        disabled: false,
        event_types: None,
        channels: None,
        secret: "whsec_dGVzdHNlY3JldA==".to_owned(),
        headers: BTreeMap::new(),
        rate_limit: None,
        max_concurrency: 1,
        metadata: BTreeMap::new(),
    }
}

pub async fn endpoint(store: &SqliteStore, app_id: &str, spec: NewEndpoint) -> Endpoint {
    store.create_endpoint(app_id, spec).await.expect("create endpoint")
}

pub fn message(app_id: &str, event_type: &str) -> NewMessage {
    NewMessage {
        app_id: app_id.to_owned(),
        event_id: None,
        event_type: event_type.to_owned(),
        payload: Bytes::from_static(br#"{"hello":"world"}"#),
        channels: None,
    }
}

pub fn attempt(status: AttemptStatus, code: u16) -> NewAttempt {
    NewAttempt {
        url: "https://example.com/hook".to_owned(),
        status,
        response_status_code: code,
        response: "ok".to_owned(),
        response_duration_ms: 12,
        error_class: None,
        trigger: TriggerType::Scheduled,
        created_at: now_ms(),
    }
}

pub fn publication(channel: &str, text: &str, created_at: i64) -> NewPublication {
    NewPublication {
        channel: channel.to_owned(),
        data: Bytes::from(text.to_owned()),
        info: None,
        tags: BTreeMap::new(),
        created_at,
    }
}
