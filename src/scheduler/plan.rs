//! What to do with a due objective: pure functions from an objective, the
//! time and the policy to a [`FirePlan`] the store applies in one
//! transaction. Every due time ends up in the plan — fired, or skipped
//! with the reason — so nothing is skipped silently.

use crate::clock::{UnixMillis, rfc3339};
use crate::domain::{CatchUp, RunTrigger, Schedule};
use crate::store::{FirePlan, Objective, PlannedRun};
use std::collections::VecDeque;

/// Most due times of one objective recorded one by one in a pass; older
/// ones are summed up in one skipped row.
pub const MAX_ROWS: usize = 10_000;

/// Most due times enumerated in a pass (an every-minute schedule down for
/// about two years); beyond, the schedule restarts from now.
const MAX_SCAN: usize = 1_000_000;

/// The scheduler's settings that shape plans.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A time fired later than this after it was due counts as missed.
    pub grace_ms: i64,
    /// Most missed times `catch_up=all` fires.
    pub catch_up_max: usize,
}

/// The plan for a due `schedule` or `once` objective (its `next_run_at` ≤ `now`).
pub fn due(o: &Objective, now: UnixMillis, policy: Policy) -> FirePlan {
    let first = o.next_run_at.unwrap_or(now);
    let mut plan = FirePlan {
        objective_id: o.id.clone(),
        expect_next: o.next_run_at,
        runs: Vec::new(),
        next_run_at: None,
        deactivate: false,
        event: None,
    };
    if o.trigger_type == "once" {
        plan.deactivate = true;
        plan.runs = classify(VecDeque::from([first]), None, now, o.catch_up, policy);
        return plan;
    }
    let schedule = match Schedule::parse(o.cron_expr.as_deref().unwrap_or_default(), &o.timezone) {
        Ok(s) => s,
        Err(e) => {
            // Validated when stored; a time zone database change can still break it.
            tracing::warn!(objective = %o.id, error = %e, "objective schedule no longer parses; it will not fire until fixed");
            plan.runs =
                vec![PlannedRun { scheduled_at: first, trigger: RunTrigger::Schedule, skip: Some(format!("schedule is invalid: {e}")) }];
            return plan;
        }
    };
    let mut times = VecDeque::from([first]);
    let mut dropped: Option<(UnixMillis, UnixMillis, usize)> = None;
    let mut at = first;
    let mut scanned = 1;
    while let Some(next) = schedule.next_after(at).filter(|n| *n <= now) {
        scanned += 1;
        if scanned > MAX_SCAN {
            break;
        }
        times.push_back(next);
        if times.len() > MAX_ROWS
            && let Some(old) = times.pop_front()
        {
            dropped = Some(match dropped {
                None => (old, old, 1),
                Some((a, _, n)) => (a, old, n + 1),
            });
        }
        at = next;
    }
    plan.next_run_at = schedule.next_after(now.max(at));
    plan.runs = classify(times, dropped, now, o.catch_up, policy);
    plan
}

/// Decides, for due times (oldest first), which fire and which are skipped.
fn classify(
    times: VecDeque<UnixMillis>,
    dropped: Option<(UnixMillis, UnixMillis, usize)>,
    now: UnixMillis,
    catch_up: CatchUp,
    policy: Policy,
) -> Vec<PlannedRun> {
    let mut runs = Vec::with_capacity(times.len() + 1);
    if let Some((first, last, n)) = dropped {
        runs.push(PlannedRun {
            scheduled_at: first,
            trigger: RunTrigger::CatchUp,
            skip: Some(format!(
                "missed while the runtime was down: this and {} more times up to {} (too many to list one by one)",
                n - 1,
                rfc3339(last)
            )),
        });
    }
    let Some(&latest) = times.back() else { return runs };
    let on_time = now - latest <= policy.grace_ms;
    let missed: Vec<UnixMillis> = times.iter().copied().filter(|t| !(on_time && *t == latest)).collect();
    let fire_missed: Vec<UnixMillis> = match catch_up {
        CatchUp::None => Vec::new(),
        // The newest due time fires; when it is on time, it is the scheduled run itself.
        CatchUp::Latest if on_time => Vec::new(),
        CatchUp::Latest => missed.last().copied().into_iter().collect(),
        CatchUp::All => missed.iter().rev().take(policy.catch_up_max).copied().collect(),
    };
    for t in missed {
        let skip = if fire_missed.contains(&t) {
            None
        } else {
            Some(match catch_up {
                CatchUp::None => "missed while the runtime was down; catch_up is none".to_string(),
                CatchUp::Latest => format!("missed while the runtime was down; catch_up is latest and {} fired instead", rfc3339(latest)),
                CatchUp::All => {
                    format!("missed while the runtime was down; more than {} missed times (the catch-up limit)", policy.catch_up_max)
                }
            })
        };
        runs.push(PlannedRun { scheduled_at: t, trigger: RunTrigger::CatchUp, skip });
    }
    if on_time {
        runs.push(PlannedRun { scheduled_at: latest, trigger: RunTrigger::Schedule, skip: None });
    }
    runs
}

/// A manual run now: its own run key, the schedule untouched.
pub fn manual(o: &Objective, now: UnixMillis) -> FirePlan {
    FirePlan {
        objective_id: o.id.clone(),
        expect_next: None,
        runs: vec![PlannedRun { scheduled_at: now, trigger: RunTrigger::Manual, skip: None }],
        next_run_at: None,
        deactivate: false,
        event: None,
    }
}

