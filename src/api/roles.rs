//! Which role each endpoint needs, in one table. The caller's role comes
//! from its client certificate (`OU`; see `pki`); plain loopback HTTP (a
//! development mode) acts as the local operator with every right.
//!
//! Reads need `viewer`, except the audit log and pairing requests (`admin`)
//! and usage, the event stream, chat messages and a context's prompt
//! (`operator`: they show what users asked).
//! Changes need `operator` (tasks, objectives, proposing an action), except
//! chat as any user, pairing, deciding actions, and admin channels
//! (`admin`). Approving an action or a pairing also checks the approver's
//! role against the request in the gateway (no one grants above their own).

use super::error::ApiError;
use super::tls::Caller;
use crate::domain::Role;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The least role that may call `method route` (`route` is the matched pattern).
pub fn required(method: &Method, route: &str) -> Role {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match route {
        "/api/v1/audit" | "/api/v1/pairings" => Role::Admin,
        "/api/v1/usage"
        | "/api/v1/agent"
        | "/api/v1/events"
        | "/api/v1/events/log"
        | "/api/v1/chat/messages"
        | "/api/v1/contexts/{id}/prompt" => Role::Operator,
        _ if read => Role::Viewer,
        "/api/v1/chat" | "/api/v1/contexts/{id}/admin" => Role::Admin,
        // The kill switch and the budgets stop or limit everyone's model calls.
        "/api/v1/agent/pause" | "/api/v1/agent/resume" | "/api/v1/contexts/{id}/budget" => Role::Admin,
        r if r.starts_with("/api/v1/pairings/") => Role::Admin,
        "/api/v1/approvals/{id}/approve" | "/api/v1/approvals/{id}/deny" => Role::Admin,
        _ => Role::Operator,
    }
}

/// Refuses (403) a caller whose role is below the endpoint's.
pub async fn authorize(Caller(actor): Caller, req: Request, next: Next) -> Response {
    let Some(route) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(req).await;
    };
    let need = required(req.method(), &route);
    // No role (a refused certificate, normally stopped earlier): nothing is allowed.
    let Some(have) = actor.role else {
        let msg = format!("{} {route} needs the {} role; the caller {} carries none", req.method(), need.as_str(), actor.audit_name(None));
        return ApiError { status: StatusCode::FORBIDDEN, message: msg }.into_response();
    };
    if have < need {
        let msg = format!(
            "{} {route} needs the {} role; the certificate {} carries {}",
            req.method(),
            need.as_str(),
            actor.audit_name(None),
            have.as_str()
        );
        return ApiError { status: StatusCode::FORBIDDEN, message: msg }.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_open_to_viewers_and_changes_need_more() {
        assert_eq!(required(&Method::GET, "/api/v1/tasks"), Role::Viewer);
        assert_eq!(required(&Method::POST, "/api/v1/tasks"), Role::Operator);
        assert_eq!(required(&Method::PATCH, "/api/v1/tasks/{id}"), Role::Operator);
        assert_eq!(required(&Method::POST, "/api/v1/chat"), Role::Admin, "chat speaks as any user");
        assert_eq!(required(&Method::POST, "/api/v1/pairings/start"), Role::Admin);
        assert_eq!(required(&Method::GET, "/api/v1/pairings"), Role::Admin);
        assert_eq!(required(&Method::GET, "/api/v1/audit"), Role::Admin);
        assert_eq!(required(&Method::GET, "/api/v1/events"), Role::Operator);
        assert_eq!(required(&Method::POST, "/api/v1/contexts/{id}/admin"), Role::Admin);
        assert_eq!(required(&Method::GET, "/api/v1/contexts/{id}/prompt"), Role::Operator, "it shows a chat's conversation");
        assert_eq!(required(&Method::POST, "/api/v1/objectives/delete"), Role::Operator);
        assert_eq!(required(&Method::POST, "/api/v1/approvals"), Role::Operator);
        assert_eq!(required(&Method::POST, "/api/v1/approvals/{id}/approve"), Role::Admin);
        assert_eq!(required(&Method::POST, "/api/v1/agent/pause"), Role::Admin, "the kill switch stops everyone");
        assert_eq!(required(&Method::POST, "/api/v1/agent/resume"), Role::Admin);
        assert_eq!(required(&Method::POST, "/api/v1/contexts/{id}/budget"), Role::Admin);
        assert_eq!(required(&Method::GET, "/api/v1/agent"), Role::Operator, "spend, like usage");
        assert_eq!(required(&Method::GET, "/metrics"), Role::Viewer);
    }
}
