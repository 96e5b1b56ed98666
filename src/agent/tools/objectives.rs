//! `create_objective` and `update_objective`: scheduled instructions of the
//! turn's chat (what `/monitor` makes, with the model choosing the words and
//! the schedule).
//!
//! Only chat turns may use them (a task that could create objectives could
//! multiply itself), only on the chat's own objectives, at most once every
//! [`MIN_INTERVAL_MINUTES`] minutes; each change is audited under the
//! person the turn acts for.

use super::{Policy, ToolClass, ToolEnv, ToolError, ToolOutput, TypedTool};
use crate::BoxFuture;
use crate::clock::rfc3339;
use crate::domain::{CatchUp, ObjectiveId, Role, Schedule, TASK_TITLE_MAX, title_from};
use crate::store::{Decision, NewAudit, NewObjective, Objective};
use schemars::JsonSchema;
use serde::Deserialize;

/// The shortest interval between two runs an agent may schedule.
pub const MIN_INTERVAL_MINUTES: i64 = 15;

/// Longest objective prompt.
pub const MAX_PROMPT_BYTES: usize = 8 * 1024;

/// How far the gaps between runs are checked, from the first run: a week
/// holds every weekday's pattern, and the extra day the step from the last
/// day of one week into the next.
const CHECK_SPAN_MS: i64 = 8 * 24 * 3_600_000;

/// Most runs looked at: a span holding more runs than this has a gap shorter
/// than the minimum (pigeonhole), so it is refused without looking further.
const MAX_CHECKED_RUNS: usize = (CHECK_SPAN_MS / (MIN_INTERVAL_MINUTES * 60_000)) as usize + 1;

/// The schedule, checked: parses, and fires no more often than allowed;
/// its first run after `now`.
fn schedule(tool: &'static str, cron: &str, tz: &str, now: i64) -> Result<Option<i64>, ToolError> {
    let s = Schedule::parse(cron, tz).map_err(|reason| ToolError::BadArguments { tool, reason })?;
    let too_often = || ToolError::Refused(format!("{cron:?} runs more often than every {MIN_INTERVAL_MINUTES} minutes"));
    let Some(first) = s.next_after(now) else { return Ok(None) };
    // The span starts at the first run rather than now, so a schedule that
    // only runs on some days of the month (`*/5 * 1 * *`) has a whole day of
    // runs checked, however far away that day is.
    let end = first.saturating_add(CHECK_SPAN_MS);
    let mut prev = first;
    for _ in 0..MAX_CHECKED_RUNS {
        let Some(next) = s.next_after(prev).filter(|n| *n <= end) else { return Ok(Some(first)) };
        if next - prev < MIN_INTERVAL_MINUTES * 60_000 {
            return Err(too_often());
        }
        prev = next;
    }
    Err(too_often())
}

fn audit(env: &ToolEnv, event: &'static str, id: &ObjectiveId, reason: String) -> NewAudit {
    NewAudit {
        actor: env.actor.clone(),
        chat: Some((env.context.chat.connector.clone(), env.context.chat.external_id.clone())),
        event,
        decision: Decision::Info,
        reason: Some(reason),
        subject: Some(id.to_string()),
    }
}

fn failed(e: crate::store::StoreError) -> ToolError {
    ToolError::Failed(format!("the store is unavailable: {e}"))
}

fn describe(o: &Objective) -> String {
    let next = o.next_run_at.map_or_else(|| "-".to_string(), rfc3339);
    let state = if o.active { "active" } else { "paused" };
    format!("Objective {} ({state}): {} — cron `{}` {}; next run {next}", o.id, o.title, o.cron_expr.as_deref().unwrap_or("-"), o.timezone)
}

/// Arguments of `create_objective`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// A short title.
    pub title: String,
    /// What each run should do (it runs on its own, and reports to this chat).
    pub prompt: String,
    /// When: a 5-field cron expression, @hourly, @daily, @weekly or `@every 2h` (default every 6 hours).
    #[serde(default)]
    pub cron_expr: Option<String>,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
}

/// `create_objective`.
pub struct CreateObjective;

