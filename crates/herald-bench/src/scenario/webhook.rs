//! `webhook`: webhook deliveries per second and publish-to-receive latency to a fast local
//! receiver, through Herald's Svix-compatible management API.
//!
//! The tool starts an HTTP/1.1 receiver (hyper) on 127.0.0.1:0, creates an application and an
//! endpoint pointing at it, then creates messages (`POST /api/v1/app/<uid>/msg`) whose payload
//! is `{"t":<unix nanos>,"pad":".."}` at a fixed rate (t = intended send time, so coordinated
//! omission is corrected) or as fast as `--conns` connections can. The receiver records
//! `now - t` for every successful delivery. With `--fail-half` it answers every other request
//! with 500, so half the attempts fail and are retried on the (shortened) retry schedule.
//! At the end the attempts Herald recorded are counted through the management API and compared
//! with the requests the receiver saw: every attempt must be recorded.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::api::usage_json;
use super::fanout::{PublishBody, Schedule, pacer};
use crate::args::Rate;
use crate::http::{ApiBase, ApiClient, Response};
use crate::metrics::Latency;
use crate::procfs::Snapshot;
use crate::report::{ErrorSample, Progress, say};
use crate::util::{parse_duration, round, unix_nanos};

#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Herald base URL (the management API is under /api/v1).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// Management API bearer token (`[management] token`, or a JWT from `herald token --svix`).
    #[arg(long, env = "HERALD_BENCH_MGMT_TOKEN")]
    pub token: String,
    /// Messages per second (fixed schedule), or `max`.
    #[arg(long, default_value = "1000")]
    pub rate: Rate,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Concurrent message-creating connections (default: 64 for max, rate/200 otherwise).
    #[arg(long)]
    pub conns: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// The receiver answers every other request with 500.
    #[arg(long)]
    pub fail_half: bool,
    /// The endpoint's `maxConcurrency` (Herald extension): 1 is ordered delivery (the default),
    /// more lets that many deliveries run at once, unordered.
    #[arg(long, default_value_t = 1)]
    pub endpoint_concurrency: u32,
    /// After publishing, wait at most this long for outstanding deliveries.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub drain_max: Duration,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_idle: Duration,
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

impl WebhookArgs {
    pub fn new(api: &str, token: &str, rate: Rate, duration: Duration) -> Self {
        Self {
            api: api.into(),
            token: token.into(),
            rate,
            duration,
            conns: None,
            payload_bytes: 64,
            fail_half: false,
            endpoint_concurrency: 1,
            drain_max: Duration::from_secs(60),
            drain_idle: Duration::from_secs(5),
            server_pid: None,
            out: None,
        }
    }
}

#[derive(Default)]
struct Receiver {
    fail_half: bool,
    requests: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    last_ok_ns: AtomicU64,
    latency: Mutex<Latency>,
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    st: Arc<Receiver>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let now = unix_nanos();
    let n = st.requests.fetch_add(1, Ordering::Relaxed);
    let status = if st.fail_half && n.is_multiple_of(2) {
        st.failed.fetch_add(1, Ordering::Relaxed);
        500
    } else {
        if let Some(t) = crate::proto::find_t(&body)
            && let Ok(mut l) = st.latency.lock()
        {
            l.record_ns(now.saturating_sub(t));
        }
        st.ok.fetch_add(1, Ordering::Relaxed);
        st.last_ok_ns.fetch_max(now, Ordering::Relaxed);
        200
    };
    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    Ok(resp)
}

