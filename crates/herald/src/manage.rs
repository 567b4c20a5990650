//! `herald endpoint`, `herald attempts`, `herald replay`: the webhook management CLI.
//!
//! These commands talk to a running Herald through its Svix-compatible management API, so
//! they work the same against one embedded node or a cluster. The bearer token is minted from
//! the config's `management.jwt_secret` (or taken from `management.token` / `--token`).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use herald_core::Config;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum EndpointCommand {
    /// Add an endpoint to an application.
    Add {
        url: String,
        /// Only these event types (comma separated); all when omitted.
        #[arg(long, value_delimiter = ',')]
        event_types: Vec<String>,
        /// Only messages on these channels (comma separated); all when omitted.
        #[arg(long, value_delimiter = ',')]
        channels: Vec<String>,
        /// A `whsec_...` secret; generated when omitted.
        #[arg(long)]
        secret: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Deliveries per second at most.
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    /// List an application's endpoints.
    List,
    /// Disable an endpoint (deliveries wait until it is enabled again).
    Disable { endpoint: String },
    /// Enable a disabled endpoint.
    Enable { endpoint: String },
    /// Rotate an endpoint's signing secret and print the new one.
    RotateSecret { endpoint: String },
}

#[derive(Subcommand)]
pub enum ReplayCommand {
    /// Send one message to one endpoint again.
    Message { msg: String, endpoint: String },
    /// Re-deliver an endpoint's failed messages since a time (`--all` for every message).
    Endpoint {
        endpoint: String,
        /// How far back, e.g. `2h` or `7d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Duration,
        #[arg(long)]
        all: bool,
    },
    /// Re-deliver every dead-lettered message of the application, endpoint by endpoint.
    DeadLetters {
        /// How far back to look (the management API recovers at most 14 days).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "14d")]
        since: Duration,
    },
}

/// A management API client.
pub struct Manage {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Manage {
    pub fn new(config: &Config, url: Option<String>, token: Option<String>) -> anyhow::Result<Self> {
        let base = format!("{}/api/v1", url.unwrap_or_else(|| config.server.local_url("http")).trim_end_matches('/'));
        let token = match token {
            Some(token) => token,
            None => match (&config.management.jwt_secret, &config.management.token) {
                (Some(secret), _) => herald_svix::mint_token(secret.expose_secret(), "org_herald_cli"),
                (None, Some(token)) => token.expose_secret().to_owned(),
                (None, None) => bail!("no management.jwt_secret or management.token configured; pass --token"),
            },
        };
        Ok(Self { base, token, http: reqwest::Client::new() })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.context("cannot reach the management API")?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{status}: {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("management API answered with something other than JSON")
    }

    /// Every item of a paginated list.
    async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut iterator: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let page_path = match &iterator {
                Some(it) => format!("{path}{separator}limit=250&iterator={it}"),
                None => format!("{path}{separator}limit=250"),
            };
            let page = self.call(reqwest::Method::GET, &page_path, None).await?;
            items.extend(page["data"].as_array().cloned().unwrap_or_default());
            if page["done"].as_bool().unwrap_or(true) {
                return Ok(items);
            }
            iterator = page["iterator"].as_str().map(str::to_owned);
            if iterator.is_none() {
                return Ok(items);
            }
        }
    }
}

pub async fn endpoint(manage: &Manage, app: &str, command: EndpointCommand) -> anyhow::Result<()> {
    match command {
        EndpointCommand::Add { url, event_types, channels, secret, description, rate_limit } => {
            let mut body = json!({ "url": url, "description": description });
            if !event_types.is_empty() {
                body["filterTypes"] = json!(event_types);
            }
            if !channels.is_empty() {
                body["channels"] = json!(channels);
            }
            if let Some(secret) = secret {
                body["secret"] = json!(secret);
            }
            if let Some(rate) = rate_limit {
                body["rateLimit"] = json!(rate);
            }
            let endpoint = manage.call(reqwest::Method::POST, &format!("/app/{app}/endpoint"), Some(body)).await?;
            let id = endpoint["id"].as_str().unwrap_or_default();
            let secret = manage.call(reqwest::Method::GET, &format!("/app/{app}/endpoint/{id}/secret"), None).await?;
            println!("endpoint {id}");
            println!("secret   {}", secret["key"].as_str().unwrap_or_default());
        }
        EndpointCommand::List => {
            let endpoints = manage.list_all(&format!("/app/{app}/endpoint")).await?;
            let rows: Vec<Vec<String>> = endpoints
                .iter()
                .map(|e| {
                    vec![
                        text(&e["id"]),
                        if e["disabled"].as_bool().unwrap_or(false) { "disabled".into() } else { "enabled".into() },
                        list(&e["filterTypes"]),
                        list(&e["channels"]),
                        text(&e["url"]),
                    ]
                })
                .collect();
            print_table(&["ID", "STATE", "EVENT TYPES", "CHANNELS", "URL"], &rows);
        }
        EndpointCommand::Disable { endpoint } | EndpointCommand::Enable { endpoint } if endpoint.is_empty() => {
            bail!("an endpoint id is required")
        }
        EndpointCommand::Disable { endpoint } => {
            let path = format!("/app/{app}/endpoint/{endpoint}");
            manage.call(reqwest::Method::PATCH, &path, Some(json!({ "disabled": true }))).await?;
            println!("endpoint {endpoint} disabled");
        }
        EndpointCommand::Enable { endpoint } => {
            let path = format!("/app/{app}/endpoint/{endpoint}");
            manage.call(reqwest::Method::PATCH, &path, Some(json!({ "disabled": false }))).await?;
            println!("endpoint {endpoint} enabled");
        }
        EndpointCommand::RotateSecret { endpoint } => {
            let path = format!("/app/{app}/endpoint/{endpoint}/secret");
            manage.call(reqwest::Method::POST, &format!("{path}/rotate"), Some(json!({}))).await?;
            let secret = manage.call(reqwest::Method::GET, &path, None).await?;
            println!("secret {}", secret["key"].as_str().unwrap_or_default());
        }
    }
    Ok(())
}

