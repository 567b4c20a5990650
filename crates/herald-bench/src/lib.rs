//! Load tool for Herald.
//!
//! Layout, so that later scenarios (and peer servers) slot in cleanly:
//! - [`centrifugo`]: a minimal, allocation-light Centrifugo client-protocol-v2 (JSON) client;
//! - [`sse`]: a raw uni-directional SSE client (Herald's `/connection/uni_sse`);
//! - [`http`]: a tiny keep-alive HTTP/1.1 client for the server API (publish/broadcast);
//! - [`procfs`]: server/bench resource sampling from `/proc`;
//! - [`metrics`]: latency histograms and counters;
//! - [`report`]: progress lines, JSON output, human summaries;
//! - [`scenario`]: one module per measurement (`idle`, `fanout`).

#![recursion_limit = "256"]

pub mod args;
pub mod centrifugo;
pub mod cli;
pub mod http;
pub mod metrics;
pub mod procfs;
pub mod proto;
pub mod publish;
pub mod render;
pub mod report;
pub mod scenario;
pub mod sse;
pub mod suite;
pub mod util;

/// Runs the chosen subcommand and emits its report.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.cmd {
        cli::Command::Idle(args) => {
            if args.child {
                return scenario::idle::run_child(args).await;
            }
            let out = args.out.clone();
            let result = scenario::idle::run(args).await?;
            report::emit(&result, out.as_deref())
        }
        cli::Command::Fanout(args) => {
            let out = args.out.clone();
            let result = scenario::fanout::run(args).await?;
            report::emit(&result, out.as_deref())
        }
        cli::Command::Api(args) => {
            let out = args.out.clone();
            let result = scenario::api::run(args).await?;
            report::emit(&result, out.as_deref())
        }
        cli::Command::Wrk(args) => {
            let out = args.out.clone();
            let result = scenario::wrk::run(args).await?;
            report::emit(&result, out.as_deref())
        }
        cli::Command::Webhook(args) => {
            let out = args.out.clone();
            let result = scenario::webhook::run(args).await?;
            report::emit(&result, out.as_deref())
        }
        cli::Command::Coldstart(args) => {
            let out = args.out.clone();
            let result = scenario::coldstart::run(args).await?;
            report::emit(&result, out.as_deref())
        }
        cli::Command::Suite(args) => suite::run(args).await,
        cli::Command::Report(args) => render::run(args),
    }
}