impl TypedTool for CreateObjective {
    type Args = CreateArgs;
    const NAME: &'static str = "create_objective";
    const DESCRIPTION: &'static str = "Create a scheduled objective in this chat: its prompt runs on the schedule (at most every 15 minutes) and each result is reported here.";
    const CLASS: ToolClass = ToolClass::Objective;
    const POLICY: Policy = Policy { min_role: Role::Member, in_tasks: false, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: CreateArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let prompt = args.prompt.trim();
            if prompt.is_empty() || prompt.len() > MAX_PROMPT_BYTES {
                return Err(ToolError::BadArguments { tool: Self::NAME, reason: format!("prompt must be 1 to {MAX_PROMPT_BYTES} bytes") });
            }
            let cron = args.cron_expr.unwrap_or_else(|| "0 */6 * * *".to_string());
            let tz = args.timezone.unwrap_or_else(|| "UTC".to_string());
            let now = env.clock.now_ms();
            let next_run_at = schedule(Self::NAME, &cron, &tz, now)?;
            let title =
                if args.title.trim().is_empty() { title_from(prompt, TASK_TITLE_MAX) } else { title_from(&args.title, TASK_TITLE_MAX) };
            let new = NewObjective {
                workspace_id: env.context.workspace_id.clone(),
                context_id: env.context.id.clone(),
                title,
                prompt: prompt.to_string(),
                trigger_type: "schedule".into(),
                event_key: None,
                event_filter: None,
                cron_expr: Some(cron),
                timezone: tz,
                run_at: None,
                catch_up: CatchUp::Latest,
                active: true,
                next_run_at,
                created_by: env.actor.clone(),
            };
            // The store fills in the new objective's id as the audit row's subject.
            let row = NewAudit {
                subject: None,
                ..audit(env, "objective.created", &ObjectiveId::from_string(String::new()), "by the agent".into())
            };
            let o = env.store.create_objective(new, vec![row], now).await.map_err(failed)?;
            Ok(ToolOutput::runtime("create_objective", format!("Created. {}", describe(&o))))
        })
    }
}

/// Arguments of `update_objective`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    /// The objective's id (one of this chat's).
    pub objective_id: String,
    /// A new title.
    #[serde(default)]
    pub title: Option<String>,
    /// A new prompt.
    #[serde(default)]
    pub prompt: Option<String>,
    /// A new schedule (cron, @daily, `@every 2h`).
    #[serde(default)]
    pub cron_expr: Option<String>,
    /// A new time zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Pause (false) or resume (true).
    #[serde(default)]
    pub active: Option<bool>,
}

/// `update_objective`.
pub struct UpdateObjective;

impl TypedTool for UpdateObjective {
    type Args = UpdateArgs;
    const NAME: &'static str = "update_objective";
    const DESCRIPTION: &'static str = "Change, pause or resume one of this chat's scheduled objectives.";
    const CLASS: ToolClass = ToolClass::Objective;
    const POLICY: Policy = Policy { min_role: Role::Member, in_tasks: false, approval: false };

    fn run<'a>(&'a self, env: &'a ToolEnv, args: UpdateArgs) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let nothing = args.title.is_none()
                && args.prompt.is_none()
                && args.cron_expr.is_none()
                && args.timezone.is_none()
                && args.active.is_none();
            if nothing {
                return Err(ToolError::BadArguments {
                    tool: Self::NAME,
                    reason: "give at least one of title, prompt, cron_expr, timezone, active".into(),
                });
            }
            let id = ObjectiveId::from_string(args.objective_id.trim().to_string());
            let mut o = match env.store.get_objective(&id).await {
                Ok(o) if o.context_id == env.context.id => o,
                Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {
                    return Err(ToolError::Failed(format!("no objective {} in this chat", args.objective_id.trim())));
                }
                Err(e) => return Err(failed(e)),
            };
            if o.trigger_type != "schedule" && (args.cron_expr.is_some() || args.timezone.is_some()) {
                return Err(ToolError::Refused(format!("{} is not a scheduled objective; its trigger is changed by an operator", o.id)));
            }
            let mut changed = Vec::new();
            if let Some(t) = &args.title {
                o.title = title_from(t, TASK_TITLE_MAX);
                changed.push("title");
            }
            if let Some(p) = &args.prompt {
                let p = p.trim();
                if p.is_empty() || p.len() > MAX_PROMPT_BYTES {
                    return Err(ToolError::BadArguments {
                        tool: Self::NAME,
                        reason: format!("prompt must be 1 to {MAX_PROMPT_BYTES} bytes"),
                    });
                }
                o.prompt = p.to_string();
                changed.push("prompt");
            }
            let now = env.clock.now_ms();
            let reschedule = args.cron_expr.is_some() || args.timezone.is_some() || args.active == Some(true);
            if let Some(c) = args.cron_expr {
                o.cron_expr = Some(c);
                changed.push("schedule");
            }
            if let Some(tz) = args.timezone {
                o.timezone = tz;
                changed.push("timezone");
            }
            if let Some(a) = args.active {
                if a && !o.active {
                    o.paused_reason = None;
                }
                o.active = a;
                changed.push(if a { "active" } else { "paused" });
            }
            if o.trigger_type == "schedule" && reschedule {
                o.next_run_at = schedule(Self::NAME, o.cron_expr.as_deref().unwrap_or_default(), &o.timezone, now)?;
            }
            if !o.active {
                o.next_run_at = None;
            }
            let row = audit(env, "objective.updated", &id, format!("by the agent: {}", changed.join(", ")));
            let saved = env.store.save_objective(o, row, now).await.map_err(failed)?;
            Ok(ToolOutput::runtime("update_objective", format!("Updated. {}", describe(&saved))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).expect("time").timestamp_millis()
    }