pub async fn attempts(manage: &Manage, app: &str, target: &str, limit: usize) -> anyhow::Result<()> {
    let path = if target.starts_with("msg_") {
        format!("/app/{app}/attempt/msg/{target}?limit={limit}")
    } else {
        format!("/app/{app}/attempt/endpoint/{target}?limit={limit}")
    };
    let page = manage.call(reqwest::Method::GET, &path, None).await?;
    let rows: Vec<Vec<String>> = page["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            vec![
                text(&a["timestamp"]),
                text(&a["msgId"]),
                text(&a["endpointId"]),
                match a["status"].as_i64() {
                    Some(0) => "success".into(),
                    Some(1) => "pending".into(),
                    Some(2) => "fail".into(),
                    Some(3) => "sending".into(),
                    _ => "?".into(),
                },
                text(&a["responseStatusCode"]),
                format!("{} ms", text(&a["responseDurationMs"])),
                if a["triggerType"].as_i64() == Some(1) { "manual".into() } else { "scheduled".into() },
            ]
        })
        .collect();
    print_table(&["TIME", "MESSAGE", "ENDPOINT", "STATUS", "CODE", "LATENCY", "TRIGGER"], &rows);
    Ok(())
}

pub async fn replay(manage: &Manage, app: &str, command: ReplayCommand) -> anyhow::Result<()> {
    match command {
        ReplayCommand::Message { msg, endpoint } => {
            let path = format!("/app/{app}/msg/{msg}/endpoint/{endpoint}/resend");
            manage.call(reqwest::Method::POST, &path, Some(json!({}))).await?;
            println!("message {msg} queued again for {endpoint}");
        }
        ReplayCommand::Endpoint { endpoint, since, all } => {
            recover(manage, app, &endpoint, since, all).await?;
            println!("endpoint {endpoint}: recovery queued");
        }
        ReplayCommand::DeadLetters { since } => {
            let endpoints = manage.list_all(&format!("/app/{app}/endpoint")).await?;
            let total = endpoints.len();
            for (idx, endpoint) in endpoints.iter().enumerate() {
                let id = text(&endpoint["id"]);
                recover(manage, app, &id, since, false).await?;
                eprintln!("[{}/{total}] {id}: failed deliveries queued again", idx + 1);
            }
            println!("replayed dead letters of {total} endpoint(s)");
        }
    }
    Ok(())
}

async fn recover(manage: &Manage, app: &str, endpoint: &str, since: Duration, all: bool) -> anyhow::Result<()> {
    let since = std::time::SystemTime::now() - since;
    let since = humantime::format_rfc3339_seconds(since).to_string();
    let path = format!("/app/{app}/endpoint/{endpoint}/recover");
    let mut body = json!({ "since": since });
    if all {
        body["all"] = json!(true);
    }
    manage.call(reqwest::Method::POST, &path, Some(body)).await?;
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list(value: &Value) -> String {
    match value.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(text).collect::<Vec<_>>().join(","),
        _ => "*".into(),
    }
}

/// Print rows as a table with aligned columns.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (idx, cell) in row.iter().enumerate() {
            widths[idx] = widths[idx].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(idx, c)| format!("{c:<width$}", width = widths[idx]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(header.iter().map(|h| (*h).to_owned()).collect()).trim_end());
    for row in rows {
        println!("{}", line(row.clone()).trim_end());
    }
}
