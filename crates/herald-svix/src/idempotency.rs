//! Idempotency keys for POSTs, as the Svix SDKs use them: every POST carries
//! `idempotency-key` (the SDKs make one up, `auto_<uuid>`, unless the caller gives one), and
//! a retried POST must not create a second message.
//!
//! A 2xx response is stored with `Store::idempotency_put` under a hash of the caller's
//! organisation (and application, for app tokens), the request's path and query, and the key
//! (Svix hashes the auth header, the key and the URL), together with a hash of the body. A
//! later request with the same key to the same URL:
//! - and the same body gets the stored status and body back, and the handler does not run
//!   (so no second message, no second `on_message`);
//! - and a different body gets 409 `conflict`, and nothing runs.
//!
//! Non-2xx responses are not stored, so a client may retry after fixing its request, and
//! entries older than [`crate::IDEMPOTENCY_KEY_TTL`] are ignored (Svix keeps them 12 hours).
//!
//! Concurrent requests with the same key on this node are serialised by an in-process lock per
//! key, so the second waits for the first and then replays its response. Across several
//! Herald nodes sharing one store the store's first-writer-wins `idempotency_put` keeps the
//! cached answer unique, but two nodes may both run the handler once.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_store::IdempotentResponse;
use http::{HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::Inner;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::read_body;

const HEADER: &str = "idempotency-key";
/// Longest key accepted; longer keys are refused rather than silently truncated.
const MAX_KEY_LEN: usize = 256;

/// One async lock per idempotency key being processed on this node.
#[derive(Default)]
pub(crate) struct KeyLocks {
    locks: parking_lot::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock();
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        // Forget keys nobody holds any more, so the map stays as small as the keys in flight.
        if locks.len() >= 1024 {
            locks.retain(|_, lock| lock.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

/// Middleware: replay or record POST responses that carry an idempotency key.
pub(crate) async fn layer(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    let Ok(key) = key.to_str().map(str::to_owned) else {
        return ApiError::bad_request("The idempotency-key header must be visible ASCII.").into_response();
    };
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return ApiError::bad_request(format!("The idempotency-key header must be 1 to {MAX_KEY_LEN} characters."))
            .into_response();
    }
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return ApiError::internal("idempotency layer ran before authentication").into_response();
    };

    let (parts, body) = request.into_parts();
    let body = match read_body(body, inner.body_limit).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let path_and_query = parts.uri.path_and_query().map_or("", |pq| pq.as_str());
    let store_key = scoped_key(&principal, path_and_query, &key);
    let request_hash = body_hash(&body);

    let lock = inner.idempotency_locks.lock_for(&store_key);
    let _guard = lock.lock().await;

    match inner.store().idempotency_get(&store_key).await {
        Ok(Some(cached)) if is_fresh(&cached) => {
            if cached.request_hash != request_hash {
                return ApiError::conflict("This idempotency key was already used for a different request.")
                    .into_response();
            }
            return replay(cached);
        }
        Ok(_) => {}
        Err(error) => return ApiError::from(error).into_response(),
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if !response.status().is_success() {
        return response;
    }
    let (response_parts, response_body) = response.into_parts();
    let response_body = match axum::body::to_bytes(response_body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => return ApiError::internal(format!("cannot buffer a response: {error}")).into_response(),
    };
    let cached = IdempotentResponse {
        request_hash,
        status: response_parts.status.as_u16(),
        body: response_body.clone(),
        created_at: herald_store::now_ms(),
    };
    // The work is done and durable; failing to remember the answer must not fail the request.
    if let Err(error) = inner.store().idempotency_put(&store_key, cached).await {
        tracing::warn!(error = %error, "Cannot store an idempotent response; a retry would run again.");
    }
    Response::from_parts(response_parts, Body::from(response_body))
}

fn is_fresh(cached: &IdempotentResponse) -> bool {
    let ttl_ms = i64::try_from(crate::IDEMPOTENCY_KEY_TTL.as_millis()).unwrap_or(i64::MAX);
    herald_store::now_ms().saturating_sub(cached.created_at) < ttl_ms
}

fn replay(cached: IdempotentResponse) -> Response {
    let status = StatusCode::from_u16(cached.status).unwrap_or(StatusCode::OK);
    let mut response = Response::new(Body::from(cached.body.clone()));
    *response.status_mut() = status;
    if !cached.body.is_empty() {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store key: keys are per caller and per URL, as in Svix (which hashes the auth header,
/// the key and the URL).
fn scoped_key(principal: &Principal, path_and_query: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [principal.org_id.as_str(), principal.app_id.as_deref().unwrap_or(""), path_and_query, key] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    format!("svix:{}", hex(&hasher.finalize()))
}

fn body_hash(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_scoped_by_principal_and_url() {
        let org = Principal { org_id: "org_a".into(), app_id: None };
        let other = Principal { org_id: "org_b".into(), app_id: None };
        let app = Principal { org_id: "org_a".into(), app_id: Some("app_1".into()) };
        let key = scoped_key(&org, "/app", "k");
        assert_eq!(key, scoped_key(&org, "/app", "k"));
        assert_ne!(key, scoped_key(&other, "/app", "k"));
        assert_ne!(key, scoped_key(&app, "/app", "k"));
        assert_ne!(key, scoped_key(&org, "/app", "k2"));
        assert_ne!(key, scoped_key(&org, "/app?get_if_exists=true", "k"));
        assert_ne!(scoped_key(&org, "/a", "b/c"), scoped_key(&org, "/a/b", "c"));
    }

    #[test]
    fn body_hash_sees_every_byte() {
        assert_eq!(body_hash(b"{}"), body_hash(b"{}"));
        assert_ne!(body_hash(b"{}"), body_hash(b"{ }"));
    }

    #[test]
    fn locks_are_shared_while_held() {
        let locks = KeyLocks::default();
        let first = locks.lock_for("k");
        let second = locks.lock_for("k");
        assert!(Arc::ptr_eq(&first, &second));
        drop((first, second));
        let third = locks.lock_for("k");
        assert_eq!(Arc::strong_count(&third), 1);
    }
}
