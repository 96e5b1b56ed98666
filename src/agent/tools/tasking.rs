//! `create_task`, `lookup_task`, `list_tasks`: the turn's workspace's tasks.
//!
//! A task the agent queues belongs to the turn's context and is the turn's
//! person's (`source_user_id`), so their role and the task rules apply to it
//! as if they had typed `/task`: the chat's rules and the task rate limit
//! (asked through [`ToolEnv::admit_task`]), at most a few per turn. Only chat
//! turns queue tasks (a task that could would multiply itself). What the
//! turn's chat may hear, the task's chat may hear (`tell_origin` is
//! copied). Its run key is derived from the turn's trace and the task's
//! text: a turn that runs again after a crash queues nothing twice.

use super::{Policy, ToolClass, ToolEnv, ToolError, ToolOutput, TypedTool};
use crate::BoxFuture;
use crate::clock::rfc3339;
use crate::domain::{NewTask, Role, TASK_TITLE_MAX, Task, TaskId, TaskKind, TaskStatus, title_from};
use crate::store::{StoreError, TaskFilter};
use schemars::JsonSchema;
use serde::Deserialize;

/// Longest task prompt the agent may queue.
pub const MAX_PROMPT_BYTES: usize = 8 * 1024;

fn store_error(e: StoreError) -> ToolError {
    ToolError::Failed(format!("the store is unavailable: {e}"))
}

/// Arguments of `create_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// A short title (one line).
    pub title: String,
    /// What the task should do, in full (it runs later, on its own).
    pub prompt: String,
}

/// `create_task`.
pub struct CreateTask;

impl TypedTool for CreateTask {
    type Args = CreateArgs;
    const NAME: &'static str = "create_task";
    const DESCRIPTION: &'static str =
        "Queue a background task in this chat's workspace: it runs later with its own turn, and its result is reported to this chat.";
    const CLASS: ToolClass = ToolClass::Tasking;
    const POLICY: Policy = Policy { min_role: Role::Member, in_tasks: false, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: CreateArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let prompt = args.prompt.trim();
            if prompt.is_empty() {
                return Err(ToolError::BadArguments { tool: Self::NAME, reason: "prompt is empty".into() });
            }
            if prompt.len() > MAX_PROMPT_BYTES {
                return Err(ToolError::BadArguments { tool: Self::NAME, reason: format!("prompt longer than {MAX_PROMPT_BYTES} bytes") });
            }
            let title =
                if args.title.trim().is_empty() { title_from(prompt, TASK_TITLE_MAX) } else { title_from(&args.title, TASK_TITLE_MAX) };
            let orchestrator = env.orchestrator.as_ref().ok_or_else(|| ToolError::Failed("tasks cannot be queued here".into()))?;
            if let Some(admit) = &env.admit_task {
                admit().map_err(ToolError::Refused)?;
            }
            let digest = ring::digest::digest(&ring::digest::SHA256, format!("{title}\n{prompt}").as_bytes());
            let short: String = digest.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect();
            let new = NewTask {
                workspace_id: env.context.workspace_id.clone(),
                context_id: env.context.id.clone(),
                kind: TaskKind::General,
                title,
                prompt: prompt.to_string(),
                run_key: Some(format!("agent:{}:{short}", env.trace_id)),
                source_user_id: Some(env.actor.clone()),
                trace_id: env.trace_id.clone(),
                tell_origin: env.tell_origin,
            };
            let queued = orchestrator.submit(new).await.map_err(store_error)?;
            let again = if queued.created { "" } else { " (already queued by this turn)" };
            Ok(ToolOutput::runtime("create_task", format!("Task queued: {}{again} — {}", queued.task.id, queued.task.title)))
        })
    }
}

/// A task, as the tools show it.
fn describe(t: &Task) -> String {
    let mut out = format!(
        "Task {}\n- title: {}\n- status: {}\n- kind: {}\n- created: {}\n- attempts: {}/{}",
        t.id,
        t.title,
        t.status,
        t.kind,
        rfc3339(t.created_at),
        t.attempts,
        t.max_attempts
    );
    if let Some(s) = &t.result_summary {
        out.push_str(&format!("\n- result: {s}"));
    }
    if let Some(p) = &t.result_path {
        out.push_str(&format!("\n- result file: {p}"));
    }
    if let Some(e) = &t.error {
        out.push_str(&format!("\n- error: {e}"));
    }
    let (prompt, cut) = super::cap(t.prompt.trim(), 600);
    out.push_str(&format!("\n- prompt: {prompt}{}", if cut { "…" } else { "" }));
    out
}

/// Arguments of `lookup_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupArgs {
    /// The task id, or a unique start of it (at least 4 characters).
    pub task_id: String,
}

/// `lookup_task`.
pub struct LookupTask;

impl TypedTool for LookupTask {
    type Args = LookupArgs;
    const NAME: &'static str = "lookup_task";
    const DESCRIPTION: &'static str = "Show one task of this workspace: status, result summary and file, error, prompt.";
    const CLASS: ToolClass = ToolClass::Tasking;
    const POLICY: Policy = Policy { min_role: Role::Viewer, in_tasks: true, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: LookupArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let id = args.task_id.trim();
            if id.len() < 4 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ToolError::BadArguments {
                    tool: Self::NAME,
                    reason: "task_id must be an id or its first 4+ characters".into(),
                });
            }
            let ws = &env.context.workspace_id;
            let found = env.store.find_tasks_by_prefix(ws, id, 2).await.map_err(store_error)?;
            let task = match found.as_slice() {
                [one] => one.clone(),
                [] => return Err(ToolError::Failed(format!("no task {id} in this workspace"))),
                _ => match env.store.get_task(&TaskId::from_string(id.to_string())).await {
                    Ok(t) if &t.workspace_id == ws => t,
                    _ => return Err(ToolError::Failed(format!("{id} starts more than one task; give more of the id"))),
                },
            };
            Ok(ToolOutput::runtime(format!("task {}", task.id), describe(&task)))
        })
    }
}

/// Arguments of `list_tasks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Only tasks with this status: queued, running, succeeded, failed or canceled.
    #[serde(default)]
    pub status: Option<String>,
    /// How many, newest first (1–20, default 10).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `list_tasks`.
pub struct ListTasks;

impl TypedTool for ListTasks {
    type Args = ListArgs;
    const NAME: &'static str = "list_tasks";
    const DESCRIPTION: &'static str = "List this chat's recent tasks, newest first (id, status, title).";
    const CLASS: ToolClass = ToolClass::Tasking;
    const POLICY: Policy = Policy { min_role: Role::Viewer, in_tasks: true, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: ListArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let status = match args.status.as_deref() {
                None => None,
                Some(s) => Some(TaskStatus::parse(s).map_err(|e| ToolError::BadArguments { tool: Self::NAME, reason: e.to_string() })?),
            };
            let limit = args.limit.unwrap_or(10).clamp(1, 20);
            let filter = TaskFilter { context_id: Some(env.context.id.clone()), status, limit: Some(limit), ..TaskFilter::default() };
            let tasks = env.store.list_tasks(filter).await.map_err(store_error)?;
            let text = if tasks.is_empty() {
                "No tasks.".to_string()
            } else {
                tasks.iter().map(|t| format!("- {} {} — {}", t.id, t.status, t.title)).collect::<Vec<_>>().join("\n")
            };
            Ok(ToolOutput::runtime("task list", text))
        })
    }
}
