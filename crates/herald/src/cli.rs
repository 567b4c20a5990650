//! Command-line interface: `serve`, `config check`, `token`, `publish`, `sub`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use herald_core::Config;
use herald_core::auth::{MintClaims, mint_hs256};
use herald_core::config::LogFormat;
use secrecy::ExposeSecret;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(name = "herald", version, about = "Event delivery server: publish once, deliver live and durably.")]
struct Cli {
    /// Config file (TOML). `HERALD_*` environment variables override it.
    #[arg(long, short, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Mint a connection JWT (or, with --channel, a subscription JWT) signed with the configured HMAC secret.
    Token {
        /// User id (`sub` claim). Empty for an anonymous token.
        #[arg(long, default_value = "")]
        user: String,
        /// Server-side subscriptions (`channels` claim), comma separated.
        #[arg(long, value_delimiter = ',')]
        channels: Vec<String>,
        /// Mint a subscription token for this channel instead of a connection token.
        #[arg(long)]
        channel: Option<String>,
        /// Lifetime, e.g. `1h` or `30s`. Without it the token never expires.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// JSON attached to the client in presence and join/leave (`info` claim).
        #[arg(long)]
        info: Option<String>,
        /// Mint a management API (Svix) bearer token from `management.jwt_secret` instead.
        #[arg(long)]
        svix: bool,
        /// Organisation id of the Svix token.
        #[arg(long, default_value = "org_herald")]
        org: String,
    },
    /// Publish DATA (JSON; other text is sent as a JSON string) to CHANNEL through the server API.
    Publish {
        channel: String,
        data: String,
        /// Server base URL; defaults to the configured listen address.
        #[arg(long)]
        url: Option<String>,
        /// API key; defaults to the configured `api.key`.
        #[arg(long, env = "HERALD_API_KEY")]
        api_key: Option<String>,
    },
    /// Create or upgrade the embedded store's schema, then exit.
    Migrate,
    /// Manage an application's webhook endpoints (through the management API).
    Endpoint {
        /// Application id or uid.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        target: ManageTarget,
        #[command(subcommand)]
        command: crate::manage::EndpointCommand,
    },
    /// Show the delivery attempts of a message (`msg_...`) or an endpoint (`ep_...` or uid).
    Attempts {
        /// Application id or uid.
        #[arg(long)]
        app: String,
        target: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        manage: ManageTarget,
    },
    /// Deliver messages again: one message, an endpoint's failures since a time, or the dead letters.
    Replay {
        /// Application id or uid.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        target: ManageTarget,
        #[command(subcommand)]
        command: crate::manage::ReplayCommand,
    },
    /// Subscribe to CHANNEL over WebSocket and print one JSON line per publication.
    Sub {
        channel: String,
        /// WebSocket URL; defaults to the configured listen address.
        #[arg(long)]
        url: Option<String>,
        /// Connection token; without it one is minted for --user from the configured secret.
        #[arg(long)]
        token: Option<String>,
        #[arg(long, default_value = "herald-cli")]
        user: String,
        /// Stop after this many publications.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Where the management API is and how to authenticate to it.
#[derive(clap::Args)]
struct ManageTarget {
    /// Server base URL; defaults to the configured listen address.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token; defaults to one minted from `management.jwt_secret`.
    #[arg(long, env = "HERALD_MANAGEMENT_TOKEN")]
    token: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and report every problem at once.
    Check,
    /// Print the effective configuration (secrets redacted).
    Show,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("herald: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Config { command: ConfigCommand::Check } => {
            for warning in config.warnings() {
                eprintln!("herald: warning: {warning}");
            }
            println!("configuration is valid");
            Ok(())
        }
        Command::Config { command: ConfigCommand::Show } => {
            toml_show(&config);
            Ok(())
        }
        Command::Token { svix: true, org, .. } => match &config.management.jwt_secret {
            Some(secret) => {
                println!("{}", herald_svix::mint_token(secret.expose_secret(), &org));
                Ok(())
            }
            None => Err(anyhow::anyhow!("management.jwt_secret is not configured")),
        },
        Command::Token { user, channels, channel, ttl, info, .. } => token(&config, user, channels, channel, ttl, info),
        Command::Migrate => migrate(&config),
        Command::Endpoint { app, target, command } => runtime().and_then(|rt| {
            rt.block_on(async {
                let manage = crate::manage::Manage::new(&config, target.url, target.token)?;
                crate::manage::endpoint(&manage, &app, command).await
            })
        }),
        Command::Attempts { app, target, limit, manage } => runtime().and_then(|rt| {
            rt.block_on(async {
                let client = crate::manage::Manage::new(&config, manage.url, manage.token)?;
                crate::manage::attempts(&client, &app, &target, limit).await
            })
        }),
        Command::Replay { app, target, command } => runtime().and_then(|rt| {
            rt.block_on(async {
                let manage = crate::manage::Manage::new(&config, target.url, target.token)?;
                crate::manage::replay(&manage, &app, command).await
            })
        }),
        Command::Serve => runtime().and_then(|rt| rt.block_on(serve(config))),
        Command::Publish { channel, data, url, api_key } => {
            runtime().and_then(|rt| rt.block_on(publish(&config, channel, data, url, api_key)))
        }
        Command::Sub { channel, url, token, user, count } => {
            runtime().and_then(|rt| rt.block_on(sub(&config, channel, url, token, user, count)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the Tokio runtime")
}

fn toml_show(config: &Config) {
    // Serialising the typed config prints every key with its effective value.
    match serde_json::to_string_pretty(config) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("herald: cannot show config: {error}"),
    }
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colour only for a person at a terminal: a file, a pipe or a log collector gets plain
    // text. NO_COLOR (https://no-color.org) turns it off on a terminal too.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_logs(&config);
    for warning in config.warnings() {
        tracing::warn!("Configuration: {warning}.");
    }
    // Take over SIGTERM before anything listens: a signal that arrives while starting drains
    // like any other instead of killing the process with the default action.
    let signals = Signals::register();
    let store = crate::open_store(&config).await?;
    let listener = herald_server::Server::bind(&config).await?;
    let server = herald_server::Server::start_with_store(config, listener, Some(store))?;
    let token = server.shutdown_token();
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("Shutdown signal received; draining.");
        token.cancel();
    });
    server.run_until_shutdown().await
}

/// SIGTERM and SIGINT, registered once.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate())
            .inspect_err(|error| {
                tracing::error!(%error, "Cannot listen for SIGTERM; only Ctrl-C will stop the server.");
            })
            .ok();
        Signals { term }
    }

