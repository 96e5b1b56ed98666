//! Workspaces, contexts and the inbox: each (connector, external chat) gets a
//! workspace and a context on first contact; every inbound message is a row
//! with a unique `(connector, dedupe_key)` before anything acts on it.

use super::audit::{NewAudit, insert_audit};
use super::outbox::{NewOutbound, insert};
use super::{Store, StoreError, found};
use crate::clock::UnixMillis;
use crate::domain::{ChatKind, ChatRef, Context, ContextId, Inbound, InboundMeta, OutboxId, OutboxStatus, TraceId, User, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The result of recording an inbound message.
#[derive(Debug, Clone)]
pub struct InboundRecord {
    /// The chat's context (created if this was first contact).
    pub context: Context,
    /// The inbox row.
    pub inbox_id: i64,
    /// The same `(connector, dedupe_key)` was seen before; nothing was added.
    pub duplicate: bool,
    /// The sender's linked user (verified identities only), looked up in the same transaction.
    pub user: Option<User>,
}

pub(super) const CONTEXT_COLUMNS: &str = "id, workspace_id, connector, external_id, display_name, system_prompt, is_admin, created_at";

pub(super) fn context_from_row(r: &Row<'_>) -> rusqlite::Result<Context> {
    context_at(r, 0)
}

/// A context from [`CONTEXT_COLUMNS`] selected from column `at` on.
fn context_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Context> {
    Ok(Context {
        id: ContextId::from_string(r.get::<_, String>(at)?),
        workspace_id: WorkspaceId::from_string(r.get::<_, String>(at + 1)?),
        chat: ChatRef { connector: r.get(at + 2)?, external_id: r.get(at + 3)? },
        display_name: r.get(at + 4)?,
        system_prompt: r.get(at + 5)?,
        is_admin: r.get(at + 6)?,
        created_at: r.get(at + 7)?,
    })
}

pub(super) fn find_context(c: &Connection, chat: &ChatRef) -> rusqlite::Result<Option<Context>> {
    let sql = format!("SELECT {CONTEXT_COLUMNS} FROM contexts WHERE connector = ?1 AND external_id = ?2");
    c.prepare_cached(&sql)?.query_row(params![chat.connector, chat.external_id], context_from_row).optional()
}

/// `a-z0-9._-` only, lower case, at most 48 characters.
fn slug_part(s: &str) -> String {
    let mapped: String =
        s.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' { ch.to_ascii_lowercase() } else { '-' }).collect();
    mapped.trim_matches(['-', '.']).chars().take(48).collect()
}

/// Finds or creates the workspace and context of `chat` (inside the caller's transaction).
pub(super) fn ensure_context(c: &Connection, chat: &ChatRef, display_name: &str, now: UnixMillis) -> Result<Context, StoreError> {
    if let Some(ctx) = find_context(c, chat)? {
        return Ok(ctx);
    }
    let base = format!("{}-{}", chat.connector, slug_part(&chat.external_id));
    let taken: bool = c.query_row("SELECT EXISTS(SELECT 1 FROM workspaces WHERE slug = ?1)", [&base], |r| r.get(0))?;
    let slug = if taken { format!("{base}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]) } else { base };
    let workspace = WorkspaceId::random();
    let name = format!("{}: {}", chat.connector, display_name);
    c.execute(
        "INSERT INTO workspaces (id, slug, name, kind, created_at) VALUES (?1, ?2, ?3, 'community', ?4)",
        params![workspace.as_str(), slug, name, now],
    )?;
    let id = ContextId::random();
    c.execute(
        "INSERT INTO contexts (id, workspace_id, connector, external_id, display_name, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id.as_str(), workspace.as_str(), chat.connector, chat.external_id, display_name, now],
    )?;
    found(find_context(c, chat)?, "context")
}

/// Every admin chat, oldest first, at most 50 (inside any transaction).
pub(super) fn admin_chats(c: &Connection) -> Result<Vec<ChatRef>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT connector, external_id FROM contexts WHERE is_admin = 1 ORDER BY created_at LIMIT 50")?;
    let rows = stmt.query_map([], |r| Ok(ChatRef { connector: r.get(0)?, external_id: r.get(1)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A connector's position in its platform's stream, stored with the messages it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The connector.
    pub connector: String,
    /// Which stream (`updates`, `INBOX`, a channel id).
    pub key: String,
    /// The position (an update offset, `uidvalidity:uid`, a message id).
    pub value: String,
}

/// Stores one inbound message (inside the caller's transaction).
fn record(tx: &Connection, msg: &Inbound, now: UnixMillis) -> Result<InboundRecord, StoreError> {
    let context = ensure_context(tx, &msg.chat, &msg.display_name, now)?;
    let meta = (msg.meta != InboundMeta::default()).then(|| serde_json::to_string(&msg.meta).unwrap_or_default());
    let inserted = tx
        .prepare_cached(
            "INSERT INTO inbox (connector, dedupe_key, context_id, from_user_id, display_name, text, status, trace_id, received_at, \
             chat_kind, mentioned, meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'received', ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (connector, dedupe_key) DO NOTHING",
        )?
        .execute(params![
            msg.chat.connector,
            msg.dedupe_key,
            context.id.as_str(),
            msg.from_user_id,
            msg.display_name,
            msg.text,
            msg.trace_id.as_str(),
            now,
            msg.kind.as_str(),
            msg.mentioned,
            meta
        ])?;
    let inbox_id: i64 = tx
        .prepare_cached("SELECT id FROM inbox WHERE connector = ?1 AND dedupe_key = ?2")?
        .query_row(params![msg.chat.connector, msg.dedupe_key], |r| r.get(0))?;
    if inserted > 0 {
        let data = serde_json::json!({
            "inbox_id": inbox_id, "connector": msg.chat.connector, "external_id": msg.chat.external_id,
            "from_user_id": msg.from_user_id, "display_name": msg.display_name, "context_id": context.id.as_str(),
            "preview": super::events::preview(msg.meta.redacted.as_deref().unwrap_or(&msg.text)),
        });
        super::events::append(tx, now, "message.inbound", &data)?;
    }
    let user = super::people::lookup_user(tx, &msg.chat.connector, &msg.from_user_id)?;
    Ok(InboundRecord { context, inbox_id, duplicate: inserted == 0, user })
}

impl Store {
    /// Queues `body` as a notice to every admin chat (at most 50), in one
    /// write. Returns how many were queued.
    pub async fn notify_admin_chats(&self, body: String, now: UnixMillis) -> Result<usize, StoreError> {
        self.write(move |c| {
            let chats = admin_chats(c)?;
            for chat in &chats {
                insert(c, &super::approvals::notice(chat, body.clone()), OutboxStatus::Pending, now)?;
            }
            Ok(chats.len())
        })
        .await
    }

    /// Finds or creates the context (and workspace) of a chat.
    pub async fn ensure_context(&self, chat: &ChatRef, display_name: &str, now: UnixMillis) -> Result<Context, StoreError> {
        let (chat, name) = (chat.clone(), display_name.to_string());
        self.write(move |c| {
            let tx: &Connection = c;
            let ctx = ensure_context(tx, &chat, &name, now)?;
            Ok(ctx)
        })
        .await
    }

    /// A context by id.
    pub async fn get_context(&self, id: &ContextId) -> Result<Context, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let sql = format!("SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?1");
            found(c.query_row(&sql, [id.as_str()], context_from_row).optional()?, "context")
        })
        .await
    }

    /// Records an inbound message (and first-contact workspace/context) in one
    /// transaction. A repeated `(connector, dedupe_key)` adds nothing.
    pub async fn record_inbound(&self, msg: &Inbound, now: UnixMillis) -> Result<InboundRecord, StoreError> {
        let msg = msg.clone();
        self.write(move |c| record(c, &msg, now)).await
    }

    /// Records a connector's batch of inbound messages and advances its
    /// cursor, in one transaction: after a crash either all of them and the
    /// new cursor are stored, or none and the old cursor (so the platform
    /// delivers them again). Duplicates add nothing. Returns each message
    /// with its record.
    pub async fn ingest(
        &self,
        msgs: Vec<Inbound>,
        cursor: Option<Cursor>,
        now: UnixMillis,
    ) -> Result<Vec<(InboundRecord, Inbound)>, StoreError> {
        self.write(move |c| {
            let records = msgs.into_iter().map(|m| Ok((record(c, &m, now)?, m))).collect::<Result<Vec<_>, StoreError>>()?;
            if let Some(cur) = &cursor {
                c.prepare_cached(
                    "INSERT INTO connector_cursors (connector, key, value, updated_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                )?
                .execute(params![cur.connector, cur.key, cur.value, now])?;
            }
            Ok(records)
        })
        .await
    }

    /// A connector's stored cursor (`None` before its first batch).
    pub async fn cursor(&self, connector: &str, key: &str) -> Result<Option<String>, StoreError> {
        let (connector, key) = (connector.to_string(), key.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT value FROM connector_cursors WHERE connector = ?1 AND key = ?2")?
                .query_row(params![connector, key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Every stored cursor of a connector, as (key, value), sorted by key.
    pub async fn cursors(&self, connector: &str) -> Result<Vec<(String, String)>, StoreError> {
        let connector = connector.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached("SELECT key, value FROM connector_cursors WHERE connector = ?1 ORDER BY key")?;
            let rows = st.query_map(params![connector], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Inbound messages stored but not yet handled (the runtime stopped
    /// between storing and answering them), oldest first, at most `limit`,
    /// with ids above `after`.
    pub async fn unhandled_inbound(&self, after: i64, limit: u32) -> Result<Vec<(InboundRecord, Inbound)>, StoreError> {
        self.read(move |c| {
            let sql = format!(
                "SELECT i.id, i.connector, c.external_id, i.from_user_id, i.display_name, i.text, i.chat_kind, i.mentioned, i.dedupe_key, \
                 i.trace_id, i.meta, {} FROM inbox i JOIN contexts c ON c.id = i.context_id \
                 WHERE i.status = 'received' AND i.id > ?1 ORDER BY i.id LIMIT ?2",
                CONTEXT_COLUMNS.split(", ").map(|col| format!("c.{col}")).collect::<Vec<_>>().join(", ")
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![after, limit], |r| {
                let msg = Inbound {
                    chat: ChatRef { connector: r.get(1)?, external_id: r.get(2)? },
                    from_user_id: r.get(3)?,
                    display_name: r.get(4)?,
                    text: r.get(5)?,
                    kind: if r.get::<_, String>(6)? == "group" { ChatKind::Group } else { ChatKind::Private },
                    mentioned: r.get(7)?,
                    dedupe_key: r.get(8)?,
                    trace_id: TraceId::from_string(r.get::<_, String>(9)?),
                    meta: r.get::<_, Option<String>>(10)?.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default(),
                };
                let context = context_at(r, 11)?;
                Ok((r.get::<_, i64>(0)?, context, msg))
            })?;
            let rows: Vec<(i64, Context, Inbound)> = rows.collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(|(inbox_id, context, msg)| {
                    let user = super::people::lookup_user(c, &msg.chat.connector, &msg.from_user_id)?;
                    Ok((InboundRecord { context, inbox_id, duplicate: false, user }, msg))
                })
                .collect()
        })
        .await
    }

    /// Marks an inbound message handled (or failed, with `error`) and writes
    /// its reply, if any, in the same transaction. `delivered_inline` replies
    /// (returned in an API response) are stored as already sent. `audit`
    /// rows (the decisions taken while handling it) commit with it.
    pub async fn finish_inbound(
        &self,
        inbox_id: i64,
        error: Option<String>,
        reply: Option<NewOutbound>,
        delivered_inline: bool,
        audit: Vec<NewAudit>,
        now: UnixMillis,
    ) -> Result<Option<OutboxId>, StoreError> {
        self.write(move |c| {
            let tx: &Connection = c;
            insert_audit(tx, &audit, now)?;
            let status = if error.is_some() { "failed" } else { "handled" };
            // A handled row keeps no secret: its text becomes the redacted copy, if it has one.
            tx.prepare_cached(
                "UPDATE inbox SET status = ?1, error = ?2, handled_at = ?3, \
                 text = COALESCE(json_extract(meta, '$.redacted'), text) WHERE id = ?4",
            )?
            .execute(params![status, error, now, inbox_id])?;
            let status = if delivered_inline { OutboxStatus::Sent } else { OutboxStatus::Pending };
            let id = reply.map(|m| insert(tx, &m, status, now)).transpose()?;
            Ok(id)
        })
        .await
    }

    /// Gives up on a stored message that could not be processed: it leaves
    /// `received` for `failed` with the error (nothing does it again, not
    /// even the next start). Returns whether the row was still waiting.
    pub async fn fail_inbound(&self, inbox_id: i64, error: String, now: UnixMillis) -> Result<bool, StoreError> {
        self.write(move |c| {
            let n = c
                .prepare_cached("UPDATE inbox SET status = 'failed', error = ?1, handled_at = ?2 WHERE id = ?3 AND status = 'received'")?
                .execute(params![error, now, inbox_id])?;
            Ok(n > 0)
        })
        .await
    }

    /// The reply (if any) written for an inbox row: found through the trace
    /// id the message and its reply share.
    pub async fn reply_to_inbound(&self, inbox_id: i64) -> Result<Option<String>, StoreError> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT o.body FROM inbox i JOIN outbox o ON o.trace_id = i.trace_id AND o.kind = 'reply' \
                 AND o.connector = i.connector WHERE i.id = ?1 ORDER BY o.id LIMIT 1",
            )?
            .query_row([inbox_id], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    /// Makes a context an admin context (or not), with `audit` rows in the
    /// same write; returns it as it is now.
    pub async fn set_context_admin(
        &self,
        id: &ContextId,
        admin: bool,
        audit: Vec<NewAudit>,
        now: UnixMillis,
    ) -> Result<Context, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            if c.execute("UPDATE contexts SET is_admin = ?2 WHERE id = ?1", params![id.as_str(), admin])? == 0 {
                return Err(StoreError::NotFound("context"));
            }
            insert_audit(c, &audit, now)?;
            let sql = format!("SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?1");
            found(c.query_row(&sql, [id.as_str()], context_from_row).optional()?, "context")
        })
        .await
    }

    /// Sets (or, with an empty text, clears) a context's system prompt override.
    pub async fn set_context_prompt(&self, id: &ContextId, prompt: String) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let n = c.execute("UPDATE contexts SET system_prompt = ?2 WHERE id = ?1", params![id.as_str(), prompt])?;
            if n == 0 { Err(StoreError::NotFound("context")) } else { Ok(()) }
        })
        .await
    }

    /// Number of inbox rows (all statuses).
    pub async fn inbox_count(&self) -> Result<u64, StoreError> {
        self.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0))?)).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{inbound, temp_store};
    use crate::domain::ChatRef;

    #[tokio::test]
    async fn first_contact_creates_one_context_and_duplicates_add_nothing() {
        let (_d, store) = temp_store();
        let a = store.record_inbound(&inbound("m1"), 1).await.expect("a");
        let b = store.record_inbound(&inbound("m1"), 2).await.expect("b");
        let c = store.record_inbound(&inbound("m2"), 3).await.expect("c");
        assert!(!a.duplicate && b.duplicate && !c.duplicate);
        assert_eq!(a.inbox_id, b.inbox_id);
        assert_eq!(a.context.id, c.context.id);
        assert_eq!(store.inbox_count().await.expect("count"), 2);
    }

    #[tokio::test]
    async fn colliding_slugs_get_distinct_workspaces() {
        let (_d, store) = temp_store();
        let a = store.ensure_context(&ChatRef::new("codex", "a.b").expect("a"), "A", 1).await.expect("a");
        let b = store.ensure_context(&ChatRef::new("codex", "a-b").expect("b"), "B", 1).await.expect("b");
        assert_ne!(a.workspace_id, b.workspace_id);
    }
}
