//! Sensitive actions: proposing one (a typed request stored with the hash
//! of its payload), listing, approving (which executes exactly the stored
//! payload, once) and denying. The same checks serve chat commands and the
//! admin API. Only `/`-commands (and the API) decide; plain words never do.

use super::{Gateway, Turn};
use crate::actions::action_hash;
use crate::domain::{Actor, ApprovalId, ChatRef, Context, Role};
use crate::store::{Approval, ApprovalError, Decision, NewApproval, StoreError, approval_notice as notice};

/// A request to run a sensitive action, from a chat user.
#[derive(Debug, Clone)]
pub struct ProposedAction {
    /// The requesting chat.
    pub chat: ChatRef,
    /// The requester's platform id.
    pub from_user_id: String,
    /// Display name (for first contact).
    pub display_name: String,
    /// Action type (`webhook`).
    pub action_type: String,
    /// Target (a URL for webhooks).
    pub target: String,
    /// One line for the approver.
    pub summary: String,
    /// The payload.
    pub payload: serde_json::Value,
}

/// Why an approval step failed; the text is the reply.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// → 400: the request is malformed (unknown type, bad target).
    #[error("{0}")]
    Invalid(String),
    /// → 403: the actor may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// → 404/409/410.
    #[error(transparent)]
    State(#[from] ApprovalError),
    /// → 409: an id prefix matched several requests.
    #[error("`{0}` matches more than one action; give more of the id.")]
    Ambiguous(String),
    /// → 500/503.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Gateway {
    /// Stores a pending action request (validated by its executor) and tells
    /// the requesting chat and every admin channel.
    pub async fn propose_action(&self, p: ProposedAction) -> Result<Approval, ActionError> {
        self.propose(p, true).await
    }

    /// [`Gateway::propose_action`]. An unverified requester (an
    /// unauthenticated email sender) is named by address, never as the user
    /// the address is linked to, and only the admin channels are told.
    pub(crate) async fn propose(&self, p: ProposedAction, verified: bool) -> Result<Approval, ActionError> {
        self.propose_by(p, verified, None).await
    }

    /// An action proposed through the admin API: the caller (`cert:<CN>`, or
    /// `api` for the local operator) is the requester, never a chat user;
    /// `p.chat` is the chat told about it and `p.from_user_id` is not used.
    pub async fn propose_action_as_api(&self, caller: &Actor, p: ProposedAction) -> Result<Approval, ActionError> {
        if !caller.api {
            return Err(ActionError::Forbidden("only admin API callers propose in their own name".into()));
        }
        self.propose_by(p, true, Some(caller)).await
    }

    async fn propose_by(&self, p: ProposedAction, verified: bool, api_caller: Option<&Actor>) -> Result<Approval, ActionError> {
        let exec = self.actions.get(&p.action_type).ok_or_else(|| {
            ActionError::Invalid(format!("unknown action type {:?} (known: {})", p.action_type, self.actions.types().join(", ")))
        })?;
        exec.validate(&p.target, &p.payload).map_err(ActionError::Invalid)?;
        if p.summary.trim().is_empty() || p.summary.len() > 500 {
            return Err(ActionError::Invalid("summary must be 1-500 characters".into()));
        }
        let now = self.clock.now_ms();
        let ctx = self.store.ensure_context(&p.chat, &p.display_name, now).await?;
        let actor = match api_caller {
            Some(caller) => caller.clone(),
            None => self.actor(&p.from_user_id, self.store.lookup_user(&p.chat.connector, &p.from_user_id).await?.filter(|_| verified)),
        };
        let hashed = crate::actions::hashed_text(&p.action_type, &p.target, &p.payload);
        let new = NewApproval {
            context_id: ctx.id.clone(),
            chat: p.chat.clone(),
            requester: if verified {
                actor.audit_name(Some(&p.chat))
            } else {
                format!("unverified:{}:{}", p.chat.connector, p.from_user_id)
            },
            requester_user_id: actor.user.as_ref().map(|u| u.id.to_string()),
            action_type: p.action_type,
            target: p.target,
            summary: p.summary.trim().to_string(),
            payload_json: crate::actions::canonical(&p.payload),
            payload_hash: crate::actions::sha256_hex(&hashed),
            hashed,
            ttl_ms: self.config.approval_ttl.as_millis() as i64,
            tell_requester: verified,
            resume: None,
        };
        let a = self.store.request_approval(new, now).await?;
        self.outbox_ready.notify_one();
        Ok(a)
    }

    /// Resolves `latest`, a full id or a unique prefix to one pending request
    /// (`latest`: newest pending of this chat, else of all chats).
    async fn resolve_action(&self, id: &str, chat: Option<&ChatRef>) -> Result<Approval, ActionError> {
        if id.eq_ignore_ascii_case("latest") {
            let here = match chat {
                Some(c) => self.store.latest_pending_approval(Some(c.clone())).await?,
                None => None,
            };
            let newest = match here {
                Some(a) => Some(a),
                None => self.store.latest_pending_approval(None).await?,
            };
            return newest.ok_or(ActionError::State(ApprovalError::NotFound));
        }
        let found = self.store.find_approvals_by_prefix(&id.to_ascii_lowercase(), 2).await?;
        match found.len() {
            0 => Err(ActionError::State(ApprovalError::NotFound)),
            1 => Ok(found.into_iter().next().ok_or(ActionError::State(ApprovalError::NotFound))?),
            _ => Err(ActionError::Ambiguous(id.to_string())),
        }
    }

    /// Approves and executes a request. Only admins approve; a requester may
    /// approve their own request only as an admin in an admin channel. The
    /// stored payload runs only if its hash still matches.
    pub async fn approve_action(&self, actor: &Actor, ctx: Option<&Context>, id: &str) -> Result<Approval, ActionError> {
        let chat = ctx.map(|c| &c.chat);
        let a = self.resolve_action(id, chat).await?;
        let me = actor.audit_name(chat);
        if !actor.has(Role::Admin) {
            self.refuse(actor, chat, "approval.approve_refused", "only admins approve actions", &a.id).await?;
            return Err(ActionError::Forbidden("Access denied: only admins approve actions.".into()));
        }
        if a.requester == me && !ctx.is_some_and(|c| c.is_admin) && !actor.api {
            self.refuse(actor, chat, "approval.approve_refused", "own request outside an admin channel", &a.id).await?;
            return Err(ActionError::Forbidden("You cannot approve your own request here; do it in an admin channel.".into()));
        }
        let now = self.clock.now_ms();
        let a = self.store.begin_approved_execution(&a.id, me, chat.cloned(), now).await??;
        let outcome = match serde_json::from_str::<serde_json::Value>(&a.payload_json) {
            Ok(v) if action_hash(&a.action_type, &a.target, &v) == a.payload_hash => match self.actions.get(&a.action_type) {
                Some(exec) => {
                    let o = exec.execute(&a.target, &v).await;
                    (if o.succeeded { "succeeded" } else { "failed" }, o.result)
                }
                None => ("failed", format!("no executor for action type {:?} in this runtime", a.action_type)),
            },
            _ => ("refused", "the stored action (type, target or payload) no longer matches its hash; it was not run".to_string()),
        };
        let tell = (a.tell_requester && Some(&a.chat) != chat)
            .then(|| notice(&a.chat, format!("Action `{}` ({}) was approved: {} — {}", a.id, a.summary, outcome.0, outcome.1)));
        let a = self.store.finish_execution(&a.id, outcome.0, outcome.1, tell, self.clock.now_ms()).await?;
        self.outbox_ready.notify_one();
        self.orchestrator.wake();
        Ok(a)
    }

    /// Denies a request (admins only).
    pub async fn deny_action(
        &self,
        actor: &Actor,
        ctx: Option<&Context>,
        id: &str,
        reason: Option<String>,
    ) -> Result<Approval, ActionError> {
        let chat = ctx.map(|c| &c.chat);
        let a = self.resolve_action(id, chat).await?;
        if !actor.has(Role::Admin) {
            self.refuse(actor, chat, "approval.deny_refused", "only admins deny actions", &a.id).await?;
            return Err(ActionError::Forbidden("Access denied: only admins deny actions.".into()));
        }
        let reason = reason.unwrap_or_else(|| "denied by admin".into());
        let tell = (a.tell_requester && Some(&a.chat) != chat)
            .then(|| notice(&a.chat, format!("Action `{}` ({}) was denied: {reason}", a.id, a.summary)));
        let a = self.store.deny_approval(&a.id, actor.audit_name(chat), chat.cloned(), reason, tell, self.clock.now_ms()).await??;
        self.outbox_ready.notify_one();
        self.orchestrator.wake();
        Ok(a)
    }

    async fn refuse(
        &self,
        actor: &Actor,
        chat: Option<&ChatRef>,
        event: &'static str,
        why: &str,
        id: &ApprovalId,
    ) -> Result<(), StoreError> {
        let row = super::admin::who(actor, chat).row(event, Decision::Deny, Some(why.into()), Some(id.to_string()));
        self.store.audit(vec![row], self.clock.now_ms()).await
    }

    /// Expires requests past their time (each: audit row + notice to the requester's chat).
    pub async fn expire_actions(&self) -> Result<usize, StoreError> {
        let n = self.store.expire_approvals(self.clock.now_ms()).await?;
        if n > 0 {
            self.outbox_ready.notify_one();
            self.orchestrator.wake();
        }
        Ok(n)
    }
}

