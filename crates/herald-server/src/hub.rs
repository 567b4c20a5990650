//! The hub: which connection is subscribed to which channel, and live fan-out.
//!
//! # Design
//!
//! Channels live in `N_SHARDS` maps keyed by name, so publishes and subscribes on different
//! channels take different locks. Each channel has one mutex that serialises everything that
//! must be ordered on that channel: taking the next offset, keeping the publication for
//! history, and queueing it to every subscriber. Holding it across the fan-out is what makes
//! every subscriber see a channel's publications in offset order, and what lets a subscribe
//! read the stream position and join the subscriber list atomically (so a recovering client
//! never misses or duplicates a publication in between).
//!
//! Fan-out never waits: each publication is encoded at most once per protocol and delta
//! variant, and the same `Bytes` are pushed to every subscriber's bounded outbox. A full outbox
//! closes that connection with 3008 and the loop moves on.
//!
//! A channel is forgotten when it has no subscribers and no history left to serve. Removal takes
//! the shard's write lock and then the channel's lock and marks the channel `removed`; anyone who
//! found the channel before and locks it afterwards sees the mark and looks it up again. Lock
//! order is always shard, then channel; no shard lock is taken while a channel lock is held.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use herald_core::ChannelOptions;
use herald_protocol::filter::TagsFilter;
use herald_protocol::{ClientInfo, Join, Leave, Protocol, Publication, Push, Reply};
use parking_lot::{Mutex, RwLock};

use crate::conn::ConnShared;
use crate::history::{Position, Stream, Unrecoverable};
use crate::metrics::Metrics;

const N_SHARDS: usize = 64;
/// Idempotency keys remembered per channel.
const IDEMPOTENCY_KEYS_PER_CHANNEL: usize = 1024;
/// How long an idempotency key is remembered.
const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

type Shard<T> = Box<[T]>;
type ChannelMap = RwLock<HashMap<Arc<str>, Arc<Channel>>>;
type ClientMap = Mutex<HashMap<Arc<str>, Arc<ConnShared>>>;
type UserMap = Mutex<HashMap<Arc<str>, Vec<Arc<ConnShared>>>>;

pub struct Hub {
    shards: Shard<ChannelMap>,
    clients: Shard<ClientMap>,
    users: Shard<UserMap>,
    metrics: Metrics,
}

struct Channel {
    name: Arc<str>,
    options: ChannelOptions,
    state: Mutex<ChannelState>,
}

struct ChannelState {
    removed: bool,
    subscribers: Vec<Subscriber>,
    /// Client id -> index in `subscribers`.
    index: HashMap<Arc<str>, usize>,
    mode: Mode,
    /// Payload of the previous publication, the base of fossil deltas.
    last_data: Option<Bytes>,
    idempotency: HashMap<String, (u64, Instant)>,
}

type PubStream = Stream<Arc<Publication>>;

/// What a channel keeps besides its subscribers, as its namespace's options make it.
enum Mode {
    /// No history: publications only fan out, with no position.
    Ephemeral,
    /// In-memory history with recovery: offsets are assigned here, under the channel lock.
    History(PubStream),
    /// A durable channel: the store assigns offsets; the stream, loaded on first use, mirrors
    /// the store's tail.
    Durable { stream: Option<PubStream>, mirror: DurableMirror },
}

impl Mode {
    fn new(options: &ChannelOptions, now: Instant) -> Self {
        if options.durable {
            Mode::Durable { stream: None, mirror: DurableMirror::default() }
        } else if options.has_history() {
            Mode::History(Stream::new(options.history_size, options.history_ttl, now))
        } else {
            Mode::Ephemeral
        }
    }

    /// The stream subscribers recover from and history reads, when there is one.
    fn stream_mut(&mut self) -> Option<&mut PubStream> {
        match self {
            Mode::Ephemeral => None,
            Mode::History(stream) => Some(stream),
            Mode::Durable { stream, .. } => stream.as_mut(),
        }
    }

    fn mirror(&self) -> Option<&DurableMirror> {
        match self {
            Mode::Durable { mirror, .. } => Some(mirror),
            _ => None,
        }
    }

    fn mirror_mut(&mut self) -> Option<&mut DurableMirror> {
        match self {
            Mode::Durable { mirror, .. } => Some(mirror),
            _ => None,
        }
    }
}

