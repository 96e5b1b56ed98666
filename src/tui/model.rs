//! The admin API's answers as the TUI reads them: tolerant structs (every
//! field defaulted, unknown fields ignored), so a newer daemon that adds a
//! field never breaks an older console.

use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// `GET /api/v1/info`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Info {
    /// The daemon's version.
    pub version: String,
    /// `AGENT_RUNTIME_ENV`.
    pub environment: String,
    /// Who this console is to the daemon.
    pub caller: Caller,
}

/// The certificate the console presents, as the daemon sees it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Caller {
    /// `cert:<CN>`, or `api` over plain loopback HTTP.
    pub subject: String,
    /// `viewer` … `overlord`; empty when the daemon is too old to say.
    pub role: String,
}

/// One heartbeat component.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Component {
    /// `store`, `orchestrator`, `telegram`, …
    pub name: String,
    /// `healthy`, `degraded`, `stale`, …
    pub state: String,
    /// Why it is not healthy.
    pub error: Option<String>,
    /// What it last said.
    pub message: Option<String>,
}

/// `GET /api/v1/heartbeat`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Heartbeat {
    /// `healthy`, `degraded`, …
    pub overall: String,
    /// Every component.
    pub components: Vec<Component>,
}

/// A task (`GET /api/v1/tasks`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Task {
    /// Its id.
    pub id: String,
    /// `general`, `noop`, `objective`, …
    pub kind: String,
    /// Its title.
    pub title: String,
    /// What it was asked.
    pub prompt: String,
    /// `queued`, `running`, `succeeded`, `failed`, `canceled`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Its attempt budget.
    pub max_attempts: i64,
    /// The workspace.
    pub workspace_id: String,
    /// The chat it answers.
    pub source_connector: Option<String>,
    /// The chat it answers.
    pub source_external_id: Option<String>,
    /// Who asked.
    pub source_user_id: Option<String>,
    /// Its outcome in a line.
    pub result_summary: Option<String>,
    /// Its full result on disk.
    pub result_path: Option<String>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// A cancel is pending.
    pub cancel_requested: bool,
    /// Unix seconds.
    pub created_at_unix: i64,
    /// Unix seconds.
    pub updated_at_unix: i64,
    /// Its history (only in `GET /api/v1/tasks/{id}`).
    pub events: Vec<TaskEvent>,
}

/// A task as the list keeps it: what the table shows and the filter reads,
/// in a few hundred bytes (the full task, with its prompt, result and
/// history, is fetched when its details are opened), so 10,000 listed tasks
/// fit in a few MiB.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskRow {
    /// Its id.
    pub id: Box<str>,
    /// `queued`, `running`, `succeeded`, `failed`, `canceled` (shared, not allocated per row).
    pub status: Cow<'static, str>,
    /// `general`, `noop`, `objective`, … (shared, not allocated per row).
    pub kind: Cow<'static, str>,
    /// Its title, else the start of its prompt.
    pub label: Box<str>,
    /// Who asked.
    pub who: Box<str>,
    /// Attempts so far.
    pub attempts: u16,
    /// Its attempt budget.
    pub max_attempts: u16,
    /// Unix seconds.
    pub updated_at_unix: i64,
}

/// The words every row repeats, kept once.
const COMMON: [&str; 9] = ["queued", "running", "succeeded", "failed", "canceled", "general", "noop", "objective", "untrusted"];

/// `s` as a shared word when it is a common one, else its own copy.
pub fn intern(s: String) -> Cow<'static, str> {
    match COMMON.iter().find(|c| **c == s) {
        Some(c) => Cow::Borrowed(c),
        None => Cow::Owned(s),
    }
}

/// How much of a prompt a list row keeps.
pub const LABEL_CHARS: usize = 120;

impl From<Task> for TaskRow {
    fn from(t: Task) -> Self {
        let label = if t.title.trim().is_empty() { t.prompt } else { t.title };
        let label: String = label.chars().take(LABEL_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
        Self {
            id: t.id.into(),
            status: intern(t.status),
            kind: intern(t.kind),
            label: label.into(),
            who: t.source_user_id.unwrap_or_default().into(),
            attempts: u16::try_from(t.attempts).unwrap_or(u16::MAX),
            max_attempts: u16::try_from(t.max_attempts).unwrap_or(u16::MAX),
            updated_at_unix: t.updated_at_unix,
        }
    }
}

/// One step of a task's history.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TaskEvent {
    /// Unix ms.
    pub at: i64,
    /// `created`, `claimed`, …
    pub event: String,
    /// The attempt.
    pub attempt: i64,
    /// Free text.
    pub detail: Option<String>,
}

/// An action waiting for (or decided by) an admin.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Approval {
    /// `act_…`.
    pub id: String,
    /// Who asked.
    pub requester: String,
    /// `webhook`, `send_email`, …
    pub action_type: String,
    /// Where it goes.
    pub target: String,
    /// In a line.
    pub summary: String,
    /// The canonical payload.
    pub payload_json: String,
    /// SHA-256 of the whole action.
    pub payload_hash: String,
    /// `pending`, `approved`, `denied`, `expired`.
    pub status: String,
    /// Who decided.
    pub approver: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Unix ms.
    pub expires_at: i64,
    /// `not_executed`, `succeeded`, …
    pub execution_status: String,
    /// Unix ms.
    pub created_at: i64,
}

