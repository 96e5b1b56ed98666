//! `POST /api/v1/chat` (a message in, the reply out) and
//! `GET /api/v1/chat/messages` (a chat's outbound messages, for polling).

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery, page_limit};
use super::layers::AuditedInline;
use super::tls::Caller;
use crate::domain::{ChatKind, ChatRef, Inbound, OutboundMessage, TraceId};
use crate::gateway::Delivery;
use crate::store::{Decision, NewAudit};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The chat request; defaults follow the Go runtime.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatIn {
    connector: Option<String>,
    external_id: Option<String>,
    from_user_id: Option<String>,
    display_name: Option<String>,
    text: String,
    /// The client's id for this message: a retry with the same id is not
    /// handled again and gets the first reply.
    message_id: Option<String>,
    /// `private` (default) or `group`: channel rules differ.
    chat_type: Option<String>,
    /// In a group: whether the message mentions the bot (default false).
    #[serde(default)]
    mentioned: bool,
}

#[derive(Debug, Serialize)]
pub struct ChatOut {
    handled: bool,
    reply: String,
    context_id: String,
    workspace_id: String,
    outbox_id: Option<i64>,
    trace_id: String,
    duplicate: bool,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

pub async fn post_chat(State(s): State<ApiState>, Caller(caller): Caller, ApiJson(body): ApiJson<ChatIn>) -> Result<Response, ApiError> {
    let text = body.text.trim().to_string();
    if text.is_empty() {
        return Err(ApiError::bad_request("text is required"));
    }
    // The CLI's own chat (no connector or sender named) is the certificate's:
    // it acts with the caller's role. Naming a sender acts as that sender.
    let own = body.connector.as_deref().is_none_or(|c| c.trim().is_empty() || c.trim() == "codex")
        && non_empty(body.from_user_id.clone()).is_none();
    let connector = non_empty(body.connector).unwrap_or_else(|| "codex".into());
    let from = non_empty(body.from_user_id);
    let external_id = non_empty(body.external_id).or_else(|| from.clone()).unwrap_or_else(|| "codex-cli".into());
    let from_user_id = from.unwrap_or_else(|| external_id.clone());
    let display_name = non_empty(body.display_name).unwrap_or_else(|| external_id.clone());
    let chat = ChatRef::new(&connector, &external_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let trace_id = TraceId::random();
    let dedupe_key = match non_empty(body.message_id) {
        Some(id) if id.len() <= 200 && !id.chars().any(char::is_control) => format!("msg:{id}"),
        Some(_) => return Err(ApiError::bad_request("message_id must be 1-200 characters without control characters")),
        None => format!("api:{trace_id}"),
    };
    let kind = match non_empty(body.chat_type) {
        None => ChatKind::Private,
        Some(k) => ChatKind::parse(&k)
            .ok_or_else(|| ApiError::bad_request("chat_type must be private (or dm, direct) or group (or supergroup, channel)"))?,
    };
    let msg = Inbound {
        chat,
        from_user_id,
        display_name,
        text,
        kind,
        mentioned: body.mentioned,
        dedupe_key,
        trace_id: trace_id.clone(),
        meta: Default::default(),
    };
    // The call's audit row commits with the reply (one write, not two).
    let row = NewAudit {
        actor: caller.audit_name(None),
        chat: None,
        event: "api.request",
        decision: Decision::Allow,
        reason: Some("POST /api/v1/chat → 200".into()),
        subject: Some("/api/v1/chat".into()),
    };
    let handled = s.gateway.handle_as(msg, Delivery::Inline, vec![row], own.then_some(caller)).await?;
    let duplicate = handled.duplicate;
    let mut resp = Json(ChatOut {
        handled: handled.reply.is_some(),
        reply: handled.reply.unwrap_or_default(),
        context_id: handled.context.id.to_string(),
        workspace_id: handled.context.workspace_id.to_string(),
        outbox_id: handled.outbox_id.map(|i| i.0),
        trace_id: trace_id.to_string(),
        duplicate: handled.duplicate,
    })
    .into_response();
    if !duplicate {
        resp.extensions_mut().insert(AuditedInline);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    connector: Option<String>,
    external_id: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct MessagesOut {
    items: Vec<OutboundMessage>,
    count: usize,
    /// Pass as `after` to get only newer messages.
    next_after: i64,
}

pub async fn messages(State(s): State<ApiState>, ApiQuery(q): ApiQuery<MessagesQuery>) -> Result<Json<MessagesOut>, ApiError> {
    let connector = non_empty(q.connector).unwrap_or_else(|| "codex".into());
    let external_id = non_empty(q.external_id).unwrap_or_else(|| "codex-cli".into());
    let chat = ChatRef::new(&connector, &external_id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let after = q.after.unwrap_or(0);
    let limit = page_limit(q.limit, 100, 500)?;
    let items = s.store.chat_messages(&chat, after, limit).await?;
    let next_after = items.last().map_or(after, |m| m.id.0);
    Ok(Json(MessagesOut { count: items.len(), items, next_after }))
}
