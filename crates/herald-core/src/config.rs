//! Typed configuration: defaults, then a TOML file, then `HERALD_*` environment variables.
//!
//! Loading never stops at the first problem it can recover from: unknown keys, bad environment
//! values and failed semantic checks are all gathered into one [`ConfigError::Invalid`] so that
//! `herald config check` can report every one of them at once. Tests build a [`Config`] value in
//! code, or call [`Config::load`] with an explicit environment; nothing here reads the process
//! environment on its own.
//!
//! Environment variables map onto keys with `__` between sections:
//! `HERALD_SERVER__LISTEN=0.0.0.0:8000`, `HERALD_CLIENT__TOKEN__HMAC_SECRET=...`.
//! Variables without `__` (such as `HERALD_CONFIG`) are not config keys and are left alone.
//! Values are parsed as TOML scalars or arrays where they parse (`true`, `25`, `["a"]`) and are
//! strings otherwise.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::channel::{ChannelOptions, DELTA_FOSSIL, Namespace};

/// Prefix of environment variables that override the config.
pub const ENV_PREFIX: &str = "HERALD_";
/// HS256 secrets shorter than the hash output (32 bytes, RFC 7518 section 3.2) get a warning.
const MIN_STRONG_HMAC_SECRET: usize = 32;

/// Every setting Herald has. `Default` is the documented default of every key.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub api: ApiConfig,
    pub client: ClientConfig,
    pub channel: ChannelConfig,
    pub store: StoreConfig,
    pub webhooks: WebhooksConfig,
    pub management: ManagementConfig,
}

/// The HTTP listener and the process lifecycle.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address the single HTTP listener binds (WebSocket, server API, health, metrics).
    pub listen: SocketAddr,
    /// Time a client has to send a complete request head (slowloris guard).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Most TCP connections held at once; further accepts are closed immediately.
    pub max_connections: usize,
    /// Largest HTTP request body accepted (server API); larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for connections and tasks to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Deadline for each dependency check behind `/readyz`.
    #[serde(with = "humantime_serde")]
    pub readiness_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Pending connections the kernel queues before `accept` (the listen backlog).
    pub listen_backlog: u32,
}

impl ServerConfig {
    /// The URL a client on this machine reaches the listener at (`scheme://addr`), with an
    /// unspecified listen address (`0.0.0.0`, `::`) replaced by 127.0.0.1.
    pub fn local_url(&self, scheme: &str) -> String {
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("{scheme}://{addr}")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 18_000,
            max_body_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(10),
            readiness_timeout: Duration::from_secs(1),
            http2_max_concurrent_streams: 256,
            listen_backlog: 4096,
        }
    }
}

/// Log output.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `herald_server=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".to_owned() }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The Centrifugo-compatible server API under `/api`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ApiConfig {
    /// Key expected in `X-API-Key` or `Authorization: apikey <key>`.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub key: Option<SecretString>,
    /// Accept API requests without a key. Only for local development.
    pub insecure: bool,
}

