//! Options shared by the scenarios and the suite: connection settings, rates, source addresses.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

use crate::proto::{Codec, Kind, Proto};
use crate::publish::PubTarget;
use crate::util::parse_duration;

/// How many loopback source addresses to spread client sockets over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceIps {
    /// One address per 10,000 connections when the target is loopback, else none.
    Auto,
    /// Exactly this many (127.0.0.2, 127.0.0.3, ...); 0 = let the kernel choose.
    Count(u32),
}

impl FromStr for SourceIps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        s.parse().map(Self::Count).map_err(|_| format!("expected `auto` or a count, got `{s}`"))
    }
}

impl std::fmt::Display for SourceIps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

/// How Herald's subscribers connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// `/connection/websocket` (subscriptions by `subscribe` commands).
    Websocket,
    /// `GET /connection/uni_sse?cf_connect=..` (server-side subscriptions from the token's
    /// `channels` claim; give `--hmac-secret` to mint one token per connection).
    UniSse,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::UniSse => "uni-sse",
        }
    }
}

/// Publish rate: a fixed number per second (coordinated-omission aware), or as fast as possible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    Max,
    PerSec(f64),
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Self::PerSec(r)),
            _ => Err(format!("expected `max` or a positive number, got `{s}`")),
        }
    }
}

/// Options shared by everything that opens client connections.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// WebSocket endpoint (`http://host:port/connection/uni_sse` with `--transport uni-sse`).
    #[arg(long, default_value = "ws://127.0.0.1:8000/connection/websocket")]
    pub url: String,
    /// Herald only: how subscribers connect (`uni-sse`: one GET per connection, server-side
    /// subscriptions from the connection token's `channels` claim).
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
    /// uni-sse: the server's `client.token.hmac_secret`; each connection then gets its own HS256
    /// token whose `channels` claim names its channels (without it, `--token` is sent as is).
    #[arg(long, env = "HERALD_BENCH_HMAC_SECRET")]
    pub hmac_secret: Option<String>,
    /// Connection JWT (sent as connect.token); anonymous connect when absent.
    #[arg(long, env = "HERALD_BENCH_TOKEN")]
    pub token: Option<String>,
    /// Loopback source addresses to spread sockets over (127.0.0.2, .3, ...): `auto`, or a count (0 = none).
    #[arg(long, default_value = "auto")]
    pub source_ips: SourceIps,
    /// Connection handshakes (TCP + WebSocket + connect + subscribe) in flight at once (shared
    /// out over `--procs`).
    /// Keep it below the server's listen backlog, or SYNs overflow the queue and those clients
    /// wait for a 1 s retransmission (the result's `listen_overflows_*` shows it).
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Deadline for one connection's whole handshake.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Server family: herald, or a peer kind (raw-ws, socketio, pusher, nchan). For peers `--url`
    /// is the WebSocket URL template (`{channel}` is replaced by the connection's channel).
    #[arg(long, value_enum, default_value = "herald")]
    pub kind: Kind,
    /// Herald's codec: json, or protobuf (the `centrifuge-protobuf` subprotocol).
    #[arg(long = "protocol", value_enum, default_value = "json")]
    pub codec: Codec,
    /// Peers: publish URL (`http://host:port/path`, `{channel}` replaced); Herald uses `--api`.
    #[arg(long, default_value = "")]
    pub publish_url: String,
    /// Pusher peers: application id, key and secret.
    #[arg(long, default_value = "")]
    pub app_id: String,
    #[arg(long, default_value = "")]
    pub app_key: String,
    #[arg(long, default_value = "")]
    pub app_secret: String,
}

