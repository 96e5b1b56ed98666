//! Objectives, on the Go runtime's paths: `POST /api/v1/objectives`
//! (create), `GET /api/v1/objectives` (list), `POST /api/v1/objectives/update`
//! (partial update), `/active` (pause or resume), `/delete`; plus
//! `GET /api/v1/objectives/{id}`. Schedules are validated (cron or
//! descriptor, IANA time zone) and the next run computed; every rejection
//! names the field. Unknown ids are 404 (the Go runtime answered 400).

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiQuery, page_limit};
use super::tls::Caller;
use crate::domain::{Actor, ContextId, ObjectiveId, Schedule, WorkspaceId, check_timezone};
use crate::store::{Decision, NewAudit, NewObjective, Objective, ObjectiveFilter};
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

/// An objective as the API shows it (the Go runtime's field names).
#[derive(Debug, Serialize)]
pub struct ObjectiveView {
    id: String,
    workspace_id: String,
    context_id: String,
    title: String,
    prompt: String,
    trigger_type: String,
    event_key: String,
    cron_expr: String,
    timezone: String,
    active: bool,
    next_run_unix: Option<i64>,
    last_run_unix: Option<i64>,
    last_error: String,
    /// `paused`, `degraded` (last firing failed) or `healthy`.
    health_state: &'static str,
    /// The next fire times (schedules only).
    next_runs_unix: Vec<i64>,
    created_by: Option<String>,
    created_at_unix: i64,
    updated_at_unix: i64,
}

