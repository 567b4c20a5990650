//! Herald's server: the hub, the Centrifugo-compatible doors and the HTTP listener.
//!
//! [`Server::start`] takes a bound listener and a config, so tests start a whole server
//! in-process on `127.0.0.1:0`; the binary does the same with the configured address.

// Only what other crates use is public: `Server`, the state and hub handles the integration
// tests reach, and the parsers the fuzz targets drive (`server_api`, `websocket`).
mod api;
mod broker;
mod client;
mod conn;
mod cors;
mod disconnect;
mod driver;
mod durable;
mod emulation;
mod history;
mod http;
mod hub;
mod metrics;
mod node;
mod outbox;
mod respond;
pub mod server_api;
mod sessions;
mod state;
mod stream;
mod webhooks;
pub mod websocket;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_core::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use hub::{Hub, PublishSpec};
pub use state::AppState;

/// A running server.
pub struct Server {
    app: Arc<AppState>,
    local_addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Bind `config.server.listen` with a listen backlog of `server.listen_backlog` (the
    /// default 128 of `TcpListener::bind` overflows under connect storms).
    pub async fn bind(config: &Config) -> anyhow::Result<TcpListener> {
        let addr = config.server.listen;
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .context("cannot create the listening socket")?;
        socket.set_reuseaddr(true).context("cannot set SO_REUSEADDR")?;
        socket.bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        socket.listen(config.server.listen_backlog).with_context(|| format!("cannot listen on {addr}"))
    }

    /// Start serving on `listener` without durable state (no durable channels, no webhooks).
    /// Must be called inside a Tokio runtime.
    pub fn start(config: Config, listener: TcpListener) -> anyhow::Result<Server> {
        Self::start_with_store(config, listener, None)
    }

    /// Start serving on `listener` with `store` behind durable channels and webhooks.
    pub fn start_with_store(
        config: Config,
        listener: TcpListener,
        store: Option<Arc<dyn herald_store::Store>>,
    ) -> anyhow::Result<Server> {
        let local_addr = listener.local_addr().context("listener has no local address")?;
        let shutdown = CancellationToken::new();
        herald_webhooks::install_crypto_provider();
        let dispatcher = match &store {
            Some(store) if config.webhooks.enabled => {
                Some(herald_webhooks::Dispatcher::new(store.clone(), config.webhooks.clone())?)
            }
            _ => None,
        };
        let handle = dispatcher.as_ref().map(herald_webhooks::Dispatcher::handle);
        let app = AppState::new(Arc::new(config), shutdown, store, handle)?;
        if let Some(dispatcher) = dispatcher {
            herald_webhooks::describe_metrics();
            app.tracker.spawn(dispatcher.run(app.shutdown.clone()));
        }
        app.tracker.spawn(metrics::upkeep(app.prometheus.clone(), app.shutdown.clone()));
        app.tracker.spawn(sweep(app.clone()));
        if app.store.is_some() {
            app.tracker.spawn(prune(app.clone()));
        }
        let accept = tokio::spawn(http::accept_loop(listener, app.clone()));
        tracing::info!(%local_addr, "Herald is listening.");
        Ok(Server { app, local_addr, accept })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn app(&self) -> &Arc<AppState> {
        &self.app
    }

    /// The token that starts shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.app.shutdown.clone()
    }

    /// Wait until the shutdown token is cancelled, then drain.
    pub async fn run_until_shutdown(self) -> anyhow::Result<()> {
        self.app.shutdown.cancelled().await;
        self.drain().await
    }

    /// Start shutdown now and drain.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.app.shutdown.cancel();
        self.drain().await
    }

    /// Stop accepting, tell clients to reconnect elsewhere (3001), and wait for every
    /// connection and task to finish within `server.shutdown_grace`.
    async fn drain(self) -> anyhow::Result<()> {
        self.app.start_draining();
        let _ = self.accept.await;
        self.app.tracker.close();
        let grace = self.app.config.server.shutdown_grace;
        match tokio::time::timeout(grace, self.app.tracker.wait()).await {
            Ok(()) => {
                tracing::info!("Herald drained and stopped.");
                Ok(())
            }
            Err(_) => {
                let left = self.app.tracker.len();
                tracing::warn!(tasks = left, grace = ?grace, "Shutdown grace period passed with tasks still running.");
                Ok(())
            }
        }
    }
}

/// Enforce retention of durable channels (count and age per namespace) and forget old
/// idempotency keys, every `store.prune_interval`.
async fn prune(app: Arc<AppState>) {
    let Some(store) = app.store.clone() else { return };
    let mut interval = tokio::time::interval(app.config.store.prune_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = herald_store::now_ms();
        let channel = &app.config.channel;
        let namespaces = std::iter::once(("", &channel.defaults))
            .chain(channel.namespaces.iter().map(|ns| (ns.name.as_str(), &ns.options)))
            .filter(|(_, options)| options.durable);
        for (name, options) in namespaces {
            let prefix = if name.is_empty() { String::new() } else { format!("{name}:") };
            let max_age = options.history_ttl.as_millis() as i64;
            match store.prune_channels(&prefix, options.history_size, max_age, now).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(namespace = name, removed, "Pruned durable channel history."),
                Err(error) => tracing::warn!(namespace = name, %error, "Pruning durable channel history failed."),
            }
        }
        // Idempotency keys are replayed for as long as Svix keeps them.
        let ttl = herald_svix::IDEMPOTENCY_KEY_TTL.as_millis() as i64;
        if let Err(error) = store.idempotency_prune(now - ttl).await {
            tracing::warn!(%error, "Pruning idempotency keys failed.");
        }
    }
}

/// Forget idle channels periodically.
async fn sweep(app: Arc<AppState>) {
    let mut interval = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = interval.tick() => app.hub.sweep(),
        }
    }
}
