//! `report`: renders `bench/REPORT.md` and one SVG chart per scenario from a results directory
//! written by `suite`. Medians over the repetitions, with the spread (min–max) next to them;
//! the headline compares Herald with the best peer measured in the same run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use serde_json::Value;

use crate::util::human_bytes;

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Results directory (default: the newest under bench/results).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// The Markdown file to write.
    #[arg(long, default_value = "bench/REPORT.md")]
    pub out: PathBuf,
}

/// How to read and show one metric.
#[derive(Clone, Copy)]
struct Metric {
    title: &'static str,
    pointer: &'static str,
    fmt: Fmt,
    higher_is_better: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Fmt {
    Rate,
    Ms,
    Bytes,
    Us,
    Ratio,
    Count,
}

fn fmt_val(v: f64, f: Fmt) -> String {
    match f {
        Fmt::Rate | Fmt::Count => {
            if v >= 1e6 {
                format!("{:.2}M", v / 1e6)
            } else if v >= 1e4 {
                format!("{:.1}k", v / 1e3)
            } else {
                format!("{v:.0}")
            }
        }
        Fmt::Ms => {
            if v >= 100.0 {
                format!("{v:.0} ms")
            } else {
                format!("{v:.2} ms")
            }
        }
        Fmt::Bytes => human_bytes(v),
        Fmt::Us => format!("{v:.2} µs"),
        Fmt::Ratio => format!("{v:.4}"),
    }
}

const fn m(title: &'static str, pointer: &'static str, fmt: Fmt, higher_is_better: bool) -> Metric {
    Metric { title, pointer, fmt, higher_is_better }
}

fn metrics(scenario: &str) -> Vec<Metric> {
    match scenario {
        "fanout" | "channels" => vec![
            m("deliveries/s", "/deliveries_per_s", Fmt::Rate, true),
            m("p50", "/latency/p50_ms", Fmt::Ms, false),
            m("p99", "/latency/p99_ms", Fmt::Ms, false),
            m("p99.9", "/latency/p999_ms", Fmt::Ms, false),
            m("server CPU/delivery", "/server/cpu_us_per_delivery", Fmt::Us, false),
            m("server peak RSS", "/server/rss_peak_sampled_bytes", Fmt::Bytes, false),
            m("loss", "/loss_ratio", Fmt::Ratio, false),
            m("other cores busy", "/machine/other_cores_used", Fmt::Ratio, false),
        ],
        "churn" => vec![
            m("connects/s (churn)", "/churn/connects_per_s", Fmt::Rate, true),
            m("deliveries/s", "/deliveries_per_s", Fmt::Rate, true),
            m("p99", "/latency/p99_ms", Fmt::Ms, false),
            m("server CPU/delivery", "/server/cpu_us_per_delivery", Fmt::Us, false),
            m("loss", "/loss_ratio", Fmt::Ratio, false),
            m("other cores busy", "/machine/other_cores_used", Fmt::Ratio, false),
        ],
        "idle" => vec![
            m("memory/conn", "/server/bytes_per_conn", Fmt::Bytes, false),
            m("connects/s", "/connect_rate_per_s", Fmt::Rate, true),
            m("connected", "/connected", Fmt::Count, true),
            m("server CPU/connect", "/server/cpu_us_per_connect", Fmt::Us, false),
            m("RSS after hold", "/server/rss_after_hold_bytes", Fmt::Bytes, false),
        ],
        "api" => vec![
            m("requests/s", "/requests_per_s", Fmt::Rate, true),
            m("p50", "/latency/p50_ms", Fmt::Ms, false),
            m("p99", "/latency/p99_ms", Fmt::Ms, false),
            m("server CPU/request", "/server/cpu_us_per_request", Fmt::Us, false),
            m("failed", "/requests_failed", Fmt::Count, false),
            m("other cores busy", "/machine/other_cores_used", Fmt::Ratio, false),
        ],
        "webhook" => vec![
            m("deliveries/s", "/deliveries_per_s", Fmt::Rate, true),
            m("p50", "/latency/p50_ms", Fmt::Ms, false),
            m("p99", "/latency/p99_ms", Fmt::Ms, false),
            m("p99.9", "/latency/p999_ms", Fmt::Ms, false),
            m("attempts seen", "/receiver_requests", Fmt::Count, true),
            m("attempts recorded", "/attempts_recorded", Fmt::Count, true),
            m("undelivered", "/undelivered", Fmt::Count, false),
            m("server CPU/delivery", "/server/cpu_us_per_delivery", Fmt::Us, false),
        ],
        "coldstart" => vec![
            m("exec → ready (median)", "/ready_ms_median", Fmt::Ms, false),
            m("fastest", "/ready_ms_min", Fmt::Ms, false),
            m("slowest", "/ready_ms_max", Fmt::Ms, false),
            m("idle RSS", "/rss_idle_bytes_median", Fmt::Bytes, false),
            m("binary", "/binary/bytes", Fmt::Bytes, false),
            m("binary stripped", "/binary/stripped_bytes", Fmt::Bytes, false),
        ],
        _ => vec![],
    }
}

const TITLES: &[(&str, &str)] = &[
    ("fanout", "1. Fan-out: one channel, N subscribers"),
    ("channels", "2. Many channels: every subscriber on its own channel plus a shared one"),
    ("idle", "3. Idle connections: memory per connection and connect rate"),
    ("api", "4. Server API publish"),
    ("webhook", "5. Webhooks to a local receiver"),
    ("coldstart", "6. Cold start"),
    ("churn", "7. Churn while fan-out runs"),
];

/// Median, min, max of the values.
fn stats(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let med = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some((med, v[0], v[n - 1]))
}

/// Runs of one scenario grouped as case -> target -> entries.
type Grouped = BTreeMap<String, BTreeMap<String, Vec<Value>>>;

struct Scenario {
    name: String,
    cases: Vec<String>,
    targets: Vec<String>,
    grouped: Grouped,
}

fn load_scenario(dir: &Path, name: &str) -> Option<Scenario> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let mut cases = Vec::new();
    let mut targets = Vec::new();
    let mut grouped: Grouped = BTreeMap::new();
    for r in v.get("runs")?.as_array()? {
        let case = r.get("case").and_then(Value::as_str).unwrap_or_default().to_string();
        let target = r.get("target").and_then(Value::as_str).unwrap_or_default().to_string();
        if !cases.contains(&case) {
            cases.push(case.clone());
        }
        if !targets.contains(&target) {
            targets.push(target.clone());
        }
        grouped.entry(case).or_default().entry(target).or_default().push(r.clone());
    }
    // Herald first.
    targets.sort_by_key(|t| (!t.starts_with("herald"), t != "herald"));
    Some(Scenario { name: name.into(), cases, targets, grouped })
}

