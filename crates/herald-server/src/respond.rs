//! HTTP response helpers shared by every route.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// A JSON error body for transport-level failures.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": { "code": status.as_u16(), "message": message } })))
        .into_response()
}
