//! Command-line interface.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::util::parse_duration;

#[derive(Parser, Debug)]
#[command(name = "herald-bench", version, about = "Load tool for Herald (Centrifugo client protocol v2, JSON)")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open N connections, hold them idle, report server RSS per connection and connect rate.
    Idle(IdleArgs),
    /// N subscribers on one channel, publish through the HTTP API, report throughput/latency/loss.
    Fanout(FanoutArgs),
}

/// How many loopback source addresses to spread client sockets over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceIps {
    /// One address per 10,000 connections when the target is loopback, else none.
    Auto,
    /// Exactly this many (127.0.0.2, 127.0.0.3, ...); 0 = let the kernel choose.
    Count(u32),
}

impl FromStr for SourceIps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        s.parse().map(Self::Count).map_err(|_| format!("expected `auto` or a count, got `{s}`"))
    }
}

impl std::fmt::Display for SourceIps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

/// Publish rate: a fixed number per second (coordinated-omission aware), or as fast as possible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    Max,
    PerSec(f64),
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Self::PerSec(r)),
            _ => Err(format!("expected `max` or a positive number, got `{s}`")),
        }
    }
}

/// Options shared by everything that opens client connections.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// WebSocket endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:8000/connection/websocket")]
    pub url: String,
    /// Connection JWT (sent as connect.token); anonymous connect when absent.
    #[arg(long, env = "HERALD_BENCH_TOKEN")]
    pub token: Option<String>,
    /// Loopback source addresses to spread sockets over (127.0.0.2, .3, ...): `auto`, or a count (0 = none).
    #[arg(long, default_value = "auto")]
    pub source_ips: SourceIps,
    /// Connection handshakes (TCP + WebSocket + connect + subscribe) in flight at once (shared
    /// out over `--procs`).
    /// Keep it below the server's listen backlog, or SYNs overflow the queue and those clients
    /// wait for a 1 s retransmission (the result's `listen_overflows_*` shows it).
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Deadline for one connection's whole handshake.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Number of connections to open (in total, over all --procs).
    #[arg(long, short = 'n')]
    pub conns: usize,
    /// Server process to sample RSS from (/proc/PID/status).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Channel name prefix; each connection subscribes to `<prefix>-<i>` (or `<prefix>` with --shared-channel).
    #[arg(long, default_value = "idle")]
    pub channel_prefix: String,
    /// Subscribe every connection to the single channel `<prefix>`.
    #[arg(long)]
    pub shared_channel: bool,
    /// Connect only, no subscription.
    #[arg(long)]
    pub no_subscribe: bool,
    /// How long to hold the connections idle before the "after" RSS sample.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// After closing, wait this long and sample RSS again (shows what the server gives back).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub close_wait: Duration,
    /// Split the connections over K child processes (one process holds at most ~20,000 fds).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Write the JSON result here as well as to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Internal: run as a child of `--procs` (JSON lines on stdout, holds until stdin closes).
    #[arg(long, hide = true)]
    pub child: bool,
    /// Internal: global index of this process's first connection (channel names, source IPs).
    #[arg(long, hide = true, default_value_t = 0)]
    pub index_offset: usize,
    /// Internal: total connections over all processes (for `--source-ips auto`).
    #[arg(long, hide = true)]
    pub total_conns: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Server HTTP API base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// Server API key (X-API-Key header).
    #[arg(long, env = "HERALD_BENCH_API_KEY", default_value = "")]
    pub api_key: String,
    /// Number of subscribers on the channel.
    #[arg(long)]
    pub subs: usize,
    /// Channel every subscriber joins and every publish targets.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Publishes per second (fixed schedule, latency from the intended send time), or `max`.
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Size of the publication's `data` JSON in bytes (at least ~34: `{"t":<19 digits>,"pad":""}`).
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Concurrent keep-alive publisher connections (default: 4 for `max`, rate/500 rounded up, at least 2, otherwise).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Server process to sample CPU (/proc/PID/stat) and RSS from.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Tasks the subscribers are multiplexed over (each owns one latency histogram).
    #[arg(long, default_value_t = 64)]
    pub sub_tasks: usize,
    /// After publishing stops, wait at most this long for outstanding deliveries.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_max: Duration,
    /// ... and stop waiting once no delivery arrived for this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain_idle: Duration,
    /// Write the JSON result here as well as to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("100".parse::<Rate>(), Ok(Rate::PerSec(100.0)));
        assert!("0".parse::<Rate>().is_err());
        assert_eq!("auto".parse::<SourceIps>(), Ok(SourceIps::Auto));
        assert_eq!("3".parse::<SourceIps>(), Ok(SourceIps::Count(3)));
        let cli = Cli::try_parse_from(["herald-bench", "fanout", "--subs", "10", "--rate", "100", "--duration", "2s"])
            .expect("parses");
        match cli.cmd {
            Command::Fanout(a) => {
                assert_eq!(a.subs, 10);
                assert_eq!(a.rate, Rate::PerSec(100.0));
                assert_eq!(a.duration, Duration::from_secs(2));
            }
            Command::Idle(_) => panic!("wrong subcommand"),
        }
    }
}
