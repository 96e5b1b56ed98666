//! Objectives, on the Go runtime's paths: `POST /api/v1/objectives`
//! (create), `GET /api/v1/objectives` (list), `POST /api/v1/objectives/update`
//! (partial update), `/active` (pause or resume), `/delete`; plus
//! `GET /api/v1/objectives/{id}`, its runs (`GET …/{id}/runs`, newest
//! first, keyset paged) and "run now" (`POST …/{id}/run`, operator).
//! Schedules are validated (cron or descriptor, IANA time zone), `once`
//! needs a future `run_at`, event filters must stay inside the workspace;
//! the next run is computed; every rejection names the field. Unknown ids
//! are 404 (the Go runtime answered 400). Statistics and `health_state`
//! come from the runs' real outcomes.

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery, page_limit};
use super::tls::Caller;
use crate::clock::{UnixMillis, rfc3339};
use crate::domain::{Actor, CatchUp, ContextId, Glob, ObjectiveId, RunOutcome, Schedule, WorkspaceId, check_timezone};
use crate::scheduler::MARKDOWN_UPDATED;
use crate::store::{Decision, NewAudit, NewObjective, Objective, ObjectiveFilter, ObjectiveRun};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

const TITLE_MAX: usize = 200;
const PROMPT_MAX: usize = 64 * 1024;
/// How many upcoming fire times a view lists.
const UPCOMING: usize = 5;

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// One of the last errors, as the API shows it.
#[derive(Debug, Serialize)]
struct ErrorView {
    at_unix: i64,
    error: String,
}

/// An objective as the API shows it (the Go runtime's field names).
#[derive(Debug, Serialize)]
pub struct ObjectiveView {
    id: String,
    workspace_id: String,
    context_id: String,
    title: String,
    prompt: String,
    /// `schedule`, `event` or `once`.
    trigger_type: String,
    event_key: String,
    /// Workspace-relative glob (event objectives; empty: every markdown file).
    event_filter: String,
    cron_expr: String,
    timezone: String,
    /// When a `once` objective fires.
    run_at_unix: Option<i64>,
    /// `latest`, `all` or `none`.
    catch_up: &'static str,
    active: bool,
    next_run_unix: Option<i64>,
    last_run_unix: Option<i64>,
    last_error: String,
    /// Why it paused itself (empty unless auto-paused).
    auto_paused_reason: String,
    /// `auto_paused`, `paused`, `degraded` (its last ended run failed) or `healthy`.
    health_state: &'static str,
    /// The outcome of its newest run (`queued` … `skipped`), if it ran.
    last_outcome: Option<RunOutcome>,
    /// The next fire times (schedules and `once`; for a paused schedule, the times it would have).
    next_runs_unix: Vec<i64>,
    run_count: i64,
    success_count: i64,
    failure_count: i64,
    success_streak: i64,
    failure_streak: i64,
    avg_run_duration_ms: i64,
    last_success_unix: Option<i64>,
    last_failure_unix: Option<i64>,
    recent_errors: Vec<ErrorView>,
    created_by: Option<String>,
    created_at_unix: i64,
    updated_at_unix: i64,
}

/// The next `n` fire times of an objective as stored.
fn next_runs(o: &Objective, now: UnixMillis, n: usize) -> Vec<i64> {
    match o.trigger_type.as_str() {
        "schedule" => {
            let Some(s) = o.cron_expr.as_deref().and_then(|e| Schedule::parse(e, &o.timezone).ok()) else { return Vec::new() };
            match o.next_run_at {
                // The stored next run first, then the schedule's times after it.
                Some(next) => std::iter::once(next).chain(s.upcoming(next, n.saturating_sub(1))).map(secs).collect(),
                None => s.upcoming(now, n).into_iter().map(secs).collect(),
            }
        }
        "once" => o.next_run_at.or(o.run_at.filter(|_| o.active)).into_iter().map(secs).collect(),
        _ => Vec::new(),
    }
}

