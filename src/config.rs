//! Configuration from `AGENT_RUNTIME_*` variables (and an optional `.env`),
//! validated into typed slices, one per subsystem. Loading has no side
//! effects: directories are created by `serve`, not here.

mod agent;
mod connectors;
mod gateway;
mod log;
mod reader;
mod source;
mod validate;

pub use reader::{Entry, Problem, Secret, Severity};
pub use source::{DotEnvError, ENV_FILE_VAR, EnvSource, Origin};

use crate::domain::{NotifyPolicy, UnknownValue};
pub use connectors::{ConnectorsConfig, DiscordConfig, EmailConfig, MailTls, SmtpConfig, TelegramConfig, is_loopback_host};
pub use gateway::{ChannelRules, GatewayConfig};
pub use log::{LogConfig, LogFormat};
use reader::Reader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration, as typed slices.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AGENT_RUNTIME_ENV`: reported by `/api/v1/info`.
    pub environment: String,
    /// Filesystem locations.
    pub paths: Paths,
    /// Admin HTTP listener.
    pub http: HttpConfig,
    /// Task queue and workers.
    pub orchestrator: OrchestratorConfig,
    /// LLM provider.
    pub llm: LlmConfig,
    /// System prompt and SOUL files.
    pub prompts: PromptFiles,
    /// Who hears about task outcomes.
    pub notify: NotifyConfig,
    /// Outbound delivery.
    pub outbox: OutboxConfig,
    /// Chat input limits.
    pub gateway: GatewayConfig,
    /// How the CLI reaches a running daemon.
    pub client: ClientConfig,
    /// Component health.
    pub heartbeat: HeartbeatConfig,
    /// Chat connectors.
    pub connectors: ConnectorsConfig,
    /// Objectives and the workspace watcher.
    pub scheduler: SchedulerConfig,
    /// The built-in markdown index.
    pub retrieval: crate::retrieval::RetrievalConfig,
    /// The agent's turn limits.
    pub agent: crate::agent::AgentLimits,
    /// Logging.
    pub log: LogConfig,
    /// How long old rows are kept (docs/retention.md).
    pub retention: RetentionConfig,
}

/// Bounded growth: old rows deleted in small batches, off the hot path.
#[derive(Debug, Clone, Copy)]
pub struct RetentionConfig {
    /// `AGENT_RUNTIME_RETENTION_DAYS`: days each kind is kept, as
    /// `kind=days` pairs (`outbox`, `inbox`, `tasks`, `usage`, `audit`; `0`
    /// or `forever` keeps it); unnamed kinds keep their default
    /// (`outbox=30,inbox=30,tasks=30,usage=90,audit=365`).
    pub policy: crate::store::RetentionPolicy,
    /// `AGENT_RUNTIME_RETENTION_INTERVAL_SECONDS` (default 600): time between
    /// retention passes (the first runs a few seconds after start).
    pub interval: Duration,
}

/// The scheduler that fires objectives, and the workspace watcher.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `AGENT_RUNTIME_SCHEDULER_ENABLED` (default true): fire objectives.
    pub enabled: bool,
    /// `AGENT_RUNTIME_OBJECTIVE_MAX_CONSECUTIVE_FAILURES` (default 5; 0: never):
    /// real failures in a row after which an objective pauses itself.
    pub max_consecutive_failures: u32,
    /// `AGENT_RUNTIME_OBJECTIVE_CATCH_UP_MAX` (default 24): most missed times a
    /// `catch_up=all` objective fires after downtime (the rest are recorded skipped).
    pub catch_up_max: usize,
    /// `AGENT_RUNTIME_OBJECTIVE_MISFIRE_GRACE_SECONDS` (default 60): a time fired
    /// later than this is "missed" and handled by the catch-up policy.
    pub misfire_grace: Duration,
    /// `AGENT_RUNTIME_OBJECTIVE_EVENT_DEDUPE_SECONDS` (default 30): one event run
    /// per objective and changed path within this window.
    pub event_dedupe: Duration,
    /// `AGENT_RUNTIME_WATCH_ENABLED` (default true): watch the workspace tree.
    pub watch: bool,
    /// `AGENT_RUNTIME_WATCH_DEBOUNCE_MS` (default 500): changes to a path are
    /// gathered this long before they are reported.
    pub watch_debounce: Duration,
}

/// Component health (`/api/v1/heartbeat`).
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// `AGENT_RUNTIME_HEARTBEAT_ENABLED` (default true); off → the endpoint answers 503.
    pub enabled: bool,
    /// `AGENT_RUNTIME_HEARTBEAT_INTERVAL_SECONDS` (default 30): how often derived
    /// states (stale) are checked for changes.
    pub interval: Duration,
    /// `AGENT_RUNTIME_HEARTBEAT_STALE_SECONDS` (default 120): a component that
    /// promised periodic beats and sent none for this long (or three of its
    /// intervals, if longer) is `stale`.
    pub stale_after: Duration,
    /// `AGENT_RUNTIME_HEARTBEAT_NOTIFY_ADMIN` (default true): tell admin chats
    /// when a component degrades and when it recovers.
    pub notify_admin: bool,
}

/// Filesystem locations.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `AGENT_RUNTIME_DATA_DIR` (default `./data`).
    pub data_dir: PathBuf,
    /// `AGENT_RUNTIME_WORKSPACE_ROOT` (default `<data>/workspaces`).
    pub workspace_root: PathBuf,
    /// `AGENT_RUNTIME_DB_PATH` (default `<data>/agent-runtime/meta.sqlite`).
    pub db_path: PathBuf,
}

impl Paths {
    /// The local PKI (`<data>/pki`).
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    /// The file where `serve` records its pid and bound address.
    pub fn serve_state_file(&self) -> PathBuf {
        self.data_dir.join("agent-runtime").join("serve.json")
    }
}

/// The admin HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `AGENT_RUNTIME_HTTP_ADDR` (default `127.0.0.1:8080`). Any address
    /// with mutual TLS; loopback only with plain HTTP.
    pub addr: SocketAddr,
    /// `AGENT_RUNTIME_HTTP_MAX_BODY_BYTES` (default 1 MiB).
    pub max_body_bytes: usize,
    /// `AGENT_RUNTIME_ADMIN_PLAIN_HTTP` (default false): serve without TLS,
    /// for local development and tests; refused on a non-loopback address.
    pub plain_http: bool,
    /// `AGENT_RUNTIME_ADMIN_TLS_CA_FILE`, `_SERVER_CERT_FILE`, `_SERVER_KEY_FILE`: the CA
    /// that signs admin client certificates and the server's certificate
    /// and key. Unset: the local PKI under `<data>/pki`, created on first start.
    pub tls_files: Option<TlsFiles>,
    /// `AGENT_RUNTIME_TLS_SANS` (default none): more names (DNS names or IP
    /// addresses, comma-separated) for the local PKI's server certificate,
    /// to serve off loopback; a missing one reissues the server certificate
    /// at start (same CA).
    pub tls_sans: Vec<String>,
    /// `AGENT_RUNTIME_ADMIN_TLS_HANDSHAKE_TIMEOUT_SECONDS` (default 10).
    pub handshake_timeout: Duration,
    /// `AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS` (default 256): authenticated
    /// admin connections served at once; past it a new one gets 503.
    pub max_connections: usize,
    /// `AGENT_RUNTIME_ADMIN_MAX_HANDSHAKES` (default 64): connections still
    /// in their TLS handshake at once; past it the oldest is dropped.
    pub max_handshakes: usize,
    /// `AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS` (default 32): open
    /// `/api/v1/events` streams; past it a new one gets 503.
    pub max_sse_subscribers: usize,
    /// `AGENT_RUNTIME_HEALTH_ADDR` (default unset): a plain-HTTP loopback
    /// listener serving only `/healthz` and `/readyz`, for probes.
    pub health_addr: Option<SocketAddr>,
    /// `AGENT_RUNTIME_EVENTS_SLOW_CLIENT_SECONDS` (default 30): an event-stream
    /// subscriber whose connection accepts nothing for this long is dropped.
    pub events_slow_client: Duration,
    /// `AGENT_RUNTIME_EVENTS_RETENTION_HOURS` (default 168): events older than
    /// this are pruned from the log (a resume from before them is told so).
    pub events_retention: Duration,
}

/// Certificate files for the admin API's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) that sign admin client certificates (PEM).
    pub ca: PathBuf,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// The task queue and worker pool.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// `AGENT_RUNTIME_DEFAULT_CONCURRENCY` (default 5): workers.
    pub concurrency: usize,
    /// `AGENT_RUNTIME_TASK_MAX_ATTEMPTS` (default 3): claims before failing for good.
    pub max_attempts: u32,
    /// `AGENT_RUNTIME_TASK_LEASE_SECONDS` (default 30): lease length; renewed every third.
    pub lease: Duration,
    /// `AGENT_RUNTIME_TASK_RETRY_BASE_SECONDS` (default 5): first retry delay, doubled each time.
    pub retry_base: Duration,
    /// `AGENT_RUNTIME_TASK_RETRY_MAX_SECONDS` (default 300): retry delay cap.
    pub retry_max: Duration,
    /// `AGENT_RUNTIME_SHUTDOWN_GRACE_SECONDS` (default 10): how long running tasks may finish on shutdown.
    pub shutdown_grace: Duration,
}

/// Which LLM API to speak.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions (`openai`, `z.ai`, `local`, `ollama`).
    OpenAi,
    /// Anthropic messages (`anthropic`, `claude`).
    Anthropic,
    /// No LLM at all (`none`, `off`).
    Disabled,
}

impl ProviderKind {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "openai" | "z.ai" | "local" | "ollama" => Ok(Self::OpenAi),
            "anthropic" | "claude" => Ok(Self::Anthropic),
            "none" | "off" | "disabled" => Ok(Self::Disabled),
            _ => Err("must be openai, z.ai, local, ollama, anthropic, claude or none".to_string()),
        }
    }

    /// The provider name recorded in `llm_usage`.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Disabled => "none",
        }
    }
}

/// How tools are offered to the model (`AGENT_RUNTIME_LLM_TOOLS`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ToolMode {
    /// `auto` (default): native tool calling; an OpenAI-compatible server
    /// that refuses `tools` is switched to text mode for the rest of the
    /// process.
    Auto,
    /// `native`: always native tool calling; a server that refuses `tools`
    /// fails the call.
    Native,
    /// `text`: tools are described in the system prompt and the model
    /// answers with a JSON object to call them; no `tools` field is sent.
    Text,
}

impl ToolMode {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "text" => Ok(Self::Text),
            _ => Err("must be auto, native or text".to_string()),
        }
    }

    /// The value as written in the variable.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Text => "text",
        }
    }
}

// `config check` shows a default through `Debug`: as the operator writes it.
impl std::fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// `config check` shows a value through `Debug`: show it as the operator
// writes it (`text`), not as the variant (`Text`).
impl std::fmt::Debug for ToolMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The LLM provider.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// `AGENT_RUNTIME_LLM_ENABLED` (default true): answer free text with the LLM.
    pub enabled: bool,
    /// `AGENT_RUNTIME_LLM_PROVIDER` (default `openai`).
    pub provider: ProviderKind,
    /// `AGENT_RUNTIME_LLM_BASE_URL` (default per provider).
    pub base_url: String,
    /// `AGENT_RUNTIME_LLM_API_KEY`.
    pub api_key: Option<Secret>,
    /// `AGENT_RUNTIME_LLM_MODEL` (default `gpt-4o` / `claude-3-5-sonnet-latest`).
    pub model: String,
    /// `AGENT_RUNTIME_LLM_TIMEOUT_SECONDS` (default 60).
    pub timeout: Duration,
    /// `AGENT_RUNTIME_LLM_MAX_CONCURRENT_CALLS` (default 16): model calls in
    /// flight at once; more wait their turn (cancelable while waiting).
    pub max_concurrent_calls: usize,
    /// `AGENT_RUNTIME_LLM_TOOLS` (default `auto`): native tool calling, or
    /// tools described in the system prompt (text mode).
    pub tools: ToolMode,
    /// `AGENT_RUNTIME_LLM_PRICES`: USD per million prompt and completion
    /// tokens by model, e.g. `gpt-4o=2.5/10,claude-3-5-sonnet-latest=3/15`
    /// (for the cost in `/api/v1/usage`; a name also prices the provider's
    /// longer names that start with it; models without a price show none).
    pub prices: Vec<ModelPrice>,
    /// Spending limits checked before every model call (docs/budgets.md).
    pub budget: BudgetConfig,
    /// `AGENT_RUNTIME_LLM_ADMIN_SYSTEM_PROMPT`.
    pub admin_system_prompt: String,
    /// `AGENT_RUNTIME_LLM_PUBLIC_SYSTEM_PROMPT`.
    pub public_system_prompt: String,
}

impl LlmConfig {
    /// `Ok` when a provider can be called; otherwise the sentence that says
    /// which variable to set.
    pub fn readiness(&self) -> Result<(), String> {
        let local = ["localhost", "127.0.0.1", "[::1]", "ollama"].iter().any(|h| self.base_url.contains(h));
        match self.provider {
            ProviderKind::Disabled => {
                Err("no LLM provider configured: AGENT_RUNTIME_LLM_PROVIDER is \"none\"; set it to openai or anthropic".into())
            }
            ProviderKind::OpenAi if self.api_key.is_none() && !local => Err(format!(
                "no LLM provider configured: set AGENT_RUNTIME_LLM_API_KEY (or point AGENT_RUNTIME_LLM_BASE_URL at a local server; now {})",
                self.base_url
            )),
            ProviderKind::Anthropic if self.api_key.is_none() => {
                Err("no LLM provider configured: set AGENT_RUNTIME_LLM_API_KEY for the Anthropic provider".into())
            }
            _ => Ok(()),
        }
    }
}

/// Spending limits of the model (unset or 0: no limit). Days are UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BudgetConfig {
    /// `AGENT_RUNTIME_LLM_DAILY_TOKENS`: prompt + completion tokens of all
    /// calls in one UTC day.
    pub daily_tokens: Option<u64>,
    /// `AGENT_RUNTIME_LLM_DAILY_USD`: USD of all priced calls in one UTC day
    /// (prices from `AGENT_RUNTIME_LLM_PRICES`; unpriced models cost nothing).
    pub daily_usd: Option<f64>,
    /// `AGENT_RUNTIME_LLM_TASK_TOKENS`: tokens one task may use, all its
    /// attempts together.
    pub task_tokens: Option<u64>,
}

/// System prompt and SOUL files, layered global → workspace → context.
#[derive(Debug, Clone)]
pub struct PromptFiles {
    /// `AGENT_RUNTIME_SYSTEM_PROMPT_GLOBAL_FILE` (default `context/SYSTEM_PROMPT.md`).
    pub system_global: PathBuf,
    /// `AGENT_RUNTIME_SYSTEM_PROMPT_WORKSPACE_REL_PATH` (default `context/SYSTEM_PROMPT.md`).
    pub system_workspace_rel: String,
    /// `AGENT_RUNTIME_SYSTEM_PROMPT_CONTEXT_REL_PATH` (default `context/agents/{context_id}/SYSTEM_PROMPT.md`).
    pub system_context_rel: String,
    /// `AGENT_RUNTIME_SOUL_GLOBAL_FILE` (default `context/SOUL.md`).
    pub soul_global: PathBuf,
    /// `AGENT_RUNTIME_SOUL_WORKSPACE_REL_PATH` (default `context/SOUL.md`).
    pub soul_workspace_rel: String,
    /// `AGENT_RUNTIME_SOUL_CONTEXT_REL_PATH` (default `context/agents/{context_id}/SOUL.md`).
    pub soul_context_rel: String,
}

/// Who hears about task outcomes.
#[derive(Debug, Clone, Copy)]
pub struct NotifyConfig {
    /// `AGENT_RUNTIME_TASK_NOTIFY_POLICY` (default `both`).
    pub policy: NotifyPolicy,
    /// `AGENT_RUNTIME_TASK_NOTIFY_SUCCESS_POLICY` (default: inherit).
    pub success: Option<NotifyPolicy>,
    /// `AGENT_RUNTIME_TASK_NOTIFY_FAILURE_POLICY` (default: inherit).
    pub failure: Option<NotifyPolicy>,
}

impl NotifyConfig {
    /// The policy for a success (`true`) or failure (`false`).
    pub fn for_outcome(&self, success: bool) -> NotifyPolicy {
        let over = if success { self.success } else { self.failure };
        over.unwrap_or(self.policy)
    }
}

/// Outbound delivery.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// `AGENT_RUNTIME_OUTBOX_MAX_ATTEMPTS` (default 8).
    pub max_attempts: u32,
    /// `AGENT_RUNTIME_OUTBOX_RETRY_BASE_SECONDS` (default 2).
    pub retry_base: Duration,
    /// `AGENT_RUNTIME_OUTBOX_RETRY_MAX_SECONDS` (default 600).
    pub retry_max: Duration,
}

/// How the CLI reaches a running daemon.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `AGENT_RUNTIME_ADMIN_API_URL` (default: the address `serve` recorded in the data dir).
    pub api_url: Option<String>,
    /// `AGENT_RUNTIME_ADMIN_TLS_CERT_FILE` (default `<data>/pki/clients/local-admin.pem`).
    pub cert_file: Option<PathBuf>,
    /// `AGENT_RUNTIME_ADMIN_TLS_KEY_FILE` (default `<data>/pki/clients/local-admin-key.pem`).
    pub key_file: Option<PathBuf>,
    /// `AGENT_RUNTIME_ADMIN_SERVER_CA_FILE`, else `AGENT_RUNTIME_ADMIN_TLS_CA_FILE`:
    /// the CA the client trusts for the server's certificate (unset: `<data>/pki/ca.pem`).
    pub server_ca_file: Option<PathBuf>,
    /// `AGENT_RUNTIME_ADMIN_HTTP_TIMEOUT_SECONDS` (default 120).
    pub timeout: Duration,
}

/// The result of reading the configuration: the config (with defaults where a
/// value was bad), every effective value and every problem.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Every value read, in order, secrets redacted.
    pub entries: Vec<Entry>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// The problems that stop the runtime from starting.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Error)
    }
}

/// The configuration has errors (→ exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `.env` file is unreadable.
    #[error(transparent)]
    DotEnv(#[from] DotEnvError),
    /// One or more variables are invalid; each line names the variable.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl Config {
    /// Reads the process environment and `.env`, and fails on any error.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_with_warnings().map(|(config, _)| config)
    }

    /// Like [`Config::load`], also returning the warnings (unknown
    /// variables with a did-you-mean, superseded ones) for `serve` to log:
    /// the same findings `config check` prints.
    pub fn load_with_warnings() -> Result<(Config, Vec<Problem>), ConfigError> {
        let loaded = Self::read(&EnvSource::load()?);
        let errors: Vec<Problem> = loaded.errors().cloned().collect();
        if errors.is_empty() { Ok((loaded.config, loaded.problems)) } else { Err(ConfigError::Invalid(errors)) }
    }

    /// Reads every variable from `src`, collecting all problems.
    pub fn read(src: &EnvSource) -> Loaded {
        let mut r = Reader::new(src);
        let config = read_all(&mut r);
        validate::check(&config, src, &mut r);
        Loaded { config, entries: r.entries, problems: r.problems }
    }
}

fn policy(raw: &str) -> Result<NotifyPolicy, String> {
    NotifyPolicy::parse(raw).map_err(|e: UnknownValue| format!("must be origin, admin or both ({})", e.value))
}

fn read_all(r: &mut Reader<'_>) -> Config {
    let environment = r.string("AGENT_RUNTIME_ENV", "development");
    let data_dir = PathBuf::from(r.string("AGENT_RUNTIME_DATA_DIR", "./data"));
    let paths = Paths {
        workspace_root: r.opt_string("AGENT_RUNTIME_WORKSPACE_ROOT").map_or_else(|| data_dir.join("workspaces"), PathBuf::from),
        db_path: r.opt_string("AGENT_RUNTIME_DB_PATH").map_or_else(|| data_dir.join("agent-runtime").join("meta.sqlite"), PathBuf::from),
        data_dir,
    };
    let default_addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let admin_ca = r.opt_string("AGENT_RUNTIME_ADMIN_TLS_CA_FILE");
    let tls_files = {
        let ca = admin_ca.clone();
        let cert = r.opt_string("AGENT_RUNTIME_ADMIN_TLS_SERVER_CERT_FILE");
        let key = r.opt_string("AGENT_RUNTIME_ADMIN_TLS_SERVER_KEY_FILE");
        match (ca, cert, key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca: ca.into(), cert: cert.into(), key: key.into() }),
            _ => {
                r.problem(
                    Severity::Error,
                    "AGENT_RUNTIME_ADMIN_TLS_CA_FILE",
                    "set all three of AGENT_RUNTIME_ADMIN_TLS_CA_FILE, _SERVER_CERT_FILE and _SERVER_KEY_FILE, or none (for the local PKI under <data>/pki)",
                );
                None
            }
        }
    };
    let http = HttpConfig {
        addr: r.parsed("AGENT_RUNTIME_HTTP_ADDR", default_addr, validate::http_addr),
        max_body_bytes: r.int("AGENT_RUNTIME_HTTP_MAX_BODY_BYTES", 1 << 20, 1024, 64 << 20) as usize,
        plain_http: r.bool("AGENT_RUNTIME_ADMIN_PLAIN_HTTP", false),
        tls_files,
        tls_sans: r.parsed_as("AGENT_RUNTIME_TLS_SANS", Vec::new(), "(unset)", parse_sans),
        handshake_timeout: r.seconds("AGENT_RUNTIME_ADMIN_TLS_HANDSHAKE_TIMEOUT_SECONDS", 10, 1, 300),
        max_connections: r.int("AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS", 256, 1, 65_536) as usize,
        max_handshakes: r.int("AGENT_RUNTIME_ADMIN_MAX_HANDSHAKES", 64, 1, 4096) as usize,
        max_sse_subscribers: r.int("AGENT_RUNTIME_ADMIN_MAX_SSE_SUBSCRIBERS", 32, 1, 4096) as usize,
        health_addr: r.parsed("AGENT_RUNTIME_HEALTH_ADDR", None, |raw| validate::http_addr(raw).map(Some)),
        events_slow_client: r.seconds("AGENT_RUNTIME_EVENTS_SLOW_CLIENT_SECONDS", 30, 1, 3600),
        events_retention: Duration::from_secs(3600 * r.int("AGENT_RUNTIME_EVENTS_RETENTION_HOURS", 168, 1, 24 * 3650)),
    };
    let orchestrator = OrchestratorConfig {
        concurrency: r.int("AGENT_RUNTIME_DEFAULT_CONCURRENCY", 5, 1, 256) as usize,
        max_attempts: r.int("AGENT_RUNTIME_TASK_MAX_ATTEMPTS", 3, 1, 100) as u32,
        lease: r.seconds("AGENT_RUNTIME_TASK_LEASE_SECONDS", 30, 1, 3600),
        retry_base: r.seconds("AGENT_RUNTIME_TASK_RETRY_BASE_SECONDS", 5, 1, 3600),
        retry_max: r.seconds("AGENT_RUNTIME_TASK_RETRY_MAX_SECONDS", 300, 1, 86_400),
        shutdown_grace: r.seconds("AGENT_RUNTIME_SHUTDOWN_GRACE_SECONDS", 10, 0, 600),
    };
    let llm = read_llm(r);
    let prompts = PromptFiles {
        system_global: PathBuf::from(r.string("AGENT_RUNTIME_SYSTEM_PROMPT_GLOBAL_FILE", "context/SYSTEM_PROMPT.md")),
        system_workspace_rel: r.string("AGENT_RUNTIME_SYSTEM_PROMPT_WORKSPACE_REL_PATH", "context/SYSTEM_PROMPT.md"),
        system_context_rel: r.string("AGENT_RUNTIME_SYSTEM_PROMPT_CONTEXT_REL_PATH", "context/agents/{context_id}/SYSTEM_PROMPT.md"),
        soul_global: PathBuf::from(r.string("AGENT_RUNTIME_SOUL_GLOBAL_FILE", "context/SOUL.md")),
        soul_workspace_rel: r.string("AGENT_RUNTIME_SOUL_WORKSPACE_REL_PATH", "context/SOUL.md"),
        soul_context_rel: r.string("AGENT_RUNTIME_SOUL_CONTEXT_REL_PATH", "context/agents/{context_id}/SOUL.md"),
    };
    let notify = NotifyConfig {
        policy: r.parsed_as("AGENT_RUNTIME_TASK_NOTIFY_POLICY", NotifyPolicy::Both, NotifyPolicy::Both.as_str(), policy),
        success: r.parsed("AGENT_RUNTIME_TASK_NOTIFY_SUCCESS_POLICY", None, |s| policy(s).map(Some)),
        failure: r.parsed("AGENT_RUNTIME_TASK_NOTIFY_FAILURE_POLICY", None, |s| policy(s).map(Some)),
    };
    let outbox = OutboxConfig {
        max_attempts: r.int("AGENT_RUNTIME_OUTBOX_MAX_ATTEMPTS", 8, 1, 100) as u32,
        retry_base: r.seconds("AGENT_RUNTIME_OUTBOX_RETRY_BASE_SECONDS", 2, 1, 3600),
        retry_max: r.seconds("AGENT_RUNTIME_OUTBOX_RETRY_MAX_SECONDS", 600, 1, 86_400),
    };
    let gateway = gateway::read(r);
    let client = ClientConfig {
        api_url: r.opt_string("AGENT_RUNTIME_ADMIN_API_URL"),
        cert_file: r.opt_string("AGENT_RUNTIME_ADMIN_TLS_CERT_FILE").map(PathBuf::from),
        key_file: r.opt_string("AGENT_RUNTIME_ADMIN_TLS_KEY_FILE").map(PathBuf::from),
        server_ca_file: r.opt_string("AGENT_RUNTIME_ADMIN_SERVER_CA_FILE").or(admin_ca).map(PathBuf::from),
        timeout: r.seconds("AGENT_RUNTIME_ADMIN_HTTP_TIMEOUT_SECONDS", 120, 1, 3600),
    };
    let heartbeat = HeartbeatConfig {
        enabled: r.bool("AGENT_RUNTIME_HEARTBEAT_ENABLED", true),
        interval: r.seconds("AGENT_RUNTIME_HEARTBEAT_INTERVAL_SECONDS", 30, 1, 3600),
        stale_after: r.seconds("AGENT_RUNTIME_HEARTBEAT_STALE_SECONDS", 120, 1, 86_400),
        notify_admin: r.bool("AGENT_RUNTIME_HEARTBEAT_NOTIFY_ADMIN", true),
    };
    let connectors = connectors::read(r);
    if gateway.attachment_chat_quota_bytes < connectors.attachment_max_bytes {
        r.problem(
            Severity::Warning,
            "AGENT_RUNTIME_ATTACHMENT_CHAT_QUOTA_BYTES",
            "is below AGENT_RUNTIME_ATTACHMENT_MAX_BYTES: no file larger than the quota can ever be kept",
        );
    }
    let scheduler = SchedulerConfig {
        enabled: r.bool("AGENT_RUNTIME_SCHEDULER_ENABLED", true),
        max_consecutive_failures: r.int("AGENT_RUNTIME_OBJECTIVE_MAX_CONSECUTIVE_FAILURES", 5, 0, 1000) as u32,
        catch_up_max: r.int("AGENT_RUNTIME_OBJECTIVE_CATCH_UP_MAX", 24, 1, 1000) as usize,
        misfire_grace: r.seconds("AGENT_RUNTIME_OBJECTIVE_MISFIRE_GRACE_SECONDS", 60, 1, 86_400),
        event_dedupe: r.seconds("AGENT_RUNTIME_OBJECTIVE_EVENT_DEDUPE_SECONDS", 30, 0, 86_400),
        watch: r.bool("AGENT_RUNTIME_WATCH_ENABLED", true),
        watch_debounce: Duration::from_millis(r.int("AGENT_RUNTIME_WATCH_DEBOUNCE_MS", 500, 50, 60_000)),
    };
    let retrieval = crate::retrieval::RetrievalConfig {
        enabled: r.bool("AGENT_RUNTIME_RETRIEVAL_ENABLED", true),
        db_path: r
            .opt_string("AGENT_RUNTIME_RETRIEVAL_DB_PATH")
            .map_or_else(|| paths.data_dir.join("agent-runtime").join("retrieval.sqlite"), PathBuf::from),
        exclude: r
            .parsed("AGENT_RUNTIME_RETRIEVAL_EXCLUDE_GLOBS", Vec::new(), parse_globs)
            .iter()
            .filter_map(|g| crate::domain::Glob::parse(g).ok())
            .collect(),
        max_file_bytes: r.int("AGENT_RUNTIME_RETRIEVAL_MAX_FILE_BYTES", 2 * 1024 * 1024, 1024, 256 * 1024 * 1024),
        reconcile_every: match r.int("AGENT_RUNTIME_RETRIEVAL_RECONCILE_SECONDS", 600, 0, 86_400 * 7) {
            0 => None,
            n => Some(Duration::from_secs(n)),
        },
    };
    if retrieval.db_path == paths.db_path {
        r.problem(
            Severity::Error,
            "AGENT_RUNTIME_RETRIEVAL_DB_PATH",
            "must not be the store's database (AGENT_RUNTIME_DB_PATH): the index is rebuilt at will",
        );
    }
    Config {
        environment,
        paths,
        http,
        orchestrator,
        llm,
        prompts,
        notify,
        outbox,
        gateway,
        client,
        heartbeat,
        connectors,
        scheduler,
        retrieval,
        agent: agent::read(r),
        log: log::read(r),
        retention: read_retention(r),
    }
}

/// Comma-separated names for the server certificate, each checked.
fn parse_sans(raw: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = raw.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect();
    for n in &names {
        crate::pki::valid_san(n)?;
    }
    Ok(names)
}

fn read_retention(r: &mut Reader<'_>) -> RetentionConfig {
    use crate::store::retention::Kind;
    let policy = r.parsed("AGENT_RUNTIME_RETENTION_DAYS", crate::store::RetentionPolicy::default(), parse_retention);
    if let Some(audit) = policy.days(Kind::Audit)
        && let Some(longer) = Kind::ALL.into_iter().find(|k| policy.days(*k).is_none_or(|d| d > audit))
    {
        r.problem(
            Severity::Warning,
            "AGENT_RUNTIME_RETENTION_DAYS",
            format!("audit is kept for less time than {}: the audit trail of those rows is gone before they are", longer.name()),
        );
    }
    RetentionConfig { policy, interval: r.seconds("AGENT_RUNTIME_RETENTION_INTERVAL_SECONDS", 600, 1, 86_400) }
}

/// `kind=days,...` over the defaults; `0` or `forever` keeps a kind.
fn parse_retention(raw: &str) -> Result<crate::store::RetentionPolicy, String> {
    use crate::store::retention::Kind;
    let kinds = Kind::ALL.map(Kind::name).join(", ");
    let mut policy = crate::store::RetentionPolicy::default();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, days) =
            item.split_once('=').ok_or_else(|| format!("{item:?} is not kind=days (e.g. outbox=30,usage=90; kinds: {kinds})"))?;
        let kind = Kind::parse(name).ok_or_else(|| format!("unknown kind {:?} (kinds: {kinds})", name.trim()))?;
        let days = match days.trim() {
            "forever" => None,
            d => Some(d.parse::<u32>().ok().filter(|&d| d <= 36_500).ok_or_else(|| {
                format!("{item:?}: days must be a whole number from 0 to 36500, or forever (0 and forever keep {} rows)", kind.name())
            })?),
        };
        policy.set(kind, days);
    }
    Ok(policy)
}

/// Comma-separated workspace-relative globs (checked; kept as typed for `config check`).
fn parse_globs(raw: &str) -> Result<Vec<String>, String> {
    let globs: Vec<String> = raw.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect();
    for g in &globs {
        crate::domain::Glob::parse(g)?;
    }
    Ok(globs)
}

/// A model's price in USD per million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPrice {
    /// Model name as the provider reports it.
    pub model: String,
    /// Per million prompt tokens.
    pub prompt: f64,
    /// Per million completion tokens.
    pub completion: f64,
}

/// `model=prompt/completion,...`.
impl ModelPrice {
    /// USD for these token counts.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.prompt + completion_tokens as f64 * self.completion) / 1e6
    }
}

/// The price for `model`: a price names a model or a prefix of the
/// provider's name for it (`gpt-4o` prices `gpt-4o-2024-08-06`); the longest
/// match wins.
pub fn price_for<'a>(prices: &'a [ModelPrice], model: &str) -> Option<&'a ModelPrice> {
    prices.iter().filter(|p| model.starts_with(&p.model)).max_by_key(|p| p.model.len())
}

fn parse_prices(raw: &str) -> Result<Vec<ModelPrice>, String> {
    let bad = |item: &str| format!("{item:?} is not model=prompt/completion (USD per million tokens, e.g. gpt-4o=2.5/10)");
    raw.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|item| {
            let (model, prices) = item.split_once('=').ok_or_else(|| bad(item))?;
            let (p, c) = prices.split_once('/').ok_or_else(|| bad(item))?;
            let num = |v: &str| v.trim().parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).ok_or_else(|| bad(item));
            let model = model.trim();
            if model.is_empty() {
                return Err(bad(item));
            }
            Ok(ModelPrice { model: model.to_string(), prompt: num(p)?, completion: num(c)? })
        })
        .collect()
}

/// A USD amount: finite, not negative; 0 is no limit.
pub fn parse_usd(raw: &str) -> Result<Option<f64>, String> {
    match raw.trim().trim_start_matches('$').parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok((v > 0.0).then_some(v)),
        _ => Err("must be a USD amount such as 5 or 0.50 (0: no limit)".to_string()),
    }
}

fn read_llm(r: &mut Reader<'_>) -> LlmConfig {
    let enabled = r.bool("AGENT_RUNTIME_LLM_ENABLED", true);
    let provider = r.parsed("AGENT_RUNTIME_LLM_PROVIDER", ProviderKind::OpenAi, ProviderKind::parse);
    let (base, model) = match provider {
        ProviderKind::Anthropic => ("https://api.anthropic.com/v1", "claude-3-5-sonnet-latest"),
        _ => ("https://api.openai.com/v1", "gpt-4o"),
    };
    LlmConfig {
        enabled,
        provider,
        base_url: r.parsed("AGENT_RUNTIME_LLM_BASE_URL", base.to_string(), validate::base_url),
        api_key: r.secret("AGENT_RUNTIME_LLM_API_KEY"),
        model: r.string("AGENT_RUNTIME_LLM_MODEL", model),
        timeout: r.seconds("AGENT_RUNTIME_LLM_TIMEOUT_SECONDS", 60, 1, 3600),
        max_concurrent_calls: r.int("AGENT_RUNTIME_LLM_MAX_CONCURRENT_CALLS", 16, 1, 1024) as usize,
        tools: r.parsed("AGENT_RUNTIME_LLM_TOOLS", ToolMode::Auto, ToolMode::parse),
        prices: r.parsed("AGENT_RUNTIME_LLM_PRICES", Vec::new(), parse_prices),
        budget: BudgetConfig {
            daily_tokens: Some(r.int("AGENT_RUNTIME_LLM_DAILY_TOKENS", 0, 0, u64::MAX / 2)).filter(|&t| t > 0),
            daily_usd: r.parsed("AGENT_RUNTIME_LLM_DAILY_USD", None, parse_usd),
            task_tokens: Some(r.int("AGENT_RUNTIME_LLM_TASK_TOKENS", 0, 0, u64::MAX / 2)).filter(|&t| t > 0),
        },
        admin_system_prompt: r.string(
            "AGENT_RUNTIME_LLM_ADMIN_SYSTEM_PROMPT",
            "You are assisting admin operators. Prioritize security, approvals, and operational clarity.",
        ),
        public_system_prompt: r.string(
            "AGENT_RUNTIME_LLM_PUBLIC_SYSTEM_PROMPT",
            "You are assisting community members. Be concise, safe, and policy-compliant.",
        ),
    }
}
