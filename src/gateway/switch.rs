//! The kill switch and the budgets as the chat and the admin API reach
//! them: `/agent pause [reason]|resume|status` (admins; the permission
//! table checked the role before this runs), and the `Gateway` methods the
//! API calls. The switch's change is audited under the person in the same
//! transaction as the change (`Store::set_switch`).

use super::command::AgentOp;
use super::{Gateway, Turn};
use crate::budget::{Budget, Limits, Report};
use crate::clock::rfc3339;
use crate::domain::ContextId;
use crate::store::{StoreError, SwitchState};

/// Why a switch or budget change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// → 503: this runtime checks no budget (no model wrapper with one).
    #[error("budgets and the kill switch are not available in this runtime")]
    Unavailable,
    /// → the store error's status (404 for an unknown context).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Gateway {
    fn budget(&self) -> Result<&Budget, SwitchError> {
        self.llm.budget().ok_or(SwitchError::Unavailable)
    }

    /// Turns the kill switch on or off, audited under `by`. Turning it off
    /// wakes the worker pool, so queued tasks that call the model run at once.
    pub async fn set_paused(&self, paused: bool, reason: Option<String>, by: String) -> Result<SwitchState, SwitchError> {
        let state = self.budget()?.set_paused(paused, reason, by).await?;
        if !paused {
            self.orchestrator.wake();
        }
        Ok(state)
    }

    /// Whether model calls are stopped now.
    pub fn is_paused(&self) -> bool {
        self.llm.budget().is_some_and(|b| b.switch().is_paused())
    }

    /// Today's spend against the limits, and the switch.
    pub async fn budget_report(&self) -> Result<Report, SwitchError> {
        Ok(self.budget()?.report().await?)
    }

    /// Sets a context's daily limits (none: removes them), audited under `by`.
    pub async fn set_context_limits(&self, context: &ContextId, limits: Limits, by: String) -> Result<(), SwitchError> {
        Ok(self.budget()?.set_context_limits(context, limits, by).await?)
    }
}

/// What a free-text message gets while the switch is on.
pub(super) const PAUSED_REPLY: &str = "The agent is paused by an admin: I cannot answer with the model now. Commands still work (try /help); \
     queued tasks wait and run once it is resumed.";

/// Runs `/agent …`.
pub(super) async fn command(g: &Gateway, t: &mut Turn<'_>, op: AgentOp) -> String {
    let by = t.actor.audit_name(Some(&t.ctx.chat));
    let done = match op {
        AgentOp::Pause(reason) => g.set_paused(true, reason, by).await.map(|_| {
            "Paused: no model calls from now on. Running turns stop at their next model call; their tasks go back to the \
             queue (the attempt does not count) and wait with the others. /agent resume restarts them."
                .to_string()
        }),
        AgentOp::Resume => {
            g.set_paused(false, None, by).await.map(|_| "Resumed: model calls are allowed again; queued tasks run now.".into())
        }
        AgentOp::Status => g.budget_report().await.map(|r| describe(&r)),
    };
    done.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "/agent failed");
        format!("Could not do that: {e}.")
    })
}

/// The switch and today's spend, for `/agent status`.
pub fn describe(r: &Report) -> String {
    let mut out = match (&r.switch, r.paused) {
        (Some(s), true) => {
            let why = s.reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
            format!("The agent is PAUSED (by {} at {}{why}).", s.set_by, rfc3339(s.updated_at))
        }
        _ => "The agent is running.".to_string(),
    };
    out.push_str(&format!("\nToday ({} UTC): {}.", r.day, r.global.describe()));
    if let Some(t) = r.task_tokens {
        out.push_str(&format!("\nEach task: at most {t} tokens."));
    }
    for c in &r.contexts {
        out.push_str(&format!("\nContext `{}`: {}.", c.context_id, c.standing.describe()));
    }
    out
}
