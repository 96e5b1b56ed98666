//! Objectives: standing instructions that fire on a schedule, once at a
//! time, or on workspace events, and their runs (`objective_runs`): one row
//! per scheduled time (skipped ones included), event or manual run. A run's
//! outcome follows its task's real end in the transaction of the task's
//! transition ([`track_run`]); the objective's statistics, and the
//! auto-pause after too many failures in a row, are kept there too.

use super::audit::{NewAudit, insert_audit};
use super::filter::Filter;
use super::tasks::insert_task;
use super::{Store, StoreError};
use crate::clock::UnixMillis;
use crate::domain::{
    CatchUp, ContextId, NewTask, ObjectiveId, RunOutcome, RunTrigger, TASK_TITLE_MAX, Task, TaskId, TaskKind, TaskStatus, TraceId,
    WorkspaceId, title_from,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// Errors kept on an objective (`recent_errors`).
const RECENT_ERRORS: usize = 5;

thread_local! {
    /// Real failures in a row after which an objective pauses itself
    /// (`AGENT_RUNTIME_OBJECTIVE_MAX_CONSECUTIVE_FAILURES`); read on the
    /// writer thread, where every transition runs. 0: never.
    static PAUSE_AFTER: Cell<u32> = const { Cell::new(5) };
}

/// One of an objective's last errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentError {
    /// When the run ended.
    pub at: UnixMillis,
    /// The task's error.
    pub error: String,
}

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
    /// `schedule`, `event` or `once`.
    pub trigger_type: String,
    /// Event key for event objectives (`markdown.updated`).
    pub event_key: Option<String>,
    /// Workspace-relative glob an event's path must match (event objectives).
    pub event_filter: Option<String>,
    /// Cron expression for schedules.
    pub cron_expr: Option<String>,
    /// Time zone of the cron expression.
    pub timezone: String,
    /// When a `once` objective fires.
    pub run_at: Option<UnixMillis>,
    /// What to do about times missed while the runtime was down.
    pub catch_up: CatchUp,
    /// Whether it fires.
    pub active: bool,
    /// Next fire time (schedules and `once`, while active).
    pub next_run_at: Option<UnixMillis>,
    /// Last fire time.
    pub last_run_at: Option<UnixMillis>,
    /// The last failed run's error (cleared by a success).
    pub last_error: Option<String>,
    /// Why it paused itself (cleared when resumed).
    pub paused_reason: Option<String>,
    /// Runs that ended (succeeded, failed or canceled).
    pub run_count: i64,
    /// Runs whose task succeeded.
    pub success_count: i64,
    /// Runs whose task failed.
    pub failure_count: i64,
    /// Failures since the last success.
    pub consecutive_failures: i64,
    /// Successes since the last failure.
    pub consecutive_successes: i64,
    /// Sum of the ended runs' durations.
    pub total_run_ms: i64,
    /// Last success.
    pub last_success_at: Option<UnixMillis>,
    /// Last failure.
    pub last_failure_at: Option<UnixMillis>,
    /// The last five errors, oldest first.
    pub recent_errors: Vec<RecentError>,
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
    /// `schedule`, `event` or `once`.
    pub trigger_type: String,
    /// Event key (event objectives).
    pub event_key: Option<String>,
    /// Path glob (event objectives).
    pub event_filter: Option<String>,
    /// Cron expression (schedule objectives).
    pub cron_expr: Option<String>,
    /// Time zone.
    pub timezone: String,
    /// Fire time (`once` objectives).
    pub run_at: Option<UnixMillis>,
    /// Catch-up policy.
    pub catch_up: CatchUp,
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

/// One run of an objective.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveRun {
    /// Row id (keyset paging: newest first).
    pub id: i64,
    /// The objective.
    pub objective_id: ObjectiveId,
    /// The time it was for (the scheduled time; for events and manual runs, when it fired).
    pub scheduled_at: UnixMillis,
    /// When its task was queued (none when skipped).
    pub fired_at: Option<UnixMillis>,
    /// Its task.
    pub task_id: Option<TaskId>,
    /// Why it ran.
    pub trigger: RunTrigger,
    /// Where it is.
    pub outcome: RunOutcome,
    /// How long the task's last attempt ran, once ended.
    pub duration_ms: Option<i64>,
    /// The task's error, or why the run was skipped.
    pub error: Option<String>,
    /// The changed path (event runs).
    pub detail: Option<String>,
    /// When the task ended.
    pub finished_at: Option<UnixMillis>,
}

