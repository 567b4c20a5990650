//! A PostgreSQL outage under a running node (issue 10): while the database is down, `/readyz`
//! fails and webhook message creation answers 503 with a JSON error and acknowledges nothing;
//! when the database is back the node recovers by itself, and every message it acknowledged is
//! delivered.
//!
//! The test starts its own PostgreSQL (`initdb` and `pg_ctl` from `/usr/lib/postgresql/*/bin`)
//! in a temporary folder on a port of its own, never the machine's shared one. As root it runs
//! them as the `postgres` user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::{Node, free_port};

mod support;

const JWT_SECRET: &str = "outage-test-management-secret-0123456789";

/// The newest installed PostgreSQL's programs.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL with pg_ctl")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// Run a PostgreSQL program, as `postgres` when we are root.
fn pg(program: &str, args: &[&str]) -> std::process::ExitStatus {
    let path = pg_bin().join(program);
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    };
    command.args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("PostgreSQL program runs")
}

/// A private PostgreSQL cluster in a temporary folder.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn init() -> Self {
        let dir = std::env::temp_dir().join(format!("herald-pg-outage-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("dir");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().expect("chown");
            assert!(status.success(), "chown the private cluster's folder");
        }
        let data = dir.join("data");
        let status =
            pg("initdb", &["-D", data.to_str().expect("utf-8"), "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        assert!(status.success(), "initdb");
        let cluster = Self { dir, port: free_port() };
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn start(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let log = self.dir.join("postgres.log").display().to_string();
        let status = pg("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "start"]);
        assert!(status.success(), "pg_ctl start");
    }

    fn stop(&self) {
        let status = pg("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert!(status.success(), "pg_ctl stop");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = pg("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_node(dir: &Path, url: &str) -> Node {
    let port = free_port();
    let config = format!(
        r#"
                [server]
                listen = "127.0.0.1:{port}"
                readiness_timeout = "1s"
                [store]
                backend = "postgres"
                postgres_url = "{url}"
                connect_timeout = "1s"
                statement_timeout = "2s"
                [management]
                jwt_secret = "{JWT_SECRET}"
                [webhooks]
                allow_networks = ["127.0.0.0/8"]
                poll_interval = "200ms"
                retry_schedule = ["200ms", "200ms", "200ms", "200ms", "200ms", "1s", "1s", "1s"]
                retry_jitter = 0.0
                "#
    );
    Node::start(dir, "herald", port, &config, "error", Duration::from_secs(30)).await
}

async fn management(http: &reqwest::Client, base: &str, path: &str, body: Value) -> reqwest::Response {
    support::management(http, base, JWT_SECRET, "org_outage", path, body).await.expect("node reachable")
}

async fn receive(State(ids): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap) -> StatusCode {
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        ids.lock().push(id.to_owned());
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_refuses_writes_with_503_and_the_node_recovers_by_itself() {
    herald_webhooks::install_crypto_provider();
    let postgres = PrivatePostgres::init();
    let received = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let node = start_node(&postgres.dir, &postgres.url()).await;
    let http = reqwest::Client::new();
    assert_eq!(management(&http, &node.base, "/app", json!({ "name": "Outage", "uid": "outage" })).await.status(), 201);
    assert_eq!(management(&http, &node.base, "/app/outage/endpoint", json!({ "url": hook })).await.status(), 201);
    let mut acked = Vec::new();
    let message = |n: u32| json!({ "eventType": "outage.test", "payload": { "n": n } });
    let response = management(&http, &node.base, "/app/outage/msg", message(1)).await;
    assert_eq!(response.status(), 202);
    acked.push(response.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned());

    // Down: not ready, and writes are refused with 503 and a JSON error.
    postgres.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.ready().await {
        assert!(tokio::time::Instant::now() < deadline, "/readyz still ready with the database down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 2..=3 {
        let response = management(&http, &node.base, "/app/outage/msg", message(n)).await;
        assert_eq!(response.status(), 503, "a write during the outage");
        let body: Value = response.json().await.expect("a JSON error body");
        assert_eq!(body["code"], "service_unavailable", "{body}");
    }

    // Back: the node recovers by itself; writes are acknowledged again.
    postgres.start();
    node.wait_ready(Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = management(&http, &node.base, "/app/outage/msg", message(4)).await;
        if response.status() == 202 {
            acked.push(response.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "writes still refused after the database came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every acknowledged message is delivered; the refused ones were never stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.iter().any(|id| !received.lock().contains(id)) {
        assert!(tokio::time::Instant::now() < deadline, "acknowledged messages not delivered: {acked:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = herald_svix::mint_token(JWT_SECRET, "org_outage");
    let listed: Value = http
        .get(format!("{}/api/v1/app/outage/msg", node.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let stored = listed["data"].as_array().expect("messages").len();
    assert_eq!(stored, acked.len(), "only acknowledged messages are stored: {listed}");
}
