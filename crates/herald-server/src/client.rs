//! One client session of the Centrifugo protocol, independent of the transport.
//!
//! The transport (WebSocket today) feeds it decoded frames and control requests and writes out
//! whatever lands in the connection's [`Outbox`]. The session owns the connection's
//! subscription state; the hub only holds a handle (`conn::ConnShared`) for fan-out.
//!
//! Errors come in two sizes, as in Centrifugo: a command error is a reply with an error code and
//! the connection goes on; a protocol violation (bad token, malformed frame, command before
//! connect) ends the connection with a disconnect code that tells the SDK whether to reconnect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_core::auth::TokenError;
use herald_core::channel::{ChannelName, personal_channel};
use herald_core::{ChannelOptions, Config};
use herald_protocol::codes::{self, ErrorCode};
use herald_protocol::filter::TagsFilter;
use herald_protocol::{
    ClientInfo, Command, ConnectRequest, ConnectResult, Error as ProtoError, HistoryRequest, HistoryResult,
    PresenceRequest, PresenceResult, PresenceStatsRequest, PresenceStatsResult, Protocol, PublishRequest,
    PublishResult, Push, RefreshRequest, RefreshResult, Reply, SubRefreshRequest, SubRefreshResult, SubscribeRequest,
    SubscribeResult, Unsubscribe, UnsubscribeRequest, UnsubscribeResult,
};

use crate::conn::ConnShared;
use crate::disconnect::Disconnect;
use crate::history::Position;
use crate::hub::{PublishSpec, SubscribeError, SubscribeOutcome, SubscribeSpec};
use crate::node::{ChannelError, HistoryError};
use crate::outbox::{Control, OutboxLimits};
use crate::state::AppState;

/// The server version reported to clients.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

struct SubState {
    /// Unix seconds when the subscription expires unless refreshed.
    expire_at: Option<i64>,
}

/// How the client is carried, as far as the protocol cares.
#[derive(Clone, Debug)]
pub enum Carrier {
    /// A bidirectional WebSocket.
    WebSocket,
    /// Bidirectional emulation over an HTTP stream or SSE: later commands arrive through
    /// `/emulation` with this session id and this node's id, both in the connect result.
    Emulated { session: Arc<str> },
    /// A uni-directional transport: pushes only, no pongs.
    Unidirectional { session: Arc<str> },
}

/// Why a uni-directional connect was refused: a command error code or a disconnect.
#[derive(Debug)]
pub enum Refusal {
    Error(ErrorCode),
    Disconnect(Disconnect),
}

/// A connection's protocol state machine.
pub struct Session {
    pub shared: Arc<ConnShared>,
    app: Arc<AppState>,
    carrier: Carrier,
    connected: bool,
    expire_at: Option<i64>,
    subs: HashMap<Arc<str>, SubState>,
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A command's outcome for metrics and for the transport.
type CommandResult = Result<Option<Reply>, CommandError>;

enum CommandError {
    Reply(ErrorCode),
    Disconnect(Disconnect),
}

impl From<ErrorCode> for CommandError {
    fn from(code: ErrorCode) -> Self {
        CommandError::Reply(code)
    }
}

impl Session {
    pub fn new(app: Arc<AppState>, protocol: Protocol, carrier: Carrier) -> Self {
        let client = &app.config.client;
        let limits = OutboxLimits { max_bytes: client.queue_max_bytes, max_messages: client.queue_max_messages };
        Self {
            shared: Arc::new(ConnShared::new(protocol, limits)),
            app,
            carrier,
            connected: false,
            expire_at: None,
            subs: HashMap::new(),
        }
    }