/// One run the scheduler decided on.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// The time it is for.
    pub scheduled_at: UnixMillis,
    /// Why.
    pub trigger: RunTrigger,
    /// `None`: fire it; `Some(reason)`: record it skipped.
    pub skip: Option<String>,
}

/// What firing an objective changes, decided by the scheduler; applied in one
/// transaction by [`Store::fire_objectives`].
#[derive(Debug, Clone)]
pub struct FirePlan {
    /// The objective.
    pub objective_id: ObjectiveId,
    /// For scheduled fires: the `next_run_at` the plan was made from. The
    /// plan is dropped if the objective changed since (paused, edited,
    /// deleted, or already fired).
    pub expect_next: Option<UnixMillis>,
    /// The runs, oldest first.
    pub runs: Vec<PlannedRun>,
    /// The objective's next fire time afterwards (scheduled fires).
    pub next_run_at: Option<UnixMillis>,
    /// Deactivate it (a `once` objective that fired).
    pub deactivate: bool,
    /// Event runs: the workspace-relative path that changed (added to the
    /// prompt and kept on the run), and the dedupe window: no second run for
    /// the same path fired after this time.
    pub event: Option<(String, UnixMillis)>,
}

/// What a plan did.
#[derive(Debug, Clone, Default)]
pub struct FireResult {
    /// Tasks queued (run time, task id, lag from the scheduled time).
    pub fired: Vec<(RunTrigger, TaskId, i64)>,
    /// Runs recorded as skipped.
    pub skipped: usize,
    /// Nothing done: the objective changed (or was deleted) since the plan was made.
    pub stale: bool,
    /// Nothing done: an event for the same path fired within the dedupe window.
    pub deduped: bool,
}

const COLUMNS: &str = "id, workspace_id, context_id, title, prompt, trigger_type, event_key, event_filter, cron_expr, timezone, \
    run_at, catch_up, active, next_run_at, last_run_at, last_error, paused_reason, run_count, success_count, failure_count, \
    consecutive_failures, consecutive_successes, total_run_ms, last_success_at, last_failure_at, recent_errors, created_by, \
    created_at, updated_at";

fn bad_value(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Objective> {
    Ok(Objective {
        id: ObjectiveId::from_string(r.get::<_, String>(0)?),
        workspace_id: WorkspaceId::from_string(r.get::<_, String>(1)?),
        context_id: ContextId::from_string(r.get::<_, String>(2)?),
        title: r.get(3)?,
        prompt: r.get(4)?,
        trigger_type: r.get(5)?,
        event_key: r.get(6)?,
        event_filter: r.get(7)?,
        cron_expr: r.get(8)?,
        timezone: r.get(9)?,
        run_at: r.get(10)?,
        catch_up: CatchUp::parse(&r.get::<_, String>(11)?).map_err(|e| bad_value(11, e))?,
        active: r.get(12)?,
        next_run_at: r.get(13)?,
        last_run_at: r.get(14)?,
        last_error: r.get(15)?,
        paused_reason: r.get(16)?,
        run_count: r.get(17)?,
        success_count: r.get(18)?,
        failure_count: r.get(19)?,
        consecutive_failures: r.get(20)?,
        consecutive_successes: r.get(21)?,
        total_run_ms: r.get(22)?,
        last_success_at: r.get(23)?,
        last_failure_at: r.get(24)?,
        recent_errors: serde_json::from_str(&r.get::<_, String>(25)?).unwrap_or_default(),
        created_by: r.get(26)?,
        created_at: r.get(27)?,
        updated_at: r.get(28)?,
    })
}

const RUN_COLUMNS: &str = "id, objective_id, scheduled_at, fired_at, task_id, trigger, outcome, duration_ms, error, detail, finished_at";

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<ObjectiveRun> {
    Ok(ObjectiveRun {
        id: r.get(0)?,
        objective_id: ObjectiveId::from_string(r.get::<_, String>(1)?),
        scheduled_at: r.get(2)?,
        fired_at: r.get(3)?,
        task_id: r.get::<_, Option<String>>(4)?.map(TaskId::from_string),
        trigger: RunTrigger::parse(&r.get::<_, String>(5)?).map_err(|e| bad_value(5, e))?,
        outcome: RunOutcome::parse(&r.get::<_, String>(6)?).map_err(|e| bad_value(6, e))?,
        duration_ms: r.get(7)?,
        error: r.get(8)?,
        detail: r.get(9)?,
        finished_at: r.get(10)?,
    })
}

fn get(c: &Connection, id: &str) -> Result<Option<Objective>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM objectives WHERE id = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([id], from_row).optional()?)
}

