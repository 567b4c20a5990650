//! HTTP response helpers shared by every route.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// A JSON error body for transport-level failures.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": { "code": status.as_u16(), "message": message } })))
        .into_response()
}

/// Read a request body of at most `limit` bytes; a larger one is answered 413, a body that
/// cannot be read 400, both with a JSON error and counted under `what`.
pub async fn read_body(body: axum::body::Body, limit: usize, what: &'static str) -> Result<bytes::Bytes, Response> {
    use http_body_util::BodyExt as _;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            crate::metrics::bad_input(what);
            Err(json_error(StatusCode::PAYLOAD_TOO_LARGE, &format!("body over {limit} bytes")))
        }
        Err(_) => {
            crate::metrics::bad_input(what);
            Err(json_error(StatusCode::BAD_REQUEST, "cannot read body"))
        }
    }
}
