//! The worker pool. A coordinator owns the pool's trips to the store: each
//! round, in one write, it records the outcomes that runners reported and
//! claims as many tasks as there are free slots; each claimed task runs in a
//! runner that renews the task's lease while its executor works. A recovery
//! loop requeues tasks whose lease ran out (a process that crashed or hung).
//!
//! When recent tasks were short (a few milliseconds), the coordinator also
//! claims up to one task per slot ahead, into a prefetch buffer, so a slot
//! freed by a short task starts the next one at once instead of after a
//! trip to the store. A prefetched task holds its lease (it shows as
//! `running`); one that waits longer than `PREFETCH_MAX_WAIT` is given back.
//!
//! Lease owners are `<process>/r<round>`: unique per claim, so a late report
//! from an earlier attempt of the same task can never be taken for the
//! current one.

use super::{ExecContext, Executors, OrchestratorHandle};
use crate::domain::{Task, TaskId};
use crate::runtime::Supervisor;
use crate::store::{Claim, FinishOutcome, Finished, LeaseState, StoreError};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
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

/// Starts the coordinator (with `concurrency` runner slots) and the
/// lease-recovery loop under a child of `parent`. Both are essential: a
/// panic in either degrades `orchestrator` and stops the daemon (the slots
/// and prefetch buffer are in memory; a clean process recovers the tasks
/// at start). A task runner's panic only loses that attempt's report: the
/// runner reports no outcome and the lease runs out.
pub fn spawn_pool(handle: OrchestratorHandle, executors: Executors, parent: &Supervisor) -> Pool {
    let sup = parent.child();
    let hard_stop = CancellationToken::new();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let coordinator = Coordinator {
        instance: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        runner: Runner { handle: handle.clone(), executors, hard_stop: hard_stop.clone(), done: done_tx },
        done: done_rx,
        sup: sup.clone(),
    };
    let (essential, token) = (sup.essential("orchestrator"), sup.token().clone());
    essential.spawn("pool-coordinator", async move { coordinator.run(token).await });
    let token = sup.token().clone();
    essential.spawn("lease-recovery", async move { recovery_loop(handle, token).await });
    Pool { sup, hard_stop }
}

const IDLE_POLL: Duration = Duration::from_secs(1);

/// A pool whose recent tasks ran shorter than this keeps a prefetch buffer
/// of claimed tasks (up to one per slot), so a slot freed by a short task
/// starts the next one without waiting for a trip to the store.
const SHORT_TASK: Duration = Duration::from_millis(5);
/// A prefetched task that has not started within this time is given back
/// to the queue (a long task arrived after all).
const PREFETCH_MAX_WAIT: Duration = Duration::from_millis(250);
/// The run-time average a pool starts with (about twenty short tasks bring it under `SHORT_TASK`).
const FIRST_AVG_RUN: Duration = Duration::from_millis(100);

/// What a runner reports: the outcome, or `None` when the lease was lost.
struct Done {
    id: TaskId,
    owner: String,
    outcome: Option<FinishOutcome>,
    ran: Duration,
}

impl Done {
    /// The outcome to record, if there is one (a lost lease has none).
    fn into_finished(self) -> Option<Finished> {
        self.outcome.map(|outcome| Finished { id: self.id, owner: self.owner, outcome })
    }
}

struct Coordinator {
    instance: String,
    runner: Runner,
    done: mpsc::UnboundedReceiver<Done>,
    sup: Supervisor,
}

/// Rounds allowed in flight at once: a slot freed while one round is being
/// written is claimed for in the next commit, not the one after.
const MAX_ROUNDS_IN_FLIGHT: usize = 2;

/// The coordinator's bookkeeping between rounds.
struct Slots {
    /// Runner slots (`AGENT_RUNTIME_DEFAULT_CONCURRENCY`).
    slots: usize,
    /// Runners running.
    busy: usize,
    /// Claims requested by rounds in flight.
    asked: usize,
    /// Claimed tasks waiting for a slot, with their lease owner and claim time.
    ready: VecDeque<(Task, String, Instant)>,
    /// Outcomes to record in the next round.
    pending: Vec<Finished>,
    /// Moving average of recent run times (starts at `FIRST_AVG_RUN`: no
    /// prefetch until the pool has seen a run of short tasks).
    avg_run: Duration,
}

impl Slots {
    fn note_done(&mut self, d: Done) {
        self.busy -= 1;
        self.avg_run = (self.avg_run * 7 + d.ran) / 8;
        self.pending.extend(d.into_finished());
    }

