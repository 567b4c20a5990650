//! Measurements. Each scenario returns its result as one JSON value; shared building blocks
//! (opening many connections, driving groups of them) live here.

pub mod api;
pub mod coldstart;
pub mod fanout;
pub mod idle;
pub mod webhook;
pub mod wrk;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::future;
use futures_util::stream::{self, SelectAll};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::args::{ConnArgs, SourceIps, Transport};
use crate::centrifugo::{self, Session, Target, Ws};
use crate::proto::{Codec, Kind, Proto};
use crate::report::ErrorSample;
use crate::sse::{ReadOutcome, SseClient, SseConn};

/// Decides how many loopback source addresses to use for `total` connections.
pub fn resolve_source_ips(spec: SourceIps, target: &Target, total: usize) -> u32 {
    match spec {
        SourceIps::Count(n) => n,
        SourceIps::Auto if target.is_loopback() && target.addr.is_ipv4() => total.div_ceil(10_000).max(1) as u32,
        SourceIps::Auto => 0,
    }
}

/// Fails early when this process cannot hold `sockets` more descriptors.
pub fn check_fd_budget(sockets: usize, hint: &str) -> Result<()> {
    if let Some(limit) = crate::procfs::open_files_limit() {
        let need = sockets as u64 + 64;
        if need > limit {
            bail!("{sockets} sockets need about {need} open files but this process may hold {limit}; {hint}");
        }
    }
    Ok(())
}

/// How to open a batch of connections.
pub struct DialPlan {
    pub target: Target,
    /// Global index of the first connection (channel names, source-address spreading).
    pub index_offset: usize,
    pub count: usize,
    pub source_ips: u32,
    pub concurrency: usize,
    pub timeout: Duration,
    pub session: Arc<dyn Fn(usize) -> Session + Send + Sync>,
    pub proto: Arc<Proto>,
    /// Herald over uni SSE instead of a WebSocket (see [`sse_client`]).
    pub sse: Option<Arc<SseClient>>,
}

/// The uni SSE client for `conn`, when its transport is `uni-sse` (Herald JSON only).
pub fn sse_client(conn: &ConnArgs, target: &Target) -> Result<Option<Arc<SseClient>>> {
    match conn.transport {
        Transport::Websocket => Ok(None),
        Transport::UniSse if conn.kind != Kind::Herald || conn.codec != Codec::Json => {
            Err(unsupported("uni-sse is a Herald transport (JSON)"))
        }
        Transport::UniSse => {
            Ok(Some(Arc::new(SseClient { target: target.clone(), hmac_secret: conn.hmac_secret.clone() })))
        }
    }
}

/// Live counters while dialing (read by progress lines).
#[derive(Default)]
pub struct DialCounters {
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
}

/// Open client connections of one kind.
pub enum Conns {
    Ws(Vec<Ws>),
    Sse(Vec<SseConn>),
}