/// An objective with its health and statistics.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Objective {
    /// Its id.
    pub id: String,
    /// The workspace.
    pub workspace_id: String,
    /// The chat it reports to.
    pub context_id: String,
    /// Its title.
    pub title: String,
    /// What each run asks.
    pub prompt: String,
    /// `schedule`, `event`, `once`.
    pub trigger_type: String,
    /// The schedule.
    pub cron_expr: String,
    /// `markdown.updated`.
    pub event_key: String,
    /// A workspace-relative glob.
    pub event_filter: Option<String>,
    /// IANA zone.
    pub timezone: String,
    /// `latest`, `all`, `none`.
    pub catch_up: String,
    /// Not paused.
    pub active: bool,
    /// Unix seconds.
    pub next_run_unix: Option<i64>,
    /// The next five fire times.
    pub next_runs_unix: Vec<i64>,
    /// `healthy`, `degraded`, `paused`, `auto_paused`.
    pub health_state: String,
    /// The newest run's outcome.
    pub last_outcome: Option<String>,
    /// Why it paused itself.
    pub auto_paused_reason: Option<String>,
    /// The last failed run's error.
    pub last_error: Option<String>,
    /// Ended runs.
    pub run_count: i64,
    /// Successful runs.
    pub success_count: i64,
    /// Failed runs.
    pub failure_count: i64,
}

/// A pairing request.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Pairing {
    /// Its id.
    pub id: String,
    /// First and last four characters of the token.
    pub token_hint: String,
    /// The chat platform.
    pub connector: String,
    /// The person's id there.
    pub connector_user_id: String,
    /// Their name.
    pub display_name: Option<String>,
    /// `pending`, `approved`, `denied`, `expired`.
    pub status: String,
    /// Unix ms.
    pub expires_at: i64,
    /// The role granted.
    pub role: Option<String>,
    /// Who decided.
    pub approver: Option<String>,
}

/// A context (one chat) in a workspace.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Context {
    /// Its id.
    pub id: String,
    /// Its workspace.
    pub workspace_id: String,
    /// The platform.
    pub connector: String,
    /// The chat's id there.
    pub external_id: String,
    /// Its name.
    pub display_name: Option<String>,
    /// An admin channel.
    pub is_admin: bool,
    /// Unix seconds.
    pub created_at_unix: i64,
}

/// One audit row.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuditRow {
    /// Its id.
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub event: String,
    /// `allow`, `deny`, `info`.
    pub decision: String,
    /// Why.
    pub reason: Option<String>,
    /// On what.
    pub subject: Option<String>,
}

/// LLM usage of one day and model.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct UsageRow {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Calls.
    pub calls: i64,
    /// Failed calls.
    pub errors: i64,
    /// Tokens in.
    pub prompt_tokens: i64,
    /// Tokens out.
    pub completion_tokens: i64,
    /// Priced models only.
    pub cost_usd: Option<f64>,
}

/// One event of the log or the live stream.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Event {
    /// Its id (the resume point).
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    /// `task.succeeded`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// What it carries.
    pub data: Value,
}

/// An outbound chat message (`GET /api/v1/chat/messages`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ChatMessage {
    /// Its outbox id.
    pub id: i64,
    /// `reply`, `task_notice`, …
    pub kind: String,
    /// The text.
    pub body: String,
    /// Unix ms.
    pub created_at: i64,
}

/// The figures the overview reads from `/metrics` (gauges only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    /// Queued tasks due now.
    pub queue_depth: i64,
    /// Tasks per status.
    pub tasks: Vec<(String, i64)>,
    /// Outbox messages that failed for good.
    pub outbox_failed: i64,
    /// Outbox messages waiting.
    pub outbox_pending: i64,
    /// Approvals waiting.
    pub approvals_pending: i64,
    /// Pairings waiting.
    pub pairings_pending: i64,
}

impl Gauges {
    /// Reads the gauges out of Prometheus text; lines it does not know are skipped.
    pub fn parse(text: &str) -> Self {
        let mut g = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            #[expect(clippy::cast_possible_truncation, reason = "gauges are counts")]
            let n = value as i64;
            let label = |key: &str| name.split(&format!("{key}=\"")).nth(1).and_then(|r| r.split('"').next()).map(str::to_string);
            match name.split('{').next().unwrap_or_default() {
                "agent_runtime_queue_depth" => g.queue_depth = n,
                "agent_runtime_tasks" => g.tasks.extend(label("status").map(|s| (s, n))),
                "agent_runtime_outbox_messages" => match label("status").as_deref() {
                    Some("failed") => g.outbox_failed = n,
                    Some("pending") => g.outbox_pending = n,
                    _ => {}
                },
                "agent_runtime_approvals_pending" => g.approvals_pending = n,
                "agent_runtime_pairings_pending" => g.pairings_pending = n,
                _ => {}
            }
        }
        g
    }

    /// Tasks with `status`.
    pub fn tasks(&self, status: &str) -> i64 {
        self.tasks.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n)
    }
}
