//! Leases: claiming queued tasks, renewing, finishing (worker-scoped) and
//! recovering tasks whose worker stopped renewing. Final outcomes write their
//! notices to the outbox in the same transaction, so a notice is never lost
//! and never sent twice.

use super::super::outbox::{Notifier, queue_task_notices};
use super::super::{Store, StoreError, found};
use super::{TASK_COLUMNS, add_event, load_task, task_from_row};
use crate::clock::UnixMillis;
use crate::domain::{Task, TaskId, TaskKind, TaskStatus};
use rusqlite::{Connection, params};
use std::time::Duration;

/// What the pool's round claims: up to `limit` tasks under `lease`; none
/// that call the model when `without_model` (the kill switch is on).
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    /// The lease length.
    pub lease: Duration,
    /// Most tasks.
    pub limit: u32,
    /// Leave tasks whose kind calls the model in the queue.
    pub without_model: bool,
}

/// Exponential backoff between attempts: `base × 2^(attempt-1)`, capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// How an attempt ended, as reported by the worker holding the lease.
#[derive(Debug, Clone)]
pub enum FinishOutcome {
    /// The executor succeeded.
    Succeeded {
        /// Short result for lists and notices.
        summary: String,
        /// Workspace-relative path of the full result.
        result_path: Option<String>,
    },
    /// The executor failed; `retryable` failures are retried while attempts remain.
    Failed {
        /// What went wrong.
        error: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
    /// The task was canceled while running.
    Canceled,
    /// The worker gives the task back unfinished (it is shutting down, or
    /// the task waited too long in its prefetch buffer): the task goes back
    /// to the queue and this attempt does not count. `reason` is recorded.
    Released {
        /// Why, for the task's event log.
        reason: &'static str,
    },
}

/// Whether a worker still holds its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Still held; `cancel_requested` says whether to stop.
    Held {
        /// A user asked to cancel.
        cancel_requested: bool,
    },
    /// Lost (expired and taken over, or the task was finished elsewhere).
    Lost,
}

impl Store {
    /// Atomically claims up to `limit` claimable tasks for `worker`: status
    /// `running`, `attempts + 1`, a lease until `now + lease`.
    pub async fn claim_tasks(&self, worker: String, now: UnixMillis, lease: Duration, limit: u32) -> Result<Vec<Task>, StoreError> {
        self.write(move |c| {
            let tx: &Connection = c;
            let tasks = claim(tx, &worker, now, lease, limit)?;
            Ok(tasks)
        })
        .await
    }

    /// Extends `worker`'s lease on a running task; says whether it is still
    /// held and whether a cancel was requested. Renewals are not transitions:
    /// they neither bump the version nor add events.
    pub async fn renew_lease(&self, id: &TaskId, worker: String, now: UnixMillis, lease: Duration) -> Result<LeaseState, StoreError> {
        let (id, expires) = (id.clone(), now + lease.as_millis() as i64);
        self.write(move |c| {
            let cancel: Option<bool> = c
                .prepare_cached(
                    "UPDATE tasks SET lease_expires_at = ?1 WHERE id = ?2 AND status = 'running' AND lease_owner = ?3 RETURNING cancel_requested",
                )?
                .query_map(params![expires, id.as_str(), worker], |r| r.get(0))?
                .next()
                .transpose()?;
            Ok(match cancel {
                Some(cancel_requested) => LeaseState::Held { cancel_requested },
                None => LeaseState::Lost,
            })
        })
        .await
    }

    /// Records the outcome of `worker`'s attempt. Refused with
    /// [`StoreError::StaleLease`] when the worker no longer holds the lease,
    /// so a late worker can never overwrite a newer attempt.
    pub async fn finish_task(
        &self,
        id: &TaskId,
        worker: String,
        outcome: FinishOutcome,
        retry: RetryPolicy,
        notifier: Notifier,
        now: UnixMillis,
    ) -> Result<Task, StoreError> {
        let id = id.clone();
        self.write(move |c| finish_one(c, &Finished { id, owner: worker, outcome }, retry, &notifier, now)).await
    }

    /// Records several outcomes and then claims up to `claim.1` tasks for
    /// `owner` with lease `claim.0`, all in one write: the worker pool's
    /// round trip. Each outcome gets its own result (a stale lease refuses
    /// only that outcome); an SQLite error fails the whole call.
    pub async fn finish_many_and_claim(
        &self,
        finished: Vec<Finished>,
        owner: String,
        claim_next: Option<Claim>,
        retry: RetryPolicy,
        notifier: Notifier,
        now: UnixMillis,
    ) -> Result<(Vec<Result<Task, StoreError>>, Vec<Task>), StoreError> {
        self.write(move |c| {
            let mut results = Vec::with_capacity(finished.len());
            for f in &finished {
                match finish_one(c, f, retry, &notifier, now) {
                    Err(e @ StoreError::Sqlite(_)) => return Err(e),
                    other => results.push(other),
                }
            }
            let claimed = match claim_next {
                Some(k) if k.limit > 0 && k.without_model => claim_filtered(c, &owner, now, k.lease, k.limit, true)?,
                Some(k) if k.limit > 0 => claim(c, &owner, now, k.lease, k.limit)?,
                _ => Vec::new(),
            };
            Ok((results, claimed))
        })
        .await
    }