    async fn wait(mut self) {
        match &mut self.term {
            Some(term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

fn hmac_secret(config: &Config) -> anyhow::Result<&str> {
    match &config.client.token.hmac_secret {
        Some(secret) => Ok(secret.expose_secret()),
        None => bail!("client.token.hmac_secret is not configured"),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn mint(
    config: &Config,
    user: String,
    channels: Vec<String>,
    channel: Option<String>,
    ttl: Option<Duration>,
    info: Option<String>,
) -> anyhow::Result<String> {
    let info = info.map(|text| serde_json::from_str(&text)).transpose().context("--info is not JSON")?;
    let now = now_unix();
    let claims = MintClaims {
        sub: user,
        exp: ttl.map(|ttl| now + ttl.as_secs() as i64),
        iat: Some(now),
        channels,
        channel,
        info,
    };
    mint_hs256(hmac_secret(config)?, &claims).context("cannot sign token")
}

fn token(
    config: &Config,
    user: String,
    channels: Vec<String>,
    channel: Option<String>,
    ttl: Option<Duration>,
    info: Option<String>,
) -> anyhow::Result<()> {
    println!("{}", mint(config, user, channels, channel, ttl, info)?);
    Ok(())
}

fn migrate(config: &Config) -> anyhow::Result<()> {
    match config.store.backend {
        herald_core::config::StoreBackend::Sqlite => {
            let path = crate::store_path(config);
            let version =
                herald_store_sqlite::migrate(&path).with_context(|| format!("cannot migrate {}", path.display()))?;
            println!("{}: schema version {version}", path.display());
        }
        herald_core::config::StoreBackend::Postgres => {
            let postgres = crate::postgres_config(config)?;
            let schema = postgres.schema.clone();
            let version = runtime()?
                .block_on(herald_store_postgres::migrate(&postgres))
                .with_context(|| format!("cannot migrate the PostgreSQL schema {schema}"))?;
            println!("postgres schema {schema}: schema version {version}");
        }
    }
    Ok(())
}

async fn publish(
    config: &Config,
    channel: String,
    data: String,
    url: Option<String>,
    api_key: Option<String>,
) -> anyhow::Result<()> {
    let data: serde_json::Value = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
    let url = url.unwrap_or_else(|| config.server.local_url("http"));
    let key = api_key.or_else(|| config.api.key.as_ref().map(|k| k.expose_secret().to_owned())).unwrap_or_default();
    let response = reqwest::Client::new()
        .post(format!("{}/api/publish", url.trim_end_matches('/')))
        .header("X-API-Key", key)
        .json(&serde_json::json!({ "channel": channel, "data": data }))
        .send()
        .await
        .context("cannot reach the server API")?;
    let status = response.status();
    let body: serde_json::Value =
        response.json().await.context("server API answered with something other than JSON")?;
    if let Some(error) = body.get("error") {
        bail!("publish failed ({status}): {error}");
    }
    println!("{}", body.get("result").unwrap_or(&serde_json::Value::Null));
    Ok(())
}

async fn sub(
    config: &Config,
    channel: String,
    url: Option<String>,
    token: Option<String>,
    user: String,
    count: Option<u64>,
) -> anyhow::Result<()> {
    let url = url.unwrap_or_else(|| format!("{}/connection/websocket", config.server.local_url("ws")));
    let token = match token {
        Some(token) => token,
        None if config.client.token.hmac_secret.is_some() => mint(config, user, Vec::new(), None, None, None)?,
        None => String::new(),
    };
    let (mut ws, _) =
        tokio_tungstenite::connect_async(&url).await.with_context(|| format!("cannot connect to {url}"))?;
    let commands = format!(
        "{}\n{}",
        serde_json::json!({ "id": 1, "connect": { "token": token, "name": "herald-cli" } }),
        serde_json::json!({ "id": 2, "subscribe": { "channel": channel } })
    );
    ws.send(Message::text(commands)).await?;
    let mut seen = 0u64;
    while let Some(message) = ws.next().await {
        let text = match message? {
            Message::Text(text) => text.to_string(),
            Message::Close(frame) => bail!("server closed the connection: {frame:?}"),
            _ => continue,
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let reply: serde_json::Value = serde_json::from_str(line).context("server sent malformed JSON")?;
            if reply.as_object().is_some_and(|o| o.is_empty()) {
                ws.send(Message::text("{}")).await?;
                continue;
            }
            if let Some(error) = reply.get("error") {
                bail!("server refused: {error}");
            }
            if let Some(publication) = reply.pointer("/push/pub") {
                let line = serde_json::json!({
                    "channel": reply.pointer("/push/channel"),
                    "offset": publication.get("offset"),
                    "data": publication.get("data"),
                    "info": publication.get("info"),
                });
                println!("{line}");
                seen += 1;
                if count.is_some_and(|count| seen >= count) {
                    return Ok(());
                }
            } else if reply.get("subscribe").is_some() {
                eprintln!("subscribed to {channel}");
            }
        }
    }
    bail!("connection ended")
}
