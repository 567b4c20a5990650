//! Three Herald processes on one PostgreSQL (issue 10): 10,000 webhook messages sent through all
//! three nodes to 20 endpoints created on different nodes. The first 6,000 are each delivered
//! exactly once, ordered endpoints in order; during the last 4,000 one node is killed with
//! `kill -9`, and no acknowledged message is lost (duplicates only for deliveries in flight at
//! the kill).
//!
//! Durable channels first: one gapless sequence across nodes, history complete from any node.
//!
//! Uses the machine's PostgreSQL (`HERALD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), in a schema of its own.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::{Node, free_port};

mod support;

const JWT_SECRET: &str = "cluster-test-management-secret-0123456789";
const API_KEY: &str = "cluster-test-api-key";
const ENDPOINTS: usize = 20;
/// Endpoints with an even index deliver in order (`maxConcurrency` 1); the others 8 at once.
const fn ordered(endpoint: usize) -> bool {
    endpoint.is_multiple_of(2)
}

fn postgres_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn start_node(dir: &std::path::Path, name: &str, schema: &str) -> Node {
    let port = free_port();
    let config = format!(
        r#"
                [server]
                listen = "127.0.0.1:{port}"
                [api]
                key = "{API_KEY}"
                [client]
                allow_anonymous = true
                [[channel.namespaces]]
                name = "log"
                durable = true
                history_size = 100
                history_ttl = "1h"
                allow_subscribe_for_client = true
                allow_subscribe_for_anonymous = true
                [store]
                backend = "postgres"
                postgres_url = "{url}"
                postgres_schema = "{schema}"
                pool_size = 8
                [management]
                jwt_secret = "{JWT_SECRET}"
                [webhooks]
                allow_networks = ["127.0.0.0/8"]
                lease = "3s"
                request_timeout = "2s"
                poll_interval = "200ms"
                retry_schedule = ["200ms", "200ms", "200ms", "200ms", "200ms"]
                retry_jitter = 0.0
                "#,
        url = postgres_url(),
    );
    Node::start(dir, name, port, &config, "warn", Duration::from_secs(30)).await
}

/// What the endpoints received.
#[derive(Default)]
struct Received {
    /// Per endpoint: every (webhook id, seq) in arrival order.
    deliveries: Vec<Vec<(String, u64)>>,
    /// Ordered endpoints found with two deliveries in flight at once.
    overlaps: Vec<usize>,
}

#[derive(Clone)]
struct Receiver {
    received: Arc<Mutex<Received>>,
    in_flight: Arc<Vec<AtomicUsize>>,
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(endpoint): Path<usize>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let Some(gauge) = receiver.in_flight.get(endpoint) else { return StatusCode::NOT_FOUND };
    let concurrent = gauge.fetch_add(1, Ordering::SeqCst) + 1;
    // Hold the request a moment, so that a second concurrent send would be seen.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let seq = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["seq"].as_u64()).unwrap_or(u64::MAX);
    {
        let mut received = receiver.received.lock();
        if ordered(endpoint) && concurrent > 1 {
            received.overlaps.push(endpoint);
        }
        received.deliveries[endpoint].push((id, seq));
    }
    gauge.fetch_sub(1, Ordering::SeqCst);
    StatusCode::OK
}

async fn publish(http: &reqwest::Client, base: &str, channel: &str, n: u64) -> u64 {
    let body: Value = http
        .post(format!("{base}/api/publish"))
        .header("X-API-Key", API_KEY)
        .json(&json!({ "channel": channel, "data": { "n": n } }))
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("json");
    body["result"]["offset"].as_u64().unwrap_or_else(|| panic!("publish failed: {body}"))
}