impl Scenario {
    fn values(&self, case: &str, target: &str, metric: &Metric) -> Vec<f64> {
        self.grouped
            .get(case)
            .and_then(|c| c.get(target))
            .map(|runs| {
                runs.iter()
                    .filter(|r| r.get("status").and_then(Value::as_str) == Some("ok"))
                    .filter_map(|r| r.pointer(&format!("/result{}", metric.pointer)).and_then(Value::as_f64))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn stat(&self, case: &str, target: &str, metric: &Metric) -> Option<(f64, f64, f64)> {
        stats(self.values(case, target, metric))
    }

    /// Non-ok status of a target in a case (when no run succeeded).
    fn status(&self, case: &str, target: &str) -> Option<String> {
        let runs = self.grouped.get(case)?.get(target)?;
        if runs.iter().any(|r| r.get("status").and_then(Value::as_str) == Some("ok")) {
            return None;
        }
        let r = runs.first()?;
        let st = r.get("status").and_then(Value::as_str).unwrap_or("?");
        let err = r.get("error").and_then(Value::as_str).unwrap_or_default();
        let err: String = err.chars().take(120).collect();
        Some(format!("{st}: {}", err.replace('|', "/").replace('\n', " ")))
    }

    fn reps_ok(&self, case: &str, target: &str) -> usize {
        self.grouped
            .get(case)
            .and_then(|c| c.get(target))
            .map(|r| r.iter().filter(|r| r.get("status").and_then(Value::as_str) == Some("ok")).count())
            .unwrap_or(0)
    }

    /// Best peer (non-Herald) for a metric in a case: (name, median).
    fn best_peer(&self, case: &str, metric: &Metric) -> Option<(String, f64)> {
        self.targets
            .iter()
            .filter(|t| !t.starts_with("herald"))
            .filter_map(|t| self.stat(case, t, metric).map(|s| (t.clone(), s.0)))
            .max_by(|a, b| if metric.higher_is_better { a.1.total_cmp(&b.1) } else { b.1.total_cmp(&a.1) })
    }
}

fn cell(s: Option<(f64, f64, f64)>, f: Fmt, reps: usize) -> String {
    match s {
        None => "–".into(),
        Some((med, lo, hi)) if reps > 1 && (hi - lo).abs() > f64::EPSILON => {
            format!("{} ({}–{})", fmt_val(med, f), fmt_val(lo, f), fmt_val(hi, f))
        }
        Some((med, ..)) => fmt_val(med, f),
    }
}

/// A horizontal bar chart (SVG) of the first metric: one bar per case and target.
fn chart(sc: &Scenario, metric: &Metric, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let mut bars: Vec<(String, f64, bool)> = Vec::new();
    for case in &sc.cases {
        for t in &sc.targets {
            if let Some((med, ..)) = sc.stat(case, t, metric) {
                bars.push((format!("{t} | {case}"), med, t.starts_with("herald")));
            }
        }
    }
    if bars.is_empty() {
        return Ok(());
    }
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let height = 80 + 22 * bars.len() as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{} — {} (median)", sc.name, metric.title), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(380)
        .build_cartesian_2d(0.0..max, 0..n)
        .map_err(|e| anyhow!("{e:?}"))?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let f = metric.fmt;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n.min(60))
        .y_label_formatter(&|i| labels.get(n.saturating_sub(1 + *i)).cloned().unwrap_or_default())
        .x_label_formatter(&|v| fmt_val(*v, f))
        .draw()
        .map_err(|e| anyhow!("{e:?}"))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v, herald))| {
            let y = n - 1 - i;
            let color = if *herald { RGBColor(214, 96, 39) } else { RGBColor(90, 120, 170) };
            Rectangle::new([(0.0, y), (*v, y + 1)], color.filled())
        }))
        .map_err(|e| anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

fn newest_results() -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("bench/results")
        .context("reading bench/results")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    dirs.pop().ok_or_else(|| anyhow!("no results under bench/results"))
}

fn rel(from_file: &Path, to: &Path) -> String {
    // Report lives in bench/, results in bench/results/<id>/: keep it simple and robust.
    let from_dir = from_file.parent().unwrap_or(Path::new("."));
    let (a, b) = (from_dir.canonicalize().unwrap_or_default(), to.canonicalize().unwrap_or_default());
    match b.strip_prefix(&a) {
        Ok(p) if p.as_os_str().is_empty() => ".".into(),
        Ok(p) => p.display().to_string(),
        Err(_) => b.display().to_string(),
    }
}

