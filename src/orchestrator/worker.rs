//! The worker pool: N workers claim tasks, renew their leases while an
//! executor runs, and record the outcome; a recovery loop requeues tasks
//! whose lease ran out (a worker that crashed or hung).

use super::{ExecContext, Executors, OrchestratorHandle};
use crate::domain::{Task, TaskId};
use crate::runtime::Supervisor;
use crate::store::{FinishOutcome, LeaseState, StoreError};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running pool. `drain` stops it: no new claims, running tasks get a
/// grace period, then their leases are released.
pub struct Pool {
    sup: Supervisor,
    hard_stop: CancellationToken,
}

impl Pool {
    /// Stops claiming, waits up to `grace` for running tasks, then aborts the
    /// rest and puts them back in the queue.
    pub async fn drain(self, grace: Duration) {
        self.sup.shutdown();
        if tokio::time::timeout(grace, self.sup.drain()).await.is_err() {
            tracing::warn!(grace_secs = grace.as_secs(), "tasks still running after the grace period; releasing their leases");
            self.hard_stop.cancel();
            self.sup.drain().await;
        }
    }
}

/// Starts `concurrency` workers and the lease-recovery loop under a child of `parent`.
pub fn spawn_pool(handle: OrchestratorHandle, executors: Executors, parent: &Supervisor) -> Pool {
    let sup = parent.child();
    let hard_stop = CancellationToken::new();
    let instance = &uuid::Uuid::new_v4().simple().to_string()[..8];
    for n in 1..=handle.config.concurrency {
        let worker =
            Worker { id: format!("w{n}-{instance}"), handle: handle.clone(), executors: executors.clone(), hard_stop: hard_stop.clone() };
        let token = sup.token().clone();
        sup.spawn("worker", async move { worker.run(token).await });
    }
    let (h, token) = (handle, sup.token().clone());
    sup.spawn("lease-recovery", async move { recovery_loop(h, token).await });
    Pool { sup, hard_stop }
}

const IDLE_POLL: Duration = Duration::from_secs(1);

struct Worker {
    id: String,
    handle: OrchestratorHandle,
    executors: Executors,
    hard_stop: CancellationToken,
}

enum Stop {
    Canceled,
    Lost,
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let h = &self.handle;
        // A task handed over by the previous finish (already leased to us) is
        // run even during shutdown; the grace period and `hard_stop` bound it.
        let mut next: Option<Task> = None;
        loop {
            if let Some(task) = next.take() {
                next = self.run_task(task, !shutdown.is_cancelled()).await;
                continue;
            }
            if shutdown.is_cancelled() {
                break;
            }
            match h.store.claim_tasks(self.id.clone(), h.clock.now_ms(), h.config.lease, 1).await {
                Ok(tasks) if !tasks.is_empty() => next = tasks.into_iter().next(),
                Ok(_) => {
                    tokio::select! {
                        _ = h.work_ready.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Err(StoreError::Closed) => break,
                Err(e) => {
                    tracing::error!(worker = %self.id, error = %e, "claiming tasks failed");
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(worker = %self.id, task = %task.id, kind = %task.kind, attempt = task.attempts, trace_id = %task.trace_id))]
    /// Runs one task and records its outcome; with `claim_next`, the same
    /// store write claims the worker's next task, which is returned.
    async fn run_task(&self, task: Task, claim_next: bool) -> Option<Task> {
        let h = &self.handle;
        let cancel = CancellationToken::new();
        if task.cancel_requested {
            cancel.cancel();
        }
        if let Ok(mut m) = h.running.lock() {
            m.insert(task.id.clone(), cancel.clone());
        }
        let outcome = self.attempt(&task, &cancel).await;
        if let Ok(mut m) = h.running.lock() {
            m.remove(&task.id);
        }
        let Some(outcome) = outcome else {
            tracing::warn!("lease lost while running; the result of this attempt is discarded");
            return None;
        };
        tracing::debug!(outcome = ?outcome, "attempt finished");
        let next = claim_next.then_some((h.config.lease, 1));
        match h.store.finish_and_claim(&task.id, self.id.clone(), outcome, h.retry(), h.notifier(), h.clock.now_ms(), next).await {
            Ok((t, claimed)) => {
                if t.status.is_final() {
                    h.outbox_ready.notify_one();
                } else {
                    h.work_ready.notify_one();
                }
                claimed.into_iter().next()
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record the outcome");
                None
            }
        }
    }

    /// Runs one attempt; `None` when the lease was lost (someone else owns the task now).
    async fn attempt(&self, task: &Task, cancel: &CancellationToken) -> Option<FinishOutcome> {
        let Some(exec) = self.executors.get(task.kind) else {
            return Some(FinishOutcome::Failed { error: format!("unsupported task kind: {}", task.kind), retryable: false });
        };
        let ctx = ExecContext { task: task.clone(), cancel: cancel.clone() };
        let run = AssertUnwindSafe(exec.execute(ctx)).catch_unwind();
        let outcome = tokio::select! {
            res = run => match res {
                Ok(Ok(out)) => FinishOutcome::Succeeded { summary: out.summary, result_path: out.result_path },
                Ok(Err(e)) if cancel.is_cancelled() => { tracing::debug!(error = %e, "executor stopped after cancel"); FinishOutcome::Canceled }
                Ok(Err(e)) => FinishOutcome::Failed { error: e.message, retryable: e.retryable },
                Err(_) => FinishOutcome::Failed { error: "executor panicked".into(), retryable: false },
            },
            stop = self.keep_lease(&task.id, cancel) => match stop {
                Stop::Canceled => FinishOutcome::Canceled,
                Stop::Lost => return None,
            },
            _ = self.hard_stop.cancelled() => FinishOutcome::Released,
        };
        Some(outcome)
    }

    /// Renews the lease every third of its length until the task is canceled
    /// or the lease is lost.
    async fn keep_lease(&self, id: &TaskId, cancel: &CancellationToken) -> Stop {
        let h = &self.handle;
        let every = (h.config.lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Stop::Canceled,
                _ = tokio::time::sleep(every) => {}
            }
            match h.store.renew_lease(id, self.id.clone(), h.clock.now_ms(), h.config.lease).await {
                Ok(LeaseState::Held { cancel_requested: true }) => {
                    cancel.cancel();
                    return Stop::Canceled;
                }
                Ok(LeaseState::Held { .. }) => {}
                Ok(LeaseState::Lost) => {
                    cancel.cancel();
                    return Stop::Lost;
                }
                Err(e) => tracing::warn!(error = %e, "lease renewal failed; will retry"),
            }
        }
    }
}

async fn recovery_loop(h: OrchestratorHandle, shutdown: CancellationToken) {
    let every = (h.config.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match h.store.recover_expired_leases(h.clock.now_ms(), h.notifier()).await {
            Ok(changed) if !changed.is_empty() => {
                tracing::warn!(count = changed.len(), "recovered tasks whose lease expired");
                h.work_ready.notify_waiters();
                if changed.iter().any(|t| t.status.is_final()) {
                    h.outbox_ready.notify_one();
                }
            }
            Ok(_) => {}
            Err(StoreError::Closed) => return,
            Err(e) => tracing::error!(error = %e, "lease recovery failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
