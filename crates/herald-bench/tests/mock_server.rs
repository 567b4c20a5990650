//! End-to-end tests of the load tool against a tiny in-process Centrifugo-protocol-v2 lookalike:
//! WebSocket connect/subscribe replies, `{}` pings every 100 ms, pushes batched several to a
//! frame, and an HTTP `/api/publish` endpoint guarded by an API key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use herald_bench::cli::{Cli, Command};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "test-key";

struct Hub {
    tx: broadcast::Sender<Arc<String>>,
    offset: AtomicU64,
    pongs: AtomicU64,
    subscribes: AtomicU64,
}

struct Mock {
    ws_url: String,
    api_url: String,
    hub: Arc<Hub>,
}

async fn start_mock() -> Mock {
    let (tx, _) = broadcast::channel(1 << 16);
    let hub = Arc::new(Hub { tx, offset: AtomicU64::new(0), pongs: AtomicU64::new(0), subscribes: AtomicU64::new(0) });
    let ws = TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
    let api = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    let ws_url = format!("ws://{}/connection/websocket", ws.local_addr().expect("addr"));
    let api_url = format!("http://{}", api.local_addr().expect("addr"));
    let h = hub.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = ws.accept().await {
            tokio::spawn(ws_conn(s, h.clone()));
        }
    });
    let h = hub.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = api.accept().await {
            tokio::spawn(api_conn(s, h.clone()));
        }
    });
    Mock { ws_url, api_url, hub }
}

