//! The scheduler: fires objectives on time, once per scheduled time, and
//! records every time it fired or skipped.
//!
//! Two loops. The *time loop* sleeps on the injected clock until the
//! earliest `next_run_at` of an active objective (no polling interval; at
//! most [`crate::clock::MAX_SLEEP`] of the real clock before it reads the
//! wall clock again), and is woken at once by the store after any objective
//! is created, changed or deleted ([`Store::objective_changed`]), so a new
//! or changed objective is planned with no delay whoever changed it (API,
//! chat, CLI). It does not subscribe to the event stream: that would wake
//! it for every task event and keep the live ring of events filled. Due objectives are planned
//! ([`plan::due`]) and applied by the orchestrator in one transaction per
//! batch: the tasks (run key `objective:<id>:<scheduled unix>`, so one task
//! per scheduled time, ever), the run rows and the next run. The *event
//! loop* turns workspace changes ([`crate::workspace::WorkspaceChange`])
//! into runs of the matching event objectives.
//!
//! Invariant: a plan carries the `next_run_at` it was made from and the
//! store drops it if the objective changed meanwhile, so a pause, an edit or
//! a delete racing a fire never fires a stale schedule.

pub mod plan;

use crate::clock::SharedClock;
use crate::config::SchedulerConfig;
use crate::domain::{Glob, ObjectiveId};
use crate::health::Health;
use crate::orchestrator::OrchestratorHandle;
use crate::store::{FirePlan, FireResult, Objective, Store, StoreError};
use crate::workspace::{ChangeKind, WorkspaceChange};
use plan::Policy;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Health component of the scheduler.
pub const COMPONENT: &str = "scheduler";

/// Due objectives planned per batch (one transaction).
const BATCH: u32 = 500;

/// The time loop beats at least this often.
const BEAT: Duration = Duration::from_secs(30);

/// The event key the workspace watcher fires.
pub const MARKDOWN_UPDATED: &str = "markdown.updated";

/// Fires objectives; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    store: Store,
    orchestrator: OrchestratorHandle,
    clock: SharedClock,
    config: SchedulerConfig,
    health: Option<Health>,
}

impl Scheduler {
    /// A scheduler over these parts.
    pub fn new(store: Store, orchestrator: OrchestratorHandle, clock: SharedClock, config: SchedulerConfig) -> Self {
        Self { store, orchestrator, clock, config, health: None }
    }

    /// Reports to `health` as component `scheduler`.
    pub fn with_health(mut self, health: Health) -> Self {
        health.register_periodic(COMPONENT, BEAT);
        self.health = Some(health);
        self
    }

    fn policy(&self) -> Policy {
        Policy { grace_ms: self.config.misfire_grace.as_millis() as i64, catch_up_max: self.config.catch_up_max }
    }

    /// Plans and fires everything due now; returns how many tasks were queued.
    pub async fn fire_due(&self) -> Result<usize, StoreError> {
        let mut queued = 0;
        loop {
            let now = self.clock.now_ms();
            let due = self.store.due_objectives(now, BATCH).await?;
            let n = due.len();
            if n == 0 {
                return Ok(queued);
            }
            let plans: Vec<FirePlan> = due.iter().map(|o| plan::due(o, now, self.policy())).collect();
            let results = self.orchestrator.fire_objectives(plans).await?;
            queued += record(&due, &results);
            if n < BATCH as usize {
                return Ok(queued);
            }
        }
    }

    /// Fires `id` now (an operator's "run now"): its own run key, the
    /// schedule untouched. Returns the result (its one fired task).
    pub async fn run_now(&self, id: &ObjectiveId) -> Result<FireResult, StoreError> {
        let o = self.store.get_objective(id).await?;
        let plan = plan::manual(&o, self.clock.now_ms());
        let results = self.orchestrator.fire_objectives(vec![plan]).await?;
        record(std::slice::from_ref(&o), &results);
        results.into_iter().next().ok_or(StoreError::NotFound("objective"))
    }

