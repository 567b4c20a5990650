//! End-to-end test of the peer side of the tool against a tiny in-process `raw-ws` peer: every
//! WebSocket text frame is a published body; publishing is an HTTP POST of the raw body.

use std::time::Duration;

use futures_util::SinkExt;
use herald_bench::args::{ConnArgs, FanoutArgs, Rate};
use herald_bench::proto::Kind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

async fn start_peer() -> (String, String) {
    let (tx, _) = broadcast::channel::<String>(1 << 14);
    let ws = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ws_url = format!("ws://{}/ws?channel={{channel}}", ws.local_addr().expect("addr"));
    let pub_url = format!("http://{}/publish?channel={{channel}}", http.local_addr().expect("addr"));
    let t = tx.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = ws.accept().await {
            let mut rx = t.subscribe();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else { return };
                while let Ok(body) = rx.recv().await {
                    if ws.send(Message::text(body)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = http.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            break;
                        }
                        let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                        buf.drain(..end + 4 + len);
                        let _ = tx.send(body);
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (ws_url, pub_url)
}

fn args(ws_url: &str, pub_url: &str) -> FanoutArgs {
    let mut conn = ConnArgs::new(ws_url);
    conn.kind = Kind::RawWs;
    conn.publish_url = pub_url.to_string();
    conn.source_ips = herald_bench::args::SourceIps::Count(0);
    let mut a = FanoutArgs::new(conn, "http://unused", "", 20, Rate::PerSec(50.0), Duration::from_secs(1));
    a.drain_idle = Duration::from_millis(300);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_against_raw_ws_peer() {
    let (ws_url, pub_url) = start_peer().await;
    let r = herald_bench::scenario::fanout::run(args(&ws_url, &pub_url)).await.expect("fanout runs");
    assert_eq!(r["target"], "raw-ws");
    assert_eq!(r["subs"], 20);
    let expected = r["expected_deliveries"].as_u64().expect("expected");
    assert!(expected >= 20 * 40, "{r}");
    assert_eq!(r["delivered"].as_u64(), Some(expected), "{r}");
    assert_eq!(r["latency"]["count"].as_u64(), Some(expected));
}

#[tokio::test]
async fn own_channels_is_unsupported_for_raw_ws() {
    let (ws_url, pub_url) = start_peer().await;
    let mut a = args(&ws_url, &pub_url);
    a.own_channels = true;
    let e = herald_bench::scenario::fanout::run(a).await.expect_err("unsupported");
    assert!(format!("{e:#}").starts_with("unsupported: "), "{e:#}");
}
