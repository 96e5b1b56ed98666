//! Sensitive action requests and their approvals. A request stores its
//! payload with a SHA-256 of the canonical payload; approving moves it to
//! `approved` with execution `running` in one write, so two concurrent
//! approvals can never both execute it; the outcome is recorded afterwards.
//! Every step writes its audit row in the same transaction.

use super::audit::{Decision, NewAudit, insert_audit};
use super::filter::Filter;
use super::outbox::{NewOutbound, insert};
use super::{Store, StoreError};
use crate::clock::UnixMillis;
use crate::domain::{ApprovalId, Button, ChatRef, ContextId, MessageKind, NewTask, OutboxStatus, TaskId, TaskKind, TraceId, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

/// A stored action request.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    /// `act_…`.
    pub id: ApprovalId,
    /// The requesting chat's context.
    pub context_id: ContextId,
    /// The requesting chat.
    pub chat: ChatRef,
    /// Who asked (audit name).
    pub requester: String,
    /// The requester's user id, when linked.
    pub requester_user_id: Option<String>,
    /// Action type (`webhook`).
    pub action_type: String,
    /// What it acts on (a URL for webhooks).
    pub target: String,
    /// One line for humans.
    pub summary: String,
    /// The exact payload, as stored.
    pub payload_json: String,
    /// SHA-256 (hex) of the canonical payload at request time.
    pub payload_hash: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    /// Who approved or denied (audit name).
    pub approver: Option<String>,
    /// Why it was denied or expired.
    pub reason: Option<String>,
    /// Expiry (unix ms); expiry counts as deny.
    pub expires_at: UnixMillis,
    /// `not_executed`, `running`, `succeeded`, `failed`, `refused` or `interrupted`.
    pub execution_status: String,
    /// What the execution returned (or why it was refused).
    pub execution_result: Option<String>,
    /// When it ran.
    pub executed_at: Option<UnixMillis>,
    /// Request time.
    pub created_at: UnixMillis,
    /// Whether the requesting chat may be told anything about it (`false`
    /// for an unverified sender: no notice of any kind goes back).
    pub tell_requester: bool,
    /// An agent turn waiting for the decision: its saved state (the agent's
    /// format; the conversation, so never shown by the API).
    #[serde(skip)]
    pub resume_json: Option<String>,
    /// The task that continues that turn once the request is decided.
    pub resume_task_id: Option<TaskId>,
}

const COLUMNS: &str = "id, context_id, connector, external_id, requester, requester_user_id, action_type, target, summary, \
    payload_json, payload_hash, status, approver, reason, expires_at, execution_status, execution_result, executed_at, created_at, tell_requester, \
    resume_json, resume_task_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        id: ApprovalId::from_string(r.get::<_, String>(0)?),
        context_id: ContextId::from_string(r.get::<_, String>(1)?),
        chat: ChatRef { connector: r.get(2)?, external_id: r.get(3)? },
        requester: r.get(4)?,
        requester_user_id: r.get(5)?,
        action_type: r.get(6)?,
        target: r.get(7)?,
        summary: r.get(8)?,
        payload_json: r.get(9)?,
        payload_hash: r.get(10)?,
        status: r.get(11)?,
        approver: r.get(12)?,
        reason: r.get(13)?,
        expires_at: r.get(14)?,
        execution_status: r.get(15)?,
        execution_result: r.get(16)?,
        executed_at: r.get(17)?,
        created_at: r.get(18)?,
        tell_requester: r.get(19)?,
        resume_json: r.get(20)?,
        resume_task_id: r.get::<_, Option<String>>(21)?.map(TaskId::from_string),
    })
}

/// A new action request.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// The requesting chat's context.
    pub context_id: ContextId,
    /// The requesting chat.
    pub chat: ChatRef,
    /// Who asked (audit name).
    pub requester: String,
    /// The requester's user id, when linked.
    pub requester_user_id: Option<String>,
    /// Action type.
    pub action_type: String,
    /// Target.
    pub target: String,
    /// Summary.
    pub summary: String,
    /// Canonical payload JSON.
    pub payload_json: String,
    /// The SHA-256 (hex) of `hashed`.
    pub payload_hash: String,
    /// The exact text the hash is of (type, target and payload), shown to
    /// the admins who decide.
    pub hashed: String,
    /// Lifetime in milliseconds.
    pub ttl_ms: i64,
    /// Whether the requesting chat is told (not when its sender is
    /// unauthenticated: an answer could go to a forged address).
    pub tell_requester: bool,
    /// The saved state of an agent turn that continues once the request is
    /// decided (approved and run, denied or expired), in a follow-up task.
    pub resume: Option<Resume>,
}

