//! Middleware of the admin API: every mutating call is audited with the
//! caller's identity, and create endpoints honour `Idempotency-Key`.

use super::ApiState;
use super::error::ApiError;
use super::tls::Caller;
use crate::store::{Decision, IdempotencyStart, NewAudit};
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Marks a response whose handler already committed its `api.request` row
/// with its own change (the chat endpoint), so it is not written twice.
#[derive(Debug, Clone, Copy)]
pub struct AuditedInline;

/// Writes an `api.request` audit row for every call that is not a `GET`
/// (or `HEAD`): who (certificate), what (method and route), the outcome.
pub async fn audit_mutations(State(s): State<ApiState>, Caller(actor): Caller, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| path.clone(), |m| m.as_str().to_string());
    let resp = next.run(req).await;
    if resp.extensions().get::<AuditedInline>().is_some() {
        return resp;
    }
    let status = resp.status();
    let row = NewAudit {
        actor: actor.audit_name(None),
        chat: None,
        event: "api.request",
        decision: if status.is_success() { Decision::Allow } else { Decision::Deny },
        reason: Some(format!("{method} {route} → {}", status.as_u16())),
        subject: Some(path),
    };
    if let Err(e) = s.store.audit(vec![row], s.clock.now_ms()).await {
        tracing::error!(error = %e, "could not audit an admin API call");
    }
    resp
}

/// The header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `Idempotency-Key` on a create endpoint: the same key with the same
/// request (method, path, body) gets the first response again, without
/// running twice; the same key with a different request gets 409; a key
/// whose first request is still running gets 409 too. Keys belong to the
/// caller and live 24 hours. A 5xx answer is not kept, so a retry runs again.
pub async fn idempotency(State(s): State<ApiState>, Caller(actor): Caller, req: Request, next: Next) -> Response {
    let Some(raw) = req.headers().get(IDEMPOTENCY_KEY).cloned() else {
        return next.run(req).await;
    };
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let key = match raw.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => k.to_string(),
        _ => return ApiError::bad_request("Idempotency-Key must be 1-255 visible ASCII characters").into_response(),
    };
    // Read through the `Bytes` extractor, which honours the router's body
    // limit (`DefaultBodyLimit`); `to_bytes` on the raw body would not.
    let (parts, body) = req.into_parts();
    let bytes = match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(b) => b,
        Err(rej) => {
            return ApiError { status: rej.status(), message: format!("cannot read the request body: {}", rej.body_text()) }
                .into_response();
        }
    };
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [parts.method.as_str().as_bytes(), b"\n", parts.uri.path().as_bytes(), b"\n", &bytes] {
        h.update(part);
    }
    let fingerprint = crate::actions::hex(h.finish().as_ref());
    let caller = actor.audit_name(None);
    let now = s.clock.now_ms();
    match s.store.idempotency_begin(caller.clone(), key.clone(), fingerprint, now).await {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(IdempotencyStart::Mismatch) => {
            return ApiError { status: StatusCode::CONFLICT, message: "this Idempotency-Key was used with a different request".into() }
                .into_response();
        }
        Ok(IdempotencyStart::InProgress) => {
            return ApiError {
                status: StatusCode::CONFLICT,
                message: "a request with this Idempotency-Key is still running; retry later".into(),
            }
            .into_response();
        }
        Ok(IdempotencyStart::Replay { status, body }) => {
            let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            let h = resp.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            return resp;
        }
        Ok(IdempotencyStart::Run) => {}
    }
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = resp.status();
    if status.is_server_error() {
        if let Err(e) = s.store.idempotency_forget(caller, key).await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            let _ = s.store.idempotency_forget(caller, key).await;
            return ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: format!("response body: {e}") }.into_response();
        }
    };
    if let Err(e) = s.store.idempotency_finish(caller, key, status.as_u16(), body.to_vec()).await {
        tracing::warn!(error = %e, "could not keep the response of an idempotent request");
    }
    Response::from_parts(parts, Body::from(body))
}

/// Counts every request by route (the matched pattern, never the raw path,
/// so ids do not explode the label set), method and status, with its latency.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    crate::metrics::metrics().http(route, method.as_str(), resp.status().as_u16(), started.elapsed());
    resp
}

/// Announced bodies larger than this many limits are refused without reading them.
const DRAIN_LIMITS: u64 = 16;

/// Refuses (413) a request whose `Content-Length` is over the body limit
/// before anything reads it. The refused body is read and discarded first
/// (up to sixteen limits, for at most five seconds): a server that answers
/// and closes while the client is still sending makes the client's kernel
/// see a reset, and the client never gets the answer ("lingering close").
pub async fn reject_oversized(State(max): State<usize>, req: Request, next: Next) -> Response {
    let announced = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(len) = announced.filter(|len| *len > max as u64) else {
        return next.run(req).await;
    };
    if len <= DRAIN_LIMITS * max as u64 {
        use futures_util::StreamExt;
        let mut stream = req.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    }
    let message = format!("request body is too large ({len} bytes; the limit is {max}, AGENT_RUNTIME_HTTP_MAX_BODY_BYTES)");
    ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, message }.into_response()
}
