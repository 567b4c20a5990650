//! Output: one JSON object on stdout (and optionally a file), progress and summaries on stderr.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

/// Prints the result as one JSON line on stdout and, with `out`, pretty-printed to a file.
pub fn emit(result: &Value, out: Option<&Path>) -> Result<()> {
    println!("{}", serde_json::to_string(result)?);
    if let Some(path) = out {
        let text = serde_json::to_string_pretty(result)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Renders a JSON value for humans: strings without quotes, absent values as `-`.
pub fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// Writes a line to stderr (progress and summaries; stdout stays machine-readable).
pub fn say(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

/// Calls `line(elapsed)` once per second and prints what it returns, until the handle is dropped.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(mut line: impl FnMut(Duration) -> Option<String> + Send + 'static) -> Self {
        let start = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Some(l) = line(start.elapsed()) {
                    say(l);
                }
            }
        });
        Self { task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Collects up to a few distinct error messages with counts (for the report).
#[derive(Default, Debug)]
pub struct ErrorSample {
    entries: Vec<(String, u64)>,
}

impl ErrorSample {
    const KEEP: usize = 8;

    pub fn add(&mut self, msg: String) {
        if let Some(i) = self.entries.iter().position(|(m, _)| *m == msg) {
            self.entries[i].1 += 1;
        } else if self.entries.len() < Self::KEEP {
            self.entries.push((msg, 1));
        }
    }

    pub fn merge(&mut self, other: ErrorSample) {
        for (m, n) in other.entries {
            match self.entries.iter().position(|(x, _)| *x == m) {
                Some(i) => self.entries[i].1 += n,
                None if self.entries.len() < Self::KEEP => self.entries.push((m, n)),
                None => {}
            }
        }
    }

    pub fn to_json(&self) -> Value {
        Value::Array(self.entries.iter().map(|(m, n)| serde_json::json!({"error": m, "count": n})).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn from_json(v: &Value) -> Self {
        let mut s = Self::default();
        for e in v.as_array().into_iter().flatten() {
            if let (Some(m), Some(n)) = (e.get("error").and_then(Value::as_str), e.get("count").and_then(Value::as_u64))
            {
                s.entries.push((m.to_string(), n));
            }
        }
        s
    }
}

impl std::fmt::Display for ErrorSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (m, n) in &self.entries {
            writeln!(f, "  {n} x {m}")?;
        }
        Ok(())
    }
}
