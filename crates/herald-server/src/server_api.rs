//! The server API as a typed service: a [`Method`], its [`Request`] (one typed struct per
//! method) and its [`Response`] (one typed result per method), and [`call`], the one dispatch.
//! Doors adapt to it: `api.rs` is the HTTP JSON door (`POST /api/<method>`); a gRPC door will
//! map `api.proto` messages onto the same requests and results.
//!
//! Request and result field names are Centrifugo's server API (what `cent` sends and reads).
//! Methods answer `Ok(result)` or an [`ApiError`] with a Centrifugo error code; a rejected call
//! changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use herald_core::ChannelOptions;
use herald_protocol::codes::{self, ErrorCode};
use herald_protocol::{ClientInfo, Publication};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::broker::{BrokerError, UserCommand, UserTarget};
use crate::disconnect::Disconnect;
use crate::history::Position;
use crate::hub::PublishSpec;
use crate::node::{ChannelError, HistoryError};
use crate::outbox::Control;
use crate::state::AppState;

/// The server API's methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Publish,
    Broadcast,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Refresh,
    Presence,
    PresenceStats,
    History,
    HistoryRemove,
    Channels,
    Info,
    Batch,
}

impl Method {
    pub const ALL: [Method; 13] = [
        Method::Publish,
        Method::Broadcast,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::Disconnect,
        Method::Refresh,
        Method::Presence,
        Method::PresenceStats,
        Method::History,
        Method::HistoryRemove,
        Method::Channels,
        Method::Info,
        Method::Batch,
    ];

