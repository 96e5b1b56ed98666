//! Workspaces and contexts for the admin API: reads, and the one write the
//! API may make, creating a chat's context with its audit row (contexts are
//! otherwise created by the first message from a chat, in `chats`).

use super::audit::{NewAudit, insert_audit};
use super::chats::{CONTEXT_COLUMNS, context_from_row, ensure_context, find_context};
use super::filter::Filter;
use super::{Store, StoreError, found};
use crate::clock::UnixMillis;
use crate::domain::{ChatRef, Context, WorkspaceId};
use rusqlite::{OptionalExtension, Row};
use serde::Serialize;

/// A workspace with its number of contexts.
#[derive(Debug, Clone, Serialize)]
pub struct Workspace {
    /// Id.
    pub id: WorkspaceId,
    /// Unique slug (`telegram-family-chat`).
    pub slug: String,
    /// Display name.
    pub name: String,
    /// `community` (one per chat) today.
    pub kind: String,
    /// Contexts in it.
    pub contexts: u64,
    /// Admin contexts in it.
    pub admin_contexts: u64,
    /// Creation time.
    pub created_at: UnixMillis,
}

const WS_SELECT: &str = "SELECT w.id, w.slug, w.name, w.kind, \
    (SELECT count(*) FROM contexts c WHERE c.workspace_id = w.id), \
    (SELECT count(*) FROM contexts c WHERE c.workspace_id = w.id AND c.is_admin = 1), w.created_at FROM workspaces w";

fn ws_from_row(r: &Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        id: WorkspaceId::from_string(r.get::<_, String>(0)?),
        slug: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        contexts: r.get(4)?,
        admin_contexts: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// Filters for listing contexts.
#[derive(Debug, Clone, Default)]
pub struct ContextFilter {
    /// Only this workspace.
    pub workspace_id: Option<WorkspaceId>,
    /// Only this connector.
    pub connector: Option<String>,
    /// Only admin (true) or only non-admin (false) contexts.
    pub admin: Option<bool>,
    /// At most this many (1..=500).
    pub limit: u32,
}

impl Store {
    /// Workspaces, oldest first, after `after` (an id, for paging).
    pub async fn list_workspaces(&self, after: Option<String>, limit: u32) -> Result<Vec<Workspace>, StoreError> {
        self.read(move |c| {
            let mut f = Filter::default();
            f.cmp("w.id", ">", after);
            let sql = format!("{WS_SELECT}{} ORDER BY w.id LIMIT ?{}", f.clause(), f.next());
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(f.values([i64::from(limit.clamp(1, 500)).into()])), ws_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Every workspace's id (the watcher maps directories back to them).
    pub async fn workspace_ids(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT id FROM workspaces")?;
            let rows = stmt.query_map([], |r| Ok(WorkspaceId::from_string(r.get::<_, String>(0)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// One workspace.
    pub async fn get_workspace(&self, id: &WorkspaceId) -> Result<Workspace, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let sql = format!("{WS_SELECT} WHERE w.id = ?1");
            found(c.prepare_cached(&sql)?.query_row([id.as_str()], ws_from_row).optional()?, "workspace")
        })
        .await
    }

    /// Contexts by filter, oldest first.
    pub async fn list_contexts(&self, f: ContextFilter) -> Result<Vec<Context>, StoreError> {
        self.read(move |c| {
            let mut w = Filter::default();
            w.eq("workspace_id", f.workspace_id.map(|v| v.as_str().to_string()))
                .eq("connector", f.connector)
                .eq("is_admin", f.admin.map(i64::from));
            let sql = format!("SELECT {CONTEXT_COLUMNS} FROM contexts{} ORDER BY created_at, id LIMIT ?{}", w.clause(), w.next());
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(w.values([i64::from(f.limit.clamp(1, 500)).into()])), context_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The context of `chat`, if there is one (never creates it).
    pub async fn find_context(&self, chat: &ChatRef) -> Result<Option<Context>, StoreError> {
        let chat = chat.clone();
        self.read(move |c| Ok(find_context(c, &chat)?)).await
    }

    /// The context of `chat`, created (with its workspace) if there is none,
    /// in which case `audit` is written in the same transaction. The flag
    /// says whether it was created.
    pub async fn ensure_context_audited(
        &self,
        chat: &ChatRef,
        display_name: &str,
        audit: NewAudit,
        now: UnixMillis,
    ) -> Result<(Context, bool), StoreError> {
        let (chat, name) = (chat.clone(), display_name.to_string());
        self.write(move |c| {
            if let Some(ctx) = find_context(c, &chat)? {
                return Ok((ctx, false));
            }
            let ctx = ensure_context(c, &chat, &name, now)?;
            let row = NewAudit { subject: Some(ctx.id.to_string()), ..audit };
            insert_audit(c, &[row], now)?;
            Ok((ctx, true))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_store;
    use super::*;
    use crate::store::{AuditFilter, Decision};

    #[tokio::test]
    async fn a_context_is_created_once_with_its_audit_row_and_found_without_creating() {
        let (_d, store) = temp_store();
        let chat = ChatRef::new("telegram", "42").expect("chat");
        assert!(store.find_context(&chat).await.expect("find").is_none());
        assert!(store.find_context(&chat).await.expect("find again").is_none(), "finding creates nothing");
        let row = || NewAudit {
            actor: "cert:boss".into(),
            chat: Some(("telegram".into(), "42".into())),
            event: "api.context_created",
            decision: Decision::Allow,
            reason: Some("POST /api/v1/tasks".into()),
            subject: None,
        };
        let (ctx, created) = store.ensure_context_audited(&chat, "Forty-two", row(), 5).await.expect("create");
        assert!(created);
        let (again, created) = store.ensure_context_audited(&chat, "Forty-two", row(), 6).await.expect("again");
        assert!(!created && again.id == ctx.id);
        assert_eq!(store.find_context(&chat).await.expect("find").map(|c| c.id), Some(ctx.id.clone()));
        let rows = store
            .list_audit(AuditFilter { event: Some("api.context_created".into()), limit: 10, ..Default::default() })
            .await
            .expect("audit");
        assert_eq!(rows.len(), 1, "one row, for the creation only");
        assert_eq!((rows[0].actor.as_str(), rows[0].subject.as_deref()), ("cert:boss", Some(ctx.id.as_str())));
    }
}