impl Conns {
    pub fn len(&self) -> usize {
        match self {
            Conns::Ws(v) => v.len(),
            Conns::Sse(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct DialOutcome {
    pub conns: Conns,
    pub failed: usize,
    pub errors: ErrorSample,
    pub elapsed: Duration,
}

/// Opens `plan.count` connections with at most `plan.concurrency` handshakes in flight.
pub async fn dial_many(plan: DialPlan, counters: Arc<DialCounters>) -> DialOutcome {
    let target = Arc::new(plan.target.clone());
    let timeout = plan.timeout;
    match plan.sse.clone() {
        Some(sse) => {
            let (conns, failed, errors, elapsed) = dial_all(&plan, counters, move |source, session, global| {
                let sse = sse.clone();
                async move { sse.dial(source, &session, &format!("bench-{global}"), timeout).await }
            })
            .await;
            DialOutcome { conns: Conns::Sse(conns), failed, errors, elapsed }
        }
        None => {
            let proto = plan.proto.clone();
            let (conns, failed, errors, elapsed) = dial_all(&plan, counters, move |source, session, _| {
                let (proto, target) = (proto.clone(), target.clone());
                async move { proto.dial(&target, source, &session, timeout).await }
            })
            .await;
            DialOutcome { conns: Conns::Ws(conns), failed, errors, elapsed }
        }
    }
}

/// The dialing loop of [`dial_many`], whatever the connection type.
async fn dial_all<C, F, Fut>(
    plan: &DialPlan,
    counters: Arc<DialCounters>,
    dial: F,
) -> (Vec<C>, usize, ErrorSample, Duration)
where
    C: Send + 'static,
    F: Fn(Option<IpAddr>, Session, usize) -> Fut,
    Fut: Future<Output = Result<C>> + Send + 'static,
{
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut set: JoinSet<Result<C>> = JoinSet::new();
    let mut conns = Vec::with_capacity(plan.count);
    let mut errors = ErrorSample::default();
    let mut failed = 0;
    let mut collect = |r: Result<Result<C>, tokio::task::JoinError>, conns: &mut Vec<C>| match r {
        Ok(Ok(c)) => conns.push(c),
        Ok(Err(e)) => {
            failed += 1;
            errors.add(format!("{e:#}"));
        }
        Err(e) => {
            failed += 1;
            errors.add(format!("dial task: {e}"));
        }
    };
    for local in 0..plan.count {
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        let global = plan.index_offset + local;
        let source = (plan.source_ips > 0).then(|| centrifugo::loopback_source(global as u32 % plan.source_ips));
        let session = (plan.session)(global);
        let counters = counters.clone();
        let fut = dial(source, session, global);
        set.spawn(async move {
            let r = fut.await;
            match &r {
                Ok(_) => counters.connected.fetch_add(1, Ordering::Relaxed),
                Err(_) => counters.failed.fetch_add(1, Ordering::Relaxed),
            };
            drop(permit);
            r
        });
        while let Some(r) = set.try_join_next() {
            collect(r, &mut conns);
        }
    }
    while let Some(r) = set.join_next().await {
        collect(r, &mut conns);
    }
    (conns, failed, errors, start.elapsed())
}

/// How long the close handshake may take at the end before connections are reset.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Per-group frame processing (the hot path for subscribers).
pub trait FrameHandler: Send + 'static {
    /// Handles one frame (text, or binary for Protobuf); returns how many pings it contained.
    fn on_frame(&mut self, frame: &[u8], binary: bool) -> u32;
}

/// What happened to a group of connections while it was driven.
#[derive(Default, Debug)]
pub struct GroupStats {
    pub pongs_sent: u64,
    /// Connections the server ended while the group was driven.
    pub closed: u64,
    /// Connections whose end the server confirmed after our close frame.
    pub closed_cleanly: u64,
    pub errors: ErrorSample,
}

/// Drives many connections from one task: reads every frame, hands it to `handler`, answers
/// pings, until `stop` flips (or every connection is gone). Returns the handler for its results.
pub async fn drive_group<H: FrameHandler>(
    conns: Vec<Ws>,
    mut stop: watch::Receiver<bool>,
    mut handler: H,
    closed_total: Arc<AtomicU64>,
    pong: Message,
) -> (H, GroupStats) {
    let mut stats = GroupStats::default();
    let mut sinks = Vec::with_capacity(conns.len());
    let mut streams = SelectAll::new();
    for (i, ws) in conns.into_iter().enumerate() {
        let (sink, rx) = ws.split();
        sinks.push(Some(sink));
        streams.push(rx.map(move |m| (i, Some(m))).chain(stream::once(future::ready((i, None)))));
    }
    if *stop.borrow() {
        return (handler, stats);
    }
    let mut open = sinks.len();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            item = streams.next() => match item {
                None => break,
                Some((i, None)) => {
                    stats.closed += 1;
                    open -= 1;
                    closed_total.fetch_add(1, Ordering::Relaxed);
                    sinks[i] = None;
                }
                Some((i, Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))))) => {
                    let pings = match &msg {
                        Message::Text(t) => handler.on_frame(t.as_bytes(), false),
                        Message::Binary(b) => handler.on_frame(b, true),
                        _ => 0,
                    };
                    for _ in 0..pings {
                        if let Some(sink) = sinks[i].as_mut() {
                            if let Err(e) = sink.send(pong.clone()).await {
                                stats.errors.add(format!("sending pong: {e}"));
                            } else {
                                stats.pongs_sent += 1;
                            }
                        }
                    }
                }
                Some((_, Some(Ok(Message::Close(frame))))) => {
                    let why = frame.map(|f| format!("code {} `{}`", u16::from(f.code), f.reason)).unwrap_or_default();
                    stats.errors.add(format!("server closed the connection {why}"));
                }
                Some((_, Some(Ok(_)))) => {}
                Some((_, Some(Err(e)))) => stats.errors.add(format!("read: {e}")),
            }
        }
    }
    // Polite close: send a close frame on every open connection and give the server a moment to
    // answer and close its end; whatever is still open then is reset on drop (zero linger).
    for sink in sinks.iter_mut().flatten() {
        let _ = sink.send(Message::Close(None)).await;
    }
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    while open > 0 {
        match tokio::time::timeout_at(deadline, streams.next()).await {
            Ok(Some((_, None))) => {
                open -= 1;
                stats.closed_cleanly += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    (handler, stats)
}

/// Splits `conns` into at most `groups` groups and spawns one task per group: a
/// [`drive_group`] for WebSockets; for uni SSE a [`drive_sse_group`], which gives each connection
/// a task of its own and shares the group's handler between them.
pub fn spawn_groups<H: FrameHandler>(
    conns: Conns,
    groups: usize,
    stop: &watch::Receiver<bool>,
    closed_total: &Arc<AtomicU64>,
    pong: Message,
    mut make: impl FnMut() -> H,
) -> JoinSet<(H, GroupStats)> {
    let mut set = JoinSet::new();
    match conns {
        Conns::Ws(conns) => {
            for chunk in split_groups(conns, groups) {
                set.spawn(drive_group(chunk, stop.clone(), make(), closed_total.clone(), pong.clone()));
            }
        }
        Conns::Sse(conns) => {
            for chunk in split_groups(conns, groups) {
                set.spawn(drive_sse_group(chunk, stop.clone(), make(), closed_total.clone()));
            }
        }
    }
    set
}

/// `items` in at most `groups` near-equal, non-empty groups.
fn split_groups<T>(items: Vec<T>, groups: usize) -> Vec<Vec<T>> {
    let sizes = crate::util::split_even(items.len(), groups.clamp(1, items.len().max(1)));
    let mut it = items.into_iter();
    sizes.into_iter().map(|n| it.by_ref().take(n).collect::<Vec<T>>()).filter(|g| !g.is_empty()).collect()
}

/// Drives a group of uni SSE connections, one task each, all feeding `handler` (locked once per
/// read); returns the handler and the group's merged stats once every connection has ended.
pub async fn drive_sse_group<H: FrameHandler>(
    conns: Vec<SseConn>,
    stop: watch::Receiver<bool>,
    handler: H,
    closed_total: Arc<AtomicU64>,
) -> (H, GroupStats) {
    let handler = Arc::new(std::sync::Mutex::new(handler));
    let mut set = JoinSet::new();
    for conn in conns {
        set.spawn(drive_sse_conn(conn, stop.clone(), handler.clone(), closed_total.clone()));
    }
    let mut stats = GroupStats::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(s) => {
                stats.pongs_sent += s.pongs_sent;
                stats.closed += s.closed;
                stats.closed_cleanly += s.closed_cleanly;
                stats.errors.merge(s.errors);
            }
            Err(e) => stats.errors.add(format!("sse task: {e}")),
        }
    }
    // Every task has ended, so this is the last reference.
    let handler = match Arc::try_unwrap(handler) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(_) => unreachable!("all connection tasks were joined"),
    };
    (handler, stats)
}

