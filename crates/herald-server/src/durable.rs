//! Durable channels: publications are stored before they are acknowledged, and the hub's
//! in-memory stream of such a channel mirrors the store's tail.
//!
//! A durable publish appends to the store (group-committed), then hands the publication with
//! its store-assigned offset to the hub, which releases publications to subscribers in offset
//! order (see `hub::DurableMirror`). The append and the hand-over run in a detached task: a
//! caller that goes away mid-publish (an HTTP client that hangs up) must not leave an offset
//! committed in the store but never released by the hub.
//!
//! The mirror is loaded lazily: the first subscribe, recovery or history read of a durable
//! channel reads the store's tail (`history_size` newest publications) and installs it. After a
//! restart that is how clients recover across it: the epoch and offsets come from the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::ChannelOptions;
use herald_protocol::{ClientInfo, Publication};
use herald_store::{NewPublication, StoreError, StoredPublication, StreamPosition, now_ms};

use crate::hub::{DurableLoad, Hub};
use crate::state::AppState;

/// Why a durable operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("no store is configured")]
    NoStore,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("durable publish task failed: {0}")]
    Task(String),
    #[error("the channel's stream could not be loaded: publications keep arriving faster than the store is read")]
    Busy,
}

/// Times a load is tried when publications keep arriving faster than the store is read.
const LOAD_ATTEMPTS: usize = 3;

/// Load a durable channel's stream into the hub unless it is loaded. On a store other nodes
/// write too, a loaded stream is first brought up to the store's top ([`catch_up`]).
pub async fn ensure_loaded(app: &AppState, channel: &str, options: &ChannelOptions) -> Result<(), DurableError> {
    let store = app.store.as_ref().ok_or(DurableError::NoStore)?;
    if shared(store.as_ref()) && app.hub.durable_loaded(channel) {
        catch_up(app, channel, options, None).await?;
    }
    for _ in 0..LOAD_ATTEMPTS {
        if app.hub.durable_loaded(channel) {
            return Ok(());
        }
        // From here publications committed meanwhile wait for this load; the guard gives up
        // the load if the read fails or this future is dropped.
        let load = LoadGuard::begin(&app.hub, channel, options);
        let (mut stored, position) = store.channel_history(channel, None, options.history_size, true).await?;
        stored.reverse();
        let now = now_ms();
        let tail = stored
            .into_iter()
            .map(|p| {
                let age = Duration::from_millis(now.saturating_sub(p.created_at).max(0) as u64);
                (to_publication(p), age)
            })
            .collect();
        match load.finish(options, &position.epoch, position.offset, tail) {
            DurableLoad::Installed | DurableLoad::AlreadyLoaded => return Ok(()),
            DurableLoad::Stale => continue,
        }
    }
    Err(DurableError::Busy)
}

/// Whether other nodes write this store too (PostgreSQL shared by a cluster).
fn shared(store: &dyn herald_store::Store) -> bool {
    store.work_notify().is_some()
}

/// Bring a loaded durable stream up to the store: publications other nodes committed reach
/// this node's hub here, before a local publication at `below` is released (so this node's own
/// publications never wait behind a gap), or before a history read or a subscribe (`below`
/// `None`: up to the store's top). They are fanned out to this node's subscribers in offset
/// order, late but complete. A stream behind by more than its history is reloaded instead.
/// (Live delivery of other nodes' publications as they happen comes with the cluster broker.)
async fn catch_up(
    app: &AppState,
    channel: &str,
    options: &ChannelOptions,
    below: Option<u64>,
) -> Result<(), DurableError> {
    let store = app.store.as_ref().ok_or(DurableError::NoStore)?;
    let Some(next) = app.hub.durable_next_offset(channel) else { return Ok(()) };
    let top = match below {
        Some(offset) => offset.saturating_sub(1),
        None => store.channel_position(channel).await?.offset,
    };
    if top < next {
        return Ok(());
    }
    let missing = (top - next + 1) as usize;
    if missing > options.history_size {
        app.hub.durable_unload(channel);
        return Ok(());
    }
    let (stored, position) = store.channel_history(channel, Some(next.saturating_sub(1)), missing, false).await?;
    for publication in stored.into_iter().filter(|p| p.offset <= top) {
        app.hub.publish_stored(channel, &position.epoch, to_publication(publication), false);
    }
    Ok(())
}

/// A load of a durable channel under way; dropped without [`LoadGuard::finish`], it is aborted.
struct LoadGuard<'a> {
    hub: &'a Hub,
    channel: &'a str,
    finished: bool,
}

impl<'a> LoadGuard<'a> {
    fn begin(hub: &'a Hub, channel: &'a str, options: &ChannelOptions) -> Self {
        hub.begin_durable_load(channel, options);
        LoadGuard { hub, channel, finished: false }
    }

    fn finish(
        mut self,
        options: &ChannelOptions,
        epoch: &str,
        top_offset: u64,
        tail: Vec<(Publication, Duration)>,
    ) -> DurableLoad {
        self.finished = true;
        self.hub.load_durable(self.channel, options, epoch, top_offset, tail)
    }
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.hub.abort_durable_load(self.channel);
        }
    }
}

/// Store a publication, then fan it out. Returns its position once it is durable.
pub async fn publish(
    app: &Arc<AppState>,
    channel: &str,
    data: Bytes,
    info: Option<ClientInfo>,
    tags: HashMap<String, String>,
    delta: bool,
) -> Result<StreamPosition, DurableError> {
    let store = app.store.clone().ok_or(DurableError::NoStore)?;
    let app = app.clone();
    let channel = channel.to_owned();
    // Tracked, so shutdown waits for a publish that is being stored and released.
    let task = app.tracker.clone().spawn(async move {
        let new = NewPublication {
            channel: channel.clone(),
            data: data.clone(),
            info: info.as_ref().map(encode_info),
            tags: tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            created_at: now_ms(),
        };
        let position = store
            .append_publications(vec![new])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("append returned no position".to_owned()))?;
        if shared(store.as_ref())
            && let Some(options) =
                app.config.namespace_options(herald_core::channel::ChannelName::parse(&channel).namespace)
            && let Err(error) = catch_up(&app, &channel, options, Some(position.offset)).await
        {
            // Committed all the same; the gap closes at the next catch-up.
            tracing::warn!(%channel, %error, "Catching up a durable channel with the store failed.");
        }
        let publication = Publication { data, info, offset: position.offset, tags, ..Default::default() };
        app.hub.publish_stored(&channel, &position.epoch, publication, delta);
        Ok::<_, DurableError>(position)
    });
    task.await.map_err(|e| DurableError::Task(e.to_string()))?
}

fn encode_info(info: &ClientInfo) -> Bytes {
    Bytes::from(serde_json::to_vec(info).unwrap_or_default())
}

fn to_publication(stored: StoredPublication) -> Publication {
    let info = stored.info.as_deref().and_then(|bytes| serde_json::from_slice::<ClientInfo>(bytes).ok());
    let tags: HashMap<String, String> = stored.tags.into_iter().collect::<BTreeMap<_, _>>().into_iter().collect();
    Publication { data: stored.data, info, offset: stored.offset, tags, ..Default::default() }
}
