//! Objectives: standing instructions that fire on a schedule (or, later, on
//! workspace events). The scheduler that fires them comes later; this holds
//! the rows `/monitor` creates and `/objectives` lists.

use super::audit::{NewAudit, insert_audit};
use super::filter::Filter;
use super::{Store, StoreError};
use crate::clock::UnixMillis;
use crate::domain::{ContextId, ObjectiveId, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

/// A stored objective.
#[derive(Debug, Clone, Serialize)]
pub struct Objective {
    /// `obj_…`.
    pub id: ObjectiveId,
    /// Workspace.
    pub workspace_id: WorkspaceId,
    /// Context it reports to.
    pub context_id: ContextId,
    /// Title.
    pub title: String,
    /// What the agent is asked each time.
    pub prompt: String,
    /// `schedule` or `event`.
    pub trigger_type: String,
    /// Event key for event objectives (`markdown.updated`).
    pub event_key: Option<String>,
    /// Cron expression for schedules.
    pub cron_expr: Option<String>,
    /// Time zone of the cron expression.
    pub timezone: String,
    /// Whether it fires.
    pub active: bool,
    /// Next fire time (schedules, while active).
    pub next_run_at: Option<UnixMillis>,
    /// Last fire time.
    pub last_run_at: Option<UnixMillis>,
    /// Last firing error.
    pub last_error: Option<String>,
    /// Who created it (audit name).
    pub created_by: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// A new objective; the caller has validated the trigger and computed the
/// first run.
#[derive(Debug, Clone)]
pub struct NewObjective {
    /// Workspace.
    pub workspace_id: WorkspaceId,
    /// Context.
    pub context_id: ContextId,
    /// Title.
    pub title: String,
    /// Prompt.
    pub prompt: String,
    /// `schedule` or `event`.
    pub trigger_type: String,
    /// Event key (event objectives).
    pub event_key: Option<String>,
    /// Cron expression (schedule objectives).
    pub cron_expr: Option<String>,
    /// Time zone.
    pub timezone: String,
    /// Fires?
    pub active: bool,
    /// First fire time.
    pub next_run_at: Option<UnixMillis>,
    /// Creator (audit name).
    pub created_by: String,
}

/// Filters for listing objectives.
#[derive(Debug, Clone, Default)]
pub struct ObjectiveFilter {
    /// Only this workspace.
    pub workspace_id: Option<WorkspaceId>,
    /// Only this context.
    pub context_id: Option<ContextId>,
    /// Only active ones.
    pub active_only: bool,
    /// At most this many (1..=500).
    pub limit: u32,
}

const COLUMNS: &str = "id, workspace_id, context_id, title, prompt, trigger_type, event_key, cron_expr, timezone, active, \
    next_run_at, last_run_at, last_error, created_by, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Objective> {
    Ok(Objective {
        id: ObjectiveId::from_string(r.get::<_, String>(0)?),
        workspace_id: WorkspaceId::from_string(r.get::<_, String>(1)?),
        context_id: ContextId::from_string(r.get::<_, String>(2)?),
        title: r.get(3)?,
        prompt: r.get(4)?,
        trigger_type: r.get(5)?,
        event_key: r.get(6)?,
        cron_expr: r.get(7)?,
        timezone: r.get(8)?,
        active: r.get(9)?,
        next_run_at: r.get(10)?,
        last_run_at: r.get(11)?,
        last_error: r.get(12)?,
        created_by: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

fn get(c: &Connection, id: &str) -> Result<Option<Objective>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM objectives WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([id], from_row).optional()?)
}

impl Store {
    /// Stores a new objective. The context must exist (and belong to the
    /// workspace): otherwise `NotFound("context")`.
    /// `audit` rows commit with it.
    pub async fn create_objective(&self, new: NewObjective, audit: Vec<NewAudit>, now: UnixMillis) -> Result<Objective, StoreError> {
        self.write(move |c| {
            let ws: Option<String> =
                c.prepare_cached("SELECT workspace_id FROM contexts WHERE id = ?1")?.query_row([new.context_id.as_str()], |r| r.get(0)).optional()?;
            if ws.as_deref() != Some(new.workspace_id.as_str()) {
                return Err(StoreError::NotFound("context in that workspace"));
            }
            let id = ObjectiveId::random();
            c.execute(
                "INSERT INTO objectives (id, workspace_id, context_id, title, prompt, trigger_type, event_key, cron_expr, timezone, active, \
                 next_run_at, created_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
                params![
                    id.as_str(),
                    new.workspace_id.as_str(),
                    new.context_id.as_str(),
                    new.title,
                    new.prompt,
                    new.trigger_type,
                    new.event_key,
                    new.cron_expr,
                    new.timezone,
                    new.active,
                    new.next_run_at,
                    new.created_by,
                    now
                ],
            )?;
            let audit: Vec<NewAudit> = audit.into_iter().map(|a| NewAudit { subject: Some(id.to_string()), ..a }).collect();
            insert_audit(c, &audit, now)?;
            get(c, id.as_str())?.ok_or(StoreError::NotFound("objective"))
        })
        .await
    }

    /// One objective.
    pub async fn get_objective(&self, id: &ObjectiveId) -> Result<Objective, StoreError> {
        let id = id.clone();
        self.read(move |c| get(c, id.as_str())?.ok_or(StoreError::NotFound("objective"))).await
    }

    /// Objectives by filter, oldest first (the Go runtime's order).
    pub async fn find_objectives(&self, f: ObjectiveFilter) -> Result<Vec<Objective>, StoreError> {
        self.read(move |c| {
            let mut w = Filter::default();
            w.eq("workspace_id", f.workspace_id.map(|v| v.as_str().to_string()))
                .eq("context_id", f.context_id.map(|v| v.as_str().to_string()))
                .eq("active", f.active_only.then_some(1i64));
            let sql = format!("SELECT {COLUMNS} FROM objectives{} ORDER BY created_at, id LIMIT ?{}", w.clause(), w.next());
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(w.values([i64::from(f.limit.clamp(1, 500)).into()])), from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// A context's objectives, newest first.
    pub async fn list_objectives(&self, context: &ContextId, limit: u32) -> Result<Vec<Objective>, StoreError> {
        let context = context.clone();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM objectives WHERE context_id = ?1 ORDER BY created_at DESC LIMIT ?2");
            Ok(c.prepare_cached(&sql)?.query_map(params![context.as_str(), limit], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Replaces an objective's editable fields with `o`'s (the caller merged
    /// and validated the change), with an `objective.*` audit row.
    pub async fn save_objective(&self, o: Objective, audit: NewAudit, now: UnixMillis) -> Result<Objective, StoreError> {
        self.write(move |c| {
            let n = c.execute(
                "UPDATE objectives SET title = ?2, prompt = ?3, trigger_type = ?4, event_key = ?5, cron_expr = ?6, timezone = ?7, \
                 active = ?8, next_run_at = ?9, updated_at = ?10 WHERE id = ?1",
                params![
                    o.id.as_str(),
                    o.title,
                    o.prompt,
                    o.trigger_type,
                    o.event_key,
                    o.cron_expr,
                    o.timezone,
                    o.active,
                    o.next_run_at,
                    now
                ],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound("objective"));
            }
            insert_audit(c, &[audit], now)?;
            get(c, o.id.as_str())?.ok_or(StoreError::NotFound("objective"))
        })
        .await
    }

    /// Deletes an objective, with its audit row.
    pub async fn delete_objective(&self, id: &ObjectiveId, audit: NewAudit, now: UnixMillis) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |c| {
            if c.execute("DELETE FROM objectives WHERE id = ?1", [id.as_str()])? == 0 {
                return Err(StoreError::NotFound("objective"));
            }
            insert_audit(c, &[audit], now)?;
            Ok(())
        })
        .await
    }
}
