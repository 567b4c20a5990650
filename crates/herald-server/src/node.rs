//! The node facade: the one place that decides how a channel is resolved, how a publication is
//! made (stored first on a durable channel, straight to the hub otherwise) and how history is
//! read. Every door goes through it: WebSocket commands (`client.rs`), the server API
//! (`api.rs`) and webhook messages with channels (`webhooks.rs`). None of them decides
//! durability on its own.
//!
//! Ephemeral publications, their history, presence and commands to users go through the
//! broker (`broker.rs`: the in-memory one over the local hub by default; Redis or NATS for a
//! cluster). Durable channels go through the store first (`durable.rs`). The hub, the local
//! index, is reached from here and from the session's own subscribe and unsubscribe.

use std::sync::Arc;

use herald_core::channel::ChannelName;
use herald_core::{ChannelOptions, Config};
use herald_protocol::Publication;

use herald_protocol::ClientInfo;

use crate::broker::{BrokerError, UserCommand, UserTarget};
use crate::durable::DurableError;
use crate::history::Position;
use crate::hub::PublishSpec;
use crate::state::AppState;

/// Why a channel name cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelError {
    /// Empty, or longer than `client.channel_max_length`: 107.
    BadName,
    /// Its namespace is not configured: 102.
    UnknownNamespace,
}

/// The options of `channel`'s namespace, after checking the name.
pub fn channel_options(config: &Config, channel: &str) -> Result<ChannelOptions, ChannelError> {
    if channel.is_empty() || channel.len() > config.client.channel_max_length {
        crate::metrics::bad_input("bad_channel");
        return Err(ChannelError::BadName);
    }
    config.namespace_options(ChannelName::parse(channel).namespace).cloned().ok_or(ChannelError::UnknownNamespace)
}

/// Publish: on a durable channel the publication is stored, and acknowledged, before it is
/// released to subscribers; otherwise it goes to the hub at once. Returns the stream position
/// when the channel keeps one.
///
/// `skip_history` and `idempotency_key` apply to ephemeral channels only: a durable channel's
/// history is its stored stream.
pub async fn publish(app: &Arc<AppState>, mut publish: PublishSpec<'_>) -> Result<Option<Position>, PublishError> {
    if publish.options.durable {
        let position =
            crate::durable::publish(app, publish.channel, publish.data, publish.info, publish.tags, publish.delta)
                .await?;
        return Ok(Some(Position { epoch: Arc::from(position.epoch.as_str()), offset: position.offset }));
    }
    publish.idempotency_key = publish.idempotency_key.filter(|k| !k.is_empty());
    Ok(app.engine.publish(publish).await?.position)
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A durable channel's store did not commit it.
    #[error(transparent)]
    Durable(#[from] DurableError),
    /// The broker did not take it.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Why a history read failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `since` names a position the stream no longer has: 112.
    #[error("unrecoverable position")]
    Unrecoverable,
    /// A durable channel's stream could not be read from the store: 100.
    #[error(transparent)]
    Load(#[from] DurableError),
    /// The broker could not answer: 100.
    #[error(transparent)]
    Broker(BrokerError),
}

/// Read a channel's history: up to `limit` publications (after `since` when given), oldest
/// first or newest first with `reverse`, and the stream's position. The caller has checked
/// that the channel keeps history and that the reader may read it.
pub async fn history(
    app: &AppState,
    channel: &str,
    options: &ChannelOptions,
    since: Option<&Position>,
    limit: usize,
    reverse: bool,
) -> Result<(Vec<Arc<Publication>>, Position), HistoryError> {
    if options.durable {
        crate::durable::ensure_loaded(app, channel, options).await?;
        return app.hub.history(channel, options, since, limit, reverse).map_err(|_| HistoryError::Unrecoverable);
    }
    app.engine.history(channel, options, since, limit, reverse).await.map_err(|error| match error {
        BrokerError::Unrecoverable => HistoryError::Unrecoverable,
        other => HistoryError::Broker(other),
    })
}

/// Drop a channel's history; its stream position stays. The caller has checked that the
/// channel keeps history.
pub async fn history_remove(app: &AppState, channel: &str, options: &ChannelOptions) -> Result<(), BrokerError> {
    if options.durable {
        // A durable channel's stream is the store's; the mirror follows the store.
        app.hub.history_remove(channel);
        return Ok(());
    }
    app.engine.history_remove(channel).await
}

/// Every subscriber of `channel`, cluster-wide.
pub async fn presence(app: &AppState, channel: &str) -> Result<Vec<ClientInfo>, BrokerError> {
    app.engine.presence(channel).await
}

/// Subscribed clients and distinct users of `channel`, cluster-wide.
pub async fn presence_stats(app: &AppState, channel: &str) -> Result<(usize, usize), BrokerError> {
    app.engine.presence_stats(channel).await
}

/// Send a command to the connections of a user (or one client), wherever they are connected.
pub async fn send_to_user(app: &AppState, target: &UserTarget, command: UserCommand) -> Result<(), BrokerError> {
    app.engine.send(target, command).await
}
