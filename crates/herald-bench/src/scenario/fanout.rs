//! `fanout`: N subscribers on one channel, publications through the server HTTP API.
//!
//! Each publication's data is `{"t":<unix nanos>,"pad":"..."}`. With a fixed `--rate`, message
//! `i` is *scheduled* at `start + i/rate` and `t` is that intended time, so a stalled publisher
//! or server shows up as latency instead of silently lowering the load (coordinated omission).
//! With `--rate max`, `t` is the moment the request is written. Subscribers are multiplexed
//! over `--sub-tasks` tasks; each scans frames without JSON parsing and records
//! publish-to-receive latency into its own HDR histogram; the histograms are merged at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::{
    DialCounters, DialPlan, FrameHandler, check_fd_budget, dial_many, resolve_source_ips, spawn_groups, sse_client,
    unsupported,
};
use crate::args::{FanoutArgs, Rate};
use crate::centrifugo::{self, Session, Target};
use crate::http::ApiClient;
use crate::metrics::Latency;
use crate::procfs::{self, Snapshot};
use crate::proto::Proto;
use crate::publish::PubTarget;
use crate::report::{ErrorSample, Progress, say};
use crate::util::{human_bytes, round, unix_nanos};

/// Subscriber-side frame handler: counts publications and records their latency.
pub struct SubHandler {
    pub proto: Arc<Proto>,
    pub latency: Latency,
    pub without_t: u64,
    delivered: Arc<AtomicU64>,
    last_delivery_ns: Arc<AtomicU64>,
}

impl FrameHandler for SubHandler {
    #[inline]
    fn on_frame(&mut self, frame: &[u8], binary: bool) -> u32 {
        let now = unix_nanos();
        let mut with_t = 0u32;
        let latency = &mut self.latency;
        let scan = self.proto.scan(frame, binary, |t| {
            with_t += 1;
            latency.record_ns(now.saturating_sub(t));
        });
        if scan.pubs > 0 {
            self.without_t += u64::from(scan.pubs - with_t.min(scan.pubs));
            self.delivered.fetch_add(u64::from(scan.pubs), Ordering::Relaxed);
            self.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
        }
        scan.pings
    }
}

/// The published body around the timestamp: `{"t":` + t + `,"pad":".."}` (the publication's data).
#[derive(Clone)]
pub struct PublishBody {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl PublishBody {
    /// `payload_bytes` is the size of the body (with a 19-digit timestamp).
    pub fn new(payload_bytes: usize) -> Self {
        // {"t":<19>,"pad":"<pad>"}  = 5 + 19 + 8 + pad + 2
        let pad = payload_bytes.saturating_sub(34);
        let suffix = format!(",\"pad\":\"{}\"}}", "x".repeat(pad));
        Self { prefix: b"{\"t\":".to_vec(), suffix: suffix.into_bytes() }
    }

