//! Tasks: durable units of work with an honest status and an append-only history.

use super::{ContextId, TaskId, TraceId, WorkspaceId};
use crate::clock::UnixMillis;
use serde::Serialize;
use std::fmt;

/// Task titles are cut to this many bytes (on a character boundary).
pub const TASK_TITLE_MAX: usize = 72;

/// A value that is not one of the allowed names (→ 400 at the API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {allowed}")]
pub struct UnknownValue {
    /// What was being parsed.
    pub what: &'static str,
    /// The refused input.
    pub value: String,
    /// The allowed names, comma separated.
    pub allowed: &'static str,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:expr, { $($(#[$vdoc:meta])* $variant:ident => $text:expr),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stored and displayed name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Parses a name (case-insensitive).
            pub fn parse(s: &str) -> Result<Self, UnknownValue> {
                let lower = s.trim().to_ascii_lowercase();
                match lower.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_string(), allowed: concat!($($text, " "),+) }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

named_enum!(
    /// Where a task is in its life. `succeeded`, `failed` and `canceled` are final.
    TaskStatus, "task status", {
        /// Waiting to be claimed (possibly not before a backoff time).
        Queued => "queued",
        /// Claimed by a worker holding a lease.
        Running => "running",
        /// Finished and its executor reported success.
        Succeeded => "succeeded",
        /// Finished with an error, for good.
        Failed => "failed",
        /// Canceled by a user before it finished.
        Canceled => "canceled",
    }
);

impl TaskStatus {
    /// Whether no further transition can happen.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }
}

named_enum!(
    /// What kind of work a task is; each kind has one executor.
    TaskKind, "task kind", {
        /// A prompt answered by the LLM.
        General => "general",
        /// A task that does nothing (benchmarks and tests of the queue itself).
        Noop => "noop",
        /// An objective's run: its prompt answered by the LLM, as `general`,
        /// with the run's outcome recorded on the objective.
        Objective => "objective",
        /// An agent turn that waited for an approval, continued with the
        /// decision; its answer is the notice to its chat.
        AgentResume => "agent_resume",
    }
);

impl TaskKind {
    /// Whether its executor calls the model (such tasks wait while the
    /// kill switch is on: the pool does not claim them).
    pub fn uses_model(self) -> bool {
        matches!(self, Self::General | Self::Objective | Self::AgentResume)
    }
}

named_enum!(
    /// What an objective does about scheduled times missed while the runtime was down.
    CatchUp, "catch_up", {
        /// Fire once, for the most recent missed time (the default).
        Latest => "latest",
        /// Fire every missed time (at most `AGENT_RUNTIME_OBJECTIVE_CATCH_UP_MAX`).
        All => "all",
        /// Fire none of them.
        None => "none",
    }
);

named_enum!(
    /// Why an objective run exists.
    RunTrigger, "trigger", {
        /// Its scheduled time came (or a `once` objective's `run_at`).
        Schedule => "schedule",
        /// A workspace change matched it.
        Event => "event",
        /// An operator asked (`POST /api/v1/objectives/{id}/run`).
        Manual => "manual",
        /// A time missed while the runtime was down, handled by the catch-up policy.
        CatchUp => "catch_up",
    }
);

named_enum!(
    /// Where an objective run is: its task's status, or `skipped`.
    RunOutcome, "outcome", {
        /// Its task waits for a worker.
        Queued => "queued",
        /// Its task runs.
        Running => "running",
        /// Its task succeeded.
        Succeeded => "succeeded",
        /// Its task failed for good.
        Failed => "failed",
        /// Its task was canceled.
        Canceled => "canceled",
        /// It did not fire (catch-up policy); `error` says why.
        Skipped => "skipped",
    }
);

named_enum!(
    /// Who hears about a task's outcome (`AGENT_RUNTIME_TASK_NOTIFY_POLICY`).
    NotifyPolicy, "notify policy", {
        /// The chat the task came from.
        Origin => "origin",
        /// Every admin context of the task's workspace.
        Admin => "admin",
        /// Both, deduplicated.
        Both => "both",
    }
);

/// A task to enqueue.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Workspace the task belongs to.
    pub workspace_id: WorkspaceId,
    /// Context (chat) it came from.
    pub context_id: ContextId,
    /// Kind of work.
    pub kind: TaskKind,
    /// Short title (cut to [`TASK_TITLE_MAX`]).
    pub title: String,
    /// The full prompt.
    pub prompt: String,
    /// Idempotency key: the same key never yields two tasks.
    pub run_key: Option<String>,
    /// The requesting user's platform id.
    pub source_user_id: Option<String>,
    /// Follows the request through the runtime.
    pub trace_id: TraceId,
    /// Whether the chat it came from may hear its outcome. `false` for a
    /// task made from a held message (an unverified email sender): its
    /// notices go to the admin chats only, never to a possibly forged address.
    pub tell_origin: bool,
}

