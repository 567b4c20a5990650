//! The Centrifugo-compatible server API: `POST /api/<method>` with `X-API-Key`.
//!
//! Answers follow Centrifugo: a call that reaches a method answers HTTP 200 with
//! `{"result": ...}` or `{"error": {"code", "message"}}`. Transport-level problems are HTTP 4xx
//! with the same JSON error shape: 401 for a missing or wrong key, 400 for a body that is not
//! the method's JSON, 404 for an unknown method, 413 for a body over `server.max_body_bytes`.
//! A rejected call changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use herald_core::ChannelOptions;
use herald_protocol::codes::{self, ErrorCode};
use herald_protocol::{ClientInfo, Publication};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::client::ConnShared;
use crate::disconnect::Disconnect;
use crate::history::Position;
use crate::hub::PublishSpec;
use crate::node::{ChannelError, HistoryError};
use crate::outbox::{Control, PushError};
use crate::state::AppState;

/// Methods the API knows, for metrics labels.
const METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "batch",
];

/// A method-level error: HTTP 200 with `{"error": {...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    pub code: u32,
    pub message: String,
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError { code: code.code, message: code.message.to_owned() }
    }
}

fn bad_request(detail: impl std::fmt::Display) -> ApiError {
    ApiError { code: codes::ERROR_BAD_REQUEST.code, message: format!("{}: {detail}", codes::ERROR_BAD_REQUEST.message) }
}

type ApiResult = Result<serde_json::Value, ApiError>;

pub async fn handler(
    State(app): State<Arc<AppState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(method) = METHODS.iter().copied().find(|m| *m == method) else {
        crate::metrics::bad_input("api_unknown_method");
        return transport_error(StatusCode::NOT_FOUND, codes::ERROR_METHOD_NOT_FOUND.into());
    };
    if !authorized(&app, &headers) {
        crate::metrics::api_call(method, "unauthorized", started.elapsed());
        return transport_error(StatusCode::UNAUTHORIZED, codes::ERROR_UNAUTHORIZED.into());
    }
    let limit = app.config.server.max_body_bytes;
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let too_large = error.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            crate::metrics::bad_input(if too_large { "api_body_too_large" } else { "api_body_read" });
            crate::metrics::api_call(method, "bad_request", started.elapsed());
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
            crate::metrics::api_call(method, "bad_request", started.elapsed());
            return transport_error(StatusCode::BAD_REQUEST, bad_request(error));
        }
    };
    let result = call(&app, method, params).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    crate::metrics::api_call(method, outcome, started.elapsed());
    let body = match result {
        // Centrifugo answers batch with `{"replies": [...]}` itself, not wrapped in `result`;
        // cent reads `replies` at the top level.
        Ok(result) if method == "batch" => result,
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

fn parse<'a, T: Deserialize<'a>>(params: &'a RawValue) -> Result<T, ApiError> {
    serde_json::from_str(params.get()).map_err(bad_request)
}

/// Run one method on already-parsed JSON params.
async fn call(app: &Arc<AppState>, method: &str, params: &RawValue) -> ApiResult {
    match method {
        "batch" => batch(app, parse(params)?).await,
        _ => call_single(app, method, params).await,
    }
}

/// Run one method other than `batch`.
async fn call_single(app: &Arc<AppState>, method: &str, params: &RawValue) -> ApiResult {
    match method {
        "publish" => publish(app, parse(params)?).await,
        "broadcast" => broadcast(app, parse(params)?).await,
        "subscribe" => subscribe(app, parse(params)?),
        "unsubscribe" => unsubscribe(app, parse(params)?),
        "disconnect" => disconnect(app, parse(params)?),
        "refresh" => refresh(app, parse(params)?),
        "presence" => presence(app, parse(params)?),
        "presence_stats" => presence_stats(app, parse(params)?),
        "history" => history(app, parse(params)?).await,
        "history_remove" => history_remove(app, parse(params)?),
        "channels" => channels(app, parse(params)?),
        "info" => info(app),
        _ => Err(codes::ERROR_METHOD_NOT_FOUND.into()),
    }
}

fn channel_options(app: &AppState, channel: &str) -> Result<ChannelOptions, ApiError> {
    crate::node::channel_options(&app.config, channel).map_err(|error| match error {
        ChannelError::BadName => bad_request("channel required"),
        ChannelError::UnknownNamespace => codes::ERROR_UNKNOWN_CHANNEL.into(),
    })
}

fn payload(data: Option<Box<RawValue>>, b64data: Option<String>) -> Result<Bytes, ApiError> {
    if let Some(b64) = b64data {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|_| bad_request("b64data is not base64"));
    }
    match data {
        Some(raw) => Ok(Bytes::copy_from_slice(raw.get().as_bytes())),
        None => Err(bad_request("data required")),
    }
}

