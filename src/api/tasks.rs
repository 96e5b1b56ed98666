//! `/api/v1/tasks`: create (idempotent by `run_key`), list with filters, get
//! with history, optimistic `PATCH` (`if_version`), cancel. A task is
//! created in an existing chat (see `target`), never under a run key the
//! runtime keeps for itself, and on behalf of the caller, never of a chat
//! user.

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery, page_limit};
use super::target::{API_CONNECTOR, context_for};
use super::tls::Caller;
use crate::domain::{
    ChatRef, ContextId, NewTask, TASK_TITLE_MAX, Task, TaskEvent, TaskId, TaskKind, TaskStatus, TraceId, WorkspaceId,
    reserved_run_key_prefix, title_from,
};
use crate::store::{CancelOutcome, TaskFilter, TaskPatch};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

const PROMPT_MAX_BYTES: usize = 256 * 1024;

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// A task as the API shows it (times in unix seconds, as the Go runtime).
#[derive(Debug, Serialize)]
pub struct TaskView {
    id: String,
    workspace_id: String,
    context_id: String,
    kind: TaskKind,
    title: String,
    prompt: String,
    run_key: Option<String>,
    status: TaskStatus,
    attempts: u32,
    max_attempts: u32,
    version: i64,
    lease_owner: Option<String>,
    lease_expires_at_unix: Option<i64>,
    not_before_unix: i64,
    source_connector: Option<String>,
    source_external_id: Option<String>,
    source_user_id: Option<String>,
    result_summary: Option<String>,
    result_path: Option<String>,
    error_message: Option<String>,
    cancel_requested: bool,
    trace_id: String,
    created_at_unix: i64,
    updated_at_unix: i64,
    started_at_unix: Option<i64>,
    finished_at_unix: Option<i64>,
}

