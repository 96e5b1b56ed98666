//! The outbox: every outbound message is a row before it is sent, and its
//! status says honestly whether it was delivered.

use super::{Store, StoreError, found};
use crate::clock::UnixMillis;
use crate::config::NotifyConfig;
use crate::domain::{
    ChatRef, InboundMeta, MailThread, MessageKind, NotifyPolicy, OutboundMessage, OutboundOptions, OutboxId, OutboxStatus, Task, TaskId,
    TaskStatus, TraceId,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::time::Duration;

/// A message to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    /// Target chat.
    pub chat: ChatRef,
    /// Reply or notice.
    pub kind: MessageKind,
    /// Text.
    pub body: String,
    /// Related task.
    pub task_id: Option<TaskId>,
    /// Trace id.
    pub trace_id: Option<TraceId>,
    /// Buttons, edit target, reply target.
    pub options: OutboundOptions,
    /// What the event log shows instead of the body when the body carries
    /// a secret (the `pair` reply's token).
    pub preview: Option<String>,
}

/// How task outcomes become notices: who hears (policy) and what they read
/// (`render`, a pure function owned by the orchestrator).
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    /// Notify policies.
    pub config: NotifyConfig,
    /// Renders the notice text for a task that reached a final status.
    pub render: fn(&Task) -> String,
}

const COLUMNS: &str = "id, connector, external_id, kind, body, status, attempts, last_error, platform_message_id, task_id, trace_id, created_at, options, parts_sent";

fn from_row(r: &Row<'_>) -> rusqlite::Result<OutboundMessage> {
    Ok(OutboundMessage {
        id: OutboxId(r.get(0)?),
        chat: ChatRef { connector: r.get(1)?, external_id: r.get(2)? },
        kind: MessageKind::parse(&r.get::<_, String>(3)?),
        body: r.get(4)?,
        status: OutboxStatus::parse(&r.get::<_, String>(5)?).unwrap_or(OutboxStatus::Failed),
        attempts: r.get(6)?,
        last_error: r.get(7)?,
        platform_message_id: r.get(8)?,
        task_id: r.get::<_, Option<String>>(9)?.map(TaskId::from_string),
        trace_id: r.get::<_, Option<String>>(10)?.map(TraceId::from_string),
        created_at: r.get(11)?,
        // Options this binary cannot read are dropped rather than stopping delivery.
        options: r.get::<_, Option<String>>(12)?.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
        parts_sent: r.get(13)?,
    })
}

/// Inserts one outbox row; `sent` rows were delivered inline (an API reply).
pub(super) fn insert(c: &Connection, m: &NewOutbound, status: OutboxStatus, now: UnixMillis) -> rusqlite::Result<OutboxId> {
    let sent_at = (status == OutboxStatus::Sent).then_some(now);
    c.prepare_cached(
        "INSERT INTO outbox (connector, external_id, kind, body, status, next_attempt_at, task_id, trace_id, created_at, updated_at, sent_at, options) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?6, ?6, ?9, ?10)",
    )?
    .execute(params![
        m.chat.connector,
        m.chat.external_id,
        m.kind.as_str(),
        m.body,
        status.as_str(),
        now,
        m.task_id.as_ref().map(TaskId::as_str),
        m.trace_id.as_ref().map(TraceId::as_str),
        sent_at,
        (!m.options.is_empty()).then(|| serde_json::to_string(&m.options).unwrap_or_default()),
    ])?;
    let id = c.last_insert_rowid();
    let data = serde_json::json!({
        "outbox_id": id, "connector": m.chat.connector, "external_id": m.chat.external_id, "kind": m.kind.as_str(),
        "status": status.as_str(), "task_id": m.task_id.as_ref().map(TaskId::as_str), "preview": super::events::preview(m.preview.as_deref().unwrap_or(&m.body)),
    });
    super::events::append(c, now, "message.outbound", &data)?;
    Ok(OutboxId(id))
}

/// Logs a delivery outcome of outbox row `id` (`message.sent` / `message.failed`).
fn log_delivery(c: &Connection, id: OutboxId, kind: &str, error: Option<&str>, now: UnixMillis) -> rusqlite::Result<()> {
    let chat: Option<(String, String, i64)> = c
        .prepare_cached("SELECT connector, external_id, attempts FROM outbox WHERE id = ?1")?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((connector, external_id, attempts)) = chat {
        let data = serde_json::json!({"outbox_id": id.0, "connector": connector, "external_id": external_id, "attempts": attempts, "error": error});
        super::events::append(c, now, kind, &data)?;
    }
    Ok(())
}

/// Queues the notices for a task that reached a final status, to the
/// targets its policy names, deduplicated by chat.
pub(super) fn queue_task_notices(c: &Connection, task: &Task, n: &Notifier, now: UnixMillis) -> Result<(), StoreError> {
    let policy = match task.status {
        // A task whose origin may not hear anything reports to the admin chats only.
        _ if !task.tell_origin => NotifyPolicy::Admin,
        TaskStatus::Succeeded => n.config.for_outcome(true),
        TaskStatus::Canceled => NotifyPolicy::Origin,
        _ => n.config.for_outcome(false),
    };
    let mut targets: Vec<ChatRef> = Vec::new();
    if matches!(policy, NotifyPolicy::Origin | NotifyPolicy::Both)
        && let (Some(connector), Some(external_id)) = (&task.source_connector, &task.source_external_id)
        && !connector.starts_with("system")
    {
        targets.push(ChatRef { connector: connector.clone(), external_id: external_id.clone() });
    }
    if matches!(policy, NotifyPolicy::Admin | NotifyPolicy::Both) {
        for chat in super::chats::admin_chats(c)? {
            if !targets.contains(&chat) {
                targets.push(chat);
            }
        }
    }
    let body = (n.render)(task);
    let origin = origin_thread(c, task)?;
    for chat in targets {
        // An outcome told to the chat that asked joins the mail thread it came from.
        let options = match &origin {
            Some((thread, message_id)) if task.source_external_id.as_deref() == Some(chat.external_id.as_str()) => {
                OutboundOptions { reply_to: Some(message_id.clone()), thread: Some(thread.clone()), ..Default::default() }
            }
            _ => OutboundOptions::default(),
        };
        let m = NewOutbound {
            chat,
            kind: MessageKind::TaskNotice,
            body: body.clone(),
            task_id: Some(task.id.clone()),
            trace_id: Some(task.trace_id.clone()),
            options,
            preview: None,
        };
        insert(c, &m, OutboxStatus::Pending, now)?;
    }
    Ok(())
}

