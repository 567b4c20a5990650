//! The read pool: a few connections that only read, used from `spawn_blocking`. WAL mode lets
//! them read a consistent snapshot while the writer commits; each read runs in its own
//! transaction so a multi-statement read sees one snapshot.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::rows::DbResultExt;
use super::schema_open;
use herald_store::{StoreError, StoreResult};

pub(crate) struct ReadPool {
    /// One permit per connection in `idle`: holding a permit guarantees one is there to take.
    permits: Arc<Semaphore>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl ReadPool {
    pub(crate) fn open(path: &Path, n_connections: usize) -> StoreResult<Self> {
        let n_connections = n_connections.max(1);
        let mut idle = Vec::with_capacity(n_connections);
        for _ in 0..n_connections {
            let conn = schema_open(path)?;
            // A read connection never writes: a bug that tries fails loudly instead of
            // racing the writer thread for the lock.
            conn.pragma_update(None, "query_only", true).db()?;
            idle.push(conn);
        }
        Ok(Self { permits: Arc::new(Semaphore::new(n_connections)), idle: Arc::new(Mutex::new(idle)) })
    }

    /// Run `work` on a read connection, inside one read transaction, off the async runtime.
    pub(crate) async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the read pool is closed".to_owned()))?;
        let idle = Arc::clone(&self.idle);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop()
                .ok_or_else(|| StoreError::Backend("no idle read connection behind a permit".to_owned()))?;
            let result = run_read(&conn, work);
            idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a read task failed: {e}")))?
    }
}

fn run_read<T>(conn: &Connection, work: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    conn.prepare_cached("BEGIN").db()?.execute([]).db()?;
    // A panicking read must not lose the connection (its permit would then lead nowhere).
    let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(StoreError::Backend("a read panicked".to_owned())));
    // Ending a read transaction cannot lose anything; a failure here is reported only when
    // the read itself succeeded.
    let end = conn.prepare_cached("COMMIT").db().and_then(|mut stmt| stmt.execute([]).db());
    if end.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let value = result?;
    end?;
    Ok(value)
}