/// How a durable channel's in-memory stream follows the store.
///
/// The store assigns offsets; publications reach the hub after their commit, possibly out of
/// order when several publishers race. The mirror releases them in offset order, holding early
/// arrivals in `reorder`. While the stream is being loaded from the store, arrivals wait in
/// `pending` (at most `REORDER_MAX`; past that the load is stale and is done again). When no
/// load is under way and the stream is not loaded, nobody here can be subscribed (subscribing
/// needs the stream), so arrivals need nothing: the store has them.
#[derive(Default)]
struct DurableMirror {
    loaded: bool,
    /// Loads from the store under way ([`Hub::begin_durable_load`]).
    loads: u32,
    pending: Vec<(Publication, bool)>,
    /// More than `REORDER_MAX` publications arrived during a load: its tail is too old.
    overflowed: bool,
    next_offset: u64,
    reorder: std::collections::BTreeMap<u64, (Publication, bool)>,
}

/// Most out-of-order publications a durable mirror holds before releasing them anyway, and most
/// publications held while its stream loads.
const REORDER_MAX: usize = 1024;

/// What became of a durable channel's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableLoad {
    Installed,
    AlreadyLoaded,
    /// Too many publications arrived meanwhile; read the store again.
    Stale,
}

struct Subscriber {
    conn: Arc<ConnShared>,
    chan_info: Bytes,
    push_join_leave: bool,
    /// `Some(ready)` when the subscriber negotiated fossil deltas; `ready` once it has received a
    /// full publication to apply deltas to.
    delta: Option<bool>,
    /// The subscriber's tags filter: publications that do not match are not queued to it.
    filter: Option<Box<TagsFilter>>,
}

/// What a subscribe asks of the hub.
pub struct SubscribeSpec<'a> {
    pub channel: &'a str,
    pub options: &'a ChannelOptions,
    pub chan_info: Bytes,
    pub push_join_leave: bool,
    pub delta: bool,
    /// Recover from this position (client asked, namespace allows it). An empty epoch matches
    /// the stream's epoch, whatever it is.
    pub recover_from: Option<Position>,
    /// Most publications a recovery may return.
    pub recover_max: usize,
    /// When recovery fails, refuse the subscription ([`SubscribeError::Unrecoverable`]) instead
    /// of answering `recovered: false` (subscribe flag bit 2).
    pub reject_unrecovered: bool,
    /// Only publications whose tags match are queued to this subscriber (recovered ones too).
    pub filter: Option<TagsFilter>,
}

/// The hub's answer to a subscribe, handed to the reply builder while the channel is locked.
pub struct SubscribeOutcome {
    /// Stream position when the channel keeps history.
    pub position: Option<Position>,
    /// `Some(true)` with publications when recovered, `Some(false)` when recovery was asked but
    /// the position is gone, `None` when no recovery was asked.
    pub recovered: Option<bool>,
    pub publications: Vec<Publication>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    AlreadySubscribed,
    /// A durable channel's stream is not loaded: call `ensure_durable_loaded` and retry.
    NotLoaded,
    /// Recovery failed and the client asked to be refused then; nothing changed.
    Unrecoverable,
}

/// A publication to fan out.
pub struct PublishSpec<'a> {
    pub channel: &'a str,
    pub options: &'a ChannelOptions,
    pub data: Bytes,
    pub info: Option<ClientInfo>,
    pub tags: HashMap<String, String>,
    pub skip_history: bool,
    pub idempotency_key: Option<String>,
    /// Send it as a fossil delta to subscribers that negotiated deltas (Centrifugo's `delta`
    /// publish flag). Without it they get the full payload.
    pub delta: bool,
}

/// Where a publication landed: its offset and epoch when the channel keeps history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub position: Option<Position>,
    /// Subscribers it was queued to (0 for a duplicate idempotency key).
    pub delivered: usize,
}

/// Counts for the `info` API.
#[derive(Debug, Clone, Copy, Default)]
pub struct HubStats {
    pub clients: usize,
    pub users: usize,
    pub channels: usize,
    pub subscriptions: usize,
}