/// Real-time clients: auth, liveness and per-connection bounds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct ClientConfig {
    pub token: TokenConfig,
    /// Accept connections without a token (user is empty).
    pub allow_anonymous: bool,
    /// Accept any connection and subscription without checks. Only for local development.
    pub insecure: bool,
    /// Interval between server pings; also sent to the client so it can detect a dead server.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long the server waits for the client's pong after a ping before disconnecting (3012).
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// How long a newly opened connection may stay without a connect command.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Grace period after a connection's token expires before it is closed (3005) if not refreshed.
    #[serde(with = "humantime_serde")]
    pub expired_close_delay: Duration,
    /// Bytes a connection's outgoing queue may hold before the client is dropped as slow (3008).
    pub queue_max_bytes: usize,
    /// Messages a connection's outgoing queue may hold before the client is dropped as slow (3008).
    pub queue_max_messages: usize,
    /// Largest incoming WebSocket frame/message; larger ones close the connection (3501/1009).
    pub max_frame_bytes: usize,
    /// Largest outgoing WebSocket frame built by batching queued messages.
    pub max_out_frame_bytes: usize,
    /// Bytes read from a WebSocket at once, into one buffer per worker thread shared by every
    /// connection (a connection keeps only an incomplete frame's bytes, and nothing when idle).
    pub read_buffer_bytes: usize,
    /// Most channels one connection may be subscribed to (106 limit exceeded beyond it).
    pub max_channels_per_connection: usize,
    /// Longest channel name accepted.
    pub channel_max_length: usize,
    /// Most publications one history call returns when the client asks for more or for all.
    pub history_max_limit: usize,
    /// Most nodes (conditions and `and`/`or`/`not`) in one subscription's tags filter; a larger
    /// filter is refused with 107. Every publication is tested against it, per subscriber.
    pub max_tags_filter_nodes: usize,
    /// Subscribe every authenticated user to their personal channel on connect.
    pub user_subscribe_to_personal: bool,
    /// Namespace of personal channels: the channel is `<namespace>:#<user>` (or `#<user>` when empty).
    pub personal_channel_namespace: String,
    /// Most commands handled concurrently per connection before the client is throttled (111).
    pub max_commands_per_frame: usize,
    /// Frames of commands posted to `/emulation` that may wait for one HTTP-streaming or SSE
    /// connection; a post finding the queue full waits up to the ping interval, then gets 429.
    pub emulation_max_queued_frames: usize,
    /// Origins browsers may connect from (every transport and `/emulation` check the `Origin`
    /// header). Entries are full origins (`https://app.example.com`) or `*` for any. Empty
    /// allows only requests without an `Origin` header or from the server's own origin.
    pub allowed_origins: Vec<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            token: TokenConfig::default(),
            allow_anonymous: false,
            insecure: false,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(10),
            expired_close_delay: Duration::from_secs(25),
            queue_max_bytes: 1 << 20,
            queue_max_messages: 4096,
            max_frame_bytes: 64 * 1024,
            max_out_frame_bytes: 64 * 1024,
            read_buffer_bytes: 16 * 1024,
            max_channels_per_connection: 128,
            channel_max_length: 255,
            history_max_limit: 1000,
            max_tags_filter_nodes: 64,
            user_subscribe_to_personal: false,
            personal_channel_namespace: String::new(),
            max_commands_per_frame: 100,
            emulation_max_queued_frames: 16,
            allowed_origins: Vec::new(),
        }
    }
}

/// Keys that verify connection and subscription JWTs. Any combination may be set; the token's
/// `alg` header picks the key (HS256 -> HMAC secret, RS256 -> RSA key, ES256 -> ECDSA key).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TokenConfig {
    #[serde(serialize_with = "serialize_secret_opt")]
    pub hmac_secret: Option<SecretString>,
    /// PEM-encoded RSA public key for RS256 tokens.
    pub rsa_public_key: Option<String>,
    /// PEM-encoded ECDSA P-256 public key for ES256 tokens.
    pub ecdsa_public_key: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
}

/// Channel options: the defaults for channels without a namespace, and the namespaces.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ChannelConfig {
    /// Options of channels whose name has no namespace prefix.
    pub defaults: ChannelOptions,
    /// Namespaces: `chat:room` takes the options of the namespace named `chat`.
    pub namespaces: Vec<Namespace>,
}

/// The embedded store.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Which database holds durable state: the embedded SQLite (one node) or PostgreSQL
    /// (several nodes sharing one event log).
    pub backend: StoreBackend,
    /// Directory holding the SQLite database (`herald.db`) and its WAL.
    pub data_dir: std::path::PathBuf,
    /// PostgreSQL connection URL (`postgres://user:password@host:5432/db`); required with
    /// `backend = "postgres"`. Secret: it may hold a password, and is never logged or shown.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub postgres_url: Option<SecretString>,
    /// PostgreSQL schema holding Herald's tables (created if missing).
    pub postgres_schema: String,
    /// PostgreSQL connections in the pool of each node.
    pub pool_size: usize,
    /// How long opening a PostgreSQL connection may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest a PostgreSQL statement may run (set on every connection).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Most writes group-committed in one transaction.
    pub max_batch: usize,
    /// Most writes waiting for the writer; callers beyond it wait (backpressure).
    pub queue_capacity: usize,
    /// Read connections kept open.
    pub read_connections: usize,
    /// How often retention (durable channels, idempotency keys) is enforced.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            data_dir: std::path::PathBuf::from("./herald-data"),
            postgres_url: None,
            postgres_schema: "herald".to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            max_batch: 1000,
            queue_capacity: 10_000,
            read_connections: 4,
            prune_interval: Duration::from_secs(60),
        }
    }
}