struct Check {
    what: String,
    target: String,
    herald: String,
    peer: String,
    verdict: &'static str,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let dir = match &args.results {
        Some(d) => d.clone(),
        None => newest_results()?,
    };
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).context("meta.json")?)?;
    let scenarios: Vec<Scenario> = TITLES.iter().filter_map(|(n, _)| load_scenario(&dir, n)).collect();
    let get = |p: &str| crate::report::show(meta.pointer(p));
    let mut md = String::new();
    let run_id = dir.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let _ = writeln!(md, "# Herald benchmark report\n");
    let _ = writeln!(
        md,
        "Generated by `herald-bench report` from `{}` (run `{run_id}`, mode **{}**, {} repetition(s) per figure in alternating target order, {} s per run, {} s in all). Do not edit by hand: rerun `bench/run.sh full` (or `herald-bench report --results DIR`).\n",
        rel(&args.out, &dir),
        get("/mode"),
        get("/reps"),
        get("/duration_secs"),
        get("/elapsed_secs"),
    );

    // Headline checks.
    let mut checks: Vec<Check> = Vec::new();
    let find = |name: &str| scenarios.iter().find(|s| s.name == name);
    if let Some(sc) = find("fanout") {
        let d = m("deliveries/s", "/deliveries_per_s", Fmt::Rate, true);
        let p99 = m("p99", "/latency/p99_ms", Fmt::Ms, false);
        // Fixed rate: every server is offered the same load, so compare latency, not throughput.
        for case in sc.cases.iter().filter(|c| c.starts_with("10000 subs") && !c.ends_with("max")) {
            if let Some((h, ..)) = sc.stat(case, "herald", &p99) {
                let peer = sc.best_peer(case, &p99);
                let hd = sc.stat(case, "herald", &d).map(|s| s.0).unwrap_or(0.0);
                checks.push(Check {
                    what: format!("fan-out, {case} (same offered load): p99 no worse than the best peer's"),
                    target: "≤ best peer".into(),
                    herald: format!("p99 {} at {}/s", fmt_val(h, Fmt::Ms), fmt_val(hd, Fmt::Rate)),
                    peer: peer
                        .as_ref()
                        .map(|(n, v)| {
                            format!("{n}: p99 {} → Herald **{:.1}× lower**", fmt_val(*v, Fmt::Ms), v / h.max(1e-9))
                        })
                        .unwrap_or_else(|| "no peer result".into()),
                    verdict: if peer.is_none_or(|(_, v)| h <= v) { "met" } else { "**not met**" },
                });
            }
        }
        for case in sc.cases.iter().filter(|c| c.starts_with("10000 subs") && c.ends_with("max")) {
            if let Some((h, ..)) = sc.stat(case, "herald", &d) {
                let peer = sc.best_peer(case, &d);
                let hp99 = sc.stat(case, "herald", &p99).map(|s| s.0);
                let pp99 = peer.as_ref().and_then(|(n, _)| sc.stat(case, n, &p99)).map(|s| s.0);
                let ratio = peer.as_ref().map(|(_, v)| h / v.max(1e-9));
                let ok = ratio.is_some_and(|r| r >= 3.0) && h > 1e6 && hp99.zip(pp99).is_none_or(|(a, b)| a <= b);
                checks.push(Check {
                    what: format!("fan-out, {case}: ≥3× best peer's deliveries/s at no worse p99, >1M/s"),
                    target: "≥3×, >1M/s".into(),
                    herald: format!(
                        "{}/s, p99 {}",
                        fmt_val(h, Fmt::Rate),
                        hp99.map(|v| fmt_val(v, Fmt::Ms)).unwrap_or_default()
                    ),
                    peer: peer
                        .map(|(n, v)| {
                            format!(
                                "{n}: {}/s, p99 {} → **{:.2}×**",
                                fmt_val(v, Fmt::Rate),
                                pp99.map(|p| fmt_val(p, Fmt::Ms)).unwrap_or_default(),
                                ratio.unwrap_or(0.0)
                            )
                        })
                        .unwrap_or_else(|| "no peer result".into()),
                    verdict: if ok { "met" } else { "**not met**" },
                });
            }
        }
    }
    if let Some(sc) = find("idle") {
        let b = m("memory/conn", "/server/bytes_per_conn", Fmt::Bytes, false);
        if let Some(case) = sc.cases.last()
            && let Some((h, ..)) = sc.stat(case, "herald", &b)
        {
            let peer = sc.best_peer(case, &b);
            checks.push(Check {
                what: format!("memory per idle connection, {case}"),
                target: "< 4 KiB".into(),
                herald: fmt_val(h, Fmt::Bytes),
                peer: peer
                    .map(|(n, v)| format!("{n}: {} → Herald uses **{:.2}×**", fmt_val(v, Fmt::Bytes), h / v.max(1.0)))
                    .unwrap_or_else(|| "no peer result".into()),
                verdict: if h < 4096.0 { "met" } else { "**not met**" },
            });
        }
    }
    if let Some(sc) = find("api") {
        let r = m("requests/s", "/requests_per_s", Fmt::Rate, true);
        for case in &sc.cases {
            if let Some((h, ..)) = sc.stat(case, "herald", &r) {
                let peer = sc.best_peer(case, &r);
                let ephemeral = case.starts_with("ephemeral");
                checks.push(Check {
                    what: format!("server API publish, {case}"),
                    target: if ephemeral { "> 100k req/s".into() } else { "(no target)".into() },
                    herald: format!("{} req/s", fmt_val(h, Fmt::Rate)),
                    peer: peer
                        .map(|(n, v)| format!("{n}: {} req/s → {:.2}×", fmt_val(v, Fmt::Rate), h / v.max(1e-9)))
                        .unwrap_or_else(|| "–".into()),
                    verdict: if !ephemeral {
                        "–"
                    } else if h > 100_000.0 {
                        "met"
                    } else {
                        "**not met**"
                    },
                });
            }
        }
    }
    if let Some(sc) = find("webhook")
        && let Some(case) = sc.cases.first()
        && let Some((h, ..)) = sc.stat(case, "herald", &m("p99", "/latency/p99_ms", Fmt::Ms, false))
    {
        checks.push(Check {
            what: format!("webhook publish-to-receive p99 at {case}"),
            target: "a few ms".into(),
            herald: fmt_val(h, Fmt::Ms),
            peer: "no peer delivers webhooks".into(),
            verdict: if h < 10.0 { "met" } else { "**not met**" },
        });
    }
    if let Some(sc) = find("coldstart")
        && let Some(case) = sc.cases.first()
    {
        let r = sc.stat(case, "herald", &m("", "/ready_ms_median", Fmt::Ms, false)).map(|s| s.0);
        let rss = sc.stat(case, "herald", &m("", "/rss_idle_bytes_median", Fmt::Bytes, false)).map(|s| s.0);
        if let (Some(r), Some(rss)) = (r, rss) {
            let peer = sc.best_peer(case, &m("", "/ready_ms_median", Fmt::Ms, false));
            checks.push(Check {
                what: "cold start: exec → /readyz 200 (median), idle RSS".into(),
                target: "< 20 ms, < 15 MB".into(),
                herald: format!("{}, {}", fmt_val(r, Fmt::Ms), fmt_val(rss, Fmt::Bytes)),
                peer: peer.map(|(n, v)| format!("fastest peer {n}: {}", fmt_val(v, Fmt::Ms))).unwrap_or_default(),
                verdict: if r < 20.0 && rss < 15.0 * 1024.0 * 1024.0 { "met" } else { "**not met**" },
            });
        }
    }
    let _ = writeln!(md, "## Headline\n");
    let _ = writeln!(md, "| check | target | Herald | best peer (same run) | verdict |\n|---|---|---|---|---|");
    for c in &checks {
        let _ = writeln!(md, "| {} | {} | {} | {} | {} |", c.what, c.target, c.herald, c.peer, c.verdict);
    }
    if checks.is_empty() {
        let _ = writeln!(md, "| (no results yet) | | | | |");
    }
    let _ = writeln!(md);

    // Analysis written by hand, if any.
    if let Ok(a) = std::fs::read_to_string(dir.join("analysis.md")) {
        let _ = writeln!(md, "{}\n", a.trim());
    }

    // Machine and quietness.
    let _ = writeln!(md, "## Machine\n");
    let mem = meta.pointer("/machine/memory_bytes").and_then(Value::as_f64).map(human_bytes).unwrap_or_default();
    let _ = writeln!(
        md,
        "- CPU: {} ({} cores visible); kernel {}; memory {mem}; open-file limit {}.",
        get("/machine/cpu_model"),
        get("/machine/cpus"),
        get("/machine/kernel"),
        get("/machine/open_files_limit")
    );
    let mut others: Vec<f64> = Vec::new();
    for sc in &scenarios {
        for c in sc.grouped.values() {
            for runs in c.values() {
                for r in runs {
                    if let Some(v) = r.pointer("/result/machine/other_cores_used").and_then(Value::as_f64) {
                        others.push(v);
                    }
                }
            }
        }
    }
    let quiet = stats(others.clone());
    let _ = writeln!(
        md,
        "- Load average (1/5/15 min) at the start: {}; at the end: {}. CPU used by other processes during the runs (`other_cores_used`, of 2 cores): {}.",
        get("/loadavg_start"),
        get("/loadavg_end"),
        quiet
            .map(|(med, _, max)| format!(
                "median {med:.2}, max {max:.2} over {} runs ({} above 0.2)",
                others.len(),
                others.iter().filter(|v| **v > 0.2).count()
            ))
            .unwrap_or_else(|| "not measured".into())
    );
    let _ = writeln!(
        md,
        "- Server and load generator share these cores: compare ratios and CPU per message, not absolute rates.\n"
    );

    // Versions.
    let _ = writeln!(
        md,
        "## Targets and versions\n\n| target | kind | version | state | start command |\n|---|---|---|---|---|"
    );
    for t in meta.get("targets").and_then(Value::as_array).into_iter().flatten() {
        let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let state = if t.get("installed").and_then(Value::as_bool).unwrap_or(false) {
            "installed".to_string()
        } else {
            s("not_installed")
        };
        let _ = writeln!(md, "| {} | {} | {} | {} | `{}` |", s("name"), s("kind"), s("version"), state, s("start"));
    }
    if !get("/peers_note").is_empty() && get("/peers_note") != "-" {
        let _ = writeln!(md, "\nNote: {}", get("/peers_note"));
    }
    let _ = writeln!(md);

    // Scenarios.
    for (name, title) in TITLES {
        let Some(sc) = scenarios.iter().find(|s| s.name == *name) else {
            let _ = writeln!(md, "## {title}\n\nNot run.\n");
            continue;
        };
        let ms = metrics(name);
        let _ = writeln!(md, "## {title}\n");
        let _ = writeln!(md, "{}\n", scenario_text(name));
        if sc.targets.iter().any(|t| t == SSE_TARGET) {
            let _ = writeln!(md, "{}\n", SSE_ROWS);
        }
        if let Some(first) = ms.first() {
            let svg = dir.join(format!("{name}.svg"));
            match chart(sc, first, &svg) {
                Ok(()) if svg.exists() => {
                    let _ = writeln!(md, "![{name}]({})\n", rel(&args.out, &svg));
                }
                Ok(()) => {}
                Err(e) => {
                    let _ = writeln!(md, "(chart failed: {e:#})\n");
                }
            }
        }
        for case in &sc.cases {
            let _ = writeln!(md, "**{case}**\n");
            let mut head = String::from("| target | runs |");
            let mut sep = String::from("|---|---|");
            for m in &ms {
                head += &format!(" {} |", m.title);
                sep += "---|";
            }
            if sc.targets.len() > 1 {
                head += &format!(" Herald vs best peer ({}) |", ms[0].title);
                sep += "---|";
            }
            let _ = writeln!(md, "{head}\n{sep}");
            let best = sc.best_peer(case, &ms[0]);
            for t in &sc.targets {
                if !sc.grouped.get(case).is_some_and(|c| c.contains_key(t)) {
                    continue;
                }
                let reps = sc.reps_ok(case, t);
                if let Some(st) = sc.status(case, t) {
                    let _ = writeln!(
                        md,
                        "| {t} | 0 | {st} |{}",
                        " |".repeat(ms.len() - 1 + usize::from(sc.targets.len() > 1))
                    );
                    continue;
                }
                let mut row =
                    format!("| {} | {reps} |", if t.starts_with("herald") { format!("**{t}**") } else { t.clone() });
                for m in &ms {
                    row += &format!(" {} |", cell(sc.stat(case, t, m), m.fmt, reps));
                }
                if sc.targets.len() > 1 {
                    let ratio = match (&best, sc.stat(case, t, &ms[0])) {
                        (Some((bn, bv)), Some((v, ..))) if t.starts_with("herald") => {
                            let r = if ms[0].higher_is_better { v / bv.max(1e-9) } else { bv / v.max(1e-9) };
                            format!("{r:.2}× ({bn})")
                        }
                        _ => String::new(),
                    };
                    row += &format!(" {ratio} |");
                }
                let _ = writeln!(md, "{row}");
            }
            let _ = writeln!(md);
        }
    }

    if let Some(section) = transport_section(&scenarios) {
        let _ = writeln!(md, "{section}");
    }
    if let Some(section) = store_section(&scenarios) {
        let _ = writeln!(md, "{section}");
    }

    let _ = writeln!(md, "## Commands\n");
    let _ = writeln!(md, "- Whole run: `{}`", get("/command"));
    let _ = writeln!(
        md,
        "- Herald's configuration: `{}/herald.toml` (port and data directory differ per run). Every run starts a fresh server.",
        rel(&args.out, &dir)
    );
    let _ = writeln!(
        md,
        "- Single scenarios by hand, e.g.: `herald-bench fanout --url ws://127.0.0.1:PORT/connection/websocket --api http://127.0.0.1:PORT --api-key bench-key --subs 10000 --rate max --duration 8s --server-pid PID`; \
peers: `--kind raw-ws|socketio|pusher|nchan --url WS_URL_TEMPLATE --publish-url URL [--app-id --app-key --app-secret]`; \
`herald-bench idle --conns 10000`; Herald over uni SSE: `--transport uni-sse --url http://127.0.0.1:PORT/connection/uni_sse --hmac-secret SECRET` (the server's `client.token.hmac_secret`) on `idle` or `fanout`; `herald-bench api --conns 256 --namespace durable:`, `herald-bench wrk ...`, \
`herald-bench webhook --token TOKEN --rate 1000 [--fail-half]`, `herald-bench coldstart --cmd '...' --ready http://127.0.0.1:PORT/readyz --binary target/release/herald`."
    );
    let _ = writeln!(
        md,
        "- Raw results: one JSON file per scenario in `{}`; server logs in `logs/`.\n",
        rel(&args.out, &dir)
    );

    let _ = writeln!(md, "## What this does and does not show\n");
    let _ = writeln!(md, "{}", CAVEATS);
    if let Some(f) = meta.get("herald_failures").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let _ = writeln!(md, "\n### Failed Herald runs\n");
        for x in f {
            let _ = writeln!(md, "- {}", crate::report::show(Some(x)));
        }
    }
    if let Some(f) = meta.get("peer_failures").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let _ = writeln!(md, "\n### Failed peer runs\n");
        for x in f {
            let _ = writeln!(md, "- {}", crate::report::show(Some(x)));
        }
    }
    if let Some(f) = meta.get("skipped").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let _ = writeln!(md, "\n### Skipped cases (a load tool is not installed, or PostgreSQL does not answer)\n");
        for x in f {
            let _ = writeln!(md, "- {}", crate::report::show(Some(x)));
        }
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(&args.out, md).with_context(|| format!("writing {}", args.out.display()))?;
    crate::report::say(format!("[report] wrote {} (from {})", args.out.display(), dir.display()));
    Ok(())
}