impl Hub {
    pub fn new(metrics: Metrics) -> Self {
        let shards = (0..N_SHARDS).map(|_| RwLock::new(HashMap::new())).collect();
        let clients = (0..N_SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        let users = (0..N_SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self { shards, clients, users, metrics }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn shard_of(key: &str) -> usize {
        // FNV-1a: cheap and good enough to spread channel names over shards.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash as usize) % N_SHARDS
    }

    /// Find a channel, creating it with `options` when missing.
    fn channel(&self, name: &str, options: &ChannelOptions) -> Arc<Channel> {
        let shard = &self.shards[Self::shard_of(name)];
        if let Some(channel) = shard.read().get(name) {
            return channel.clone();
        }
        let mut map = shard.write();
        if let Some(channel) = map.get(name) {
            return channel.clone();
        }
        let name: Arc<str> = Arc::from(name);
        // A durable channel's stream is loaded from the store (see `load_durable`).
        let mode = Mode::new(options, Instant::now());
        let channel = Arc::new(Channel {
            name: name.clone(),
            options: options.clone(),
            state: Mutex::new(ChannelState {
                removed: false,
                subscribers: Vec::new(),
                index: HashMap::new(),
                mode,
                last_data: None,
                idempotency: HashMap::new(),
            }),
        });
        map.insert(name, channel.clone());
        self.metrics.channels.increment(1.0);
        channel
    }

    fn existing_channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.shards[Self::shard_of(name)].read().get(name).cloned()
    }

    /// Forget `channel` if nothing is left to serve from it.
    fn maybe_remove(&self, channel: &Arc<Channel>, now: Instant) {
        let mut map = self.shards[Self::shard_of(&channel.name)].write();
        let mut state = channel.state.lock();
        if state.removed || !state.subscribers.is_empty() {
            return;
        }
        match &mut state.mode {
            Mode::Ephemeral => {}
            Mode::Durable { mirror, .. } => {
                // The store keeps the history; the mirror is reloaded on next use.
                if mirror.loads > 0 || !mirror.pending.is_empty() || !mirror.reorder.is_empty() {
                    return;
                }
            }
            Mode::History(stream) => {
                stream.prune(now);
                let idle_for = now.saturating_duration_since(stream.last_publish());
                if !stream.is_empty() || idle_for < channel.options.history_ttl {
                    return;
                }
            }
        }
        state.removed = true;
        drop(state);
        if map.get(&channel.name).is_some_and(|c| Arc::ptr_eq(c, channel)) {
            map.remove(&channel.name);
            self.metrics.channels.decrement(1.0);
        }
    }

    /// Subscribe `conn`. `reply` builds the subscribe reply (or push) from the outcome; it is
    /// queued to the connection before any publication that follows the subscription.
    pub fn subscribe(
        &self,
        conn: &Arc<ConnShared>,
        spec: SubscribeSpec<'_>,
        reply: impl FnOnce(&SubscribeOutcome) -> Option<Bytes>,
    ) -> Result<SubscribeOutcome, SubscribeError> {
        loop {
            let channel = self.channel(spec.channel, spec.options);
            let mut state = channel.state.lock();
            if state.removed {
                continue;
            }
            if state.index.contains_key(&conn.id) {
                return Err(SubscribeError::AlreadySubscribed);
            }
            if state.mode.mirror().is_some_and(|m| !m.loaded) {
                return Err(SubscribeError::NotLoaded);
            }
            let now = Instant::now();
            let mut outcome = SubscribeOutcome { position: None, recovered: None, publications: Vec::new() };
            if let Some(stream) = state.mode.stream_mut() {
                outcome.position = Some(stream.position());
                if let Some(since) = &spec.recover_from {
                    match stream.recover(since, spec.recover_max, now) {
                        Ok(pubs) => {
                            // Whether the position is recoverable is decided on the whole
                            // stream; the filter then picks what this subscriber gets.
                            outcome.recovered = Some(true);
                            outcome.publications = pubs
                                .iter()
                                .filter(|p| spec.filter.as_ref().is_none_or(|f| f.matches(&p.tags)))
                                .map(|p| Publication::clone(p))
                                .collect();
                        }
                        Err(Unrecoverable) if spec.reject_unrecovered => return Err(SubscribeError::Unrecoverable),
                        Err(Unrecoverable) => outcome.recovered = Some(false),
                    }
                }
            }
            if let Some(bytes) = reply(&outcome) {
                // A closed outbox means the connection is going away; it unsubscribes on exit.
                let _ = conn.outbox.push(bytes);
            }
            let idx = state.subscribers.len();
            state.subscribers.push(Subscriber {
                conn: conn.clone(),
                chan_info: spec.chan_info.clone(),
                push_join_leave: spec.push_join_leave,
                delta: spec.delta.then_some(false),
                filter: spec.filter.map(Box::new),
            });
            state.index.insert(conn.id.clone(), idx);
            self.metrics.subscriptions.increment(1.0);
            if channel.options.join_leave {
                let join = Join { info: Some(client_info(conn, &spec.chan_info)) };
                let push = Push { channel: channel.name.to_string(), join: Some(join), ..Default::default() };
                broadcast_push(&state.subscribers, push, &self.metrics);
            }
            return Ok(outcome);
        }
    }

    /// Unsubscribe `conn` from `channel`. Returns whether it was subscribed.
    pub fn unsubscribe(&self, conn: &Arc<ConnShared>, channel_name: &str) -> bool {
        let Some(channel) = self.existing_channel(channel_name) else { return false };
        let empty = {
            let mut state = channel.state.lock();
            let Some(idx) = state.index.remove(&conn.id) else { return false };
            let removed = state.subscribers.swap_remove(idx);
            if let Some(moved) = state.subscribers.get(idx) {
                let moved_id = moved.conn.id.clone();
                state.index.insert(moved_id, idx);
            }
            self.metrics.subscriptions.decrement(1.0);
            if channel.options.join_leave {
                let leave = Leave { info: Some(client_info(conn, &removed.chan_info)) };
                let push = Push { channel: channel.name.to_string(), leave: Some(leave), ..Default::default() };
                broadcast_push(&state.subscribers, push, &self.metrics);
            }
            state.subscribers.is_empty()
        };
        if empty {
            self.maybe_remove(&channel, Instant::now());
        }
        true
    }

    /// Publish to a channel: keep it for history (when the channel has history and
    /// `skip_history` is false) and queue it to every subscriber.
    pub fn publish(&self, spec: PublishSpec<'_>) -> Published {
        let now = Instant::now();
        loop {
            // Channels without history and without subscribers need no state at all.
            let channel = if spec.options.has_history() {
                self.channel(spec.channel, spec.options)
            } else {
                match self.existing_channel(spec.channel) {
                    Some(channel) => channel,
                    None => {
                        self.metrics.publications.increment(1);
                        return Published { position: None, delivered: 0 };
                    }
                }
            };
            let mut state = channel.state.lock();
            if state.removed {
                continue;
            }
            let state = &mut *state;
            if let (Some(key), Mode::History(stream)) = (&spec.idempotency_key, &state.mode)
                && let Some((offset, at)) = state.idempotency.get(key)
                && now.saturating_duration_since(*at) < IDEMPOTENCY_WINDOW
            {
                let position = Position { epoch: stream.position().epoch, offset: *offset };
                return Published { position: Some(position), delivered: 0 };
            }
            let mut publication = Publication {
                data: spec.data.clone(),
                info: spec.info.clone(),
                tags: spec.tags.clone(),
                ..Default::default()
            };
            // Only an in-memory history assigns offsets here; a durable channel's come from the
            // store (`publish_stored`), and nothing publishes to one through this path.
            let position = match &mut state.mode {
                Mode::History(stream) => {
                    let (offset, _) = stream.append(now, !spec.skip_history, |offset| {
                        publication.offset = offset;
                        Arc::new(publication.clone())
                    });
                    Some(Position { epoch: stream.position().epoch, offset })
                }
                Mode::Ephemeral | Mode::Durable { .. } => None,
            };
            if let (Some(key), Some(position)) = (spec.idempotency_key, &position) {
                if state.idempotency.len() >= IDEMPOTENCY_KEYS_PER_CHANNEL {
                    state.idempotency.retain(|_, (_, at)| now.saturating_duration_since(*at) < IDEMPOTENCY_WINDOW);
                    if state.idempotency.len() >= IDEMPOTENCY_KEYS_PER_CHANNEL {
                        state.idempotency.clear();
                    }
                }
                state.idempotency.insert(key, (position.offset, now));
            }
            let delta = spec.delta || channel.options.delta_publish;
            let delivered = fan_out(&channel.name, state, &publication, delta, &self.metrics);
            return Published { position, delivered };
        }
    }

    /// Fan out a publication of a durable channel that the store has committed at
    /// `publication.offset` in `epoch`. Channels nobody here follows need nothing.
    pub fn publish_stored(&self, channel: &str, epoch: &str, publication: Publication, delta: bool) -> usize {
        let Some(channel) = self.existing_channel(channel) else {
            self.metrics.publications.increment(1);
            return 0;
        };
        let mut state = channel.state.lock();
        let state = &mut *state;
        if state.removed {
            return 0;
        }
        let Mode::Durable { stream, mirror } = &mut state.mode else { return 0 };
        if !mirror.loaded {
            if mirror.loads > 0 {
                if mirror.pending.len() < REORDER_MAX {
                    mirror.pending.push((publication, delta));
                } else {
                    mirror.overflowed = true;
                    mirror.pending = Vec::new();
                }
            }
            return 0;
        }
        if stream.as_ref().is_some_and(|s| &**s.epoch() != epoch) {
            // The store's stream was recreated: start over from this publication.
            let now = Instant::now();
            *stream = Some(Stream::restore(
                channel.options.history_size,
                channel.options.history_ttl,
                Arc::from(epoch),
                publication.offset.saturating_sub(1),
                Vec::new(),
                now,
            ));
            mirror.next_offset = publication.offset;
            mirror.reorder.clear();
        }
        mirror.reorder.insert(publication.offset, (publication, delta));
        let mut delivered = 0;
        while let Mode::Durable { stream, mirror } = &mut state.mode {
            let next = match mirror.reorder.first_key_value() {
                Some((offset, _)) if *offset <= mirror.next_offset || mirror.reorder.len() > REORDER_MAX => *offset,
                _ => break,
            };
            let Some((publication, delta)) = mirror.reorder.remove(&next) else { break };
            if next < mirror.next_offset {
                // Already released (a duplicate after a reload): the store has it, subscribers too.
                continue;
            }
            mirror.next_offset = next + 1;
            if let Some(stream) = stream {
                stream.insert(Instant::now(), next, Arc::new(publication.clone()));
            }
            // `fan_out_prepared` moves the channel's previous payload, the base of this
            // publication's delta, out of `last_data` and leaves this one in its place.
            let delta = delta || channel.options.delta_publish;
            delivered += fan_out_prepared(&channel.name, state, &publication, delta, &self.metrics);
        }
        delivered
    }

    /// Whether a durable channel's stream is loaded in memory.
    pub fn durable_loaded(&self, channel: &str) -> bool {
        self.existing_channel(channel).is_some_and(|c| c.state.lock().mode.mirror().is_some_and(|m| m.loaded))
    }

    /// The next offset a loaded durable mirror expects, or `None` when it is not loaded.
    pub fn durable_next_offset(&self, channel: &str) -> Option<u64> {
        let channel = self.existing_channel(channel)?;
        let state = channel.state.lock();
        state.mode.mirror().filter(|m| m.loaded).map(|m| m.next_offset)
    }

    /// Forget a durable channel's loaded stream (it fell too far behind the store); the next
    /// [`Hub::begin_durable_load`] and [`Hub::load_durable`] install it afresh.
    pub fn durable_unload(&self, channel: &str) {
        let Some(channel) = self.existing_channel(channel) else { return };
        let mut state = channel.state.lock();
        if let Mode::Durable { stream, mirror } = &mut state.mode {
            *stream = None;
            mirror.loaded = false;
            mirror.reorder.clear();
        }
    }

    /// Start loading a durable channel's stream: the channel exists in the hub from now on, so
    /// publications committed while the store is read wait in `pending`. Every call is followed
    /// by [`Hub::load_durable`] or [`Hub::abort_durable_load`].
    pub fn begin_durable_load(&self, channel: &str, options: &ChannelOptions) {
        let channel = self.channel(channel, options);
        if let Some(mirror) = channel.state.lock().mode.mirror_mut() {
            mirror.loads += 1;
        }
    }

    /// A load that will not finish (the store read failed, or the caller went away): when it
    /// was the last one, what waited for it is dropped and the channel may be forgotten.
    pub fn abort_durable_load(&self, channel_name: &str) {
        let Some(channel) = self.existing_channel(channel_name) else { return };
        {
            let mut state = channel.state.lock();
            let Some(mirror) = state.mode.mirror_mut() else { return };
            mirror.loads = mirror.loads.saturating_sub(1);
            if mirror.loads > 0 || mirror.loaded {
                return;
            }
            mirror.pending = Vec::new();
            mirror.overflowed = false;
        }
        self.maybe_remove(&channel, Instant::now());
    }

    /// Install a durable channel's stream from the store's tail (newest last), read after
    /// [`Hub::begin_durable_load`], and release the publications that arrived meanwhile.
    pub fn load_durable(
        &self,
        channel_name: &str,
        options: &ChannelOptions,
        epoch: &str,
        top_offset: u64,
        tail: Vec<(Publication, std::time::Duration)>,
    ) -> DurableLoad {
        let channel = self.channel(channel_name, options);
        let mut guard = channel.state.lock();
        let state = &mut *guard;
        if state.removed {
            return DurableLoad::Stale;
        }
        let Mode::Durable { stream, mirror } = &mut state.mode else { return DurableLoad::AlreadyLoaded };
        mirror.loads = mirror.loads.saturating_sub(1);
        if mirror.loaded {
            return DurableLoad::AlreadyLoaded;
        }
        if mirror.overflowed {
            if mirror.loads == 0 {
                mirror.overflowed = false;
            }
            return DurableLoad::Stale;
        }
        let now = Instant::now();
        let entries = tail.into_iter().map(|(p, age)| (p.offset, Arc::new(p), age));
        *stream = Some(Stream::restore(
            channel.options.history_size,
            channel.options.history_ttl,
            Arc::from(epoch),
            top_offset,
            entries,
            now,
        ));
        mirror.loaded = true;
        mirror.next_offset = top_offset + 1;
        let pending = std::mem::take(&mut mirror.pending);
        drop(guard);
        for (publication, delta) in pending.into_iter().filter(|(p, _)| p.offset > top_offset) {
            self.publish_stored(channel_name, epoch, publication, delta);
        }
        DurableLoad::Installed
    }

    /// Clients subscribed to a channel, as presence reports them.
    pub fn presence(&self, channel: &str) -> Vec<ClientInfo> {
        let Some(channel) = self.existing_channel(channel) else { return Vec::new() };
        let state = channel.state.lock();
        state.subscribers.iter().map(|s| client_info(&s.conn, &s.chan_info)).collect()
    }

    /// Number of clients and of distinct users subscribed to a channel.
    pub fn presence_stats(&self, channel: &str) -> (usize, usize) {
        let Some(channel) = self.existing_channel(channel) else { return (0, 0) };
        let state = channel.state.lock();
        let mut users: Vec<&str> = state.subscribers.iter().map(|s| s.conn.user()).collect();
        users.sort_unstable();
        users.dedup();
        (state.subscribers.len(), users.len())
    }

    /// Read history. A channel that keeps history but was never published to reports a fresh
    /// position.
    pub fn history(
        &self,
        channel: &str,
        options: &ChannelOptions,
        since: Option<&Position>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Arc<Publication>>, Position), Unrecoverable> {
        let channel = self.channel(channel, options);
        let mut state = channel.state.lock();
        let now = Instant::now();
        let result = match state.mode.stream_mut() {
            Some(stream) => stream.read(since, limit, reverse, now).map(|pubs| (pubs, stream.position())),
            None => Err(Unrecoverable),
        };
        let idle = state.subscribers.is_empty();
        drop(state);
        if idle {
            self.maybe_remove(&channel, now);
        }
        result
    }

    /// Drop a channel's kept publications; its position stays.
    pub fn history_remove(&self, channel: &str) {
        if let Some(channel) = self.existing_channel(channel)
            && let Some(stream) = channel.state.lock().mode.stream_mut()
        {
            stream.clear();
        }
    }

    /// Channels with at least one subscriber, with their subscriber counts, optionally filtered
    /// by a pattern where `*` matches any run of characters.
    pub fn channels(&self, pattern: Option<&str>) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let channels: Vec<Arc<Channel>> = shard.read().values().cloned().collect();
            for channel in channels {
                if pattern.is_some_and(|p| !glob_match(p, &channel.name)) {
                    continue;
                }
                let n = channel.state.lock().subscribers.len();
                if n > 0 {
                    out.push((channel.name.to_string(), n));
                }
            }
        }
        out.sort();
        out
    }