/// The store's database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded SQLite database in `store.data_dir`.
    #[default]
    Sqlite,
    /// PostgreSQL at `store.postgres_url`.
    Postgres,
}

/// Webhook delivery.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct WebhooksConfig {
    /// Run the dispatcher on this node.
    pub enabled: bool,
    /// Most HTTP deliveries in flight at once (the worker pool size).
    pub workers: usize,
    /// Deliveries claimed per store round trip.
    pub claim_batch: usize,
    /// How often the dispatcher looks for due deliveries when nothing woke it.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a claimed delivery stays claimed; after a crash it becomes due again then.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, response head and body prefix).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Delays between attempts; the number of entries is the number of retries.
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Random spread added to each delay, as a fraction of it (0.2 = up to +20%).
    pub retry_jitter: f64,
    /// Longest `Retry-After` honoured; longer values are capped to it.
    #[serde(with = "humantime_serde")]
    pub retry_after_max: Duration,
    /// Retry 4xx answers other than 408, 409, 425 and 429 (which always retry). Off: they are final.
    pub retry_client_errors: bool,
    /// Disable an endpoint that has failed continuously for this long.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// Bytes of each response body kept in the attempt record.
    pub response_body_max_bytes: usize,
    /// Largest message payload accepted.
    pub max_payload_bytes: usize,
    /// `webhook` sends `webhook-id`/`-timestamp`/`-signature`; `svix` sends `svix-*`.
    pub header_style: HeaderStyle,
    /// After a secret rotation, how long the previous secret keeps signing alongside the new one.
    #[serde(with = "humantime_serde")]
    pub secret_rotation_overlap: Duration,
    /// Networks (CIDR) that endpoint URLs may resolve to even though they are private,
    /// loopback, link-local, CGNAT or ULA. Everything non-public is refused otherwise.
    pub allow_networks: Vec<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        let m = 60;
        let h = 3600;
        Self {
            enabled: true,
            workers: 256,
            claim_batch: 256,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            retry_schedule: [5, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            retry_jitter: 0.2,
            retry_after_max: Duration::from_secs(h),
            retry_client_errors: false,
            disable_after: Duration::from_secs(5 * 24 * h),
            response_body_max_bytes: 1024,
            max_payload_bytes: 1 << 20,
            header_style: HeaderStyle::Webhook,
            secret_rotation_overlap: Duration::from_secs(24 * h),
            allow_networks: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeaderStyle {
    #[default]
    Webhook,
    Svix,
}

/// The Svix-compatible management API under `/api/v1`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct ManagementConfig {
    /// HS256 secret for bearer JWTs as the Svix server issues them (`sub` = organisation id).
    #[serde(serialize_with = "serialize_secret_opt")]
    pub jwt_secret: Option<SecretString>,
    /// A static bearer token accepted as is.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub token: Option<SecretString>,
    /// Messages that name channels are also published live to `<live_namespace>:<app id>:<channel>`
    /// when this namespace is configured. Empty turns live publishing of messages off.
    pub live_namespace: String,
}

impl Default for ManagementConfig {
    fn default() -> Self {
        Self { jwt_secret: None, token: None, live_namespace: "apps".to_owned() }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// Every problem found, one sentence each.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid(problems) => problems.clone(),
        }
    }
}