/// The email thread (and Message-ID) of the message a task was queued
/// from (`run_key` `inbox:<id>`), when that message carried one.
fn origin_thread(c: &Connection, task: &Task) -> Result<Option<(MailThread, String)>, StoreError> {
    let Some(inbox_id) = task.run_key.as_deref().and_then(|k| k.strip_prefix("inbox:")).and_then(|id| id.parse::<i64>().ok()) else {
        return Ok(None);
    };
    let meta: Option<String> =
        c.prepare_cached("SELECT meta FROM inbox WHERE id = ?1")?.query_row([inbox_id], |r| r.get(0)).optional()?.flatten();
    let meta: InboundMeta = meta.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default();
    Ok(match (meta.thread, meta.message_id) {
        (Some(thread), Some(id)) => Some((thread, id)),
        _ => None,
    })
}

impl Store {
    /// Writes a pending outbound message.
    pub async fn enqueue_outbound(&self, m: NewOutbound, now: UnixMillis) -> Result<OutboxId, StoreError> {
        self.write(move |c| Ok(insert(c, &m, OutboxStatus::Pending, now)?)).await
    }

    /// Pending messages due by `now`, oldest first.
    pub async fn due_outbound(&self, now: UnixMillis, limit: u32) -> Result<Vec<OutboundMessage>, StoreError> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
            );
            Ok(c.prepare_cached(&sql)?.query_map(params![now, limit], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// When the next pending message becomes due, if any.
    pub async fn next_outbound_due(&self) -> Result<Option<UnixMillis>, StoreError> {
        self.read(|c| Ok(c.query_row("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'", [], |r| r.get(0))?)).await
    }

    /// Marks a message delivered.
    pub async fn mark_outbound_sent(&self, id: OutboxId, platform_id: Option<String>, now: UnixMillis) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, platform_message_id = ?1, sent_at = ?2, updated_at = ?2, last_error = NULL \
                 WHERE id = ?3 AND status = 'pending'",
            )?
            .execute(params![platform_id, now, id.0])?;
            log_delivery(c, id, "message.sent", None, now)?;
            Ok(())
        })
        .await
    }

    /// Records a failed delivery attempt: retried after `delay`, or marked
    /// `failed` when `give_up` (permanent error or attempts exhausted).
    pub async fn mark_outbound_attempt_failed(
        &self,
        id: OutboxId,
        error: String,
        parts_sent: u32,
        give_up: bool,
        delay: Duration,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let next = now + delay.as_millis() as i64;
        self.write(move |c| {
            let status = if give_up { "failed" } else { "pending" };
            let changed = c
                .prepare_cached(
                    "UPDATE outbox SET status = ?1, attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3, updated_at = ?4, \
                     parts_sent = MAX(parts_sent, ?6) WHERE id = ?5 AND status = 'pending'",
                )?
                .execute(params![status, error, next, now, id.0, parts_sent])?;
            if give_up && changed > 0 {
                log_delivery(c, id, "message.failed", Some(&error), now)?;
            }
            Ok(())
        })
        .await
    }

    /// Puts a message back for later without counting an attempt: the
    /// platform asked us to slow down (a 429 with its wait), or part of a
    /// split message went out (`parts_sent` records how much).
    pub async fn defer_outbound(
        &self,
        id: OutboxId,
        parts_sent: u32,
        reason: String,
        delay: Duration,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let next = now + delay.as_millis() as i64;
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE outbox SET parts_sent = MAX(parts_sent, ?1), last_error = ?2, next_attempt_at = ?3, updated_at = ?4 WHERE id = ?5 AND status = 'pending'",
            )?
            .execute(params![parts_sent, reason, next, now, id.0])?;
            Ok(())
        })
        .await
    }

    /// One outbox row.
    pub async fn get_outbound(&self, id: OutboxId) -> Result<OutboundMessage, StoreError> {
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1");
            found(c.query_row(&sql, [id.0], from_row).ok(), "outbox message")
        })
        .await
    }

    /// The outbound messages of one chat with id greater than `after`, oldest first.
    pub async fn chat_messages(&self, chat: &ChatRef, after: i64, limit: u32) -> Result<Vec<OutboundMessage>, StoreError> {
        let chat = chat.clone();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM outbox WHERE connector = ?1 AND external_id = ?2 AND id > ?3 ORDER BY id LIMIT ?4");
            Ok(c.prepare_cached(&sql)?
                .query_map(params![chat.connector, chat.external_id, after, limit.clamp(1, 500)], from_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Number of messages still pending.
    pub async fn pending_outbound_count(&self) -> Result<u64, StoreError> {
        self.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM outbox WHERE status = 'pending'", [], |r| r.get(0))?)).await
    }
}
