//! The binary as an operator meets it: what `herald serve` writes to a pipe, and what
//! `herald config check` says of a config moved over from Centrifugo.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A secret as short as the SDKs' own test setups use (`secret`); the tests check it never
/// appears in what the binary prints.
const SHORT_SECRET: &str = "shh-42";

fn write_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("herald.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\ndata_dir = \"{}\"\n[client.token]\nhmac_secret = \"{SHORT_SECRET}\"\n",
        dir.join("data").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn config_check_accepts_a_short_hmac_secret_with_a_warning() {
    let dir = temp_dir("check");
    let config = write_config(&dir, 8000);
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--config", config.to_str().expect("utf-8 path"), "config", "check"])
        .output()
        .expect("herald runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "a short secret is accepted: {stdout} {stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(stderr.contains("warning: client.token.hmac_secret is shorter than 32 bytes"), "{stderr}");
    assert!(!stderr.contains(SHORT_SECRET) && !stdout.contains(SHORT_SECRET), "the secret is never printed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_logs_to_a_pipe_without_colour_and_warns_of_a_weak_secret() {
    let dir = temp_dir("serve");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config = write_config(&dir, port);
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--config", config.to_str().expect("utf-8 path"), "serve"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald starts");
    // Wait until it listens (SIGTERM is handled from before it binds), then stop it with
    // SIGTERM and read everything it logged.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "herald did not start listening");
        assert!(child.try_wait().expect("status").is_none(), "herald exited during startup");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let mut logs = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut logs).expect("read logs");
    let status = child.wait().expect("herald exits");
    assert!(status.success(), "SIGTERM drains and exits 0: {logs}");
    assert!(logs.contains("Herald is listening."), "{logs}");
    assert!(!logs.contains('\u{1b}'), "no ANSI escape codes in logs written to a pipe: {logs:?}");
    assert!(logs.contains("client.token.hmac_secret is shorter than 32 bytes"), "{logs}");
    assert!(!logs.contains(SHORT_SECRET), "the secret is never logged");
    let _ = std::fs::remove_dir_all(&dir);
}
