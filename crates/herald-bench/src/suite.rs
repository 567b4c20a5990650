//! `suite`: every scenario against Herald and every peer of `bench/peers/peers.json`, each run
//! on a freshly started server, repetitions in alternating target order, results as JSON per
//! scenario under the results directory (written after every run, so a crash keeps what ran).
//!
//! A peer that is not installed, or cannot run a scenario, is recorded as such (status
//! `not installed` / `unsupported`), never dropped. The exit status is non-zero when a Herald run
//! fails (and, with `--strict`, when any installed peer's run fails).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::args::{ConnArgs, FanoutArgs, IdleArgs, Rate, SourceIps, Transport};
use crate::proto::{Codec, Kind};
use crate::report::say;
use crate::scenario::{api, coldstart, fanout, idle, webhook, wrk};
use crate::util::{parse_duration, round};

pub const API_KEY: &str = "bench-key";
pub const MGMT_TOKEN: &str = "bench-mgmt-token";
/// Herald's `client.token.hmac_secret` in the suite: uni SSE clients mint their tokens with it.
pub const HMAC_SECRET: &str = "herald-bench-hmac-secret-0123456789abcdef";
pub const SCENARIOS: &[&str] = &["fanout", "channels", "idle", "api", "webhook", "coldstart", "churn"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Quick,
    Full,
}

#[derive(Args, Debug, Clone)]
pub struct SuiteArgs {
    #[arg(long, value_enum, default_value = "quick")]
    pub mode: Mode,
    /// Herald binary.
    #[arg(long, env = "HERALD_BIN", default_value = "target/release/herald")]
    pub herald_bin: PathBuf,
    /// Peers' description (missing file = no peers).
    #[arg(long, default_value = "bench/peers/peers.json")]
    pub peers: PathBuf,
    /// Results directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Only these scenarios (comma-separated): fanout, channels, idle, api, webhook, coldstart, churn.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only these targets (comma-separated names: herald, herald-protobuf, herald-sse, peers' names).
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Only the cases whose name contains one of these (comma-separated), e.g. `10000` for
    /// "10000 subs, max" and "10000 conns".
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Repetitions (default: 1 quick, 3 full).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Publishing duration of each run (default: 2s quick, 8s full).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Skip the peers.
    #[arg(long)]
    pub no_peers: bool,
    /// Fail (exit non-zero) when an installed peer's run fails, not only Herald's.
    #[arg(long)]
    pub strict: bool,
    /// Full mode: the largest subscriber/connection count (bounded by the 20,000 open files).
    #[arg(long, default_value_t = 19_000)]
    pub max_conns: usize,
    /// PostgreSQL of the `herald-postgres` target (trust auth or a password in the URL). Every
    /// server start gets a fresh schema in it, dropped (with `psql`) after the run; when it does
    /// not answer, that target's rows are recorded as skipped.
    #[arg(long, env = "HERALD_BENCH_POSTGRES_URL", default_value = DEFAULT_POSTGRES_URL)]
    pub postgres_url: String,
}

/// The machine's PostgreSQL (trust auth), as the test suites use it.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The suite's Herald on PostgreSQL: durable publishes and webhooks only.
pub const POSTGRES_TARGET: &str = "herald-postgres";

/// Herald's store backend in a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    Sqlite,
    Postgres,
}

/// One server under test.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub codec: Codec,
    /// How Herald's subscribers connect (peers: always WebSocket).
    pub transport: Transport,
    /// Shell command template with `{port}` (peers); Herald is started from its binary.
    pub start: String,
    pub ready: String,
    pub ws_url: String,
    pub publish_url: String,
    pub app_id: String,
    pub app_key: String,
    pub app_secret: String,
    /// `None` when runnable; the reason otherwise.
    pub not_installed: Option<String>,
    pub version: String,
    pub port_plus_one: bool,
    pub notes: String,
    /// Herald's store (peers: SQLite, unused).
    pub store: StoreBackend,
    /// `Some(why)` when the target cannot run on this machine for a reason outside the server
    /// (PostgreSQL unreachable): its rows are recorded as skipped, not failed.
    pub skip: Option<String>,
}

impl Target {
    fn is_herald(&self) -> bool {
        self.kind == Kind::Herald
    }

    fn conn(&self, port: u16) -> ConnArgs {
        let mut c = ConnArgs::new(&self.ws_url.replace("{port}", &port.to_string()));
        c.kind = self.kind;
        c.codec = self.codec;
        c.transport = self.transport;
        if self.transport == Transport::UniSse {
            c.hmac_secret = Some(HMAC_SECRET.into());
        }
        c.publish_url = self.publish_url.replace("{port}", &port.to_string());
        c.app_id = self.app_id.clone();
        c.app_key = self.app_key.clone();
        c.app_secret = self.app_secret.clone();
        c
    }
}

fn herald_target(name: &str, codec: Codec, transport: Transport, bin: &Path) -> Target {
    let not_installed = (!bin.exists()).then(|| format!("{} does not exist", bin.display()));
    let version = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Target {
        name: name.into(),
        kind: Kind::Herald,
        codec,
        transport,
        start: String::new(),
        ready: "http://127.0.0.1:{port}/readyz".into(),
        ws_url: match transport {
            Transport::Websocket => "ws://127.0.0.1:{port}/connection/websocket".into(),
            Transport::UniSse => "http://127.0.0.1:{port}/connection/uni_sse".into(),
        },
        publish_url: String::new(),
        app_id: String::new(),
        app_key: String::new(),
        app_secret: String::new(),
        not_installed,
        version: format!("{version} ({})", git_describe()),
        port_plus_one: false,
        notes: String::new(),
        store: StoreBackend::Sqlite,
        skip: None,
    }
}