/// The uni SSE target's name in the suite.
const SSE_TARGET: &str = "herald-sse";

const SSE_ROWS: &str = "`herald-sse` rows: Herald with its clients on uni SSE (one `GET /connection/uni_sse` each, \
subscribed server-side by the `channels` claim of a token minted per connection; connected = the connect push arrived) \
instead of WebSocket; see section 8.";

/// Herald over uni SSE beside Herald over WebSocket (same run), for every idle and fan-out case
/// both ran; `None` when there is no uni SSE result.
fn transport_section(scenarios: &[Scenario]) -> Option<String> {
    let picks: [(&str, &[&str]); 2] = [
        ("idle", &["memory/conn", "connects/s", "server CPU/connect", "RSS after hold"]),
        ("fanout", &["deliveries/s", "p50", "p99", "server CPU/delivery", "server peak RSS", "loss"]),
    ];
    let mut rows = String::new();
    for (name, titles) in picks {
        let Some(sc) = scenarios.iter().find(|s| s.name == name) else { continue };
        let ms: Vec<Metric> = metrics(name).into_iter().filter(|m| titles.contains(&m.title)).collect();
        for case in &sc.cases {
            for m in &ms {
                let ws = sc.stat(case, "herald", m);
                let sse = sc.stat(case, SSE_TARGET, m);
                if sse.is_none() {
                    continue;
                }
                let ratio = match (ws, sse) {
                    (Some((w, ..)), Some((x, ..))) if w.abs() > f64::EPSILON => format!("{:.2}×", x / w),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    rows,
                    "| {name} | {case} | {} | {} | {} | {ratio} |",
                    m.title,
                    cell(ws, m.fmt, sc.reps_ok(case, "herald")),
                    cell(sse, m.fmt, sc.reps_ok(case, SSE_TARGET)),
                );
            }
        }
    }
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "## 8. Herald's transports: uni SSE beside WebSocket\n\n\
The same idle and fan-out cases with Herald's subscribers on `GET /connection/uni_sse` (target `{SSE_TARGET}`: one raw HTTP/1.1 \
request per connection, server-side subscription from an HS256 token's `channels` claim, pushes read as `data:` events) \
beside WebSocket (`herald`), in the same run. Ratio = uni SSE ÷ WebSocket (medians).\n\n\
| scenario | case | metric | WebSocket | uni SSE | uni SSE ÷ WebSocket |\n|---|---|---|---|---|---|\n{rows}"
    ))
}

