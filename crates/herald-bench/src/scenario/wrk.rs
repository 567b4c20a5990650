//! `wrk`: the same publish load as `api`, driven by `wrk` (a second, independent load tool).
//! The publish requests (one per channel, round-robin) are rendered here exactly as `api` sends
//! them and embedded into a generated Lua script as raw HTTP/1.1 requests; wrk's summary
//! (`--latency`) is parsed into the same JSON shape.
//! wrk does not read bodies, so a 200 carrying `{"error":..}` would count as success; `api`
//! checks every body and is the figure to trust for correctness.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};

use super::api::usage_json;
use super::fanout::PublishBody;
use crate::args::ConnArgs;
use crate::procfs::Snapshot;
use crate::report::say;
use crate::util::{parse_duration, round, unix_nanos};

#[derive(Args, Debug, Clone)]
pub struct WrkArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub api: String,
    #[arg(long, env = "HERALD_BENCH_API_KEY", default_value = "")]
    pub api_key: String,
    #[arg(long, default_value = "wrk")]
    pub wrk: String,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value_t = 256)]
    pub conns: usize,
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value_t = 64)]
    pub channels: usize,
    #[arg(long, default_value = "")]
    pub namespace: String,
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long, default_value = "")]
    pub label: String,
    /// Where to write the generated Lua script (default: a temporary file).
    #[arg(long)]
    pub script: Option<PathBuf>,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A Lua string literal holding arbitrary bytes.
pub fn lua_quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 16);
    s.push('"');
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\{b:03}")),
        }
    }
    s.push('"');
    s
}

/// `4.23ms` / `812.00us` / `1.20s` in milliseconds.
pub fn parse_wrk_time(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mul) = if let Some(v) = s.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60_000.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, 1000.0)
    };
    num.parse::<f64>().ok().map(|v| v * mul)
}

/// Parses wrk's `--latency` summary.
pub fn parse_wrk_output(text: &str) -> Value {
    let mut rps = None;
    let mut requests = None;
    let mut non2xx = 0u64;
    let mut socket_errors = String::new();
    let mut pct = serde_json::Map::new();
    let mut mean = None;
    let mut in_dist = false;
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if l.starts_with("Latency Distribution") {
            in_dist = true;
        } else if in_dist && l.contains('%') && l.split_whitespace().count() == 2 {
            let mut it = l.split_whitespace();
            let (p, v) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
            let key = match p.trim_end_matches('%') {
                "50" | "50.000" => "p50_ms",
                "75" | "75.000" => "p75_ms",
                "90" | "90.000" => "p90_ms",
                "99" | "99.000" => "p99_ms",
                _ => continue,
            };
            if let Some(ms) = parse_wrk_time(v) {
                pct.insert(key.into(), json!(round(ms, 3)));
            }
        } else if l.starts_with("Latency ") && mean.is_none() {
            mean = l.split_whitespace().nth(1).and_then(parse_wrk_time);
        } else if l.contains(" requests in ") {
            in_dist = false;
            requests = l.split_whitespace().next().and_then(|v| v.parse::<u64>().ok());
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            non2xx = v.trim().parse().unwrap_or(0);
        } else if l.starts_with("Socket errors:") {
            socket_errors = l.to_string();
        }
    }
    if let Some(m) = mean {
        pct.insert("mean_ms".into(), json!(round(m, 3)));
    }
    json!({
        "requests_per_s": rps,
        "requests": requests,
        "non_2xx": non2xx,
        "socket_errors": socket_errors,
        "latency": Value::Object(pct),
    })
}

