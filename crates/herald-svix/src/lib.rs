//! Herald's Svix-compatible webhook management API: applications, event types, endpoints,
//! messages and attempts under `/api/v1`, so the official Svix SDKs work against Herald.
//!
//! # Design
//!
//! [`router`] returns an axum [`Router`] with paths relative to `/api/v1`; the server nests it.
//! Every handler is a thin translation between Svix's JSON shapes (camelCase, RFC 3339 times,
//! `{data, iterator, prevIterator, done}` pages) and the [`herald_store::Store`] trait: this
//! crate holds no state of its own beyond an in-process lock per idempotency key.
//!
//! Request flow: `authenticate` (bearer JWT or static token, see `auth.rs`) then, for POSTs with
//! an `idempotency-key`, the idempotency layer (see `idempotency.rs`), then the handler. Each
//! handler validates the whole input first and reports every problem in one 422; only then
//! does it call the store, so bad input changes nothing. Store failures become a generic 500
//! (the cause is logged). Wire formats were matched against the Svix server's handlers
//! (`server/svix-server/src/v1/endpoints/*.rs`), `server/openapi.json` and the generated SDKs'
//! models; where the open-source server and the hosted API differ, the hosted API's more
//! permissive limits win (message channels: up to 10, `:` allowed in channel names).
//!
//! Herald is single-tenant: the organisation in a token scopes idempotency keys only.

mod application;
mod attempt;
mod auth;
mod endpoint;
mod error;
mod event_type;
mod health;
mod idempotency;
mod input;
mod message;
mod output;
mod time;
mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::MethodRouter;
use herald_core::config::{ManagementConfig, WebhooksConfig};
use herald_store::{App, Endpoint, Message, Store};

pub use auth::mint_token;

use crate::auth::{Authenticator, Principal};
use crate::error::{ApiError, ApiResult};
use crate::idempotency::KeyLocks;

/// How long a cached idempotent response is replayed (Svix keeps them 12 hours). The server
/// should call `Store::idempotency_prune(now - IDEMPOTENCY_KEY_TTL)` now and then; older
/// entries are ignored even before they are pruned.
pub const IDEMPOTENCY_KEY_TTL: Duration = Duration::from_secs(12 * 3600);

/// Judges an endpoint URL: `Err(reason)` when it may not be used.
pub type CheckUrl = dyn Fn(&str) -> Result<(), String> + Send + Sync;

/// What the management API needs from the server.
pub struct SvixState {
    pub store: Arc<dyn Store>,
    pub management: ManagementConfig,
    pub webhooks: WebhooksConfig,
    /// Called after a message is durably created (not for an idempotent replay, and not for a
    /// duplicate `eventId`, which is refused with 409): the server uses it to wake the
    /// dispatcher and to publish the message to live channel subscribers.
    pub on_message: Arc<dyn Fn(&Message) + Send + Sync>,
    /// Called after deliveries were scheduled again (resend, recover), so the dispatcher
    /// starts on them now rather than at its next poll.
    pub on_rescheduled: Arc<dyn Fn() + Send + Sync>,
    /// Validates an endpoint URL against the SSRF guard when an endpoint is created or its URL
    /// changes; `Err(reason)` becomes a 422 on `url` with `reason` as the message. It judges the
    /// URL's form only (no DNS in the request path); deliveries check resolved addresses.
    pub check_url: Arc<CheckUrl>,
}

/// The handlers' shared state: the caller's [`SvixState`] plus what this crate derives from it.
pub(crate) struct Inner {
    pub svix: Arc<SvixState>,
    pub auth: Authenticator,
    pub idempotency_locks: KeyLocks,
    /// Largest request body read (the payload limit plus room for the JSON around it).
    pub body_limit: usize,
}

impl Inner {
    pub fn store(&self) -> &dyn Store {
        self.svix.store.as_ref()
    }

    /// The application at `id_or_uid` if the principal may see it.
    pub async fn load_app(&self, principal: &Principal, id_or_uid: &str) -> ApiResult<App> {
        match self.store().get_app(id_or_uid).await? {
            Some(app) if principal.may_access_app(&app.id) => Ok(app),
            _ => Err(ApiError::not_found()),
        }
    }

    pub async fn load_endpoint(&self, app: &App, id_or_uid: &str) -> ApiResult<Endpoint> {
        self.store().get_endpoint(&app.id, id_or_uid).await?.ok_or_else(ApiError::not_found)
    }

    /// The application at `app_id` and its endpoint at `endpoint_id` (ids or uids).
    pub async fn load_app_endpoint(
        &self,
        principal: &Principal,
        app_id: &str,
        endpoint_id: &str,
    ) -> ApiResult<(App, Endpoint)> {
        let app = self.load_app(principal, app_id).await?;
        let endpoint = self.load_endpoint(&app, endpoint_id).await?;
        Ok((app, endpoint))
    }

    pub async fn load_message(&self, app: &App, id_or_event_id: &str) -> ApiResult<Message> {
        self.store().get_message(&app.id, id_or_event_id).await?.ok_or_else(ApiError::not_found)
    }
}

/// Room for the JSON envelope around a message payload within one request body.
const BODY_ENVELOPE_BYTES: usize = 64 * 1024;

/// The management API, with routes relative to `/api/v1` (`/app`, `/app/{app_id}/endpoint`,
/// ...). Every route also answers with a trailing slash. `/health` and `/health/ping` need no
/// token; everything else does.
pub fn router(state: Arc<SvixState>) -> Router {
    let body_limit = state.webhooks.max_payload_bytes.saturating_add(BODY_ENVELOPE_BYTES);
    let inner = Arc::new(Inner {
        auth: Authenticator::new(&state.management),
        svix: state,
        idempotency_locks: KeyLocks::default(),
        body_limit,
    });

    let mut authed = Router::new();
    for (path, route) in application::routes()
        .into_iter()
        .chain(event_type::routes())
        .chain(endpoint::routes())
        .chain(message::routes())
        .chain(attempt::routes())
    {
        authed = with_trailing_slash(authed, path, route);
    }
    // Layers run outside-in in reverse order of `layer` calls: authentication first, then
    // idempotency (which scopes keys by the authenticated principal).
    let authed = authed
        .layer(axum::middleware::from_fn_with_state(inner.clone(), idempotency::layer))
        .layer(axum::middleware::from_fn_with_state(inner.clone(), auth::authenticate));

    let mut open = Router::new();
    for (path, route) in health::routes() {
        open = with_trailing_slash(open, path, route);
    }

    authed
        .merge(open)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::http(http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed")
        })
        .with_state(inner)
}

type Route = (&'static str, MethodRouter<Arc<Inner>>);

fn with_trailing_slash(
    router: Router<Arc<Inner>>,
    path: &'static str,
    route: MethodRouter<Arc<Inner>>,
) -> Router<Arc<Inner>> {
    router.route(path, route.clone()).route(&format!("{path}/"), route)
}
