//! End-to-end tests of the uni SSE client against a tiny lookalike of Herald's
//! `/connection/uni_sse`: it checks the HS256 token in `cf_connect`, subscribes the connection to
//! the token's `channels`, answers with a chunked `text/event-stream` (a `\r\n` preamble, the
//! connect push, then publications with `id:` lines and `{}` pings, written in odd-sized pieces
//! so that events and chunks straddle reads), and publishes through an HTTP `/api/publish`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use herald_bench::cli::{Cli, Command};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

const KEY: &str = "test-key";
const SECRET: &str = "mock-hmac-secret";

struct Hub {
    tx: broadcast::Sender<(String, Arc<String>)>,
    offset: AtomicU64,
    connects: AtomicU64,
    refused: AtomicU64,
    /// Streams whose client went away (reset or closed).
    ended: AtomicU64,
    channels: std::sync::Mutex<HashSet<String>>,
}

struct Mock {
    sse_url: String,
    api_url: String,
    hub: Arc<Hub>,
}

async fn start_mock() -> Mock {
    let (tx, _) = broadcast::channel(1 << 16);
    let hub = Arc::new(Hub {
        tx,
        offset: AtomicU64::new(0),
        connects: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        ended: AtomicU64::new(0),
        channels: Default::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let h = hub.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(conn(s, h.clone()));
        }
    });
    Mock { sse_url: format!("http://{addr}/connection/uni_sse"), api_url: format!("http://{addr}"), hub }
}

fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => panic!("not base64url: {c}"),
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for &c in s.as_bytes() {
        acc = (acc << 6) | u32::from(val(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// The channels of a valid token; `None` for a bad signature.
fn verify(token: &str) -> Option<Vec<String>> {
    let (signed, _) = token.rsplit_once('.')?;
    let claims = signed.split('.').nth(1)?;
    let payload = String::from_utf8(b64url_decode(claims)).ok()?;
    if herald_bench::sse::sign_hs256(SECRET.as_bytes(), &payload) != token {
        return None;
    }
    let v: Value = serde_json::from_str(&payload).ok()?;
    Some(v["channels"].as_array()?.iter().filter_map(|c| c.as_str().map(String::from)).collect())
}

async fn read_head(s: &mut TcpStream, have: &mut Vec<u8>) -> Option<(String, usize)> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&have[..end]).to_string();
            have.drain(..end + 4);
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return Some((head, len));
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => have.extend_from_slice(&buf[..n]),
        }
    }
}

async fn conn(mut s: TcpStream, hub: Arc<Hub>) {
    let mut have = Vec::new();
    let Some((head, len)) = read_head(&mut s, &mut have).await else { return };
    if head.starts_with("GET /connection/uni_sse?") {
        return sse(s, hub, &head).await;
    }
    // The publish API, keep-alive.
    let (mut head, mut len) = (head, len);
    let mut buf = [0u8; 4096];
    loop {
        while have.len() < len {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => have.extend_from_slice(&buf[..n]),
            }
        }
        let body: Vec<u8> = have.drain(..len).collect();
        let authorized = head.lines().any(|l| l.eq_ignore_ascii_case(&format!("x-api-key: {KEY}")));
        let status = if authorized {
            let v: Value = serde_json::from_slice(&body).expect("JSON body");
            let offset = hub.offset.fetch_add(1, Ordering::Relaxed) + 1;
            let channel = v["channel"].as_str().unwrap_or_default().to_string();
            let push = json!({"channel": channel, "pub": {"data": v["data"], "offset": offset}});
            let _ = hub.tx.send((channel, Arc::new(push.to_string())));
            "200 OK"
        } else {
            "401 Unauthorized"
        };
        let reply = if authorized { "{\"result\":{}}" } else { "" };
        let resp = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{reply}", reply.len());
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        match read_head(&mut s, &mut have).await {
            Some((h, l)) => (head, len) = (h, l),
            None => return,
        }
    }
}

/// Writes `bytes` as one HTTP chunk, in pieces of 7 bytes, each flushed on its own.
async fn chunk(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    for piece in out.chunks(7) {
        s.write_all(piece).await?;
        s.flush().await?;
    }
    Ok(())
}

