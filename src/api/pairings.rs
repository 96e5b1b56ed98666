//! Pairings: `GET /api/v1/pairings` (list), `POST /api/v1/pairings/start`
//! (returns the token once), `POST /api/v1/pairings/lookup`,
//! `POST /api/v1/pairings/approve` and `POST /api/v1/pairings/deny`. Tokens
//! travel only in request bodies, never in URLs (which end up in logs). API
//! callers act with their certificate's role (overlord over plain loopback HTTP).

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery, decision_status};
use super::tls::Caller;
use crate::domain::{ChatRef, Role, User};
use crate::gateway::token_hash;
use crate::store::{Pairing, PairingError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;

impl From<PairingError> for ApiError {
    fn from(e: PairingError) -> Self {
        let status = match e {
            PairingError::NotFound => StatusCode::NOT_FOUND,
            PairingError::NotPending(_) | PairingError::AlreadyLinked => StatusCode::CONFLICT,
            PairingError::Expired => StatusCode::GONE,
            PairingError::RoleTooHigh { .. } => StatusCode::FORBIDDEN,
            PairingError::TooMany => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError { status, message: e.to_string() }
    }
}

/// Longest lifetime a caller may ask for.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

fn token_field(token: &str) -> Result<&str, ApiError> {
    let t = token.trim();
    let alnum = t.chars().filter(char::is_ascii_alphanumeric).count();
    if alnum < 8 || t.len() > 128 {
        return Err(ApiError::bad_request("token must be the pairing token (16 letters and digits)"));
    }
    Ok(t)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct PairingsOut {
    pairings: Vec<Pairing>,
}

pub async fn list(State(s): State<ApiState>, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<PairingsOut>, ApiError> {
    let status = decision_status(q.status)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    Ok(Json(PairingsOut { pairings: s.store.list_pairings(status, limit).await? }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartIn {
    connector: String,
    connector_user_id: String,
    display_name: Option<String>,
    expires_in_sec: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct StartOut {
    #[serde(flatten)]
    pairing: Pairing,
    /// Shown this once; only its hash is stored.
    token: String,
}

pub async fn start(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    ApiJson(b): ApiJson<StartIn>,
) -> Result<(StatusCode, Json<StartOut>), ApiError> {
    let chat = ChatRef::new(&b.connector, &b.connector_user_id)
        .map_err(|e| ApiError::bad_request(e.to_string().replace("external_id", "connector_user_id")))?;
    let display = b.display_name.as_deref().map(str::trim).filter(|d| !d.is_empty()).unwrap_or(&chat.external_id).to_string();
    if display.chars().count() > 128 || display.chars().any(char::is_control) {
        return Err(ApiError::bad_request("display_name must be at most 128 characters without control characters"));
    }
    let ttl = match b.expires_in_sec {
        None => None,
        Some(n) if (60..=MAX_TTL.as_secs()).contains(&n) => Some(Duration::from_secs(n)),
        Some(_) => return Err(ApiError::bad_request("expires_in_sec must be between 60 and 86400")),
    };
    let started = s.gateway.start_pairing(&actor, None, &chat.connector, &chat.external_id, &display, ttl).await??;
    Ok((StatusCode::CREATED, Json(StartOut { pairing: started.pairing, token: started.token })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    token: String,
}

pub async fn lookup(State(s): State<ApiState>, ApiJson(b): ApiJson<TokenIn>) -> Result<Json<Pairing>, ApiError> {
    let token = token_field(&b.token)?;
    let found = s.store.lookup_pairing(token_hash(token), s.clock.now_ms()).await?;
    found.map(Json).ok_or_else(|| PairingError::NotFound.into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveIn {
    token: String,
    role: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ApproveOut {
    pairing: Pairing,
    user: User,
}

pub async fn approve(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    ApiJson(b): ApiJson<ApproveIn>,
) -> Result<Json<ApproveOut>, ApiError> {
    let token = token_field(&b.token)?;
    let role = match b.role.as_deref() {
        None => None,
        Some(r) => Some(
            Role::parse(r)
                .ok_or_else(|| ApiError::bad_request(format!("unknown role {r:?} (overlord, admin, operator, member or viewer)")))?,
        ),
    };
    let (pairing, user) = s.gateway.approve_pairing(&actor, None, token, role).await??;
    Ok(Json(ApproveOut { pairing, user }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyIn {
    token: String,
    reason: Option<String>,
}

pub async fn deny(State(s): State<ApiState>, Caller(actor): Caller, ApiJson(b): ApiJson<DenyIn>) -> Result<Json<Pairing>, ApiError> {
    let token = token_field(&b.token)?;
    let reason = b.reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(ApiError::bad_request("reason must be at most 500 characters"));
    }
    Ok(Json(s.gateway.deny_pairing(&actor, None, token, reason).await??))
}