    /// Requeues (or, past the attempt limit, fails) every running task whose
    /// lease expired before `now`. Returns the tasks changed.
    pub async fn recover_expired_leases(&self, now: UnixMillis, notifier: Notifier) -> Result<Vec<Task>, StoreError> {
        self.write(move |c| abandon_running(c, Abandoned::LeaseExpired, now, &notifier)).await
    }

    /// At start, under the data-directory lock (`runtime::DataLock`): every
    /// `running` task — started or only prefetched — belongs to a process
    /// that is gone, so each is requeued at once (or, past the attempt
    /// limit, failed; canceled if a cancel was asked) as a lease expiry
    /// would, with its `task_events` row, instead of waiting out the lease.
    /// The attempt counts. Call it only while holding the lock and before
    /// any worker of this process claims. Returns the tasks changed.
    pub async fn recover_abandoned_tasks(&self, now: UnixMillis, notifier: Notifier) -> Result<Vec<Task>, StoreError> {
        self.write(move |c| abandon_running(c, Abandoned::ProcessGone, now, &notifier)).await
    }
}

/// Why a running task is taken from its worker.
#[derive(Debug, Clone, Copy)]
enum Abandoned {
    /// The worker stopped renewing; the lease ran out.
    LeaseExpired,
    /// The daemon that ran it is gone (found at start, under the lock).
    ProcessGone,
}

impl Abandoned {
    /// The task event of a requeue.
    fn event(self) -> &'static str {
        match self {
            Abandoned::LeaseExpired => "lease_expired",
            Abandoned::ProcessGone => "recovered_at_start",
        }
    }

    fn error(self, task: &Task) -> String {
        let owner = task.lease_owner.as_deref().unwrap_or("?");
        match self {
            Abandoned::LeaseExpired => format!("lease expired: worker {owner} stopped renewing during attempt {}", task.attempts),
            Abandoned::ProcessGone => {
                format!("the daemon stopped during attempt {} (worker {owner}); requeued at the next start", task.attempts)
            }
        }
    }
}

/// Takes the running tasks `why` selects from their workers: requeued with
/// no delay, failed past the attempt limit (with notices), or canceled if a
/// cancel was requested.
fn abandon_running(c: &Connection, why: Abandoned, now: UnixMillis, notifier: &Notifier) -> Result<Vec<Task>, StoreError> {
    let expired: Vec<Task> = match why {
        Abandoned::LeaseExpired => {
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'running' AND lease_expires_at < ?1");
            c.prepare_cached(&sql)?.query_map([now], task_from_row)?.collect::<Result<_, _>>()?
        }
        Abandoned::ProcessGone => {
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'running'");
            c.prepare_cached(&sql)?.query_map([], task_from_row)?.collect::<Result<_, _>>()?
        }
    };
    let mut changed = Vec::with_capacity(expired.len());
    for task in expired {
        let owner = task.lease_owner.clone();
        let outcome = if task.cancel_requested {
            FinishOutcome::Canceled
        } else {
            FinishOutcome::Failed { error: why.error(&task), retryable: true }
        };
        let retry = RetryPolicy { base: Duration::ZERO, max: Duration::ZERO };
        let task = apply_outcome(c, &task, owner.as_deref(), outcome, retry, now, why.event())?;
        if task.status.is_final() {
            queue_task_notices(c, &task, notifier, now)?;
        }
        changed.push(task);
    }
    Ok(changed)
}

/// One attempt's outcome, reported by the lease holder.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The task.
    pub id: TaskId,
    /// The lease owner that ran the attempt.
    pub owner: String,
    /// How it ended.
    pub outcome: FinishOutcome,
}

/// Applies one outcome if `f.owner` still holds the lease; queues notices
/// for a final status. Checks come before any write.
fn finish_one(c: &Connection, f: &Finished, retry: RetryPolicy, notifier: &Notifier, now: UnixMillis) -> Result<Task, StoreError> {
    let task = found(load_task(c, f.id.as_str())?, "task")?;
    if task.status != TaskStatus::Running || task.lease_owner.as_deref() != Some(f.owner.as_str()) {
        return Err(StoreError::StaleLease(f.id.to_string()));
    }
    let task = apply_outcome(c, &task, Some(&f.owner), f.outcome.clone(), retry, now, "retry_scheduled")?;
    if task.status.is_final() {
        queue_task_notices(c, &task, notifier, now)?;
    }
    Ok(task)
}

/// Claims up to `limit` claimable tasks for `worker`.
fn claim(c: &Connection, worker: &str, now: UnixMillis, lease: Duration, limit: u32) -> Result<Vec<Task>, StoreError> {
    claim_filtered(c, worker, now, lease, limit, false)
}