async fn start_receiver(st: Arc<Receiver>) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the receiver")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let st = st.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, st.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A management API request.
fn mgmt_request(base: &ApiBase, token: &str, method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let body = body.unwrap_or_default();
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        base.host,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

async fn mgmt(
    c: &mut ApiClient,
    base: &ApiBase,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let b = body.map(|b| b.to_string());
    let r: Response = c.send_raw(&mgmt_request(base, token, method, path, b.as_deref().map(str::as_bytes))).await?;
    if !(200..300).contains(&r.status) {
        bail!("{method} {path}: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body));
    }
    if r.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&r.body).with_context(|| format!("{method} {path}: bad JSON"))
}

/// Counts the attempts Herald recorded for the endpoint (all pages).
async fn count_attempts(c: &mut ApiClient, base: &ApiBase, token: &str, app: &str, ep: &str) -> Result<(u64, u64)> {
    let (mut total, mut succeeded) = (0u64, 0u64);
    let mut iterator: Option<String> = None;
    for _ in 0..100_000 {
        let mut path = format!("/api/v1/app/{app}/attempt/endpoint/{ep}?limit=250");
        if let Some(it) = &iterator {
            path.push_str(&format!("&iterator={it}"));
        }
        let page = mgmt(c, base, token, "GET", &path, None).await?;
        let data = page.get("data").and_then(Value::as_array).cloned().unwrap_or_default();
        total += data.len() as u64;
        succeeded += data.iter().filter(|a| a.get("status").and_then(Value::as_u64) == Some(0)).count() as u64;
        let done = page.get("done").and_then(Value::as_bool).unwrap_or(true);
        iterator = page.get("iterator").and_then(Value::as_str).map(String::from);
        if done || iterator.is_none() || data.is_empty() {
            break;
        }
    }
    Ok((total, succeeded))
}

pub async fn run(args: WebhookArgs) -> Result<Value> {
    let base = ApiBase::resolve(&args.api).await?;
    let st = Arc::new(Receiver { fail_half: args.fail_half, ..Default::default() });
    let recv_addr = start_receiver(st.clone()).await?;
    let mut c = ApiClient::new(base.clone(), "");
    let uid = format!("bench-{}", unix_nanos() % 1_000_000_000);
    mgmt(&mut c, &base, &args.token, "POST", "/api/v1/app", Some(json!({"name": "bench", "uid": uid}))).await?;
    let ep = mgmt(
        &mut c,
        &base,
        &args.token,
        "POST",
        &format!("/api/v1/app/{uid}/endpoint"),
        Some(json!({
            "url": format!("http://{recv_addr}/hook"),
            "description": "herald-bench receiver",
            "maxConcurrency": args.endpoint_concurrency,
        })),
    )
    .await?;
    let ep_id =
        ep.get("id").and_then(Value::as_str).ok_or_else(|| anyhow!("endpoint reply without id: {ep}"))?.to_string();
    let conns = args.conns.unwrap_or(match args.rate {
        Rate::Max => 64,
        Rate::PerSec(r) => ((r / 200.0).ceil() as usize).clamp(4, 64),
    });
    say(format!(
        "[webhook] receiver http://{recv_addr}/hook{}; creating messages at {} for {:.1}s over {conns} connections",
        if args.fail_half { " (fails every other request)" } else { "" },
        match args.rate {
            Rate::Max => "max rate".to_string(),
            Rate::PerSec(r) => format!("{r}/s"),
        },
        args.duration.as_secs_f64()
    ));
    let body = PublishBody::new(args.payload_bytes);
    let sent_ok = Arc::new(AtomicU64::new(0));
    let sent_failed = Arc::new(AtomicU64::new(0));
    let progress = {
        let (st, ok) = (st.clone(), sent_ok.clone());
        let mut last = (0, 0);
        Progress::start(move |t| {
            let (m, d) = (ok.load(Ordering::Relaxed), st.ok.load(Ordering::Relaxed));
            let line = format!(
                "[webhook] {:>4.0}s messages {}/s, deliveries {}/s (total {d}/{m}, receiver requests {}, failed answers {})",
                t.as_secs_f64(),
                m - last.0,
                d - last.1,
                st.requests.load(Ordering::Relaxed),
                st.failed.load(Ordering::Relaxed)
            );
            last = (m, d);
            Some(line)
        })
    };
    let s0 = Snapshot::take(args.server_pid);
    let sched = Schedule { duration: args.duration, t0: Instant::now(), start_unix: unix_nanos() };
    let due = match args.rate {
        Rate::PerSec(rate) => {
            let (tx, rx) = mpsc::unbounded_channel();
            std::thread::Builder::new().name("pacer".into()).spawn(move || pacer(rate, sched, tx))?;
            Some(Arc::new(tokio::sync::Mutex::new(rx)))
        }
        Rate::Max => None,
    };
    let path = format!("/api/v1/app/{uid}/msg");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (base, token, path, body, due, ok, failed) = (
            base.clone(),
            args.token.clone(),
            path.clone(),
            body.clone(),
            due.clone(),
            sent_ok.clone(),
            sent_failed.clone(),
        );
        let rate = args.rate;
        tasks.spawn(async move {
            let mut client = ApiClient::new(base.clone(), "");
            let mut rtt = Latency::new();
            let mut errors = ErrorSample::default();
            let mut b = Vec::with_capacity(128);
            loop {
                let t = match (rate, &due) {
                    (Rate::PerSec(r), Some(due)) => {
                        let next = due.lock().await.recv().await;
                        let Some(i) = next else { break };
                        sched.start_unix + (i as f64 * 1e9 / r) as u64
                    }
                    _ => {
                        if sched.t0.elapsed() >= sched.duration {
                            break;
                        }
                        unix_nanos()
                    }
                };
                body.render(t, &mut b);
                let mut msg = Vec::with_capacity(b.len() + 40);
                msg.extend_from_slice(b"{\"eventType\":\"bench\",\"payload\":");
                msg.extend_from_slice(&b);
                msg.push(b'}');
                let sent = Instant::now();
                match client.send_raw(&mgmt_request(&base, &token, "POST", &path, Some(&msg))).await {
                    Ok(r) if (200..300).contains(&r.status) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.add(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)));
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.add(format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                rtt.record_ns(sent.elapsed().as_nanos() as u64);
            }
            (rtt, errors)
        });
    }
    let mut rtt = Latency::new();
    let mut errors = ErrorSample::default();
    while let Some(r) = tasks.join_next().await {
        if let Ok((l, e)) = r {
            rtt.merge(&l);
            errors.merge(e);
        }
    }
    let pub_secs = sched.t0.elapsed().as_secs_f64();
    let messages = sent_ok.load(Ordering::Relaxed);
    // Drain.
    let drain_start = Instant::now();
    let (mut last, mut last_change) = (st.ok.load(Ordering::Relaxed), Instant::now());
    loop {
        let d = st.ok.load(Ordering::Relaxed);
        if d >= messages {
            break;
        }
        if d != last {
            (last, last_change) = (d, Instant::now());
        }
        if last_change.elapsed() >= args.drain_idle || drain_start.elapsed() >= args.drain_max {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s1 = Snapshot::take(args.server_pid);
    drop(progress);
    let wall = sched.t0.elapsed().as_secs_f64();
    let delivered = st.ok.load(Ordering::Relaxed);
    let requests = st.requests.load(Ordering::Relaxed);
    let last_ok = st.last_ok_ns.load(Ordering::Relaxed);
    let delivery_secs = if last_ok > sched.start_unix { (last_ok - sched.start_unix) as f64 / 1e9 } else { pub_secs };
    // Every attempt recorded? Herald stores an attempt after its response; give it a moment.
    let mut recorded = (0, 0);
    for _ in 0..25 {
        recorded = count_attempts(&mut c, &base, &args.token, &uid, &ep_id).await.unwrap_or((0, 0));
        if recorded.0 >= requests {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let latency = st.latency.lock().map(|l| l.summary()).unwrap_or_default();
    let (server, bench, machine) = usage_json(&s0, &s1, wall, delivered, "delivery");
    let result = json!({
        "scenario": "webhook",
        "target": "herald/json",
        "rate": match args.rate { Rate::Max => json!("max"), Rate::PerSec(r) => json!(r) },
        "fail_half": args.fail_half,
        "conns": conns,
        "duration_secs": round(pub_secs, 3),
        "messages": messages,
        "messages_failed": sent_failed.load(Ordering::Relaxed),
        "messages_per_s": round(messages as f64 / pub_secs.max(1e-9), 1),
        "message_create_rtt": rtt.summary(),
        "receiver_requests": requests,
        "receiver_failed_answers": st.failed.load(Ordering::Relaxed),
        "delivered": delivered,
        "undelivered": messages.saturating_sub(delivered),
        "delivery_secs": round(delivery_secs, 3),
        "deliveries_per_s": round(delivered as f64 / delivery_secs.max(1e-9), 1),
        "latency": latency,
        "latency_from": match args.rate { Rate::Max => "message creation time", Rate::PerSec(_) => "intended creation time (coordinated-omission corrected)" },
        "attempts_recorded": recorded.0,
        "attempts_recorded_succeeded": recorded.1,
        "every_attempt_recorded": recorded.0 == requests,
        "server": server,
        "bench": bench,
        "machine": machine,
        "errors": errors.to_json(),
    });
    let g = |p: &str| crate::report::show(result.pointer(p));
    say(format!(
        "== webhook{}: {} messages ({} /s), delivered {} ({} /s, {} undelivered), latency p50 {} ms p99 {} ms p99.9 {} ms; receiver saw {} requests, Herald recorded {} attempts; server {} us/delivery",
        if args.fail_half { " (receiver fails half)" } else { "" },
        g("/messages"),
        g("/messages_per_s"),
        g("/delivered"),
        g("/deliveries_per_s"),
        g("/undelivered"),
        g("/latency/p50_ms"),
        g("/latency/p99_ms"),
        g("/latency/p999_ms"),
        g("/receiver_requests"),
        g("/attempts_recorded"),
        g("/server/cpu_us_per_delivery"),
    ));
    if !errors.is_empty() {
        say(format!("[webhook] errors:\n{errors}"));
    }
    Ok(result)
}