#[derive(Deserialize)]
struct PublishParams {
    channel: String,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    delta: bool,
    /// Herald extension: also store the publication as a webhook message of this application.
    #[serde(default)]
    webhook: Option<WebhookTarget>,
}

/// Where a server API publication goes as a webhook message.
#[derive(Deserialize)]
struct WebhookTarget {
    /// Application id or uid.
    app: String,
    event_type: String,
    #[serde(default)]
    event_id: Option<String>,
}

async fn publish(app: &Arc<AppState>, params: PublishParams) -> ApiResult {
    let options = channel_options(app, &params.channel)?;
    let data = payload(params.data, params.b64data)?;
    // The webhook message is stored (and acknowledged) before the live publication goes out.
    let message_id = match params.webhook {
        Some(target) => {
            if target.event_type.is_empty() || target.app.is_empty() {
                return Err(bad_request("webhook needs app and event_type"));
            }
            let message = crate::webhooks::publish_as_message(
                app,
                &target.app,
                &target.event_type,
                target.event_id,
                &params.channel,
                data.clone(),
            )
            .await
            .map_err(|error| match error {
                crate::webhooks::MessageError::UnknownApp(_) => bad_request(error),
                error => {
                    tracing::warn!(channel = %params.channel, %error, "Storing a publication as a webhook message failed.");
                    ApiError::from(codes::ERROR_INTERNAL)
                }
            })?;
            Some(message.id)
        }
        None => None,
    };
    let flags = PublishFlags {
        skip_history: params.skip_history,
        idempotency_key: params.idempotency_key,
        delta: params.delta,
    };
    let mut result = publish_one(app, &params.channel, &options, data, params.tags, flags).await?;
    if let (Some(id), Some(object)) = (message_id, result.as_object_mut()) {
        object.insert("message_id".to_owned(), serde_json::json!(id));
    }
    Ok(result)
}

/// Publish options shared by `publish` and `broadcast`.
#[derive(Clone)]
struct PublishFlags {
    skip_history: bool,
    idempotency_key: Option<String>,
    delta: bool,
}

/// Publish to one channel through the node (durable channels are stored first).
async fn publish_one(
    app: &Arc<AppState>,
    channel: &str,
    options: &ChannelOptions,
    data: Bytes,
    tags: HashMap<String, String>,
    flags: PublishFlags,
) -> ApiResult {
    let publish = PublishSpec {
        channel,
        options,
        data,
        info: None,
        tags,
        skip_history: flags.skip_history,
        idempotency_key: flags.idempotency_key,
        delta: flags.delta,
    };
    match crate::node::publish(app, publish).await {
        Ok(Some(position)) => Ok(serde_json::json!({ "offset": position.offset, "epoch": &*position.epoch })),
        Ok(None) => Ok(serde_json::json!({})),
        Err(error) => {
            tracing::warn!(%channel, %error, "Durable publish failed.");
            Err(codes::ERROR_INTERNAL.into())
        }
    }
}

#[derive(Deserialize)]
struct BroadcastParams {
    channels: Vec<String>,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    delta: bool,
}

async fn broadcast(app: &Arc<AppState>, params: BroadcastParams) -> ApiResult {
    if params.channels.is_empty() {
        return Err(bad_request("channels required"));
    }
    let data = payload(params.data, params.b64data)?;
    let mut responses = Vec::with_capacity(params.channels.len());
    for channel in &params.channels {
        let result = match channel_options(app, channel) {
            Ok(options) => {
                let flags = PublishFlags {
                    skip_history: params.skip_history,
                    idempotency_key: params.idempotency_key.clone(),
                    delta: params.delta,
                };
                publish_one(app, channel, &options, data.clone(), params.tags.clone(), flags).await
            }
            Err(error) => Err(error),
        };
        responses.push(match result {
            Ok(result) => serde_json::json!({ "result": result }),
            Err(error) => serde_json::json!({ "error": error }),
        });
    }
    Ok(serde_json::json!({ "responses": responses }))
}

