//! Command-line interface.

use clap::{Parser, Subcommand};

use crate::args::{FanoutArgs, IdleArgs};

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
    /// Server API publish requests/s and latency (closed loop, many keep-alive connections).
    Api(crate::scenario::api::ApiArgs),
    /// The same publish load driven by `wrk` through a generated Lua script.
    Wrk(crate::scenario::wrk::WrkArgs),
    /// Webhook deliveries/s and latency to an in-tool receiver, every attempt checked.
    Webhook(crate::scenario::webhook::WebhookArgs),
    /// Exec to ready time, idle RSS and binary size.
    Coldstart(crate::scenario::coldstart::ColdstartArgs),
    /// Runs every scenario against Herald and the installed peers (see bench/run.sh).
    Suite(crate::suite::SuiteArgs),
    /// Renders bench/REPORT.md and the charts from a results directory.
    Report(crate::render::ReportArgs),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::CommandFactory;

    use super::*;
    use crate::args::{Rate, SourceIps};

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
            _ => panic!("wrong subcommand"),
        }
    }
}
