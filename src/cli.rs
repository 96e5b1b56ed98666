//! The command line (clap): `serve`, `chat`, `task`, `approval`, `pairing`,
//! `objective`, `workspace`, `search`, `open`, `index`, `tui`, `events`, `health`, `audit`, `usage`, `agent`, `pki`,
//! `config check`, `backup`, `restore`, `version`, `man`, `completions`. Everything but `serve`, `pki`,
//! `config`, `backup` and `restore` talks to a running daemon through its API.

/// `println!` that ends the process quietly when stdout's reader went away (`out.rs`).
macro_rules! outln {
    () => {
        $crate::cli::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}

/// `print!` that ends the process quietly when stdout's reader went away (`out.rs`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::text(format_args!($($arg)*))
    };
}

mod agent;
pub use agent::budget_lines;
mod approval;
mod backup;
mod chat;
mod config_check;
mod events;
mod objective;
pub mod out;
mod pairing;
mod pki;
mod report;
mod search;
mod task;
mod workspace;

use crate::client::{ApiClient, ClientTls};
use crate::config::Config;
use crate::runtime::{LockError, ServeError};
use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// agent-runtime: run an AI agent from Telegram, Discord, email and the CLI,
/// with durable tasks, approvals and an admin API.
#[derive(Debug, Parser)]
#[command(name = "agent-runtime", version, about, long_about = None)]
pub struct Cli {
    /// Where and how to reach the daemon.
    #[command(flatten)]
    pub conn: Conn,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// How client verbs reach the daemon.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// Admin API base URL for client commands (default: the URL the local
    /// `serve` recorded in its data dir, else https://<AGENT_RUNTIME_HTTP_ADDR>,
    /// i.e. https://127.0.0.1:8080; http:// with AGENT_RUNTIME_ADMIN_PLAIN_HTTP).
    #[arg(long, global = true, env = "AGENT_RUNTIME_ADMIN_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// Client certificate for the admin API (default: <data>/pki/clients/local-admin.pem).
    #[arg(long, global = true, value_name = "PEM")]
    pub cert: Option<std::path::PathBuf>,
    /// The client certificate's key (default: <data>/pki/clients/local-admin-key.pem).
    #[arg(long, global = true, value_name = "PEM")]
    pub key: Option<std::path::PathBuf>,
    /// CA that signed the server's certificate (default: <data>/pki/ca.pem).
    #[arg(long, global = true, value_name = "PEM")]
    pub ca: Option<std::path::PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the daemon: workers, outbox and the admin API (configured by AGENT_RUNTIME_* variables and .env).
    Serve,
    /// Talk to the agent: one message with -m, or an interactive session.
    Chat(chat::ChatArgs),
    /// List, show, create and cancel tasks.
    #[command(subcommand)]
    Task(task::TaskCmd),
    /// List, show, propose, approve and deny sensitive action requests.
    #[command(subcommand)]
    Approval(approval::ApprovalCmd),
    /// Start, look up, approve and deny pairing requests (linking chat identities to users).
    #[command(subcommand)]
    Pairing(pairing::PairingCmd),
    /// Objectives (scheduled, one-time or event-driven instructions): list, show, create, update, pause, resume, delete, their runs, run now.
    #[command(subcommand)]
    Objective(objective::ObjectiveCmd),
    /// Workspaces and contexts (chats); make a chat an admin channel.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCmd),
    /// Inspect a context (chat): what the agent sends the model; set its daily budget.
    #[command(subcommand)]
    Context(workspace::ContextCmd),
    /// Search a workspace's markdown (the built-in index): words, "a phrase", prefix*, -word.
    Search(search::SearchArgs),
    /// Show a workspace document, or one section of it (a search result's path#n).
    Open(search::OpenArgs),
    /// The markdown index: status, rebuild.
    #[command(subcommand)]
    Index(search::IndexCmd),
    /// The fullscreen admin console: health, approvals, tasks, objectives, pairings, chats, live activity, chat, audit, usage.
    Tui(crate::tui::TuiArgs),
    /// The event log (task, approval, message, pairing, objective and health changes); --follow streams it live.
    Events(events::EventsArgs),
    /// Component health (the heartbeat); exits 1 unless everything is healthy (with --json too).
    Health {
        /// Print JSON (the exit status is the same).
        #[arg(long)]
        json: bool,
    },
    /// The audit log: permission, pairing, approval and API decisions.
    #[command(subcommand)]
    Audit(report::AuditCmd),
    /// LLM calls, tokens and cost per day, provider and model.
    Usage {
        /// The last N days (UTC).
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The kill switch: stop or restart every model call; the spend against the budgets.
    #[command(subcommand)]
    Agent(agent::AgentCmd),
    /// The admin API's local PKI: init, issue-client, show.
    #[command(subcommand)]
    Pki(pki::PkiCmd),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Back up the database (online: serve keeps running), the workspaces and, with --include-secrets, the PKI and
    /// .env into one checked archive; --verify checks an archive.
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty data directory (or --force: move what is there aside); refused while serve runs.
    Restore(backup::RestoreArgs),
    /// Print the version; --json adds the git commit, the database schema version and the built-in features.
    Version {
        /// Print JSON: version, git_commit (null when built without git), schema_version, features.
        #[arg(long)]
        json: bool,
    },
    /// Write man pages into DIR: agent-runtime.1 and one page per subcommand (agent-runtime-task-list.1, ...).
    Man {
        /// The directory (created if missing), e.g. /usr/local/share/man/man1.
        dir: std::path::PathBuf,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (secrets redacted) and every problem; exit 2 on errors.
    Check,
}

/// Exit code for configuration errors (and for a data directory another
/// `serve` holds).
pub const EXIT_CONFIG: u8 = 2;

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Version { json } => version(json),
        Cmd::Man { dir } => man(&dir),
        Cmd::Completions { shell } => {
            // Into memory first: the generator panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "agent-runtime", &mut script);
            out::bytes(&script);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config(ConfigCmd::Check) => config_check::run(),
        Cmd::Pki(cmd) => pki::run(cmd),
        Cmd::Backup(args) => backup::run_backup(args).await,
        Cmd::Restore(args) => backup::run_restore(args).await,
        Cmd::Audit(cmd) => report::audit(client(&cli.conn)?, cmd).await,
        Cmd::Usage { days, json } => report::usage(client(&cli.conn)?, days, json).await,
        Cmd::Agent(cmd) => agent::run(client(&cli.conn)?, cmd).await,
        Cmd::Serve => serve().await,
        Cmd::Chat(args) => chat::run(client(&cli.conn)?, args).await,
        Cmd::Task(cmd) => task::run(client(&cli.conn)?, cmd).await,
        Cmd::Approval(cmd) => approval::run(client(&cli.conn)?, cmd).await,
        Cmd::Pairing(cmd) => pairing::run(client(&cli.conn)?, cmd).await,
        Cmd::Objective(cmd) => objective::run(client(&cli.conn)?, cmd).await,
        Cmd::Workspace(cmd) => workspace::run(client(&cli.conn)?, cmd).await,
        Cmd::Context(cmd) => workspace::run_context(client(&cli.conn)?, cmd).await,
        Cmd::Events(args) => events::run(client(&cli.conn)?, args).await,
        Cmd::Search(args) => search::search(client(&cli.conn)?, args).await,
        Cmd::Open(args) => search::open(client(&cli.conn)?, args).await,
        Cmd::Index(cmd) => search::index(client(&cli.conn)?, cmd).await,
        Cmd::Tui(args) => crate::tui::run(client(&cli.conn)?, args).await,
        Cmd::Health { json } => events::health(client(&cli.conn)?, json).await,
    }
}

/// What this binary is built with, for `version --json`: the chat doors,
/// model APIs and admin features compiled in (there are no Cargo features;
/// each is always present and turned on by configuration).
const BUILT_IN: &[&str] =
    &["telegram", "discord", "email-imap", "email-smtp", "openai", "anthropic", "admin-mtls", "retrieval", "tui", "log-json"];

fn version(json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&serde_json::json!({
            "version": crate::VERSION,
            "git_commit": option_env!("BUILT_FROM_GIT_COMMIT"),
            "schema_version": crate::store::SCHEMA_VERSION,
            "features": BUILT_IN,
        }));
    } else {
        outln!("agent-runtime {}", crate::VERSION);
    }
    Ok(ExitCode::SUCCESS)
}