/// The PostgreSQL target's name in the suite (its SQLite twin is `herald`).
const PG_TARGET: &str = "herald-postgres";

/// Whether every ok run of `target` in `case` recorded every attempt (`None`: no ok run).
fn every_attempt_recorded(sc: &Scenario, case: &str, target: &str) -> Option<bool> {
    let runs: Vec<&Value> = sc
        .grouped
        .get(case)?
        .get(target)?
        .iter()
        .filter(|r| r.get("status").and_then(Value::as_str) == Some("ok"))
        .collect();
    (!runs.is_empty()).then(|| {
        runs.iter().all(|r| r.pointer("/result/every_attempt_recorded").and_then(Value::as_bool) == Some(true))
    })
}

/// Herald on PostgreSQL beside Herald on SQLite (same run): the targets, then every
/// durable-publish and webhook metric; `None` when there is no PostgreSQL row.
fn store_section(scenarios: &[Scenario]) -> Option<String> {
    let find = |name: &str| scenarios.iter().find(|s| s.name == name);
    let has_pg = scenarios.iter().any(|s| s.targets.iter().any(|t| t == PG_TARGET));
    if !has_pg {
        return None;
    }
    let both = |sc: &Scenario, case: &str, m: &Metric| {
        [("herald", sc.stat(case, "herald", m)), (PG_TARGET, sc.stat(case, PG_TARGET, m))]
    };
    let show = |sc: &Scenario, case: &str, t: &str, v: Option<(f64, f64, f64)>, f: Fmt| match v {
        Some(_) => cell(v, f, sc.reps_ok(case, t)),
        None => sc.status(case, t).unwrap_or_else(|| "–".into()),
    };
    let mut checks = String::new();
    if let Some(sc) = find("api") {
        let r = m("requests/s", "/requests_per_s", Fmt::Rate, true);
        if let Some(case) = sc.cases.iter().find(|c| c.as_str() == "durable, herald-bench") {
            let mut row = format!("| durable publishes/s through the server API ({case}) | ≥ 20,000/s |");
            for (t, v) in both(sc, case, &r) {
                let verdict = match v {
                    Some((med, ..)) if med >= 20_000.0 => " met",
                    Some(_) => " **not met**",
                    None => "",
                };
                row += &format!(" {}{verdict} |", show(sc, case, t, v, Fmt::Rate));
            }
            let _ = writeln!(checks, "{row}");
        }
    }
    if let Some(sc) = find("webhook") {
        let d = m("deliveries/s", "/deliveries_per_s", Fmt::Rate, true);
        let p99 = m("p99", "/latency/p99_ms", Fmt::Ms, false);
        if let Some(case) = sc.cases.iter().find(|c| c.as_str() == "max, unordered") {
            let mut row = format!("| webhook deliveries/s, every attempt recorded ({case}) | ≥ 5,000/s |");
            for (t, v) in both(sc, case, &d) {
                let all = every_attempt_recorded(sc, case, t);
                let verdict = match (v, all) {
                    (Some((med, ..)), Some(true)) if med >= 5_000.0 => " met",
                    (Some(_), Some(false)) => " **not met** (attempts missing)",
                    (Some(_), _) => " **not met**",
                    _ => "",
                };
                row += &format!(" {}{verdict} |", show(sc, case, t, v, Fmt::Rate));
            }
            let _ = writeln!(checks, "{row}");
        }
        for case in sc.cases.iter().filter(|c| c.starts_with("1000/s")) {
            let mut row = format!("| webhook publish-to-receive p99 at {case} | (measure) |");
            for (t, v) in both(sc, case, &p99) {
                row += &format!(" {} |", show(sc, case, t, v, Fmt::Ms));
            }
            let _ = writeln!(checks, "{row}");
        }
    }
    let picks: [(&str, &[&str]); 2] = [
        ("api", &["requests/s", "p50", "p99", "server CPU/request", "failed"]),
        (
            "webhook",
            &["deliveries/s", "p50", "p99", "attempts seen", "attempts recorded", "undelivered", "server CPU/delivery"],
        ),
    ];
    let mut rows = String::new();
    for (name, titles) in picks {
        let Some(sc) = find(name) else { continue };
        let ms: Vec<Metric> = metrics(name).into_iter().filter(|m| titles.contains(&m.title)).collect();
        for case in &sc.cases {
            if !sc.grouped.get(case).is_some_and(|c| c.contains_key(PG_TARGET)) {
                continue;
            }
            if sc.reps_ok(case, "herald") + sc.reps_ok(case, PG_TARGET) == 0 {
                // Not run by either (e.g. its load tool is missing): one row, not one per metric.
                let st = |t: &str| sc.status(case, t).unwrap_or_else(|| "–".into());
                let _ = writeln!(rows, "| {name} | {case} | – | {} | {} | – |", st("herald"), st(PG_TARGET));
                continue;
            }
            for m in &ms {
                let [(_, lite), (_, pg)] = both(sc, case, m);
                let ratio = match (lite, pg) {
                    (Some((l, ..)), Some((p, ..))) if l.abs() > f64::EPSILON => format!("{:.2}×", p / l),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    rows,
                    "| {name} | {case} | {} | {} | {} | {ratio} |",
                    m.title,
                    show(sc, case, "herald", lite, m.fmt),
                    show(sc, case, PG_TARGET, pg, m.fmt),
                );
            }
        }
    }
    Some(format!(
        "## 9. Herald's stores: PostgreSQL beside SQLite\n\n\
The durable-publish and webhook cases with Herald on its PostgreSQL store (target `{PG_TARGET}`: `[store] backend = \"postgres\"`, \
a fresh schema per server start, dropped after the run) beside the embedded SQLite store (`herald`), in the same run, \
same binary and configuration otherwise. Unordered = the endpoint's `maxConcurrency` is 64 (ordered endpoints deliver \
one at a time). Reference points (their own hardware, not measured here): Convoy's PostgreSQL queue reports a delivery \
p95 of 124 ms at 200 events/s and 13,200 enqueued jobs/s.\n\n\
| check | target | SQLite | PostgreSQL |\n|---|---|---|---|\n{checks}\n\
Ratio = PostgreSQL ÷ SQLite (medians).\n\n\
| scenario | case | metric | SQLite | PostgreSQL | PostgreSQL ÷ SQLite |\n|---|---|---|---|---|---|\n{rows}"
    ))
}

