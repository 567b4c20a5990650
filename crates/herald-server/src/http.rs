//! The HTTP listener: our own accept loop on hyper-util, the router, health and metrics.
//!
//! `axum::serve` hides hyper's settings and has no header-read timeout, so the loop here builds
//! each connection itself: HTTP/1.1 and HTTP/2 on one port, a header-read timeout against
//! slowloris, a cap on open connections (`server.max_connections`, counting upgraded WebSockets
//! too), and graceful shutdown of every connection when the root token is cancelled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::respond::json_error;
use crate::state::{AppState, ConnectionSlot};

pub fn router(app: Arc<AppState>) -> Router {
    let management = crate::webhooks::management_router(&app);
    // The realtime doors, behind the browser-origin check.
    let transports = Router::new()
        .route("/connection/websocket", any(crate::ws::handler))
        .route("/connection/uni_websocket", any(crate::ws::uni_handler))
        .route("/connection/http_stream", any(crate::stream::http_stream))
        .route("/connection/sse", any(crate::stream::sse))
        .route("/connection/uni_sse", any(crate::stream::uni_sse))
        .route("/connection/uni_http_stream", any(crate::stream::uni_http_stream))
        .route("/emulation", any(crate::emulation::handler))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), crate::cors::check));
    let router = Router::new()
        .merge(transports)
        .route("/api/{method}", post(crate::api::handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app);
    let router = match management {
        Some(management) => router.nest("/api/v1", management),
        None => router,
    };
    router.fallback(|| async { json_error(StatusCode::NOT_FOUND, "not found") })
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Ready when not draining and every dependency answers within `server.readiness_timeout`.
/// Only what lives outside this process's memory is checked (the store; brokers will add
/// theirs): the hub is in memory, and reading it (which locks every channel) under a timeout
/// would prove nothing, since a synchronous call cannot be cut short.
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "draining" })))
            .into_response();
    }
    let deadline = app.config.server.readiness_timeout;
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    if let Some(store) = &app.store {
        let outcome = match tokio::time::timeout(deadline, store.health()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(error)) => {
                tracing::warn!(%error, "Store health check failed.");
                "error".to_owned()
            }
            Err(_) => "timeout".to_owned(),
        };
        ready &= outcome == "ok";
        checks.insert("store".into(), serde_json::json!(outcome));
    }
    let (status, text) = if ready { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") };
    (status, axum::Json(serde_json::json!({ "status": text, "checks": checks }))).into_response()
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.prometheus.render())
        .into_response()
}

/// Accept connections until shutdown, serving each on the tracker.
pub async fn accept_loop(listener: TcpListener, app: Arc<AppState>) {
    let server = &app.config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(server.header_read_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(server.http2_max_concurrent_streams);
    let builder = Arc::new(builder);
    let router = router(app.clone());

    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = app.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = ConnectionSlot::acquire(&app.open_connections, server.max_connections) else {
            crate::metrics::bad_input("connection_limit");
            tracing::debug!(%peer, "Connection refused: server.max_connections reached.");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let shutdown = app.shutdown.clone();
        app.tracker.spawn(async move {
            let _slot = slot;
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "HTTP connection ended with an error.");
                    }
                }
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}