/// Which connections a user-targeted call applies to.
fn target_connections(app: &AppState, user: &str, client: Option<&str>) -> Vec<Arc<crate::client::ConnShared>> {
    match client.filter(|c| !c.is_empty()) {
        Some(client) => app.hub.client(client).into_iter().filter(|c| user.is_empty() || c.user() == user).collect(),
        None => app.hub.user_connections(user),
    }
}

#[derive(Deserialize)]
struct SubscribeParams {
    user: String,
    channel: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    info: Option<Box<RawValue>>,
    #[serde(default)]
    b64info: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64data: Option<String>,
}

fn subscribe(app: &AppState, params: SubscribeParams) -> ApiResult {
    channel_options(app, &params.channel)?;
    let info = optional_payload(params.info, params.b64info)?;
    let data = optional_payload(params.data, params.b64data)?;
    for conn in target_connections(app, &params.user, params.client.as_deref()) {
        send_control(
            app,
            &conn,
            Control::Subscribe { channel: params.channel.clone(), info: info.clone(), data: data.clone() },
        );
    }
    Ok(serde_json::json!({}))
}

/// Queue a control request to a connection. A connection whose queue is full is closed as slow
/// by its outbox (counted here); one that is closing needs nothing.
fn send_control(app: &AppState, conn: &ConnShared, control: Control) {
    if conn.outbox.control(control) == Err(PushError::Overflow) {
        app.hub.metrics().slow_disconnects.increment(1);
    }
}

fn optional_payload(data: Option<Box<RawValue>>, b64data: Option<String>) -> Result<Option<Bytes>, ApiError> {
    if data.is_none() && b64data.is_none() {
        return Ok(None);
    }
    payload(data, b64data).map(Some)
}

#[derive(Deserialize)]
struct UnsubscribeParams {
    user: String,
    channel: String,
    #[serde(default)]
    client: Option<String>,
}

fn unsubscribe(app: &AppState, params: UnsubscribeParams) -> ApiResult {
    channel_options(app, &params.channel)?;
    for conn in target_connections(app, &params.user, params.client.as_deref()) {
        send_control(app, &conn, Control::Unsubscribe { channel: params.channel.clone() });
    }
    Ok(serde_json::json!({}))
}

#[derive(Deserialize)]
struct DisconnectParams {
    user: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    whitelist: Vec<String>,
    #[serde(default)]
    disconnect: Option<DisconnectSpec>,
}

#[derive(Deserialize)]
struct DisconnectSpec {
    code: u16,
    #[serde(default)]
    reason: String,
}

fn disconnect(app: &AppState, params: DisconnectParams) -> ApiResult {
    let disconnect = match params.disconnect {
        Some(spec) => {
            if !(3000..5000).contains(&spec.code) || spec.reason.len() > 100 {
                return Err(bad_request("disconnect code must be in 3000..4999 and reason under 100 bytes"));
            }
            Disconnect { code: spec.code, reason: spec.reason.into() }
        }
        None => Disconnect::FORCE_NO_RECONNECT,
    };
    for conn in target_connections(app, &params.user, params.client.as_deref()) {
        if params.whitelist.iter().any(|c| **c == *conn.id) {
            continue;
        }
        conn.outbox.close(disconnect.clone());
    }
    Ok(serde_json::json!({}))
}

#[derive(Deserialize)]
struct RefreshParams {
    user: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    expire_at: Option<i64>,
}

fn refresh(app: &AppState, params: RefreshParams) -> ApiResult {
    let expire_at = params.expire_at.filter(|at| *at > 0);
    for conn in target_connections(app, &params.user, params.client.as_deref()) {
        send_control(app, &conn, Control::Refresh { expire_at, expired: params.expired });
    }
    Ok(serde_json::json!({}))
}

#[derive(Deserialize)]
struct ChannelParams {
    channel: String,
}