impl ObjectiveView {
    fn new(o: Objective, now: i64) -> Self {
        let next_runs_unix = match (&o.cron_expr, o.trigger_type.as_str()) {
            (Some(expr), "schedule") => Schedule::parse(expr, &o.timezone)
                .map(|s| s.upcoming(o.next_run_at.map_or(now, |n| n - 1), UPCOMING).into_iter().map(secs).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let health_state = match (o.active, &o.last_error) {
            (false, _) => "paused",
            (true, Some(e)) if !e.is_empty() => "degraded",
            _ => "healthy",
        };
        ObjectiveView {
            id: o.id.to_string(),
            workspace_id: o.workspace_id.to_string(),
            context_id: o.context_id.to_string(),
            title: o.title,
            prompt: o.prompt,
            trigger_type: o.trigger_type,
            event_key: o.event_key.unwrap_or_default(),
            cron_expr: o.cron_expr.unwrap_or_default(),
            timezone: o.timezone,
            active: o.active,
            next_run_unix: o.next_run_at.map(secs),
            last_run_unix: o.last_run_at.map(secs),
            last_error: o.last_error.unwrap_or_default(),
            health_state,
            next_runs_unix,
            created_by: o.created_by,
            created_at_unix: secs(o.created_at),
            updated_at_unix: secs(o.updated_at),
        }
    }
}

/// The trigger part of an objective, checked together.
struct Trigger {
    trigger_type: String,
    event_key: Option<String>,
    cron_expr: Option<String>,
    timezone: String,
}

impl Trigger {
    /// Validates and normalises; returns the schedule for schedule triggers.
    fn check(mut self) -> Result<(Trigger, Option<Schedule>), ApiError> {
        self.timezone = self.timezone.trim().to_string();
        match self.trigger_type.trim() {
            "schedule" => {
                let expr = self.cron_expr.as_deref().map(str::trim).filter(|e| !e.is_empty());
                let expr = expr.ok_or_else(|| ApiError::bad_request("cron_expr is required for a schedule objective"))?;
                let schedule = Schedule::parse(expr, &self.timezone).map_err(ApiError::bad_request)?;
                let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
                Ok((
                    Trigger { trigger_type: "schedule".into(), event_key: None, cron_expr: Some(expr), timezone: self.timezone },
                    Some(schedule),
                ))
            }
            "event" => {
                let key = self.event_key.as_deref().map(|k| k.trim().to_ascii_lowercase()).filter(|k| !k.is_empty());
                let key =
                    key.ok_or_else(|| ApiError::bad_request("event_key is required for an event objective (e.g. markdown.updated)"))?;
                if key.len() > 64 || !key.chars().all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c)) {
                    return Err(ApiError::bad_request("event_key must be at most 64 characters of a-z, 0-9, '.', '_', '-', ':'"));
                }
                check_timezone(&self.timezone).map_err(ApiError::bad_request)?;
                Ok((Trigger { trigger_type: "event".into(), event_key: Some(key), cron_expr: None, timezone: self.timezone }, None))
            }
            other => Err(ApiError::bad_request(format!("trigger_type must be schedule or event, not {other:?}"))),
        }
    }
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
/// fire time; none while paused or for event objectives.
fn next_run(active: bool, schedule: Option<&Schedule>, explicit: Option<i64>, now: i64) -> Result<Option<i64>, ApiError> {
    if !active {
        return Ok(None);
    }
    match (schedule, explicit) {
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
    cron_expr: Option<String>,
    timezone: Option<String>,
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
    let (trigger, schedule) = Trigger {
        trigger_type: b.trigger_type.unwrap_or_else(|| "schedule".into()),
        event_key: b.event_key,
        cron_expr: b.cron_expr,
        timezone: b.timezone.unwrap_or_else(|| "UTC".into()),
    }
    .check()?;
    let ctx = match s.store.get_context(&ContextId::from_string(context_id.clone())).await {
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
    let new = NewObjective {
        workspace_id: ctx.workspace_id.clone(),
        context_id: ctx.id.clone(),
        title,
        prompt,
        trigger_type: trigger.trigger_type,
        event_key: trigger.event_key,
        cron_expr: trigger.cron_expr,
        timezone: trigger.timezone,
        active,
        next_run_at: next_run(active, schedule.as_ref(), b.next_run_unix, now)?,
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
    Ok((StatusCode::CREATED, Json(ObjectiveView::new(o, now))))
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
    let now = s.clock.now_ms();
    let items: Vec<ObjectiveView> = s.store.find_objectives(filter).await?.into_iter().map(|o| ObjectiveView::new(o, now)).collect();
    Ok(Json(ObjectiveList { count: items.len(), items }))
}

pub async fn get_one(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<ObjectiveView>, ApiError> {
    let o = s.store.get_objective(&ObjectiveId::from_string(id)).await?;
    Ok(Json(ObjectiveView::new(o, s.clock.now_ms())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateIn {
    id: String,
    title: Option<String>,
    prompt: Option<String>,
    trigger_type: Option<String>,
    event_key: Option<String>,
    cron_expr: Option<String>,
    timezone: Option<String>,
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
    let id = text("id", id, 200)?;
    Ok(s.store.get_objective(&ObjectiveId::from_string(id)).await?)
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
    let trigger_changed = b.trigger_type.is_some() || b.event_key.is_some() || b.cron_expr.is_some() || b.timezone.is_some();
    let (trigger, schedule) = Trigger {
        trigger_type: b.trigger_type.unwrap_or(o.trigger_type.clone()),
        event_key: b.event_key.or(o.event_key.clone()),
        cron_expr: b.cron_expr.or(o.cron_expr.clone()),
        timezone: b.timezone.unwrap_or(o.timezone.clone()),
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
    let recompute = trigger_changed || reactivated || b.next_run_unix.is_some() || o.next_run_at.is_none() || !o.active;
    if recompute {
        o.next_run_at = next_run(o.active, schedule.as_ref(), b.next_run_unix.filter(|n| *n != 0), now)?;
    }
    if b.next_run_unix.is_some() {
        changed.push("next_run");
    }
    (o.trigger_type, o.event_key, o.cron_expr, o.timezone) = (trigger.trigger_type, trigger.event_key, trigger.cron_expr, trigger.timezone);
    let id = o.id.clone();
    let row = audit(actor, "objective.updated", &id, if changed.is_empty() { "no change".into() } else { changed.join(", ") });
    let saved = s.store.save_objective(o, row, now).await?;
    Ok(Json(ObjectiveView::new(saved, now)))
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
