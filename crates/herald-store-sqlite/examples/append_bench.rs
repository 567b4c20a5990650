//! Durable append throughput of the SQLite store: many publisher tasks appending to durable
//! channels at once, each append acknowledged only once committed (fsync'd).
//!
//! `cargo run --release --example append_bench -p herald-store-sqlite -- [--tasks 64] [--inflight 16]
//! [--per-call 1] [--channels 64] [--seconds 5] [--dir PATH]`
//!
//! `--inflight` is how many appends each publisher task keeps outstanding (like a server task
//! that publishes for many clients); `--per-call` how many publications one append carries.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_store::roles::*;
use herald_store::{NewPublication, now_ms};
use herald_store_sqlite::{SqliteConfig, SqliteStore};

struct Args {
    tasks: usize,
    inflight: usize,
    per_call: usize,
    channels: usize,
    seconds: u64,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { tasks: 64, inflight: 16, per_call: 1, channels: 64, seconds: 5, dir: None };
    let mut it = std::env::args();
    it.next(); // the program name
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--tasks" => args.tasks = number()?,
            "--inflight" => args.inflight = number()?,
            "--per-call" => args.per_call = number()?,
            "--channels" => args.channels = number()?,
            "--seconds" => args.seconds = number()? as u64,
            "--dir" => args.dir = Some(PathBuf::from(&value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("herald-append-bench-{}-{}", std::process::id(), now_ms()))
    });
    let config = SqliteConfig::new(dir.join("herald.db"));
    let store = SqliteStore::open(&config).map_err(|e| e.to_string())?;
    let payload = Bytes::from(format!(r#"{{"text":"{}","n":12345}}"#, "x".repeat(100)));

    let appended = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for task in 0..args.tasks {
        let (store, payload, appended) = (store.clone(), payload.clone(), appended.clone());
        let (inflight, per_call, channels) = (args.inflight.max(1), args.per_call.max(1), args.channels.max(1));
        publishers.spawn(async move {
            let channel = format!("bench:{}", task % channels);
            let mut outstanding = tokio::task::JoinSet::new();
            while Instant::now() < deadline {
                while outstanding.len() < inflight {
                    let store = store.clone();
                    let batch: Vec<NewPublication> = (0..per_call)
                        .map(|_| NewPublication {
                            channel: channel.clone(),
                            data: payload.clone(),
                            info: None,
                            tags: BTreeMap::new(),
                            created_at: now_ms(),
                        })
                        .collect();
                    outstanding.spawn(async move { store.append_publications(batch).await.map(|p| p.len()) });
                }
                if let Some(done) = outstanding.join_next().await {
                    let n = done.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
                    appended.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            while let Some(done) = outstanding.join_next().await {
                let n = done.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
                appended.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = publishers.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = appended.load(Ordering::Relaxed);
    println!(
        "tasks={} inflight={} per_call={} channels={} appended={} in {:.2}s: {:.0} durable events/s",
        args.tasks,
        args.inflight,
        args.per_call,
        args.channels,
        total,
        elapsed,
        total as f64 / elapsed
    );
    drop(store);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