fn presence(app: &AppState, params: ChannelParams) -> ApiResult {
    let options = channel_options(app, &params.channel)?;
    if !options.presence {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    let presence: HashMap<String, ClientInfo> =
        app.hub.presence(&params.channel).into_iter().map(|info| (info.client.clone(), info)).collect();
    Ok(serde_json::json!({ "presence": presence }))
}

fn presence_stats(app: &AppState, params: ChannelParams) -> ApiResult {
    let options = channel_options(app, &params.channel)?;
    if !options.presence {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    let (num_clients, num_users) = app.hub.presence_stats(&params.channel);
    Ok(serde_json::json!({ "num_clients": num_clients, "num_users": num_users }))
}

#[derive(Deserialize)]
struct HistoryParams {
    channel: String,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    since: Option<SinceParams>,
    #[serde(default)]
    reverse: bool,
}

#[derive(Deserialize)]
struct SinceParams {
    offset: u64,
    epoch: String,
}

async fn history(app: &AppState, params: HistoryParams) -> ApiResult {
    let options = channel_options(app, &params.channel)?;
    if !options.has_history() {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    let max = app.config.client.history_max_limit;
    let limit = match params.limit {
        None | Some(0) => 0,
        Some(n) if n < 0 => max,
        Some(n) => (n as usize).min(max),
    };
    let since = params.since.map(|s| Position { epoch: Arc::from(s.epoch.as_str()), offset: s.offset });
    let (pubs, position) = crate::node::history(app, &params.channel, &options, since.as_ref(), limit, params.reverse)
        .await
        .map_err(|error| match error {
            HistoryError::Unrecoverable => ApiError::from(codes::ERROR_UNRECOVERABLE_POSITION),
            HistoryError::Load(error) => {
                tracing::warn!(channel = %params.channel, %error, "Cannot load a durable channel.");
                ApiError::from(codes::ERROR_INTERNAL)
            }
        })?;
    let publications: Vec<&Publication> = pubs.iter().map(|p| &**p).collect();
    Ok(serde_json::json!({ "publications": publications, "epoch": &*position.epoch, "offset": position.offset }))
}

fn history_remove(app: &AppState, params: ChannelParams) -> ApiResult {
    let options = channel_options(app, &params.channel)?;
    if !options.has_history() {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    app.hub.history_remove(&params.channel);
    Ok(serde_json::json!({}))
}

#[derive(Deserialize)]
struct ChannelsParams {
    #[serde(default)]
    pattern: Option<String>,
}

fn channels(app: &AppState, params: ChannelsParams) -> ApiResult {
    let channels: serde_json::Map<String, serde_json::Value> = app
        .hub
        .channels(params.pattern.as_deref().filter(|p| !p.is_empty()))
        .into_iter()
        .map(|(name, n)| (name, serde_json::json!({ "num_clients": n })))
        .collect();
    Ok(serde_json::json!({ "channels": channels }))
}

fn info(app: &AppState) -> ApiResult {
    let stats = app.hub.stats();
    Ok(serde_json::json!({
        "nodes": [{
            "uid": app.node_id,
            "name": "herald",
            "version": crate::client::VERSION,
            "num_clients": stats.clients,
            "num_users": stats.users,
            "num_channels": stats.channels,
            "num_subs": stats.subscriptions,
            "uptime": app.started.elapsed().as_secs(),
        }]
    }))
}

#[derive(Deserialize)]
struct BatchParams {
    commands: Vec<serde_json::Map<String, serde_json::Value>>,
}

async fn batch_one(app: &Arc<AppState>, command: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    let mut entries = command.into_iter();
    let (Some((method, params)), None) = (entries.next(), entries.next()) else {
        return serde_json::json!({ "error": bad_request("each command has exactly one method") });
    };
    if method == "batch" || !METHODS.contains(&method.as_str()) {
        return serde_json::json!({ "error": ApiError::from(codes::ERROR_METHOD_NOT_FOUND) });
    }
    let raw = match serde_json::value::to_raw_value(&params) {
        Ok(raw) => raw,
        Err(error) => return serde_json::json!({ "error": bad_request(error) }),
    };
    match call_single(app, &method, &raw).await {
        Ok(result) => serde_json::json!({ method: result }),
        Err(error) => serde_json::json!({ "error": error }),
    }
}

/// Most commands one batch may carry.
const BATCH_MAX_COMMANDS: usize = 1000;

async fn batch(app: &Arc<AppState>, params: BatchParams) -> ApiResult {
    if params.commands.len() > BATCH_MAX_COMMANDS {
        return Err(bad_request(format!("at most {BATCH_MAX_COMMANDS} commands per batch")));
    }
    let mut replies = Vec::with_capacity(params.commands.len());
    for command in params.commands {
        replies.push(batch_one(app, command).await);
    }
    Ok(serde_json::json!({ "replies": replies }))
}