/// Claims up to `limit` claimable tasks for `worker`, none of a kind that
/// calls the model when `without_model`.
fn claim_filtered(
    c: &Connection,
    worker: &str,
    now: UnixMillis,
    lease: Duration,
    limit: u32,
    without_model: bool,
) -> Result<Vec<Task>, StoreError> {
    let expires = now + lease.as_millis() as i64;
    let kinds = if without_model {
        let model: Vec<String> = TaskKind::ALL.iter().filter(|k| k.uses_model()).map(|k| format!("'{}'", k.as_str())).collect();
        format!(" AND kind NOT IN ({})", model.join(", "))
    } else {
        String::new()
    };
    let sql = format!(
        "UPDATE tasks SET status = 'running', attempts = attempts + 1, lease_owner = ?1, lease_expires_at = ?2, \
         started_at = ?3, updated_at = ?3, version = version + 1, error = NULL \
         WHERE id IN (SELECT id FROM tasks WHERE status = 'queued' AND not_before <= ?3{kinds} ORDER BY not_before, created_at LIMIT ?4) \
         RETURNING {TASK_COLUMNS}"
    );
    let tasks: Vec<Task> =
        c.prepare_cached(&sql)?.query_map(params![worker, expires, now, limit], task_from_row)?.collect::<Result<_, _>>()?;
    for t in &tasks {
        add_event(
            c,
            t.id.as_str(),
            t.version,
            now,
            "claimed",
            Some(TaskStatus::Queued),
            Some(TaskStatus::Running),
            t.attempts,
            Some(worker),
            None,
        )?;
        super::super::objectives::track_run(c, t, now)?;
    }
    Ok(tasks)
}

/// Runs one `UPDATE … RETURNING` and returns the changed task.
fn update(c: &Connection, set: &str, params: impl rusqlite::Params) -> Result<Task, StoreError> {
    let sql = format!(
        "UPDATE tasks SET {set}, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?2, version = version + 1 WHERE id = ?1 RETURNING {TASK_COLUMNS}"
    );
    Ok(c.prepare_cached(&sql)?.query_row(params, task_from_row)?)
}

/// Applies an outcome to a running task; returns the task as it is now. A
/// retryable failure requeues it under `requeue_event` (`retry_scheduled`
/// when its worker reported it, `lease_expired` / `recovered_at_start` when
/// it was taken from its worker).
fn apply_outcome(
    tx: &Connection,
    task: &Task,
    worker: Option<&str>,
    outcome: FinishOutcome,
    retry: RetryPolicy,
    now: UnixMillis,
    requeue_event: &'static str,
) -> Result<Task, StoreError> {
    let t = apply_outcome_to_row(tx, task, worker, outcome, retry, now, requeue_event)?;
    // An objective's run follows its task, in the same transaction.
    super::super::objectives::track_run(tx, &t, now)?;
    Ok(t)
}

/// [`apply_outcome`] on the task row and its history only.
fn apply_outcome_to_row(
    tx: &Connection,
    task: &Task,
    worker: Option<&str>,
    outcome: FinishOutcome,
    retry: RetryPolicy,
    now: UnixMillis,
    requeue_event: &'static str,
) -> Result<Task, StoreError> {
    let id = task.id.as_str();
    let running = Some(TaskStatus::Running);
    match outcome {
        FinishOutcome::Succeeded { summary, result_path } => {
            let t = update(
                tx,
                "status = 'succeeded', result_summary = ?3, result_path = ?4, error = NULL, finished_at = ?2",
                params![id, now, summary, result_path],
            )?;
            add_event(tx, id, t.version, now, "succeeded", running, Some(TaskStatus::Succeeded), task.attempts, worker, None)?;
            Ok(t)
        }
        FinishOutcome::Failed { error, retryable } if retryable && task.attempts < task.max_attempts => {
            let at = now + retry.delay(task.attempts).as_millis() as i64;
            let t = update(tx, "status = 'queued', error = ?3, not_before = ?4", params![id, now, error, at])?;
            add_event(tx, id, t.version, now, requeue_event, running, Some(TaskStatus::Queued), task.attempts, worker, Some(&error))?;
            Ok(t)
        }
        FinishOutcome::Failed { error, retryable } => {
            let error = if retryable { format!("{error} (gave up after {} attempts)", task.attempts) } else { error };
            let t = update(tx, "status = 'failed', error = ?3, finished_at = ?2", params![id, now, error])?;
            add_event(tx, id, t.version, now, "failed", running, Some(TaskStatus::Failed), task.attempts, worker, Some(&error))?;
            Ok(t)
        }
        FinishOutcome::Canceled => {
            let t = update(tx, "status = 'canceled', error = 'canceled while running', finished_at = ?2", params![id, now])?;
            add_event(tx, id, t.version, now, "canceled", running, Some(TaskStatus::Canceled), task.attempts, worker, None)?;
            Ok(t)
        }
        FinishOutcome::Released { reason } => {
            let t = update(tx, "status = 'queued', attempts = MAX(attempts - 1, 0), not_before = ?2", params![id, now])?;
            add_event(tx, id, t.version, now, "released", running, Some(TaskStatus::Queued), task.attempts, worker, Some(reason))?;
            Ok(t)
        }
    }
}