impl Config {
    /// Load defaults, then the TOML file (when given), then the `HERALD_*` variables in `env`.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?,
            None => String::new(),
        };
        Self::from_toml_and_env(&text, env)
    }

    /// Parse TOML text, apply environment overrides and validate.
    pub fn from_toml_and_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut root = match text.parse::<toml::Table>() {
            Ok(table) => table,
            Err(error) => return Err(ConfigError::Invalid(vec![format!("config file is not valid TOML: {error}")])),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            // Every key lives in a section, so a variable without `__` is not a config key
            // (`HERALD_CONFIG`, `HERALD_API_KEY` and the like belong to the CLI).
            if !rest.contains("__") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                problems.push(format!("environment variable {name} names an empty key"));
                continue;
            }
            if let Err(problem) = set_path(&mut root, &path, parse_env_value(&value)) {
                problems.push(format!("environment variable {name}: {problem}"));
            }
        }

        let mut unknown = Vec::new();
        let value = toml::Value::Table(root);
        let config: Config = match serde_ignored::deserialize(value, |path| unknown.push(path.to_string())) {
            Ok(config) => config,
            Err(error) => {
                problems.push(error.to_string());
                return Err(ConfigError::Invalid(problems));
            }
        };
        problems.extend(unknown.into_iter().map(|key| format!("unknown key `{key}`")));
        problems.extend(config.validate());
        if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
    }

    /// Settings that work but that an operator should know are risky. Centrifugo accepts any
    /// HMAC secret (the SDKs' own test setups use `secret`), so a short one is a warning, shown
    /// at start and by `config check`, not a refusal.
    pub fn warnings(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut warnings = Vec::new();
        let secrets = [
            ("client.token.hmac_secret", &self.client.token.hmac_secret),
            ("management.jwt_secret", &self.management.jwt_secret),
        ];
        for (key, secret) in secrets {
            if let Some(secret) = secret
                && secret.expose_secret().len() < MIN_STRONG_HMAC_SECRET
            {
                warnings.push(format!(
                    "{key} is shorter than {MIN_STRONG_HMAC_SECRET} bytes: tokens signed with it are easy to forge \
                     (use a random secret of at least {MIN_STRONG_HMAC_SECRET} bytes)"
                ));
            }
        }
        warnings
    }

    /// Semantic checks that serde cannot express. Returns every problem found.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let server = &self.server;
        if server.max_connections == 0 {
            problems.push("server.max_connections must be at least 1".to_owned());
        }
        if server.max_body_bytes < 1024 {
            problems.push("server.max_body_bytes must be at least 1024".to_owned());
        }
        if server.header_read_timeout.is_zero() {
            problems.push("server.header_read_timeout must be positive".to_owned());
        }
        if server.readiness_timeout.is_zero() {
            problems.push("server.readiness_timeout must be positive".to_owned());
        }

        let client = &self.client;
        if client.ping_interval < Duration::from_secs(1) {
            problems.push("client.ping_interval must be at least 1s".to_owned());
        }
        if client.pong_timeout.is_zero() || client.pong_timeout >= client.ping_interval {
            problems.push("client.pong_timeout must be positive and shorter than client.ping_interval".to_owned());
        }
        if client.connect_timeout.is_zero() {
            problems.push("client.connect_timeout must be positive".to_owned());
        }
        for (key, value, min) in [
            ("client.queue_max_bytes", client.queue_max_bytes, 1024),
            ("client.queue_max_messages", client.queue_max_messages, 1),
            ("client.max_frame_bytes", client.max_frame_bytes, 1024),
            ("client.max_out_frame_bytes", client.max_out_frame_bytes, 1024),
            ("client.read_buffer_bytes", client.read_buffer_bytes, 512),
            ("client.max_channels_per_connection", client.max_channels_per_connection, 1),
            ("client.channel_max_length", client.channel_max_length, 1),
            ("client.history_max_limit", client.history_max_limit, 1),
            ("client.max_tags_filter_nodes", client.max_tags_filter_nodes, 1),
            ("client.max_commands_per_frame", client.max_commands_per_frame, 1),
            ("client.emulation_max_queued_frames", client.emulation_max_queued_frames, 1),
        ] {
            if value < min {
                problems.push(format!("{key} must be at least {min}"));
            }
        }
        for origin in &client.allowed_origins {
            if !is_origin_entry(origin) {
                problems.push(format!(
                    "client.allowed_origins: `{origin}` is not an origin (scheme://host[:port], no path) or `*`"
                ));
            }
        }
        if let Some(key) = &client.token.rsa_public_key
            && jsonwebtoken::DecodingKey::from_rsa_pem(key.as_bytes()).is_err()
        {
            problems.push("client.token.rsa_public_key is not a PEM RSA public key".to_owned());
        }
        if let Some(key) = &client.token.ecdsa_public_key
            && jsonwebtoken::DecodingKey::from_ec_pem(key.as_bytes()).is_err()
        {
            problems.push("client.token.ecdsa_public_key is not a PEM EC public key".to_owned());
        }
        if let Some(key) = &self.api.key {
            use secrecy::ExposeSecret;
            if key.expose_secret().is_empty() {
                problems.push("api.key must not be empty (leave it out to disable the server API)".to_owned());
            }
        }

        let webhooks = &self.webhooks;
        if webhooks.workers == 0 || webhooks.claim_batch == 0 {
            problems.push("webhooks.workers and webhooks.claim_batch must be at least 1".to_owned());
        }
        if webhooks.request_timeout.is_zero() || webhooks.connect_timeout.is_zero() {
            problems.push("webhooks.request_timeout and webhooks.connect_timeout must be positive".to_owned());
        }
        if !(0.0..=1.0).contains(&webhooks.retry_jitter) {
            problems.push("webhooks.retry_jitter must be between 0 and 1".to_owned());
        }
        if webhooks.lease <= webhooks.request_timeout {
            problems.push("webhooks.lease must be longer than webhooks.request_timeout".to_owned());
        }
        for (idx, net) in webhooks.allow_networks.iter().enumerate() {
            if !is_cidr(net) {
                problems.push(format!("webhooks.allow_networks[{idx}] `{net}` is not a CIDR like 127.0.0.0/8"));
            }
        }
        if self.store.backend == StoreBackend::Postgres {
            match &self.store.postgres_url {
                None => problems.push("store.postgres_url is required with store.backend = \"postgres\"".to_owned()),
                Some(url) => {
                    let url = secrecy::ExposeSecret::expose_secret(url);
                    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                        problems.push("store.postgres_url must start with postgres:// or postgresql://".to_owned());
                    }
                }
            }
            if self.store.pool_size == 0 {
                problems.push("store.pool_size must be at least 1".to_owned());
            }
            if self.store.connect_timeout.is_zero() || self.store.statement_timeout.is_zero() {
                problems.push("store.connect_timeout and store.statement_timeout must be positive".to_owned());
            }
            let schema = &self.store.postgres_schema;
            if schema.is_empty()
                || schema.len() > 63
                || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                || schema.starts_with(|c: char| c.is_ascii_digit())
            {
                problems.push(
                    "store.postgres_schema must be 1 to 63 characters of a-z, 0-9 and _, not starting with a digit"
                        .to_owned(),
                );
            }
        }
        if self.store.max_batch == 0 || self.store.queue_capacity == 0 || self.store.read_connections == 0 {
            problems
                .push("store.max_batch, store.queue_capacity and store.read_connections must be at least 1".to_owned());
        }

        check_options("channel.defaults", &self.channel.defaults, &mut problems);
        let mut seen = std::collections::HashSet::new();
        for (idx, namespace) in self.channel.namespaces.iter().enumerate() {
            let name = &namespace.name;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
                problems.push(format!(
                    "channel.namespaces[{idx}].name `{name}` must be non-empty and use only letters, digits, `_`, `-` or `.`"
                ));
            }
            if !seen.insert(name.as_str()) {
                problems.push(format!("channel.namespaces[{idx}].name `{name}` is defined twice"));
            }
            check_options(&format!("channel.namespaces[{idx}] ({name})"), &namespace.options, &mut problems);
        }
        let personal = &client.personal_channel_namespace;
        if client.user_subscribe_to_personal
            && !personal.is_empty()
            && !self.channel.namespaces.iter().any(|ns| &ns.name == personal)
        {
            problems.push(format!("client.personal_channel_namespace `{personal}` is not a defined namespace"));
        }
        problems
    }

    /// Options for the namespace `name`, or the defaults when `name` is empty.
    pub fn namespace_options(&self, name: &str) -> Option<&ChannelOptions> {
        if name.is_empty() {
            return Some(&self.channel.defaults);
        }
        self.channel.namespaces.iter().find(|ns| ns.name == name).map(|ns| &ns.options)
    }
}

