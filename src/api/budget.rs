//! The kill switch and the budgets: `GET /api/v1/agent` (the switch and
//! today's spend against the limits), `POST /api/v1/agent/pause` and
//! `/resume` (admin; audited under the certificate), and
//! `POST /api/v1/contexts/{id}/budget` (a context's daily limits, admin).

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiJsonOrDefault};
use super::tls::Caller;
use crate::budget::{Limits, Report};
use crate::gateway::SwitchError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

impl From<SwitchError> for ApiError {
    fn from(e: SwitchError) -> Self {
        match e {
            SwitchError::Unavailable => Self { status: StatusCode::SERVICE_UNAVAILABLE, message: e.to_string() },
            SwitchError::Store(s) => s.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseIn {
    /// Why (kept with the switch and in the audit log).
    reason: Option<String>,
}

/// Most bytes of a pause reason.
const REASON_MAX: usize = 500;

pub async fn status(State(s): State<ApiState>) -> Result<Json<Report>, ApiError> {
    Ok(Json(s.gateway.budget_report().await?))
}

/// The body is optional (`{"reason": "…"}`); an empty one pauses without a reason.
pub async fn pause(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    ApiJsonOrDefault(input): ApiJsonOrDefault<PauseIn>,
) -> Result<Json<Report>, ApiError> {
    let reason = input.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > REASON_MAX) {
        return Err(ApiError::bad_request(format!("reason is longer than {REASON_MAX} bytes")));
    }
    s.gateway.set_paused(true, reason, actor.audit_name(None)).await?;
    Ok(Json(s.gateway.budget_report().await?))
}

pub async fn resume(State(s): State<ApiState>, Caller(actor): Caller) -> Result<Json<Report>, ApiError> {
    s.gateway.set_paused(false, None, actor.audit_name(None)).await?;
    Ok(Json(s.gateway.budget_report().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextBudgetIn {
    /// Tokens per UTC day (`null` or 0: no limit).
    daily_tokens: Option<u64>,
    /// USD per UTC day (`null` or 0: no limit).
    daily_usd: Option<f64>,
}

pub async fn set_context(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ContextBudgetIn>,
) -> Result<Json<Report>, ApiError> {
    if b.daily_usd.is_some_and(|u| !u.is_finite() || u < 0.0) {
        return Err(ApiError::bad_request("daily_usd must be a USD amount, 0 or more"));
    }
    let limits = Limits { tokens: b.daily_tokens.filter(|&t| t > 0), usd: b.daily_usd.filter(|&u| u > 0.0) };
    s.gateway.set_context_limits(&super::ids::context(&s, &id).await?, limits, actor.audit_name(None)).await?;
    Ok(Json(s.gateway.budget_report().await?))
}