    /// Forget channels whose history has expired and that nobody is subscribed to.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let idle: Vec<Arc<Channel>> = shard
                .read()
                .values()
                .filter(|c| c.state.try_lock().is_some_and(|s| s.subscribers.is_empty()))
                .cloned()
                .collect();
            for channel in idle {
                self.maybe_remove(&channel, now);
            }
        }
    }

    /// Make a connected client findable by id and, when it has a user, by user. Anonymous
    /// connections are not indexed by user: they cannot be targeted by one, and thousands of
    /// them under one empty key made every disconnect a scan of all the others.
    pub fn register(&self, conn: &Arc<ConnShared>) {
        self.clients[Self::shard_of(&conn.id)].lock().insert(conn.id.clone(), conn.clone());
        let user = conn.user_arc();
        if !user.is_empty() {
            self.users[Self::shard_of(&user)].lock().entry(user).or_default().push(conn.clone());
        }
    }

    pub fn unregister(&self, conn: &Arc<ConnShared>) {
        self.clients[Self::shard_of(&conn.id)].lock().remove(&conn.id);
        let user = conn.user_arc();
        if user.is_empty() {
            return;
        }
        let mut users = self.users[Self::shard_of(&user)].lock();
        if let Some(conns) = users.get_mut(&user) {
            if let Some(idx) = conns.iter().position(|c| Arc::ptr_eq(c, conn)) {
                conns.swap_remove(idx);
            }
            if conns.is_empty() {
                users.remove(&user);
            }
        }
    }

    pub fn client(&self, client_id: &str) -> Option<Arc<ConnShared>> {
        self.clients[Self::shard_of(client_id)].lock().get(client_id).cloned()
    }

    pub fn user_connections(&self, user: &str) -> Vec<Arc<ConnShared>> {
        self.users[Self::shard_of(user)].lock().get(user).cloned().unwrap_or_default()
    }

    /// Every registered connection (for shutdown).
    pub fn all_connections(&self) -> Vec<Arc<ConnShared>> {
        self.clients.iter().flat_map(|shard| shard.lock().values().cloned().collect::<Vec<_>>()).collect()
    }

    pub fn stats(&self) -> HubStats {
        let clients = self.clients.iter().map(|s| s.lock().len()).sum();
        let users = self.users.iter().map(|s| s.lock().len()).sum();
        let mut channels = 0;
        let mut subscriptions = 0;
        for shard in self.shards.iter() {
            for channel in shard.read().values() {
                let n = channel.state.lock().subscribers.len();
                if n > 0 {
                    channels += 1;
                    subscriptions += n;
                }
            }
        }
        HubStats { clients, users, channels, subscriptions }
    }
}

