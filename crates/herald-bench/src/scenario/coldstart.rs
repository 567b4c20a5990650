//! `coldstart`: exec → first `200` from the readiness URL, repeated; idle RSS after start;
//! binary size (as built and stripped).
//!
//! The command runs through `sh -c 'exec <cmd>'`, so the measured process is the server itself
//! (peers' start scripts `exec` their server). Readiness is polled over a fresh TCP connection
//! every 0.5 ms; the figure includes the shell's exec (about a millisecond).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::procfs;
use crate::report::say;
use crate::util::{parse_duration, round};

#[derive(Args, Debug, Clone)]
pub struct ColdstartArgs {
    /// Shell command starting the server in the foreground.
    #[arg(long)]
    pub cmd: String,
    /// Readiness URL (`http://host:port/path`), polled until it answers 200.
    #[arg(long)]
    pub ready: String,
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Binary whose size to report (and strip a copy of).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Idle time after ready before the "idle RSS" sample.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[arg(long, default_value = "")]
    pub target: String,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Split `http://host:port/path` into host and path (`/` when absent).
pub(crate) fn split_http_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// One GET over a fresh connection; the status code.
pub(crate) async fn probe(addr: std::net::SocketAddr, host: &str, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = [0u8; 64];
    let mut have = 0;
    while have < 12 {
        let n = s.read(&mut buf[have..]).await.ok()?;
        if n == 0 {
            break;
        }
        have += n;
    }
    std::str::from_utf8(&buf[..have]).ok()?.split_whitespace().nth(1)?.parse().ok()
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

pub async fn run(args: ColdstartArgs) -> Result<Value> {
    let (host, path) = split_http_url(&args.ready).ok_or_else(|| anyhow!("--ready must be http://"))?;
    let addr = tokio::net::lookup_host(host).await?.next().ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
    let mut ready_ms = Vec::new();
    let mut rss_ready = Vec::new();
    let mut rss_idle = Vec::new();
    let mut errors = Vec::new();
    say(format!("[coldstart] {} x `{}` until {} answers 200", args.reps, args.cmd, args.ready));
    for rep in 0..args.reps {
        // The port must be free (the previous server gone).
        let wait_free = Instant::now();
        while probe(addr, host, path).await.is_some() && wait_free.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", args.cmd))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawning the server")?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let mut ready = None;
        while t0.elapsed() < args.timeout {
            if probe(addr, host, path).await == Some(200) {
                ready = Some(t0.elapsed());
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                errors.push(format!("rep {rep}: exited with {st} before ready"));
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        match ready {
            Some(d) => {
                ready_ms.push(d.as_secs_f64() * 1e3);
                if let Ok(m) = procfs::mem(Some(pid)) {
                    rss_ready.push(m.rss as f64);
                }
                tokio::time::sleep(args.settle).await;
                if let Ok(m) = procfs::mem(Some(pid)) {
                    rss_idle.push(m.rss as f64);
                }
                say(format!(
                    "[coldstart] rep {rep}: ready in {:.1} ms, idle rss {}",
                    d.as_secs_f64() * 1e3,
                    rss_idle.last().map(|r| crate::util::human_bytes(*r)).unwrap_or_else(|| "-".into())
                ));
            }
            None if errors.len() <= rep => errors.push(format!("rep {rep}: not ready within {:?}", args.timeout)),
            None => {}
        }
        terminate(pid);
        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
    if ready_ms.is_empty() {
        bail!("never became ready: {}", errors.join("; "));
    }
    let binary = match &args.binary {
        Some(b) => {
            let size = std::fs::metadata(b).map(|m| m.len()).ok();
            let tmp = std::env::temp_dir().join(format!("herald-bench-strip-{}", std::process::id()));
            let stripped = std::process::Command::new("strip")
                .arg("-o")
                .arg(&tmp)
                .arg(b)
                .status()
                .ok()
                .filter(|s| s.success())
                .and_then(|_| std::fs::metadata(&tmp).ok())
                .map(|m| m.len());
            let _ = std::fs::remove_file(&tmp);
            json!({"path": b, "bytes": size, "stripped_bytes": stripped})
        }
        None => Value::Null,
    };
    let min = ready_ms.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ready_ms.iter().copied().fold(0.0, f64::max);
    let result = json!({
        "scenario": "coldstart",
        "target": args.target,
        "command": args.cmd,
        "reps": args.reps,
        "ready_ms": ready_ms.iter().map(|v| round(*v, 2)).collect::<Vec<_>>(),
        "ready_ms_median": median(&mut ready_ms.clone()).map(|v| round(v, 2)),
        "ready_ms_min": round(min, 2),
        "ready_ms_max": round(max, 2),
        "rss_ready_bytes_median": median(&mut rss_ready),
        "rss_idle_bytes_median": median(&mut rss_idle),
        "binary": binary,
        "errors": errors,
    });
    say(format!(
        "== coldstart {}: ready median {} ms (min {}, max {}), idle rss {}",
        args.target,
        crate::report::show(result.get("ready_ms_median")),
        round(min, 2),
        round(max, 2),
        result.get("rss_idle_bytes_median").and_then(Value::as_f64).map(crate::util::human_bytes).unwrap_or_default()
    ));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