/// An agent turn waiting for a decision.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The turn's state (opaque to the store).
    pub state_json: String,
    /// Who the follow-up task acts for (as the turn did).
    pub source_user_id: Option<String>,
    /// Whether the chat hears the follow-up's answer.
    pub tell_origin: bool,
    /// The turn's trace.
    pub trace_id: TraceId,
}

/// Attempts a follow-up task gets (a model error may pass).
const RESUME_MAX_ATTEMPTS: u32 = 3;

/// What the store keeps of [`Resume`] besides the agent's state.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct ResumeHead {
    source_user_id: Option<String>,
    tell_origin: bool,
    trace_id: String,
    state: serde_json::Value,
}

/// Why an approval step was refused (each → a chat reply / 4xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// → 404.
    #[error("Action approval not found.")]
    NotFound,
    /// → 409: approved, denied or expired already.
    #[error("This action was already {0}.")]
    NotPending(String),
    /// → 410: expired (now recorded as such; counts as deny).
    #[error("Action approval expired; it was not run.")]
    Expired,
}

fn get(c: &Connection, id: &str) -> Result<Option<Approval>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([id], from_row).optional()?)
}

/// A notice about an approval to one chat.
pub fn notice(chat: &ChatRef, body: String) -> NewOutbound {
    NewOutbound {
        chat: chat.clone(),
        kind: MessageKind::ApprovalNotice,
        body,
        task_id: None,
        trace_id: None,
        options: Default::default(),
        preview: None,
    }
}

fn chat_of(a: &Approval) -> Option<(String, String)> {
    Some((a.chat.connector.clone(), a.chat.external_id.clone()))
}

/// Whether `m` may be queued about `a`: nothing goes to the requesting chat
/// of a request whose requester may not be told (a held email's sender).
fn may_tell(a: &Approval, m: &NewOutbound) -> bool {
    a.tell_requester || m.chat != a.chat
}

/// Marks one pending request expired, with its audit row and a notice to the requesting chat.
fn expire(c: &Connection, a: &Approval, now: UnixMillis) -> Result<(), StoreError> {
    c.execute(
        "UPDATE approvals SET status = 'expired', reason = 'expired without a decision', updated_at = ?2 WHERE id = ?1",
        params![a.id.as_str(), now],
    )?;
    let audit = NewAudit {
        actor: "system".into(),
        chat: chat_of(a),
        event: "approval.expired",
        decision: Decision::Deny,
        reason: Some("expired without a decision (counts as deny)".into()),
        subject: Some(a.id.to_string()),
    };
    insert_audit(c, &[audit], now)?;
    if a.tell_requester {
        let body = format!("Action `{}` ({}) expired without approval; it was not run.", a.id, a.summary);
        insert(c, &notice(&a.chat, body), OutboxStatus::Pending, now)?;
    }
    queue_resume(c, a, "expired", now)?;
    Ok(())
}

/// Queues the follow-up task of a decided request that an agent turn waits
/// for (once: its run key is the request's), in the caller's transaction.
fn queue_resume(c: &Connection, a: &Approval, outcome: &str, now: UnixMillis) -> Result<(), StoreError> {
    let Some(json) = &a.resume_json else { return Ok(()) };
    let Ok(head) = serde_json::from_str::<ResumeHead>(json) else {
        tracing::warn!(approval = %a.id, "an approval's saved agent turn cannot be read; it will not continue");
        return Ok(());
    };
    let workspace: String =
        c.prepare_cached("SELECT workspace_id FROM contexts WHERE id = ?1")?.query_row([a.context_id.as_str()], |r| r.get(0))?;
    let new = NewTask {
        workspace_id: WorkspaceId::from_string(workspace),
        context_id: a.context_id.clone(),
        kind: TaskKind::AgentResume,
        title: crate::domain::title_from(&format!("Continue after {} was {outcome}: {}", a.id, a.summary), crate::domain::TASK_TITLE_MAX),
        prompt: format!("Continue the conversation: action {} ({}) was {outcome}.", a.id, a.summary),
        run_key: Some(format!("resume:{}", a.id)),
        source_user_id: head.source_user_id,
        trace_id: TraceId::from_string(head.trace_id),
        tell_origin: head.tell_origin,
    };
    let queued = super::tasks::insert_task(c, &new, RESUME_MAX_ATTEMPTS, now)?;
    c.execute("UPDATE approvals SET resume_task_id = ?2 WHERE id = ?1", params![a.id.as_str(), queued.task.id.as_str()])?;
    Ok(())
}

