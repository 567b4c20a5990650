//! The `herald` binary: serve, and the small tools around a running server.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod manage;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use herald_core::Config;

// jemalloc keeps the resident memory of many idle connections lowest (see ../shared/STACK.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    herald_webhooks::install_crypto_provider();
    cli::main()
}

/// The embedded store's database file.
fn store_path(config: &Config) -> PathBuf {
    config.store.data_dir.join("herald.db")
}

/// Open (and migrate) the embedded store.
fn open_store(config: &Config) -> anyhow::Result<Arc<dyn herald_store::Store>> {
    if config.store.backend == herald_core::config::StoreBackend::Postgres {
        anyhow::bail!("store.backend = \"postgres\" is not available in this build yet");
    }
    let path = store_path(config);
    let sqlite = herald_store_sqlite::SqliteConfig {
        path: path.clone(),
        max_batch: config.store.max_batch,
        queue_capacity: config.store.queue_capacity,
        read_connections: config.store.read_connections,
    };
    let store = herald_store_sqlite::SqliteStore::open(&sqlite)
        .with_context(|| format!("cannot open the store at {}", path.display()))?;
    Ok(Arc::new(store))
}
