//! agent-runtime: a single-binary AI agent runtime for the chat tools people
//! already use.
//!
//! Codemap (one line per module; data flows connector → inbox → gateway →
//! orchestrator → agent → outbox → connector):
//! - [`config`]: typed configuration from `AGENT_RUNTIME_*` variables and `.env`.
//! - [`domain`]: ids as newtypes, task and message types shared by every module.
//! - [`clock`]: the injected time source (leases, backoff and expiry read it).
//! - [`store`]: the only module with SQL — migrations, one writer thread, typed methods.
//! - [`orchestrator`]: durable task queue, worker pool, leases, retries, cancel.
//! - [`budget`]: daily and per-task spending limits and the kill switch, checked before every model call.
//! - [`agent`]: LLM providers (OpenAI-compatible, Anthropic), prompts, the `general` executor.
//! - [`gateway`]: chat text → `Command`, permissions, pairing, approvals, channel rules, replies, chat logs.
//! - [`actions`]: sensitive actions run after approval (payload hashing, the webhook executor).
//! - [`outbox`]: durable outbound delivery through a `Publisher` per connector.
//! - [`api`]: the admin HTTP API (axum) behind mutual TLS: JSON endpoints, the SSE event stream, `/metrics`.
//! - [`pki`]: the local CA and certificates for the admin API (rcgen), and client identities from certificates.
//! - [`health`]: component health (the heartbeat) with derived staleness.
//! - [`memory`]: gives a burst's memory back once the daemon is quiet (SQLite caches, `malloc_trim`).
//! - [`metrics`]: Prometheus counters of what the process did, rendered with store gauges.
//! - [`client`]: the HTTP client the CLI uses to talk to a running daemon.
//! - [`tui`]: the fullscreen admin console (ratatui), a client of the admin API only.
//! - [`cli`]: clap commands (`serve`, `chat`, `task`, `config`, `version`, `completions`).
//! - [`backup`]: online backup (a consistent database snapshot, workspaces, optionally secrets) into one checked archive; verify; restore.
//! - [`runtime`]: wiring, the supervisor (cancellation + task tracker), signals, drain.
//! - [`workspace`]: the on-disk workspace tree (directories, chat logs, task results).

pub mod actions;
pub mod agent;
pub mod api;
pub mod backup;
pub mod budget;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod domain;
pub mod gateway;
pub mod health;
pub mod memory;
pub mod metrics;
pub mod orchestrator;
pub mod outbox;
pub mod pki;
pub mod retrieval;
pub mod runtime;
pub mod scheduler;
pub mod store;
pub mod tui;
pub mod workspace;

/// The version printed by `agent-runtime version` and `/api/v1/info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A boxed, sendable future: the return type of the object-safe async traits
/// (`Executor`, `LlmProvider`, `Publisher`).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
