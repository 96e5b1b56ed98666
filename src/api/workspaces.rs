//! Workspaces and contexts: `GET /api/v1/workspaces` (paged by id),
//! `GET /api/v1/workspaces/{id}` (with its contexts), `GET /api/v1/contexts`
//! (filters), `GET /api/v1/contexts/{id}`, and `POST /api/v1/contexts/{id}/admin`
//! (`{"admin": true|false}`: make a chat an admin channel, or not).

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery, page_limit};
use super::tls::Caller;
use crate::domain::{Context, Role, WorkspaceId};
use crate::store::{ContextFilter, Decision, NewAudit, Workspace};
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

/// A context as the API shows it.
#[derive(Debug, Serialize)]
pub struct ContextView {
    id: String,
    workspace_id: String,
    connector: String,
    external_id: String,
    display_name: String,
    is_admin: bool,
    /// Whether a per-context system prompt override is set (its text is at `/prompt show` in the chat).
    has_prompt_override: bool,
    created_at_unix: i64,
}

impl From<Context> for ContextView {
    fn from(c: Context) -> Self {
        ContextView {
            id: c.id.to_string(),
            workspace_id: c.workspace_id.to_string(),
            connector: c.chat.connector,
            external_id: c.chat.external_id,
            display_name: c.display_name,
            is_admin: c.is_admin,
            has_prompt_override: !c.system_prompt.is_empty(),
            created_at_unix: c.created_at.div_euclid(1000),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspacesQuery {
    /// Page after this workspace id (the last one of the previous page).
    after: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct WorkspaceList {
    items: Vec<Workspace>,
    count: usize,
    /// Pass as `after` for the next page (absent on the last page).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

pub async fn list(State(s): State<ApiState>, ApiQuery(q): ApiQuery<WorkspacesQuery>) -> Result<Json<WorkspaceList>, ApiError> {
    let limit = page_limit(q.limit, 100, 500)?;
    let items = s.store.list_workspaces(q.after, limit).await?;
    let next_after = (items.len() == limit as usize).then(|| items.last().map(|w| w.id.to_string())).flatten();
    Ok(Json(WorkspaceList { count: items.len(), items, next_after }))
}

#[derive(Debug, Serialize)]
pub struct WorkspaceDetail {
    #[serde(flatten)]
    workspace: Workspace,
    context_list: Vec<ContextView>,
}

pub async fn get_one(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<WorkspaceDetail>, ApiError> {
    let id = super::ids::workspace(&s, &id).await?;
    let workspace = s.store.get_workspace(&id).await?;
    let filter = ContextFilter { workspace_id: Some(id), limit: 500, ..ContextFilter::default() };
    let context_list = s.store.list_contexts(filter).await?.into_iter().map(Into::into).collect();
    Ok(Json(WorkspaceDetail { workspace, context_list }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextsQuery {
    workspace_id: Option<String>,
    connector: Option<String>,
    admin: Option<bool>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ContextList {
    items: Vec<ContextView>,
    count: usize,
}

pub async fn contexts(State(s): State<ApiState>, ApiQuery(q): ApiQuery<ContextsQuery>) -> Result<Json<ContextList>, ApiError> {
    let filter = ContextFilter {
        workspace_id: q.workspace_id.map(WorkspaceId::from_string),
        connector: q.connector,
        admin: q.admin,
        limit: page_limit(q.limit, 100, 500)?,
    };
    let items: Vec<ContextView> = s.store.list_contexts(filter).await?.into_iter().map(Into::into).collect();
    Ok(Json(ContextList { count: items.len(), items }))
}

pub async fn context(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<ContextView>, ApiError> {
    Ok(Json(s.store.get_context(&super::ids::context(&s, &id).await?).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptQuery {
    message: Option<String>,
    role: Option<String>,
}

/// `GET /api/v1/contexts/{id}/prompt?message=&role=`: exactly what a chat
/// turn for `message` would send the model first (system prompt with each
/// layer's size, the remembered conversation, the tools `role` is offered,
/// `member` by default).
pub async fn prompt(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PromptQuery>,
) -> Result<Json<crate::agent::PromptView>, ApiError> {
    let ctx = s.store.get_context(&super::ids::context(&s, &id).await?).await?;
    let role = match q.role.as_deref() {
        None => Role::Member,
        Some(r) => Role::parse(r)
            .ok_or_else(|| ApiError::bad_request(format!("unknown role {r:?}: viewer, member, operator, admin or overlord")))?,
    };
    let message = q.message.unwrap_or_default();
    if message.len() > crate::agent::turn::Limits::CHAT.max_input_bytes.max(64 * 1024) {
        return Err(ApiError::bad_request("message is too long"));
    }
    let agent = s.gateway.agent().ok_or_else(|| ApiError::bad_request("the agent is not running in this daemon"))?;
    Ok(Json(agent.prompt_view(&ctx, Some(role), &message, &crate::domain::TraceId::random()).await))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminIn {
    admin: bool,
}

pub async fn set_admin(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<AdminIn>,
) -> Result<Json<ContextView>, ApiError> {
    let id = super::ids::context(&s, &id).await?;
    let event = if b.admin { "admin_channel.enabled" } else { "admin_channel.disabled" };
    let audit = NewAudit {
        actor: actor.audit_name(None),
        chat: None,
        event,
        decision: Decision::Info,
        reason: None,
        subject: Some(id.to_string()),
    };
    Ok(Json(s.store.set_context_admin(&id, b.admin, vec![audit], s.clock.now_ms()).await?.into()))
}