/// Durable channels on a shared store: one gapless sequence whichever node publishes, history
/// complete from any node, and a node's own subscribers never wait behind publications made
/// on other nodes (they get them first, in order).
async fn durable_channels_across_nodes(http: &reqwest::Client, nodes: &[Node]) {
    use futures_util::{SinkExt, StreamExt};
    // Three distinct processes (a port handed out twice would make two "nodes" one).
    let mut ids = std::collections::HashSet::new();
    for node in nodes {
        let body: Value = http
            .post(format!("{}/api/info", node.base))
            .header("X-API-Key", API_KEY)
            .json(&json!({}))
            .send()
            .await
            .expect("info")
            .json()
            .await
            .expect("json");
        ids.insert(body["result"]["nodes"][0]["uid"].as_str().expect("node uid").to_owned());
    }
    assert_eq!(ids.len(), 3, "three distinct nodes");
    let offsets: Vec<u64> = futures_util::future::join_all(
        nodes.iter().enumerate().map(|(i, n)| publish(http, &n.base, "log:seq", i as u64)),
    )
    .await;
    let mut sorted = offsets.clone();
    sorted.sort();
    assert_eq!(sorted, vec![1, 2, 3], "one gapless sequence across nodes: {offsets:?}");
    for node in nodes {
        let body: Value = http
            .post(format!("{}/api/history", node.base))
            .header("X-API-Key", API_KEY)
            .json(&json!({ "channel": "log:seq", "limit": -1 }))
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        let got: Vec<u64> = body["result"]["publications"]
            .as_array()
            .expect("publications")
            .iter()
            .filter_map(|p| p["offset"].as_u64())
            .collect();
        assert_eq!(got, vec![1, 2, 3], "history from {}: {body}", node.base);
    }

    // Node b loads the channel's stream for its subscriber; a then b publish. b must release
    // its own publication at once, after a's (read from the store), never hold it behind the gap.
    let url = format!("{}/connection/websocket", nodes[1].base.replace("http", "ws"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket");
    let send = |v: Value| tokio_tungstenite::tungstenite::Message::text(v.to_string());
    ws.send(send(json!({ "id": 1, "connect": {} }))).await.expect("connect");
    ws.send(send(json!({ "id": 2, "subscribe": { "channel": "log:live" } }))).await.expect("subscribe");
    let mut subscribed = false;
    while !subscribed {
        let message =
            tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("reply").expect("open").expect("ok");
        subscribed = message.to_text().is_ok_and(|t| t.contains("\"id\":2"));
    }
    publish(http, &nodes[0].base, "log:live", 1).await;
    publish(http, &nodes[1].base, "log:live", 2).await;
    let mut received = Vec::new();
    while received.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the subscriber on node b gets its own node's publication")
            .expect("open")
            .expect("ok");
        for line in message.to_text().unwrap_or_default().lines() {
            let value: Value = serde_json::from_str(line).expect("json");
            if let Some(n) = value.pointer("/push/pub/data/n").and_then(Value::as_u64) {
                received.push(n);
            }
        }
    }
    assert_eq!(received, vec![1, 2], "node a's publication first, then node b's own");
}

async fn management(http: &reqwest::Client, base: &str, path: &str, body: Value) -> reqwest::Result<reqwest::Response> {
    support::management(http, base, JWT_SECRET, "org_cluster", path, body).await
}

/// Send `per_endpoint` messages to every endpoint through `nodes` in turn: one sender per
/// endpoint, each waiting for a message's acknowledgement before sending the next, so an
/// ordered endpoint must receive them in `seq` order. Returns the acknowledged ones as
/// (message id, endpoint, seq); a send that fails (a node killed) is not retried.
async fn send(http: &reqwest::Client, nodes: &[String], rounds: std::ops::Range<u64>) -> Vec<(String, usize, u64)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for endpoint in 0..ENDPOINTS {
        let (http, nodes, acked, rounds) = (http.clone(), nodes.to_vec(), acked.clone(), rounds.clone());
        tasks.push(tokio::spawn(async move {
            for round in rounds {
                let seq = round * ENDPOINTS as u64 + endpoint as u64;
                let base = &nodes[(round as usize + endpoint) % nodes.len()];
                let body = json!({ "eventType": format!("cluster.e{endpoint}"), "payload": { "seq": seq } });
                let Ok(response) = management(&http, base, "/app/cluster/msg", body).await else { continue };
                if response.status().as_u16() != 202 {
                    continue;
                }
                let Ok(body) = response.json::<Value>().await else { continue };
                let id = body["id"].as_str().expect("message id").to_owned();
                acked.lock().push((id, endpoint, seq));
            }
        }));
    }
    for task in tasks {
        task.await.expect("sender");
    }
    Arc::try_unwrap(acked).map(Mutex::into_inner).unwrap_or_default()
}

