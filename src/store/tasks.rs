//! Tasks: enqueue (idempotent by run key), reads, optimistic updates, cancel.
//! Lease operations (claim, renew, finish, recover) live in `leases`.

mod leases;

pub use leases::{Claim, FinishOutcome, Finished, LeaseState, RetryPolicy};

use super::filter::Filter;
use super::{Store, StoreError, found};
use crate::clock::UnixMillis;
use crate::domain::{ContextId, NewTask, Task, TaskEvent, TaskId, TaskKind, TaskStatus, TraceId, WorkspaceId};
use rusqlite::{Connection, OptionalExtension, Row, params};

pub(super) const TASK_COLUMNS: &str = "id, workspace_id, context_id, kind, title, prompt, run_key, status, attempts, \
    max_attempts, lease_owner, lease_expires_at, not_before, version, source_connector, source_external_id, \
    source_user_id, result_summary, result_path, error, cancel_requested, trace_id, created_at, updated_at, \
    started_at, finished_at, tell_origin";

fn bad_value(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

pub(super) fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: TaskId::from_string(r.get::<_, String>(0)?),
        workspace_id: WorkspaceId::from_string(r.get::<_, String>(1)?),
        context_id: ContextId::from_string(r.get::<_, String>(2)?),
        kind: TaskKind::parse(&r.get::<_, String>(3)?).map_err(|e| bad_value(3, e))?,
        title: r.get(4)?,
        prompt: r.get(5)?,
        run_key: r.get(6)?,
        status: TaskStatus::parse(&r.get::<_, String>(7)?).map_err(|e| bad_value(7, e))?,
        attempts: r.get(8)?,
        max_attempts: r.get(9)?,
        lease_owner: r.get(10)?,
        lease_expires_at: r.get(11)?,
        not_before: r.get(12)?,
        version: r.get(13)?,
        source_connector: r.get(14)?,
        source_external_id: r.get(15)?,
        source_user_id: r.get(16)?,
        result_summary: r.get(17)?,
        result_path: r.get(18)?,
        error: r.get(19)?,
        cancel_requested: r.get(20)?,
        trace_id: TraceId::from_string(r.get::<_, String>(21)?),
        created_at: r.get(22)?,
        updated_at: r.get(23)?,
        started_at: r.get(24)?,
        finished_at: r.get(25)?,
        tell_origin: r.get(26)?,
    })
}

pub(super) fn load_task(c: &Connection, id: &str) -> Result<Option<Task>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([id], task_from_row).optional()?)
}

/// Appends one history row; always called inside the transaction that made
/// the change. `seq` is the task's version after the change: every
/// transition bumps the version exactly once, so it numbers the history.
#[allow(clippy::too_many_arguments)]
pub(super) fn add_event(
    c: &Connection,
    task: &str,
    seq: i64,
    at: UnixMillis,
    event: &str,
    from: Option<TaskStatus>,
    to: Option<TaskStatus>,
    attempt: u32,
    worker: Option<&str>,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO task_events (task_id, seq, at, event, from_status, to_status, attempt, worker, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![task, seq, at, event, from.map(|s| s.as_str()), to.map(|s| s.as_str()), attempt, worker, detail])?;
    let data = serde_json::json!({
        "task_id": task, "version": seq, "event": event, "from": from.map(|s| s.as_str()),
        "status": to.map(|s| s.as_str()), "attempt": attempt, "worker": worker, "detail": detail,
    });
    super::events::append(c, at, &format!("task.{event}"), &data)
}

/// The result of an enqueue.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The task (the existing one when the run key was already used).
    pub task: Task,
    /// False when the run key matched an existing task and nothing was added.
    pub created: bool,
}

/// Persists a new task (status `queued`) and its `created` event inside the
/// caller's transaction; with a run key that already exists, returns the
/// existing task and adds nothing. No such context → `NotFound("context")`.
pub(super) fn insert_task(tx: &Connection, new: &NewTask, max_attempts: u32, now: UnixMillis) -> Result<Enqueued, StoreError> {
    if let Some(key) = &new.run_key {
        let existing: Option<String> =
            tx.prepare_cached("SELECT id FROM tasks WHERE run_key = ?1")?.query_row([key], |r| r.get(0)).optional()?;
        if let Some(id) = existing {
            let task = found(load_task(tx, &id)?, "task")?;
            return Ok(Enqueued { task, created: false });
        }
    }
    // One statement validates the context (and that it belongs to the
    // workspace) and inserts; no row back means no such context.
    let id = TaskId::random();
    let sql = format!(
        "INSERT INTO tasks (id, workspace_id, context_id, kind, title, prompt, run_key, status, max_attempts, \
         not_before, source_connector, source_external_id, source_user_id, trace_id, created_at, updated_at, tell_origin) \
         SELECT ?1, workspace_id, id, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, connector, external_id, ?10, ?11, ?9, ?9, ?12 \
         FROM contexts WHERE id = ?3 AND workspace_id = ?2 RETURNING {TASK_COLUMNS}"
    );
    let task = tx
        .prepare_cached(&sql)?
        .query_row(
            params![
                id.as_str(),
                new.workspace_id.as_str(),
                new.context_id.as_str(),
                new.kind.as_str(),
                new.title,
                new.prompt,
                new.run_key,
                max_attempts,
                now,
                new.source_user_id,
                new.trace_id.as_str(),
                new.tell_origin,
            ],
            task_from_row,
        )
        .optional()?;
    let task = found(task, "context")?;
    add_event(tx, id.as_str(), task.version, now, "created", None, Some(TaskStatus::Queued), 0, None, None)?;
    Ok(Enqueued { task, created: true })
}