/// The stored form of a [`Resume`].
fn resume_json(r: &Resume) -> Result<String, StoreError> {
    let state: serde_json::Value =
        serde_json::from_str(&r.state_json).map_err(|e| StoreError::Conflict(format!("an agent turn's state is not JSON: {e}")))?;
    let head = ResumeHead { source_user_id: r.source_user_id.clone(), tell_origin: r.tell_origin, trace_id: r.trace_id.to_string(), state };
    serde_json::to_string(&head).map_err(|e| StoreError::Conflict(format!("an agent turn's state cannot be stored: {e}")))
}

/// The agent's state of a stored resume (the inverse of [`resume_json`]).
pub fn resume_state(stored: &str) -> Option<String> {
    serde_json::from_str::<ResumeHead>(stored).ok().map(|h| h.state.to_string())
}

/// Loads a request that must still be pending and unexpired.
fn pending(c: &Connection, id: &str, now: UnixMillis) -> Result<Result<Approval, ApprovalError>, StoreError> {
    let Some(a) = get(c, id)? else { return Ok(Err(ApprovalError::NotFound)) };
    if a.status != "pending" {
        return Ok(Err(ApprovalError::NotPending(a.status)));
    }
    if a.expires_at <= now {
        expire(c, &a, now)?;
        return Ok(Err(ApprovalError::Expired));
    }
    Ok(Ok(a))
}

impl Store {
    /// Stores a new pending request with its `approval.requested` audit row
    /// and notices to the requesting chat and every admin channel, in one write.
    pub async fn request_approval(&self, new: NewApproval, now: UnixMillis) -> Result<Approval, StoreError> {
        let resume = new.resume.as_ref().map(resume_json).transpose()?;
        self.write(move |c| {
            let tx: &Connection = c;
            let id = ApprovalId::random();
            tx.execute(
                "INSERT INTO approvals (id, context_id, connector, external_id, requester, requester_user_id, action_type, target, \
                 summary, payload_json, payload_hash, status, expires_at, created_at, updated_at, tell_requester, resume_json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'pending', ?12, ?13, ?13, ?14, ?15)",
                params![
                    id.as_str(),
                    new.context_id.as_str(),
                    new.chat.connector,
                    new.chat.external_id,
                    new.requester,
                    new.requester_user_id,
                    new.action_type,
                    new.target,
                    new.summary,
                    new.payload_json,
                    new.payload_hash,
                    now + new.ttl_ms,
                    now,
                    new.tell_requester,
                    resume
                ],
            )?;
            let audit = NewAudit {
                actor: new.requester.clone(),
                chat: Some((new.chat.connector.clone(), new.chat.external_id.clone())),
                event: "approval.requested",
                decision: Decision::Info,
                reason: Some(format!("{} {}", new.action_type, new.target)),
                subject: Some(id.to_string()),
            };
            insert_audit(tx, &[audit], now)?;
            let a = get(tx, id.as_str())?.ok_or(StoreError::NotFound("approval"))?;
            let body = format!(
                "Admin approval required for action `{}` ({}). An admin decides with /approve-action or /deny-action.",
                a.id, a.summary
            );
            // Whoever can decide sees exactly what the hash binds; admin chats get
            // Approve/Deny buttons (pressing one runs the same checks as the command).
            let for_admins = format!(
                "Approval needed: `{}` {} ({} → {}) from {}.\nExactly this runs (SHA-256 {}):\n```\n{}\n```\n/approve-action {} or /deny-action {} [reason]",
                a.id, a.summary, a.action_type, a.target, a.requester, a.payload_hash, new.hashed, a.id, a.id
            );
            let admins = super::chats::admin_chats(tx)?;
            let with_buttons = |chat: &ChatRef| {
                let mut m = notice(chat, for_admins.clone());
                m.options.buttons = Button::decide(a.id.as_str());
                m
            };
            if new.tell_requester {
                let mine = if admins.contains(&a.chat) { with_buttons(&a.chat) } else { notice(&a.chat, body) };
                insert(tx, &mine, OutboxStatus::Pending, now)?;
            }
            for admin in admins.iter().filter(|c| **c != a.chat) {
                insert(tx, &with_buttons(admin), OutboxStatus::Pending, now)?;
            }
            Ok(a)
        })
        .await
    }