    /// How many tasks the next round should claim.
    fn want(&self) -> usize {
        let prefetch = if self.avg_run < SHORT_TASK { self.slots } else { 0 };
        (self.slots + prefetch).saturating_sub(self.busy + self.asked + self.ready.len())
    }

    /// Gives back prefetched tasks: all of them, or those that waited too long.
    fn release_ready(&mut self, all: bool) {
        while let Some((_, _, at)) = self.ready.front() {
            if !all && at.elapsed() < PREFETCH_MAX_WAIT {
                break;
            }
            if let Some((task, owner, _)) = self.ready.pop_front() {
                if !all {
                    // A long task is holding the slots: stop prefetching until tasks are short again.
                    self.avg_run = self.avg_run.max(PREFETCH_MAX_WAIT);
                }
                let reason = if all { "worker shut down" } else { "waited too long for a free worker slot" };
                self.pending.push(Finished { id: task.id, owner, outcome: FinishOutcome::Released { reason } });
            }
        }
    }
}

impl Coordinator {
    async fn run(mut self, shutdown: CancellationToken) {
        let h = self.runner.handle.clone();
        let mut s =
            Slots { slots: h.config.concurrency, busy: 0, asked: 0, ready: VecDeque::new(), pending: Vec::new(), avg_run: FIRST_AVG_RUN };
        let (mut round, mut queue_empty) = (0u64, false);
        let mut in_flight = FuturesUnordered::new();
        loop {
            while let Ok(d) = self.done.try_recv() {
                s.note_done(d);
            }
            let stopping = shutdown.is_cancelled();
            s.release_ready(stopping);
            while s.busy < s.slots && !stopping {
                let Some((task, owner, _)) = s.ready.pop_front() else { break };
                self.start(task, owner);
                s.busy += 1;
            }
            if stopping && s.busy == 0 && s.pending.is_empty() && in_flight.is_empty() {
                return;
            }
            let want = if stopping { 0 } else { s.want() };
            if in_flight.len() < MAX_ROUNDS_IN_FLIGHT && (!s.pending.is_empty() || (want > 0 && !queue_empty)) {
                round += 1;
                let owner = format!("{}/r{round}", self.instance);
                s.asked += want;
                let claim = (want > 0).then_some(Claim { lease: h.config.lease, limit: want as u32, without_model: h.model_paused() });
                let write = h.store.finish_many_and_claim(
                    std::mem::take(&mut s.pending),
                    owner.clone(),
                    claim,
                    h.retry(),
                    h.notifier(),
                    h.clock.now_ms(),
                );
                in_flight.push(async move { (owner, want, write.await) });
                continue;
            }
            let next_expiry = s.ready.front().map(|(_, _, at)| *at + PREFETCH_MAX_WAIT);
            tokio::select! {
                Some(d) = self.done.recv() => s.note_done(d),
                Some((owner, want, result)) = in_flight.next() => {
                    s.asked -= want;
                    match result {
                        Ok((results, claimed)) => {
                            self.after_finish(results);
                            queue_empty = want > 0 && claimed.len() < want;
                            let now = Instant::now();
                            s.ready.extend(claimed.into_iter().map(|t| (t, owner.clone(), now)));
                        }
                        Err(StoreError::Closed) => return,
                        Err(e) => {
                            // The outcomes were not recorded; those tasks are retried when their
                            // leases expire. Claiming waits for the poll tick.
                            tracing::error!(error = %e, "recording outcomes and claiming failed");
                            queue_empty = true;
                        }
                    }
                }
                _ = h.work_ready.notified(), if want > 0 && queue_empty => queue_empty = false,
                _ = tokio::time::sleep(IDLE_POLL), if want > 0 && queue_empty => queue_empty = false,
                _ = sleep_until(next_expiry) => {}
                _ = shutdown.cancelled(), if !stopping => {}
            }
        }
    }

    fn start(&self, task: Task, owner: String) {
        let runner = self.runner.clone();
        self.sup.spawn("task-runner", async move { runner.run(task, owner).await });
    }

    fn after_finish(&self, results: Vec<Result<Task, StoreError>>) {
        let h = &self.runner.handle;
        for r in results {
            match r {
                Ok(t) if t.status.is_final() => h.outbox_ready.notify_one(),
                Ok(_) => h.work_ready.notify_one(),
                Err(e) => tracing::warn!(error = %e, "an outcome was refused"),
            }
        }
    }
}

/// Sends a runner's report when dropped: at the end of the run, or while
/// unwinding from a panic (then with no outcome).
struct Report {
    done: mpsc::UnboundedSender<Done>,
    id: TaskId,
    owner: String,
    outcome: Option<FinishOutcome>,
    started: Instant,
}

