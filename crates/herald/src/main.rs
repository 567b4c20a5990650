//! The `herald` binary: serve, and the small tools around a running server.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use tikv_jemallocator::Jemalloc;

// jemalloc keeps the resident memory of many idle connections lowest (see ../shared/STACK.md).
#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