fn check_options(context: &str, options: &ChannelOptions, problems: &mut Vec<String>) {
    if options.history_size > 0 && options.history_ttl.is_zero() {
        problems.push(format!("{context}: history_ttl must be set when history_size is set"));
    }
    if options.history_size == 0 && !options.history_ttl.is_zero() {
        problems.push(format!("{context}: history_size must be set when history_ttl is set"));
    }
    if options.force_recovery && options.history_size == 0 {
        problems.push(format!("{context}: force_recovery needs history (history_size and history_ttl)"));
    }
    if options.allow_recovery && options.history_size == 0 {
        problems.push(format!("{context}: allow_recovery needs history (history_size and history_ttl)"));
    }
    if options.force_positioning && options.history_size == 0 {
        problems.push(format!("{context}: force_positioning needs history (history_size and history_ttl)"));
    }
    for delta in &options.allowed_delta_types {
        if delta != DELTA_FOSSIL {
            problems.push(format!("{context}: unknown delta type `{delta}` (only `fossil` is supported)"));
        }
    }
    if options.durable && options.history_size == 0 {
        problems.push(format!("{context}: durable needs history_size and history_ttl (the retention)"));
    }
    if options.history_size > 1_000_000 {
        problems.push(format!("{context}: history_size must be at most 1000000"));
    }
}