/// Run-key prefixes the runtime keeps for itself: `inbox:<id>` is the task
/// a chat message asked for (its outcome is the reply to that message), and
/// the others are kept for internal producers (objectives and schedules,
/// approved actions, held untrusted messages, tasks the agent queued), so that no caller of the
/// admin API can claim or pre-empt a key the runtime will use.
pub const RESERVED_RUN_KEY_PREFIXES: [&str; 7] = ["inbox:", "objective:", "schedule:", "action:", "untrusted:", "agent:", "resume:"];

/// The reserved prefix `key` starts with (ignoring case and leading
/// blanks), if any.
pub fn reserved_run_key_prefix(key: &str) -> Option<&'static str> {
    let key = key.trim_start();
    RESERVED_RUN_KEY_PREFIXES.into_iter().find(|p| key.get(..p.len()).is_some_and(|head| head.eq_ignore_ascii_case(p)))
}

/// Cuts `text` to at most `max` bytes on a character boundary, on one line.
pub fn title_from(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

/// A stored task.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    /// Task id.
    pub id: TaskId,
    /// Workspace.
    pub workspace_id: WorkspaceId,
    /// Context.
    pub context_id: ContextId,
    /// Kind.
    pub kind: TaskKind,
    /// Title.
    pub title: String,
    /// Prompt.
    pub prompt: String,
    /// Idempotency key.
    pub run_key: Option<String>,
    /// Status.
    pub status: TaskStatus,
    /// Claims so far (a lease that expired counts).
    pub attempts: u32,
    /// Claims allowed before the task fails for good.
    pub max_attempts: u32,
    /// The worker holding the lease while running.
    pub lease_owner: Option<String>,
    /// When the lease runs out unless renewed.
    pub lease_expires_at: Option<UnixMillis>,
    /// Not claimable before this time (retry backoff).
    pub not_before: UnixMillis,
    /// Optimistic-concurrency version, bumped by every change.
    pub version: i64,
    /// Connector of the originating chat.
    pub source_connector: Option<String>,
    /// External id of the originating chat.
    pub source_external_id: Option<String>,
    /// Requesting user.
    pub source_user_id: Option<String>,
    /// Whether the chat it came from hears its outcome (see [`NewTask::tell_origin`]).
    pub tell_origin: bool,
    /// Short outcome for notices and lists.
    pub result_summary: Option<String>,
    /// Workspace-relative path of the full result.
    pub result_path: Option<String>,
    /// The last error.
    pub error: Option<String>,
    /// A cancel was asked for while running.
    pub cancel_requested: bool,
    /// Trace id.
    pub trace_id: TraceId,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
    /// Start of the latest attempt.
    pub started_at: Option<UnixMillis>,
    /// When it reached a final status.
    pub finished_at: Option<UnixMillis>,
}

/// One entry of a task's append-only history.
#[derive(Debug, Clone, Serialize)]
pub struct TaskEvent {
    /// Position in the task's history (1, 2, ...).
    pub seq: i64,
    /// The task.
    pub task_id: TaskId,
    /// When it happened.
    pub at: UnixMillis,
    /// What happened (`created`, `claimed`, `succeeded`, `retry_scheduled`, ...).
    pub event: String,
    /// Status before.
    pub from_status: Option<TaskStatus>,
    /// Status after.
    pub to_status: Option<TaskStatus>,
    /// Attempt number at the time.
    pub attempt: u32,
    /// Worker involved, if any.
    pub worker: Option<String>,
    /// Free-form detail (error text, reason).
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_run_keys_are_found_whatever_the_case_and_others_pass() {
        for key in ["inbox:7", "INBOX:7", "  Inbox:7", "objective:obj_1:2024", "schedule:x", "action:act_1", "untrusted:1"] {
            assert!(reserved_run_key_prefix(key).is_some(), "{key}");
        }
        assert_eq!(reserved_run_key_prefix("Inbox:7"), Some("inbox:"));
        for key in ["deploy:v2", "inbox", "my-inbox:1", "nightly-objective:1", "", "ä"] {
            assert_eq!(reserved_run_key_prefix(key), None, "{key}");
        }
    }

    #[test]
    fn status_names_round_trip_and_unknown_is_refused() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Ok(*s));
        }
        let err = TaskStatus::parse("done").unwrap_err();
        assert!(err.to_string().contains("queued running succeeded failed canceled"), "{err}");
    }

    #[test]
    fn title_is_cut_on_a_char_boundary() {
        let t = title_from(&"é".repeat(100), 72);
        assert!(t.len() <= 72 && t.chars().all(|c| c == 'é'));
        assert_eq!(title_from("a\n b\tc", 72), "a b c");
    }
}