    /// The method's name in Centrifugo's API (`/api/<name>`, batch command keys).
    pub fn name(self) -> &'static str {
        match self {
            Method::Publish => "publish",
            Method::Broadcast => "broadcast",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Disconnect => "disconnect",
            Method::Refresh => "refresh",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::HistoryRemove => "history_remove",
            Method::Channels => "channels",
            Method::Info => "info",
            Method::Batch => "batch",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A call: the method and its typed parameters.
pub enum Request {
    Publish(PublishParams),
    Broadcast(BroadcastParams),
    Subscribe(SubscribeParams),
    Unsubscribe(UnsubscribeParams),
    Disconnect(DisconnectParams),
    Refresh(RefreshParams),
    Presence(ChannelParams),
    PresenceStats(ChannelParams),
    History(HistoryParams),
    HistoryRemove(ChannelParams),
    Channels(ChannelsParams),
    Info,
    Batch(BatchParams),
}

impl Request {
    /// Parse a method's JSON parameters; a body that does not fit is 107 (bad request).
    pub fn parse(method: Method, params: &RawValue) -> Result<Request, ApiError> {
        fn json<'a, T: Deserialize<'a>>(params: &'a RawValue) -> Result<T, ApiError> {
            serde_json::from_str(params.get()).map_err(bad_request)
        }
        Ok(match method {
            Method::Publish => Request::Publish(json(params)?),
            Method::Broadcast => Request::Broadcast(json(params)?),
            Method::Subscribe => Request::Subscribe(json(params)?),
            Method::Unsubscribe => Request::Unsubscribe(json(params)?),
            Method::Disconnect => Request::Disconnect(json(params)?),
            Method::Refresh => Request::Refresh(json(params)?),
            Method::Presence => Request::Presence(json(params)?),
            Method::PresenceStats => Request::PresenceStats(json(params)?),
            Method::History => Request::History(json(params)?),
            Method::HistoryRemove => Request::HistoryRemove(json(params)?),
            Method::Channels => Request::Channels(json(params)?),
            Method::Info => Request::Info,
            Method::Batch => Request::Batch(json(params)?),
        })
    }
}

/// A method's result. Serialized, it is the `result` object of Centrifugo's answer (a batch's
/// is the whole answer: cent reads `replies` at the top level).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Publish(PublishResult),
    Broadcast(BroadcastResult),
    Empty(EmptyResult),
    Presence(PresenceResult),
    PresenceStats(PresenceStatsResult),
    History(HistoryResult),
    Channels(ChannelsResult),
    Info(InfoResult),
    Batch(BatchResult),
}

/// Run one call.
pub async fn call(app: &Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    Ok(match request {
        Request::Publish(params) => Response::Publish(publish(app, params).await?),
        Request::Broadcast(params) => Response::Broadcast(broadcast(app, params).await?),
        Request::Subscribe(params) => Response::Empty(subscribe(app, params).await?),
        Request::Unsubscribe(params) => Response::Empty(unsubscribe(app, params).await?),
        Request::Disconnect(params) => Response::Empty(disconnect(app, params).await?),
        Request::Refresh(params) => Response::Empty(refresh(app, params).await?),
        Request::Presence(params) => Response::Presence(presence(app, params).await?),
        Request::PresenceStats(params) => Response::PresenceStats(presence_stats(app, params).await?),
        Request::History(params) => Response::History(history(app, params).await?),
        Request::HistoryRemove(params) => Response::Empty(history_remove(app, params).await?),
        Request::Channels(params) => Response::Channels(channels(app, params)?),
        Request::Info => Response::Info(info(app)?),
        Request::Batch(params) => Response::Batch(batch(app, params).await?),
    })
}

/// A method-level error: Centrifugo's `{"code", "message"}`.
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

/// 107 with what was wrong.
pub fn bad_request(detail: impl std::fmt::Display) -> ApiError {
    ApiError { code: codes::ERROR_BAD_REQUEST.code, message: format!("{}: {detail}", codes::ERROR_BAD_REQUEST.message) }
}

/// `publish`: the stream position when the channel keeps one, and the webhook message id when
/// the publication was also stored as a message (Herald extension).
#[derive(Debug, Serialize)]
pub struct PublishResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// One channel's outcome in a broadcast: `{"result": ...}` or `{"error": ...}`.
#[derive(Debug, Serialize)]
pub enum Outcome {
    #[serde(rename = "result")]
    Result(PublishResult),
    #[serde(rename = "error")]
    Error(ApiError),
}

impl From<Result<PublishResult, ApiError>> for Outcome {
    fn from(result: Result<PublishResult, ApiError>) -> Self {
        match result {
            Ok(result) => Outcome::Result(result),
            Err(error) => Outcome::Error(error),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BroadcastResult {
    pub responses: Vec<Outcome>,
}

/// The result of methods that return nothing: `{}`.
#[derive(Debug, Serialize)]
pub struct EmptyResult {}

#[derive(Debug, Serialize)]
pub struct PresenceResult {
    pub presence: HashMap<String, ClientInfo>,
}

#[derive(Debug, Serialize)]
pub struct PresenceStatsResult {
    pub num_clients: usize,
    pub num_users: usize,
}

#[derive(Debug, Serialize)]
pub struct HistoryResult {
    #[serde(serialize_with = "serialize_publications")]
    pub publications: Vec<Arc<Publication>>,
    pub epoch: String,
    pub offset: u64,
}

fn serialize_publications<S: Serializer>(publications: &[Arc<Publication>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(publications.iter().map(|p| &**p))
}

#[derive(Debug, Serialize)]
pub struct ChannelsResult {
    pub channels: HashMap<String, ChannelInfo>,
}

#[derive(Debug, Serialize)]
pub struct ChannelInfo {
    pub num_clients: usize,
}

#[derive(Debug, Serialize)]
pub struct InfoResult {
    pub nodes: Vec<NodeInfo>,
}

#[derive(Debug, Serialize)]
pub struct NodeInfo {
    pub uid: String,
    pub name: &'static str,
    pub version: &'static str,
    pub num_clients: usize,
    pub num_users: usize,
    pub num_channels: usize,
    pub num_subs: usize,
    pub uptime: u64,
}

/// `batch`: one reply per command, `{"<method>": result}` or `{"error": ...}`.
#[derive(Debug, Serialize)]
pub struct BatchResult {
    pub replies: Vec<serde_json::Value>,
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
pub struct PublishParams {
    pub channel: String,
    pub data: Option<Box<RawValue>>,
    b64data: Option<String>,
    #[serde(default)]
    pub skip_history: bool,
    #[serde(default)]
    pub tags: HashMap<String, String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub delta: bool,
    /// Herald extension: also store the publication as a webhook message of this application.
    #[serde(default)]
    pub webhook: Option<WebhookTarget>,
}

/// Where a server API publication goes as a webhook message.
#[derive(Deserialize)]
pub struct WebhookTarget {
    /// Application id or uid.
    pub app: String,
    pub event_type: String,
    #[serde(default)]
    pub event_id: Option<String>,
}

async fn publish(app: &Arc<AppState>, params: PublishParams) -> Result<PublishResult, ApiError> {
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
    result.message_id = message_id;
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
) -> Result<PublishResult, ApiError> {
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
        Ok(position) => Ok(PublishResult {
            offset: position.as_ref().map(|p| p.offset),
            epoch: position.map(|p| p.epoch.to_string()),
            message_id: None,
        }),
        Err(error) => {
            tracing::warn!(%channel, %error, "Publish failed.");
            Err(codes::ERROR_INTERNAL.into())
        }
    }
}

#[derive(Deserialize)]
pub struct BroadcastParams {
    pub channels: Vec<String>,
    pub data: Option<Box<RawValue>>,
    b64data: Option<String>,
    #[serde(default)]
    pub skip_history: bool,
    #[serde(default)]
    pub tags: HashMap<String, String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub delta: bool,
}

async fn broadcast(app: &Arc<AppState>, params: BroadcastParams) -> Result<BroadcastResult, ApiError> {
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
        responses.push(Outcome::from(result));
    }
    Ok(BroadcastResult { responses })
}

/// Send a command to the connections the call names, on every node.
async fn to_user(app: &AppState, user: &str, client: Option<&str>, command: UserCommand) -> Result<(), ApiError> {
    let target = UserTarget { user: user.to_owned(), client: client.map(str::to_owned) };
    crate::node::send_to_user(app, &target, command).await.map_err(broker_failed)
}

/// A broker call that failed: logged, and answered with 100 (the caller may retry).
fn broker_failed(error: BrokerError) -> ApiError {
    tracing::warn!(%error, "Broker call failed.");
    ApiError::from(codes::ERROR_INTERNAL)
}

#[derive(Deserialize)]
pub struct SubscribeParams {
    pub user: String,
    pub channel: String,
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub info: Option<Box<RawValue>>,
    #[serde(default)]
    b64info: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    #[serde(default)]
    b64data: Option<String>,
}

async fn subscribe(app: &AppState, params: SubscribeParams) -> Result<EmptyResult, ApiError> {
    channel_options(app, &params.channel)?;
    let info = optional_payload(params.info, params.b64info)?;
    let data = optional_payload(params.data, params.b64data)?;
    let control = Control::Subscribe { channel: params.channel, info, data };
    to_user(app, &params.user, params.client.as_deref(), UserCommand::Session(control)).await?;
    Ok(EmptyResult {})
}

fn optional_payload(data: Option<Box<RawValue>>, b64data: Option<String>) -> Result<Option<Bytes>, ApiError> {
    if data.is_none() && b64data.is_none() {
        return Ok(None);
    }
    payload(data, b64data).map(Some)
}

#[derive(Deserialize)]
pub struct UnsubscribeParams {
    pub user: String,
    pub channel: String,
    #[serde(default)]
    pub client: Option<String>,
}

async fn unsubscribe(app: &AppState, params: UnsubscribeParams) -> Result<EmptyResult, ApiError> {
    channel_options(app, &params.channel)?;
    let control = Control::Unsubscribe { channel: params.channel };
    to_user(app, &params.user, params.client.as_deref(), UserCommand::Session(control)).await?;
    Ok(EmptyResult {})
}

#[derive(Deserialize)]
pub struct DisconnectParams {
    pub user: String,
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub whitelist: Vec<String>,
    #[serde(default)]
    pub disconnect: Option<DisconnectSpec>,
}

#[derive(Deserialize)]
pub struct DisconnectSpec {
    pub code: u16,
    #[serde(default)]
    pub reason: String,
}

async fn disconnect(app: &AppState, params: DisconnectParams) -> Result<EmptyResult, ApiError> {
    let disconnect = match params.disconnect {
        Some(spec) => {
            if !(3000..5000).contains(&spec.code) || spec.reason.len() > 100 {
                return Err(bad_request("disconnect code must be in 3000..4999 and reason under 100 bytes"));
            }
            Disconnect { code: spec.code, reason: spec.reason.into() }
        }
        None => Disconnect::FORCE_NO_RECONNECT,
    };
    let command = UserCommand::Disconnect { disconnect, whitelist: params.whitelist };
    to_user(app, &params.user, params.client.as_deref(), command).await?;
    Ok(EmptyResult {})
}

#[derive(Deserialize)]
pub struct RefreshParams {
    pub user: String,
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub expired: bool,
    #[serde(default)]
    pub expire_at: Option<i64>,
}

async fn refresh(app: &AppState, params: RefreshParams) -> Result<EmptyResult, ApiError> {
    let expire_at = params.expire_at.filter(|at| *at > 0);
    let control = Control::Refresh { expire_at, expired: params.expired };
    to_user(app, &params.user, params.client.as_deref(), UserCommand::Session(control)).await?;
    Ok(EmptyResult {})
}

#[derive(Deserialize)]
pub struct ChannelParams {
    pub channel: String,
}

async fn presence(app: &AppState, params: ChannelParams) -> Result<PresenceResult, ApiError> {
    let options = channel_options(app, &params.channel)?;
    if !options.presence {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    let presence: HashMap<String, ClientInfo> =
        app.hub.presence(&params.channel).into_iter().map(|info| (info.client.clone(), info)).collect();
    Ok(PresenceResult { presence })
}

async fn presence_stats(app: &AppState, params: ChannelParams) -> Result<PresenceStatsResult, ApiError> {
    let options = channel_options(app, &params.channel)?;
    if !options.presence {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    let (num_clients, num_users) = crate::node::presence_stats(app, &params.channel).await.map_err(broker_failed)?;
    Ok(PresenceStatsResult { num_clients, num_users })
}

#[derive(Deserialize)]
pub struct HistoryParams {
    pub channel: String,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub since: Option<SinceParams>,
    #[serde(default)]
    pub reverse: bool,
}

#[derive(Deserialize)]
pub struct SinceParams {
    pub offset: u64,
    pub epoch: String,
}

async fn history(app: &AppState, params: HistoryParams) -> Result<HistoryResult, ApiError> {
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
            error @ (HistoryError::Load(_) | HistoryError::Broker(_)) => {
                tracing::warn!(channel = %params.channel, %error, "Cannot read history.");
                ApiError::from(codes::ERROR_INTERNAL)
            }
        })?;
    Ok(HistoryResult { publications: pubs, epoch: position.epoch.to_string(), offset: position.offset })
}

async fn history_remove(app: &AppState, params: ChannelParams) -> Result<EmptyResult, ApiError> {
    let options = channel_options(app, &params.channel)?;
    if !options.has_history() {
        return Err(codes::ERROR_NOT_AVAILABLE.into());
    }
    crate::node::history_remove(app, &params.channel, &options).await.map_err(broker_failed)?;
    Ok(EmptyResult {})
}

#[derive(Deserialize)]
pub struct ChannelsParams {
    #[serde(default)]
    pub pattern: Option<String>,
}

fn channels(app: &AppState, params: ChannelsParams) -> Result<ChannelsResult, ApiError> {
    let channels = app
        .hub
        .channels(params.pattern.as_deref().filter(|p| !p.is_empty()))
        .into_iter()
        .map(|(name, num_clients)| (name, ChannelInfo { num_clients }))
        .collect();
    Ok(ChannelsResult { channels })
}

fn info(app: &AppState) -> Result<InfoResult, ApiError> {
    let stats = app.hub.stats();
    Ok(InfoResult {
        nodes: vec![NodeInfo {
            uid: app.node_id.clone(),
            name: "herald",
            version: crate::client::VERSION,
            num_clients: stats.clients,
            num_users: stats.users,
            num_channels: stats.channels,
            num_subs: stats.subscriptions,
            uptime: app.started.elapsed().as_secs(),
        }],
    })
}

#[derive(Deserialize)]
pub struct BatchParams {
    pub commands: Vec<serde_json::Map<String, serde_json::Value>>,
}

async fn batch_one(app: &Arc<AppState>, command: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    let mut entries = command.into_iter();
    let (Some((name, params)), None) = (entries.next(), entries.next()) else {
        return serde_json::json!({ "error": bad_request("each command has exactly one method") });
    };
    let method = match Method::from_name(&name) {
        Some(method) if method != Method::Batch => method,
        _ => return serde_json::json!({ "error": ApiError::from(codes::ERROR_METHOD_NOT_FOUND) }),
    };
    let raw = match serde_json::value::to_raw_value(&params) {
        Ok(raw) => raw,
        Err(error) => return serde_json::json!({ "error": bad_request(error) }),
    };
    let result = match Request::parse(method, &raw) {
        Ok(request) => Box::pin(call(app, request)).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(result) => serde_json::json!({ name: result }),
        Err(error) => serde_json::json!({ "error": error }),
    }
}

/// Most commands one batch may carry.
const BATCH_MAX_COMMANDS: usize = 1000;

async fn batch(app: &Arc<AppState>, params: BatchParams) -> Result<BatchResult, ApiError> {
    if params.commands.len() > BATCH_MAX_COMMANDS {
        return Err(bad_request(format!("at most {BATCH_MAX_COMMANDS} commands per batch")));
    }
    let mut replies = Vec::with_capacity(params.commands.len());
    for command in params.commands {
        replies.push(batch_one(app, command).await);
    }
    Ok(BatchResult { replies })
}
