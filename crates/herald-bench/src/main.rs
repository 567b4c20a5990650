//! `herald-bench`: load tool for Herald (and any Centrifugo-protocol-v2 JSON server).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = herald_bench::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald-bench: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(herald_bench::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