/// Herald on the PostgreSQL store at `url`; skipped when that does not answer.
fn herald_postgres_target(bin: &Path, url: &str) -> Target {
    let mut t = herald_target(POSTGRES_TARGET, Codec::Json, Transport::Websocket, bin);
    t.store = StoreBackend::Postgres;
    t.notes = format!("PostgreSQL store at {}, a fresh schema per run", redact_url(url));
    t.skip = postgres_unreachable(url);
    t
}

/// The URL without its password, for the report.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Runs one SQL command with `psql` (at most 10 s); `Err` with psql's message when it fails.
fn psql(url: &str, sql: &str) -> Result<String> {
    let mut child = std::process::Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql (Debian package `postgresql-client`)")?;
    let t0 = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("psql did not finish within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Why the PostgreSQL at `url` cannot be used by the suite, if it cannot.
fn postgres_unreachable(url: &str) -> Option<String> {
    if !on_path("psql") {
        return Some("psql is not installed (Debian package `postgresql-client`); PostgreSQL rows skipped".into());
    }
    match psql(url, "SELECT 1") {
        Ok(v) if v == "1" => None,
        Ok(v) => Some(format!("PostgreSQL at {} answered `{v}` to SELECT 1", redact_url(url))),
        Err(e) => Some(format!("PostgreSQL at {} is unreachable: {e:#}", redact_url(url))),
    }
}

/// The schema of the PostgreSQL server started on `port` by this suite process: unique per
/// start (ports are not reused within a run) and per process, a valid `store.postgres_schema`.
fn bench_schema(pid: u32, port: u16) -> String {
    format!("herald_bench_{pid}_{port}")
}

fn drop_schema(url: &str, schema: &str) {
    if let Err(e) = psql(url, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")) {
        say(format!("[suite] WARNING: could not drop PostgreSQL schema {schema}: {e:#}"));
    }
}

fn git_describe() -> String {
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    format!("git {rev}{}", if dirty { ", with uncommitted changes" } else { "" })
}

/// Reads `peers.json`; a missing file is no peers (noted).
pub fn load_peers(path: &Path) -> Result<Vec<Target>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let list: Vec<Value> = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let root = path.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(Path::new("."));
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut out = Vec::new();
    for p in list {
        let name = s(&p, "name");
        let kind: Kind = match serde_json::from_value(p.get("kind").cloned().unwrap_or(Value::Null)) {
            Ok(k) => k,
            Err(_) => {
                say(format!("[suite] peer `{name}`: unknown kind {:?}; skipped", p.get("kind")));
                continue;
            }
        };
        let check = s(&p, "installed_check");
        let check_path = if Path::new(&check).is_absolute() { PathBuf::from(&check) } else { root.join(&check) };
        let not_installed = (check.is_empty() || !check_path.exists())
            .then(|| format!("not installed ({check} missing; run bench/peers/install.sh {name})"));
        let version_file = root.join("bench/peers/installed").join(&name).join("VERSION");
        let version = std::fs::read_to_string(version_file)
            .map(|v| v.trim().to_string())
            .or_else(|_| p.get("version").and_then(Value::as_str).map(String::from).ok_or(()))
            .unwrap_or_else(|_| "unknown".into());
        out.push(Target {
            name,
            kind,
            codec: Codec::Json,
            transport: Transport::Websocket,
            start: s(&p, "start"),
            ready: s(&p, "ready"),
            ws_url: s(&p, "ws_url"),
            publish_url: s(&p, "publish_url"),
            app_id: s(&p, "app_id"),
            app_key: s(&p, "key"),
            app_secret: s(&p, "secret"),
            not_installed,
            version,
            port_plus_one: p.get("reserves_port_plus_one").and_then(Value::as_bool).unwrap_or(false),
            notes: s(&p, "limits"),
            store: StoreBackend::Sqlite,
            skip: None,
        });
    }
    Ok(out)
}

/// A started server.
struct Running {
    child: tokio::process::Child,
    pid: u32,
    port: u16,
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Picks a port (and the next one when the peer needs it) that is free now.
fn pick_port(next: &mut u16, plus_one: bool) -> Result<u16> {
    for _ in 0..2000 {
        let p = *next;
        *next = if *next > 60_000 { 20_000 } else { *next + 2 };
        if port_free(p) && (!plus_one || port_free(p + 1)) {
            return Ok(p);
        }
    }
    bail!("no free port found")
}

struct Ctx {
    args: SuiteArgs,
    out: PathBuf,
    root: PathBuf,
    next_port: u16,
    starts: u64,
    herald_failures: Vec<String>,
    peer_failures: Vec<String>,
    /// Cases not run because a load tool they need is not installed (or PostgreSQL is down).
    skipped: Vec<String>,
    /// PostgreSQL schemas of started servers, not dropped yet.
    pg_schemas: Vec<String>,
}

impl Ctx {
    /// Herald's configuration; `postgres` = (URL, schema) for the PostgreSQL store.
    fn herald_config(&self, port: u16, data_dir: &Path, postgres: Option<(&str, &str)>) -> String {
        let pg = postgres
            .map(|(url, schema)| {
                format!("backend = \"postgres\"\npostgres_url = \"{url}\"\npostgres_schema = \"{schema}\"\n")
            })
            .unwrap_or_default();
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
max_connections = 19900
listen_backlog = 4096

[log]
level = "warn"

[api]
key = "{API_KEY}"

[client]
allow_anonymous = true

[client.token]
hmac_secret = "{HMAC_SECRET}"

[channel.defaults]
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true

[[channel.namespaces]]
name = "durable"
durable = true
history_size = 100
history_ttl = "5m"
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true

[store]
{pg}data_dir = "{}"

[webhooks]
allow_networks = ["127.0.0.0/8"]
# Shortened so that the failing-receiver run finishes: 10 retries within ~1.3 s.
retry_schedule = ["10ms", "20ms", "50ms", "100ms", "100ms", "200ms", "200ms", "200ms", "200ms", "200ms"]
retry_jitter = 0.0

[management]
token = "{MGMT_TOKEN}"
"#,
            data_dir.display()
        )
    }

    /// The shell command that starts `t` on `port` (also written into the report).
    fn start_command(&mut self, t: &Target, port: u16) -> Result<String> {
        if t.is_herald() {
            let dir = self.out.join("tmp");
            std::fs::create_dir_all(&dir)?;
            let data = dir.join(format!("data-{port}"));
            let _ = std::fs::remove_dir_all(&data);
            let conf = dir.join(format!("herald-{port}.toml"));
            let schema = bench_schema(std::process::id(), port);
            let pg = (t.store == StoreBackend::Postgres).then_some((self.args.postgres_url.as_str(), schema.as_str()));
            if pg.is_some() {
                self.pg_schemas.push(schema.clone());
            }
            std::fs::write(&conf, self.herald_config(port, &data, pg))?;
            // A copy for the report (the port differs per run).
            let (copy, sample) = match t.store {
                StoreBackend::Sqlite => ("herald.toml", None),
                StoreBackend::Postgres => ("herald-postgres.toml", Some((DEFAULT_POSTGRES_URL, "SCHEMA"))),
            };
            let _ = std::fs::write(self.out.join(copy), self.herald_config(18000, Path::new("DATA_DIR"), sample));
            Ok(format!("{} --config {} serve", self.args.herald_bin.display(), conf.display()))
        } else {
            Ok(t.start.replace("{port}", &port.to_string()))
        }
    }

    /// Drops the schemas of the PostgreSQL servers started so far (they are stopped).
    fn drop_started_schemas(&mut self) {
        for schema in std::mem::take(&mut self.pg_schemas) {
            drop_schema(&self.args.postgres_url, &schema);
        }
    }

    async fn start(&mut self, t: &Target, label: &str) -> Result<Running> {
        let port = pick_port(&mut self.next_port, t.port_plus_one)?;
        let cmd = self.start_command(t, port)?;
        self.starts += 1;
        let logs = self.out.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = std::fs::File::create(logs.join(format!("{}-{label}.log", t.name)))?;
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", t.name))?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let mut r = Running { child, pid, port };
        let ready = t.ready.replace("{port}", &port.to_string());
        let t0 = Instant::now();
        loop {
            if http_status(&ready).await == Some(200) {
                break;
            }
            if let Ok(Some(st)) = r.child.try_wait() {
                bail!("{} exited with {st} before it was ready (log: logs/{}-{label}.log)", t.name, t.name);
            }
            if t0.elapsed() > Duration::from_secs(60) {
                stop(&mut r).await;
                bail!("{} not ready within 60 s", t.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let it settle before RSS baselines.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(r)
    }
}

async fn stop(r: &mut Running) {
    let _ = std::process::Command::new("kill").arg("-TERM").arg(r.pid.to_string()).status();
    // Some peers (Node) drain gracefully for many seconds; the measurement is over, so cut it short.
    if tokio::time::timeout(Duration::from_secs(2), r.child.wait()).await.is_err() {
        let _ = r.child.kill().await;
    }
}

/// Status of a GET (fresh connection), within 2 s.
pub async fn http_status(url: &str) -> Option<u16> {
    let (host, path) = coldstart::split_http_url(url)?;
    let fut = async {
        let addr = tokio::net::lookup_host(host).await.ok()?.next()?;
        coldstart::probe(addr, host, path).await
    };
    tokio::time::timeout(Duration::from_secs(2), fut).await.ok().flatten()
}

/// A case of a scenario: one parameter set, run against each target.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    params: Value,
    /// Herald only (webhooks), or only these targets.
    herald_only: bool,
    protobuf_too: bool,
    /// Also run by Herald on PostgreSQL (`herald-postgres`).
    postgres_too: bool,
    /// Also run by Herald over uni SSE (`herald-sse`).
    sse_too: bool,
    run: CaseRun,
}

impl Case {
    /// Whether target `t` runs this case at all (every JSON WebSocket target does; Protobuf
    /// and uni SSE only where the case says so).
    fn eligible(&self, t: &Target) -> bool {
        if t.store == StoreBackend::Postgres {
            return self.postgres_too;
        }
        match (t.transport, t.codec) {
            (Transport::UniSse, _) => self.sse_too,
            (Transport::Websocket, Codec::Json) => true,
            (Transport::Websocket, Codec::Protobuf) => self.protobuf_too,
        }
    }
}

#[derive(Clone, Debug)]
enum CaseRun {
    Fanout {
        subs: usize,
        rate: Rate,
        own: bool,
        churn: usize,
        shared_every: u64,
    },
    Idle {
        conns: usize,
    },
    Api {
        namespace: String,
        label: String,
        wrk: bool,
    },
    /// `concurrency`: the endpoint's `maxConcurrency` (1 = ordered).
    Webhook {
        rate: Rate,
        fail_half: bool,
        concurrency: u32,
    },
    Coldstart {
        reps: usize,
    },
}

/// `maxConcurrency` of the endpoint in the unordered webhook cases.
const UNORDERED_CONCURRENCY: u32 = 64;

fn rate_name(r: Rate) -> String {
    match r {
        Rate::Max => "max".into(),
        Rate::PerSec(v) => format!("{v}/s"),
    }
}

fn fixed(deliveries_per_s: f64, subs: usize) -> Rate {
    Rate::PerSec((deliveries_per_s / subs as f64).max(1.0).round())
}

fn cases(scenario: &str, mode: Mode, max_conns: usize) -> Vec<Case> {
    let full = mode == Mode::Full;
    let mk = |name: String, params: Value, run: CaseRun| Case {
        name,
        params,
        herald_only: false,
        protobuf_too: false,
        postgres_too: false,
        sse_too: false,
        run,
    };
    match scenario {
        "fanout" => {
            let subs: Vec<usize> = if full { vec![1000, 10_000, max_conns] } else { vec![200] };
            let mut v = Vec::new();
            for &n in &subs {
                for rate in [fixed(200_000.0, n), Rate::Max] {
                    let mut c = mk(
                        format!("{n} subs, {}", rate_name(rate)),
                        json!({"subs": n, "rate": rate_name(rate)}),
                        CaseRun::Fanout { subs: n, rate, own: false, churn: 0, shared_every: 0 },
                    );
                    c.protobuf_too = true;
                    c.sse_too = true;
                    v.push(c);
                }
            }
            v
        }
        "channels" => {
            let n = if full { 10_000 } else { 300 };
            let every = 100;
            [Rate::PerSec(if full { 2000.0 } else { 500.0 }), Rate::Max]
                .into_iter()
                .map(|rate| {
                    mk(
                        format!("{n} subs on own channels + shared, {}", rate_name(rate)),
                        json!({"subs": n, "rate": rate_name(rate), "shared_every": every}),
                        CaseRun::Fanout { subs: n, rate, own: true, churn: 0, shared_every: every },
                    )
                })
                .collect()
        }
        "idle" => {
            let ns: Vec<usize> = if full { vec![1000, 10_000, max_conns] } else { vec![300] };
            ns.into_iter()
                .map(|n| {
                    let mut c = mk(format!("{n} conns"), json!({"conns": n}), CaseRun::Idle { conns: n });
                    c.protobuf_too = true;
                    c.sse_too = true;
                    c
                })
                .collect()
        }
        "api" => {
            let mut v = Vec::new();
            for wrk in [false, true] {
                for (ns, label) in [("", "ephemeral"), ("durable:", "durable")] {
                    let mut c = mk(
                        format!("{label}, {}", if wrk { "wrk" } else { "herald-bench" }),
                        json!({"namespace": ns, "label": label, "tool": if wrk { "wrk" } else { "herald-bench" }}),
                        CaseRun::Api { namespace: ns.into(), label: label.into(), wrk },
                    );
                    c.herald_only = !ns.is_empty();
                    // The store comparison: durable publishes (quick: herald-bench only).
                    c.postgres_too = !ns.is_empty() && (full || !wrk);
                    v.push(c);
                }
            }
            v
        }
        "webhook" => {
            let fixed_rate = if full { 1000.0 } else { 200.0 };
            let fail_rate = if full { 500.0 } else { 100.0 };
            let wh = |rate: Rate, fail_half: bool, concurrency: u32| CaseRun::Webhook { rate, fail_half, concurrency };
            let mut v = vec![
                mk(format!("{fixed_rate}/s"), json!({"rate": fixed_rate}), wh(Rate::PerSec(fixed_rate), false, 1)),
                mk("max".into(), json!({"rate": "max"}), wh(Rate::Max, false, 1)),
                mk(
                    format!("{fail_rate}/s, receiver fails half"),
                    json!({"rate": fail_rate, "fail_half": true}),
                    wh(Rate::PerSec(fail_rate), true, 1),
                ),
            ];
            // Unordered endpoints (deliveries in parallel): the store's throughput, not one
            // endpoint's round trips.
            let c = UNORDERED_CONCURRENCY;
            if full {
                v.push(mk(
                    format!("{fixed_rate}/s, unordered"),
                    json!({"rate": fixed_rate, "max_concurrency": c}),
                    wh(Rate::PerSec(fixed_rate), false, c),
                ));
            }
            v.push(mk("max, unordered".into(), json!({"rate": "max", "max_concurrency": c}), wh(Rate::Max, false, c)));
            for c in &mut v {
                c.herald_only = true;
                // Quick: one PostgreSQL webhook row, so CI stays short.
                c.postgres_too = full || c.name == "max, unordered";
            }
            v
        }
        "coldstart" => {
            let reps = if full { 10 } else { 3 };
            vec![mk(format!("{reps} starts"), json!({"reps": reps}), CaseRun::Coldstart { reps })]
        }
        "churn" => {
            let (n, churn) = if full { (5000, 32) } else { (200, 4) };
            let rate = fixed(100_000.0, n);
            let mut c = mk(
                format!("{n} subs, {} publishes, {churn} churning clients", rate_name(rate)),
                json!({"subs": n, "rate": rate_name(rate), "churn_tasks": churn}),
                CaseRun::Fanout { subs: n, rate, own: false, churn, shared_every: 0 },
            );
            c.protobuf_too = true;
            vec![c]
        }
        _ => vec![],
    }
}

/// Why a case cannot run on this machine: an external load tool it drives is not installed.
fn missing_tool(run: &CaseRun) -> Option<String> {
    match run {
        CaseRun::Api { wrk: true, .. } if !on_path("wrk") => {
            Some("wrk is not installed (Debian package `wrk`; scripts/test.sh installs it)".into())
        }
        _ => None,
    }
}

/// Whether an executable of that name is on `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run_case(ctx: &mut Ctx, t: &Target, case: &Case, rep: usize, dur: Duration) -> Result<Value> {
    let full = ctx.args.mode == Mode::Full;
    let label = format!("{}-r{rep}", case.name.replace([' ', ',', '/', '+'], "_"));
    if let CaseRun::Coldstart { reps } = case.run {
        let port = pick_port(&mut ctx.next_port, t.port_plus_one)?;
        let cmd = ctx.start_command(t, port)?;
        let args = coldstart::ColdstartArgs {
            cmd,
            ready: t.ready.replace("{port}", &port.to_string()),
            reps,
            binary: t.is_herald().then(|| ctx.args.herald_bin.clone()),
            settle: Duration::from_millis(if full { 1000 } else { 300 }),
            timeout: Duration::from_secs(60),
            target: t.name.clone(),
            out: None,
        };
        let cwd = std::env::current_dir()?;
        std::env::set_current_dir(&ctx.root)?;
        let r = coldstart::run(args).await;
        std::env::set_current_dir(cwd)?;
        return r;
    }
    let mut server = match ctx.start(t, &label).await {
        Ok(s) => s,
        Err(e) => {
            // The server may have created its schema before it failed.
            if t.store == StoreBackend::Postgres {
                ctx.drop_started_schemas();
            }
            return Err(e);
        }
    };
    let pid = Some(server.pid);
    let port = server.port;
    let api_url = format!("http://127.0.0.1:{port}");
    let mut conn = t.conn(port);
    conn.source_ips = SourceIps::Auto;
    let result = match &case.run {
        CaseRun::Fanout { subs, rate, own, churn, shared_every } => {
            let mut a = FanoutArgs::new(conn, &api_url, API_KEY, *subs, *rate, dur);
            a.server_pid = pid;
            a.own_channels = *own;
            a.shared_every = *shared_every;
            a.churn = *churn;
            a.drain_idle = Duration::from_millis(if full { 2000 } else { 500 });
            a.drain_max = Duration::from_secs(if full { 30 } else { 10 });
            fanout::run(a).await
        }
        CaseRun::Idle { conns } => {
            let a = IdleArgs {
                conn,
                conns: *conns,
                server_pid: pid,
                channel_prefix: "idle".into(),
                shared_channel: false,
                no_subscribe: false,
                hold: Duration::from_secs(if full { 5 } else { 1 }),
                close_wait: Duration::from_millis(if full { 2000 } else { 500 }),
                procs: if *conns > 15_000 { 2 } else { 1 },
                out: None,
                child: false,
                index_offset: 0,
                total_conns: None,
            };
            idle::run(a).await
        }
        CaseRun::Api { namespace, label, wrk: use_wrk } => {
            let conns = if full { 256 } else { 64 };
            if *use_wrk {
                wrk::run(wrk::WrkArgs {
                    conn,
                    api: api_url.clone(),
                    api_key: API_KEY.into(),
                    wrk: "wrk".into(),
                    threads: 1,
                    conns,
                    duration: dur,
                    channels: 64,
                    namespace: namespace.clone(),
                    payload_bytes: 64,
                    server_pid: pid,
                    label: label.clone(),
                    script: Some(ctx.out.join(format!("tmp/wrk-{}-{label}.lua", t.name))),
                    out: None,
                })
                .await
            } else {
                api::run(api::ApiArgs {
                    conn,
                    api: api_url.clone(),
                    api_key: API_KEY.into(),
                    conns,
                    duration: dur,
                    channels: 64,
                    namespace: namespace.clone(),
                    payload_bytes: 64,
                    server_pid: pid,
                    label: label.clone(),
                    out: None,
                })
                .await
            }
        }
        CaseRun::Webhook { rate, fail_half, concurrency } => {
            let mut a = webhook::WebhookArgs::new(&api_url, MGMT_TOKEN, *rate, dur);
            a.fail_half = *fail_half;
            a.endpoint_concurrency = *concurrency;
            a.server_pid = pid;
            a.drain_max = Duration::from_secs(if full { 60 } else { 5 });
            a.drain_idle = Duration::from_secs(if full { 5 } else { 1 });
            webhook::run(a).await
        }
        CaseRun::Coldstart { .. } => unreachable!("handled above"),
    };
    stop(&mut server).await;
    trim_log(&ctx.out.join("logs").join(format!("{}-{label}.log", t.name)));
    if t.is_herald() {
        let _ = std::fs::remove_dir_all(ctx.out.join("tmp").join(format!("data-{port}")));
    }
    if t.store == StoreBackend::Postgres {
        ctx.drop_started_schemas();
    }
    result
}

/// Keeps the last 64 KiB of a server log (some peers log every connection).
fn trim_log(path: &Path) {
    const KEEP: usize = 64 * 1024;
    if let Ok(bytes) = std::fs::read(path)
        && bytes.len() > KEEP
    {
        let mut out = b"[... trimmed ...]\n".to_vec();
        out.extend_from_slice(&bytes[bytes.len() - KEEP..]);
        let _ = std::fs::write(path, out);
    }
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Machine description for the report.
pub fn machine_info() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024);
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    json!({
        "cpu_model": model,
        "cpus": crate::procfs::cpus(),
        "kernel": kernel,
        "memory_bytes": mem,
        "open_files_limit": crate::procfs::open_files_limit(),
    })
}

pub async fn run(args: SuiteArgs) -> Result<()> {
    let root = std::env::current_dir()?;
    std::fs::create_dir_all(&args.out)?;
    let out = args.out.canonicalize()?;
    let mode = args.mode;
    let reps = args.reps.unwrap_or(if mode == Mode::Full { 3 } else { 1 });
    let dur = args.duration.unwrap_or(Duration::from_secs(if mode == Mode::Full { 8 } else { 2 }));
    let herald_bin = if args.herald_bin.is_absolute() { args.herald_bin.clone() } else { root.join(&args.herald_bin) };
    let mut targets = vec![
        herald_target("herald", Codec::Json, Transport::Websocket, &herald_bin),
        herald_target("herald-protobuf", Codec::Protobuf, Transport::Websocket, &herald_bin),
        herald_target("herald-sse", Codec::Json, Transport::UniSse, &herald_bin),
    ];
    // Herald on PostgreSQL, beside the SQLite rows of `herald` (probed only when selected).
    if args.targets.is_empty() || args.targets.iter().any(|n| n == POSTGRES_TARGET) {
        let t = herald_postgres_target(&herald_bin, &args.postgres_url);
        if let Some(why) = &t.skip {
            say(format!("\n[suite] WARNING: {POSTGRES_TARGET} rows are SKIPPED: {why}\n"));
        }
        targets.push(t);
    }
    let mut peers_note = String::new();
    if !args.no_peers {
        match load_peers(&args.peers) {
            Ok(p) if p.is_empty() => peers_note = format!("{} not found or empty: no peers", args.peers.display()),
            Ok(p) => targets.extend(p),
            Err(e) => peers_note = format!("{e:#}"),
        }
    } else {
        peers_note = "peers skipped (--no-peers)".into();
    }
    if !args.targets.is_empty() {
        targets.retain(|t| args.targets.iter().any(|n| n == &t.name));
    }
    let scenarios: Vec<&str> =
        SCENARIOS.iter().copied().filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s)).collect();
    let started = crate::util::unix_secs();
    let meta = json!({
        "mode": format!("{mode:?}").to_lowercase(),
        "reps": reps,
        "duration_secs": dur.as_secs_f64(),
        "started_unix": started,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine_info(),
        "loadavg_start": loadavg(),
        "peers_note": peers_note,
        "targets": targets.iter().map(|t| json!({
            "name": t.name, "kind": t.kind.name(), "codec": t.codec, "transport": t.transport, "version": t.version,
            "installed": t.not_installed.is_none(), "not_installed": t.not_installed, "notes": t.notes,
            "store": t.is_herald().then_some(match t.store { StoreBackend::Sqlite => "sqlite", StoreBackend::Postgres => "postgres" }),
            "skipped": t.skip,
            "start": match (t.is_herald(), t.store) {
                (true, StoreBackend::Sqlite) => format!("{} --config herald.toml serve", herald_bin.display()),
                (true, StoreBackend::Postgres) => format!("{} --config herald-postgres.toml serve", herald_bin.display()),
                (false, _) => t.start.clone(),
            },
        })).collect::<Vec<_>>(),
        "scenarios": scenarios,
    });
    write_json(&out.join("meta.json"), &meta)?;
    let mut ctx = Ctx {
        args: SuiteArgs { herald_bin, ..args },
        out: out.clone(),
        root,
        next_port: 21_000 + (std::process::id() % 1000) as u16 * 20,
        starts: 0,
        herald_failures: vec![],
        peer_failures: vec![],
        skipped: vec![],
        pg_schemas: vec![],
    };
    let t_all = Instant::now();
    for scenario in &scenarios {
        let mut cases = cases(scenario, mode, ctx.args.max_conns);
        if !ctx.args.cases.is_empty() {
            cases.retain(|c| ctx.args.cases.iter().any(|f| c.name.contains(f.as_str())));
        }
        let mut runs: Vec<Value> = Vec::new();
        let path = out.join(format!("{scenario}.json"));
        for case in &cases {
            if let Some(why) = missing_tool(&case.run) {
                // A load tool that is not installed says nothing about any server: every target
                // is recorded as skipped, loudly, and nothing fails.
                say(format!("\n[suite] SKIPPED {scenario} / {}: {why}", case.name));
                ctx.skipped.push(format!("{scenario} / {}: {why}", case.name));
                for t in targets.iter().filter(|t| case.eligible(t)) {
                    runs.push(
                        json!({"target": t.name, "kind": t.kind.name(), "case": case.name, "params": case.params,
                        "rep": 0, "status": "skipped", "error": why}),
                    );
                }
                write_json(&path, &json!({"scenario": scenario, "runs": runs}))?;
                continue;
            }
            let eligible: Vec<&Target> = targets.iter().filter(|t| case.eligible(t)).collect();
            // Targets found unable to run this case: recorded once, not tried again.
            let mut unsupported: Vec<String> = Vec::new();
            for rep in 0..reps {
                let order: Vec<&Target> =
                    if rep % 2 == 0 { eligible.clone() } else { eligible.iter().rev().copied().collect() };
                for t in order {
                    if unsupported.contains(&t.name) {
                        continue;
                    }
                    let base = json!({"target": t.name, "kind": t.kind.name(), "case": case.name, "params": case.params, "rep": rep});
                    let mut entry = base.clone();
                    let set = |e: &mut Value, k: &str, v: Value| {
                        if let Some(o) = e.as_object_mut() {
                            o.insert(k.into(), v);
                        }
                    };
                    if let Some(why) = &t.not_installed {
                        if rep == 0 {
                            set(&mut entry, "status", json!("not installed"));
                            set(&mut entry, "error", json!(why));
                            runs.push(entry);
                        }
                        continue;
                    }
                    if let Some(why) = &t.skip {
                        // Like a missing load tool: says nothing about the server; loud, not failed.
                        if rep == 0 {
                            say(format!("[suite] SKIPPED {scenario} / {} / {}: {why}", case.name, t.name));
                            ctx.skipped.push(format!("{scenario} / {} / {}: {why}", case.name, t.name));
                            set(&mut entry, "status", json!("skipped"));
                            set(&mut entry, "error", json!(why));
                            runs.push(entry);
                        }
                        continue;
                    }
                    if case.herald_only && !t.is_herald() {
                        if rep == 0 {
                            set(&mut entry, "status", json!("unsupported"));
                            set(
                                &mut entry,
                                "error",
                                json!(match case.run {
                                    CaseRun::Webhook { .. } => "no webhook delivery",
                                    _ => "no durable namespace",
                                }),
                            );
                            runs.push(entry);
                        }
                        continue;
                    }
                    say(format!(
                        "\n[suite] {scenario}: {} | {} | rep {}/{reps} | {:.0}s elapsed | load {}",
                        case.name,
                        t.name,
                        rep + 1,
                        t_all.elapsed().as_secs_f64(),
                        loadavg()
                    ));
                    set(&mut entry, "loadavg_before", json!(loadavg()));
                    let t0 = Instant::now();
                    match run_case(&mut ctx, t, case, rep, dur).await {
                        Ok(r) => {
                            set(&mut entry, "status", json!("ok"));
                            set(&mut entry, "result", r);
                        }
                        Err(e) => {
                            let msg = format!("{e:#}");
                            let unsupported = msg.starts_with("unsupported: ");
                            set(&mut entry, "status", json!(if unsupported { "unsupported" } else { "failed" }));
                            set(&mut entry, "error", json!(msg.trim_start_matches("unsupported: ")));
                            if unsupported {
                                say(format!("[suite] {}: unsupported: {msg}", t.name));
                            } else {
                                say(format!("[suite] {} FAILED: {msg}", t.name));
                                let what = format!("{scenario} / {} / {} / rep {rep}: {msg}", case.name, t.name);
                                if t.is_herald() {
                                    ctx.herald_failures.push(what);
                                } else {
                                    ctx.peer_failures.push(what);
                                }
                            }
                        }
                    }
                    set(&mut entry, "run_secs", json!(round(t0.elapsed().as_secs_f64(), 1)));
                    let skip_later = entry.get("status").and_then(Value::as_str) == Some("unsupported");
                    runs.push(entry);
                    write_json(&path, &json!({"scenario": scenario, "runs": runs}))?;
                    if skip_later {
                        // Unsupported stays unsupported: do not repeat it (the other targets of
                        // this repetition still run).
                        unsupported.push(t.name.clone());
                    }
                }
            }
        }
        write_json(&path, &json!({"scenario": scenario, "runs": runs}))?;
    }
    let _ = std::fs::remove_dir_all(out.join("tmp"));
    let mut meta = meta;
    if let Some(o) = meta.as_object_mut() {
        o.insert("finished_unix".into(), json!(crate::util::unix_secs()));
        o.insert("elapsed_secs".into(), json!(round(t_all.elapsed().as_secs_f64(), 1)));
        o.insert("loadavg_end".into(), json!(loadavg()));
        o.insert("herald_failures".into(), json!(ctx.herald_failures));
        o.insert("peer_failures".into(), json!(ctx.peer_failures));
        o.insert("skipped".into(), json!(ctx.skipped));
    }
    write_json(&out.join("meta.json"), &meta)?;
    say(format!(
        "\n[suite] done in {:.0}s: {} Herald failures, {} peer failures; results in {}",
        t_all.elapsed().as_secs_f64(),
        ctx.herald_failures.len(),
        ctx.peer_failures.len(),
        out.display()
    ));
    for f in ctx.herald_failures.iter().chain(&ctx.peer_failures) {
        say(format!("  FAILED {f}"));
    }
    for s in &ctx.skipped {
        say(format!("  SKIPPED (a load tool or PostgreSQL is missing, not a failure) {s}"));
    }
    if !ctx.herald_failures.is_empty() || (ctx.args.strict && !ctx.peer_failures.is_empty()) {
        bail!("{} Herald run(s) and {} peer run(s) failed", ctx.herald_failures.len(), ctx.peer_failures.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uni_sse_runs_only_the_idle_and_fanout_cases() {
        let bin = Path::new("/nonexistent/herald");
        let ws = herald_target("herald", Codec::Json, Transport::Websocket, bin);
        let pb = herald_target("herald-protobuf", Codec::Protobuf, Transport::Websocket, bin);
        let sse = herald_target("herald-sse", Codec::Json, Transport::UniSse, bin);
        assert_eq!(sse.ws_url, "http://127.0.0.1:{port}/connection/uni_sse");
        let conn = sse.conn(9000);
        assert_eq!(conn.url, "http://127.0.0.1:9000/connection/uni_sse");
        assert_eq!((conn.transport, conn.hmac_secret.as_deref()), (Transport::UniSse, Some(HMAC_SECRET)));
        assert_eq!(ws.conn(9000).hmac_secret, None);
        for mode in [Mode::Quick, Mode::Full] {
            for scenario in SCENARIOS {
                for case in cases(scenario, mode, 19_000) {
                    let expected = matches!(*scenario, "idle" | "fanout");
                    assert_eq!(case.eligible(&sse), expected, "{scenario} / {}", case.name);
                    assert!(case.eligible(&ws), "{scenario} / {}", case.name);
                    assert_eq!(case.eligible(&pb), case.protobuf_too);
                }
            }
        }
        // The server accepts the tokens the clients mint.
        let config = Ctx {
            args: SuiteArgs {
                mode: Mode::Quick,
                herald_bin: bin.into(),
                peers: PathBuf::new(),
                out: PathBuf::new(),
                only: vec![],
                targets: vec![],
                cases: vec![],
                reps: None,
                duration: None,
                no_peers: true,
                strict: false,
                max_conns: 19_000,
                postgres_url: DEFAULT_POSTGRES_URL.into(),
            },
            out: PathBuf::new(),
            root: PathBuf::new(),
            next_port: 0,
            starts: 0,
            herald_failures: vec![],
            peer_failures: vec![],
            skipped: vec![],
            pg_schemas: vec![],
        }
        .herald_config(1, Path::new("/d"), None);
        assert!(config.contains(&format!("[client.token]\nhmac_secret = \"{HMAC_SECRET}\"")), "{config}");
        assert!(!config.contains("postgres"), "{config}");
    }

    fn test_ctx() -> Ctx {
        Ctx {
            args: SuiteArgs {
                mode: Mode::Quick,
                herald_bin: "/nonexistent/herald".into(),
                peers: PathBuf::new(),
                out: PathBuf::new(),
                only: vec![],
                targets: vec![],
                cases: vec![],
                reps: None,
                duration: None,
                no_peers: true,
                strict: false,
                max_conns: 19_000,
                postgres_url: DEFAULT_POSTGRES_URL.into(),
            },
            out: PathBuf::new(),
            root: PathBuf::new(),
            next_port: 0,
            starts: 0,
            herald_failures: vec![],
            peer_failures: vec![],
            skipped: vec![],
            pg_schemas: vec![],
        }
    }

    #[test]
    fn postgres_target_runs_only_durable_publishes_and_webhooks_and_few_in_quick() {
        let bin = Path::new("/nonexistent/herald");
        let mut pg = herald_target(POSTGRES_TARGET, Codec::Json, Transport::Websocket, bin);
        pg.store = StoreBackend::Postgres;
        let sqlite = herald_target("herald", Codec::Json, Transport::Websocket, bin);
        for mode in [Mode::Quick, Mode::Full] {
            let mut pg_cases = Vec::new();
            for scenario in SCENARIOS {
                for case in cases(scenario, mode, 19_000) {
                    if case.eligible(&pg) {
                        // Every PostgreSQL row has its SQLite row in the same run.
                        assert!(case.eligible(&sqlite), "{scenario} / {}", case.name);
                        match &case.run {
                            CaseRun::Api { namespace, .. } => assert_eq!(namespace, "durable:"),
                            CaseRun::Webhook { .. } => {}
                            other => panic!("{scenario} / {}: {other:?} on PostgreSQL", case.name),
                        }
                        pg_cases.push(format!("{scenario} / {}", case.name));
                    }
                }
            }
            match mode {
                // CI: two short runs.
                Mode::Quick => {
                    assert_eq!(pg_cases, ["api / durable, herald-bench", "webhook / max, unordered"]);
                }
                Mode::Full => {
                    assert!(pg_cases.contains(&"api / durable, wrk".to_string()), "{pg_cases:?}");
                    assert!(pg_cases.contains(&"webhook / 1000/s".to_string()), "{pg_cases:?}");
                    assert!(pg_cases.contains(&"webhook / 1000/s, unordered".to_string()), "{pg_cases:?}");
                    assert_eq!(pg_cases.len(), 7, "{pg_cases:?}");
                }
            }
        }
        // The unordered cases really ask for parallel deliveries.
        let unordered = cases("webhook", Mode::Quick, 19_000).into_iter().find(|c| c.name == "max, unordered");
        assert!(matches!(unordered.map(|c| c.run), Some(CaseRun::Webhook { concurrency: UNORDERED_CONCURRENCY, .. })));
    }

    #[test]
    fn postgres_config_has_its_own_schema_per_start() {
        let mut ctx = test_ctx();
        ctx.out = std::env::temp_dir().join(format!("herald-bench-suite-pg-{}", std::process::id()));
        std::fs::create_dir_all(&ctx.out).expect("tmp dir");
        let mut pg = herald_target(POSTGRES_TARGET, Codec::Json, Transport::Websocket, Path::new("/x/herald"));
        pg.store = StoreBackend::Postgres;
        ctx.start_command(&pg, 21_000).expect("command");
        ctx.start_command(&pg, 21_002).expect("command");
        let conf = std::fs::read_to_string(ctx.out.join("tmp/herald-21000.toml")).expect("config");
        let _ = std::fs::remove_dir_all(&ctx.out);
        let pid = std::process::id();
        assert_eq!(ctx.pg_schemas, [format!("herald_bench_{pid}_21000"), format!("herald_bench_{pid}_21002")]);
        let store = conf.split("[store]\n").nth(1).and_then(|s| s.split("\n\n").next()).expect("[store]");
        assert_eq!(
            store,
            format!(
                "backend = \"postgres\"\npostgres_url = \"{DEFAULT_POSTGRES_URL}\"\npostgres_schema = \"herald_bench_{pid}_21000\"\ndata_dir = \"{}\"",
                ctx.out.join("tmp/data-21000").display()
            )
        );
        // Herald accepts it: a-z, 0-9 and _, at most 63, not starting with a digit.
        let s = bench_schema(u32::MAX, u16::MAX);
        assert!(s.len() <= 63 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{s}");
    }

    #[test]
    fn unreachable_postgres_is_a_skip_reason() {
        if !on_path("psql") {
            assert!(postgres_unreachable(DEFAULT_POSTGRES_URL).is_some_and(|w| w.contains("psql")));
            return;
        }
        // Nothing listens on port 1.
        let why = postgres_unreachable("postgres://postgres@127.0.0.1:1/test").expect("unreachable");
        assert!(why.contains("unreachable"), "{why}");
        let t = herald_postgres_target(Path::new("/x/herald"), "postgres://bench:secret@127.0.0.1:1/test");
        assert!(t.skip.is_some());
        assert!(!t.notes.contains("secret") && t.notes.contains("bench:***@127.0.0.1:1"), "{}", t.notes);
    }

    #[test]
    fn a_case_whose_tool_is_missing_is_skipped_not_failed() {
        assert!(on_path("sh"), "sh is on every PATH this runs on");
        assert!(!on_path("herald-no-such-tool-3f9a"));
        let wrk_case = CaseRun::Api { namespace: String::new(), label: "ephemeral".into(), wrk: true };
        assert_eq!(missing_tool(&wrk_case).is_some(), !on_path("wrk"));
        let own_case = CaseRun::Api { namespace: String::new(), label: "ephemeral".into(), wrk: false };
        assert!(missing_tool(&own_case).is_none(), "herald-bench's own client needs no tool");
    }
}
