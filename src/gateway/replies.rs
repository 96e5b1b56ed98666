//! One function per command: each returns the reply text.

use super::{COMMANDS, Gateway, Turn, perm};
use crate::domain::Role;
use crate::domain::{Context, Inbound, NewTask, TASK_TITLE_MAX, TaskKind, TaskStatus, title_from};
use crate::store::{CancelOutcome, StoreError, TaskFilter};

/// The commands this actor may run in this chat.
pub(super) fn help(t: &Turn<'_>) -> String {
    let mut out = String::from("Commands:\n");
    for c in COMMANDS.iter().filter(|c| perm::allowed(&t.actor, t.ctx, t.msg.kind, perm::rule(c.name)).is_ok()) {
        out.push_str(&format!("{} - {}\n", c.usage, c.about));
    }
    out.push_str("Anything else is answered by the language model, when one is configured.");
    out
}

pub(super) async fn task(g: &Gateway, ctx: &Context, msg: &Inbound, inbox_id: i64, prompt: String) -> Result<String, StoreError> {
    let new = NewTask {
        workspace_id: ctx.workspace_id.clone(),
        context_id: ctx.id.clone(),
        kind: TaskKind::General,
        title: title_from(&prompt, TASK_TITLE_MAX),
        prompt,
        run_key: Some(format!("inbox:{inbox_id}")),
        source_user_id: Some(msg.from_user_id.clone()),
        trace_id: msg.trace_id.clone(),
        tell_origin: true,
    };
    let queued = g.orchestrator.submit(new).await?;
    Ok(format!("Task queued: `{}`", queued.task.id))
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub(super) async fn tasks(g: &Gateway, ctx: &Context) -> Result<String, StoreError> {
    let filter = TaskFilter { context_id: Some(ctx.id.clone()), limit: Some(10), ..TaskFilter::default() };
    let tasks = g.store.list_tasks(filter).await?;
    if tasks.is_empty() {
        return Ok("No tasks in this chat yet. Queue one with /task <what should be done>.".to_string());
    }
    let mut out = format!("Recent tasks ({}):\n", tasks.len());
    for t in tasks {
        out.push_str(&format!("- `{}` {} - {}\n", short(t.id.as_str()), t.status, t.title));
    }
    out.push_str("Cancel one with /cancel <id>.");
    Ok(out)
}

pub(super) async fn status(g: &Gateway, ctx: &Context) -> Result<String, StoreError> {
    let counts = g.store.task_counts(Some(&ctx.id)).await?;
    let count = |s: TaskStatus| counts.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n);
    let tasks = TaskStatus::ALL.iter().map(|s| format!("{} {}", count(*s), s)).collect::<Vec<_>>().join(", ");
    Ok(format!(
        "Status of this chat:\n- workspace: `{}`\n- context: `{}`{}\n- tasks: {}\n- language model: {}\n- search: {}",
        ctx.workspace_id,
        ctx.id,
        if ctx.is_admin { " (admin)" } else { "" },
        tasks,
        if g.is_paused() { format!("{} — PAUSED by an admin (/agent status)", g.llm.describe()) } else { g.llm.describe() },
        search_status(g, &ctx.workspace_id),
    ))
}

/// The index's line in `/status`.
fn search_status(g: &Gateway, ws: &crate::domain::WorkspaceId) -> String {
    let Some(r) = g.retrieval() else { return "off (AGENT_RUNTIME_RETRIEVAL_ENABLED=false)".into() };
    let st = r.status();
    let c = st.workspaces.iter().find(|(w, _)| w == ws.as_str()).map(|(_, c)| c.clone()).unwrap_or_default();
    let pending = if st.pending_changes > 0 { format!(", {} changes waiting", st.pending_changes) } else { String::new() };
    format!("{} documents, {} sections indexed{pending} (/search <words>)", c.documents, c.chunks)
}

/// Cancels a task of this workspace: members their own, operators and up any.
pub(super) async fn cancel(g: &Gateway, t: &mut Turn<'_>, id: &str) -> Result<String, StoreError> {
    let ctx = t.ctx;
    let matches = g.store.find_tasks_by_prefix(&ctx.workspace_id, id, 2).await?;
    let task = match matches.as_slice() {
        [] => return Ok(format!("No task `{id}` in this workspace. See /tasks.")),
        [t] => t,
        _ => {
            return Ok(format!("`{id}` matches more than one task; give more of the id."));
        }
    };
    let own = task.source_user_id.as_deref() == Some(t.msg.from_user_id.as_str())
        && task.source_connector.as_deref() == Some(ctx.chat.connector.as_str());
    if !own && !t.actor.has(Role::Operator) {
        t.note(
            "permission.denied",
            crate::store::Decision::Deny,
            Some("/cancel: not the task's requester and below operator".into()),
            Some(task.id.to_string()),
        );
        return Ok(format!("Access denied: task `{}` was queued by someone else; only they or an operator can cancel it.", task.id));
    }
    Ok(match g.orchestrator.cancel(&task.id, "canceled from chat").await {
        Ok(CancelOutcome::Canceled(t)) => format!("Task `{}` canceled.", t.id),
        Ok(CancelOutcome::Requested(t)) => format!("Task `{}` is running; asked it to stop. You will get a notice when it has.", t.id),
        Err(StoreError::Conflict(why)) => {
            format!("Task `{}` cannot be canceled: {why}.", task.id)
        }
        Err(e) => return Err(e),
    })
}
