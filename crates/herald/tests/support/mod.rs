//! What the tests that drive the `herald` binary share: a free port, a node started as a child
//! process from a config and waited on until `/readyz` answers, and management API calls.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A `herald serve` child process. Killed (SIGKILL) when dropped.
pub struct Node {
    pub child: Child,
    pub base: String,
}

impl Node {
    /// Write `config` to `<dir>/<name>.toml`, start `herald serve` with it (it must listen on
    /// 127.0.0.1:`port`) and wait up to `within` until it is ready. `rust_log` sets its log level.
    pub async fn start(dir: &Path, name: &str, port: u16, config: &str, rust_log: &str, within: Duration) -> Node {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--config", path.to_str().expect("utf-8 path"), "serve"])
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("herald starts");
        let node = Node { child, base: format!("http://127.0.0.1:{port}") };
        node.wait_ready(within).await;
        node
    }

    pub async fn ready(&self) -> bool {
        let response = reqwest::Client::new().get(format!("{}/readyz", self.base)).send().await;
        response.is_ok_and(|r| r.status().is_success())
    }

    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.ready().await {
            assert!(tokio::time::Instant::now() < deadline, "herald at {} did not become ready", self.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST to the management API (`/api/v1<path>`) with a token for `org` signed by `secret`.
pub async fn management(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    org: &str,
    path: &str,
    body: Value,
) -> reqwest::Result<reqwest::Response> {
    let token = herald_svix::mint_token(secret, org);
    http.post(format!("{base}/api/v1{path}")).bearer_auth(token).json(&body).send().await
}