/// Queue a publication to every subscriber of a channel whose state is locked.
fn fan_out(
    channel: &str,
    state: &mut ChannelState,
    publication: &Publication,
    delta: bool,
    metrics: &Metrics,
) -> usize {
    fan_out_prepared(channel, state, publication, delta, metrics)
}

/// Fan-out proper: encode lazily once per protocol and variant, push the same bytes everywhere.
/// The channel's previous payload (for deltas) is `state.last_data` before this publication;
/// it is replaced by this one.
fn fan_out_prepared(
    channel: &str,
    state: &mut ChannelState,
    publication: &Publication,
    allow_delta: bool,
    metrics: &Metrics,
) -> usize {
    let previous = state.last_data.replace(publication.data.clone());
    let previous = previous.filter(|p| p != &publication.data || !p.is_empty());
    let mut encoded = EncodedPublication::new(channel, publication, previous);
    let mut delivered = 0usize;
    for subscriber in &mut state.subscribers {
        if subscriber.filter.as_ref().is_some_and(|filter| !filter.matches(&publication.tags)) {
            continue;
        }
        let variant = match subscriber.delta {
            Some(true) if allow_delta => Variant::DeltaPatch,
            Some(true) => Variant::DeltaFull,
            Some(false) => {
                subscriber.delta = Some(true);
                Variant::DeltaFull
            }
            None => Variant::Plain,
        };
        let bytes = encoded.get(subscriber.conn.protocol, variant);
        match subscriber.conn.outbox.push(bytes) {
            Ok(()) => delivered += 1,
            Err(crate::outbox::PushError::Overflow) => metrics.slow_disconnects.increment(1),
            Err(crate::outbox::PushError::Closed) => {}
        }
    }
    metrics.publications.increment(1);
    metrics.deliveries.increment(delivered as u64);
    metrics.messages_queued.increment(delivered as u64);
    delivered
}

