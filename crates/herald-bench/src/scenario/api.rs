//! `api`: server API publish throughput and latency. `--conns` keep-alive HTTP/1.1 connections
//! publish back-to-back (closed loop) for `--duration`, round-robin over `--channels` channels
//! named `<namespace><channel>-<k>` (a durable namespace makes every publish a store write).
//! Nobody is subscribed, so this measures the publish path itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::fanout::PublishBody;
use crate::args::ConnArgs;
use crate::http::ApiClient;
use crate::metrics::Latency;
use crate::procfs::{self, Snapshot};
use crate::report::{ErrorSample, Progress, say};
use crate::util::{parse_duration, round, unix_nanos};

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Server HTTP API base URL (Herald).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub api: String,
    #[arg(long, env = "HERALD_BENCH_API_KEY", default_value = "")]
    pub api_key: String,
    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 256)]
    pub conns: usize,
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Channels published to, round-robin.
    #[arg(long, default_value_t = 64)]
    pub channels: usize,
    /// Channel name prefix, e.g. `durable:` for a durable namespace.
    #[arg(long, default_value = "")]
    pub namespace: String,
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// A label for the report (e.g. `ephemeral`, `durable`).
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Server/bench/machine CPU figures between two snapshots (shared by the HTTP scenarios).
pub fn usage_json(s0: &Snapshot, s1: &Snapshot, wall: f64, per: u64, per_name: &str) -> (Value, Value, Value) {
    let server_cpu = s1.server_cpu.zip(s0.server_cpu).map(|(b, a)| b - a);
    let bench_cpu = s1.bench_cpu - s0.bench_cpu;
    let busy = s1.machine_busy_since(s0);
    let other =
        busy.map(|b| (b * procfs::cpus() as f64 - server_cpu.unwrap_or(0.0) / wall - bench_cpu / wall).max(0.0));
    let mut server = json!({
        "cpu_secs": server_cpu.map(|c| round(c, 3)),
        "cpu_cores_used": server_cpu.map(|c| round(c / wall, 3)),
        "rss_end_bytes": s1.server_mem.map(|m| m.rss),
        "hwm_bytes": s1.server_mem.map(|m| m.hwm),
    });
    if let Some(obj) = server.as_object_mut() {
        obj.insert(
            format!("cpu_us_per_{per_name}"),
            json!(server_cpu.filter(|_| per > 0).map(|c| round(c * 1e6 / per as f64, 3))),
        );
    }
    let bench = json!({"cpu_secs": round(bench_cpu, 3), "cpu_cores_used": round(bench_cpu / wall, 3)});
    let machine = json!({
        "cpus": procfs::cpus(),
        "busy_fraction": busy.map(|v| round(v, 3)),
        "other_cores_used": other.map(|v| round(v, 3)),
    });
    (server, bench, machine)
}

pub async fn run(args: ApiArgs) -> Result<Value> {
    if args.conns == 0 || args.channels == 0 {
        bail!("--conns and --channels must be at least 1");
    }
    let target = args.conn.pub_target(&args.api, &args.api_key).await?;
    let body = PublishBody::new(args.payload_bytes);
    // Probe once: a wrong key or namespace fails here, not 100k times.
    {
        let mut c = ApiClient::new(target.base.clone(), "");
        let (mut b, mut req) = (Vec::new(), Vec::new());
        body.render(unix_nanos(), &mut b);
        target.render(&format!("{}bench-0", args.namespace), &b, &None, &mut req);
        let r = c.send_raw(&req).await?;
        if !target.accepted(&r) {
            bail!("probe publish failed: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
    }
    say(format!(
        "[api] {} publishing over {} connections for {:.1}s to {} channels `{}bench-*`",
        args.conn.describe(),
        args.conns,
        args.duration.as_secs_f64(),
        args.channels,
        args.namespace
    ));
    let counters = Arc::new(Counters::default());
    let progress = {
        let c = counters.clone();
        let mut last = 0;
        Progress::start(move |t| {
            let ok = c.ok.load(Ordering::Relaxed);
            let line = format!(
                "[api] {:>4.0}s {} req/s (total {ok}, failed {})",
                t.as_secs_f64(),
                ok - last,
                c.failed.load(Ordering::Relaxed)
            );
            last = ok;
            Some(line)
        })
    };
    let s0 = Snapshot::take(args.server_pid);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..args.conns {
        let (target, body, c, duration) = (target.clone(), body.clone(), counters.clone(), args.duration);
        let channels: Vec<String> = (0..args.channels).map(|i| format!("{}bench-{i}", args.namespace)).collect();
        tasks.spawn(async move {
            let mut client = ApiClient::new(target.base.clone(), "");
            let mut lat = Latency::new();
            let mut errors = ErrorSample::default();
            let (mut b, mut req) = (Vec::with_capacity(128), Vec::with_capacity(512));
            let mut i = k;
            while t0.elapsed() < duration {
                body.render(unix_nanos(), &mut b);
                target.render(&channels[i % channels.len()], &b, &None, &mut req);
                i += 1;
                let sent = Instant::now();
                match client.send_raw(&req).await {
                    Ok(r) if target.accepted(&r) => {
                        c.ok.fetch_add(1, Ordering::Relaxed);
                        lat.record_ns(sent.elapsed().as_nanos() as u64);
                    }
                    Ok(r) => {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        errors.add(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)));
                    }
                    Err(e) => {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                        errors.add(format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (lat, errors, client.connects)
        });
    }
    let mut lat = Latency::new();
    let mut errors = ErrorSample::default();
    let mut connects = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok((l, e, c)) = r {
            lat.merge(&l);
            errors.merge(e);
            connects += c;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let s1 = Snapshot::take(args.server_pid);
    drop(progress);
    let ok = counters.ok.load(Ordering::Relaxed);
    let (server, bench, machine) = usage_json(&s0, &s1, wall, ok, "request");
    let result = json!({
        "scenario": "api",
        "target": args.conn.describe(),
        "label": args.label,
        "tool": "herald-bench",
        "conns": args.conns,
        "channels": args.channels,
        "namespace": args.namespace,
        "payload_bytes": args.payload_bytes,
        "duration_secs": round(wall, 3),
        "requests_ok": ok,
        "requests_failed": counters.failed.load(Ordering::Relaxed),
        "requests_per_s": round(ok as f64 / wall.max(1e-9), 1),
        "latency": lat.summary(),
        "api_connections": connects,
        "server": server,
        "bench": bench,
        "machine": machine,
        "errors": errors.to_json(),
    });
    let g = |p: &str| crate::report::show(result.pointer(p));
    say(format!(
        "== api ({}): {} req/s ({} ok, {} failed), latency p50 {} ms p99 {} ms; server {} us/request; other cores {}",
        g("/label"),
        g("/requests_per_s"),
        g("/requests_ok"),
        g("/requests_failed"),
        g("/latency/p50_ms"),
        g("/latency/p99_ms"),
        g("/server/cpu_us_per_request"),
        g("/machine/other_cores_used")
    ));
    if !errors.is_empty() {
        say(format!("[api] errors:\n{errors}"));
    }
    Ok(result)
}