fn scenario_text(name: &str) -> &'static str {
    match name {
        "fanout" => {
            "All subscribers on one channel; the publisher posts `{\"t\":<ns>,\"pad\":..}` (64 B) through each server's HTTP publish endpoint. Fixed-rate rows aim at 200k deliveries/s, latency measured from the *intended* send time (coordinated omission corrected); `max` rows publish closed-loop from 4 connections, latency from the actual send time. Deliveries/s = received publications / (first publish → last delivery). CPU per delivery = server user+system CPU / deliveries."
        }
        "channels" => {
            "Each subscriber joins its own channel and a shared one (one connection, two subscriptions); 99 of 100 publications go to a pseudo-random own channel, 1 in 100 to the shared channel. Peers whose protocol puts the channel in the URL (one channel per connection) cannot run it and are listed as unsupported."
        }
        "idle" => {
            "N connections, each subscribed to its own channel, held idle. Memory per connection = (server RSS after the hold − RSS before dialing) / connections, on a freshly started server. Connect rate includes TCP, WebSocket upgrade, connect and subscribe handshakes (100 in flight)."
        }
        "api" => {
            "Publishing with nobody subscribed, to 64 channels round-robin, closed loop: `herald-bench` with keep-alive HTTP/1.1 connections (each response checked), and `wrk` (1 thread) with a generated Lua script sending the same requests (wrk does not check bodies). `durable` uses a namespace with `durable = true` (every publish is a store write, acknowledged once stored)."
        }
        "webhook" => {
            "Messages created through the Svix-compatible management API (`POST /api/v1/app/<uid>/msg`), delivered to a hyper receiver inside the load tool on 127.0.0.1, which records now − the payload's `t`. The failing case answers every other request with 500; retries run on a shortened schedule (10 ms … 200 ms). 'attempts seen' = requests the receiver got; 'attempts recorded' = attempts listed by the management API for the endpoint: they must match."
        }
        "coldstart" => {
            "`sh -c 'exec <start command>'` until the readiness URL answers 200 (polled every 0.5 ms over fresh connections); idle RSS sampled after settling. Herald keeps its data directory between repetitions (the first start creates the database)."
        }
        "churn" => {
            "Fan-out at a fixed rate while extra clients connect, subscribe to the same channel and disconnect in a loop; connects/s counts completed connect+subscribe+close cycles."
        }
        _ => "",
    }
}