    fn config(&self) -> &Config {
        &self.app.config
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Connect a uni-directional client from its bare connect request. On success the connect
    /// push is the first thing queued; on refusal nothing is, and the transport answers.
    pub async fn connect_unidirectional(&mut self, req: ConnectRequest) -> Result<(), Refusal> {
        let started = Instant::now();
        let result = self.connect(0, req).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        crate::metrics::command("connect", outcome, started.elapsed());
        match result {
            Ok(_) => Ok(()),
            Err(CommandError::Reply(code)) => Err(Refusal::Error(code)),
            Err(CommandError::Disconnect(disconnect)) => Err(Refusal::Disconnect(disconnect)),
        }
    }

    /// Handle one incoming frame. Returns the disconnect that must end the connection, if any.
    pub async fn handle_frame(&mut self, frame: &[u8]) -> Result<(), Disconnect> {
        let protocol = self.shared.protocol;
        let commands = match herald_protocol::decode_commands(protocol, frame) {
            Ok(commands) => commands,
            Err(error) => {
                tracing::debug!(client = %self.shared.id, %error, "Client sent a malformed frame.");
                crate::metrics::bad_input("malformed_frame");
                return Err(Disconnect::BAD_REQUEST);
            }
        };
        if commands.len() > self.config().client.max_commands_per_frame {
            crate::metrics::bad_input("too_many_commands");
            return Err(Disconnect::BAD_REQUEST);
        }
        for command in commands {
            self.handle_command(command).await?;
        }
        Ok(())
    }

    async fn handle_command(&mut self, command: Command) -> Result<(), Disconnect> {
        let id = command.id;
        let started = Instant::now();
        let (method, result) = self.dispatch(command).await;
        let outcome = match result {
            Ok(Some(mut reply)) => {
                reply.id = id;
                self.send(&reply);
                "ok"
            }
            Ok(None) => "ok",
            Err(CommandError::Reply(code)) => {
                let error = ProtoError { code: code.code, message: code.message.to_owned(), temporary: code.temporary };
                self.send(&Reply { id, error: Some(error), ..Default::default() });
                "error"
            }
            Err(CommandError::Disconnect(disconnect)) => {
                crate::metrics::command(method, "disconnect", started.elapsed());
                return Err(disconnect);
            }
        };
        crate::metrics::command(method, outcome, started.elapsed());
        Ok(())
    }

    async fn dispatch(&mut self, command: Command) -> (&'static str, CommandResult) {
        if let Some(req) = command.connect {
            return ("connect", self.connect(command.id, req).await);
        }
        if !self.connected {
            // Anything but connect before connect breaks the protocol. An empty command (a pong)
            // too: the server has not pinged yet.
            crate::metrics::bad_input("command_before_connect");
            return ("unknown", Err(CommandError::Disconnect(Disconnect::BAD_REQUEST)));
        }
        if command.id == 0 && is_empty_command(&command) {
            // A pong. The transport records liveness for every frame it reads.
            return ("pong", Ok(None));
        }
        if let Some(req) = command.subscribe {
            return ("subscribe", self.subscribe(command.id, req).await);
        }
        if let Some(req) = command.unsubscribe {
            return ("unsubscribe", self.unsubscribe(req));
        }
        if let Some(req) = command.publish {
            return ("publish", self.publish(req).await);
        }
        if let Some(req) = command.presence {
            return ("presence", self.presence(req).await);
        }
        if let Some(req) = command.presence_stats {
            return ("presence_stats", self.presence_stats(req).await);
        }
        if let Some(req) = command.history {
            return ("history", self.history(req).await);
        }
        if command.ping.is_some() {
            return ("ping", Ok(Some(Reply { ping: Some(Default::default()), ..Default::default() })));
        }
        if command.send.is_some() {
            // Asynchronous messages need a target (an RPC/proxy backend); none is configured, and
            // `send` has no reply by design.
            return ("send", Ok(None));
        }
        if command.rpc.is_some() {
            return ("rpc", Err(codes::ERROR_NOT_AVAILABLE.into()));
        }
        if let Some(req) = command.refresh {
            return ("refresh", self.refresh(req));
        }
        if let Some(req) = command.sub_refresh {
            return ("sub_refresh", self.sub_refresh(req));
        }
        crate::metrics::bad_input("unknown_method");
        ("unknown", Err(codes::ERROR_METHOD_NOT_FOUND.into()))
    }

    fn send(&self, reply: &Reply) {
        let bytes = herald_protocol::encode_reply_bytes(self.shared.protocol, reply);
        let _ = self.shared.outbox.push(bytes);
    }

    async fn connect(&mut self, id: u32, req: ConnectRequest) -> CommandResult {
        if self.connected {
            return Err(CommandError::Disconnect(Disconnect::BAD_REQUEST));
        }
        let now = now_unix();
        let app = self.app.clone();
        let client_config = &app.config.client;
        let grant = if !req.token.is_empty() {
            match self.app.verifier.verify_connect(&req.token, now) {
                Ok(grant) => grant,
                Err(TokenError::Expired) => return Err(codes::ERROR_TOKEN_EXPIRED.into()),
                Err(TokenError::Invalid(reason)) => {
                    tracing::info!(client = %self.shared.id, %reason, "Connection token refused.");
                    return Err(CommandError::Disconnect(Disconnect::INVALID_TOKEN));
                }
            }
        } else if client_config.allow_anonymous || client_config.insecure {
            Default::default()
        } else {
            return Err(codes::ERROR_UNAUTHORIZED.into());
        };
        if grant.expire_at.is_some_and(|at| at <= now) {
            return Err(codes::ERROR_TOKEN_EXPIRED.into());
        }
        let conn_info = grant.info.map(Bytes::from).unwrap_or_default();
        let user: Arc<str> = Arc::from(grant.user.as_str());
        if !self.shared.set_identity(user.clone(), conn_info) {
            return Err(CommandError::Disconnect(Disconnect::BAD_REQUEST));
        }
        self.connected = true;
        self.expire_at = grant.expire_at;
        self.app.hub.register(&self.shared);

        // Server-side subscriptions: from the token, and the user's personal channel.
        let mut channels = grant.channels;
        if client_config.user_subscribe_to_personal && !user.is_empty() {
            channels.push(personal_channel(&client_config.personal_channel_namespace, &user));
        }
        let mut subs = Vec::new();
        for channel in channels {
            if self.subs.contains_key(channel.as_str()) {
                continue;
            }
            let Some(options) = self.options_for(&channel) else {
                tracing::warn!(client = %self.shared.id, %channel, "Server-side subscription to an unknown namespace skipped.");
                continue;
            };
            let recover = req.subs.get(&channel).filter(|s| s.recover).map(|s| (s.epoch.clone(), s.offset));
            let request = SubscribeRequest {
                channel: channel.clone(),
                recover: recover.is_some(),
                epoch: recover.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
                offset: recover.map(|r| r.1).unwrap_or_default(),
                ..Default::default()
            };
            if let Ok(result) = self.subscribe_inner(&request, &options, None, Bytes::new(), |_, _| None).await {
                subs.push(herald_protocol::SubscribeResultEntry::new(channel, result));
            }
        }

        let (expires, ttl) = self.ttl_of(self.expire_at, now);
        let (session, node, pong) = match &self.carrier {
            Carrier::WebSocket => (String::new(), String::new(), true),
            Carrier::Emulated { session } => (session.to_string(), self.app.node_id.clone(), true),
            Carrier::Unidirectional { session } => (session.to_string(), String::new(), false),
        };
        let result = ConnectResult {
            client: self.shared.id.to_string(),
            version: VERSION.to_owned(),
            expires,
            ttl,
            subs,
            ping: client_config.ping_interval.as_secs() as u32,
            pong,
            session,
            node,
            ..Default::default()
        };
        // Queue the connect reply ahead of pushes its server-side subscriptions may have queued.
        let reply = Reply { id, connect: Some(result), ..Default::default() };
        self.shared.outbox.push_front(herald_protocol::encode_reply_bytes(self.shared.protocol, &reply));
        Ok(None)
    }

    fn ttl_of(&self, expire_at: Option<i64>, now: i64) -> (bool, u32) {
        match expire_at {
            Some(at) => (true, at.saturating_sub(now).max(0) as u32),
            None => (false, 0),
        }
    }

    fn options_for(&self, channel: &str) -> Option<ChannelOptions> {
        self.config().namespace_options(ChannelName::parse(channel).namespace).cloned()
    }

    fn check_channel(&self, channel: &str) -> Result<ChannelOptions, CommandError> {
        crate::node::channel_options(self.config(), channel).map_err(|error| match error {
            ChannelError::BadName => codes::ERROR_BAD_REQUEST.into(),
            ChannelError::UnknownNamespace => codes::ERROR_UNKNOWN_CHANNEL.into(),
        })
    }

    async fn subscribe(&mut self, id: u32, req: SubscribeRequest) -> CommandResult {
        if req.r#type != 0 {
            // Map and shared-poll subscriptions (Centrifugo 6) are not served: refuse them
            // rather than hand the client a stream it did not ask for.
            crate::metrics::bad_input("unsupported_subscription_type");
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        let options = self.check_channel(&req.channel)?;
        if self.subs.contains_key(req.channel.as_str()) {
            return Err(codes::ERROR_ALREADY_SUBSCRIBED.into());
        }
        if self.subs.len() >= self.config().client.max_channels_per_connection {
            return Err(codes::ERROR_LIMIT_EXCEEDED.into());
        }
        if !req.delta.is_empty() && req.delta != herald_core::channel::DELTA_FOSSIL {
            return Err(codes::ERROR_BAD_REQUEST.into());
        }
        let now = now_unix();
        let user = self.shared.user().to_owned();
        let mut expire_at = None;
        let mut chan_info = Bytes::new();
        if !req.token.is_empty() {
            let grant = match self.app.verifier.verify_subscribe(&req.token, now) {
                Ok(grant) => grant,
                Err(TokenError::Expired) => return Err(codes::ERROR_TOKEN_EXPIRED.into()),
                Err(TokenError::Invalid(reason)) => {
                    // As Centrifugo: a token that does not verify is a refused subscription;
                    // a valid token for another channel or user is a protocol violation (below).
                    tracing::info!(client = %self.shared.id, %reason, "Subscription token refused.");
                    return Err(codes::ERROR_PERMISSION_DENIED.into());
                }
            };
            if grant.channel != req.channel || grant.user != user {
                return Err(CommandError::Disconnect(Disconnect::INVALID_TOKEN));
            }
            if grant.expire_at.is_some_and(|at| at <= now) {
                return Err(codes::ERROR_TOKEN_EXPIRED.into());
            }
            expire_at = grant.expire_at;
            chan_info = grant.info.map(Bytes::from).unwrap_or_default();
        } else if !self.may_subscribe_without_token(&req.channel, &options, &user) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        // The reply is queued while the channel is locked, so it reaches the client before any
        // publication that follows the subscription.
        let protocol = self.shared.protocol;
        self.subscribe_inner(&req, &options, expire_at, chan_info, |result, _| {
            let reply = Reply { id, subscribe: Some(result.clone()), ..Default::default() };
            Some(herald_protocol::encode_reply_bytes(protocol, &reply))
        })
        .await?;
        Ok(None)
    }

    /// Whether the namespace's rules let this client subscribe without a token.
    fn may_subscribe_without_token(&self, channel: &str, options: &ChannelOptions, user: &str) -> bool {
        if self.config().client.insecure {
            return true;
        }
        let name = ChannelName::parse(channel);
        if name.limited_users().is_some() {
            return options.allow_user_limited_channels && name.is_user_allowed(user);
        }
        if user.is_empty() {
            return options.allow_subscribe_for_anonymous;
        }
        options.allow_subscribe_for_client
    }

    /// Subscribe with the hub and record the subscription. `on_locked` may return bytes to
    /// queue while the channel is locked (server-initiated subscribe pushes).
    async fn subscribe_inner(
        &mut self,
        req: &SubscribeRequest,
        options: &ChannelOptions,
        expire_at: Option<i64>,
        chan_info: Bytes,
        on_locked: impl FnOnce(&SubscribeResult, &SubscribeOutcome) -> Option<Bytes>,
    ) -> Result<SubscribeResult, CommandError> {
        let filter = match &req.tf {
            None => None,
            Some(_) if !options.allow_tags_filter => {
                crate::metrics::bad_input("tags_filter_not_allowed");
                return Err(codes::ERROR_BAD_REQUEST.into());
            }
            Some(node) => match TagsFilter::compile(node, self.config().client.max_tags_filter_nodes) {
                Ok(filter) => Some(filter),
                Err(error) => {
                    tracing::debug!(client = %self.shared.id, %error, "Tags filter refused.");
                    crate::metrics::bad_input("tags_filter");
                    return Err(codes::ERROR_BAD_REQUEST.into());
                }
            },
        };
        if options.durable
            && let Err(error) = crate::durable::ensure_loaded(&self.app, &req.channel, options).await
        {
            tracing::warn!(channel = %req.channel, %error, "Cannot load a durable channel.");
            return Err(codes::ERROR_INTERNAL.into());
        }
        let recoverable =
            options.has_history() && (options.force_recovery || (options.allow_recovery && req.recoverable));
        let positioned = options.has_history()
            && (recoverable || options.force_positioning || (options.allow_positioning && req.positioned));
        // An empty epoch recovers from `offset` in whatever epoch the stream has, as in
        // Centrifugo (the SDKs send it after `getState` returned no epoch).
        let recover_from = (recoverable && (req.recover || (options.force_recovery && !req.epoch.is_empty())))
            .then(|| Position { epoch: Arc::from(req.epoch.as_str()), offset: req.offset });
        let was_recovering = recover_from.is_some();
        // A filtered subscription misses publications, so it could not apply deltas computed
        // against the channel's previous one: deltas are not negotiated with a filter (as
        // Centrifugo documents; the SDKs refuse to ask for both).
        let delta = req.delta == herald_core::channel::DELTA_FOSSIL && options.allows_fossil() && filter.is_none();
        let push_join_leave = options.join_leave && (req.join_leave || options.force_push_join_leave);
        let now = now_unix();
        let (expires, ttl) = self.ttl_of(expire_at, now);
        let spec = SubscribeSpec {
            channel: &req.channel,
            options,
            chan_info,
            push_join_leave,
            delta,
            recover_from,
            recover_max: self.config().client.history_max_limit,
            reject_unrecovered: req.flag & codes::SUBSCRIBE_FLAG_REJECT_UNRECOVERED != 0,
            filter,
        };
        let mut built = None;
        let protocol = self.shared.protocol;
        let outcome = self.app.hub.subscribe(&self.shared, spec, |outcome| {
            let mut result = subscribe_result(outcome, recoverable, positioned, was_recovering, delta, expires, ttl);
            if delta {
                // Delta-negotiated subscriptions carry every payload in delta framing.
                for publication in &mut result.publications {
                    publication.data = herald_protocol::delta_full_data(protocol, &publication.data);
                }
            }
            let bytes = on_locked(&result, outcome);
            built = Some(result);
            bytes
        });
        match outcome {
            Ok(_) => {}
            Err(SubscribeError::AlreadySubscribed) => return Err(codes::ERROR_ALREADY_SUBSCRIBED.into()),
            // The durable mirror was dropped between loading and subscribing: rare, and the
            // error is temporary, so the SDK retries.
            Err(SubscribeError::NotLoaded) => return Err(codes::ERROR_INTERNAL.into()),
            // The SDKs then reload the application's state (`getState`) and subscribe again.
            Err(SubscribeError::Unrecoverable) => return Err(codes::ERROR_UNRECOVERABLE_POSITION.into()),
        }
        self.subs.insert(Arc::from(req.channel.as_str()), SubState { expire_at });
        built.ok_or(CommandError::Reply(codes::ERROR_INTERNAL))
    }

    fn unsubscribe(&mut self, req: UnsubscribeRequest) -> CommandResult {
        if self.subs.remove(req.channel.as_str()).is_some() {
            self.app.hub.unsubscribe(&self.shared, &req.channel);
        }
        Ok(Some(Reply { unsubscribe: Some(UnsubscribeResult::default()), ..Default::default() }))
    }

    async fn publish(&mut self, req: PublishRequest) -> CommandResult {
        let options = self.check_channel(&req.channel)?;
        if req.data.is_empty() {
            crate::metrics::bad_input("empty_data");
            return Err(codes::ERROR_BAD_REQUEST.into());
        }
        let user = self.shared.user();
        let subscribed = self.subs.contains_key(req.channel.as_str());
        let anonymous_ok = !user.is_empty() || options.allow_publish_for_anonymous;
        let allowed = self.config().client.insecure
            || (anonymous_ok
                && ((subscribed && options.allow_publish_for_subscriber) || options.allow_publish_for_client));
        if !allowed {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        let info = ClientInfo {
            user: user.to_owned(),
            client: self.shared.id.to_string(),
            conn_info: self.shared.conn_info(),
            chan_info: Bytes::new(),
        };
        let publish = PublishSpec {
            channel: &req.channel,
            options: &options,
            data: req.data,
            info: Some(info),
            tags: HashMap::new(),
            skip_history: false,
            idempotency_key: None,
            delta: false,
        };
        // On a durable channel, answered only once stored.
        if let Err(error) = crate::node::publish(&self.app, publish).await {
            tracing::warn!(channel = %req.channel, %error, "Publish failed.");
            return Err(codes::ERROR_INTERNAL.into());
        }
        Ok(Some(Reply { publish: Some(PublishResult::default()), ..Default::default() }))
    }

    fn may_read(&self, channel: &str, for_subscriber: bool, for_client: bool) -> bool {
        self.config().client.insecure
            || (for_subscriber && self.subs.contains_key(channel))
            || (for_client && !self.shared.user().is_empty())
    }

    async fn presence(&mut self, req: PresenceRequest) -> CommandResult {
        let options = self.check_channel(&req.channel)?;
        if !options.presence {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        if !self.may_read(&req.channel, options.allow_presence_for_subscriber, options.allow_presence_for_client) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        let presence = crate::node::presence(&self.app, &req.channel)
            .await
            .map_err(|error| broker_failed(&req.channel, error))?
            .into_iter()
            .map(|info| (info.client.clone(), info))
            .collect();
        Ok(Some(Reply { presence: Some(PresenceResult { presence }), ..Default::default() }))
    }

    async fn presence_stats(&mut self, req: PresenceStatsRequest) -> CommandResult {
        let options = self.check_channel(&req.channel)?;
        if !options.presence {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        if !self.may_read(&req.channel, options.allow_presence_for_subscriber, options.allow_presence_for_client) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        let (num_clients, num_users) = crate::node::presence_stats(&self.app, &req.channel)
            .await
            .map_err(|error| broker_failed(&req.channel, error))?;
        let result = PresenceStatsResult { num_clients: num_clients as u32, num_users: num_users as u32 };
        Ok(Some(Reply { presence_stats: Some(result), ..Default::default() }))
    }

    async fn history(&mut self, req: HistoryRequest) -> CommandResult {
        let options = self.check_channel(&req.channel)?;
        if !options.has_history() {
            return Err(codes::ERROR_NOT_AVAILABLE.into());
        }
        if !self.may_read(&req.channel, options.allow_history_for_subscriber, options.allow_history_for_client) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        let max = self.config().client.history_max_limit;
        let limit = if req.limit < 0 { max } else { (req.limit as usize).min(max) };
        let since = req.since.as_ref().map(|s| Position { epoch: Arc::from(s.epoch.as_str()), offset: s.offset });
        let (pubs, position) =
            crate::node::history(&self.app, &req.channel, &options, since.as_ref(), limit, req.reverse).await.map_err(
                |error| match error {
                    HistoryError::Unrecoverable => CommandError::Reply(codes::ERROR_UNRECOVERABLE_POSITION),
                    error @ (HistoryError::Load(_) | HistoryError::Broker(_)) => {
                        tracing::warn!(channel = %req.channel, %error, "Cannot read history.");
                        CommandError::Reply(codes::ERROR_INTERNAL)
                    }
                },
            )?;
        let result = HistoryResult {
            publications: pubs.iter().map(|p| herald_protocol::Publication::clone(p)).collect(),
            epoch: position.epoch.to_string(),
            offset: position.offset,
        };
        Ok(Some(Reply { history: Some(result), ..Default::default() }))
    }

    fn refresh(&mut self, req: RefreshRequest) -> CommandResult {
        let now = now_unix();
        let grant = match self.app.verifier.verify_connect(&req.token, now) {
            Ok(grant) => grant,
            Err(TokenError::Expired) => return Err(codes::ERROR_TOKEN_EXPIRED.into()),
            Err(TokenError::Invalid(_)) => return Err(CommandError::Disconnect(Disconnect::INVALID_TOKEN)),
        };
        if grant.user != self.shared.user() {
            return Err(CommandError::Disconnect(Disconnect::INVALID_TOKEN));
        }
        self.expire_at = grant.expire_at;
        let (expires, ttl) = self.ttl_of(self.expire_at, now);
        let result = RefreshResult { client: self.shared.id.to_string(), version: VERSION.to_owned(), expires, ttl };
        Ok(Some(Reply { refresh: Some(result), ..Default::default() }))
    }

    fn sub_refresh(&mut self, req: SubRefreshRequest) -> CommandResult {
        if !self.subs.contains_key(req.channel.as_str()) {
            return Err(codes::ERROR_PERMISSION_DENIED.into());
        }
        let now = now_unix();
        let grant = match self.app.verifier.verify_subscribe(&req.token, now) {
            Ok(grant) => grant,
            Err(TokenError::Expired) => return Err(codes::ERROR_TOKEN_EXPIRED.into()),
            Err(TokenError::Invalid(_)) => return Err(CommandError::Disconnect(Disconnect::INVALID_TOKEN)),
        };
        if grant.channel != req.channel || grant.user != self.shared.user() {
            return Err(CommandError::Disconnect(Disconnect::INVALID_TOKEN));
        }
        if let Some(sub) = self.subs.get_mut(req.channel.as_str()) {
            sub.expire_at = grant.expire_at;
        }
        let (expires, ttl) = self.ttl_of(grant.expire_at, now);
        Ok(Some(Reply {
            sub_refresh: Some(SubRefreshResult { expires, ttl, ..Default::default() }),
            ..Default::default()
        }))
    }

    /// Apply a request queued by the server API.
    pub async fn handle_control(&mut self, control: Control) -> Result<(), Disconnect> {
        if !self.connected {
            return Ok(());
        }
        match control {
            Control::Subscribe { channel, info, data } => {
                let Some(options) = self.options_for(&channel) else { return Ok(()) };
                if self.subs.contains_key(channel.as_str()) {
                    return Ok(());
                }
                let request = SubscribeRequest { channel: channel.clone(), ..Default::default() };
                let protocol = self.shared.protocol;
                let data = data.unwrap_or_default();
                let _ = self
                    .subscribe_inner(&request, &options, None, info.unwrap_or_default(), |result, _| {
                        let push = Push {
                            channel: channel.clone(),
                            subscribe: Some(herald_protocol::Subscribe {
                                recoverable: result.recoverable,
                                epoch: result.epoch.clone(),
                                offset: result.offset,
                                positioned: result.positioned,
                                data: data.clone(),
                            }),
                            ..Default::default()
                        };
                        Some(herald_protocol::encode_reply_bytes(
                            protocol,
                            &Reply { push: Some(push), ..Default::default() },
                        ))
                    })
                    .await;
            }
            Control::Unsubscribe { channel } => {
                if self.subs.remove(channel.as_str()).is_some() {
                    self.app.hub.unsubscribe(&self.shared, &channel);
                    self.push_unsubscribe(&channel, codes::UNSUBSCRIBE_SERVER);
                }
            }
            Control::Refresh { expire_at, expired } => {
                if expired {
                    return Err(Disconnect::EXPIRED);
                }
                self.expire_at = expire_at;
                let (expires, ttl) = self.ttl_of(expire_at, now_unix());
                let push = Push { refresh: Some(herald_protocol::Refresh { expires, ttl }), ..Default::default() };
                self.send(&Reply { push: Some(push), ..Default::default() });
            }
        }
        Ok(())
    }

    fn push_unsubscribe(&self, channel: &str, code: codes::UnsubscribeCode) {
        let push = Push {
            channel: channel.to_owned(),
            unsubscribe: Some(Unsubscribe { code: code.code, reason: code.reason.to_owned() }),
            ..Default::default()
        };
        self.send(&Reply { push: Some(push), ..Default::default() });
    }

    /// When the session next needs [`Session::check_expiry`], if ever.
    pub fn next_expiry(&self) -> Option<Instant> {
        let delay = self.config().client.expired_close_delay;
        let earliest = self.expire_at.into_iter().chain(self.subs.values().filter_map(|s| s.expire_at)).min()?;
        let now = now_unix();
        let secs = earliest.saturating_sub(now).max(0) as u64;
        Some(Instant::now() + Duration::from_secs(secs) + delay)
    }

    /// Close expired connections and subscriptions whose grace period has passed.
    pub fn check_expiry(&mut self) -> Result<(), Disconnect> {
        let now = now_unix();
        let grace = self.config().client.expired_close_delay.as_secs() as i64;
        if self.expire_at.is_some_and(|at| at + grace <= now) {
            return Err(Disconnect::EXPIRED);
        }
        let expired: Vec<Arc<str>> = self
            .subs
            .iter()
            .filter(|(_, s)| s.expire_at.is_some_and(|at| at + grace <= now))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in expired {
            self.subs.remove(&channel);
            self.app.hub.unsubscribe(&self.shared, &channel);
            self.push_unsubscribe(&channel, codes::UNSUBSCRIBE_EXPIRED);
        }
        Ok(())
    }

    /// Leave every channel and the client index. Called once when the connection ends.
    pub fn close(&mut self) {
        for (channel, _) in self.subs.drain() {
            self.app.hub.unsubscribe(&self.shared, &channel);
        }
        if self.connected {
            self.app.hub.unregister(&self.shared);
        }
    }
}

/// A broker call that failed: logged, and answered with 100 (the SDKs may retry).
fn broker_failed(channel: &str, error: crate::broker::BrokerError) -> CommandError {
    tracing::warn!(%channel, %error, "Broker call failed.");
    CommandError::Reply(codes::ERROR_INTERNAL)
}

fn subscribe_result(
    outcome: &SubscribeOutcome,
    recoverable: bool,
    positioned: bool,
    was_recovering: bool,
    delta: bool,
    expires: bool,
    ttl: u32,
) -> SubscribeResult {
    let mut result = SubscribeResult { expires, ttl, delta, ..Default::default() };
    if let Some(position) = &outcome.position
        && (recoverable || positioned)
    {
        result.epoch = position.epoch.to_string();
        result.offset = position.offset;
    }
    result.recoverable = recoverable;
    result.positioned = positioned;
    result.was_recovering = was_recovering;
    result.recovered = outcome.recovered == Some(true);
    result.publications = outcome.publications.clone();
    result
}

fn is_empty_command(command: &Command) -> bool {
    command.connect.is_none()
        && command.subscribe.is_none()
        && command.unsubscribe.is_none()
        && command.publish.is_none()
        && command.presence.is_none()
        && command.presence_stats.is_none()
        && command.history.is_none()
        && command.ping.is_none()
        && command.send.is_none()
        && command.rpc.is_none()
        && command.refresh.is_none()
        && command.sub_refresh.is_none()
}