/// Filters for listing tasks; `limit` is clamped to 1..=500.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this workspace.
    pub workspace_id: Option<WorkspaceId>,
    /// Only this context.
    pub context_id: Option<ContextId>,
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this kind.
    pub kind: Option<TaskKind>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
    /// Only tasks after this one in the listing's order (keyset paging:
    /// pass the last id of the previous page).
    pub before: Option<TaskId>,
}

/// An optimistic edit of a task: applied only at the named version.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    /// New title.
    pub title: Option<String>,
    /// New prompt (only while queued).
    pub prompt: Option<String>,
}

/// A task's routing, set by `/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `question`, `issue`, `task`, `moderation` or `noise`.
    pub class: String,
    /// `p1`, `p2` or `p3`.
    pub priority: String,
    /// Work lane (`operations`, `support`, ...).
    pub lane: String,
    /// Due time (unix ms), if any.
    pub due_at: Option<UnixMillis>,
}

/// What a cancel did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The task was queued and is now canceled.
    Canceled(Task),
    /// The task is running; its worker was asked to stop.
    Requested(Task),
}

/// The tables whose text ids can be looked up by a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTable {
    /// `tasks`.
    Tasks,
    /// `objectives`.
    Objectives,
    /// `contexts`.
    Contexts,
    /// `workspaces`.
    Workspaces,
}

impl IdTable {
    /// The table's name (static: never from input).
    fn name(self) -> &'static str {
        match self {
            IdTable::Tasks => "tasks",
            IdTable::Objectives => "objectives",
            IdTable::Contexts => "contexts",
            IdTable::Workspaces => "workspaces",
        }
    }
}

impl Store {
    /// Persists a new task (status `queued`) and its `created` event in one
    /// transaction. With a run key that already exists, returns the existing
    /// task and adds nothing.
    pub async fn enqueue_task(&self, new: NewTask, max_attempts: u32, now: UnixMillis) -> Result<Enqueued, StoreError> {
        self.write(move |c| insert_task(c, &new, max_attempts, now)).await
    }

    /// One task by id.
    pub async fn get_task(&self, id: &TaskId) -> Result<Task, StoreError> {
        let id = id.clone();
        self.read(move |c| found(load_task(c, id.as_str())?, "task")).await
    }

