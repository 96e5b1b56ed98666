//! Workspaces and contexts for the admin API (reads; contexts are created
//! by the first message from a chat, in `chats`).

use super::chats::{CONTEXT_COLUMNS, context_from_row};
use super::filter::Filter;
use super::{Store, StoreError, found};
use crate::clock::UnixMillis;
use crate::domain::{Context, WorkspaceId};
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
}