/// Wait until every acknowledged message reached its endpoint.
async fn wait_delivered(receiver: &Receiver, acked: &[(String, usize, u64)], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let missing = {
            let received = receiver.received.lock();
            acked
                .iter()
                .filter(|(id, endpoint, _)| !received.deliveries[*endpoint].iter().any(|(got, _)| got == id))
                .count()
        };
        if missing == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} acknowledged messages never arrived",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn drop_schema(schema: &str) {
    let _ = Command::new("psql")
        .args([postgres_url().as_str(), "-q", "-c", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_postgres_deliver_each_message_once_and_survive_kill_9() {
    herald_webhooks::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("herald-cluster-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("dir");
    let schema = format!("herald_cluster_{}_{}", std::process::id(), free_port());

    let receiver = Receiver {
        received: Arc::new(Mutex::new(Received { deliveries: vec![Vec::new(); ENDPOINTS], overlaps: Vec::new() })),
        in_flight: Arc::new((0..ENDPOINTS).map(|_| AtomicUsize::new(0)).collect()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hooks = format!("http://{}", listener.local_addr().expect("addr"));
    let router = axum::Router::new().route("/ep/{n}", axum::routing::post(receive)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(start_node(&dir, name, &schema).await);
    }
    let http = reqwest::Client::new();
    durable_channels_across_nodes(&http, &nodes).await;
    let response =
        management(&http, &nodes[0].base, "/app", json!({ "name": "Cluster", "uid": "cluster" })).await.expect("app");
    assert_eq!(response.status(), 201);
    for endpoint in 0..ENDPOINTS {
        let node = &nodes[endpoint % 3].base;
        let event_type = format!("cluster.e{endpoint}");
        let response = management(&http, node, "/event-type", json!({ "name": event_type, "description": "test" }))
            .await
            .expect("event type");
        assert_eq!(response.status(), 201, "event type on node {}", endpoint % 3);
        let mut body = json!({ "url": format!("{hooks}/ep/{endpoint}"), "filterTypes": [event_type] });
        if !ordered(endpoint) {
            body["maxConcurrency"] = json!(8);
        }
        let response = management(&http, node, "/app/cluster/endpoint", body).await.expect("endpoint");
        assert_eq!(response.status(), 201, "endpoint {endpoint} on node {}", endpoint % 3);
    }

    // Phase 1: all three nodes up. Every message once, ordered endpoints in order.
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let first = send(&http, &bases, 0..300).await;
    assert_eq!(first.len(), 6_000, "every send was acknowledged");
    wait_delivered(&receiver, &first, Duration::from_secs(120)).await;
    {
        let received = receiver.received.lock();
        assert!(received.overlaps.is_empty(), "ordered endpoints had concurrent sends: {:?}", received.overlaps);
        for (endpoint, deliveries) in received.deliveries.iter().enumerate() {
            let mut seen = HashMap::new();
            for (id, _) in deliveries {
                *seen.entry(id.clone()).or_insert(0) += 1;
            }
            let doubled = seen.values().filter(|n| **n > 1).count();
            assert_eq!(doubled, 0, "endpoint {endpoint}: {doubled} messages delivered more than once");
            if ordered(endpoint) {
                let seqs: Vec<u64> = deliveries.iter().map(|(_, seq)| *seq).collect();
                assert!(seqs.is_sorted(), "endpoint {endpoint} out of order: {seqs:?}");
            }
        }
    }

    // Phase 2: node c is killed while messages flow through all three; the others finish its work.
    let senders = {
        let http = http.clone();
        let bases = bases.clone();
        tokio::spawn(async move { send(&http, &bases, 300..500).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nodes[2].kill9();
    let second = senders.await.expect("senders");
    assert!(second.len() > 2_000, "most sends around the kill were acknowledged by the live nodes: {}", second.len());
    wait_delivered(&receiver, &second, Duration::from_secs(120)).await;
    let received = receiver.received.lock();
    let duplicates: usize = received
        .deliveries
        .iter()
        .map(|deliveries| {
            let mut seen = std::collections::HashSet::new();
            deliveries.iter().filter(|(id, _)| !seen.insert(id.clone())).count()
        })
        .sum();
    // Only what node c had claimed (a claim batch per dispatcher round) may go out twice.
    assert!(duplicates <= 512, "{duplicates} duplicates after the kill");
    eprintln!(
        "cluster: {} + {} messages acknowledged, {duplicates} duplicate deliveries after kill -9",
        first.len(),
        second.len()
    );
    drop(received);
    drop(nodes);
    drop_schema(&schema);
    let _ = std::fs::remove_dir_all(&dir);
}