impl ObjectiveView {
    fn new(o: Objective, last_outcome: Option<RunOutcome>, now: i64) -> Self {
        let next_runs_unix = next_runs(&o, now, UPCOMING);
        let health_state = match (o.active, &o.paused_reason) {
            (false, Some(r)) if !r.is_empty() => "auto_paused",
            (false, _) => "paused",
            _ if o.consecutive_failures > 0 => "degraded",
            _ => "healthy",
        };
        let ended = o.run_count.max(1);
        ObjectiveView {
            id: o.id.to_string(),
            workspace_id: o.workspace_id.to_string(),
            context_id: o.context_id.to_string(),
            title: o.title,
            prompt: o.prompt,
            trigger_type: o.trigger_type,
            event_key: o.event_key.unwrap_or_default(),
            event_filter: o.event_filter.unwrap_or_default(),
            cron_expr: o.cron_expr.unwrap_or_default(),
            timezone: o.timezone,
            run_at_unix: o.run_at.map(secs),
            catch_up: o.catch_up.as_str(),
            active: o.active,
            next_run_unix: o.next_run_at.map(secs),
            last_run_unix: o.last_run_at.map(secs),
            last_error: o.last_error.unwrap_or_default(),
            auto_paused_reason: o.paused_reason.unwrap_or_default(),
            health_state,
            last_outcome,
            next_runs_unix,
            run_count: o.run_count,
            success_count: o.success_count,
            failure_count: o.failure_count,
            success_streak: o.consecutive_successes,
            failure_streak: o.consecutive_failures,
            avg_run_duration_ms: if o.run_count > 0 { o.total_run_ms / ended } else { 0 },
            last_success_unix: o.last_success_at.map(secs),
            last_failure_unix: o.last_failure_at.map(secs),
            recent_errors: o.recent_errors.into_iter().map(|e| ErrorView { at_unix: secs(e.at), error: e.error }).collect(),
            created_by: o.created_by,
            created_at_unix: secs(o.created_at),
            updated_at_unix: secs(o.updated_at),
        }
    }
}

/// Views of `list`, each with its last outcome.
async fn views(s: &ApiState, list: Vec<Objective>) -> Result<Vec<ObjectiveView>, ApiError> {
    let ids: Vec<ObjectiveId> = list.iter().map(|o| o.id.clone()).collect();
    let outcomes = s.store.last_outcomes(ids).await?;
    let now = s.clock.now_ms();
    Ok(list.into_iter().zip(outcomes).map(|(o, last)| ObjectiveView::new(o, last, now)).collect())
}

async fn view(s: &ApiState, o: Objective) -> Result<ObjectiveView, ApiError> {
    Ok(views(s, vec![o]).await?.into_iter().next().ok_or(crate::store::StoreError::NotFound("objective"))?)
}

/// The trigger part of an objective, checked together.
struct Trigger {
    trigger_type: String,
    event_key: Option<String>,
    event_filter: Option<String>,
    cron_expr: Option<String>,
    timezone: String,
    /// RFC 3339 (`once`).
    run_at: Option<String>,
}

/// A trigger as stored, with the schedule for schedule triggers.
struct Checked {
    trigger_type: String,
    event_key: Option<String>,
    event_filter: Option<String>,
    cron_expr: Option<String>,
    timezone: String,
    run_at: Option<UnixMillis>,
    schedule: Option<Schedule>,
}

/// Parses an RFC 3339 time (`2026-12-24T18:00:00+01:00`).
fn rfc3339_ms(field: &str, raw: &str) -> Result<UnixMillis, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| ApiError::bad_request(format!("{field} {raw:?} is not an RFC 3339 time like 2026-12-24T18:00:00Z ({e})")))
}

