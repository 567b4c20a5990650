//! `idle`: how much server memory an idle (connected + subscribed) client costs, and how fast
//! the server accepts connections.
//!
//! RSS of the server is sampled before dialing, right after the last connection is up, after
//! holding them idle for `--hold` (the figure used for bytes/connection), and `--close-wait` after
//! closing them. With `--procs K` the connections are opened by K child processes (each
//! process may hold at most ~20,000 descriptors); the parent samples the server and aggregates.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::{
    DialCounters, DialPlan, IdleHandler, check_fd_budget, dial_many, resolve_source_ips, spawn_groups, sse_client,
};
use crate::args::{IdleArgs, SourceIps};
use crate::centrifugo::{Session, Target};
use crate::procfs::{self, Snapshot};
use crate::report::{ErrorSample, Progress, say};
use crate::util::{human_bytes, round, split_even};

/// Connections per driving task while holding.
const HOLD_GROUP: usize = 256;

/// Dial `args.conns` connections, numbered from `index_offset` (so child processes of a
/// multi-process run use distinct channels).
fn dial_plan(args: &IdleArgs, target: Target, source_ips: u32, index_offset: usize) -> Result<DialPlan> {
    Ok(DialPlan {
        sse: sse_client(&args.conn, &target)?,
        target,
        index_offset,
        count: args.conns,
        source_ips,
        concurrency: args.conn.connect_concurrency,
        timeout: args.conn.connect_timeout,
        session: session_factory(args),
        proto: Arc::new(args.conn.proto()),
    })
}

fn session_factory(args: &IdleArgs) -> Arc<dyn Fn(usize) -> Session + Send + Sync> {
    let token = args.conn.token.clone();
    let prefix = args.channel_prefix.clone();
    let (shared, none) = (args.shared_channel, args.no_subscribe);
    Arc::new(move |i| Session {
        token: token.clone(),
        channels: if none {
            vec![]
        } else if shared {
            vec![prefix.clone()]
        } else {
            vec![format!("{prefix}-{i}")]
        },
    })
}

fn subscribe_mode(args: &IdleArgs) -> &'static str {
    if args.no_subscribe {
        "none"
    } else if args.shared_channel {
        "shared"
    } else {
        "own"
    }
}

fn rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| procfs::mem(Some(p)).ok()).map(|m| m.rss)
}