fn client_info(conn: &ConnShared, chan_info: &Bytes) -> ClientInfo {
    ClientInfo {
        user: conn.user().to_owned(),
        client: conn.id.to_string(),
        conn_info: conn.conn_info(),
        chan_info: chan_info.clone(),
    }
}

/// Queue a join or leave push to the subscribers that asked for them.
fn broadcast_push(subscribers: &[Subscriber], push: Push, metrics: &Metrics) {
    let reply = Reply { push: Some(push), ..Default::default() };
    let mut json = None;
    let mut protobuf = None;
    for subscriber in subscribers.iter().filter(|s| s.push_join_leave) {
        let protocol = subscriber.conn.protocol;
        let slot = match protocol {
            Protocol::Json => &mut json,
            Protocol::Protobuf => &mut protobuf,
        };
        let bytes = slot.get_or_insert_with(|| herald_protocol::encode_reply_bytes(protocol, &reply)).clone();
        if subscriber.conn.outbox.push(bytes) == Err(crate::outbox::PushError::Overflow) {
            metrics.slow_disconnects.increment(1);
        }
    }
}

/// How a subscriber receives a publication's payload.
#[derive(Clone, Copy)]
enum Variant {
    /// The payload as published (no delta negotiated).
    Plain,
    /// Delta negotiated, but the subscriber has nothing to apply a delta to yet: the full
    /// payload in delta framing (a JSON string in the JSON protocol).
    DeltaFull,
    /// Delta negotiated and ready: a fossil delta against the previous publication, or the full
    /// payload when the delta would not be smaller.
    DeltaPatch,
}