async fn ws_conn(stream: TcpStream, hub: Arc<Hub>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let mut rx: Option<broadcast::Receiver<Arc<String>>> = None;
    let mut ping = tokio::time::interval(Duration::from_millis(100));
    ping.tick().await;
    loop {
        let push = async {
            match rx.as_mut() {
                Some(r) => r.recv().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { return };
                let Message::Text(text) = msg else { continue };
                for line in text.as_str().split('\n') {
                    if line == "{}" {
                        hub.pongs.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let v: Value = serde_json::from_str(line).expect("client sends JSON");
                    let id = v["id"].clone();
                    let reply = if v.get("connect").is_some() {
                        json!({"id": id, "connect": {"client": "c1", "ping": 25, "pong": true}})
                    } else if v.get("subscribe").is_some() {
                        if v["subscribe"]["channel"] == "forbidden" {
                            json!({"id": id, "error": {"code": 103, "message": "permission denied"}})
                        } else {
                            hub.subscribes.fetch_add(1, Ordering::Relaxed);
                            rx = Some(hub.tx.subscribe());
                            json!({"id": id, "subscribe": {}})
                        }
                    } else {
                        continue;
                    };
                    if ws.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
            }
            Some(first) = push => {
                // Batch whatever else is queued into the same frame, newline-separated.
                let mut frame = first.to_string();
                if let Some(r) = rx.as_mut() {
                    for _ in 0..8 {
                        match r.try_recv() {
                            Ok(p) => { frame.push('\n'); frame.push_str(&p); }
                            Err(_) => break,
                        }
                    }
                }
                if ws.send(Message::text(frame)).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if ws.send(Message::text("{}")).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn api_conn(mut s: TcpStream, hub: Arc<Hub>) {
    let mut have = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") else {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&have[..end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while have.len() < end + 4 + len {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have.extend_from_slice(&buf[..n]),
            }
        }
        let body: Vec<u8> = have[end + 4..end + 4 + len].to_vec();
        have.drain(..end + 4 + len);
        let authorized = head.lines().any(|l| l.eq_ignore_ascii_case(&format!("x-api-key: {KEY}")));
        let (status, reply) = if !authorized {
            ("401 Unauthorized", String::new())
        } else {
            let v: Value = serde_json::from_slice(&body).expect("JSON body");
            let offset = hub.offset.fetch_add(1, Ordering::Relaxed) + 1;
            let push = json!({"push": {"channel": v["channel"], "pub": {"data": v["data"], "offset": offset}}});
            let _ = hub.tx.send(Arc::new(push.to_string()));
            ("200 OK", "{\"result\":{}}".to_string())
        };
        let resp = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{reply}", reply.len());
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn cli(args: &[&str]) -> Command {
    let mut v = vec!["herald-bench"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).expect("valid arguments").cmd
}

fn pid() -> String {
    std::process::id().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_max_rate_delivers_everything() {
    let m = start_mock().await;
    let Command::Fanout(args) = cli(&[
        "fanout",
        "--url",
        &m.ws_url,
        "--api",
        &m.api_url,
        "--api-key",
        KEY,
        "--subs",
        "20",
        "--rate",
        "max",
        "--duration",
        "1.2s",
        "--publishers",
        "2",
        "--server-pid",
        &pid(),
        "--sub-tasks",
        "3",
    ]) else {
        panic!("fanout")
    };
    let r = herald_bench::scenario::fanout::run(args).await.expect("run");
    assert_eq!(r["subs"], 20);
    let published = r["published"].as_u64().expect("published");
    assert!(published > 10, "{r}");
    assert_eq!(r["publish_failed"], 0);
    assert_eq!(r["expected_deliveries"].as_u64(), Some(published * 20));
    assert_eq!(r["delivered"].as_u64(), Some(published * 20), "{r}");
    assert_eq!(r["lost"], 0);
    assert_eq!(r["latency"]["count"].as_u64(), Some(published * 20));
    assert_eq!(r["pushes_without_t"], 0);
    assert!(r["pongs_sent"].as_u64().expect("pongs") > 0, "pings answered");
    assert!(m.hub.pongs.load(Ordering::Relaxed) > 0, "server saw pongs");
    assert_eq!(r["api_connections"], 2, "keep-alive: one connection per publisher");
    assert!(r["server"]["cpu_us_per_delivery"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_fixed_rate_publishes_on_schedule() {
    let m = start_mock().await;
    let Command::Fanout(args) = cli(&[
        "fanout",
        "--url",
        &m.ws_url,
        "--api",
        &m.api_url,
        "--api-key",
        KEY,
        "--subs",
        "10",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--source-ips",
        "2",
    ]) else {
        panic!("fanout")
    };
    let r = herald_bench::scenario::fanout::run(args).await.expect("run");
    assert_eq!(r["published"], 200, "{r}");
    assert_eq!(r["delivered"], 2000, "{r}");
    assert!(r["publishes_per_s"].as_f64().expect("rate") > 150.0, "{r}");
    // Latency on an idle loopback mock stays far below the period.
    assert!(r["latency"]["p50_ms"].as_f64().expect("p50") < 100.0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_rejects_bad_api_key() {
    let m = start_mock().await;
    let Command::Fanout(args) = cli(&[
        "fanout",
        "--url",
        &m.ws_url,
        "--api",
        &m.api_url,
        "--api-key",
        "wrong",
        "--subs",
        "1",
        "--duration",
        "1s",
    ]) else {
        panic!("fanout")
    };
    let e = herald_bench::scenario::fanout::run(args).await.expect_err("must fail");
    assert!(format!("{e:#}").contains("401"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_single_process() {
    let m = start_mock().await;
    let Command::Idle(args) = cli(&[
        "idle",
        "--url",
        &m.ws_url,
        "--conns",
        "60",
        "--server-pid",
        &pid(),
        "--hold",
        "300ms",
        "--close-wait",
        "0s",
        "--source-ips",
        "3",
    ]) else {
        panic!("idle")
    };
    let r = herald_bench::scenario::idle::run(args).await.expect("run");
    assert_eq!(r["connected"], 60, "{r}");
    assert_eq!(r["failed"], 0);
    assert_eq!(m.hub.subscribes.load(Ordering::Relaxed), 60);
    assert!(r["server"]["bytes_per_conn"].as_f64().is_some(), "{r}");
    assert!(r["connect_rate_per_s"].as_f64().expect("rate") > 0.0);
    assert_eq!(r["dropped_during_hold"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_subscribe_errors() {
    let m = start_mock().await;
    let Command::Idle(args) = cli(&[
        "idle",
        "--url",
        &m.ws_url,
        "--conns",
        "5",
        "--shared-channel",
        "--channel-prefix",
        "forbidden",
        "--hold",
        "0s",
        "--close-wait",
        "0s",
    ]) else {
        panic!("idle")
    };
    let r = herald_bench::scenario::idle::run(args).await.expect("run");
    assert_eq!(r["connected"], 0, "{r}");
    assert_eq!(r["failed"], 5);
    assert!(r["connect_errors"].to_string().contains("permission denied"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_over_child_processes() {
    let m = start_mock().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["idle", "--url", &m.ws_url, "--conns", "41", "--procs", "3", "--server-pid", &pid()])
        .args(["--hold", "300ms", "--close-wait", "0s"])
        .output()
        .await
        .expect("run binary");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(r["connected"], 41, "{r}");
    assert_eq!(r["procs"], 3);
    let children = r["children"].as_array().expect("children");
    assert_eq!(children.len(), 3);
    assert_eq!(children.iter().map(|c| c["connected"].as_f64().expect("n")).sum::<f64>(), 41.0);
    assert_eq!(m.hub.subscribes.load(Ordering::Relaxed), 41);
}