async fn sse(mut s: TcpStream, hub: Arc<Hub>, head: &str) {
    let target = head.split(' ').nth(1).unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let connect = query.strip_prefix("cf_connect=").map(percent_decode).unwrap_or_default();
    let request: Value = serde_json::from_str(&connect).expect("cf_connect is JSON");
    let Some(channels) = verify(request["token"].as_str().unwrap_or_default()) else {
        hub.refused.fetch_add(1, Ordering::Relaxed);
        let body = r#"{"error":{"code":3500,"message":"invalid token"}}"#;
        let _ = s
            .write_all(format!("HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes())
            .await;
        return;
    };
    hub.connects.fetch_add(1, Ordering::Relaxed);
    hub.channels.lock().expect("lock").extend(channels.iter().cloned());
    let rx = hub.tx.subscribe();
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n";
    if s.write_all(head.as_bytes()).await.is_err() || chunk(&mut s, b"\r\n").await.is_err() {
        return;
    }
    let subs: serde_json::Map<String, Value> = channels.iter().map(|c| (c.clone(), json!({}))).collect();
    let connect = format!("data: {}\n\n", json!({"connect": {"client": "c1", "subs": subs, "pong": false}}));
    if chunk(&mut s, connect.as_bytes()).await.is_err() {
        return;
    }
    stream(&mut s, &channels, rx).await;
    hub.ended.fetch_add(1, Ordering::Relaxed);
}

/// Publications and pings until the client goes away.
async fn stream(s: &mut TcpStream, channels: &[String], mut rx: broadcast::Receiver<(String, Arc<String>)>) {
    let mut ping = tokio::time::interval(Duration::from_millis(100));
    ping.tick().await;
    let mut eof = [0u8; 64];
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Ok((channel, push)) = msg else { return };
                if !channels.contains(&channel) {
                    continue;
                }
                // Batch whatever else is queued into the same chunk.
                let mut batch = format!("id: {{\"{channel}\":[1,\"e\"]}}\ndata: {push}\n\n");
                while let Ok((c, p)) = rx.try_recv() {
                    if channels.contains(&c) {
                        batch.push_str(&format!("data: {p}\n\n"));
                    }
                }
                if chunk(s, batch.as_bytes()).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if chunk(s, b"data: {}\n\n").await.is_err() {
                    return;
                }
            }
            r = s.read(&mut eof) => {
                // The client went away.
                if matches!(r, Ok(0) | Err(_)) {
                    return;
                }
            }
        }
    }
}

fn cli(args: &[&str]) -> Command {
    let mut v = vec!["herald-bench"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).expect("valid arguments").cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_uni_sse_delivers_everything() {
    let m = start_mock().await;
    let Command::Fanout(args) = cli(&[
        "fanout",
        "--transport",
        "uni-sse",
        "--hmac-secret",
        SECRET,
        "--url",
        &m.sse_url,
        "--api",
        &m.api_url,
        "--api-key",
        KEY,
        "--subs",
        "20",
        "--rate",
        "max",
        "--duration",
        "1s",
        "--publishers",
        "2",
        "--server-pid",
        &std::process::id().to_string(),
        "--sub-tasks",
        "3",
    ]) else {
        panic!("fanout")
    };
    let r = herald_bench::scenario::fanout::run(args).await.expect("run");
    assert_eq!(r["target"], "herald/uni-sse");
    assert_eq!(r["subs"], 20, "{r}");
    assert_eq!(m.hub.connects.load(Ordering::Relaxed), 20);
    let published = r["published"].as_u64().expect("published");
    assert!(published > 10, "{r}");
    assert_eq!(r["delivered"].as_u64(), Some(published * 20), "{r}");
    assert_eq!(r["lost"], 0);
    assert_eq!(r["latency"]["count"].as_u64(), Some(published * 20), "every delivery timed");
    assert_eq!(r["pushes_without_t"], 0);
    assert_eq!(r["pongs_sent"], 0, "uni SSE pings need no pong");
    assert_eq!(r["subs_closed"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_over_uni_sse_subscribes_each_connection_by_token() {
    let m = start_mock().await;
    let Command::Idle(args) = cli(&[
        "idle",
        "--transport",
        "uni-sse",
        "--hmac-secret",
        SECRET,
        "--url",
        &m.sse_url,
        "--conns",
        "30",
        "--hold",
        "350ms",
        "--close-wait",
        "0s",
        "--source-ips",
        "2",
    ]) else {
        panic!("idle")
    };
    let r = herald_bench::scenario::idle::run(args).await.expect("run");
    assert_eq!(r["connected"], 30, "{r}");
    assert_eq!(r["dropped_during_hold"], 0, "{r}");
    assert_eq!(r["closed_cleanly"], 0, "{r}");
    // The client resets its streams at the end (no TIME_WAIT on its side); the server sees it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(m.hub.ended.load(Ordering::Relaxed), 30);
    let channels = m.hub.channels.lock().expect("lock").clone();
    assert_eq!(channels, (0..30).map(|i| format!("idle-{i}")).collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uni_sse_with_a_wrong_secret_fails_with_the_servers_answer() {
    let m = start_mock().await;
    let Command::Idle(args) = cli(&[
        "idle",
        "--transport",
        "uni-sse",
        "--hmac-secret",
        "wrong",
        "--url",
        &m.sse_url,
        "--conns",
        "3",
        "--hold",
        "0s",
        "--close-wait",
        "0s",
    ]) else {
        panic!("idle")
    };
    let r = herald_bench::scenario::idle::run(args).await.expect("run");
    assert_eq!(r["connected"], 0, "{r}");
    assert_eq!(m.hub.refused.load(Ordering::Relaxed), 3);
    assert!(r["connect_errors"].to_string().contains("HTTP 401"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_over_uni_sse_in_child_processes() {
    let m = start_mock().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["idle", "--transport", "uni-sse", "--url", &m.sse_url, "--conns", "11", "--procs", "2"])
        .args(["--hold", "200ms", "--close-wait", "0s"])
        .env("HERALD_BENCH_HMAC_SECRET", SECRET)
        .output()
        .await
        .expect("run binary");
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(r["connected"], 11, "{r}");
    assert_eq!(r["target"], "herald/uni-sse");
    assert_eq!(m.hub.connects.load(Ordering::Relaxed), 11);
}
