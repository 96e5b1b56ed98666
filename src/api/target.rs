//! The chat an API call acts on (a task's context, the chat told about an
//! action proposal). A task's outcome is delivered to its chat, by mail
//! too, and no approval stands between: so a caller may name only a chat the
//! runtime already talks to. Making a context for a new chat needs the admin
//! role and leaves an `api.context_created` audit row, written with the
//! context. The API's own mailbox (connector `codex`), which delivers only to
//! `GET /api/v1/chat/messages`, is open to every writer.

use super::ApiState;
use super::error::ApiError;
use crate::domain::{Actor, ChatRef, Context, Role};
use crate::store::{Decision, NewAudit};
use axum::http::StatusCode;

/// The connector of the API's own mailbox (the CLI's default chat).
pub const API_CONNECTOR: &str = "codex";

/// The context of `chat`: the existing one, or a new one if `caller` may
/// make it (`why` names the call in the audit row).
pub(super) async fn context_for(s: &ApiState, caller: &Actor, chat: &ChatRef, display_name: &str, why: &str) -> Result<Context, ApiError> {
    if let Some(ctx) = s.store.find_context(chat).await? {
        return Ok(ctx);
    }
    let who = caller.audit_name(None);
    if chat.connector != API_CONNECTOR && !caller.has(Role::Admin) {
        let message = format!(
            "the runtime has no chat {}/{}: only an admin may create one through the API (the caller {who} carries {}); \
             name an existing context (GET /api/v1/contexts)",
            chat.connector,
            chat.external_id,
            caller.role.map_or("no role", |r| r.as_str()),
        );
        return Err(ApiError { status: StatusCode::FORBIDDEN, message });
    }
    let audit = NewAudit {
        actor: who,
        chat: Some((chat.connector.clone(), chat.external_id.clone())),
        event: "api.context_created",
        decision: Decision::Allow,
        reason: Some(format!("{why}: a context for a chat the runtime had not talked to")),
        subject: None,
    };
    let (ctx, _) = s.store.ensure_context_audited(chat, display_name, audit, s.clock.now_ms()).await?;
    Ok(ctx)
}