/// The event every objective change appends (the scheduler wakes on them).
fn changed(c: &Connection, kind: &str, o: &Objective, now: UnixMillis) -> rusqlite::Result<()> {
    let data = serde_json::json!({
        "objective_id": o.id.as_str(), "workspace_id": o.workspace_id.as_str(), "title": o.title,
        "active": o.active, "next_run_at": o.next_run_at,
    });
    super::events::append(c, now, kind, &data)
}

/// The run key of a run: one task per scheduled time, ever.
pub fn run_key(objective: &ObjectiveId, trigger: RunTrigger, scheduled_at: UnixMillis, path: Option<&str>) -> String {
    match trigger {
        RunTrigger::Schedule | RunTrigger::CatchUp => format!("objective:{objective}:{}", scheduled_at.div_euclid(1000)),
        RunTrigger::Manual => format!("objective:{objective}:manual:{scheduled_at}"),
        RunTrigger::Event => {
            let hash = crate::actions::sha256_hex(path.unwrap_or_default());
            format!("objective:{objective}:event:{scheduled_at}:{}", &hash[..12])
        }
    }
}

/// The prompt of an event run: the objective's, then the changed path
/// (workspace-relative; the absolute path is nobody's business).
pub fn event_prompt(prompt: &str, path: &str) -> String {
    format!("{}\n\nChanged markdown file (workspace-relative): `{path}`", prompt.trim_end())
}

/// Applies one plan inside the caller's transaction.
fn fire_one(c: &Connection, plan: &FirePlan, max_attempts: u32, now: UnixMillis) -> Result<FireResult, StoreError> {
    let mut out = FireResult::default();
    let Some(o) = get(c, plan.objective_id.as_str())? else {
        out.stale = true;
        return Ok(out);
    };
    if let Some(expect) = plan.expect_next
        && (!o.active || o.next_run_at != Some(expect))
    {
        out.stale = true;
        return Ok(out);
    }
    if let Some((path, since)) = &plan.event {
        let recent: Option<i64> = c
            .prepare_cached(
                "SELECT 1 FROM objective_runs WHERE objective_id = ?1 AND trigger = 'event' AND detail = ?2 AND scheduled_at >= ?3 LIMIT 1",
            )?
            .query_row(params![o.id.as_str(), path, since], |r| r.get(0))
            .optional()?;
        if recent.is_some() {
            out.deduped = true;
            return Ok(out);
        }
    }
    let path = plan.event.as_ref().map(|(p, _)| p.as_str());
    let mut skipped: Vec<(UnixMillis, &str)> = Vec::new();
    for run in &plan.runs {
        let (task_id, outcome, error) = match &run.skip {
            Some(reason) => {
                skipped.push((run.scheduled_at, reason));
                (None, RunOutcome::Skipped, Some(reason.clone()))
            }
            None => {
                let new = NewTask {
                    workspace_id: o.workspace_id.clone(),
                    context_id: o.context_id.clone(),
                    kind: TaskKind::Objective,
                    title: title_from(&o.title, TASK_TITLE_MAX),
                    prompt: match path {
                        Some(p) => event_prompt(&o.prompt, p),
                        None => o.prompt.clone(),
                    },
                    run_key: Some(run_key(&o.id, run.trigger, run.scheduled_at, path)),
                    source_user_id: None,
                    trace_id: TraceId::random(),
                    tell_origin: true,
                };
                let enq = insert_task(c, &new, max_attempts, now)?;
                if enq.created {
                    out.fired.push((run.trigger, enq.task.id.clone(), now - run.scheduled_at));
                }
                (Some(enq.task.id), RunOutcome::Queued, None)
            }
        };
        let inserted = c
            .prepare_cached(
                "INSERT INTO objective_runs (objective_id, scheduled_at, fired_at, task_id, trigger, outcome, error, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                o.id.as_str(),
                run.scheduled_at,
                task_id.is_some().then_some(now),
                task_id.as_ref().map(|t| t.as_str()),
                run.trigger.as_str(),
                outcome.as_str(),
                error,
                path,
            ])?;
        if inserted > 0
            && let Some(t) = &task_id
        {
            let data = serde_json::json!({
                "objective_id": o.id.as_str(), "task_id": t.as_str(), "trigger": run.trigger.as_str(),
                "scheduled_at": run.scheduled_at, "lag_ms": now - run.scheduled_at, "path": path,
            });
            super::events::append(c, now, "objective.fired", &data)?;
        }
    }
    out.skipped = skipped.len();
    if let (Some(first), Some(last)) = (skipped.first(), skipped.last()) {
        let data = serde_json::json!({
            "objective_id": o.id.as_str(), "count": skipped.len(), "first_scheduled_at": first.0,
            "last_scheduled_at": last.0, "reason": last.1,
        });
        super::events::append(c, now, "objective.skipped", &data)?;
    }
    let fired_any = plan.runs.iter().any(|r| r.skip.is_none());
    if plan.expect_next.is_some() || plan.deactivate || fired_any {
        c.prepare_cached(
            "UPDATE objectives SET next_run_at = CASE WHEN ?2 THEN ?3 ELSE next_run_at END, \
             last_run_at = CASE WHEN ?4 THEN ?5 ELSE last_run_at END, active = CASE WHEN ?6 THEN 0 ELSE active END WHERE id = ?1",
        )?
        .execute(params![
            o.id.as_str(),
            plan.expect_next.is_some() || plan.deactivate,
            if plan.deactivate { None } else { plan.next_run_at },
            fired_any,
            now,
            plan.deactivate
        ])?;
    }
    Ok(out)
}

