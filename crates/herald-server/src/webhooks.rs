//! Where the two delivery paths meet: the Svix-compatible management API is mounted with
//! callbacks into the hub and the dispatcher, and server API publishes can become webhook
//! messages.
//!
//! One log, two delivery paths: a message created through `/api/v1/app/{app}/msg` is stored,
//! wakes the dispatcher (webhooks), and, when it names channels, is published to live
//! subscribers of `<management.live_namespace>:<app id>:<channel>` (when that namespace is
//! configured). A server API `publish` with a `webhook` object is stored as a message of that
//! application with the publish channel as its channel, so endpoints filtering on the channel
//! or the event type receive it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt as _;
use herald_core::channel::ChannelName;
use herald_store::Message;

use crate::hub::PublishSpec;
use crate::state::AppState;

/// The management API router, when a store is configured.
pub fn management_router(app: &Arc<AppState>) -> Option<axum::Router> {
    let store = app.store.clone()?;
    let on_message_app = app.clone();
    let guard = app.url_guard.clone();
    let wake_handle = app.webhooks.clone();
    let state = herald_svix::SvixState {
        store,
        management: app.config.management.clone(),
        webhooks: app.config.webhooks.clone(),
        on_message: Arc::new(move |message: &Message| message_created(&on_message_app, message)),
        on_rescheduled: Arc::new(move || {
            if let Some(webhooks) = &wake_handle {
                webhooks.notify();
            }
        }),
        check_url: Arc::new(move |url: &str| guard.check_url(url).map_err(|error| error.to_string())),
    };
    Some(herald_svix::router(Arc::new(state)))
}

/// A message was durably created: wake the dispatcher and publish it to live subscribers.
pub fn message_created(app: &Arc<AppState>, message: &Message) {
    if let Some(webhooks) = &app.webhooks {
        webhooks.notify();
    }
    let namespace = &app.config.management.live_namespace;
    let Some(channels) = &message.channels else { return };
    if namespace.is_empty() {
        return;
    }
    for channel in channels {
        let live = live_channel(namespace, &message.app_id, channel);
        let Some(options) = app.config.namespace_options(ChannelName::parse(&live).namespace).cloned() else {
            continue;
        };
        let mut tags = HashMap::new();
        tags.insert("event_type".to_owned(), message.event_type.clone());
        tags.insert("msg_id".to_owned(), message.id.clone());
        let data = message.payload.clone();
        let idempotency_key = Some(message.id.clone());
        let live_app = app.clone();
        let publish = async move {
            let publish = PublishSpec {
                channel: &live,
                options: &options,
                data,
                info: None,
                tags,
                skip_history: false,
                idempotency_key,
                delta: false,
            };
            if let Err(error) = crate::node::publish(&live_app, publish).await {
                tracing::warn!(channel = %live, %error, "Live publish of a webhook message failed.");
            }
        };
        // The message is committed already. An ephemeral live copy goes out now (the future
        // completes on its first poll); a durable one is stored in the background, tracked.
        let mut publish = Box::pin(publish);
        if (&mut publish).now_or_never().is_none() {
            app.tracker.spawn(publish);
        }
    }
}

/// The live channel a message channel maps to.
pub fn live_channel(namespace: &str, app_id: &str, channel: &str) -> String {
    format!("{namespace}:{app_id}:{channel}")
}

/// Why a server API publication could not become a webhook message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The caller named an application that does not exist: their mistake.
    #[error("unknown application `{0}`")]
    UnknownApp(String),
    /// Ours: no store, or the store failed.
    #[error("no store is configured")]
    NoStore,
    #[error(transparent)]
    Store(#[from] herald_store::StoreError),
}

/// Store a server API publication as a webhook message of `app` (id or uid).
pub async fn publish_as_message(
    app: &Arc<AppState>,
    target_app: &str,
    event_type: &str,
    event_id: Option<String>,
    channel: &str,
    data: Bytes,
) -> Result<Message, MessageError> {
    let store = app.store.as_ref().ok_or(MessageError::NoStore)?;
    let found = store.get_app(target_app).await?.ok_or_else(|| MessageError::UnknownApp(target_app.to_owned()))?;
    let new = herald_store::NewMessage {
        app_id: found.id,
        event_id,
        event_type: event_type.to_owned(),
        payload: data,
        channels: Some(vec![channel.to_owned()]),
    };
    let (message, created) = store.create_message(new).await?;
    if created && let Some(webhooks) = &app.webhooks {
        webhooks.notify();
    }
    Ok(message)
}