/// One uni SSE connection: hands every event's data to the shared handler until `stop` flips
/// or the server ends the stream, then resets it. Pings need no answer on this transport.
async fn drive_sse_conn<H: FrameHandler>(
    mut conn: SseConn,
    mut stop: watch::Receiver<bool>,
    handler: Arc<std::sync::Mutex<H>>,
    closed_total: Arc<AtomicU64>,
) -> GroupStats {
    let mut stats = GroupStats::default();
    let ended = |stats: &mut GroupStats| {
        stats.closed += 1;
        closed_total.fetch_add(1, Ordering::Relaxed);
    };
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = conn.stream.readable() => {
                if let Err(e) = r {
                    stats.errors.add(format!("read: {e}"));
                    ended(&mut stats);
                    return stats;
                }
                let mut guard = None;
                let mut disconnect = None;
                let r = conn.read_events(&mut |data: &[u8]| {
                    if data.starts_with(b"{\"disconnect\"") {
                        disconnect = Some(String::from_utf8_lossy(data).into_owned());
                    }
                    guard
                        .get_or_insert_with(|| handler.lock().unwrap_or_else(|e| e.into_inner()))
                        .on_frame(data, false);
                });
                drop(guard);
                if let Some(d) = disconnect {
                    stats.errors.add(format!("server disconnect push {d}"));
                }
                match r {
                    Ok(ReadOutcome::Data | ReadOutcome::WouldBlock) => {}
                    Ok(ReadOutcome::Eof) => {
                        stats.errors.add("server ended the stream".into());
                        ended(&mut stats);
                        return stats;
                    }
                    Err(e) => {
                        stats.errors.add(format!("{e:#}"));
                        ended(&mut stats);
                        return stats;
                    }
                }
            }
        }
    }
    // No polite close: this transport has no way to ask the server to close first, and a
    // half-close would make this side the active closer, leaving one TIME_WAIT per connection
    // on its (explicitly bound) source port for 60 s, enough to exhaust the ephemeral range for
    // the next run. Dropping the socket resets it (zero linger); the server sees the reset.
    drop(conn);
    stats
}

/// Handler that only answers pings (idle connections).
pub struct IdleHandler {
    pub frames: u64,
    pub proto: Arc<Proto>,
}

impl FrameHandler for IdleHandler {
    fn on_frame(&mut self, frame: &[u8], binary: bool) -> u32 {
        self.frames += 1;
        self.proto.scan(frame, binary, |_| {}).pings
    }
}

/// An error meaning "this target cannot run this scenario" (shown as such in the report).
pub fn unsupported(why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("unsupported: {why}")
}