const CAVEATS: &str = "\
- **Does show**: how Herald and each peer compare on the same 2-core machine, in the same run, with the same client, payload and publish path; CPU cost per message; memory per connection; whether every webhook attempt is recorded.
- **Does not show**: absolute capacity on real hardware. Server and load generator share 2 cores, so the server gets about one core while the client decodes every frame: the client is often the bottleneck at high delivery rates (see `bench/cpu_cores_used` in the JSON), which compresses differences between fast servers. Ratios and CPU µs per delivery are the figures to compare.
- Everything is on loopback: no network latency, no packet loss, no TLS.
- Peers are small broadcast servers written for this comparison (ws, socket.io, websockets, gorilla) or full products in their default configuration (Sockudo, Soketi, nchan); their publish endpoints differ (Pusher's HTTP API signs and parses JSON; raw peers take the body as is). See each peer's notes in `bench/peers/peers.json`.
- Peers that drop slow subscribers (gorilla hub) or buffer without bound (ws, websockets) trade correctness for throughput differently from Herald, which disconnects a client only beyond its queue bounds; loss is shown per row.
- 100k-connection figures are out of reach here: one process may hold at most 20,000 descriptors, so the largest runs use ~19k connections.
- Other people compile on this machine: `other_cores_used` per run shows how much CPU other processes took; runs with a high value are disturbed.";

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(name: &str, runs: Value) -> Scenario {
        let dir = std::env::temp_dir().join(format!("herald-bench-render-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        std::fs::write(dir.join(format!("{name}.json")), serde_json::json!({"runs": runs}).to_string()).expect("write");
        let sc = load_scenario(&dir, name).expect("loads");
        let _ = std::fs::remove_dir_all(&dir);
        sc
    }

    #[test]
    fn transport_section_compares_sse_with_websocket() {
        let run = |target: &str, bytes: f64| {
            serde_json::json!({"target": target, "case": "10 conns", "status": "ok",
                "result": {"server": {"bytes_per_conn": bytes}, "connect_rate_per_s": 100.0}})
        };
        let idle = scenario("idle", serde_json::json!([run("herald", 1000.0), run("herald-sse", 2500.0)]));
        let section = transport_section(&[idle]).expect("a section");
        let row = section.lines().find(|l| l.contains("memory/conn")).expect("memory row");
        assert_eq!(row, "| idle | 10 conns | memory/conn | 1000 B | 2.4 KiB | 2.50× |");
        assert!(section.contains("| idle | 10 conns | connects/s | 100 | 100 | 1.00× |"), "{section}");

        let without = scenario("idle", serde_json::json!([run("herald", 1000.0)]));
        assert!(transport_section(&[without]).is_none(), "no uni SSE result, no section");
    }

    #[test]
    fn store_section_checks_the_targets_for_both_stores() {
        let api = |target: &str, rps: f64| {
            serde_json::json!({"target": target, "case": "durable, herald-bench", "status": "ok",
                "result": {"requests_per_s": rps, "requests_failed": 0}})
        };
        let hook = |target: &str, case: &str, dps: f64, all: bool| {
            serde_json::json!({"target": target, "case": case, "status": "ok",
                "result": {"deliveries_per_s": dps, "latency": {"p99_ms": 3.0}, "every_attempt_recorded": all}})
        };
        let scs = [
            scenario(
                "api",
                serde_json::json!([api("herald", 30_000.0), api(PG_TARGET, 12_000.0),
                    {"target": "herald", "case": "durable, wrk", "status": "skipped", "error": "wrk is not installed"},
                    {"target": PG_TARGET, "case": "durable, wrk", "status": "skipped", "error": "wrk is not installed"}]),
            ),
            scenario(
                "webhook",
                serde_json::json!([
                    hook("herald", "max, unordered", 6000.0, true),
                    hook(PG_TARGET, "max, unordered", 7000.0, false),
                    hook("herald", "1000/s, unordered", 1000.0, true),
                    {"target": PG_TARGET, "case": "1000/s, unordered", "status": "skipped", "error": "PostgreSQL at x is unreachable"},
                ]),
            ),
        ];
        let s = store_section(&scs).expect("a section");
        let line = |prefix: &str| s.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_string();
        assert_eq!(
            line("| durable publishes/s"),
            "| durable publishes/s through the server API (durable, herald-bench) | ≥ 20,000/s | 30.0k met | 12.0k **not met** |"
        );
        // Fast enough but attempts missing: not met.
        assert_eq!(
            line("| webhook deliveries/s"),
            "| webhook deliveries/s, every attempt recorded (max, unordered) | ≥ 5,000/s | 6000 met | 7000 **not met** (attempts missing) |"
        );
        assert!(
            line("| webhook publish-to-receive p99 at 1000/s, unordered")
                .ends_with("| 3.00 ms | skipped: PostgreSQL at x is unreachable |"),
            "{s}"
        );
        assert!(s.contains("| api | durable, herald-bench | requests/s | 30.0k | 12.0k | 0.40× |"), "{s}");
        // A case neither ran: one row.
        let wrk_rows: Vec<&str> = s.lines().filter(|l| l.contains("| durable, wrk |")).collect();
        assert_eq!(
            wrk_rows,
            ["| api | durable, wrk | – | skipped: wrk is not installed | skipped: wrk is not installed | – |"]
        );
        let without = [scenario("api", serde_json::json!([api("herald", 30_000.0)]))];
        assert!(store_section(&without).is_none(), "no PostgreSQL result, no section");
    }

    #[test]
    fn stats_and_cells() {
        assert_eq!(stats(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(cell(Some((1500.0, 1000.0, 2000.0)), Fmt::Rate, 3), "1500 (1000–2000)");
        assert_eq!(cell(None, Fmt::Ms, 0), "–");
        assert_eq!(fmt_val(1_234_567.0, Fmt::Rate), "1.23M");
    }
}
