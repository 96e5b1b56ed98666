//! Objectives: standing instructions that fire on a schedule (or, later, on
//! workspace events). The scheduler that fires them comes later; this holds
//! the rows `/monitor` creates and `/objectives` lists.

use super::{Store, StoreError};
use crate::clock::UnixMillis;
use crate::domain::{ContextId, ObjectiveId, WorkspaceId};
use rusqlite::{Row, params};
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
    /// Cron expression for schedules.
    pub cron_expr: Option<String>,
    /// Time zone of the cron expression.
    pub timezone: String,
    /// Whether it fires.
    pub active: bool,
    /// Who created it (audit name).
    pub created_by: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// A new scheduled objective.
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
    /// Cron expression.
    pub cron_expr: String,
    /// Time zone.
    pub timezone: String,
    /// Creator (audit name).
    pub created_by: String,
}

const COLUMNS: &str = "id, workspace_id, context_id, title, prompt, trigger_type, cron_expr, timezone, active, created_by, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Objective> {
    Ok(Objective {
        id: ObjectiveId::from_string(r.get::<_, String>(0)?),
        workspace_id: WorkspaceId::from_string(r.get::<_, String>(1)?),
        context_id: ContextId::from_string(r.get::<_, String>(2)?),
        title: r.get(3)?,
        prompt: r.get(4)?,
        trigger_type: r.get(5)?,
        cron_expr: r.get(6)?,
        timezone: r.get(7)?,
        active: r.get(8)?,
        created_by: r.get(9)?,
        created_at: r.get(10)?,
    })
}

impl Store {
    /// Stores a new active scheduled objective.
    pub async fn create_objective(&self, new: NewObjective, now: UnixMillis) -> Result<Objective, StoreError> {
        self.write(move |c| {
            let id = ObjectiveId::random();
            c.execute(
                "INSERT INTO objectives (id, workspace_id, context_id, title, prompt, trigger_type, cron_expr, timezone, active, \
                 created_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'schedule', ?6, ?7, 1, ?8, ?9, ?9)",
                params![
                    id.as_str(),
                    new.workspace_id.as_str(),
                    new.context_id.as_str(),
                    new.title,
                    new.prompt,
                    new.cron_expr,
                    new.timezone,
                    new.created_by,
                    now
                ],
            )?;
            let sql = format!("SELECT {COLUMNS} FROM objectives WHERE id = ?1");
            Ok(c.query_row(&sql, [id.as_str()], from_row)?)
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
}