    /// Fires the event objectives a workspace change matches; returns how many tasks were queued.
    pub async fn on_change(&self, change: &WorkspaceChange) -> Result<usize, StoreError> {
        if change.kind == ChangeKind::Removed || !is_markdown(&change.rel_path) {
            return Ok(0);
        }
        let objectives = self.store.event_objectives(&change.workspace_id, MARKDOWN_UPDATED).await?;
        let matching: Vec<Objective> = objectives
            .into_iter()
            .filter(|o| match o.event_filter.as_deref() {
                None | Some("") => true,
                Some(g) => Glob::parse(g).is_ok_and(|g| g.matches(&change.rel_path)),
            })
            .collect();
        if matching.is_empty() {
            return Ok(0);
        }
        let (now, window) = (self.clock.now_ms(), self.config.event_dedupe.as_millis() as i64);
        let plans = matching.iter().map(|o| plan::event(o, &change.rel_path, now, window)).collect();
        let results = self.orchestrator.fire_objectives(plans).await?;
        let deduped = results.iter().filter(|r| r.deduped).count() as u64;
        if deduped > 0 {
            crate::metrics::metrics().objective_skipped("event_dedupe", deduped);
        }
        Ok(record(&matching, &results))
    }

    /// The time loop (see the module docs); returns when `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let wait_until = match self.fire_due().await {
                Ok(_) => {
                    failures = 0;
                    self.beat();
                    match self.store.next_objective_due().await {
                        Ok(next) => next.unwrap_or(i64::MAX).min(self.clock.now_ms() + BEAT.as_millis() as i64),
                        Err(e) => self.failed(&mut failures, &e),
                    }
                }
                Err(e) => self.failed(&mut failures, &e),
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.clock.sleep_until(wait_until) => {}
                _ = self.store.objective_changed() => {}
            }
        }
    }

    /// The event loop: runs until the change channel closes or `stop` fires.
    pub async fn run_events(self, mut changes: broadcast::Receiver<WorkspaceChange>, stop: CancellationToken) {
        loop {
            let change = tokio::select! {
                _ = stop.cancelled() => return,
                c = changes.recv() => c,
            };
            match change {
                Ok(change) => {
                    if let Err(e) = self.on_change(&change).await {
                        tracing::warn!(error = %e, path = %change.rel_path, "could not fire event objectives for a workspace change");
                        if let Some(h) = &self.health {
                            h.degrade(COMPONENT, format!("event objectives: {e}"));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the scheduler fell behind the workspace watcher; some changes fired no event objective");
                    crate::metrics::metrics().objective_skipped("event_lagged", n);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn beat(&self) {
        if let Some(h) = &self.health {
            h.beat(COMPONENT);
        }
    }

    /// Degrades the component; returns when to try again (1, 2, 4 … 30 s).
    fn failed(&self, failures: &mut u32, e: &StoreError) -> i64 {
        *failures = failures.saturating_add(1);
        tracing::warn!(error = %e, "scheduler pass failed; retrying");
        if let Some(h) = &self.health {
            h.degrade(COMPONENT, format!("cannot fire objectives: {e}"));
        }
        let wait = 1000i64.saturating_mul(1 << (*failures - 1).min(5)).min(30_000);
        self.clock.now_ms() + wait
    }
}

/// Metrics and logs for what plans did; returns how many tasks were queued.
fn record(objectives: &[Objective], results: &[FireResult]) -> usize {
    let m = crate::metrics::metrics();
    let mut queued = 0;
    for (o, r) in objectives.iter().zip(results) {
        for (trigger, task, lag) in &r.fired {
            m.objective_fired(trigger.as_str(), *lag);
            tracing::info!(objective = %o.id, task = %task, trigger = trigger.as_str(), lag_ms = lag, "objective fired");
            queued += 1;
        }
        if r.skipped > 0 {
            m.objective_skipped("missed", r.skipped as u64);
            tracing::warn!(objective = %o.id, skipped = r.skipped, catch_up = o.catch_up.as_str(), "objective times missed while the runtime was down were recorded as skipped");
        }
        if r.stale {
            tracing::debug!(objective = %o.id, "objective changed while being fired; planned again");
        }
    }
    queued
}

/// Whether a path is a markdown document (`.md`, `.markdown`, any case).
pub fn is_markdown(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".md") || lower.ends_with(".markdown")
}
