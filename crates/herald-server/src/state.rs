//! State shared by every request handler and connection of one server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use herald_core::Config;
use herald_core::auth::TokenVerifier;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Engine, MemoryBroker};
use crate::hub::Hub;

pub struct AppState {
    pub config: Arc<Config>,
    /// This node's subscriptions and connections (the local index).
    pub hub: Arc<Hub>,
    /// What crosses node boundaries: ephemeral publications and history, presence, commands
    /// to users (`broker.rs`). Only the node facade calls it.
    pub engine: Arc<dyn Engine>,
    /// Durable state (event log, webhooks, durable channels).
    pub store: Option<Arc<dyn herald_store::Store>>,
    /// Wakes the webhook dispatcher after a message commits (when webhooks run here).
    pub webhooks: Option<herald_webhooks::DispatcherHandle>,
    /// Checks endpoint URLs against the SSRF policy (`webhooks.allow_networks`).
    pub url_guard: Arc<herald_webhooks::Guard>,
    pub verifier: TokenVerifier,
    pub prometheus: PrometheusHandle,
    /// Cancelled when the server starts shutting down; every connection and loop watches it.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    pub started: Instant,
    /// A name for this node in `info`.
    pub node_id: String,
    /// Open TCP connections, upgraded WebSockets included (`server.max_connections`).
    pub open_connections: Arc<AtomicUsize>,
    /// HTTP-streaming and SSE sessions that `/emulation` posts commands to.
    pub emulation: Arc<crate::sessions::Sessions>,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        shutdown: CancellationToken,
        store: Option<Arc<dyn herald_store::Store>>,
        webhooks: Option<herald_webhooks::DispatcherHandle>,
    ) -> anyhow::Result<Arc<Self>> {
        herald_webhooks::install_crypto_provider();
        let url_guard = Arc::new(herald_webhooks::Guard::new(&config.webhooks.allow_networks)?);
        let verifier = TokenVerifier::new(&config.client.token)?;
        // Install the recorder before any metric handle is registered.
        let prometheus = crate::metrics::recorder();
        let hub = Arc::new(Hub::new(crate::metrics::Metrics::new()));
        let engine: Arc<dyn Engine> = Arc::new(MemoryBroker::new(hub.clone()));
        Ok(Arc::new(Self {
            config,
            hub,
            engine,
            store,
            webhooks,
            url_guard,
            verifier,
            prometheus,
            shutdown,
            tracker: TaskTracker::new(),
            started: Instant::now(),
            node_id: uuid::Uuid::new_v4().to_string(),
            open_connections: Arc::new(AtomicUsize::new(0)),
            emulation: Default::default(),
            draining: AtomicBool::new(false),
        }))
    }

    /// Whether the server is shutting down: readiness fails and new connections are refused.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Counts open TCP connections; dropping it releases the slot.
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    /// Take a slot unless `max` are taken.
    pub fn acquire(counter: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let previous = counter.fetch_add(1, Ordering::AcqRel);
        if previous >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(counter.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
