//! The Centrifugo-compatible server API: `POST /api/<method>` with `X-API-Key`.
//!
//! Answers follow Centrifugo: a call that reaches a method answers HTTP 200 with
//! `{"result": ...}` or `{"error": {"code", "message"}}`. Transport-level problems are HTTP 4xx
//! with the same JSON error shape: 401 for a missing or wrong key, 400 for a body that is not
//! the method's JSON, 404 for an unknown method, 413 for a body over `server.max_body_bytes`.
//! A rejected call changes nothing.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use herald_protocol::codes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use serde_json::value::RawValue;

use crate::server_api::{ApiError, Method, Request, Response as ApiResponse, bad_request};
use crate::state::AppState;

/// `POST /api/<method>`: authenticate, read a bounded body, parse it as the method's request,
/// call the typed service, answer as Centrifugo does.
pub async fn handler(
    State(app): State<Arc<AppState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(method) = Method::from_name(&method) else {
        crate::metrics::bad_input("api_unknown_method");
        return transport_error(StatusCode::NOT_FOUND, codes::ERROR_METHOD_NOT_FOUND.into());
    };
    if !authorized(&app, &headers) {
        crate::metrics::api_call(method.name(), "unauthorized", started.elapsed());
        return transport_error(StatusCode::UNAUTHORIZED, codes::ERROR_UNAUTHORIZED.into());
    }
    let limit = app.config.server.max_body_bytes;
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let too_large = error.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            crate::metrics::bad_input(if too_large { "api_body_too_large" } else { "api_body_read" });
            crate::metrics::api_call(method.name(), "bad_request", started.elapsed());
            if too_large {
                let error =
                    ApiError { code: codes::ERROR_BAD_REQUEST.code, message: format!("body over {limit} bytes") };
                return transport_error(StatusCode::PAYLOAD_TOO_LARGE, error);
            }
            return transport_error(StatusCode::BAD_REQUEST, bad_request("cannot read body"));
        }
    };
    let params: &RawValue = match serde_json::from_slice(if bytes.is_empty() { b"{}" } else { &bytes }) {
        Ok(params) => params,
        Err(error) => {
            crate::metrics::bad_input("api_malformed_json");
            crate::metrics::api_call(method.name(), "bad_request", started.elapsed());
            return transport_error(StatusCode::BAD_REQUEST, bad_request(error));
        }
    };
    let result = match Request::parse(method, params) {
        Ok(request) => crate::server_api::call(&app, request).await,
        Err(error) => Err(error),
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    crate::metrics::api_call(method.name(), outcome, started.elapsed());
    let body = match result {
        // Centrifugo answers batch with `{"replies": [...]}` itself, not wrapped in `result`;
        // cent reads `replies` at the top level.
        Ok(result @ ApiResponse::Batch(_)) => serde_json::json!(result),
        Ok(result) => serde_json::json!({ "result": result }),
        Err(error) => serde_json::json!({ "error": error }),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn transport_error(status: StatusCode, error: ApiError) -> Response {
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

fn authorized(app: &AppState, headers: &HeaderMap) -> bool {
    if app.config.api.insecure {
        return true;
    }
    let Some(expected) = &app.config.api.key else { return false };
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("apikey ").or_else(|| v.strip_prefix("Apikey ")))
        })
        .unwrap_or("");
    use subtle::ConstantTimeEq;
    bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
}