    fn check(cron: &str, tz: &str, now: &str) -> Result<Option<i64>, ToolError> {
        schedule("create_objective", cron, tz, at(now))
    }

    fn refused(cron: &str, tz: &str, now: &str) -> bool {
        match check(cron, tz, now) {
            Err(ToolError::Refused(reason)) => reason.contains("more often than every 15 minutes"),
            other => panic!("{cron}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn schedules_no_tighter_than_fifteen_minutes_are_accepted_with_their_first_run() {
        // 2026-12-02 is a Wednesday.
        let now = "2026-12-02T10:17:00Z";
        assert_eq!(check("*/15 * * * *", "UTC", now).expect("*/15"), Some(at("2026-12-02T10:30:00Z")));
        assert_eq!(check("0 9 * * 1-5", "UTC", now).expect("weekdays"), Some(at("2026-12-03T09:00:00Z")));
        for cron in ["0 */6 * * *", "@hourly", "@every 15m", "0,30 9-17 * * *", "0 9 1 * *"] {
            assert!(check(cron, "UTC", now).is_ok(), "{cron}");
        }
        // Every 15 minutes by the real clock through the autumn change in Berlin (25 October 2026).
        assert!(check("*/15 * * * *", "Europe/Berlin", "2026-10-24T12:00:00Z").is_ok());
    }

    #[test]
    fn schedules_tighter_than_fifteen_minutes_anywhere_in_the_week_are_refused() {
        // Regression: only the first three runs were checked, and from 10:00
        // those are 10:15, 10:30, 10:45 — the minute-by-minute runs after them were not.
        assert!(refused("0,15,30,45-59 * * * *", "UTC", "2026-12-02T10:00:00Z"));
        assert!(refused("*/5 * * * *", "UTC", "2026-12-02T10:17:00Z"));
        assert!(refused("@every 10m", "UTC", "2026-12-02T10:17:00Z"));
        // Tight on Wednesdays only, seen from a Thursday.
        assert!(refused("0,5 9 * * 3", "UTC", "2026-12-03T10:00:00Z"));
        // Tight only from Tuesday 23:55 to Wednesday 00:00; from Wednesday
        // 01:00 the first runs (Wed 23:00, Wed 23:55, Tue 00:00) are far apart.
        assert!(refused("0,55 0,23 * * 2,3", "UTC", "2026-12-02T01:00:00Z"));
        // Every 5 minutes on the 1st only: the first run is four weeks away.
        assert!(refused("*/5 * 1 * *", "UTC", "2026-12-02T10:17:00Z"));
    }

    #[test]
    fn a_bad_schedule_names_the_tool_that_was_called() {
        let e = schedule("update_objective", "61 * * * *", "UTC", 0).expect_err("bad");
        assert!(matches!(&e, ToolError::BadArguments { tool: "update_objective", reason } if reason.contains("minute")), "{e}");
    }
}
