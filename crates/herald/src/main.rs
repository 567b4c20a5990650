//! The `herald` binary: serve, and the small tools around a running server.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod manage;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use herald_core::Config;
use herald_core::config::StoreBackend;

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

/// The PostgreSQL store's settings. The URL stays out of every message: it may hold a password.
fn postgres_config(config: &Config) -> anyhow::Result<herald_store_postgres::PostgresConfig> {
    use secrecy::ExposeSecret;
    let store = &config.store;
    let url = store.postgres_url.as_ref().context("store.postgres_url is not set")?;
    Ok(herald_store_postgres::PostgresConfig {
        url: url.expose_secret().to_owned(),
        schema: store.postgres_schema.clone(),
        pool_size: store.pool_size,
        connect_timeout: store.connect_timeout,
        statement_timeout: store.statement_timeout,
        max_batch: store.max_batch,
        queue_capacity: store.queue_capacity,
    })
}

/// Open (and migrate) the configured store.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn herald_store::Store>> {
    match config.store.backend {
        StoreBackend::Sqlite => {
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
        StoreBackend::Postgres => {
            let postgres = postgres_config(config)?;
            let store = herald_store_postgres::PostgresStore::open(&postgres).await.with_context(|| {
                format!("cannot open the PostgreSQL store (schema {})", config.store.postgres_schema)
            })?;
            Ok(Arc::new(store))
        }
    }
}