pub(super) async fn pending(g: &Gateway, t: &Turn<'_>) -> Result<String, StoreError> {
    let here = g.store.list_approvals(Some("pending".into()), Some(t.ctx.chat.clone()), 10).await?;
    let (list, global) =
        if here.is_empty() { (g.store.list_approvals(Some("pending".into()), None, 10).await?, true) } else { (here, false) };
    if list.is_empty() {
        return Ok("No pending actions.".into());
    }
    let now = g.clock.now_ms();
    let mut out = String::from(if global { "Pending actions (all chats):\n" } else { "Pending actions:\n" });
    for a in list {
        let mins = ((a.expires_at - now).max(0) + 59_999) / 60_000;
        let place = if global { format!(" [{}]", a.chat) } else { String::new() };
        out.push_str(&format!("- `{}` {} ({} → {}), expires in {mins} min{place}\n", a.id, a.summary, a.action_type, a.target));
    }
    Ok(out.trim_end().to_string())
}

fn reply_for(r: Result<Approval, ActionError>, approved: bool) -> Result<String, StoreError> {
    match r {
        Ok(a) if !approved => Ok(format!("Action `{}` denied.", a.id)),
        Ok(a) => Ok(match a.execution_status.as_str() {
            "succeeded" => format!("Action `{}` approved and run. Outcome: {}", a.id, a.execution_result.unwrap_or_default()),
            "refused" => format!("Action `{}` was not run: {}", a.id, a.execution_result.unwrap_or_default()),
            _ => format!("Action `{}` approved, but it failed. Outcome: {}", a.id, a.execution_result.unwrap_or_default()),
        }),
        Err(ActionError::Store(e)) => Err(e),
        Err(e) => Ok(e.to_string()),
    }
}

pub(super) async fn approve_command(g: &Gateway, t: &mut Turn<'_>, id: &str) -> Result<String, StoreError> {
    let r = g.approve_action(&t.actor, Some(t.ctx), id).await;
    t.decided = r.is_ok();
    reply_for(r, true)
}

pub(super) async fn deny_command(g: &Gateway, t: &mut Turn<'_>, id: &str, reason: Option<String>) -> Result<String, StoreError> {
    let r = g.deny_action(&t.actor, Some(t.ctx), id, reason).await;
    t.decided = r.is_ok();
    reply_for(r, false)
}
