//! The node facade: the one place that decides how a channel is resolved, how a publication is
//! made (stored first on a durable channel, straight to the hub otherwise) and how history is
//! read. Every door goes through it: WebSocket commands (`client.rs`), the server API
//! (`api.rs`) and webhook messages with channels (`webhooks.rs`). None of them decides
//! durability on its own.
//!
//! This is the seam scale-out plugs into: today it calls the in-process hub and the store;
//! with a broker, publications and history reads will cross nodes here, behind the same calls.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use herald_core::channel::ChannelName;
use herald_core::{ChannelOptions, Config};
use herald_protocol::{ClientInfo, Publication};

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

/// A publication to make on one channel.
pub struct Publish<'a> {
    pub channel: &'a str,
    pub options: &'a ChannelOptions,
    pub data: Bytes,
    pub info: Option<ClientInfo>,
    pub tags: HashMap<String, String>,
    /// Do not keep it in the channel's history (ephemeral channels only: a durable channel's
    /// history is its stored stream).
    pub skip_history: bool,
    /// Repeated publishes with this key within a window are acknowledged once (ephemeral
    /// channels only, as before this facade).
    pub idempotency_key: Option<String>,
    /// Ask for a fossil delta (the namespace's `delta_publish` asks for every publication).
    pub delta: bool,
}

/// Publish: on a durable channel the publication is stored, and acknowledged, before it is
/// released to subscribers; otherwise it goes to the hub at once. Returns the stream position
/// when the channel keeps one.
pub async fn publish(app: &Arc<AppState>, publish: Publish<'_>) -> Result<Option<Position>, DurableError> {
    if publish.options.durable {
        let position =
            crate::durable::publish(app, publish.channel, publish.data, publish.info, publish.tags, publish.delta)
                .await?;
        return Ok(Some(Position { epoch: Arc::from(position.epoch.as_str()), offset: position.offset }));
    }
    let published = app.hub.publish(PublishSpec {
        channel: publish.channel,
        options: publish.options,
        data: publish.data,
        info: publish.info,
        tags: publish.tags,
        skip_history: publish.skip_history,
        idempotency_key: publish.idempotency_key.filter(|k| !k.is_empty()),
        delta: publish.delta,
    });
    Ok(published.position)
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
    }
    app.hub.history(channel, options, since, limit, reverse).map_err(|_| HistoryError::Unrecoverable)
}
