//! `TestApp` (a server on port 0 plus typed helpers) and `Client` (a raw Centrifugo client).

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald_core::Config;
use herald_core::auth::{MintClaims, mint_hs256};
use herald_server::Server;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-key";
pub const API_KEY: &str = "test-api-key";
pub const WAIT: Duration = Duration::from_secs(5);

/// The config every test starts from: namespaces covering the permission rules.
pub fn base_config() -> Config {
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        shutdown_grace = "5s"
        [api]
        key = "{API_KEY}"
        [client]
        allow_anonymous = true
        [client.token]
        hmac_secret = "{SECRET}"
        [channel.defaults]
        allow_subscribe_for_client = true
        allow_publish_for_subscriber = true
        [[channel.namespaces]]
        name = "chat"
        history_size = 10
        history_ttl = "60s"
        allow_recovery = true
        allow_positioning = true
        presence = true
        join_leave = true
        allow_subscribe_for_client = true
        allow_publish_for_subscriber = true
        allow_presence_for_subscriber = true
        allow_history_for_subscriber = true
        allowed_delta_types = ["fossil"]
        [[channel.namespaces]]
        name = "secret"
        [[channel.namespaces]]
        name = "dm"
        allow_user_limited_channels = true
        [[channel.namespaces]]
        name = "durable"
        durable = true
        history_size = 100
        history_ttl = "1h"
        allow_recovery = true
        allow_subscribe_for_client = true
        allow_publish_for_subscriber = true
        allow_history_for_subscriber = true
        allowed_delta_types = ["fossil"]
        [[channel.namespaces]]
        name = "apps"
        history_size = 10
        history_ttl = "60s"
        allow_subscribe_for_client = true
        [management]
        jwt_secret = "test-management-secret"
        [webhooks]
        allow_networks = ["127.0.0.0/8"]
        retry_schedule = ["100ms", "100ms", "200ms"]
        retry_jitter = 0.0
        [[channel.namespaces]]
        name = "feed"
        history_size = 10
        history_ttl = "60s"
        allow_recovery = true
        allow_subscribe_for_client = true
        allow_publish_for_subscriber = true
        allowed_delta_types = ["fossil"]
        delta_publish = true
        allow_tags_filter = true
        [[channel.namespaces]]
        # Server-side subscriptions here are recoverable without asking (uni-directional
        # clients, Last-Event-ID).
        name = "live"
        history_size = 100
        history_ttl = "60s"
        force_recovery = true
        [[channel.namespaces]]
        name = "pub"
        allow_subscribe_for_client = true
        allow_subscribe_for_anonymous = true
    "#
    );
    Config::from_toml_and_env(&text, Vec::new()).expect("test config is valid")
}

pub struct TestApp {
    pub server: Option<Server>,
    pub addr: std::net::SocketAddr,
    pub http: reqwest::Client,
    /// The store's directory; kept so a test can restart a server on the same data.
    pub data_dir: std::path::PathBuf,
}