/// One publication, encoded lazily at most once per protocol and variant.
struct EncodedPublication<'a> {
    channel: &'a str,
    publication: &'a Publication,
    previous: Option<Bytes>,
    slots: [Option<Bytes>; 6],
}

impl<'a> EncodedPublication<'a> {
    fn new(channel: &'a str, publication: &'a Publication, previous: Option<Bytes>) -> Self {
        Self { channel, publication, previous, slots: Default::default() }
    }

    fn get(&mut self, protocol: Protocol, variant: Variant) -> Bytes {
        let idx = match protocol {
            Protocol::Json => 0,
            Protocol::Protobuf => 3,
        } + variant as usize;
        if let Some(bytes) = &self.slots[idx] {
            return bytes.clone();
        }
        let mut publication = self.publication.clone();
        match variant {
            Variant::Plain => {}
            Variant::DeltaFull => {
                publication.data = herald_protocol::delta_full_data(protocol, &self.publication.data);
            }
            Variant::DeltaPatch => {
                let payload =
                    herald_protocol::delta_publication_data(protocol, self.previous.as_deref(), &self.publication.data);
                publication.data = payload.data;
                publication.delta = payload.delta;
            }
        }
        let push = Push { channel: self.channel.to_owned(), publication: Some(publication), ..Default::default() };
        let bytes = herald_protocol::encode_reply_bytes(protocol, &Reply { push: Some(push), ..Default::default() });
        self.slots[idx] = Some(bytes.clone());
        bytes
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn durable_options() -> ChannelOptions {
        ChannelOptions {
            durable: true,
            history_size: 10,
            history_ttl: std::time::Duration::from_secs(60),
            ..Default::default()
        }
    }

    fn stored(offset: u64) -> Publication {
        Publication { offset, data: Bytes::from(offset.to_string()), ..Default::default() }
    }

    fn mirror_len(hub: &Hub, channel: &str) -> Option<usize> {
        let channel = hub.existing_channel(channel)?;
        let state = channel.state.lock();
        state.mode.mirror().map(|m| m.pending.len())
    }

    #[test]
    fn durable_publications_wait_only_for_a_load_under_way_and_boundedly() {
        let hub = Hub::new(Metrics::new());
        let options = durable_options();
        // Nobody loads the channel: nothing is kept (nobody can be subscribed).
        hub.begin_durable_load("d:a", &options);
        hub.abort_durable_load("d:a");
        assert!(hub.existing_channel("d:a").is_none(), "an aborted load leaves nothing behind");
        hub.publish_stored("d:a", "e1", stored(1), false);
        assert!(hub.existing_channel("d:a").is_none());

        // During a load, arrivals wait, up to REORDER_MAX; past it the load is stale.
        hub.begin_durable_load("d:b", &options);
        for offset in 1..=3 {
            hub.publish_stored("d:b", "e1", stored(offset), false);
        }
        assert_eq!(mirror_len(&hub, "d:b"), Some(3));
        for offset in 4..=(REORDER_MAX as u64 + 10) {
            hub.publish_stored("d:b", "e1", stored(offset), false);
        }
        assert!(mirror_len(&hub, "d:b").is_some_and(|n| n <= REORDER_MAX));
        assert_eq!(hub.load_durable("d:b", &options, "e1", 0, Vec::new()), DurableLoad::Stale);
        assert!(!hub.durable_loaded("d:b"));
        // The next load, with nothing arriving meanwhile, installs.
        hub.begin_durable_load("d:b", &options);
        let top = REORDER_MAX as u64 + 10;
        assert_eq!(hub.load_durable("d:b", &options, "e1", top, vec![]), DurableLoad::Installed);
        assert!(hub.durable_loaded("d:b"));
        assert_eq!(mirror_len(&hub, "d:b"), Some(0));
    }

    #[test]
    fn glob() {
        assert!(glob_match("chat:*", "chat:room"));
        assert!(glob_match("*room*", "chat:room1"));
        assert!(glob_match("news", "news"));
        assert!(!glob_match("news", "news2"));
        assert!(!glob_match("chat:*x", "chat:room"));
    }
}