    pub fn render(&self, t: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(t.to_string().as_bytes());
        out.extend_from_slice(&self.suffix);
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) duration: Duration,
    pub(crate) t0: Instant,
    pub(crate) start_unix: u64,
}

#[derive(Default)]
struct PubCounters {
    ok: AtomicU64,
    /// Accepted publications that went to the shared channel (many-channels mode).
    shared_ok: AtomicU64,
    failed: AtomicU64,
    /// Next message index (max-rate mode).
    next: AtomicU64,
}

/// Which channel publication `i` goes to.
#[derive(Clone)]
pub struct Picker {
    pub channel: String,
    /// Many-channels mode: number of own channels (0 = single-channel fan-out).
    pub own: u64,
    pub shared_every: u64,
}

impl Picker {
    /// `(channel, is_shared)`.
    pub fn pick(&self, i: u64) -> (String, bool) {
        if self.own == 0 || (self.shared_every > 0 && i.is_multiple_of(self.shared_every)) {
            return (self.channel.clone(), true);
        }
        // A cheap bijective-ish scramble so consecutive publications hit different channels.
        let j = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
        (format!("{}-{}", self.channel, j % self.own), false)
    }
}

struct PubResult {
    rtt: Latency,
    max_lag_ns: u64,
    errors: ErrorSample,
    connects: u64,
}

/// Shared queue of due message indices (fixed-rate mode), fed by [`pacer`].
type DueQueue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<u64>>>;

/// Fixed-rate pacing on a dedicated OS thread: `thread::sleep` wakes within tens of microseconds,
/// where tokio's timer wheel would add up to a millisecond to every send (and so to every
/// measured latency). Message `i` is due at `t0 + i/rate`; indices pile up in the queue while
/// all publishers are busy, and are then sent late but stamped with their intended time.
pub(crate) fn pacer(rate: f64, sched: Schedule, tx: mpsc::UnboundedSender<u64>) {
    let duration_ns = sched.duration.as_nanos() as u64;
    for i in 0u64.. {
        let offset_ns = (i as f64 * 1e9 / rate) as u64;
        if offset_ns >= duration_ns {
            break;
        }
        let due = sched.t0 + Duration::from_nanos(offset_ns);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if tx.send(i).is_err() {
            break;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    sched: Schedule,
    rate: Rate,
    due: Option<DueQueue>,
    body: PublishBody,
    target: PubTarget,
    picker: Picker,
    mut client: ApiClient,
    c: Arc<PubCounters>,
) -> PubResult {
    let mut res = PubResult { rtt: Latency::new(), max_lag_ns: 0, errors: ErrorSample::default(), connects: 0 };
    let mut buf = Vec::with_capacity(256);
    let mut req = Vec::with_capacity(512);
    loop {
        let (i, t) = match (rate, &due) {
            (Rate::PerSec(rate), Some(due)) => {
                let next = due.lock().await.recv().await;
                let Some(i) = next else { break };
                let offset_ns = (i as f64 * 1e9 / rate) as u64;
                let lag = sched.t0.elapsed().as_nanos() as u64;
                res.max_lag_ns = res.max_lag_ns.max(lag.saturating_sub(offset_ns));
                (i, sched.start_unix + offset_ns)
            }
            _ => {
                if sched.t0.elapsed() >= sched.duration {
                    break;
                }
                (c.next.fetch_add(1, Ordering::Relaxed), unix_nanos())
            }
        };
        let (channel, shared) = picker.pick(i);
        body.render(t, &mut buf);
        target.render(&channel, &buf, &None, &mut req);
        let sent = Instant::now();
        match client.send_raw(&req).await {
            Ok(r) if target.accepted(&r) => {
                c.ok.fetch_add(1, Ordering::Relaxed);
                if shared {
                    c.shared_ok.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(r) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                let snippet: String = String::from_utf8_lossy(&r.body).chars().take(200).collect();
                res.errors.add(format!("HTTP {}: {snippet}", r.status));
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                res.errors.add(format!("{e:#}"));
                // Do not hammer a server that refuses connections.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        res.rtt.record_ns(sent.elapsed().as_nanos() as u64);
    }
    res.connects = client.connects;
    res
}

/// Churn: connect + subscribe + disconnect in a loop until `stop`; returns (cycles, failures, errors).
#[allow(clippy::too_many_arguments)]
async fn churner(
    k: usize,
    proto: Arc<Proto>,
    target: Target,
    channel: String,
    token: Option<String>,
    source_ips: u32,
    timeout: Duration,
    stop: watch::Receiver<bool>,
    cycles: Arc<AtomicU64>,
) -> (u64, ErrorSample) {
    use futures_util::SinkExt;
    let mut failed = 0;
    let mut errors = ErrorSample::default();
    let mut n = k as u32;
    while !*stop.borrow() {
        let source = (source_ips > 0).then(|| centrifugo::loopback_source(n % source_ips));
        n = n.wrapping_add(7);
        let session = Session { token: token.clone(), channels: vec![channel.clone()] };
        match proto.dial(&target, source, &session, timeout).await {
            Ok(mut ws) => {
                let _ = ws.send(tokio_tungstenite::tungstenite::Message::Close(None)).await;
                drop(ws);
                cycles.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                failed += 1;
                errors.add(format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (failed, errors)
}

fn default_publishers(rate: Rate) -> usize {
    match rate {
        Rate::Max => 4,
        // Enough connections that a few ms of round trip does not hold the schedule back.
        Rate::PerSec(r) => ((r / 100.0).ceil() as usize).clamp(2, 64),
    }
}

/// One per-second progress sample (also kept as the run's timeline).
#[derive(Clone, Copy, Default)]
struct Tick {
    t: f64,
    pubs: u64,
    deliveries: u64,
    server_cpu: Option<f64>,
    bench_cpu: f64,
    rss: Option<u64>,
}

pub async fn run(args: FanoutArgs) -> Result<Value> {
    if args.subs == 0 {
        bail!("--subs must be at least 1");
    }
    let publishers = args.publishers.unwrap_or_else(|| default_publishers(args.rate)).max(1);
    check_fd_budget(args.subs + publishers + args.churn, "fewer --subs per process")?;
    let proto = Arc::new(args.conn.proto());
    if args.own_channels && !proto.kind.multi_channel() {
        return Err(unsupported(format!("{} takes one channel per connection", proto.kind.name())));
    }
    let template_target = Target::resolve(&args.conn.url.replace("{channel}", "x")).await?;
    let target = Target { url: args.conn.url.clone(), addr: template_target.addr };
    let pub_target = args.conn.pub_target(&args.api, &args.api_key).await?;
    if args.own_channels && !pub_target.per_channel() {
        return Err(unsupported("the publish endpoint does not name a channel"));
    }
    let sse = sse_client(&args.conn, &target)?;
    if sse.is_some() && args.churn > 0 {
        return Err(unsupported("churn is measured over WebSocket only"));
    }
    let source_ips = resolve_source_ips(args.conn.source_ips, &target, args.subs);
    let pid = args.server_pid;
    let body = PublishBody::new(args.payload_bytes);
    let picker = Picker {
        channel: args.channel.clone(),
        own: if args.own_channels { args.subs as u64 } else { 0 },
        shared_every: args.shared_every,
    };

    // Fail fast on a wrong key or URL (on a channel nobody subscribes to).
    {
        let mut probe = ApiClient::new(pub_target.base.clone(), "");
        let (mut buf, mut req) = (Vec::new(), Vec::new());
        body.render(unix_nanos(), &mut buf);
        pub_target.render(&format!("{}-probe", args.channel), &buf, &None, &mut req);
        let r = probe.send_raw(&req).await?;
        if !pub_target.accepted(&r) {
            bail!("probe publish failed: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
    }

    say(format!(
        "[fanout] connecting {} subscribers to `{}` at {} (source ips: {source_ips})",
        args.subs, args.channel, args.conn.url
    ));
    let snap_dial = Snapshot::take(pid);
    let counters = Arc::new(DialCounters::default());
    let progress = {
        let c = counters.clone();
        let n = args.subs;
        Progress::start(move |t| {
            Some(format!(
                "[fanout] {:>4.0}s subscribed {}/{n} failed {}",
                t.as_secs_f64(),
                c.connected.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed)
            ))
        })
    };
    let channel = args.channel.clone();
    let token = args.conn.token.clone();
    let plan = DialPlan {
        target: target.clone(),
        index_offset: 0,
        count: args.subs,
        source_ips,
        concurrency: args.conn.connect_concurrency,
        timeout: args.conn.connect_timeout,
        session: if args.own_channels {
            Arc::new(move |i| Session {
                token: token.clone(),
                channels: vec![format!("{channel}-{i}"), channel.clone()],
            })
        } else {
            Arc::new(move |_| Session { token: token.clone(), channels: vec![channel.clone()] })
        },
        proto: proto.clone(),
        sse,
    };
    let outcome = dial_many(plan, counters).await;
    drop(progress);
    let subs = outcome.conns.len();
    say(format!("[fanout] {subs} subscribed, {} failed in {:.2}s", outcome.failed, outcome.elapsed.as_secs_f64()));
    if !outcome.errors.is_empty() {
        say(format!("[fanout] subscribe errors:\n{}", outcome.errors));
    }
    if subs == 0 {
        bail!("no subscriber could connect");
    }

    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery_ns = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let closed = Arc::new(AtomicU64::new(0));
    let mut groups = {
        let (d, l) = (delivered.clone(), last_delivery_ns.clone());
        let proto = proto.clone();
        spawn_groups(outcome.conns, args.sub_tasks, &stop_rx, &closed, proto.pong(), move || SubHandler {
            proto: proto.clone(),
            latency: Latency::new(),
            without_t: 0,
            delivered: d.clone(),
            last_delivery_ns: l.clone(),
        })
    };

    // Publish.
    let rate_desc = match args.rate {
        Rate::Max => format!("as fast as {publishers} publishers can"),
        Rate::PerSec(r) => format!("{r}/s over {publishers} publishers"),
    };
    say(format!(
        "[fanout] publishing {}B payloads {rate_desc} for {:.1}s",
        args.payload_bytes,
        args.duration.as_secs_f64()
    ));
    let pubc = Arc::new(PubCounters::default());
    let snap0 = Snapshot::take(pid);
    let sched = Schedule { duration: args.duration, t0: Instant::now(), start_unix: unix_nanos() };
    let due = match args.rate {
        Rate::PerSec(rate) => {
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::Builder::new().name("pacer".into()).spawn(move || pacer(rate, sched, tx))?;
            Some(Arc::new(tokio::sync::Mutex::new(rx)))
        }
        Rate::Max => None,
    };
    let t0 = sched.t0;
    let timeline: Arc<Mutex<Vec<Tick>>> = Arc::new(Mutex::new(Vec::new()));
    let progress = start_progress(&timeline, &pubc, &delivered, subs as u64, pid, snap0);
    let churn_cycles = Arc::new(AtomicU64::new(0));
    let (churn_stop_tx, churn_stop_rx) = watch::channel(false);
    let mut churn_tasks = tokio::task::JoinSet::new();
    for k in 0..args.churn {
        let ch = if args.own_channels { format!("{}-churn-{k}", args.channel) } else { args.channel.clone() };
        churn_tasks.spawn(churner(
            k,
            proto.clone(),
            target.clone(),
            ch,
            args.conn.token.clone(),
            source_ips,
            args.conn.connect_timeout,
            churn_stop_rx.clone(),
            churn_cycles.clone(),
        ));
    }
    let mut pub_tasks = tokio::task::JoinSet::new();
    for _ in 0..publishers {
        let client = ApiClient::new(pub_target.base.clone(), "");
        pub_tasks.spawn(publisher(
            sched,
            args.rate,
            due.clone(),
            body.clone(),
            pub_target.clone(),
            picker.clone(),
            client,
            pubc.clone(),
        ));
    }
    let mut rtt = Latency::new();
    let mut max_lag_ns = 0;
    let mut pub_errors = ErrorSample::default();
    let mut api_connects = 0;
    while let Some(r) = pub_tasks.join_next().await {
        if let Ok(r) = r {
            rtt.merge(&r.rtt);
            max_lag_ns = max_lag_ns.max(r.max_lag_ns);
            pub_errors.merge(r.errors);
            api_connects += r.connects;
        }
    }
    let pub_secs = t0.elapsed().as_secs_f64();
    let _ = churn_stop_tx.send(true);
    let cycles = churn_cycles.load(Ordering::Relaxed);
    let mut churn_failed = 0;
    let mut churn_errors = ErrorSample::default();
    while let Some(r) = churn_tasks.join_next().await {
        if let Ok((f, e)) = r {
            churn_failed += f;
            churn_errors.merge(e);
        }
    }
    let published = pubc.ok.load(Ordering::Relaxed);
    let shared = pubc.shared_ok.load(Ordering::Relaxed);
    let expected = shared * subs as u64 + (published - shared);
    let at_pub_end = delivered.load(Ordering::Relaxed);

    // Drain: wait for outstanding deliveries.
    let drain_start = Instant::now();
    let mut last = at_pub_end;
    let mut last_change = Instant::now();
    loop {
        let d = delivered.load(Ordering::Relaxed);
        if d >= expected {
            break;
        }
        if d != last {
            last = d;
            last_change = Instant::now();
        }
        if last_change.elapsed() >= args.drain_idle || drain_start.elapsed() >= args.drain_max {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snap1 = Snapshot::take(pid);
    drop(progress);
    let _ = stop_tx.send(true);
    let mut latency = Latency::new();
    let mut without_t = 0;
    let mut pongs = 0;
    let mut sub_errors = ErrorSample::default();
    while let Some(r) = groups.join_next().await {
        if let Ok((h, stats)) = r {
            latency.merge(&h.latency);
            without_t += h.without_t;
            pongs += stats.pongs_sent;
            sub_errors.merge(stats.errors);
        }
    }
    let delivered_n = delivered.load(Ordering::Relaxed);
    let last_ns = last_delivery_ns.load(Ordering::Relaxed);
    // Delivery window: first publish to last delivery.
    let delivery_secs = if last_ns > sched.start_unix { (last_ns - sched.start_unix) as f64 / 1e9 } else { pub_secs };
    let ticks = timeline.lock().map(|t| t.clone()).unwrap_or_default();
    let peak_rss = ticks.iter().filter_map(|t| t.rss).chain(snap1.server_mem.map(|m| m.rss)).max();

    let wall = snap1_wall(t0);
    let server_cpu = snap1.server_cpu.zip(snap0.server_cpu).map(|(b, a)| b - a);
    let bench_cpu = snap1.bench_cpu - snap0.bench_cpu;
    let per = |num: Option<f64>, den: u64| num.filter(|_| den > 0).map(|n| round(n * 1e6 / den as f64, 3));
    let busy = snap1.machine_busy_since(&snap0);
    let other_cores =
        busy.map(|b| (b * procfs::cpus() as f64 - server_cpu.unwrap_or(0.0) / wall - bench_cpu / wall).max(0.0));
    let timeline_json: Vec<Value> = ticks
        .iter()
        .map(|t| {
            json!({
                "t": round(t.t, 1), "pubs": t.pubs, "deliveries": t.deliveries,
                "server_cpu": t.server_cpu.map(|c| round(c, 3)), "bench_cpu": round(t.bench_cpu, 3), "rss": t.rss,
            })
        })
        .collect();
    let server_json = json!({
        "pid": pid,
        "cpu_secs": server_cpu.map(|c| round(c, 3)),
        "cpu_cores_used": server_cpu.map(|c| round(c / wall, 3)),
        "cpu_sys_secs": snap1.server_sys.zip(snap0.server_sys).map(|(b, a)| round(b - a, 3)),
        "cpu_us_per_delivery": per(server_cpu, delivered_n),
        "cpu_us_per_publish": per(server_cpu, published),
        "rss_before_bytes": snap0.server_mem.map(|m| m.rss),
        "rss_peak_sampled_bytes": peak_rss,
        "rss_end_bytes": snap1.server_mem.map(|m| m.rss),
        "hwm_bytes": snap1.server_mem.map(|m| m.hwm),
    });
    let churn_json = if args.churn > 0 {
        json!({
            "tasks": args.churn,
            "cycles": cycles,
            "failed": churn_failed,
            "connects_per_s": round(cycles as f64 / pub_secs.max(1e-9), 1),
            "errors": churn_errors.to_json(),
        })
    } else {
        Value::Null
    };
    let result = json!({
        "scenario": "fanout",
        "target": args.conn.describe(),
        "transport": args.conn.transport,
        "mode": if args.own_channels { "own-channels" } else { "one-channel" },
        "shared_every": args.own_channels.then_some(args.shared_every),
        "published_shared": shared,
        "churn": churn_json,
        "url": args.conn.url,
        "api": args.api,
        "channel": args.channel,
        "subs_requested": args.subs,
        "subs": subs,
        "subs_failed": outcome.failed,
        "subscribe_secs": round(outcome.elapsed.as_secs_f64(), 3),
        "listen_overflows_subscribe": snap0.listen_overflows_since(&snap_dial),
        "rate": match args.rate { Rate::Max => json!("max"), Rate::PerSec(r) => json!(r) },
        "publishers": publishers,
        "payload_bytes": args.payload_bytes,
        "duration_secs": round(pub_secs, 3),
        "published": published,
        "publish_failed": pubc.failed.load(Ordering::Relaxed),
        "publishes_per_s": round(published as f64 / pub_secs.max(1e-9), 1),
        "publish_rtt": rtt.summary(),
        "publisher_max_lag_ms": round(max_lag_ns as f64 / 1e6, 3),
        "api_connections": api_connects,
        "expected_deliveries": expected,
        "delivered": delivered_n,
        "delivered_at_publish_end": at_pub_end,
        "lost": expected.saturating_sub(delivered_n),
        "loss_ratio": if expected > 0 { round(expected.saturating_sub(delivered_n) as f64 / expected as f64, 6) } else { 0.0 },
        "delivery_secs": round(delivery_secs, 3),
        "deliveries_per_s": round(delivered_n as f64 / delivery_secs.max(1e-9), 1),
        "latency": latency.summary(),
        "latency_from": match args.rate { Rate::Max => "actual send time", Rate::PerSec(_) => "intended send time (coordinated-omission corrected)" },
        "pushes_without_t": without_t,
        "subs_closed": closed.load(Ordering::Relaxed),
        "pongs_sent": pongs,
        "server": server_json,
        "bench": {
            "cpu_secs": round(bench_cpu, 3),
            "cpu_cores_used": round(bench_cpu / wall, 3),
            "rss_bytes": procfs::mem(None).ok().map(|m| m.rss),
        },
        "machine": {
            "cpus": procfs::cpus(),
            "busy_fraction": busy.map(|v| round(v, 3)),
            // CPU taken by neither the server nor this tool: noise from other processes.
            "other_cores_used": other_cores.map(|v| round(v, 3)),
        },
        "timeline": timeline_json,
        "subscribe_errors": outcome.errors.to_json(),
        "publish_errors": pub_errors.to_json(),
        "subscriber_errors": sub_errors.to_json(),
    });
    summarize(&result);
    Ok(result)
}

fn snap1_wall(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64().max(1e-9)
}

fn start_progress(
    timeline: &Arc<Mutex<Vec<Tick>>>,
    pubc: &Arc<PubCounters>,
    delivered: &Arc<AtomicU64>,
    subs: u64,
    pid: Option<u32>,
    snap0: Snapshot,
) -> Progress {
    let (timeline, pubc, delivered) = (timeline.clone(), pubc.clone(), delivered.clone());
    let mut prev = (0u64, 0u64, snap0.server_cpu, snap0.bench_cpu);
    Progress::start(move |t| {
        let pubs = pubc.ok.load(Ordering::Relaxed);
        let del = delivered.load(Ordering::Relaxed);
        let snap = Snapshot::take(pid);
        let server_cpu = snap.server_cpu.zip(prev.2).map(|(a, b)| a - b);
        let bench_cpu = snap.bench_cpu - prev.3;
        let rss = snap.server_mem.map(|m| m.rss);
        let tick =
            Tick { t: t.as_secs_f64(), pubs: pubs - prev.0, deliveries: del - prev.1, server_cpu, bench_cpu, rss };
        prev = (pubs, del, snap.server_cpu, snap.bench_cpu);
        if let Ok(mut tl) = timeline.lock() {
            tl.push(tick);
        }
        Some(format!(
            "[fanout] {:>4.0}s pub {}/s deliv {}/s (total {}/{} expected, failed pubs {}) server cpu {} rss {} bench cpu {:.0}%",
            tick.t,
            tick.pubs,
            tick.deliveries,
            del,
            pubs * subs,
            pubc.failed.load(Ordering::Relaxed),
            server_cpu.map(|c| format!("{:.0}%", c * 100.0)).unwrap_or_else(|| "-".into()),
            rss.map(|r| human_bytes(r as f64)).unwrap_or_else(|| "-".into()),
            bench_cpu * 100.0
        ))
    })
}

fn summarize(r: &Value) {
    let g = |p: &str| crate::report::show(r.pointer(p));
    let lat = |k: &str| g(&format!("/latency/{k}"));
    let rss = r
        .pointer("/server/rss_peak_sampled_bytes")
        .and_then(Value::as_f64)
        .map(human_bytes)
        .unwrap_or_else(|| "-".into());
    say(format!(
        "== fanout: {} subs, rate {}, {} publishers, {}s\n   published {} ({} failed) = {} pub/s; delivered {}/{} expected (lost {}, {} at publish end) = {} deliveries/s\n   latency ({}): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms\n   publish rtt p50 {} ms p99 {} ms; publisher max lag {} ms\n   server cpu {} s ({} s kernel, {} cores) = {} us/delivery, {} us/publish; server peak rss {rss}; bench cpu {} cores; machine busy {} (other processes: {} cores)",
        g("/subs"),
        g("/rate"),
        g("/publishers"),
        g("/duration_secs"),
        g("/published"),
        g("/publish_failed"),
        g("/publishes_per_s"),
        g("/delivered"),
        g("/expected_deliveries"),
        g("/lost"),
        g("/delivered_at_publish_end"),
        g("/deliveries_per_s"),
        g("/latency_from"),
        lat("p50_ms"),
        lat("p99_ms"),
        lat("p999_ms"),
        lat("max_ms"),
        g("/publish_rtt/p50_ms"),
        g("/publish_rtt/p99_ms"),
        g("/publisher_max_lag_ms"),
        g("/server/cpu_secs"),
        g("/server/cpu_sys_secs"),
        g("/server/cpu_cores_used"),
        g("/server/cpu_us_per_delivery"),
        g("/server/cpu_us_per_publish"),
        g("/bench/cpu_cores_used"),
        g("/machine/busy_fraction"),
        g("/machine/other_cores_used"),
    ));
    if r.pointer("/machine/other_cores_used").and_then(Value::as_f64).is_some_and(|c| c > 0.2) {
        say("   WARNING: other processes used a noticeable share of the CPUs; figures are disturbed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_requested_size() {
        let b = PublishBody::new(64);
        let mut out = Vec::new();
        b.render(1_700_000_000_000_000_000, &mut out);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(out.len(), 64);
        let mut ts = vec![];
        // What a server would push back.
        let push = format!("{{\"push\":{{\"channel\":\"bench\",\"pub\":{{\"data\":{v},\"offset\":1}}}}}}");
        centrifugo::scan_frame(push.as_bytes(), |t| ts.push(t));
        assert_eq!(ts, vec![1_700_000_000_000_000_000]);
    }

    #[test]
    fn picker_spreads() {
        let p = Picker { channel: "c".into(), own: 10, shared_every: 4 };
        assert_eq!(p.pick(0), ("c".to_string(), true));
        assert!(p.pick(4).1);
        let own: std::collections::HashSet<String> = (1..40).filter(|i| i % 4 != 0).map(|i| p.pick(i).0).collect();
        assert!(own.len() >= 5, "{own:?}");
        let single = Picker { channel: "c".into(), own: 0, shared_every: 4 };
        assert_eq!(single.pick(3), ("c".to_string(), true));
    }
}