/// An event run for a changed path, deduplicated per path within `dedupe_ms`.
pub fn event(o: &Objective, path: &str, now: UnixMillis, dedupe_ms: i64) -> FirePlan {
    FirePlan {
        objective_id: o.id.clone(),
        expect_next: None,
        runs: vec![PlannedRun { scheduled_at: now, trigger: RunTrigger::Event, skip: None }],
        next_run_at: None,
        deactivate: false,
        event: Some((path.to_string(), now - dedupe_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ContextId, ObjectiveId, WorkspaceId};

    fn objective(cron: &str, next: UnixMillis, catch_up: CatchUp) -> Objective {
        Objective {
            id: ObjectiveId::from_string("obj_t".to_string()),
            workspace_id: WorkspaceId::from_string("ws".to_string()),
            context_id: ContextId::from_string("ctx".to_string()),
            title: "t".into(),
            prompt: "p".into(),
            trigger_type: "schedule".into(),
            event_key: None,
            event_filter: None,
            cron_expr: Some(cron.into()),
            timezone: "UTC".into(),
            run_at: None,
            catch_up,
            active: true,
            next_run_at: Some(next),
            last_run_at: None,
            last_error: None,
            paused_reason: None,
            run_count: 0,
            success_count: 0,
            failure_count: 0,
            consecutive_failures: 0,
            consecutive_successes: 0,
            total_run_ms: 0,
            last_success_at: None,
            last_failure_at: None,
            recent_errors: Vec::new(),
            created_by: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    const H: i64 = 3_600_000;
    const POLICY: Policy = Policy { grace_ms: 60_000, catch_up_max: 2 };

    fn summary(p: &FirePlan) -> Vec<(i64, &'static str, bool)> {
        p.runs.iter().map(|r| (r.scheduled_at / H, r.trigger.as_str(), r.skip.is_none())).collect()
    }

    #[test]
    fn an_on_time_fire_is_one_scheduled_run() {
        let p = due(&objective("0 * * * *", 10 * H, CatchUp::Latest), 10 * H + 500, POLICY);
        assert_eq!(summary(&p), [(10, "schedule", true)]);
        assert_eq!(p.next_run_at, Some(11 * H));
        assert_eq!(p.expect_next, Some(10 * H));
    }

    #[test]
    fn a_three_hour_gap_is_accounted_for_by_each_policy() {
        // Down from 09:30 to 12:30: 10:00, 11:00 and 12:00 were missed.
        let now = 12 * H + H / 2;
        let latest = due(&objective("0 * * * *", 10 * H, CatchUp::Latest), now, POLICY);
        assert_eq!(summary(&latest), [(10, "catch_up", false), (11, "catch_up", false), (12, "catch_up", true)]);
        let all = due(&objective("0 * * * *", 10 * H, CatchUp::All), now, POLICY);
        assert_eq!(summary(&all), [(10, "catch_up", false), (11, "catch_up", true), (12, "catch_up", true)], "limit 2: newest two");
        let none = due(&objective("0 * * * *", 10 * H, CatchUp::None), now, POLICY);
        assert_eq!(summary(&none), [(10, "catch_up", false), (11, "catch_up", false), (12, "catch_up", false)]);
        for p in [&latest, &all, &none] {
            assert_eq!(p.next_run_at, Some(13 * H));
            assert!(p.runs.iter().filter(|r| r.skip.is_some()).all(|r| r.skip.as_deref().is_some_and(|s| s.contains("missed"))));
        }
        // Back just after 12:00: that one is on time, the older ones are caught up.
        let back = due(&objective("0 * * * *", 10 * H, CatchUp::Latest), 12 * H + 1000, POLICY);
        assert_eq!(summary(&back), [(10, "catch_up", false), (11, "catch_up", false), (12, "schedule", true)]);
        let back = due(&objective("0 * * * *", 10 * H, CatchUp::All), 12 * H + 1000, POLICY);
        assert_eq!(summary(&back), [(10, "catch_up", true), (11, "catch_up", true), (12, "schedule", true)]);
    }

    #[test]
    fn once_fires_once_and_deactivates() {
        let mut o = objective("", 5 * H, CatchUp::Latest);
        o.trigger_type = "once".into();
        o.cron_expr = None;
        let p = due(&o, 5 * H + 10, POLICY);
        assert_eq!(summary(&p), [(5, "schedule", true)]);
        assert!(p.deactivate);
        o.catch_up = CatchUp::None;
        let late = due(&o, 8 * H, POLICY);
        assert_eq!(summary(&late), [(5, "catch_up", false)], "missed and catch_up none: recorded skipped");
    }

    #[test]
    fn a_very_long_gap_is_summed_up_not_lost() {
        let p = due(&objective("* * * * *", 0, CatchUp::None), 20_000 * 60_000, POLICY);
        assert_eq!(p.runs.len(), MAX_ROWS + 1);
        let first = &p.runs[0];
        assert!(first.skip.as_deref().is_some_and(|s| s.contains("more times")), "{:?}", first.skip);
        assert_eq!(p.next_run_at, Some(20_001 * 60_000));
    }
}
