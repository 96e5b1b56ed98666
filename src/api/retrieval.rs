//! The markdown index: `GET /api/v1/search?workspace_id=&q=&limit=`,
//! `GET /api/v1/documents?workspace_id=&path=&max_bytes=` (a path, or
//! `path#n` for one section), `GET /api/v1/retrieval/status`, and
//! `POST /api/v1/retrieval/rebuild` (`{"workspace_id": ...}` or `{}` for
//! all; waits until done). Reads need `viewer`, the rebuild `operator`.
//! A search or an open names one workspace and can reach nothing outside it.

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery};
use super::tls::Caller;
use crate::domain::WorkspaceId;
use crate::retrieval::{Hit, Opened, PathError, Retrieval, RetrievalError, Summary};
use crate::store::{Decision, NewAudit};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

impl From<RetrievalError> for ApiError {
    fn from(e: RetrievalError) -> Self {
        let status = match &e {
            RetrievalError::Query(_) | RetrievalError::Path(PathError::Refused(_) | PathError::NotDocument(_)) => StatusCode::BAD_REQUEST,
            RetrievalError::Path(PathError::NotFound(_)) => StatusCode::NOT_FOUND,
            RetrievalError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RetrievalError::Index(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, message: e.to_string() }
    }
}

fn index(s: &ApiState) -> Result<&Retrieval, ApiError> {
    s.gateway.retrieval().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message:
            "retrieval is off on this runtime (AGENT_RUNTIME_RETRIEVAL_ENABLED=false, or the index could not open: see /api/v1/heartbeat)"
                .into(),
    })
}

/// The workspace, which must exist (404 otherwise).
async fn workspace(s: &ApiState, id: Option<String>) -> Result<WorkspaceId, ApiError> {
    let id = id.filter(|i| !i.trim().is_empty()).ok_or_else(|| ApiError::bad_request("workspace_id is required"))?;
    let id = WorkspaceId::from_string(id);
    s.store.get_workspace(&id).await?;
    Ok(id)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    workspace_id: Option<String>,
    q: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct SearchOut {
    workspace_id: String,
    query: String,
    results: Vec<Hit>,
    count: usize,
    /// Changes not yet in the index (results may lag them).
    pending_changes: u64,
}

pub async fn search(State(s): State<ApiState>, ApiQuery(q): ApiQuery<SearchQuery>) -> Result<Json<SearchOut>, ApiError> {
    let r = index(&s)?;
    let ws = workspace(&s, q.workspace_id).await?;
    let text = q.q.unwrap_or_default();
    let limit = super::error::page_limit(q.limit, 10, crate::retrieval::MAX_LIMIT as u32)? as usize;
    let results = r.search(&ws, &text, limit).await?;
    Ok(Json(SearchOut { workspace_id: ws.to_string(), query: text, count: results.len(), results, pending_changes: r.pending_changes() }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentQuery {
    workspace_id: Option<String>,
    path: Option<String>,
    max_bytes: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct DocumentOut {
    workspace_id: String,
    #[serde(flatten)]
    document: Opened,
}

pub async fn document(State(s): State<ApiState>, ApiQuery(q): ApiQuery<DocumentQuery>) -> Result<Json<DocumentOut>, ApiError> {
    let r = index(&s)?;
    let ws = workspace(&s, q.workspace_id).await?;
    let path = q.path.ok_or_else(|| ApiError::bad_request("path is required (a workspace-relative path, or path#n for one section)"))?;
    let max = q.max_bytes.map_or(64 * 1024, |m| m as usize);
    if max == 0 || max > crate::retrieval::MAX_OPEN_BYTES {
        return Err(ApiError::bad_request(format!("max_bytes must be between 1 and {}", crate::retrieval::MAX_OPEN_BYTES)));
    }
    let document = r.open(&ws, &path, max).await?;
    Ok(Json(DocumentOut { workspace_id: ws.to_string(), document }))
}

#[derive(Debug, Serialize)]
pub struct WorkspaceStatus {
    workspace_id: String,
    #[serde(flatten)]
    counts: crate::retrieval::Counts,
}

#[derive(Debug, Serialize)]
pub struct StatusOut {
    enabled: bool,
    documents: u64,
    chunks: u64,
    pending_changes: u64,
    reconciling: bool,
    database_bytes: u64,
    last_indexed_at_unix: Option<i64>,
    last_reconcile: Option<Summary>,
    error: Option<String>,
    workspaces: Vec<WorkspaceStatus>,
}

pub async fn status(State(s): State<ApiState>) -> Json<StatusOut> {
    let Some(r) = s.gateway.retrieval() else {
        return Json(StatusOut {
            enabled: false,
            documents: 0,
            chunks: 0,
            pending_changes: 0,
            reconciling: false,
            database_bytes: 0,
            last_indexed_at_unix: None,
            last_reconcile: None,
            error: None,
            workspaces: Vec::new(),
        });
    };
    let st = r.status();
    Json(StatusOut {
        enabled: true,
        documents: st.workspaces.iter().map(|(_, c)| c.documents).sum(),
        chunks: st.workspaces.iter().map(|(_, c)| c.chunks).sum(),
        pending_changes: st.pending_changes,
        reconciling: st.reconciling,
        database_bytes: st.database_bytes,
        last_indexed_at_unix: st.last_indexed_at.map(|t| t.div_euclid(1000)),
        last_reconcile: st.last_reconcile,
        error: st.error,
        workspaces: st.workspaces.into_iter().map(|(w, counts)| WorkspaceStatus { workspace_id: w, counts }).collect(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebuildIn {
    workspace_id: Option<String>,
}

pub async fn rebuild(State(s): State<ApiState>, Caller(actor): Caller, ApiJson(b): ApiJson<RebuildIn>) -> Result<Json<Summary>, ApiError> {
    let r = index(&s)?;
    let only = match b.workspace_id {
        Some(id) => Some(workspace(&s, Some(id)).await?),
        None => None,
    };
    let all = s.store.workspace_ids().await?;
    let audit = NewAudit {
        actor: actor.audit_name(None),
        chat: None,
        event: "retrieval.rebuild",
        decision: Decision::Info,
        reason: None,
        subject: Some(only.as_ref().map_or_else(|| "all workspaces".to_string(), ToString::to_string)),
    };
    s.store.audit(vec![audit], s.clock.now_ms()).await?;
    Ok(Json(r.reconcile(all, only.as_ref(), true).await?))
}