/// A fresh directory for a test's store.
pub fn temp_data_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-it-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Open the SQLite store in `dir`.
pub fn open_store(dir: &std::path::Path) -> std::sync::Arc<dyn herald_store::Store> {
    let config = herald_store_sqlite::SqliteConfig::new(dir.join("herald.db"));
    std::sync::Arc::new(herald_store_sqlite::SqliteStore::open(&config).expect("store opens"))
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(base_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_in(config, temp_data_dir()).await
    }

    /// Start with the store in `data_dir` (which may hold a previous server's data).
    pub async fn start_in(mut config: Config, data_dir: std::path::PathBuf) -> Self {
        herald_webhooks::install_crypto_provider();
        config.store.data_dir = data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let store = open_store(&data_dir);
        let server = Server::start_with_store(config, listener, Some(store)).expect("server starts");
        let addr = server.local_addr();
        Self { server: Some(server), addr, http: reqwest::Client::new(), data_dir }
    }

    /// Stop the server (draining) and return its data directory.
    pub async fn stop(mut self) -> std::path::PathBuf {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        self.data_dir.clone()
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    pub fn token(&self, user: &str) -> String {
        mint_hs256(SECRET, &MintClaims { sub: user.into(), ..Default::default() }).expect("mint")
    }

    pub fn token_with(&self, claims: MintClaims) -> String {
        mint_hs256(SECRET, &claims).expect("mint")
    }

    /// Call a server API method; returns (HTTP status, JSON body).
    pub async fn api(&self, method: &str, params: Value) -> (u16, Value) {
        self.api_raw(method, params.to_string().into_bytes(), Some(API_KEY)).await
    }

    pub async fn api_raw(&self, method: &str, body: Vec<u8>, key: Option<&str>) -> (u16, Value) {
        let mut request = self.http.post(format!("http://{}/api/{method}", self.addr)).body(body);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let response = request.send().await.expect("api reachable");
        let status = response.status().as_u16();
        let body = response.json().await.expect("api answers JSON");
        (status, body)
    }

    /// Publish through the API and return the result object.
    pub async fn publish(&self, channel: &str, data: Value) -> Value {
        let (status, body) = self.api("publish", json!({ "channel": channel, "data": data })).await;
        assert_eq!(status, 200, "{body}");
        body.get("result").cloned().unwrap_or_else(|| panic!("publish failed: {body}"))
    }

    /// A connected client for `user` (anonymous when empty).
    pub async fn client(&self, user: &str) -> Client {
        let mut client = Client::open(&self.ws_url()).await;
        let token = if user.is_empty() { String::new() } else { self.token(user) };
        let reply = client.call(json!({ "connect": { "token": token } })).await;
        assert!(reply.get("connect").is_some(), "connect failed: {reply}");
        client.client_id = reply["connect"]["client"].as_str().unwrap_or_default().to_owned();
        client
    }
}

/// A minimal Centrifugo JSON protocol client that exposes every frame.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub next_id: u64,
    pub client_id: String,
    /// Pushes and replies read while waiting for something else.
    pub backlog: std::collections::VecDeque<Value>,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16, String),
    NoFrame,
}

impl Client {
    pub async fn open(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Client { ws, next_id: 0, client_id: String::new(), backlog: Default::default() }
    }

    pub async fn open_with_protocol(url: &str, protocol: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
        let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
        assert_eq!(
            response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()),
            Some(protocol),
            "server selects the subprotocol"
        );
        ws
    }

    /// Send a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("send");
    }

    /// Send one command with a fresh id and wait for the reply with that id.
    pub async fn call(&mut self, mut command: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        command["id"] = json!(id);
        self.send_text(&command.to_string()).await;
        self.wait_for(|v| v.get("id").and_then(Value::as_u64) == Some(id)).await
    }

    /// Read messages until one matches; others go to the backlog.
    pub async fn wait_for(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(pos) = self.backlog.iter().position(&matches) {
            return self.backlog.remove(pos).expect("position is valid");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a message")
                .expect("connection open")
                .expect("read ok");
            for value in decode(message) {
                if value.as_object().is_some_and(|o| o.is_empty()) {
                    // Server ping: answer like the SDKs.
                    self.send_text("{}").await;
                    continue;
                }
                self.backlog.push_back(value);
            }
            if let Some(pos) = self.backlog.iter().position(&matches) {
                return self.backlog.remove(pos).expect("position is valid");
            }
        }
    }

    /// Wait for a publication push on `channel`.
    pub async fn next_pub(&mut self, channel: &str) -> Value {
        let channel = channel.to_owned();
        let push = self
            .wait_for(move |v| v.pointer("/push/pub").is_some() && v.pointer("/push/channel") == Some(&json!(channel)))
            .await;
        push["push"]["pub"].clone()
    }

    /// Read until the server closes; return the close code and reason.
    pub async fn closed(&mut self) -> Closed {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await.expect("timed out waiting for close") {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Closed::Code(frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Closed::NoFrame,
                Some(Ok(message)) => {
                    for value in decode(message) {
                        self.backlog.push_back(value);
                    }
                }
            }
        }
    }

    /// Assert nothing arrives for `window`.
    pub async fn expect_silence(&mut self, window: Duration) {
        if let Ok(Some(Ok(message))) = tokio::time::timeout(window, self.ws.next()).await {
            panic!("expected silence, got {message:?}");
        }
    }
}

fn decode(message: Message) -> Vec<Value> {
    let text = match message {
        Message::Text(text) => text.to_string(),
        Message::Binary(bytes) => String::from_utf8(bytes.to_vec()).expect("json frames are utf-8"),
        _ => return Vec::new(),
    };
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("valid JSON line")).collect()
}