fn man(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir).with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    // The pages clap_mangen writes: the command and every visible subcommand, recursively.
    fn pages(cmd: &clap::Command) -> usize {
        1 + cmd.get_subcommands().filter(|c| !c.is_hide_set() && c.get_name() != "help").map(pages).sum::<usize>()
    }
    let pages = pages(&Cli::command());
    outln!("{pages} man page(s) in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

async fn serve() -> anyhow::Result<ExitCode> {
    let config = match Config::load_with_warnings() {
        Ok((c, warnings)) => {
            for w in warnings {
                tracing::warn!(variable = %w.variable, "{}", w.message);
            }
            c
        }
        Err(e) => {
            eprintln!("agent-runtime: {e}\nRun `agent-runtime config check` for the full picture.");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    match crate::runtime::run(config).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The same data directory twice is a setup mistake, not a crash: exit 2 like one.
        Err(e @ ServeError::Lock(LockError::Held { .. })) => {
            eprintln!("agent-runtime: {e}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Err(e) => Err(e.into()),
    }
}

fn client(conn: &Conn) -> anyhow::Result<ApiClient> {
    let loaded = Config::read(&crate::config::EnvSource::load()?);
    let base = ApiClient::resolve_base(conn.api_url.as_deref(), &loaded.config);
    let tls = ClientTls::resolve(&loaded.config, conn.cert.clone(), conn.key.clone(), conn.ca.clone());
    Ok(ApiClient::new(&base, loaded.config.client.timeout, Some(&tls))?)
}

/// Prints `value` as pretty JSON.
fn print_json(value: &serde_json::Value) {
    outln!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Prints a list answer: the whole JSON with `--json`; else `header`, one
/// `row` per item of `v[key]`, the count of `noun`s and, when the answer is
/// paged (`next_before` / `next_after`), the flag that fetches the next page.
fn print_list(v: &serde_json::Value, json: bool, key: &str, header: &str, noun: &str, row: impl Fn(&serde_json::Value) -> String) {
    if json {
        return print_json(v);
    }
    let items = v[key].as_array().map(Vec::as_slice).unwrap_or_default();
    outln!("{header}");
    for item in items {
        outln!("{}", row(item));
    }
    outln!("{} {noun}(s)", items.len());
    for (field, flag) in [("next_before", "--before"), ("next_after", "--after")] {
        if let Some(next) = v[field].as_str().map(str::to_string).or_else(|| v[field].as_i64().map(|n| n.to_string())) {
            outln!("more: {flag} {next}");
        }
    }
}

/// An id as one URL path segment: anything but letters, digits and `-_.~`
/// percent-encoded, so `task show a/b` reaches the task route and gets "not
/// a valid task id" rather than "no such endpoint".
fn seg(id: &str) -> String {
    id.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Prints `label` and a string field of an API object, when it is present.
fn print_if(label: &str, v: &serde_json::Value, key: &str) {
    if let Some(x) = v.get(key).and_then(serde_json::Value::as_str) {
        outln!("{label}{x}");
    }
}

/// A string field of an API object, or `-`.
fn s<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key).and_then(serde_json::Value::as_str).unwrap_or("-")
}

/// A unix-ms field of an API object as RFC 3339.
fn at(v: &serde_json::Value, key: &str) -> String {
    crate::clock::rfc3339(v[key].as_i64().unwrap_or(0))
}
