//! The management API's one error type, shaped like the Svix server's: `{code, detail}` for
//! most errors and `{detail: [{loc, msg, type}]}` for 422 validation errors.
//!
//! The SDKs parse every 4xx body as JSON (a 422 as `HTTPValidationError`, any other 4xx as
//! `HttpErrorOut`), so every error this crate produces has a JSON body. Internal causes (store
//! failures) are logged here and never sent: the client gets a generic 500.

use axum::Json;
use axum::response::{IntoResponse, Response};
use herald_store::StoreError;
use http::StatusCode;
use serde::Serialize;

/// One entry of a 422 body: where (`["body", "url"]`), what, and a machine type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ValidationItem {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub ty: String,
}

impl ValidationItem {
    /// A `value_error` at `loc`.
    pub fn value(loc: &[&str], msg: impl Into<String>) -> Self {
        Self { loc: loc.iter().map(|s| (*s).to_owned()).collect(), msg: msg.into(), ty: "value_error".to_owned() }
    }
}

#[derive(Debug)]
pub(crate) enum ApiError {
    /// A `{code, detail}` error.
    Http { status: StatusCode, code: String, detail: String },
    /// 422 with one item per problem found.
    Validation(Vec<ValidationItem>),
    /// Our fault; the cause is logged, the client sees a generic 500.
    Internal(String),
    /// The store cannot be reached (a database outage): 503, nothing was written, the client
    /// may retry (with its idempotency key). The cause is logged.
    Unavailable(String),
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn http(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        ApiError::Http { status, code: code.to_owned(), detail: detail.into() }
    }

    pub fn not_found() -> Self {
        Self::http(StatusCode::NOT_FOUND, "not_found", "Entity not found")
    }

    pub fn not_found_with(detail: &str) -> Self {
        Self::http(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(detail: &str) -> Self {
        Self::http(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::http(StatusCode::UNAUTHORIZED, "authentication_failed", detail)
    }

    pub fn forbidden() -> Self {
        Self::http(StatusCode::FORBIDDEN, "insufficient access", "Insufficient access for the given operation.")
    }

    /// 400 with Svix's default code, for query strings and bodies that cannot be parsed at all.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::http(StatusCode::BAD_REQUEST, "generic_error", detail)
    }

    pub fn too_large() -> Self {
        Self::http(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Request payload is too large.")
    }

    pub fn validation(loc: &[&str], msg: impl Into<String>) -> Self {
        ApiError::Validation(vec![ValidationItem::value(loc, msg)])
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(_) => ApiError::conflict("A conflict has occurred"),
            StoreError::NotFound(_) => ApiError::not_found(),
            StoreError::Unavailable(_) => ApiError::Unavailable(error.to_string()),
            StoreError::Backend(_) => ApiError::Internal(error.to_string()),
        }
    }
}

#[derive(Serialize)]
struct StandardBody<'a> {
    code: &'a str,
    detail: &'a str,
}

#[derive(Serialize)]
struct ValidationBody<'a> {
    detail: &'a [ValidationItem],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Http { status, code, detail } => {
                (status, Json(StandardBody { code: &code, detail: &detail })).into_response()
            }
            ApiError::Validation(items) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Json(ValidationBody { detail: &items })).into_response()
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "Management API request failed: the store is unavailable.");
                let body =
                    StandardBody { code: "service_unavailable", detail: "The store is unavailable; retry later." };
                (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "Management API request failed.");
                let body = StandardBody { code: "server_error", detail: "Internal Server Error" };
                (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
            }
        }
    }
}