/// Runs the scenario in this process, or over `--procs` children.
pub async fn run(args: IdleArgs) -> Result<Value> {
    if args.conns == 0 {
        bail!("--conns must be at least 1");
    }
    if args.procs > 1 {
        return run_parent(args).await;
    }
    check_fd_budget(args.conns, "use --procs K to split the connections over several processes")?;
    let target = Target::resolve(&args.conn.url).await?;
    let source_ips = resolve_source_ips(args.conn.source_ips, &target, args.conns);
    let pid = args.server_pid;
    let before = Snapshot::take(pid);
    say(format!(
        "[idle] opening {} connections to {} (subscribe: {}, source ips: {source_ips}, concurrency {})",
        args.conns,
        args.conn.url,
        subscribe_mode(&args),
        args.conn.connect_concurrency
    ));

    let counters = Arc::new(DialCounters::default());
    let progress = {
        let c = counters.clone();
        let n = args.conns;
        let mut last = 0;
        Progress::start(move |t| {
            let now = c.connected.load(Ordering::Relaxed);
            let line = format!(
                "[idle] {:>4.0}s connected {now}/{n} (+{}/s) failed {} server rss {}",
                t.as_secs_f64(),
                now - last,
                c.failed.load(Ordering::Relaxed),
                rss(pid).map(|r| human_bytes(r as f64)).unwrap_or_else(|| "-".into())
            );
            last = now;
            Some(line)
        })
    };
    let plan = dial_plan(&args, target, source_ips, 0)?;
    let outcome = dial_many(plan, counters).await;
    drop(progress);
    let connected_snap = Snapshot::take(pid);
    let connected = outcome.conns.len();
    let connect_secs = outcome.elapsed.as_secs_f64();
    say(format!(
        "[idle] {connected} connected, {} failed in {connect_secs:.2}s ({:.0}/s)",
        outcome.failed,
        connected as f64 / connect_secs.max(1e-9)
    ));
    if !outcome.errors.is_empty() {
        say(format!("[idle] connect errors:\n{}", outcome.errors));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let closed = Arc::new(AtomicU64::new(0));
    let mut groups = {
        let proto = Arc::new(args.conn.proto());
        let pong = proto.pong();
        spawn_groups(outcome.conns, connected.div_ceil(HOLD_GROUP), &stop_rx, &closed, pong, move || IdleHandler {
            frames: 0,
            proto: proto.clone(),
        })
    };
    let mut peak_rss = connected_snap.server_mem.map(|m| m.rss).unwrap_or(0);
    hold(args.hold, pid, &closed, &mut peak_rss).await;
    let after = Snapshot::take(pid);
    let _ = stop_tx.send(true);
    let mut pongs = 0;
    let mut closed_cleanly = 0;
    let mut hold_errors = ErrorSample::default();
    while let Some(r) = groups.join_next().await {
        if let Ok((_, stats)) = r {
            pongs += stats.pongs_sent;
            closed_cleanly += stats.closed_cleanly;
            hold_errors.merge(stats.errors);
        }
    }
    drop(groups);
    tokio::time::sleep(args.close_wait).await;
    let after_close = Snapshot::take(pid);

    let result = build_result(
        &args,
        source_ips,
        Counts { connected, failed: outcome.failed, pongs, dropped: closed.load(Ordering::Relaxed), closed_cleanly },
        connect_secs,
        &[],
        Snaps { before, connected: connected_snap, after, after_close, peak_rss },
        outcome.errors,
        hold_errors,
    );
    summarize(&result);
    Ok(result)
}

/// Holds for `hold`, printing RSS once per second and noting its peak.
async fn hold(hold: Duration, pid: Option<u32>, closed: &AtomicU64, peak_rss: &mut u64) {
    say(format!("[idle] holding idle for {:.1}s", hold.as_secs_f64()));
    let start = Instant::now();
    while start.elapsed() < hold {
        let left = hold.saturating_sub(start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        let r = rss(pid);
        if let Some(r) = r {
            *peak_rss = (*peak_rss).max(r);
        }
        say(format!(
            "[idle] {:>4.0}s holding, server rss {}, dropped {}",
            start.elapsed().as_secs_f64(),
            r.map(|r| human_bytes(r as f64)).unwrap_or_else(|| "-".into()),
            closed.load(Ordering::Relaxed)
        ));
    }
}

struct Counts {
    connected: usize,
    failed: usize,
    pongs: u64,
    dropped: u64,
    closed_cleanly: u64,
}

struct Snaps {
    before: Snapshot,
    connected: Snapshot,
    after: Snapshot,
    after_close: Snapshot,
    peak_rss: u64,
}

#[allow(clippy::too_many_arguments)]
fn build_result(
    args: &IdleArgs,
    source_ips: u32,
    counts: Counts,
    connect_secs: f64,
    children: &[Value],
    s: Snaps,
    connect_errors: ErrorSample,
    hold_errors: ErrorSample,
) -> Value {
    let rss_of = |s: &Snapshot| s.server_mem.map(|m| m.rss);
    let n = counts.connected.max(1) as f64;
    let server = match (rss_of(&s.before), rss_of(&s.after)) {
        (Some(b), Some(a)) => {
            let cpu_connect = s.connected.server_cpu.zip(s.before.server_cpu).map(|(x, y)| x - y);
            json!({
                "pid": args.server_pid,
                "rss_before_bytes": b,
                "rss_connected_bytes": rss_of(&s.connected),
                "rss_after_hold_bytes": a,
                "rss_after_close_bytes": rss_of(&s.after_close),
                "rss_peak_sampled_bytes": s.peak_rss.max(a),
                "hwm_bytes": s.after.server_mem.map(|m| m.hwm),
                "rss_delta_bytes": a as i64 - b as i64,
                "bytes_per_conn": round((a as f64 - b as f64) / n, 0),
                "bytes_per_conn_right_after_connect": rss_of(&s.connected).map(|c| round((c as f64 - b as f64) / n, 0)),
                "cpu_secs_connect": cpu_connect.map(|c| round(c, 3)),
                "cpu_us_per_connect": cpu_connect.map(|c| round(c * 1e6 / n, 1)),
                "fds_before": s.before.server_fds,
                "fds_connected": s.connected.server_fds,
                "fds_after_close": s.after_close.server_fds,
                "cpu_secs_hold": s.after.server_cpu.zip(s.connected.server_cpu).map(|(x, y)| round(x - y, 3)),
            })
        }
        _ => Value::Null,
    };
    json!({
        "scenario": "idle",
        "target": args.conn.describe(),
        "transport": args.conn.transport,
        "url": args.conn.url,
        "conns_requested": args.conns,
        "connected": counts.connected,
        "failed": counts.failed,
        "procs": args.procs.max(1),
        "source_ips": source_ips,
        "subscribe": subscribe_mode(args),
        "connect_secs": round(connect_secs, 3),
        "connect_rate_per_s": round(counts.connected as f64 / connect_secs.max(1e-9), 1),
        "hold_secs": args.hold.as_secs_f64(),
        "pongs_sent": counts.pongs,
        "dropped_during_hold": counts.dropped,
        "closed_cleanly": counts.closed_cleanly,
        "server": server,
        "bench": {
            "cpu_secs": round(s.after_close.bench_cpu, 3),
            "rss_bytes": procfs::mem(None).ok().map(|m| m.rss),
        },
        "machine_busy_connect": s.connected.machine_busy_since(&s.before).map(|v| round(v, 3)),
        "listen_overflows_connect": s.connected.listen_overflows_since(&s.before),
        "children": children,
        "connect_errors": connect_errors.to_json(),
        "hold_errors": hold_errors.to_json(),
    })
}

fn summarize(r: &Value) {
    let g = |p: &str| crate::report::show(r.pointer(p));
    let mut s = format!(
        "== idle: {} / {} connected ({} failed), connect {}s = {} conn/s, {} procs, {} source ips",
        g("/connected"),
        g("/conns_requested"),
        g("/failed"),
        g("/connect_secs"),
        g("/connect_rate_per_s"),
        g("/procs"),
        g("/source_ips")
    );
    if let Some(b) = r.pointer("/server/bytes_per_conn").and_then(Value::as_f64) {
        let f = |p: &str| r.pointer(p).and_then(Value::as_f64).map(human_bytes).unwrap_or_else(|| "-".into());
        s += &format!(
            "\n   server rss before {} -> connected {} -> after {}s hold {} -> after close {}\n   => {} per idle connection ({b:.0} B); server cpu {} us/connect",
            f("/server/rss_before_bytes"),
            f("/server/rss_connected_bytes"),
            g("/hold_secs"),
            f("/server/rss_after_hold_bytes"),
            f("/server/rss_after_close_bytes"),
            human_bytes(b),
            g("/server/cpu_us_per_connect"),
        );
    }
    s += &format!(
        "\n   dropped during hold: {}, closed cleanly at the end: {}, pongs sent: {}, listen-queue overflows while connecting: {}",
        g("/dropped_during_hold"),
        g("/closed_cleanly"),
        g("/pongs_sent"),
        g("/listen_overflows_connect")
    );
    say(s);
}

// ---------------------------------------------------------------------------------------------
// Multi-process mode.
//
// Child protocol (stdout, one JSON object per line):
//   {"type":"progress","connected":N,"failed":F}      once per second while dialing
//   {"type":"ready","connected":N,"failed":F,"connect_secs":S,"errors":[...]}
//   {"type":"done","pongs":P,"dropped":D,"errors":[...]}   after stdin closes
// The child holds its connections until its stdin reaches EOF.

/// Entry point of a `--child` process.
pub async fn run_child(args: IdleArgs) -> Result<()> {
    let emit = |v: Value| println!("{v}");
    check_fd_budget(args.conns, "use more --procs")?;
    let target = Target::resolve(&args.conn.url).await?;
    let total = args.total_conns.unwrap_or(args.conns);
    let source_ips = resolve_source_ips(args.conn.source_ips, &target, total);
    let counters = Arc::new(DialCounters::default());
    let progress = {
        let c = counters.clone();
        Progress::start(move |_| {
            emit(
                json!({"type": "progress", "connected": c.connected.load(Ordering::Relaxed), "failed": c.failed.load(Ordering::Relaxed)}),
            );
            None
        })
    };
    let plan = dial_plan(&args, target, source_ips, args.index_offset)?;
    let outcome = dial_many(plan, counters).await;
    drop(progress);
    let connected = outcome.conns.len();
    emit(json!({
        "type": "ready",
        "connected": connected,
        "failed": outcome.failed,
        "connect_secs": outcome.elapsed.as_secs_f64(),
        "errors": outcome.errors.to_json(),
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let closed = Arc::new(AtomicU64::new(0));
    let mut groups = {
        let proto = Arc::new(args.conn.proto());
        let pong = proto.pong();
        spawn_groups(outcome.conns, connected.div_ceil(HOLD_GROUP), &stop_rx, &closed, pong, move || IdleHandler {
            frames: 0,
            proto: proto.clone(),
        })
    };
    // Hold until the parent closes our stdin.
    // (tokio's `io-std` feature is not enabled workspace-wide, so read it on a blocking thread.)
    let _ = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while stdin.read(&mut sink).unwrap_or(0) > 0 {}
    })
    .await;
    let _ = stop_tx.send(true);
    let mut pongs = 0;
    let mut closed_cleanly = 0;
    let mut errors = ErrorSample::default();
    while let Some(r) = groups.join_next().await {
        if let Ok((_, stats)) = r {
            pongs += stats.pongs_sent;
            closed_cleanly += stats.closed_cleanly;
            errors.merge(stats.errors);
        }
    }
    emit(json!({
        "type": "done",
        "pongs": pongs,
        "dropped": closed.load(Ordering::Relaxed),
        "closed_cleanly": closed_cleanly,
        "errors": errors.to_json(),
    }));
    Ok(())
}

enum ChildEvent {
    Line(usize, Value),
    Eof(usize),
}

async fn run_parent(args: IdleArgs) -> Result<Value> {
    let procs = args.procs;
    let target = Target::resolve(&args.conn.url).await?;
    let source_ips = resolve_source_ips(args.conn.source_ips, &target, args.conns);
    let pid = args.server_pid;
    let exe = std::env::current_exe().context("locating own executable")?;
    let sizes = split_even(args.conns, procs);
    say(format!(
        "[idle] opening {} connections to {} over {procs} processes (subscribe: {}, source ips: {source_ips})",
        args.conns,
        args.conn.url,
        subscribe_mode(&args)
    ));
    let before = Snapshot::take(pid);
    let started = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut children = Vec::with_capacity(procs);
    let mut stdins = Vec::with_capacity(procs);
    let mut offset = 0;
    for (k, &n) in sizes.iter().enumerate() {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("idle")
            .arg("--child")
            .args(["--conns", &n.to_string()])
            .args(["--index-offset", &offset.to_string()])
            .args(["--total-conns", &args.conns.to_string()])
            .args(["--url", &args.conn.url])
            .args(["--source-ips", &SourceIps::Count(source_ips).to_string()])
            .args(["--connect-concurrency", &args.conn.connect_concurrency.div_ceil(procs).to_string()])
            .args(["--connect-timeout", &format!("{}s", args.conn.connect_timeout.as_secs_f64())])
            .args(["--channel-prefix", &args.channel_prefix])
            .args(["--kind", args.conn.kind.name()])
            .args(["--transport", args.conn.transport.name()])
            .args(["--protocol", if args.conn.codec == crate::proto::Codec::Json { "json" } else { "protobuf" }])
            .args(["--app-key", &args.conn.app_key]);
        if args.shared_channel {
            cmd.arg("--shared-channel");
        }
        if args.no_subscribe {
            cmd.arg("--no-subscribe");
        }
        // The token and the secret travel in the environment, not on the command line.
        match &args.conn.token {
            Some(t) => cmd.env("HERALD_BENCH_TOKEN", t),
            None => cmd.env_remove("HERALD_BENCH_TOKEN"),
        };
        match &args.conn.hmac_secret {
            Some(s) => cmd.env("HERALD_BENCH_HMAC_SECRET", s),
            None => cmd.env_remove("HERALD_BENCH_HMAC_SECRET"),
        };
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawning child {k}"))?;
        stdins.push(child.stdin.take());
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("child {k} has no stdout"))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(ChildEvent::Line(k, v));
                }
            }
            let _ = tx.send(ChildEvent::Eof(k));
        });
        children.push(child);
        offset += n;
    }
    drop(tx);

    // Dialing: aggregate child progress into one line per second.
    let connected_now: Arc<Vec<AtomicUsize>> = Arc::new((0..procs).map(|_| AtomicUsize::new(0)).collect());
    let failed_now: Arc<Vec<AtomicUsize>> = Arc::new((0..procs).map(|_| AtomicUsize::new(0)).collect());
    let progress = {
        let (c, f) = (connected_now.clone(), failed_now.clone());
        let n = args.conns;
        let mut last = 0;
        Progress::start(move |t| {
            let now: usize = c.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            let failed: usize = f.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            let line = format!(
                "[idle] {:>4.0}s connected {now}/{n} (+{}/s) failed {failed} server rss {}",
                t.as_secs_f64(),
                now.saturating_sub(last),
                rss(pid).map(|r| human_bytes(r as f64)).unwrap_or_else(|| "-".into())
            );
            last = now;
            Some(line)
        })
    };
    let mut ready: Vec<Option<Value>> = vec![None; procs];
    let mut done: Vec<Option<Value>> = vec![None; procs];
    let mut eof = vec![false; procs];
    let mut last_ready = started.elapsed();
    while ready.iter().zip(&eof).any(|(r, e)| r.is_none() && !e) {
        match rx.recv().await {
            Some(ChildEvent::Line(k, v)) => match v.get("type").and_then(Value::as_str) {
                Some("progress") => {
                    let get = |key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0) as usize;
                    connected_now[k].store(get("connected"), Ordering::Relaxed);
                    failed_now[k].store(get("failed"), Ordering::Relaxed);
                }
                Some("ready") => {
                    last_ready = started.elapsed();
                    ready[k] = Some(v);
                }
                _ => {}
            },
            Some(ChildEvent::Eof(k)) => {
                eof[k] = true;
                say(format!("[idle] child {k} exited before it was ready"));
            }
            None => break,
        }
    }
    drop(progress);
    let connected_snap = Snapshot::take(pid);
    let num = |v: &Option<Value>, key: &str| v.as_ref().and_then(|v| v.get(key)).and_then(Value::as_f64).unwrap_or(0.0);
    let connected: usize = ready.iter().map(|r| num(r, "connected") as usize).sum();
    let failed: usize = ready.iter().map(|r| num(r, "failed") as usize).sum::<usize>()
        + sizes.iter().zip(&ready).filter(|(_, r)| r.is_none()).map(|(n, _)| *n).sum::<usize>();
    let mut connect_errors = ErrorSample::default();
    for r in ready.iter().flatten() {
        connect_errors.merge(ErrorSample::from_json(r.get("errors").unwrap_or(&Value::Null)));
    }
    let connect_secs = last_ready.as_secs_f64();
    say(format!(
        "[idle] {connected} connected, {failed} failed in {connect_secs:.2}s ({:.0}/s, measured from spawning the children)",
        connected as f64 / connect_secs.max(1e-9)
    ));
    if !connect_errors.is_empty() {
        say(format!("[idle] connect errors:\n{connect_errors}"));
    }

    let dropped_so_far = AtomicU64::new(0);
    let mut peak_rss = connected_snap.server_mem.map(|m| m.rss).unwrap_or(0);
    hold(args.hold, pid, &dropped_so_far, &mut peak_rss).await;
    let after = Snapshot::take(pid);

    // Release the children and collect their final lines.
    drop(stdins);
    while done.iter().zip(&eof).any(|(d, e)| d.is_none() && !e) {
        match rx.recv().await {
            Some(ChildEvent::Line(k, v)) if v.get("type").and_then(Value::as_str) == Some("done") => done[k] = Some(v),
            Some(ChildEvent::Line(..)) => {}
            Some(ChildEvent::Eof(k)) => eof[k] = true,
            None => break,
        }
    }
    for (k, mut c) in children.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(30), c.wait()).await {
            Ok(Ok(st)) if !st.success() => say(format!("[idle] child {k} exited with {st}")),
            Ok(_) => {}
            Err(_) => {
                say(format!("[idle] child {k} did not exit; killing it"));
                let _ = c.kill().await;
            }
        }
    }
    tokio::time::sleep(args.close_wait).await;
    let after_close = Snapshot::take(pid);

    let mut hold_errors = ErrorSample::default();
    for d in done.iter().flatten() {
        hold_errors.merge(ErrorSample::from_json(d.get("errors").unwrap_or(&Value::Null)));
    }
    let child_json: Vec<Value> = (0..procs)
        .map(|k| {
            json!({
                "conns": sizes[k],
                "connected": num(&ready[k], "connected"),
                "failed": num(&ready[k], "failed"),
                "connect_secs": round(num(&ready[k], "connect_secs"), 3),
                "pongs": num(&done[k], "pongs"),
                "dropped": num(&done[k], "dropped"),
                "closed_cleanly": num(&done[k], "closed_cleanly"),
            })
        })
        .collect();
    let result = build_result(
        &args,
        source_ips,
        Counts {
            connected,
            failed,
            pongs: done.iter().map(|d| num(d, "pongs") as u64).sum(),
            dropped: done.iter().map(|d| num(d, "dropped") as u64).sum(),
            closed_cleanly: done.iter().map(|d| num(d, "closed_cleanly") as u64).sum(),
        },
        connect_secs,
        &child_json,
        Snaps { before, connected: connected_snap, after, after_close, peak_rss },
        connect_errors,
        hold_errors,
    );
    summarize(&result);
    Ok(result)
}