impl Trigger {
    /// Validates and normalises.
    fn check(mut self) -> Result<Checked, ApiError> {
        self.timezone = self.timezone.trim().to_string();
        let filter = self.event_filter.as_deref().map(str::trim).filter(|f| !f.is_empty());
        let kind = self.trigger_type.trim().to_ascii_lowercase();
        if filter.is_some() && kind != "event" {
            return Err(ApiError::bad_request("event_filter applies to event objectives only"));
        }
        if self.run_at.as_deref().is_some_and(|r| !r.trim().is_empty()) && kind != "once" {
            return Err(ApiError::bad_request("run_at applies to once objectives only (schedules take cron_expr)"));
        }
        match kind.as_str() {
            "schedule" => {
                let expr = self.cron_expr.as_deref().map(str::trim).filter(|e| !e.is_empty());
                let expr = expr.ok_or_else(|| ApiError::bad_request("cron_expr is required for a schedule objective"))?;
                let schedule = Schedule::parse(expr, &self.timezone).map_err(ApiError::bad_request)?;
                let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
                Ok(Checked {
                    trigger_type: "schedule".into(),
                    event_key: None,
                    event_filter: None,
                    cron_expr: Some(expr),
                    timezone: self.timezone,
                    run_at: None,
                    schedule: Some(schedule),
                })
            }
            "event" => {
                let key = self.event_key.as_deref().map(|k| k.trim().to_ascii_lowercase()).filter(|k| !k.is_empty());
                let key =
                    key.ok_or_else(|| ApiError::bad_request("event_key is required for an event objective (e.g. markdown.updated)"))?;
                if key != MARKDOWN_UPDATED {
                    return Err(ApiError::bad_request(format!(
                        "event_key {key:?} is not an event the runtime fires; use {MARKDOWN_UPDATED} (a markdown file in the workspace changed)"
                    )));
                }
                let event_filter = match filter {
                    Some(f) => Some(Glob::parse(f).map_err(|e| ApiError::bad_request(format!("event_filter: {e}")))?.as_str()),
                    None => None,
                };
                check_timezone(&self.timezone).map_err(ApiError::bad_request)?;
                Ok(Checked {
                    trigger_type: "event".into(),
                    event_key: Some(key),
                    event_filter,
                    cron_expr: None,
                    timezone: self.timezone,
                    run_at: None,
                    schedule: None,
                })
            }
            "once" => {
                let raw = self.run_at.as_deref().map(str::trim).filter(|r| !r.is_empty());
                let raw = raw.ok_or_else(|| ApiError::bad_request("run_at (RFC 3339) is required for a once objective"))?;
                let at = rfc3339_ms("run_at", raw)?;
                check_timezone(&self.timezone).map_err(ApiError::bad_request)?;
                Ok(Checked {
                    trigger_type: "once".into(),
                    event_key: None,
                    event_filter: None,
                    cron_expr: None,
                    timezone: self.timezone,
                    run_at: Some(at),
                    schedule: None,
                })
            }
            other => Err(ApiError::bad_request(format!("trigger_type must be schedule, event or once, not {other:?}"))),
        }
    }
}

fn catch_up(raw: Option<&str>) -> Result<Option<CatchUp>, ApiError> {
    raw.map(|r| CatchUp::parse(r).map_err(|_| ApiError::bad_request(format!("catch_up must be latest, all or none, not {r:?}"))))
        .transpose()
}

fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    if v.len() > max {
        return Err(ApiError::bad_request(format!("{field} is too long ({} bytes; the limit is {max})", v.len())));
    }
    Ok(v.to_string())
}