impl From<Task> for TaskView {
    fn from(t: Task) -> Self {
        Self {
            id: t.id.to_string(),
            workspace_id: t.workspace_id.to_string(),
            context_id: t.context_id.to_string(),
            kind: t.kind,
            title: t.title,
            prompt: t.prompt,
            run_key: t.run_key,
            status: t.status,
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            version: t.version,
            lease_owner: t.lease_owner,
            lease_expires_at_unix: t.lease_expires_at.map(secs),
            not_before_unix: secs(t.not_before),
            source_connector: t.source_connector,
            source_external_id: t.source_external_id,
            source_user_id: t.source_user_id,
            result_summary: t.result_summary,
            result_path: t.result_path,
            error_message: t.error,
            cancel_requested: t.cancel_requested,
            trace_id: t.trace_id.to_string(),
            created_at_unix: secs(t.created_at),
            updated_at_unix: secs(t.updated_at),
            started_at_unix: t.started_at.map(secs),
            finished_at_unix: t.finished_at.map(secs),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIn {
    prompt: String,
    title: Option<String>,
    kind: Option<String>,
    context_id: Option<String>,
    workspace_id: Option<String>,
    connector: Option<String>,
    external_id: Option<String>,
    display_name: Option<String>,
    run_key: Option<String>,
    source_user_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CreateOut {
    created: bool,
    task: TaskView,
}

/// Refuses a run key that is empty, too long or under a reserved prefix.
fn check_run_key(key: Option<&str>) -> Result<(), ApiError> {
    let Some(key) = key else { return Ok(()) };
    if key.trim().is_empty() || key.len() > 200 {
        return Err(ApiError::bad_request("run_key must be 1-200 characters"));
    }
    if let Some(prefix) = reserved_run_key_prefix(key) {
        return Err(ApiError::bad_request(format!(
            "run_key {key:?} uses the prefix {prefix:?}, which the runtime keeps for its own tasks; choose another key"
        )));
    }
    Ok(())
}

pub async fn create(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    ApiJson(b): ApiJson<CreateIn>,
) -> Result<(StatusCode, Json<CreateOut>), ApiError> {
    let prompt = b.prompt.trim().to_string();
    if prompt.is_empty() {
        return Err(ApiError::bad_request("prompt is required"));
    }
    if prompt.len() > PROMPT_MAX_BYTES {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("prompt is too long ({} bytes; the limit is {PROMPT_MAX_BYTES})", prompt.len()),
        });
    }
    let kind = TaskKind::parse(b.kind.as_deref().unwrap_or("general")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if kind == TaskKind::Objective {
        return Err(ApiError::bad_request(
            "kind objective is the scheduler's: create an objective (POST /api/v1/objectives) or run one now (POST /api/v1/objectives/{id}/run)",
        ));
    }
    if kind == TaskKind::AgentResume {
        return Err(ApiError::bad_request(
            "kind agent_resume is the runtime's: it continues an agent turn once its approval is decided (POST /api/v1/approvals/{id}/approve)",
        ));
    }
    // Everything that can be refused is checked before a context is created.
    check_run_key(b.run_key.as_deref())?;
    let requester = caller.audit_name(None);
    if b.source_user_id.as_ref().is_some_and(|u| *u != requester) {
        return Err(ApiError::bad_request(format!(
            "source_user_id cannot be set: a task created through the API is the caller's ({requester}), not a chat user's"
        )));
    }
    let context = match (b.context_id, b.connector, b.external_id) {
        (Some(id), None, None) => s.store.get_context(&ContextId::from_string(id)).await?,
        (None, connector, external) => {
            let chat = ChatRef::new(connector.as_deref().unwrap_or(API_CONNECTOR), external.as_deref().unwrap_or("codex-cli"))
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let name = b.display_name.unwrap_or_else(|| chat.external_id.clone());
            context_for(&s, &caller, &chat, &name, "POST /api/v1/tasks").await?
        }
        _ => {
            return Err(ApiError::bad_request("give either context_id or connector/external_id, not both"));
        }
    };
    if let Some(ws) = b.workspace_id.filter(|w| w != context.workspace_id.as_str()) {
        return Err(ApiError::bad_request(format!("workspace_id {ws} does not match the context's workspace {}", context.workspace_id)));
    }
    let title =
        b.title.map(|t| title_from(&t, TASK_TITLE_MAX)).filter(|t| !t.is_empty()).unwrap_or_else(|| title_from(&prompt, TASK_TITLE_MAX));
    let new = NewTask {
        workspace_id: context.workspace_id.clone(),
        context_id: context.id.clone(),
        kind,
        title,
        prompt,
        run_key: b.run_key,
        source_user_id: Some(requester),
        trace_id: TraceId::random(),
        tell_origin: true,
    };
    let out = s.orchestrator.submit(new).await?;
    let status = if out.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(CreateOut { created: out.created, task: out.task.into() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    id: Option<String>,
    workspace_id: Option<String>,
    context_id: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
    /// Keyset paging: the last id of the previous page (`next_before`).
    before: Option<String>,
}

pub async fn list(State(s): State<ApiState>, ApiQuery(q): ApiQuery<ListQuery>) -> Result<axum::response::Response, ApiError> {
    if let Some(id) = q.id {
        let task: TaskView = s.store.get_task(&TaskId::from_string(id)).await?.into();
        return Ok(Json(task).into_response());
    }
    let limit = page_limit(q.limit, 100, 500)?;
    let parse_err = |e: crate::domain::UnknownValue| ApiError::bad_request(e.to_string());
    let filter = TaskFilter {
        workspace_id: q.workspace_id.map(WorkspaceId::from_string),
        context_id: q.context_id.map(ContextId::from_string),
        status: q.status.as_deref().map(TaskStatus::parse).transpose().map_err(parse_err)?,
        kind: q.kind.as_deref().map(TaskKind::parse).transpose().map_err(parse_err)?,
        limit: Some(limit),
        before: q.before.map(TaskId::from_string),
    };
    let items: Vec<TaskView> = match s.store.list_tasks(filter).await {
        Ok(rows) => rows.into_iter().map(Into::into).collect(),
        Err(crate::store::StoreError::NotFound(what)) => return Err(ApiError::bad_request(format!("before: no such task ({what})"))),
        Err(e) => return Err(e.into()),
    };
    let next_before = (items.len() == limit as usize).then(|| items.last().map(|t| t.id.clone())).flatten();
    Ok(Json(TaskList { count: items.len(), items, next_before }).into_response())
}

/// A page of tasks (serialised once, straight from the typed rows).
#[derive(Debug, Serialize)]
pub struct TaskList {
    count: usize,
    items: Vec<TaskView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TaskWithEvents {
    #[serde(flatten)]
    task: TaskView,
    events: Vec<TaskEvent>,
    /// The agent's steps (model calls and tool calls), oldest first.
    steps: Vec<crate::store::StepRow>,
}

pub async fn get_one(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<TaskWithEvents>, ApiError> {
    let id = super::ids::task(&s, &id).await?;
    let task = s.store.get_task(&id).await?;
    let events = s.store.task_events(&id).await?;
    let steps = s.store.task_steps(&id).await?;
    Ok(Json(TaskWithEvents { task: task.into(), events, steps }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchIn {
    if_version: i64,
    title: Option<String>,
    prompt: Option<String>,
}

pub async fn patch(State(s): State<ApiState>, Path(id): Path<String>, ApiJson(b): ApiJson<PatchIn>) -> Result<Json<TaskView>, ApiError> {
    if b.title.is_none() && b.prompt.is_none() {
        return Err(ApiError::bad_request("nothing to change: give title and/or prompt"));
    }
    if b.prompt.as_ref().is_some_and(|p| p.trim().is_empty() || p.len() > PROMPT_MAX_BYTES)
        || b.title.as_ref().is_some_and(|t| t.trim().is_empty())
    {
        return Err(ApiError::bad_request("title and prompt must not be empty, and the prompt must be at most 256 KiB"));
    }
    let patch = TaskPatch { title: b.title.map(|t| title_from(&t, TASK_TITLE_MAX)), prompt: b.prompt.map(|p| p.trim().to_string()) };
    let id = super::ids::task(&s, &id).await?;
    Ok(Json(s.store.update_task(&id, b.if_version, patch, s.clock.now_ms()).await?.into()))
}

pub async fn cancel(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let id = super::ids::task(&s, &id).await?;
    let (outcome, task) = match s.orchestrator.cancel(&id, "canceled through the API").await? {
        CancelOutcome::Canceled(t) => ("canceled", t),
        CancelOutcome::Requested(t) => ("cancel_requested", t),
    };
    Ok(Json(serde_json::json!({"outcome": outcome, "task": TaskView::from(task)})))
}

/// `POST /api/v1/tasks/{id}/retry`: a failed or canceled task runs again.
pub async fn retry(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let id = super::ids::task(&s, &id).await?;
    let task = s.orchestrator.retry_task(&id, &actor.audit_name(None)).await?;
    Ok((StatusCode::ACCEPTED, Json(task.into())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryIn {
    task_id: String,
}

/// `POST /api/v1/tasks/retry` `{"task_id"}` (the Go runtime's form).
pub async fn retry_by_body(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    ApiJson(b): ApiJson<RetryIn>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let id = b.task_id.trim().to_string();
    if id.is_empty() {
        return Err(ApiError::bad_request("task_id is required"));
    }
    retry(State(s), Caller(actor), Path(id)).await
}
