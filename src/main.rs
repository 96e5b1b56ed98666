//! The `agent-runtime` binary: parse the command line, set up logging, run,
//! and map errors to exit codes.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Logs to stderr, filtered by `AGENT_RUNTIME_LOG` (else `RUST_LOG`, else
/// `info`), as text or JSON lines (`AGENT_RUNTIME_LOG_FORMAT`). Read from the
/// environment and `.env` like the rest of the configuration; a bad format is
/// reported by `Config::load` (exit 2) right after, so text is used until then.
fn init_logging() {
    let log = agent_runtime::config::EnvSource::load().map(|src| agent_runtime::config::Config::read(&src).config.log).ok();
    let filter =
        log.as_ref().and_then(|l| l.filter.clone()).or_else(|| std::env::var("RUST_LOG").ok()).unwrap_or_else(|| "info".to_string());
    let mut filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // async-imap traces every command it sends, `LOGIN user password` included: never below info.
    if let Ok(cap) = "async_imap=info".parse() {
        filter = filter.add_directive(cap);
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    if log.is_some_and(|l| l.format == agent_runtime::config::LogFormat::Json) {
        // One object per line; span fields flattened into `spans` for shippers.
        builder.json().with_current_span(false).with_span_list(true).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn main() -> ExitCode {
    let cli = agent_runtime::cli::Cli::parse();
    if matches!(&cli.command, agent_runtime::cli::Cmd::Tui(a) if a.dump.is_none()) {
        // The console keeps thousands of rows and parses pages on worker
        // threads: the daemon's malloc settings keep its heap compact too
        // (docs/benchmarks.md, session 9). No logging: it would draw over the screen.
        let _ = agent_runtime::memory::tune_allocator();
    }
    if matches!(cli.command, agent_runtime::cli::Cmd::Serve) {
        // Everything `serve` creates is the operator's alone, like the PKI:
        // the database (SQLite gives -wal/-shm the database's mode), chat
        // logs, workspaces, staged attachments, the index, serve.json.
        // Files 0600 and directories 0700 whatever umask was inherited.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        // Before any thread: may restart the process with the malloc settings.
        // The data directory's lock is taken after it (`runtime::run`): std
        // opens files close-on-exec, so a lock taken before would not survive.
        let tuning = agent_runtime::memory::tune_allocator();
        init_logging();
        match tuning {
            agent_runtime::memory::Tuning::Operator(v) => tracing::info!(glibc_tunables = %v, "malloc settings from GLIBC_TUNABLES"),
            agent_runtime::memory::Tuning::Failed(why) => {
                tracing::warn!(reason = %why, "running with glibc's default malloc settings; memory after bursts will be higher")
            }
            _ => {}
        }
    }
    // Blocking work is store reads (at most `MAX_READERS` at once) and short
    // file writes, so two threads more than the readers serve it. Each
    // thread keeps a cache of freed heap chunks (glibc's tcache) that pins
    // heap pages a trim could otherwise give back (16 threads: +0.6 MiB
    // after 10,000 messages; 60 with no cap held ~10 MiB; docs/benchmarks.md).
    // An idle blocking thread exits after a second, freeing its cache
    // before the quiet daemon trims its heap (`memory::QUIET`).
    let blocking = agent_runtime::store::MAX_READERS + 2;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(blocking)
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .enable_all()
        .build()
    {
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
