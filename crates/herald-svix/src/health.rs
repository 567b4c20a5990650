//! `GET /health` and `GET /health/ping`, without authentication, as in Svix.
//!
//! Svix answers `/health` with 200 and `{database, queue, cache}` statuses (500 when one is
//! down); Herald's queue is the store and it has no cache, so all three follow the store.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

use crate::output::json;
use crate::{Inner, Route};

pub(crate) fn routes() -> Vec<Route> {
    vec![("/health", get(health).head(health)), ("/health/ping", get(ping).head(ping))]
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn health(State(inner): State<Arc<Inner>>) -> Response {
    match inner.store().health().await {
        Ok(()) => {
            let ok = json!({"status": "ok"});
            json(StatusCode::OK, json!({"database": ok, "queue": ok, "cache": ok}))
        }
        Err(error) => {
            tracing::warn!(error = %error, "Store health check failed.");
            let status = json!({"status": "error"});
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"database": status, "queue": status, "cache": {"status": "ok"}})),
            )
                .into_response()
        }
    }
}