/// A list of humantime durations (`["5s", "5m"]`).
mod duration_list {
    use std::time::Duration;

    use humantime_serde::re::humantime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(value.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts.iter().map(|t| humantime::parse_duration(t).map_err(serde::de::Error::custom)).collect()
    }
}

/// `addr/len` with an IPv4 or IPv6 address and a prefix length that fits it.
pub fn is_cidr(text: &str) -> bool {
    let Some((addr, len)) = text.split_once('/') else { return false };
    let Ok(len) = len.parse::<u8>() else { return false };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    // Parse as the right-hand side of a TOML assignment; fall back to a plain string.
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut table) => table.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

/// `*`, or an origin as browsers send it: `scheme://host[:port]`, nothing after.
fn is_origin_entry(entry: &str) -> bool {
    if entry == "*" {
        return true;
    }
    let Some((scheme, host)) = entry.split_once("://") else { return false };
    let host = host.strip_suffix('/').unwrap_or(host);
    !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !host.is_empty()
        && !host.contains(['/', '?', '#', ' ', '@'])
}

fn set_path(root: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for part in parents {
        let entry = table.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(inner) => inner,
            _ => return Err(format!("`{part}` is not a section")),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn serialize_secret_opt<S: serde::Serializer>(value: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str("<redacted>"),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn postgres_backend_needs_a_url_and_keeps_it_secret() {
        let Err(ConfigError::Invalid(problems)) =
            Config::from_toml_and_env("[store]\nbackend = \"postgres\"", env(&[]))
        else {
            panic!("postgres without a URL accepted");
        };
        assert!(problems.iter().any(|p| p.contains("store.postgres_url is required")), "{problems:?}");
        let bad_schema =
            "[store]\nbackend = \"postgres\"\npostgres_url = \"postgres://h/db\"\npostgres_schema = \"Bad-Name\"";
        assert!(Config::from_toml_and_env(bad_schema, env(&[])).is_err());
        let config = Config::from_toml_and_env(
            "[store]\nbackend = \"postgres\"",
            env(&[("HERALD_STORE__POSTGRES_URL", "postgres://herald:hunter2@db:5432/herald")]),
        )
        .expect("valid");
        assert_eq!(config.store.backend, StoreBackend::Postgres);
        let shown = toml::to_string(&config).expect("serializes");
        assert!(!shown.contains("hunter2"), "the URL's password must not be shown: {shown}");
    }

    #[test]
    fn allowed_origins_must_be_origins() {
        let ok = Config::from_toml_and_env(
            "[client]\nallowed_origins = [\"https://app.example.com\", \"http://127.0.0.1:3000\", \"*\"]",
            env(&[]),
        );
        assert!(ok.is_ok(), "{ok:?}");
        for bad in ["app.example.com", "https://app.example.com/path", "https://", "://x"] {
            let text = format!("[client]\nallowed_origins = [\"{bad}\"]");
            let Err(ConfigError::Invalid(problems)) = Config::from_toml_and_env(&text, env(&[])) else {
                panic!("{bad} accepted");
            };
            assert!(problems.iter().any(|p| p.contains("client.allowed_origins")), "{problems:?}");
        }
        let from_env = Config::from_toml_and_env("", env(&[("HERALD_CLIENT__ALLOWED_ORIGINS", "[\"http://a:1\"]")]));
        assert_eq!(from_env.map(|c| c.client.allowed_origins).ok(), Some(vec!["http://a:1".to_owned()]));
    }

    #[test]
    fn local_url_reaches_an_unspecified_listen_address_on_loopback() {
        let mut server = ServerConfig { listen: "0.0.0.0:8000".parse().expect("addr"), ..ServerConfig::default() };
        assert_eq!(server.local_url("http"), "http://127.0.0.1:8000");
        server.listen = "10.1.2.3:9000".parse().expect("addr");
        assert_eq!(server.local_url("ws"), "ws://10.1.2.3:9000");
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::from_toml_and_env("", env(&[])).expect("defaults load");
        assert_eq!(config.server.listen.port(), 8000);
        assert!(config.validate().is_empty());
    }

    #[test]
    fn file_then_env_layering() {
        let text = r#"
            [server]
            listen = "127.0.0.1:9000"
            [client]
            ping_interval = "10s"
            [[channel.namespaces]]
            name = "chat"
            history_size = 10
            history_ttl = "5m"
        "#;
        let config = Config::from_toml_and_env(
            text,
            env(&[
                ("HERALD_SERVER__LISTEN", "127.0.0.1:9100"),
                ("HERALD_CLIENT__ALLOW_ANONYMOUS", "true"),
                ("OTHER", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.server.listen.port(), 9100);
        assert_eq!(config.client.ping_interval, Duration::from_secs(10));
        assert!(config.client.allow_anonymous);
        let chat = config.namespace_options("chat").expect("namespace");
        assert_eq!(chat.history_size, 10);
        assert!(config.namespace_options("nope").is_none());
    }

    #[test]
    fn reports_every_problem_at_once() {
        let text = r#"
            [server]
            max_connections = 0
            lisen = "x"
            [client]
            pong_timeout = "60s"
            [[channel.namespaces]]
            name = "bad name"
            force_recovery = true
            [[channel.namespaces]]
            name = "bad name"
        "#;
        let error = Config::from_toml_and_env(text, env(&[("HERALD_CLIENT__NOPE", "1")])).expect_err("invalid");
        let problems = error.problems();
        let joined = problems.join("\n");
        assert!(joined.contains("unknown key `server.lisen`"), "{joined}");
        assert!(joined.contains("unknown key `client.nope`"), "{joined}");
        assert!(joined.contains("max_connections"), "{joined}");
        assert!(joined.contains("pong_timeout"), "{joined}");
        assert!(joined.contains("force_recovery"), "{joined}");
        assert!(joined.contains("defined twice"), "{joined}");
        assert!(problems.len() >= 6, "{joined}");
    }

    #[test]
    fn short_hmac_secrets_load_with_a_warning() {
        // The SDKs' own test setups configure Centrifugo with `secret`.
        let config = Config::from_toml_and_env("[client.token]\nhmac_secret = \"secret\"", env(&[])).expect("valid");
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("client.token.hmac_secret is shorter than 32 bytes"), "{warnings:?}");
        assert!(!warnings[0].contains("\"secret\""), "the warning does not show the secret: {warnings:?}");
        let strong = "[client.token]\nhmac_secret = \"0123456789abcdef0123456789abcdef\"";
        assert!(Config::from_toml_and_env(strong, env(&[])).expect("valid").warnings().is_empty());
    }

    #[test]
    fn type_errors_are_reported() {
        let error = Config::from_toml_and_env("[server]\nlisten = 5", env(&[])).expect_err("invalid");
        assert!(error.to_string().contains("listen"), "{error}");
    }

    #[test]
    fn secrets_do_not_serialize() {
        let config = Config::from_toml_and_env(
            "[api]\nkey = \"supersecretkey\"\n[client.token]\nhmac_secret = \"anothersecret\"",
            env(&[]),
        )
        .expect("valid");
        let shown = toml::to_string(&config).expect("serializes");
        assert!(!shown.contains("supersecretkey"));
        assert!(!shown.contains("anothersecret"));
        assert!(!format!("{config:?}").contains("supersecretkey"));
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The commented example config is a valid config, and documents every key.
    #[test]
    fn example_config_loads_and_covers_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../herald.example.toml");
        let text = std::fs::read_to_string(path).expect("example config exists");
        Config::from_toml_and_env(&text, Vec::new()).expect("example config is valid");
        let defaults = toml::Value::try_from(Config::default()).expect("serializes");
        let mut missing = Vec::new();
        collect_keys("", &defaults, &mut missing, &text);
        assert!(missing.is_empty(), "keys not documented in herald.example.toml: {missing:?}");
    }

    fn collect_keys(prefix: &str, value: &toml::Value, missing: &mut Vec<String>, text: &str) {
        let toml::Value::Table(table) = value else { return };
        for (key, value) in table {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match value {
                toml::Value::Table(_) => collect_keys(&path, value, missing, text),
                _ => {
                    let documented = text.contains(&format!("[[{path}]]"))
                        || text.lines().any(|line| {
                            let line = line.trim_start_matches(['#', ' ']);
                            line.starts_with(&format!("{key} =")) || line.starts_with(&format!("{key}="))
                        });
                    if !documented {
                        missing.push(path);
                    }
                }
            }
        }
    }
}