/// The next run: an explicit time (seconds; a past time makes it due at
/// once, which is how the Go runtime forced a run), or the schedule's next
/// fire time, or a `once` objective's `run_at` (which must be ahead); none
/// while paused or for event objectives.
fn next_run(active: bool, t: &Checked, explicit: Option<i64>, now: i64) -> Result<Option<i64>, ApiError> {
    if !active {
        return Ok(None);
    }
    if let Some(at) = t.run_at {
        if at <= now {
            return Err(ApiError::bad_request(format!("run_at {} is in the past (now is {})", rfc3339(at), rfc3339(now))));
        }
        return Ok(Some(at));
    }
    match (&t.schedule, explicit) {
        (None, _) => Ok(None),
        (Some(_), Some(at)) if at > 0 => Ok(Some(at.saturating_mul(1000))),
        (Some(_), Some(at)) if at < 0 => Err(ApiError::bad_request("next_run_unix must be a time in seconds (0 recomputes it)")),
        (Some(s), _) => Ok(s.next_after(now)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIn {
    workspace_id: Option<String>,
    context_id: String,
    title: String,
    prompt: String,
    trigger_type: Option<String>,
    event_key: Option<String>,
    event_filter: Option<String>,
    cron_expr: Option<String>,
    timezone: Option<String>,
    run_at: Option<String>,
    catch_up: Option<String>,
    next_run_unix: Option<i64>,
    active: Option<bool>,
}

pub async fn create(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    ApiJson(b): ApiJson<CreateIn>,
) -> Result<(StatusCode, Json<ObjectiveView>), ApiError> {
    let context_id = text("context_id", &b.context_id, 200)?;
    let title = text("title", &b.title, TITLE_MAX)?;
    let prompt = text("prompt", &b.prompt, PROMPT_MAX)?;
    let trigger = Trigger {
        trigger_type: b.trigger_type.unwrap_or_else(|| "schedule".into()),
        event_key: b.event_key,
        event_filter: b.event_filter,
        cron_expr: b.cron_expr,
        timezone: b.timezone.unwrap_or_else(|| "UTC".into()),
        run_at: b.run_at,
    }
    .check()?;
    let catch_up = catch_up(b.catch_up.as_deref())?.unwrap_or(CatchUp::Latest);
    // A unique prefix names the context too; a malformed or unknown one is this body's error (400).
    // Only the id's own faults (malformed 404, ambiguous 409) become this body's 400; a store failure stays what it is.
    let id = super::ids::context(&s, &context_id).await.map_err(|e| match e.status {
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => ApiError::bad_request(format!("context_id: {}", e.message)),
        _ => e,
    })?;
    let ctx = match s.store.get_context(&id).await {
        Ok(c) => c,
        Err(crate::store::StoreError::NotFound(_)) => {
            return Err(ApiError::bad_request(format!("context_id {context_id:?}: no such context")));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(ws) = b.workspace_id.as_deref().map(str::trim).filter(|w| !w.is_empty())
        && ws != ctx.workspace_id.as_str()
    {
        return Err(ApiError::bad_request(format!("context {context_id} belongs to workspace {}, not {ws}", ctx.workspace_id)));
    }
    let now = s.clock.now_ms();
    let active = b.active.unwrap_or(true);
    let next_run_at = next_run(active, &trigger, b.next_run_unix, now)?;
    let new = NewObjective {
        workspace_id: ctx.workspace_id.clone(),
        context_id: ctx.id.clone(),
        title,
        prompt,
        trigger_type: trigger.trigger_type,
        event_key: trigger.event_key,
        event_filter: trigger.event_filter,
        cron_expr: trigger.cron_expr,
        timezone: trigger.timezone,
        run_at: trigger.run_at,
        catch_up,
        active,
        next_run_at,
        created_by: actor.audit_name(None),
    };
    let row = NewAudit {
        actor: actor.audit_name(None),
        chat: None,
        event: "objective.created",
        decision: Decision::Info,
        reason: Some(new.title.clone()),
        subject: None,
    };
    let o = s.store.create_objective(new, vec![row], now).await?;
    Ok((StatusCode::CREATED, Json(view(&s, o).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workspace_id: Option<String>,
    context_id: Option<String>,
    /// Defaults to true, as in the Go runtime (`false`, `0` or `no` lists paused ones too).
    active_only: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ObjectiveList {
    items: Vec<ObjectiveView>,
    count: usize,
}

pub async fn list(State(s): State<ApiState>, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<ObjectiveList>, ApiError> {
    let active_only = match q.active_only.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1" | "yes") => true,
        Some("false" | "0" | "no") => false,
        Some(other) => return Err(ApiError::bad_request(format!("active_only must be true or false, not {other:?}"))),
    };
    let limit = page_limit(q.limit, 50, 500)?;
    let filter = ObjectiveFilter {
        workspace_id: q.workspace_id.map(WorkspaceId::from_string),
        context_id: q.context_id.map(ContextId::from_string),
        active_only,
        limit,
    };
    let items = views(&s, s.store.find_objectives(filter).await?).await?;
    Ok(Json(ObjectiveList { count: items.len(), items }))
}

pub async fn get_one(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<ObjectiveView>, ApiError> {
    let o = s.store.get_objective(&super::ids::objective(&s, &id).await?).await?;
    Ok(Json(view(&s, o).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateIn {
    id: String,
    title: Option<String>,
    prompt: Option<String>,
    trigger_type: Option<String>,
    event_key: Option<String>,
    event_filter: Option<String>,
    cron_expr: Option<String>,
    timezone: Option<String>,
    run_at: Option<String>,
    catch_up: Option<String>,
    /// Seconds; 0 recomputes from the schedule.
    next_run_unix: Option<i64>,
    active: Option<bool>,
}

fn audit(actor: &Actor, event: &'static str, id: &ObjectiveId, reason: String) -> NewAudit {
    NewAudit {
        actor: actor.audit_name(None),
        chat: None,
        event,
        decision: Decision::Info,
        reason: Some(reason),
        subject: Some(id.to_string()),
    }
}

async fn load(s: &ApiState, id: &str) -> Result<Objective, ApiError> {
    let id = super::ids::objective(s, &text("id", id, 200)?).await?;
    Ok(s.store.get_objective(&id).await?)
}

/// Applies a partial update, re-validating the merged trigger.
async fn apply(s: &ApiState, actor: &Actor, b: UpdateIn) -> Result<Json<ObjectiveView>, ApiError> {
    let mut o = load(s, &b.id).await?;
    let now = s.clock.now_ms();
    let mut changed = Vec::new();
    if let Some(t) = &b.title {
        o.title = text("title", t, TITLE_MAX)?;
        changed.push("title");
    }
    if let Some(p) = &b.prompt {
        o.prompt = text("prompt", p, PROMPT_MAX)?;
        changed.push("prompt");
    }
    if let Some(c) = catch_up(b.catch_up.as_deref())? {
        o.catch_up = c;
        changed.push("catch_up");
    }
    let type_changed = b.trigger_type.as_deref().is_some_and(|t| !t.trim().eq_ignore_ascii_case(&o.trigger_type));
    let trigger_changed = b.trigger_type.is_some()
        || b.event_key.is_some()
        || b.event_filter.is_some()
        || b.cron_expr.is_some()
        || b.timezone.is_some()
        || b.run_at.is_some();
    // Fields of the old trigger type do not carry over to a new one.
    let keep = |v: Option<String>| if type_changed { None } else { v };
    let trigger = Trigger {
        trigger_type: b.trigger_type.unwrap_or(o.trigger_type.clone()),
        event_key: b.event_key.or(keep(o.event_key.clone())),
        event_filter: b.event_filter.or(keep(o.event_filter.clone())),
        cron_expr: b.cron_expr.or(keep(o.cron_expr.clone())),
        timezone: b.timezone.unwrap_or(o.timezone.clone()),
        run_at: b.run_at.or(keep(o.run_at.map(rfc3339))),
    }
    .check()?;
    if trigger_changed {
        changed.push("trigger");
    }
    let reactivated = b.active == Some(true) && !o.active;
    if let Some(a) = b.active {
        o.active = a;
        changed.push(if a { "active" } else { "paused" });
    }
    if reactivated {
        // Resuming clears an auto-pause's reason (the failure streak stays: it is history).
        o.paused_reason = None;
    }
    let recompute = trigger_changed || reactivated || b.next_run_unix.is_some() || o.next_run_at.is_none() || !o.active;
    if recompute {
        o.next_run_at = next_run(o.active, &trigger, b.next_run_unix.filter(|n| *n != 0), now)?;
    }
    if b.next_run_unix.is_some() {
        changed.push("next_run");
    }
    (o.trigger_type, o.event_key, o.event_filter, o.cron_expr, o.timezone, o.run_at) =
        (trigger.trigger_type, trigger.event_key, trigger.event_filter, trigger.cron_expr, trigger.timezone, trigger.run_at);
    let id = o.id.clone();
    let row = audit(actor, "objective.updated", &id, if changed.is_empty() { "no change".into() } else { changed.join(", ") });
    let saved = s.store.save_objective(o, row, now).await?;
    Ok(Json(view(s, saved).await?))
}

pub async fn update(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    ApiJson(b): ApiJson<UpdateIn>,
) -> Result<Json<ObjectiveView>, ApiError> {
    apply(&s, &actor, b).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveIn {
    id: String,
    active: bool,
}

pub async fn set_active(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    ApiJson(b): ApiJson<ActiveIn>,
) -> Result<Json<ObjectiveView>, ApiError> {
    apply(&s, &actor, UpdateIn { id: b.id, active: Some(b.active), ..UpdateIn::default() }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteIn {
    id: String,
}

pub async fn delete(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    ApiJson(b): ApiJson<DeleteIn>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let o = load(&s, &b.id).await?;
    s.store.delete_objective(&o.id, audit(&actor, "objective.deleted", &o.id, o.title.clone()), s.clock.now_ms()).await?;
    Ok(Json(serde_json::json!({"id": o.id.to_string(), "deleted": true})))
}

/// A run as the API shows it.
#[derive(Debug, Serialize)]
pub struct RunView {
    id: i64,
    objective_id: String,
    scheduled_at_unix: i64,
    fired_at_unix: Option<i64>,
    task_id: Option<String>,
    trigger: &'static str,
    outcome: &'static str,
    duration_ms: Option<i64>,
    error: Option<String>,
    /// The changed path (event runs).
    path: Option<String>,
    finished_at_unix: Option<i64>,
}

impl From<ObjectiveRun> for RunView {
    fn from(r: ObjectiveRun) -> Self {
        RunView {
            id: r.id,
            objective_id: r.objective_id.to_string(),
            scheduled_at_unix: secs(r.scheduled_at),
            fired_at_unix: r.fired_at.map(secs),
            task_id: r.task_id.map(|t| t.to_string()),
            trigger: r.trigger.as_str(),
            outcome: r.outcome.as_str(),
            duration_ms: r.duration_ms,
            error: r.error,
            path: r.detail,
            finished_at_unix: r.finished_at.map(secs),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only runs older than this run id (the previous page's `next_before`).
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct RunList {
    items: Vec<RunView>,
    count: usize,
    /// Pass as `before` for the next (older) page; absent on the last page.
    next_before: Option<i64>,
}

pub async fn runs(State(s): State<ApiState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<RunsQuery>) -> Result<Json<RunList>, ApiError> {
    let id = super::ids::objective(&s, &id).await?;
    s.store.get_objective(&id).await?;
    let limit = page_limit(q.limit, 50, 500)?;
    if q.before.is_some_and(|b| b <= 0) {
        return Err(ApiError::bad_request("before must be a run id (a positive number) from a previous page"));
    }
    let items: Vec<RunView> = s.store.objective_runs(&id, q.before, limit).await?.into_iter().map(RunView::from).collect();
    let next_before = (items.len() == limit as usize).then(|| items.last().map(|r| r.id)).flatten();
    Ok(Json(RunList { count: items.len(), items, next_before }))
}

/// Fires an objective now (operator): a `manual` run with its own run key;
/// the schedule does not move. Works on paused objectives too.
pub async fn run_now(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = super::ids::objective(&s, &text("id", &id, 200)?).await?;
    let o = s.store.get_objective(&id).await?;
    let fired = s.scheduler.run_now(&o.id).await?;
    let task = fired.fired.first().map(|(_, t, _)| t.to_string());
    s.store.audit(vec![audit(&actor, "objective.run_requested", &o.id, o.title.clone())], s.clock.now_ms()).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"objective_id": o.id.to_string(), "trigger": "manual", "task_id": task}))))
}