/// Keeps an objective run in step with its task: called in every
/// transaction that changes a task's status. Does nothing for tasks that
/// are not objective runs. A final status records the run's outcome and
/// duration, updates the objective's statistics, and pauses the objective
/// after too many real failures in a row (event, admin notices).
pub(super) fn track_run(c: &Connection, task: &Task, now: UnixMillis) -> Result<(), StoreError> {
    if task.kind != TaskKind::Objective {
        return Ok(());
    }
    let row: Option<(i64, String)> = c
        .prepare_cached("SELECT id, objective_id FROM objective_runs WHERE task_id = ?1")?
        .query_row([task.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((run_id, objective_id)) = row else { return Ok(()) };
    let outcome = match task.status {
        TaskStatus::Queued => RunOutcome::Queued,
        TaskStatus::Running => RunOutcome::Running,
        TaskStatus::Succeeded => RunOutcome::Succeeded,
        TaskStatus::Failed => RunOutcome::Failed,
        TaskStatus::Canceled => RunOutcome::Canceled,
    };
    if !task.status.is_final() {
        c.prepare_cached("UPDATE objective_runs SET outcome = ?2, duration_ms = NULL, finished_at = NULL WHERE id = ?1")?
            .execute(params![run_id, outcome.as_str()])?;
        return Ok(());
    }
    let duration = match (task.started_at, task.finished_at) {
        (Some(s), Some(f)) if f >= s => f - s,
        _ => 0,
    };
    let error = (task.status != TaskStatus::Succeeded).then(|| task.error.clone().unwrap_or_default());
    c.prepare_cached("UPDATE objective_runs SET outcome = ?2, duration_ms = ?3, error = ?4, finished_at = ?5 WHERE id = ?1")?
        .execute(params![run_id, outcome.as_str(), duration, error, now])?;
    let data = serde_json::json!({
        "objective_id": objective_id, "run_id": run_id, "task_id": task.id.as_str(), "outcome": outcome.as_str(),
        "duration_ms": duration, "error": error,
    });
    super::events::append(c, now, "objective.run_finished", &data)?;
    // Counted at each ending: a task retried by hand ends again and counts again.
    let Some(mut o) = get(c, &objective_id)? else { return Ok(()) };
    o.run_count += 1;
    o.total_run_ms += duration;
    match task.status {
        TaskStatus::Succeeded => {
            o.success_count += 1;
            o.consecutive_successes += 1;
            o.consecutive_failures = 0;
            o.last_success_at = Some(now);
            o.last_error = None;
        }
        TaskStatus::Failed => {
            let e = error.unwrap_or_default();
            o.failure_count += 1;
            o.consecutive_failures += 1;
            o.consecutive_successes = 0;
            o.last_failure_at = Some(now);
            o.last_error = Some(e.clone());
            o.recent_errors.push(RecentError { at: now, error: e });
            let excess = o.recent_errors.len().saturating_sub(RECENT_ERRORS);
            o.recent_errors.drain(..excess);
        }
        _ => {}
    }
    let limit = PAUSE_AFTER.with(Cell::get);
    let pause = limit > 0 && o.active && task.status == TaskStatus::Failed && o.consecutive_failures >= i64::from(limit);
    if pause {
        o.active = false;
        o.next_run_at = None;
        o.paused_reason = Some(format!(
            "auto-paused after {} failed runs in a row; last error: {}",
            o.consecutive_failures,
            o.last_error.as_deref().unwrap_or("")
        ));
    }
    c.prepare_cached(
        "UPDATE objectives SET run_count = ?2, success_count = ?3, failure_count = ?4, consecutive_failures = ?5, \
         consecutive_successes = ?6, total_run_ms = ?7, last_success_at = ?8, last_failure_at = ?9, last_error = ?10, \
         recent_errors = ?11, active = ?12, next_run_at = ?13, paused_reason = ?14 WHERE id = ?1",
    )?
    .execute(params![
        o.id.as_str(),
        o.run_count,
        o.success_count,
        o.failure_count,
        o.consecutive_failures,
        o.consecutive_successes,
        o.total_run_ms,
        o.last_success_at,
        o.last_failure_at,
        o.last_error,
        serde_json::to_string(&o.recent_errors).unwrap_or_else(|_| "[]".into()),
        o.active,
        o.next_run_at,
        o.paused_reason,
    ])?;
    if pause {
        let reason = o.paused_reason.clone().unwrap_or_default();
        let data = serde_json::json!({"objective_id": o.id.as_str(), "title": o.title, "reason": reason, "auto": true});
        super::events::append(c, now, "objective.paused", &data)?;
        let audit = NewAudit {
            actor: "system:scheduler".into(),
            chat: None,
            event: "objective.paused",
            decision: super::Decision::Info,
            reason: Some(reason.clone()),
            subject: Some(o.id.to_string()),
        };
        insert_audit(c, &[audit], now)?;
        let body = format!(
            "Objective `{}` ({}) paused itself: {reason}\nResume it with `agent-runtime objective resume {}` once the cause is fixed.",
            o.id, o.title, o.id
        );
        for chat in super::chats::admin_chats(c)? {
            super::outbox::insert(c, &super::approvals::notice(&chat, body.clone()), crate::domain::OutboxStatus::Pending, now)?;
        }
    }
    Ok(())
}

impl Store {
    /// Sets how many real failures in a row pause an objective (0: never).
    pub async fn set_objective_pause_after(&self, failures: u32) -> Result<(), StoreError> {
        self.write(move |_| {
            PAUSE_AFTER.with(|p| p.set(failures));
            Ok(())
        })
        .await
    }

    /// Stores a new objective. The context must exist (and belong to the
    /// workspace): otherwise `NotFound("context")`.
    /// `audit` rows commit with it.
    pub async fn create_objective(&self, new: NewObjective, audit: Vec<NewAudit>, now: UnixMillis) -> Result<Objective, StoreError> {
        self.write(move |c| {
            let ws: Option<String> = c
                .prepare_cached("SELECT workspace_id FROM contexts WHERE id = ?1")?
                .query_row([new.context_id.as_str()], |r| r.get(0))
                .optional()?;
            if ws.as_deref() != Some(new.workspace_id.as_str()) {
                return Err(StoreError::NotFound("context in that workspace"));
            }
            let id = ObjectiveId::random();
            c.execute(
                "INSERT INTO objectives (id, workspace_id, context_id, title, prompt, trigger_type, event_key, event_filter, cron_expr, \
                 timezone, run_at, catch_up, active, next_run_at, created_by, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16)",
                params![
                    id.as_str(),
                    new.workspace_id.as_str(),
                    new.context_id.as_str(),
                    new.title,
                    new.prompt,
                    new.trigger_type,
                    new.event_key,
                    new.event_filter,
                    new.cron_expr,
                    new.timezone,
                    new.run_at,
                    new.catch_up.as_str(),
                    new.active,
                    new.next_run_at,
                    new.created_by,
                    now
                ],
            )?;
            let audit: Vec<NewAudit> = audit.into_iter().map(|a| NewAudit { subject: Some(id.to_string()), ..a }).collect();
            insert_audit(c, &audit, now)?;
            let o = get(c, id.as_str())?.ok_or(StoreError::NotFound("objective"))?;
            changed(c, "objective.created", &o, now)?;
            Ok(o)
        })
        .await
        .inspect(|_| self.poke_objectives())
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
                "UPDATE objectives SET title = ?2, prompt = ?3, trigger_type = ?4, event_key = ?5, event_filter = ?6, cron_expr = ?7, \
                 timezone = ?8, run_at = ?9, catch_up = ?10, active = ?11, next_run_at = ?12, paused_reason = ?13, updated_at = ?14 \
                 WHERE id = ?1",
                params![
                    o.id.as_str(),
                    o.title,
                    o.prompt,
                    o.trigger_type,
                    o.event_key,
                    o.event_filter,
                    o.cron_expr,
                    o.timezone,
                    o.run_at,
                    o.catch_up.as_str(),
                    o.active,
                    o.next_run_at,
                    o.paused_reason,
                    now
                ],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound("objective"));
            }
            insert_audit(c, &[audit], now)?;
            let saved = get(c, o.id.as_str())?.ok_or(StoreError::NotFound("objective"))?;
            changed(c, "objective.updated", &saved, now)?;
            Ok(saved)
        })
        .await
        .inspect(|_| self.poke_objectives())
    }

    /// Deletes an objective (and its runs; its tasks stay), with its audit row.
    pub async fn delete_objective(&self, id: &ObjectiveId, audit: NewAudit, now: UnixMillis) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let Some(o) = get(c, id.as_str())? else { return Err(StoreError::NotFound("objective")) };
            c.execute("DELETE FROM objectives WHERE id = ?1", [id.as_str()])?;
            insert_audit(c, &[audit], now)?;
            changed(c, "objective.deleted", &o, now)?;
            Ok(())
        })
        .await
        .inspect(|_| self.poke_objectives())
    }

    /// Active objectives due at `now` (next run passed), earliest first.
    pub async fn due_objectives(&self, now: UnixMillis, limit: u32) -> Result<Vec<Objective>, StoreError> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM objectives WHERE active = 1 AND next_run_at IS NOT NULL AND next_run_at <= ?1 \
                 ORDER BY next_run_at LIMIT ?2"
            );
            Ok(c.prepare_cached(&sql)?.query_map(params![now, limit], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The earliest next run of any active objective.
    pub async fn next_objective_due(&self) -> Result<Option<UnixMillis>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT MIN(next_run_at) FROM objectives WHERE active = 1 AND next_run_at IS NOT NULL")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }

    /// Active event objectives of a workspace listening for `event_key`.
    pub async fn event_objectives(&self, workspace: &WorkspaceId, event_key: &str) -> Result<Vec<Objective>, StoreError> {
        let (ws, key) = (workspace.clone(), event_key.to_string());
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM objectives WHERE workspace_id = ?1 AND event_key = ?2 AND active = 1 AND trigger_type = 'event' \
                 ORDER BY created_at LIMIT 500"
            );
            Ok(c.prepare_cached(&sql)?.query_map(params![ws.as_str(), key], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Applies the scheduler's plans, all in one transaction; one result per plan.
    pub async fn fire_objectives(&self, plans: Vec<FirePlan>, max_attempts: u32, now: UnixMillis) -> Result<Vec<FireResult>, StoreError> {
        self.write(move |c| plans.iter().map(|p| fire_one(c, p, max_attempts, now)).collect()).await
    }

    /// An objective's runs, newest first; `before` (a run id) pages on.
    pub async fn objective_runs(&self, id: &ObjectiveId, before: Option<i64>, limit: u32) -> Result<Vec<ObjectiveRun>, StoreError> {
        let id = id.clone();
        self.read(move |c| {
            let sql = format!("SELECT {RUN_COLUMNS} FROM objective_runs WHERE objective_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3");
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![id.as_str(), before.unwrap_or(i64::MAX), limit.clamp(1, 500)], run_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The outcome of each objective's newest run, in the order of `ids`.
    pub async fn last_outcomes(&self, ids: Vec<ObjectiveId>) -> Result<Vec<Option<RunOutcome>>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT outcome FROM objective_runs WHERE objective_id = ?1 ORDER BY id DESC LIMIT 1")?;
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                let raw: Option<String> = stmt.query_row([id.as_str()], |r| r.get(0)).optional()?;
                out.push(raw.and_then(|r| RunOutcome::parse(&r).ok()));
            }
            Ok(out)
        })
        .await
    }
}
