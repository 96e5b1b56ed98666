//! Approvals that resume: a turn that asked for a sensitive action saves its
//! state with the approval request ([`ResumeState`]); when the request is
//! decided — approved and run once, denied, expired, or interrupted by a
//! restart while it ran — the store queues an `agent_resume` task in the
//! same transaction, and [`ResumeExecutor`] continues the turn: the call's
//! placeholder result becomes the decision, the model goes on from there,
//! and its answer is the task's notice to the chat. A plain "yes" in the
//! chat decides nothing: only `/approve-action`, the buttons and the admin
//! API do.

use super::Agent;
use super::tools::{ToolEnv, TurnKind};
use super::{Message, tools::cap};
use crate::BoxFuture;
use crate::domain::Role;
use crate::orchestrator::{ExecContext, ExecError, ExecOutput, Executor};
use crate::store::{Approval, Resume, Store, resume_state};
use serde::{Deserialize, Serialize};

/// Version of the saved state this binary reads.
const VERSION: u32 = 1;

/// Most bytes of a resumed turn's answer kept as its task's summary (the
/// chat's notice; the outbox splits long messages).
pub const ANSWER_BYTES: usize = 3_500;

/// A turn waiting for an approval, as saved with the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// [`VERSION`].
    pub version: u32,
    /// Whether the turn answered a chat message or ran a task (the
    /// continuation gets that kind's limits).
    pub origin: TurnKind,
    /// The role the turn acted with (the continuation never gets more).
    pub role: String,
    /// The conversation up to the waiting call's result.
    pub messages: Vec<Message>,
    /// The waiting call.
    pub call_id: String,
    /// Its tool.
    pub tool: String,
}

impl ResumeState {
    /// The state of a turn in `env` whose call `call_id` waits.
    pub fn new(env: &ToolEnv, messages: Vec<Message>, call_id: String, tool: String) -> Self {
        Self { version: VERSION, origin: env.kind, role: env.role.to_string(), messages, call_id, tool }
    }

    /// What the store keeps.
    pub fn to_resume(&self, env: &ToolEnv) -> Result<Resume, String> {
        Ok(Resume {
            state_json: serde_json::to_string(self).map_err(|e| format!("the turn's state cannot be saved: {e}"))?,
            source_user_id: Some(env.actor.clone()),
            tell_origin: env.tell_origin,
            trace_id: env.trace_id.clone(),
        })
    }

    /// The state saved with `a`, if it is one this binary reads.
    pub fn of(a: &Approval) -> Result<Self, String> {
        let stored = a.resume_json.as_deref().ok_or("the request has no saved turn")?;
        let json = resume_state(stored).ok_or("the saved turn cannot be read")?;
        let state: Self = serde_json::from_str(&json).map_err(|e| format!("the saved turn cannot be read: {e}"))?;
        if state.version != VERSION {
            return Err(format!("the saved turn is version {}; this runtime reads {VERSION}", state.version));
        }
        Ok(state)
    }

    /// The role to continue with: the saved one, never more than `now`.
    pub fn role(&self, now: Role) -> Role {
        Role::parse(&self.role).map_or(Role::Viewer, |r| r.min(now))
    }

    /// The conversation with the waiting call's result replaced by `outcome`.
    pub fn messages_with(&self, outcome: &str, failed: bool) -> Vec<Message> {
        let mut messages = self.messages.clone();
        for m in messages.iter_mut().rev() {
            if let Message::Tool { call_id, content, is_error, .. } = m
                && *call_id == self.call_id
            {
                *content = outcome.to_string();
                *is_error = failed;
                break;
            }
        }
        messages
    }
}

/// The decision on `a`, as the model reads it; whether the action did not happen.
pub fn decision_text(a: &Approval) -> (String, bool) {
    let who = a.approver.as_deref().unwrap_or("an admin");
    let result = a.execution_result.as_deref().unwrap_or("no result recorded");
    match (a.status.as_str(), a.execution_status.as_str()) {
        ("approved", "succeeded") => (format!("[source: approval {}]\nApproved by {who} and run once. Result: {result}", a.id), false),
        ("approved", "interrupted") => (
            format!(
                "[source: approval {}]\nApproved by {who}, but the runtime stopped while it ran: it may or may not have happened ({result}).",
                a.id
            ),
            true,
        ),
        ("approved", status) => (format!("[source: approval {}]\nApproved by {who}, but it {status}: {result}", a.id), true),
        ("denied", _) => {
            let reason = a.reason.as_deref().unwrap_or("no reason given");
            (format!("[source: approval {}]\nDenied by {who} ({reason}). It was not run.", a.id), true)
        }
        ("expired", _) => (format!("[source: approval {}]\nNobody decided in time; the request expired and it was not run.", a.id), true),
        (status, _) => (format!("[source: approval {}]\nThe request is {status}; it was not run.", a.id), true),
    }
}

/// Runs `agent_resume` tasks.
pub struct ResumeExecutor {
    agent: Agent,
    store: Store,
}

impl ResumeExecutor {
    /// An executor using these parts.
    pub fn new(agent: Agent, store: Store) -> Self {
        Self { agent, store }
    }

    async fn run(&self, ctx: ExecContext) -> Result<ExecOutput, ExecError> {
        let task = &ctx.task;
        let a = self.store.approval_resumed_by(&task.id).await.map_err(|e| match e {
            crate::store::StoreError::NotFound(_) => ExecError::permanent("no approval request is continued by this task"),
            e => ExecError::retryable(format!("cannot load the approval: {e}")),
        })?;
        let state = ResumeState::of(&a).map_err(ExecError::permanent)?;
        let context = super::general::context_of(&self.store, task).await?;
        let out = self.agent.resume_turn(task, &context, &a, &state, ctx.cancel.clone()).await;
        super::general::ended(&out)?;
        let (answer, cut) = cap(out.text.trim(), ANSWER_BYTES);
        Ok(ExecOutput { summary: if cut { format!("{answer}…") } else { answer.to_string() }, result_path: None })
    }
}

impl Executor for ResumeExecutor {
    fn execute(&self, ctx: ExecContext) -> BoxFuture<'_, Result<ExecOutput, ExecError>> {
        Box::pin(self.run(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ResumeState {
        ResumeState {
            version: VERSION,
            origin: TurnKind::Chat,
            role: "member".into(),
            messages: vec![
                Message::User { text: "post it".into() },
                Message::Tool { call_id: "c1".into(), name: "call_webhook".into(), content: "waiting".into(), is_error: false },
            ],
            call_id: "c1".into(),
            tool: "call_webhook".into(),
        }
    }

    #[test]
    fn the_decision_replaces_the_waiting_result_and_the_role_never_grows() {
        let s = state();
        let m = s.messages_with("Denied", true);
        assert_eq!(m[1], Message::Tool { call_id: "c1".into(), name: "call_webhook".into(), content: "Denied".into(), is_error: true });
        assert_eq!(m[0], s.messages[0]);
        assert_eq!(s.role(Role::Admin), Role::Member, "a promotion since does not widen the continued turn");
        assert_eq!(s.role(Role::Viewer), Role::Viewer, "a demotion since narrows it");
        let back: ResumeState = serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("parse");
        assert_eq!(back, s);
    }
}