impl Drop for Report {
    fn drop(&mut self) {
        let done =
            Done { id: self.id.clone(), owner: std::mem::take(&mut self.owner), outcome: self.outcome.take(), ran: self.started.elapsed() };
        // The coordinator outlives every runner (it waits for all of them), so this only fails if it died.
        let _ = self.done.send(done);
    }
}

#[derive(Clone)]
struct Runner {
    handle: OrchestratorHandle,
    executors: Executors,
    hard_stop: CancellationToken,
    done: mpsc::UnboundedSender<Done>,
}

enum Stop {
    Canceled,
    Lost,
}

impl Runner {
    #[tracing::instrument(skip_all, fields(task = %task.id, kind = %task.kind, attempt = task.attempts, owner = %owner, trace_id = %task.trace_id))]
    async fn run(self, task: Task, owner: String) {
        // Reports even if this runner unwinds, so the coordinator never waits
        // for a slot that will not come back (the task's lease then expires).
        let mut report =
            Report { done: self.done.clone(), id: task.id.clone(), owner: owner.clone(), outcome: None, started: Instant::now() };
        let h = &self.handle;
        let cancel = CancellationToken::new();
        if task.cancel_requested {
            cancel.cancel();
        }
        if let Ok(mut m) = h.running.lock() {
            m.insert(task.id.clone(), cancel.clone());
        }
        let outcome = self.attempt(&task, &owner, &cancel).await;
        if let Ok(mut m) = h.running.lock() {
            m.remove(&task.id);
        }
        match &outcome {
            Some(o) => tracing::debug!(outcome = ?o, "attempt finished"),
            None => tracing::warn!("lease lost while running; the result of this attempt is discarded"),
        }
        report.outcome = outcome;
    }

    /// Runs one attempt; `None` when the lease was lost (someone else owns the task now).
    async fn attempt(&self, task: &Task, owner: &str, cancel: &CancellationToken) -> Option<FinishOutcome> {
        let Some(exec) = self.executors.get(task.kind) else {
            return Some(FinishOutcome::Failed { error: format!("unsupported task kind: {}", task.kind), retryable: false });
        };
        let ctx = ExecContext { task: task.clone(), cancel: cancel.clone() };
        let run = AssertUnwindSafe(exec.execute(ctx)).catch_unwind();
        let outcome = tokio::select! {
            res = run => match res {
                Ok(Ok(out)) => FinishOutcome::Succeeded { summary: out.summary, result_path: out.result_path },
                Ok(Err(e)) if cancel.is_cancelled() => { tracing::debug!(error = %e, "executor stopped after cancel"); FinishOutcome::Canceled }
                Ok(Err(e)) if e.released => { tracing::info!(reason = %e.message, "attempt given back"); FinishOutcome::Released { reason: "the agent is paused" } }
                Ok(Err(e)) => FinishOutcome::Failed { error: e.message, retryable: e.retryable },
                Err(_) => FinishOutcome::Failed { error: "executor panicked".into(), retryable: false },
            },
            stop = self.keep_lease(&task.id, owner, cancel) => match stop {
                Stop::Canceled => FinishOutcome::Canceled,
                Stop::Lost => return None,
            },
            _ = self.hard_stop.cancelled() => FinishOutcome::Released { reason: "worker shut down" },
        };
        Some(outcome)
    }

    /// Renews the lease every third of its length until the task is canceled
    /// or the lease is lost.
    async fn keep_lease(&self, id: &TaskId, owner: &str, cancel: &CancellationToken) -> Stop {
        let h = &self.handle;
        let every = (h.config.lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Stop::Canceled,
                _ = tokio::time::sleep(every) => {}
            }
            match h.store.renew_lease(id, owner.to_string(), h.clock.now_ms(), h.config.lease).await {
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

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn recovery_loop(h: OrchestratorHandle, shutdown: CancellationToken) {
    let every = (h.config.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match h.store.recover_expired_leases(h.clock.now_ms(), h.notifier()).await {
            Ok(changed) => {
                if !changed.is_empty() {
                    tracing::warn!(count = changed.len(), "recovered tasks whose lease expired");
                    h.work_ready.notify_one();
                    if changed.iter().any(|t| t.status.is_final()) {
                        h.outbox_ready.notify_one();
                    }
                }
                if let Some(health) = &h.health {
                    health.beat("orchestrator");
                }
            }
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::error!(error = %e, "lease recovery failed");
                if let Some(health) = &h.health {
                    health.degrade("orchestrator", format!("lease recovery failed: {e}"));
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
