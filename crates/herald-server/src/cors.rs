//! Browser origins, checked on every realtime transport and on `/emulation`.
//!
//! A request without an `Origin` header (a server, curl, an SDK outside a browser) passes. A
//! browser's request passes when its origin is the server's own or is listed in
//! `client.allowed_origins` (`*` allows any); it then gets the CORS headers that let the page
//! read the response. Any other origin gets 403 before a connection or a session exists: a
//! page on another site cannot open a WebSocket or a stream with the user's cookies.
//! Preflight `OPTIONS` requests are answered here.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::respond::json_error;
use crate::state::AppState;

/// Middleware for the transport routes.
pub async fn check(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    if let Some(origin) = &origin {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned));
        if !allowed(&app.config.client.allowed_origins, origin, authority.as_deref()) {
            crate::metrics::bad_input("origin_not_allowed");
            return json_error(StatusCode::FORBIDDEN, "origin not allowed");
        }
    }
    if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
        let requested = request.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            requested.unwrap_or_else(|| HeaderValue::from_static("content-type, last-event-id")),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("300"));
        add_headers(headers, origin);
        return response;
    }
    let mut response = next.run(request).await;
    add_headers(response.headers_mut(), origin);
    response
}

fn add_headers(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
}

/// Whether a browser at `origin` may connect to a server reached at `authority` (host:port).
fn allowed(list: &[String], origin: &HeaderValue, authority: Option<&str>) -> bool {
    let Ok(origin) = origin.to_str() else { return false };
    let origin = origin.trim_end_matches('/');
    if list.iter().any(|entry| entry == "*" || entry.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    // Same origin: the page came from this server.
    let host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, authority), (Some(host), Some(authority)) if host.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).expect("a valid header value")
    }

    #[test]
    fn listed_star_and_same_origin_pass_and_nothing_else() {
        let list = vec!["https://app.example.com".to_owned()];
        assert!(allowed(&list, &value("https://app.example.com"), Some("herald:8000")));
        assert!(allowed(&list, &value("https://APP.example.com/"), Some("herald:8000")));
        assert!(!allowed(&list, &value("https://evil.example.com"), Some("herald:8000")));
        assert!(!allowed(&list, &value("http://app.example.com"), Some("herald:8000")));
        assert!(allowed(&[], &value("http://127.0.0.1:8000"), Some("127.0.0.1:8000")));
        assert!(!allowed(&[], &value("http://127.0.0.1:9000"), Some("127.0.0.1:8000")));
        assert!(!allowed(&[], &value("null"), None));
        assert!(allowed(&["*".to_owned()], &value("null"), None));
    }
}