    /// Tasks of a workspace whose id starts with `prefix`, at most `limit`.
    pub async fn find_tasks_by_prefix(&self, workspace: &WorkspaceId, prefix: &str, limit: u32) -> Result<Vec<Task>, StoreError> {
        let (ws, pattern) = (workspace.clone(), format!("{}%", prefix.replace(['%', '_'], "")));
        self.read(move |c| {
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = ?1 AND id LIKE ?2 LIMIT ?3");
            let rows = c.prepare_cached(&sql)?.query_map(params![ws.as_str(), pattern, limit], task_from_row)?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Ids of tasks of any workspace that start with `prefix` (lowercase hex
    /// and dashes), at most `limit`: a range on the primary key.
    pub async fn task_ids_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<TaskId>, StoreError> {
        Ok(self.ids_by_prefix(IdTable::Tasks, prefix, limit).await?.into_iter().map(TaskId::from_string).collect())
    }

    /// At most `limit` ids of `table` that start with `prefix`, in order (a
    /// range scan of the primary key).
    pub async fn ids_by_prefix(&self, table: IdTable, prefix: &str, limit: u32) -> Result<Vec<String>, StoreError> {
        // `~` sorts after every character of an id.
        let (lo, hi) = (prefix.to_string(), format!("{prefix}~"));
        self.read(move |c| {
            let sql = format!("SELECT id FROM {} WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3", table.name());
            let ids: Vec<String> = c.prepare_cached(&sql)?.query_map(params![lo, hi, limit], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
    }

    /// Tasks matching `filter`, newest first.
    pub async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.read(move |c| {
            let scoped = filter.workspace_id.is_some() || filter.context_id.is_some();
            let mut f = Filter::default();
            f.eq("workspace_id", filter.workspace_id.map(|w| w.as_str().to_string()))
                .eq("context_id", filter.context_id.map(|x| x.as_str().to_string()))
                .eq("status", filter.status.map(|x| x.as_str().to_string()))
                .eq("kind", filter.kind.map(|x| x.as_str().to_string()));
            // Within a chat or workspace, the (…, created_at) index gives the order.
            // Across all of them, the primary key does: ids are UUIDv7, in
            // creation order to the millisecond (monotonic within the process),
            // so the newest are read off the end of the table instead of
            // sorting the whole of it (5 requests/s at 30,000 tasks before).
            let order = if scoped { "created_at DESC, id DESC" } else { "id DESC" };
            if let Some(before) = filter.before {
                let at: Option<i64> = c
                    .prepare_cached("SELECT created_at FROM tasks WHERE id = ?1")?
                    .query_row([before.as_str()], |r| r.get(0))
                    .optional()?;
                let at = at.ok_or(StoreError::NotFound("task named by `before`"))?;
                if scoped {
                    f.pair_before("created_at", "id", at.into(), before.as_str().to_string().into());
                } else {
                    f.cmp("id", "<", Some(before.as_str().to_string()));
                }
            }
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks{} ORDER BY {order} LIMIT ?{}", f.clause(), f.next());
            let limit = i64::from(filter.limit.unwrap_or(100).clamp(1, 500));
            let rows = c
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(f.values([limit.into()])), task_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Queued and running tasks: the queue depth (cheap: each count reads only
    /// its partial index).
    pub async fn unfinished_task_count(&self) -> Result<(u64, u64), StoreError> {
        self.read(|c| {
            let queued = c
                .prepare_cached("SELECT COUNT(*) FROM tasks WHERE status = 'queued' AND not_before > -9223372036854775807")?
                .query_row([], |r| r.get(0))?;
            let running = c
                .prepare_cached("SELECT COUNT(*) FROM tasks WHERE status = 'running' AND lease_expires_at IS NOT NULL")?
                .query_row([], |r| r.get(0))?;
            Ok((queued, running))
        })
        .await
    }

    /// Counts of tasks by status, in one context or (with `None`) overall.
    pub async fn task_counts(&self, context: Option<&ContextId>) -> Result<Vec<(TaskStatus, u64)>, StoreError> {
        let ctx = context.cloned();
        self.read(move |c| {
            let mut f = Filter::default();
            f.eq("context_id", ctx.map(|x| x.as_str().to_string()));
            let mut stmt = c.prepare_cached(&format!("SELECT status, COUNT(*) FROM tasks{} GROUP BY status", f.clause()))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(f.values([])), |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (s, n) = row?;
                if let Ok(status) = TaskStatus::parse(&s) {
                    out.push((status, n));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The history of one task, oldest first.
    pub async fn task_events(&self, id: &TaskId) -> Result<Vec<TaskEvent>, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, task_id, at, event, from_status, to_status, attempt, worker, detail FROM task_events WHERE task_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([id.as_str()], |r| {
                Ok(TaskEvent {
                    seq: r.get(0)?,
                    task_id: TaskId::from_string(r.get::<_, String>(1)?),
                    at: r.get(2)?,
                    event: r.get(3)?,
                    from_status: r.get::<_, Option<String>>(4)?.and_then(|s| TaskStatus::parse(&s).ok()),
                    to_status: r.get::<_, Option<String>>(5)?.and_then(|s| TaskStatus::parse(&s).ok()),
                    attempt: r.get(6)?,
                    worker: r.get(7)?,
                    detail: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Applies `patch` only if the task is still at `if_version`; a stale
    /// version is refused with [`StoreError::VersionConflict`].
    pub async fn update_task(&self, id: &TaskId, if_version: i64, patch: TaskPatch, now: UnixMillis) -> Result<Task, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let tx: &Connection = c;
            let task = found(load_task(tx, id.as_str())?, "task")?;
            if task.version != if_version {
                return Err(StoreError::VersionConflict { current: task.version });
            }
            if patch.prompt.is_some() && task.status != TaskStatus::Queued {
                return Err(StoreError::Conflict(format!("the prompt can only change while queued (task is {})", task.status)));
            }
            tx.execute(
                "UPDATE tasks SET title = COALESCE(?1, title), prompt = COALESCE(?2, prompt), version = version + 1, updated_at = ?3 \
                 WHERE id = ?4 AND version = ?5",
                params![patch.title, patch.prompt, now, id.as_str(), if_version],
            )?;
            let fields: Vec<&str> =
                [patch.title.as_ref().map(|_| "title"), patch.prompt.as_ref().map(|_| "prompt")].into_iter().flatten().collect();
            add_event(
                tx,
                id.as_str(),
                task.version + 1,
                now,
                "updated",
                Some(task.status),
                Some(task.status),
                task.attempts,
                None,
                Some(&fields.join(",")),
            )?;
            let task = found(load_task(tx, id.as_str())?, "task")?;
            Ok(task)
        })
        .await
    }

    /// Sets a task's routing (class, priority, lane, due time), bumping its
    /// version and recording a `routed` event.
    pub async fn route_task(&self, id: &TaskId, route: Route, now: UnixMillis) -> Result<Task, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let tx: &Connection = c;
            let task = found(load_task(tx, id.as_str())?, "task")?;
            tx.execute(
                "UPDATE tasks SET route_class = ?1, priority = ?2, lane = ?3, due_at = ?4, version = version + 1, updated_at = ?5 \
                 WHERE id = ?6",
                params![route.class, route.priority, route.lane, route.due_at, now, id.as_str()],
            )?;
            let detail = format!("class={} priority={} lane={}", route.class, route.priority, route.lane);
            add_event(
                tx,
                id.as_str(),
                task.version + 1,
                now,
                "routed",
                Some(task.status),
                Some(task.status),
                task.attempts,
                None,
                Some(&detail),
            )?;
            found(load_task(tx, id.as_str())?, "task")
        })
        .await
    }

    /// Puts a failed or canceled task back in the queue, as new: attempts
    /// reset, result and error cleared, a `retried` event (with `by`) in its
    /// history. Any other status → `Conflict`.
    pub async fn retry_task(&self, id: &TaskId, by: String, now: UnixMillis) -> Result<Task, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let tx: &Connection = c;
            let task = found(load_task(tx, id.as_str())?, "task")?;
            if !matches!(task.status, TaskStatus::Failed | TaskStatus::Canceled) {
                return Err(StoreError::Conflict(format!("only failed or canceled tasks can be retried; this one is {}", task.status)));
            }
            tx.execute(
                "UPDATE tasks SET status = 'queued', attempts = 0, error = NULL, result_summary = NULL, result_path = NULL, \
                 cancel_requested = 0, lease_owner = NULL, lease_expires_at = NULL, not_before = ?1, started_at = NULL, \
                 finished_at = NULL, updated_at = ?1, version = version + 1 WHERE id = ?2",
                params![now, id.as_str()],
            )?;
            let detail = format!("retried by {by}");
            add_event(
                tx,
                id.as_str(),
                task.version + 1,
                now,
                "retried",
                Some(task.status),
                Some(TaskStatus::Queued),
                0,
                None,
                Some(&detail),
            )?;
            let task = found(load_task(tx, id.as_str())?, "task")?;
            super::objectives::track_run(tx, &task, now)?;
            Ok(task)
        })
        .await
    }

    /// Cancels a queued task at once, or flags a running one so its worker
    /// stops; a finished task is refused with [`StoreError::Conflict`].
    pub async fn cancel_task(&self, id: &TaskId, reason: String, now: UnixMillis) -> Result<CancelOutcome, StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let tx: &Connection = c;
            let task = found(load_task(tx, id.as_str())?, "task")?;
            let out = match task.status {
                TaskStatus::Queued => {
                    tx.execute(
                        "UPDATE tasks SET status = 'canceled', error = ?1, finished_at = ?2, updated_at = ?2, version = version + 1 WHERE id = ?3",
                        params![reason, now, id.as_str()],
                    )?;
                    add_event(tx, id.as_str(), task.version + 1, now, "canceled", Some(task.status), Some(TaskStatus::Canceled), task.attempts, None, Some(&reason))?;
                    let task = found(load_task(tx, id.as_str())?, "task")?;
                    super::objectives::track_run(tx, &task, now)?;
                    CancelOutcome::Canceled(task)
                }
                TaskStatus::Running if !task.cancel_requested => {
                    tx.execute(
                        "UPDATE tasks SET cancel_requested = 1, updated_at = ?1, version = version + 1 WHERE id = ?2",
                        params![now, id.as_str()],
                    )?;
                    add_event(tx, id.as_str(), task.version + 1, now, "cancel_requested", Some(task.status), Some(task.status), task.attempts, None, Some(&reason))?;
                    CancelOutcome::Requested(found(load_task(tx, id.as_str())?, "task")?)
                }
                TaskStatus::Running => CancelOutcome::Requested(task),
                s => return Err(StoreError::Conflict(format!("task already {s}"))),
            };
            Ok(out)
        })
        .await
    }
}
