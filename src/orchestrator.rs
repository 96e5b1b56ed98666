//! The durable task queue and worker pool. Tasks are rows before anyone hears
//! of them; workers claim them under a lease they renew; a task whose worker
//! died is claimed again once its lease runs out; outcomes are recorded
//! honestly (a failed run is never `succeeded`).
//!
//! Invariants: every claim, finish and retry goes through the store's
//! worker-scoped methods; no executor result is recorded without the lease.

mod notice;
mod worker;

pub use notice::render_notice;
pub use worker::{Pool, spawn_pool};

use crate::BoxFuture;
use crate::clock::SharedClock;
use crate::config::{NotifyConfig, OrchestratorConfig};
use crate::domain::{NewTask, Task, TaskId, TaskKind};
use crate::store::{CancelOutcome, Enqueued, Notifier, RetryPolicy, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What an executor gets for one attempt.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// The task as claimed (attempts already counts this attempt).
    pub task: Task,
    /// Fires when the task is canceled or the lease is lost; executors that
    /// run long should stop early when it does.
    pub cancel: CancellationToken,
}

/// A successful attempt.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Short result for lists and notices.
    pub summary: String,
    /// Workspace-relative path of the full result, if one was written.
    pub result_path: Option<String>,
}

/// A failed attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ExecError {
    /// What went wrong, for the task's `error` and the failure notice.
    pub message: String,
    /// Whether another attempt may succeed (timeouts, 429, 5xx).
    pub retryable: bool,
    /// Not a failure: the attempt could not run now (the kill switch is
    /// on); the task goes back to the queue and the attempt does not count.
    pub released: bool,
}

impl ExecError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true, released: false }
    }
    /// A failure that will not go away by retrying.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false, released: false }
    }
    /// An attempt that could not run now: the task goes back to the queue,
    /// the attempt not counted (the model is paused).
    pub fn released(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true, released: true }
    }
}

/// Runs tasks of one kind. Later issues add kinds by adding executors.
pub trait Executor: Send + Sync + 'static {
    /// Runs one attempt.
    fn execute(&self, ctx: ExecContext) -> BoxFuture<'_, Result<ExecOutput, ExecError>>;
}

/// Executors by task kind.
#[derive(Clone, Default)]
pub struct Executors(HashMap<TaskKind, Arc<dyn Executor>>);

impl Executors {
    /// Registers the executor for `kind` (replacing any earlier one).
    pub fn with(mut self, kind: TaskKind, exec: Arc<dyn Executor>) -> Self {
        self.0.insert(kind, exec);
        self
    }
    fn get(&self, kind: TaskKind) -> Option<Arc<dyn Executor>> {
        self.0.get(&kind).cloned()
    }
}

/// The executor for [`TaskKind::Noop`]: succeeds at once.
#[derive(Debug, Default)]
pub struct NoopExecutor;

impl Executor for NoopExecutor {
    fn execute(&self, _ctx: ExecContext) -> BoxFuture<'_, Result<ExecOutput, ExecError>> {
        Box::pin(async { Ok(ExecOutput { summary: "done".into(), result_path: None }) })
    }
}

/// A cloneable handle for submitting and canceling tasks.
#[derive(Clone)]
pub struct OrchestratorHandle {
    store: Store,
    clock: SharedClock,
    config: OrchestratorConfig,
    notify: NotifyConfig,
    work_ready: Arc<Notify>,
    outbox_ready: Arc<Notify>,
    running: Arc<Mutex<HashMap<TaskId, CancellationToken>>>,
    health: Option<crate::health::Health>,
    switch: Option<crate::budget::Switch>,
}

impl OrchestratorHandle {
    /// A handle over `store`; `outbox_ready` is poked whenever notices were queued.
    pub fn new(store: Store, clock: SharedClock, config: OrchestratorConfig, notify: NotifyConfig, outbox_ready: Arc<Notify>) -> Self {
        Self {
            store,
            clock,
            config,
            notify,
            work_ready: Arc::new(Notify::new()),
            outbox_ready,
            running: Arc::default(),
            health: None,
            switch: None,
        }
    }

    /// Reports the pool's health (component `orchestrator`, a beat per
    /// lease-recovery pass) to `health`.
    pub fn with_health(mut self, health: crate::health::Health) -> Self {
        health.register_periodic("orchestrator", (self.config.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(5)));
        self.health = Some(health);
        self
    }

    /// Leaves tasks that call the model in the queue while `switch` is on.
    pub fn with_switch(mut self, switch: crate::budget::Switch) -> Self {
        self.switch = Some(switch);
        self
    }

    /// Whether the pool leaves tasks that call the model in the queue now.
    fn model_paused(&self) -> bool {
        self.switch.as_ref().is_some_and(crate::budget::Switch::is_paused)
    }

    /// Wakes the pool to claim work queued without [`OrchestratorHandle::submit`]
    /// (the follow-up task the store queues when an approval is decided).
    pub fn wake(&self) {
        self.work_ready.notify_one();
    }

    /// Persists a task (idempotent by run key) and wakes a worker. The task
    /// is durable when this returns.
    pub async fn submit(&self, task: NewTask) -> Result<Enqueued, StoreError> {
        let out = self.store.enqueue_task(task, self.config.max_attempts, self.clock.now_ms()).await?;
        if out.created {
            self.work_ready.notify_one();
        }
        Ok(out)
    }

    /// Applies the scheduler's plans (one transaction: tasks, run rows, next
    /// runs) and wakes a worker when a task was queued.
    pub async fn fire_objectives(&self, plans: Vec<crate::store::FirePlan>) -> Result<Vec<crate::store::FireResult>, StoreError> {
        let out = self.store.fire_objectives(plans, self.config.max_attempts, self.clock.now_ms()).await?;
        if out.iter().any(|r| !r.fired.is_empty()) {
            self.work_ready.notify_one();
        }
        Ok(out)
    }

    /// Queues a failed or canceled task again (see `Store::retry_task`) and wakes a worker.
    pub async fn retry_task(&self, id: &TaskId, by: &str) -> Result<crate::domain::Task, StoreError> {
        let task = self.store.retry_task(id, by.to_string(), self.clock.now_ms()).await?;
        self.work_ready.notify_one();
        Ok(task)
    }

    /// Cancels a queued task, or asks the worker running it to stop.
    pub async fn cancel(&self, id: &TaskId, reason: &str) -> Result<CancelOutcome, StoreError> {
        let out = self.store.cancel_task(id, reason.to_string(), self.clock.now_ms()).await?;
        if matches!(out, CancelOutcome::Requested(_))
            && let Some(token) = self.running.lock().ok().and_then(|m| m.get(id).cloned())
        {
            token.cancel();
        }
        Ok(out)
    }

    /// Start-up recovery, for a caller holding the data-directory lock and
    /// before any pool starts: the tasks a dead process left `running` go
    /// back to the queue at once (see `Store::recover_abandoned_tasks`).
    /// Returns how many were changed.
    pub async fn recover_at_start(&self) -> Result<usize, StoreError> {
        let changed = self.store.recover_abandoned_tasks(self.clock.now_ms(), self.notifier()).await?;
        if !changed.is_empty() {
            tracing::warn!(count = changed.len(), "tasks were running when the runtime stopped; requeued them (the attempt counts)");
            self.work_ready.notify_one();
            if changed.iter().any(|t| t.status.is_final()) {
                self.outbox_ready.notify_one();
            }
        }
        Ok(changed.len())
    }

    fn notifier(&self) -> Notifier {
        Notifier { config: self.notify, render: render_notice }
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy { base: self.config.retry_base, max: self.config.retry_max }
    }
}