pub async fn run(args: WrkArgs) -> Result<Value> {
    let target = args.conn.pub_target(&args.api, &args.api_key).await?;
    let body = PublishBody::new(args.payload_bytes);
    let mut lua = String::from("-- generated by herald-bench wrk\nlocal reqs = {\n");
    let (mut b, mut req) = (Vec::new(), Vec::new());
    for k in 0..args.channels.max(1) {
        body.render(unix_nanos(), &mut b);
        target.render(&format!("{}bench-{k}", args.namespace), &b, &None, &mut req);
        lua.push_str("  ");
        lua.push_str(&lua_quote(&req));
        lua.push_str(",\n");
    }
    lua.push_str("}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return reqs[(i % #reqs) + 1]\nend\n");
    let script = match &args.script {
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("herald-bench-wrk-{}.lua", std::process::id())),
    };
    std::fs::write(&script, &lua).with_context(|| format!("writing {}", script.display()))?;
    let url = format!("http://{}/", target.base.host);
    let cmdline = format!(
        "{} -t{} -c{} -d{}s --latency -s {} {url}",
        args.wrk,
        args.threads,
        args.conns,
        args.duration.as_secs_f64().ceil(),
        script.display()
    );
    say(format!("[wrk] {} ({}): {cmdline}", args.conn.describe(), args.label));
    let s0 = Snapshot::take(args.server_pid);
    let t0 = Instant::now();
    let out = tokio::process::Command::new(&args.wrk)
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.conns))
        .arg(format!("-d{}s", args.duration.as_secs_f64().ceil() as u64))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(&url)
        .output()
        .await
        .map_err(|e| anyhow!("running {}: {e}", args.wrk))?;
    let wall = t0.elapsed().as_secs_f64();
    let s1 = Snapshot::take(args.server_pid);
    if args.script.is_none() {
        let _ = std::fs::remove_file(&script);
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("wrk failed ({}): {}{}", out.status, text, String::from_utf8_lossy(&out.stderr));
    }
    let parsed = parse_wrk_output(&text);
    let requests = parsed.get("requests").and_then(Value::as_u64).unwrap_or(0);
    let (server, bench, machine) = usage_json(&s0, &s1, wall, requests, "request");
    let result = json!({
        "scenario": "api",
        "target": args.conn.describe(),
        "label": args.label,
        "tool": "wrk",
        "command": cmdline,
        "conns": args.conns,
        "channels": args.channels,
        "namespace": args.namespace,
        "requests_per_s": parsed["requests_per_s"],
        "requests_ok": requests.saturating_sub(parsed["non_2xx"].as_u64().unwrap_or(0)),
        "requests_failed": parsed["non_2xx"],
        "socket_errors": parsed["socket_errors"],
        "latency": parsed["latency"],
        "server": server,
        "bench": bench,
        "machine": machine,
        "wrk_output": text,
    });
    say(format!(
        "== wrk ({}): {} req/s, p50 {} ms, p99 {} ms, non-2xx {}",
        args.label,
        crate::report::show(result.get("requests_per_s")),
        crate::report::show(result.pointer("/latency/p50_ms")),
        crate::report::show(result.pointer("/latency/p99_ms")),
        crate::report::show(result.get("requests_failed")),
    ));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk() {
        let text = "Running 8s test @ http://127.0.0.1:8000/\n  1 threads and 256 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     4.23ms    1.02ms  20.00ms   85.00%\n    Req/Sec    59.01k     2.00k   62.00k    80.00%\n  Latency Distribution\n     50%    4.10ms\n     75%  812.00us\n     90%    5.00ms\n     99%    1.20s\n  472190 requests in 8.00s, 53.12MB read\n  Non-2xx or 3xx responses: 12\nRequests/sec:  59012.34\nTransfer/sec:      6.64MB\n";
        let v = parse_wrk_output(text);
        assert_eq!(v["requests_per_s"], json!(59012.34));
        assert_eq!(v["requests"], json!(472190));
        assert_eq!(v["non_2xx"], json!(12));
        assert_eq!(v["latency"]["p50_ms"], json!(4.1));
        assert_eq!(v["latency"]["p75_ms"], json!(0.812));
        assert_eq!(v["latency"]["p99_ms"], json!(1200.0));
        assert_eq!(v["latency"]["mean_ms"], json!(4.23));
    }

    #[test]
    fn quotes_lua() {
        assert_eq!(lua_quote(b"a\"b\\\r\n"), "\"a\\\"b\\\\\\013\\010\"");
    }
}
