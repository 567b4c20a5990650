//! Resource sampling from `/proc`: resident memory and CPU time of the server (and of ourselves),
//! whole-machine CPU use, and the open-file limit.

use std::sync::OnceLock;

use anyhow::{Context, Result};

/// Memory figures of one process, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mem {
    /// Current resident set size (VmRSS).
    pub rss: u64,
    /// Peak resident set size over the process lifetime (VmHWM).
    pub hwm: u64,
}

fn pid_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(p) => format!("/proc/{p}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// Reads VmRSS/VmHWM of `pid` (`None` = this process).
pub fn mem(pid: Option<u32>) -> Result<Mem> {
    let path = pid_path(pid, "status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_status(&text))
}

/// Parses the memory lines of `/proc/PID/status`.
pub fn parse_status(text: &str) -> Mem {
    let kib =
        |line: &str| -> u64 { line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 1024 };
    let mut mem = Mem::default();
    for line in text.lines() {
        if line.starts_with("VmRSS:") {
            mem.rss = kib(line);
        } else if line.starts_with("VmHWM:") {
            mem.hwm = kib(line);
        }
    }
    mem
}

/// CPU seconds (user + system) consumed so far by `pid` (`None` = this process).
pub fn cpu_secs(pid: Option<u32>) -> Result<f64> {
    cpu_split(pid).map(|(u, s)| u + s)
}

/// `(user, system)` CPU seconds consumed so far by `pid` (`None` = this process).
pub fn cpu_split(pid: Option<u32>) -> Result<(f64, f64)> {
    let path = pid_path(pid, "stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (u, s) = parse_stat(&text).with_context(|| format!("parsing {path}"))?;
    Ok((u as f64 / clk_tck(), s as f64 / clk_tck()))
}

/// Open file descriptors of `pid` (a connection leak shows up here after clients close).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// `(utime, stime)` in clock ticks from a `/proc/PID/stat` line. The command name may contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    // After ")" come fields 3 (state), 4, ...; utime is field 14, stime field 15.
    let mut fields = rest.split_whitespace();
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unavailable, which it is on every
/// mainstream Linux).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(100.0)
    })
}

/// Whole-machine CPU counters: `(busy, total)` jiffies summed over all CPUs.
pub fn machine_cpu() -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_machine_cpu(&text).context("parsing /proc/stat")
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_machine_cpu(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    // The first field is the `cpu` label itself, which does not parse as a number.
    let vals: Vec<u64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // included in user/nice.
    let total: u64 = vals.iter().take(8).sum();
    let idle = vals.get(3).copied().unwrap_or(0) + vals.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Machine-wide count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in `/proc/net/netstat`). A rise during a connection storm means
/// the server's accept backlog is too small or its accept loop too slow: each drop costs that
/// client a 1 s SYN retransmission.
pub fn listen_overflows() -> Option<u64> {
    parse_netstat(&std::fs::read_to_string("/proc/net/netstat").ok()?, "TcpExt:", "ListenOverflows")
}

/// Finds `field` in the header/value line pair starting with `prefix` of `/proc/net/netstat`.
pub fn parse_netstat(text: &str, prefix: &str, field: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let idx = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

/// Number of online CPUs.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Soft limit on open files of this process.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// One snapshot of everything we track, for before/after deltas.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Server user + system CPU seconds.
    pub server_cpu: Option<f64>,
    /// Server system (kernel) CPU seconds: socket I/O on loopback lands here.
    pub server_sys: Option<f64>,
    pub server_fds: Option<usize>,
    pub server_mem: Option<Mem>,
    pub bench_cpu: f64,
    pub machine: Option<(u64, u64)>,
    pub listen_overflows: Option<u64>,
}

impl Snapshot {
    pub fn take(server_pid: Option<u32>) -> Self {
        let split = server_pid.and_then(|p| cpu_split(Some(p)).ok());
        Self {
            server_cpu: split.map(|(u, s)| u + s),
            server_sys: split.map(|(_, s)| s),
            server_fds: server_pid.and_then(fd_count),
            server_mem: server_pid.and_then(|p| mem(Some(p)).ok()),
            bench_cpu: cpu_secs(None).unwrap_or(0.0),
            machine: machine_cpu().ok(),
            listen_overflows: listen_overflows(),
        }
    }

    /// Machine busy fraction (0..=1, over all CPUs) between `earlier` and `self`.
    pub fn machine_busy_since(&self, earlier: &Snapshot) -> Option<f64> {
        let (b1, t1) = self.machine?;
        let (b0, t0) = earlier.machine?;
        let dt = t1.saturating_sub(t0);
        (dt > 0).then(|| b1.saturating_sub(b0) as f64 / dt as f64)
    }

    /// Listen-queue overflows (machine-wide) between `earlier` and `self`.
    pub fn listen_overflows_since(&self, earlier: &Snapshot) -> Option<u64> {
        Some(self.listen_overflows?.saturating_sub(earlier.listen_overflows?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let line = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_stat(line), Some((250, 75)));
    }

    #[test]
    fn status_mem() {
        let text = "Name:\therald\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(parse_status(text), Mem { rss: 1024 * 1024, hwm: 2048 * 1024 });
    }

    #[test]
    fn machine_line() {
        let text = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n";
        assert_eq!(parse_machine_cpu(text), Some((150, 1000)));
    }

    #[test]
    fn netstat() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 459 460\nIpExt: A\nIpExt: 1\n";
        assert_eq!(parse_netstat(text, "TcpExt:", "ListenOverflows"), Some(459));
        assert_eq!(parse_netstat(text, "TcpExt:", "Nope"), None);
    }

    #[test]
    fn self_sampling_works() {
        assert!(mem(None).expect("status").rss > 0);
        assert!(cpu_secs(None).expect("stat") >= 0.0);
        assert!(open_files_limit().is_some());
    }
}
