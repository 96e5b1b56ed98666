//! Approvals and audit: `POST /api/v1/approvals` (propose an action, in the
//! caller's own name, told to an existing chat), `GET /api/v1/approvals` (status/chat filters),
//! `GET /api/v1/approvals/{id}`, `POST /api/v1/approvals/{id}/approve|deny`,
//! and `GET /api/v1/audit`. Decisions are taken as the caller: the client
//! certificate's admin, or the local operator over plain loopback HTTP.

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiJsonOrDefault, ApiQuery, decision_status};
use super::target::{API_CONNECTOR, context_for};
use super::tls::Caller;
use crate::domain::ChatRef;
use crate::gateway::{ActionError, ProposedAction, UNTRUSTED_TASK};
use crate::store::{Approval, ApprovalError, AuditEvent, AuditFilter};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        let status = match e {
            ActionError::Store(s) => return ApiError::from(s),
            ActionError::Invalid(_) => StatusCode::BAD_REQUEST,
            ActionError::Forbidden(_) => StatusCode::FORBIDDEN,
            ActionError::State(ApprovalError::NotFound) => StatusCode::NOT_FOUND,
            ActionError::State(ApprovalError::Expired) => StatusCode::GONE,
            ActionError::State(ApprovalError::NotPending(_)) | ActionError::Ambiguous(_) => StatusCode::CONFLICT,
        };
        ApiError { status, message: e.to_string() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposeIn {
    /// The chat told about the request and its outcome (default: the API's mailbox).
    connector: Option<String>,
    external_id: Option<String>,
    /// Refused when given: the requester is the caller.
    from_user_id: Option<String>,
    display_name: Option<String>,
    action_type: String,
    target: String,
    summary: String,
    payload: serde_json::Value,
}

/// `POST /api/v1/approvals`: the caller's certificate is the requester
/// (`cert:<CN>`); the chat must exist (or the caller be an admin, audited).
pub async fn propose(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    ApiJson(b): ApiJson<ProposeIn>,
) -> Result<(StatusCode, Json<Approval>), ApiError> {
    let requester = caller.audit_name(None);
    if b.from_user_id.is_some() {
        return Err(ApiError::bad_request(format!(
            "from_user_id cannot be set: an action proposed through the API is requested by the caller ({requester}), not a chat user"
        )));
    }
    if b.action_type == UNTRUSTED_TASK {
        return Err(ApiError::bad_request(format!(
            "{UNTRUSTED_TASK} is the runtime's own action type (held messages); it cannot be proposed"
        )));
    }
    let external_id = b.external_id.unwrap_or_else(|| "codex-cli".into());
    let chat =
        ChatRef::new(b.connector.as_deref().unwrap_or(API_CONNECTOR), &external_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let display_name = b.display_name.unwrap_or(external_id);
    let p = ProposedAction {
        chat,
        from_user_id: caller.platform_user_id.clone(),
        display_name,
        action_type: b.action_type,
        target: b.target,
        summary: b.summary,
        payload: b.payload,
    };
    // Before the gateway, which would create the chat's context itself.
    context_for(&s, &caller, &p.chat, &p.display_name, "POST /api/v1/approvals").await?;
    Ok((StatusCode::CREATED, Json(s.gateway.propose_action_as_api(&caller, p).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    connector: Option<String>,
    external_id: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ApprovalsOut {
    approvals: Vec<Approval>,
}

pub async fn list(State(s): State<ApiState>, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<ApprovalsOut>, ApiError> {
    let status = decision_status(q.status)?;
    let chat = match (q.connector, q.external_id) {
        (Some(c), Some(e)) => Some(ChatRef::new(&c, &e).map_err(|e| ApiError::bad_request(e.to_string()))?),
        (None, None) => None,
        _ => return Err(ApiError::bad_request("connector and external_id go together")),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    Ok(Json(ApprovalsOut { approvals: s.store.list_approvals(status, chat, limit).await? }))
}

pub async fn get_one(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Approval>, ApiError> {
    Ok(Json(s.store.get_approval(&super::ids::approval(&s, &id).await?).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideIn {
    reason: Option<String>,
}

pub async fn approve(State(s): State<ApiState>, Caller(actor): Caller, Path(id): Path<String>) -> Result<Json<Approval>, ApiError> {
    let id = if id.eq_ignore_ascii_case("latest") { id } else { super::ids::approval(&s, &id).await?.to_string() };
    Ok(Json(s.gateway.approve_action(&actor, None, &id).await?))
}

/// The body is optional: empty, or `{"reason": "..."}`.
pub async fn deny(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJsonOrDefault(decided): ApiJsonOrDefault<DecideIn>,
) -> Result<Json<Approval>, ApiError> {
    let reason = decided.reason.filter(|r| !r.trim().is_empty());
    let id = if id.eq_ignore_ascii_case("latest") { id } else { super::ids::approval(&s, &id).await?.to_string() };
    Ok(Json(s.gateway.deny_action(&actor, None, &id, reason).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    connector: Option<String>,
    external_id: Option<String>,
    event: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    after_id: Option<i64>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct AuditOut {
    events: Vec<AuditEvent>,
}

pub async fn audit(State(s): State<ApiState>, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Json<AuditOut>, ApiError> {
    let f = AuditFilter {
        actor: q.actor,
        connector: q.connector,
        external_id: q.external_id,
        event: q.event,
        since: q.since,
        until: q.until,
        after_id: q.after_id,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    Ok(Json(AuditOut { events: s.store.list_audit(f).await? }))
}
