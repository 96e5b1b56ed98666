//! The agent's way to ask for a sensitive action: the same request the chat
//! command and the admin API make (validated by the action's executor,
//! stored with the hash of exactly what will run, announced to the
//! requesting chat and every admin channel with Approve/Deny buttons), plus
//! the agent turn's saved state, so that the decision continues the turn.

use super::{ActionExecutors, canonical, hashed_text, sha256_hex};
use crate::clock::SharedClock;
use crate::domain::Context;
use crate::store::{Approval, NewApproval, Resume, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// An action the agent wants to run, as its tool validated it.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The action type (`webhook`, `send_email`).
    pub action_type: String,
    /// Its target (a URL, the recipients).
    pub target: String,
    /// One line for the admins who decide.
    pub summary: String,
    /// The payload, run exactly as stored.
    pub payload: serde_json::Value,
}

/// Who asks, as the audit log names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The audit name (`user:<id>`, `cert:<CN>`, `unlinked:<connector>:<id>`).
    pub name: String,
    /// The linked user's id, when there is one.
    pub user_id: Option<String>,
}

/// Files action requests for agent turns (cheap to clone).
#[derive(Clone)]
pub struct Desk {
    executors: ActionExecutors,
    store: Store,
    clock: SharedClock,
    ttl: Duration,
    outbox_ready: Arc<Notify>,
}

impl Desk {
    /// A desk for these executors; requests live for `ttl`.
    pub fn new(executors: ActionExecutors, store: Store, clock: SharedClock, ttl: Duration, outbox_ready: Arc<Notify>) -> Self {
        Self { executors, store, clock, ttl, outbox_ready }
    }

    /// Checks a proposal as its executor will (refused at once with the
    /// reason, not after an admin approved it).
    pub fn validate(&self, p: &Proposal) -> Result<(), String> {
        let exec = self.executors.get(&p.action_type).ok_or_else(|| {
            format!("the action {:?} is not available in this runtime (available: {})", p.action_type, self.executors.types().join(", "))
        })?;
        exec.validate(&p.target, &p.payload)?;
        if p.summary.trim().is_empty() || p.summary.len() > 500 {
            return Err("summary must be 1-500 characters".into());
        }
        Ok(())
    }

    /// Stores the request with the turn's `resume` state; the requesting
    /// chat and the admin channels are told.
    pub async fn propose(&self, ctx: &Context, who: &Requester, p: Proposal, resume: Resume) -> Result<Approval, String> {
        self.validate(&p)?;
        let hashed = hashed_text(&p.action_type, &p.target, &p.payload);
        let new = NewApproval {
            context_id: ctx.id.clone(),
            chat: ctx.chat.clone(),
            requester: who.name.clone(),
            requester_user_id: who.user_id.clone(),
            tell_requester: resume.tell_origin,
            action_type: p.action_type,
            target: p.target,
            summary: p.summary.trim().to_string(),
            payload_json: canonical(&p.payload),
            payload_hash: sha256_hex(&hashed),
            hashed,
            ttl_ms: self.ttl.as_millis() as i64,
            resume: Some(resume),
        };
        let a = self.store.request_approval(new, self.clock.now_ms()).await.map_err(|e| format!("the request could not be stored: {e}"))?;
        self.outbox_ready.notify_one();
        Ok(a)
    }
}
