//! `kill -9` under publish load: after a restart, every acknowledged event is delivered (at
//! least once) to every matching endpoint, and every acknowledged durable publication is in
//! the channel's history.
//!
//! This drives the real binary (`herald serve`) as a child process so the kill is a real
//! SIGKILL with no chance to drain.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::{Node, free_port};

mod support;

const JWT_SECRET: &str = "crash-test-management-secret";
const API_KEY: &str = "crash-test-api-key";

/// The node under test: its config, on `port`, with its data in `data_dir`.
async fn start_herald(data_dir: &std::path::Path, port: u16) -> Node {
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:{port}"
        [api]
        key = "{API_KEY}"
        [client]
        history_max_limit = 1000000
        [store]
        data_dir = "{dir}"
        [management]
        jwt_secret = "{JWT_SECRET}"
        [webhooks]
        allow_networks = ["127.0.0.0/8"]
        lease = "3s"
        request_timeout = "1s"
        poll_interval = "200ms"
        retry_schedule = ["200ms", "200ms", "200ms", "200ms", "200ms"]
        [[channel.namespaces]]
        name = "log"
        durable = true
        history_size = 100000
        history_ttl = "1h"
        "#,
        dir = data_dir.join("data").display()
    );
    Node::start(data_dir, "herald", port, &config, "warn", Duration::from_secs(20)).await
}

#[derive(Clone, Default)]
struct Receiver {
    ids: Arc<Mutex<HashSet<String>>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap) -> StatusCode {
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        receiver.ids.lock().insert(id.to_owned());
    }
    StatusCode::OK
}

async fn management(http: &reqwest::Client, base: &str, path: &str, body: Value) -> reqwest::Result<reqwest::Response> {
    support::management(http, base, JWT_SECRET, "org_crash", path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    herald_webhooks::install_crypto_provider();
    let data_dir = std::env::temp_dir().join(format!("herald-crash-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let port = free_port();

    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut herald = start_herald(&data_dir, port).await;
    let http = reqwest::Client::new();
    let response =
        management(&http, &herald.base, "/app", json!({ "name": "Crash", "uid": "crash" })).await.expect("app");
    assert_eq!(response.status(), 201);
    let response =
        management(&http, &herald.base, "/app/crash/endpoint", json!({ "url": hook })).await.expect("endpoint");
    assert_eq!(response.status(), 201);

    // Publishers: webhook messages and durable channel publications, as fast as they go.
    let acked_messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let acked_offsets = Arc::new(Mutex::new(Vec::<u64>::new()));
    let mut tasks = Vec::new();
    for publisher in 0..4 {
        let http = http.clone();
        let base = herald.base.clone();
        let acked = acked_messages.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let body = json!({ "eventType": "crash.test", "payload": { "p": publisher, "n": n } });
                match management(&http, &base, "/app/crash/msg", body).await {
                    Ok(response) if response.status().as_u16() == 202 => {
                        let body: Value = match response.json().await {
                            Ok(body) => body,
                            Err(_) => return,
                        };
                        acked.lock().push(body["id"].as_str().expect("id").to_owned());
                    }
                    _ => return,
                }
            }
        }));
    }
    for _ in 0..2 {
        let http = http.clone();
        let base = herald.base.clone();
        let acked = acked_offsets.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let response = http
                    .post(format!("{base}/api/publish"))
                    .header("X-API-Key", API_KEY)
                    .json(&json!({ "channel": "log:events", "data": { "x": 1 } }))
                    .send()
                    .await;
                let Ok(response) = response else { return };
                let Ok(body) = response.json::<Value>().await else { return };
                match body["result"]["offset"].as_u64() {
                    Some(offset) => acked.lock().push(offset),
                    None => return,
                }
            }
        }));
    }

    // Let load build up, then kill -9 mid-flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    herald.kill9();
    for task in tasks {
        let _ = task.await;
    }
    let acked_messages = acked_messages.lock().clone();
    let acked_offsets = acked_offsets.lock().clone();
    assert!(acked_messages.len() > 20, "too little load before the kill: {}", acked_messages.len());
    assert!(!acked_offsets.is_empty(), "no durable publication was acknowledged");
    eprintln!(
        "acknowledged before kill -9: {} webhook messages, {} durable publications",
        acked_messages.len(),
        acked_offsets.len()
    );

    // Restart on the same data: every acknowledged message reaches the endpoint.
    let herald = start_herald(&data_dir, port).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let missing = {
            let seen = receiver.ids.lock();
            acked_messages.iter().filter(|id| !seen.contains(*id)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} acknowledged messages never arrived",
            acked_messages.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every acknowledged durable publication is in the history.
    let response = http
        .post(format!("{}/api/history", herald.base))
        .header("X-API-Key", API_KEY)
        .json(&json!({ "channel": "log:events", "limit": -1 }))
        .send()
        .await
        .expect("history");
    let body: Value = response.json().await.expect("json");
    let stored: HashSet<u64> = body["result"]["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .filter_map(|p| p["offset"].as_u64())
        .collect();
    let lost: Vec<_> = acked_offsets.iter().filter(|o| !stored.contains(o)).collect();
    assert!(lost.is_empty(), "acknowledged durable publications lost: {lost:?}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
