//! Messages whose sender the platform does not vouch for (email): a sender
//! is trusted only when the receiving server authenticated them *and* they
//! are linked to an identity. Anything else is held for an admin: the
//! message becomes a pending `untrusted_task` request, told only to the
//! admin channels (an answer to the sender could go to a forged address).
//! Nothing in it is parsed as a command — a forged `/approve-action`,
//! `pair` or role change is just text in the request — and an approved one
//! runs as a task whose prompt marks the text as untrusted data.

use super::actions::ProposedAction;
use super::{Gateway, Turn};
use crate::domain::InboundMeta;
use crate::store::Decision;

/// The action type of a held message.
pub const UNTRUSTED_TASK: &str = "untrusted_task";

/// The most of a held message's text kept in the request.
const MAX_HELD_TEXT: usize = 16 * 1024;

/// Why a message's sender is untrusted (`None`: trusted, or a platform that
/// authenticates its users).
pub(crate) fn untrusted(meta: &InboundMeta, linked: bool) -> Option<String> {
    match &meta.sender_check {
        None => None,
        Some(c) if !c.passed => Some(format!("the sender is not authenticated: {}", c.detail)),
        Some(_) if !linked => Some("the sender is authenticated but not linked to an identity".to_string()),
        Some(_) => None,
    }
}

impl Gateway {
    /// Holds the message for review; `Err` is the failure recorded on the inbox row.
    pub(crate) async fn hold_for_review(&self, t: &mut Turn<'_>, reason: &str) -> Result<(), String> {
        let msg = t.msg;
        let text: String = msg.text.chars().take(MAX_HELD_TEXT).collect();
        let preview: String = msg.text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(100).collect();
        let p = ProposedAction {
            chat: msg.chat.clone(),
            from_user_id: msg.from_user_id.clone(),
            display_name: msg.display_name.clone(),
            action_type: UNTRUSTED_TASK.to_string(),
            target: msg.chat.external_id.clone(),
            summary: format!("untrusted message from {}: {preview}", msg.from_user_id),
            payload: serde_json::json!({
                "context_id": t.ctx.id.as_str(),
                "workspace_id": t.ctx.workspace_id.as_str(),
                "from": msg.from_user_id,
                "reason": reason,
                "text": text,
                "files": msg.meta.saved,
            }),
        };
        match self.propose(p, false).await {
            Ok(a) => {
                tracing::warn!(from = %msg.from_user_id, approval = %a.id, "{reason}; held for an admin's review");
                t.note("message.untrusted", Decision::Deny, Some(reason.to_string()), Some(a.id.to_string()));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "could not hold an untrusted message for review");
                Err(format!("could not hold an untrusted message for review: {e}"))
            }
        }
    }
}