    /// One request.
    pub async fn get_approval(&self, id: &ApprovalId) -> Result<Approval, StoreError> {
        let id = id.clone();
        self.read(move |c| get(c, id.as_str())?.ok_or(StoreError::NotFound("approval"))).await
    }

    /// Requests whose id starts with `prefix` (at most `limit`).
    pub async fn find_approvals_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<Approval>, StoreError> {
        let prefix = prefix.to_string();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM approvals WHERE substr(id, 1, length(?1)) = ?1 ORDER BY created_at LIMIT ?2");
            Ok(c.prepare_cached(&sql)?.query_map(params![prefix, limit], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Requests filtered by status and chat; pending ones oldest first, others newest first.
    pub async fn list_approvals(&self, status: Option<String>, chat: Option<ChatRef>, limit: u32) -> Result<Vec<Approval>, StoreError> {
        self.read(move |c| {
            let order = if status.as_deref() == Some("pending") { "ASC" } else { "DESC" };
            let (connector, external) = chat.map(|c| (c.connector, c.external_id)).unzip();
            let mut f = Filter::default();
            f.eq("status", status).eq("connector", connector).eq("external_id", external);
            let sql = format!("SELECT {COLUMNS} FROM approvals{} ORDER BY created_at {order} LIMIT ?{}", f.clause(), f.next());
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(f.values([i64::from(limit).into()])), from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The newest pending request of `chat` (of every chat with `None`),
    /// however many are pending.
    pub async fn latest_pending_approval(&self, chat: Option<ChatRef>) -> Result<Option<Approval>, StoreError> {
        self.read(move |c| {
            let (connector, external) = chat.map(|c| (c.connector, c.external_id)).unzip();
            let mut f = Filter::default();
            f.eq("status", Some("pending".to_string())).eq("connector", connector).eq("external_id", external);
            let sql = format!("SELECT {COLUMNS} FROM approvals{} ORDER BY created_at DESC, rowid DESC LIMIT 1", f.clause());
            Ok(c.prepare_cached(&sql)?.query_row(rusqlite::params_from_iter(f.values([])), from_row).optional()?)
        })
        .await
    }

    /// Approves a pending request and marks its execution `running`, in one
    /// write: of two concurrent approvals exactly one gets the request back.
    pub async fn begin_approved_execution(
        &self,
        id: &ApprovalId,
        approver: String,
        approver_chat: Option<ChatRef>,
        now: UnixMillis,
    ) -> Result<Result<Approval, ApprovalError>, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let tx: &Connection = c;
            let a = match pending(tx, id.as_str(), now)? {
                Ok(a) => a,
                Err(e) => return Ok(Err(e)),
            };
            tx.execute(
                "UPDATE approvals SET status = 'approved', approver = ?2, execution_status = 'running', updated_at = ?3 WHERE id = ?1",
                params![a.id.as_str(), approver, now],
            )?;
            let audit = NewAudit {
                actor: approver.clone(),
                chat: approver_chat.map(|c| (c.connector, c.external_id)),
                event: "approval.approved",
                decision: Decision::Allow,
                reason: None,
                subject: Some(a.id.to_string()),
            };
            insert_audit(tx, &[audit], now)?;
            Ok(Ok(get(tx, a.id.as_str())?.unwrap_or(a)))
        })
        .await
    }

    /// Records how an approved action's execution ended (`succeeded`,
    /// `failed`, `refused`), its audit row and an optional notice.
    pub async fn finish_execution(
        &self,
        id: &ApprovalId,
        status: &'static str,
        result: String,
        notice: Option<NewOutbound>,
        now: UnixMillis,
    ) -> Result<Approval, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let tx: &Connection = c;
            let n = tx.execute(
                "UPDATE approvals SET execution_status = ?2, execution_result = ?3, executed_at = ?4, updated_at = ?4 \
                 WHERE id = ?1 AND execution_status = 'running'",
                params![id.as_str(), status, result, now],
            )?;
            let a = get(tx, id.as_str())?.ok_or(StoreError::NotFound("approval"))?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("approval {id} is not executing")));
            }
            let decision = if status == "succeeded" { Decision::Allow } else { Decision::Deny };
            let audit = NewAudit {
                actor: "system".into(),
                chat: chat_of(&a),
                event: "approval.executed",
                decision,
                reason: Some(format!("{status}: {result}")),
                subject: Some(a.id.to_string()),
            };
            insert_audit(tx, &[audit], now)?;
            if let Some(m) = notice.filter(|m| may_tell(&a, m)) {
                insert(tx, &m, OutboxStatus::Pending, now)?;
            }
            queue_resume(tx, &a, "approved", now)?;
            Ok(get(tx, a.id.as_str())?.unwrap_or(a))
        })
        .await
    }

    /// Denies a pending request with a reason (and an optional notice).
    pub async fn deny_approval(
        &self,
        id: &ApprovalId,
        approver: String,
        approver_chat: Option<ChatRef>,
        reason: String,
        notice: Option<NewOutbound>,
        now: UnixMillis,
    ) -> Result<Result<Approval, ApprovalError>, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let tx: &Connection = c;
            let a = match pending(tx, id.as_str(), now)? {
                Ok(a) => a,
                Err(e) => return Ok(Err(e)),
            };
            tx.execute(
                "UPDATE approvals SET status = 'denied', approver = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![a.id.as_str(), approver, reason, now],
            )?;
            let audit = NewAudit {
                actor: approver.clone(),
                chat: approver_chat.map(|c| (c.connector, c.external_id)),
                event: "approval.denied",
                decision: Decision::Deny,
                reason: Some(reason.clone()),
                subject: Some(a.id.to_string()),
            };
            insert_audit(tx, &[audit], now)?;
            if let Some(m) = notice.filter(|m| may_tell(&a, m)) {
                insert(tx, &m, OutboxStatus::Pending, now)?;
            }
            queue_resume(tx, &a, "denied", now)?;
            Ok(Ok(get(tx, a.id.as_str())?.unwrap_or(a)))
        })
        .await
    }

    /// Expires every pending request past its time (audit row and a notice
    /// to the requesting chat for each). Returns how many expired.
    pub async fn expire_approvals(&self, now: UnixMillis) -> Result<usize, StoreError> {
        self.write(move |c| {
            let tx: &Connection = c;
            let sql = format!("SELECT {COLUMNS} FROM approvals WHERE status = 'pending' AND expires_at <= ?1");
            let due: Vec<Approval> = tx.prepare_cached(&sql)?.query_map([now], from_row)?.collect::<Result<_, _>>()?;
            for a in &due {
                expire(tx, a, now)?;
            }
            Ok(due.len())
        })
        .await
    }

    /// At start: executions left `running` by a stopped process are marked
    /// `interrupted` (not retried: the action may have happened).
    pub async fn interrupt_running_executions(&self, now: UnixMillis) -> Result<usize, StoreError> {
        self.write(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM approvals WHERE execution_status = 'running'");
            let running: Vec<Approval> = c.prepare_cached(&sql)?.query_map([], from_row)?.collect::<Result<_, _>>()?;
            c.execute(
                "UPDATE approvals SET execution_status = 'interrupted', \
                 execution_result = 'the runtime stopped while this action was executing; it was not retried', updated_at = ?1 \
                 WHERE execution_status = 'running'",
                [now],
            )?;
            // A waiting agent turn goes on, told the action may or may not have happened.
            for a in &running {
                queue_resume(c, a, "interrupted", now)?;
            }
            Ok(running.len())
        })
        .await
    }

    /// The request whose decision a follow-up task continues.
    pub async fn approval_resumed_by(&self, task: &TaskId) -> Result<Approval, StoreError> {
        let task = task.clone();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM approvals WHERE resume_task_id = ?1");
            c.prepare_cached(&sql)?.query_row([task.as_str()], from_row).optional()?.ok_or(StoreError::NotFound("approval"))
        })
        .await
    }
}