impl ConnArgs {
    /// ConnArgs for a target URL with every other option at its default.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            transport: Transport::Websocket,
            hmac_secret: None,
            token: None,
            source_ips: SourceIps::Auto,
            connect_concurrency: 100,
            connect_timeout: Duration::from_secs(15),
            kind: Kind::Herald,
            codec: Codec::Json,
            publish_url: String::new(),
            app_id: String::new(),
            app_key: String::new(),
            app_secret: String::new(),
        }
    }

    pub fn proto(&self) -> Proto {
        Proto { kind: self.kind, codec: self.codec, app_key: self.app_key.clone() }
    }

    /// The publishing side: Herald's API at `api` (with `api_key`), or the peer's publish URL.
    pub async fn pub_target(&self, api: &str, api_key: &str) -> anyhow::Result<PubTarget> {
        match self.kind {
            Kind::Herald => Ok(PubTarget::herald(crate::http::ApiBase::resolve(api).await?, api_key)),
            k => PubTarget::peer(k, &self.publish_url, &self.app_id, &self.app_key, &self.app_secret).await,
        }
    }

    /// Short description for the report: `herald/json`, `pusher`, ...
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Herald if self.transport == Transport::UniSse => "herald/uni-sse".to_string(),
            Kind::Herald => format!("herald/{}", if self.codec == Codec::Json { "json" } else { "protobuf" }),
            k => k.name().to_string(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Number of connections to open (in total, over all --procs).
    #[arg(long, short = 'n')]
    pub conns: usize,
    /// Server process to sample RSS from (/proc/PID/status).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Channel name prefix; each connection subscribes to `<prefix>-<i>` (or `<prefix>` with --shared-channel).
    #[arg(long, default_value = "idle")]
    pub channel_prefix: String,
    /// Subscribe every connection to the single channel `<prefix>`.
    #[arg(long)]
    pub shared_channel: bool,
    /// Connect only, no subscription.
    #[arg(long)]
    pub no_subscribe: bool,
    /// How long to hold the connections idle before the "after" RSS sample.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// After closing, wait this long and sample RSS again (shows what the server gives back).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub close_wait: Duration,
    /// Split the connections over K child processes (one process holds at most ~20,000 fds).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Write the JSON result here as well as to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Internal: run as a child of `--procs` (JSON lines on stdout, holds until stdin closes).
    #[arg(long, hide = true)]
    pub child: bool,
    /// Internal: global index of this process's first connection (channel names, source IPs).
    #[arg(long, hide = true, default_value_t = 0)]
    pub index_offset: usize,
    /// Internal: total connections over all processes (for `--source-ips auto`).
    #[arg(long, hide = true)]
    pub total_conns: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Server HTTP API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// Server API key (X-API-Key header).
    #[arg(long, env = "HERALD_BENCH_API_KEY", default_value = "")]
    pub api_key: String,
    /// Number of subscribers on the channel.
    #[arg(long)]
    pub subs: usize,
    /// Channel every subscriber joins and every publish targets.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Publishes per second (fixed schedule, latency from the intended send time), or `max`.
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Size of the publication's `data` JSON in bytes (at least ~34: `{"t":<19 digits>,"pad":""}`).
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Concurrent keep-alive publisher connections (default: 4 for `max`, rate/100 rounded up, 2 to 64, otherwise).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Server process to sample CPU (/proc/PID/stat) and RSS from.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Tasks the subscribers are multiplexed over (each owns one latency histogram).
    #[arg(long, default_value_t = 64)]
    pub sub_tasks: usize,
    /// After publishing stops, wait at most this long for outstanding deliveries.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_max: Duration,
    /// ... and stop waiting once no delivery arrived for this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain_idle: Duration,
    /// Many-channels mode: subscriber i joins its own channel `<channel>-<i>` as well as the
    /// shared `<channel>`; publications go to a pseudo-random own channel, every
    /// `--shared-every`-th one to the shared channel.
    #[arg(long)]
    pub own_channels: bool,
    /// In many-channels mode, every K-th publication goes to the shared channel (0: never).
    #[arg(long, default_value_t = 100)]
    pub shared_every: u64,
    /// Churn: this many extra tasks connect, subscribe and disconnect in a loop while publishing.
    #[arg(long, default_value_t = 0)]
    pub churn: usize,
    /// Write the JSON result here as well as to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl FanoutArgs {
    /// Arguments with defaults for everything but the target and the load.
    pub fn new(conn: ConnArgs, api: &str, api_key: &str, subs: usize, rate: Rate, duration: Duration) -> Self {
        Self {
            conn,
            api: api.to_string(),
            api_key: api_key.to_string(),
            subs,
            channel: "bench".into(),
            rate,
            duration,
            payload_bytes: 64,
            publishers: None,
            server_pid: None,
            sub_tasks: 64,
            drain_max: Duration::from_secs(30),
            drain_idle: Duration::from_secs(2),
            own_channels: false,
            shared_every: 100,
            churn: 0,
            out: None,
        }
    }
}
