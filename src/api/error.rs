//! JSON errors (`{"error": "..."}` with the right status) and extractors that
//! turn malformed bodies and queries into clear 400s naming the problem.

use crate::gateway::GatewayError;
use crate::store::StoreError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` text.
    pub message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, message: message.into() }
    }
}

/// A `limit` query parameter: `default` when absent, else within 1..=`max` (400 otherwise).
pub fn page_limit(raw: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    let limit = raw.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {max}")));
    }
    Ok(limit)
}

/// Checks a `status` filter of approvals and pairings (the decision states).
pub fn decision_status(status: Option<String>) -> Result<Option<String>, ApiError> {
    match status {
        Some(st) if !["pending", "approved", "denied", "expired"].contains(&st.as_str()) => {
            Err(ApiError::bad_request("status must be pending, approved, denied or expired"))
        }
        other => Ok(other),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "request failed");
        }
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::VersionConflict { .. } | StoreError::Conflict(_) | StoreError::StaleLease(_) => StatusCode::CONFLICT,
            StoreError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, message: e.to_string() }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::TooLong { .. } => Self { status: StatusCode::PAYLOAD_TOO_LARGE, message: format!("text is too long: {e}") },
            GatewayError::Store(s) => s.into(),
        }
    }
}

/// A JSON body; a malformed body → 400 naming the problem (missing field,
/// unknown field, bad type); a body over the limit → 413.
pub struct ApiJson<T>(pub T);

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|rej| ApiError { status: rej.status(), message: format!("cannot read the request body: {}", rej.body_text()) })
}

fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_body(&body_bytes(req, state).await?).map(ApiJson)
    }
}

/// An optional JSON body: empty (or only blanks) is `T::default()`,
/// anything else is read as [`ApiJson`] reads it.
pub struct ApiJsonOrDefault<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for ApiJsonOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) { Ok(Self(T::default())) } else { parse_body(&bytes).map(Self) }
    }
}

/// A query string; a malformed one → 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rej| ApiError::bad_request(format!("invalid query: {}", rej.body_text())))
    }
}

/// 404 for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// 405 for known paths with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError { status: StatusCode::METHOD_NOT_ALLOWED, message: "method not allowed".into() }
}
