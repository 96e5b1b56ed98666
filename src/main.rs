//! The `agent-runtime` binary: parse the command line, set up logging, run,
//! and map errors to exit codes.

use clap::Parser;

use std::io::IsTerminal;
use std::process::ExitCode;

fn init_logging() {
    let filter = std::env::var("AGENT_RUNTIME_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".to_string());
    let mut filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // async-imap traces every command it sends, `LOGIN user password` included: never below info.
    if let Ok(cap) = "async_imap=info".parse() {
        filter = filter.add_directive(cap);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = agent_runtime::cli::Cli::parse();
    if matches!(cli.command, agent_runtime::cli::Cmd::Serve) {
        init_logging();
    }
    // Blocking work is store reads (at most `MAX_READERS` at once) and short
    // file writes: 16 threads serve it, and every extra thread would keep its
    // own malloc arena (measured: 60 threads after a burst held ~10 MiB).
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(16).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-runtime: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent_runtime::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent-runtime: {e:#}");
            ExitCode::FAILURE
        }
    }
}
