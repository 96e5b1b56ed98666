//! The durable queue: leases, retries, idempotency, cancel, optimistic
//! updates and the event log, through the real store on a temp file.

use crate::support::wait_until;
use agent_runtime::BoxFuture;
use agent_runtime::clock::{Clock, ManualClock, SharedClock, SystemClock};
use agent_runtime::config::{NotifyConfig, OrchestratorConfig};
use agent_runtime::domain::{ChatRef, Context, NewTask, NotifyPolicy, TaskId, TaskKind, TaskStatus, TraceId};
use agent_runtime::orchestrator::{ExecContext, ExecError, ExecOutput, Executor, Executors, OrchestratorHandle, render_notice, spawn_pool};
use agent_runtime::runtime::Supervisor;
use agent_runtime::store::{CancelOutcome, FinishOutcome, Notifier, RetryPolicy, Store, StoreError, TaskPatch};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const LEASE: Duration = Duration::from_secs(10);

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    ctx: Context,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("meta.sqlite")).expect("open");
    let ctx = store.ensure_context(&ChatRef::new("codex", "queue-test").expect("chat"), "Q", 0).await.expect("ctx");
    Fixture { _dir: dir, store, ctx }
}

pub(crate) fn new_task(ctx: &Context, kind: TaskKind, run_key: Option<&str>) -> NewTask {
    NewTask {
        workspace_id: ctx.workspace_id.clone(),
        context_id: ctx.id.clone(),
        kind,
        title: "t".into(),
        prompt: "p".into(),
        run_key: run_key.map(str::to_string),
        source_user_id: Some("u".into()),
        trace_id: TraceId::random(),
        tell_origin: true,
    }
}

pub(crate) fn notifier() -> Notifier {
    Notifier { config: NotifyConfig { policy: NotifyPolicy::Origin, success: None, failure: None }, render: render_notice }
}

fn retry() -> RetryPolicy {
    RetryPolicy { base: Duration::from_secs(5), max: Duration::from_secs(60) }
}

fn pool_config(concurrency: usize, lease: Duration, max_attempts: u32) -> OrchestratorConfig {
    OrchestratorConfig {
        concurrency,
        max_attempts,
        lease,
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Counts executions per task; fails or blocks as told.
#[derive(Default)]
struct Counting {
    runs: Mutex<HashMap<TaskId, u32>>,
    block_until_cancel: bool,
    fail: Option<ExecError>,
}

impl Executor for Counting {
    fn execute(&self, ctx: ExecContext) -> BoxFuture<'_, Result<ExecOutput, ExecError>> {
        Box::pin(async move {
            *self.runs.lock().expect("runs").entry(ctx.task.id.clone()).or_default() += 1;
            if self.block_until_cancel {
                ctx.cancel.cancelled().await;
                return Err(ExecError::permanent("stopped"));
            }
            match &self.fail {
                Some(e) => Err(e.clone()),
                None => Ok(ExecOutput { summary: format!("ran {}", ctx.task.id), result_path: None }),
            }
        })
    }
}

fn handle(store: &Store, clock: SharedClock, cfg: OrchestratorConfig) -> OrchestratorHandle {
    OrchestratorHandle::new(store.clone(), clock, cfg, notifier().config, Arc::new(Notify::new()))
}

async fn wait_status(store: &Store, id: &TaskId, status: TaskStatus) {
    wait_until(&format!("task {id} to be {status}"), Duration::from_secs(20), || async {
        let t = store.get_task(id).await.ok()?;
        (t.status == status).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_claim_one_task_twice() {
    let f = fixture().await;
    for _ in 0..400 {
        f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), 3, 0).await.expect("enqueue");
    }
    let mut joins = Vec::new();
    for w in 0..8 {
        let store = f.store.clone();
        joins.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim_tasks(format!("w{w}"), 1, LEASE, 3).await.expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|t| t.id));
            }
        }));
    }
    let mut all = Vec::new();
    for j in joins {
        all.extend(j.await.expect("join"));
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 400, "every task claimed");
    assert_eq!(unique.len(), 400, "no task claimed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_pool_runs_each_task_exactly_once() {
    let f = fixture().await;
    let exec = Arc::new(Counting::default());
    let h = handle(&f.store, Arc::new(SystemClock), pool_config(8, LEASE, 3));
    let sup = Supervisor::new();
    let pool = spawn_pool(h.clone(), Executors::default().with(TaskKind::Noop, exec.clone()), &sup);
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(h.submit(new_task(&f.ctx, TaskKind::Noop, None)).await.expect("submit").task.id);
    }
    for id in &ids {
        wait_status(&f.store, id, TaskStatus::Succeeded).await;
    }
    pool.drain(Duration::from_secs(5)).await;
    let runs = exec.runs.lock().expect("runs").clone();
    assert_eq!(runs.len(), 200);
    assert!(runs.values().all(|n| *n == 1), "a task ran twice: {runs:?}");
    for id in ids.iter().take(5) {
        let t = f.store.get_task(id).await.expect("task");
        assert_eq!((t.attempts, t.result_summary.as_deref()), (1, Some(format!("ran {id}").as_str())));
    }
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again_and_the_old_worker_is_refused() {
    let f = fixture().await;
    let clock = ManualClock::new(1_000_000);
    let id = f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), 3, clock.now_ms()).await.expect("enqueue").task.id;
    let first = f.store.claim_tasks("crashed".into(), clock.now_ms(), LEASE, 1).await.expect("claim");
    assert_eq!(first[0].attempts, 1);
    clock.advance(5_000);
    assert!(f.store.recover_expired_leases(clock.now_ms(), notifier()).await.expect("recover").is_empty(), "lease still valid");
    clock.advance(6_000);
    let recovered = f.store.recover_expired_leases(clock.now_ms(), notifier()).await.expect("recover");
    assert_eq!((recovered.len(), recovered[0].status), (1, TaskStatus::Queued));
    let second = f.store.claim_tasks("rescuer".into(), clock.now_ms(), LEASE, 1).await.expect("claim");
    assert_eq!((second[0].id.clone(), second[0].attempts), (id.clone(), 2));
    let late = f
        .store
        .finish_task(
            &id,
            "crashed".into(),
            FinishOutcome::Succeeded { summary: "late".into(), result_path: None },
            retry(),
            notifier(),
            clock.now_ms(),
        )
        .await;
    assert!(matches!(late, Err(StoreError::StaleLease(_))), "{late:?}");
    let done = f
        .store
        .finish_task(
            &id,
            "rescuer".into(),
            FinishOutcome::Succeeded { summary: "ok".into(), result_path: None },
            retry(),
            notifier(),
            clock.now_ms(),
        )
        .await
        .expect("finish");
    assert_eq!((done.status, done.attempts, done.result_summary.as_deref()), (TaskStatus::Succeeded, 2, Some("ok")));
    let events: Vec<String> = f.store.task_events(&id).await.expect("events").into_iter().map(|e| e.event).collect();
    assert_eq!(events, ["created", "claimed", "lease_expired", "claimed", "succeeded"]);
    let notices = f.store.chat_messages(&f.ctx.chat, 0, 10).await.expect("outbox");
    assert_eq!(notices.len(), 1, "exactly one completion notice");
    assert!(notices[0].body.contains("succeeded"), "{}", notices[0].body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_worker_died_is_rerun_once_by_the_pool() {
    let f = fixture().await;
    let lease = Duration::from_millis(600);
    let id = f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), 3, SystemClock.now_ms()).await.expect("enqueue").task.id;
    // A worker of a process that was killed: it claimed the task and never renews.
    f.store.claim_tasks("dead-process-w1".into(), SystemClock.now_ms(), lease, 1).await.expect("claim");
    let exec = Arc::new(Counting::default());
    let sup = Supervisor::new();
    let pool = spawn_pool(
        handle(&f.store, Arc::new(SystemClock), pool_config(2, lease, 3)),
        Executors::default().with(TaskKind::Noop, exec.clone()),
        &sup,
    );
    wait_status(&f.store, &id, TaskStatus::Succeeded).await;
    pool.drain(Duration::from_secs(5)).await;
    let t = f.store.get_task(&id).await.expect("task");
    assert_eq!(t.attempts, 2);
    assert_eq!(exec.runs.lock().expect("runs").get(&id), Some(&1), "re-run exactly once");
}

#[tokio::test]
async fn leases_expiring_past_the_attempt_limit_fail_the_task_for_good() {
    let f = fixture().await;
    let clock = ManualClock::new(0);
    let id = f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), 2, 0).await.expect("enqueue").task.id;
    for worker in ["a", "b"] {
        f.store.claim_tasks(worker.into(), clock.now_ms(), LEASE, 1).await.expect("claim");
        clock.advance(11_000);
        f.store.recover_expired_leases(clock.now_ms(), notifier()).await.expect("recover");
    }
    let t = f.store.get_task(&id).await.expect("task");
    assert_eq!(t.status, TaskStatus::Failed);
    assert!(t.error.as_deref().unwrap_or("").contains("gave up after 2 attempts"), "{:?}", t.error);
    assert!(f.store.claim_tasks("c".into(), clock.now_ms(), LEASE, 1).await.expect("claim").is_empty());
    let notices = f.store.chat_messages(&f.ctx.chat, 0, 10).await.expect("outbox");
    assert_eq!(notices.len(), 1);
    assert!(notices[0].body.contains("failed after 2 attempt(s)"), "{}", notices[0].body);
}

// Regression (issue 14, item 8): a restart left the dead process's tasks
// `running` until their leases ran out. Under the data-directory lock every
// running task is abandoned, so start-up recovery takes them all at once,
// leases still valid, as a lease expiry would: attempt counted, event row,
// a final notice past the attempt limit, a requested cancel honoured.
#[tokio::test]
async fn start_recovery_takes_every_running_task_at_once_as_a_lease_expiry_would() {
    let f = fixture().await;
    let clock = ManualClock::new(1_000_000);
    let mut ids = Vec::new();
    for max_attempts in [3, 1, 3] {
        ids.push(f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), max_attempts, 0).await.expect("enqueue").task.id);
    }
    let claimed = f.store.claim_tasks("dead/r1".into(), clock.now_ms(), LEASE, 3).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    f.store.cancel_task(&ids[2], "user".into(), clock.now_ms()).await.expect("cancel requested");
    let untouched = f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), 3, 0).await.expect("enqueue").task.id;

    clock.advance(1_000); // leases have 9 s left
    assert!(f.store.recover_expired_leases(clock.now_ms(), notifier()).await.expect("expiry").is_empty());
    let changed = f.store.recover_abandoned_tasks(clock.now_ms(), notifier()).await.expect("recover");
    assert_eq!(changed.len(), 3, "every running task, and only those");
    let task = |i: usize| changed.iter().find(|t| t.id == ids[i]).expect("changed").clone();
    let requeued = task(0);
    assert_eq!((requeued.status, requeued.attempts, requeued.not_before), (TaskStatus::Queued, 1, clock.now_ms()));
    assert!(requeued.error.as_deref().unwrap_or("").contains("the daemon stopped during attempt 1"), "{:?}", requeued.error);
    assert_eq!(task(1).status, TaskStatus::Failed, "its one attempt is spent");
    assert_eq!(task(2).status, TaskStatus::Canceled);
    assert_eq!(f.store.get_task(&untouched).await.expect("task").status, TaskStatus::Queued);

    let events: Vec<String> = f.store.task_events(&ids[0]).await.expect("events").into_iter().map(|e| e.event).collect();
    assert_eq!(events, ["created", "claimed", "recovered_at_start"]);
    let again = f.store.claim_tasks("alive/r1".into(), clock.now_ms(), LEASE, 3).await.expect("claim");
    assert_eq!(again.iter().find(|t| t.id == ids[0]).map(|t| t.attempts), Some(2), "claimable at once; the attempt counted");
    let notices = f.store.chat_messages(&f.ctx.chat, 0, 10).await.expect("outbox");
    assert_eq!(notices.len(), 2, "one notice per final task (failed, canceled): {notices:?}");
}

#[tokio::test]
async fn retryable_failures_back_off_exponentially_then_fail_honestly() {
    let f = fixture().await;
    let clock = ManualClock::new(0);
    let id = f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), 3, 0).await.expect("enqueue").task.id;
    let fail = || FinishOutcome::Failed { error: "HTTP 503".into(), retryable: true };
    let mut delays = Vec::new();
    for attempt in 1..=3u32 {
        let claimed = f.store.claim_tasks("w".into(), clock.now_ms(), LEASE, 1).await.expect("claim");
        assert_eq!(claimed.len(), 1, "claimable at attempt {attempt}");
        let t = f.store.finish_task(&id, "w".into(), fail(), retry(), notifier(), clock.now_ms()).await.expect("finish");
        if attempt < 3 {
            assert_eq!(t.status, TaskStatus::Queued);
            delays.push(t.not_before - clock.now_ms());
            assert!(
                f.store.claim_tasks("w".into(), clock.now_ms(), LEASE, 1).await.expect("claim").is_empty(),
                "not claimable during backoff"
            );
            clock.advance(t.not_before - clock.now_ms());
        } else {
            assert_eq!(t.status, TaskStatus::Failed, "never recorded as succeeded");
            assert!(t.error.as_deref().unwrap_or("").starts_with("HTTP 503"));
        }
    }
    assert_eq!(delays, [5_000, 10_000]);
}

#[tokio::test]
async fn a_permanent_failure_is_failed_at_once() {
    let f = fixture().await;
    let id = f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), 3, 0).await.expect("enqueue").task.id;
    f.store.claim_tasks("w".into(), 0, LEASE, 1).await.expect("claim");
    let t = f
        .store
        .finish_task(&id, "w".into(), FinishOutcome::Failed { error: "HTTP 400".into(), retryable: false }, retry(), notifier(), 1)
        .await
        .expect("finish");
    assert_eq!((t.status, t.attempts, t.error.as_deref()), (TaskStatus::Failed, 1, Some("HTTP 400")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_key_duplicates_collapse_even_when_concurrent() {
    let f = fixture().await;
    let mut joins = Vec::new();
    for _ in 0..10 {
        let (store, t) = (f.store.clone(), new_task(&f.ctx, TaskKind::Noop, Some("objective:42:2026-11-22T10:00")));
        joins.push(tokio::spawn(async move { store.enqueue_task(t, 3, 0).await.expect("enqueue") }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for j in joins {
        let e = j.await.expect("join");
        created += usize::from(e.created);
        ids.insert(e.task.id);
    }
    assert_eq!((created, ids.len()), (1, 1));
}

#[tokio::test]
async fn cancel_works_for_queued_tasks_and_refuses_finished_ones() {
    let f = fixture().await;
    let h = handle(&f.store, Arc::new(SystemClock), pool_config(1, LEASE, 3));
    let id = h.submit(new_task(&f.ctx, TaskKind::Noop, None)).await.expect("submit").task.id;
    assert!(matches!(h.cancel(&id, "no longer needed").await, Ok(CancelOutcome::Canceled(t)) if t.status == TaskStatus::Canceled));
    assert!(matches!(h.cancel(&id, "again").await, Err(StoreError::Conflict(_))));
    assert!(f.store.claim_tasks("w".into(), i64::MAX / 2, LEASE, 1).await.expect("claim").is_empty(), "a canceled task is never claimed");
    let events: Vec<String> = f.store.task_events(&id).await.expect("events").into_iter().map(|e| e.event).collect();
    assert_eq!(events, ["created", "canceled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_task() {
    let f = fixture().await;
    let exec = Arc::new(Counting { block_until_cancel: true, ..Counting::default() });
    let h = handle(&f.store, Arc::new(SystemClock), pool_config(1, LEASE, 3));
    let sup = Supervisor::new();
    let pool = spawn_pool(h.clone(), Executors::default().with(TaskKind::Noop, exec), &sup);
    let id = h.submit(new_task(&f.ctx, TaskKind::Noop, None)).await.expect("submit").task.id;
    wait_status(&f.store, &id, TaskStatus::Running).await;
    assert!(matches!(h.cancel(&id, "stop").await, Ok(CancelOutcome::Requested(_))));
    wait_status(&f.store, &id, TaskStatus::Canceled).await;
    pool.drain(Duration::from_secs(5)).await;
    let events: Vec<String> = f.store.task_events(&id).await.expect("events").into_iter().map(|e| e.event).collect();
    assert_eq!(events, ["created", "claimed", "cancel_requested", "canceled"]);
    let notices = f.store.chat_messages(&f.ctx.chat, 0, 10).await.expect("outbox");
    assert!(notices.iter().any(|n| n.body.contains("canceled")), "{notices:?}");
}

#[tokio::test]
async fn a_stale_version_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let t = f.store.enqueue_task(new_task(&f.ctx, TaskKind::Noop, None), 3, 0).await.expect("enqueue").task;
    let v = t.version;
    let patch = |title: &str| TaskPatch { title: Some(title.into()), prompt: None };
    let updated = f.store.update_task(&t.id, v, patch("first"), 1).await.expect("update");
    assert_eq!((updated.version, updated.title.as_str()), (v + 1, "first"));
    let stale = f.store.update_task(&t.id, v, patch("second"), 2).await;
    assert!(matches!(stale, Err(StoreError::VersionConflict { current }) if current == v + 1), "{stale:?}");
    assert_eq!(f.store.get_task(&t.id).await.expect("task").title, "first");
    f.store.claim_tasks("w".into(), 3, LEASE, 1).await.expect("claim");
    let running = f.store.get_task(&t.id).await.expect("task");
    let prompt = f.store.update_task(&t.id, running.version, TaskPatch { title: None, prompt: Some("new".into()) }, 4).await;
    assert!(matches!(prompt, Err(StoreError::Conflict(_))), "prompt edits only while queued: {prompt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kinds_and_failing_executors_are_recorded_as_failed() {
    let f = fixture().await;
    let exec = Arc::new(Counting { fail: Some(ExecError::permanent("model said no")), ..Counting::default() });
    let h = handle(&f.store, Arc::new(SystemClock), pool_config(2, LEASE, 3));
    let sup = Supervisor::new();
    let pool = spawn_pool(h.clone(), Executors::default().with(TaskKind::Noop, exec), &sup);
    let failing = h.submit(new_task(&f.ctx, TaskKind::Noop, None)).await.expect("submit").task.id;
    let unknown = h.submit(new_task(&f.ctx, TaskKind::General, None)).await.expect("submit").task.id;
    wait_status(&f.store, &failing, TaskStatus::Failed).await;
    wait_status(&f.store, &unknown, TaskStatus::Failed).await;
    pool.drain(Duration::from_secs(5)).await;
    assert_eq!(f.store.get_task(&failing).await.expect("t").error.as_deref(), Some("model said no"));
    assert_eq!(f.store.get_task(&unknown).await.expect("t").error.as_deref(), Some("unsupported task kind: general"));
}

/// Panics on every run.
struct Panicking;

impl Executor for Panicking {
    fn execute(&self, _ctx: ExecContext) -> BoxFuture<'_, Result<ExecOutput, ExecError>> {
        Box::pin(async { panic!("executor bug") })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_executor_fails_its_task_and_the_pool_keeps_working() {
    let f = fixture().await;
    let h = handle(&f.store, Arc::new(SystemClock), pool_config(1, LEASE, 3));
    let sup = Supervisor::new();
    let counting = Arc::new(Counting::default());
    let execs = Executors::default().with(TaskKind::General, Arc::new(Panicking)).with(TaskKind::Noop, counting.clone());
    let pool = spawn_pool(h.clone(), execs, &sup);
    let bad = h.submit(new_task(&f.ctx, TaskKind::General, None)).await.expect("submit").task.id;
    let good = h.submit(new_task(&f.ctx, TaskKind::Noop, None)).await.expect("submit").task.id;
    wait_status(&f.store, &bad, TaskStatus::Failed).await;
    wait_status(&f.store, &good, TaskStatus::Succeeded).await;
    assert_eq!(f.store.get_task(&bad).await.expect("task").error.as_deref(), Some("executor panicked"));
    tokio::time::timeout(Duration::from_secs(10), pool.drain(Duration::from_secs(5))).await.expect("the pool drains");
}

/// Quick unless the prompt is "slow", which takes a second.
#[derive(Default)]
struct SlowOrQuick {
    runs: Mutex<HashMap<TaskId, u32>>,
}

impl Executor for SlowOrQuick {
    fn execute(&self, ctx: ExecContext) -> BoxFuture<'_, Result<ExecOutput, ExecError>> {
        Box::pin(async move {
            *self.runs.lock().expect("runs").entry(ctx.task.id.clone()).or_default() += 1;
            if ctx.task.prompt == "slow" {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(ExecOutput { summary: "done".into(), result_path: None })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetched_task_stuck_behind_a_long_one_is_given_back_and_runs_once() {
    let f = fixture().await;
    let exec = Arc::new(SlowOrQuick::default());
    let h = handle(&f.store, Arc::new(SystemClock), pool_config(1, LEASE, 3));
    let sup = Supervisor::new();
    let pool = spawn_pool(h.clone(), Executors::default().with(TaskKind::Noop, exec.clone()), &sup);
    // A run of short tasks turns prefetching on.
    for _ in 0..40 {
        h.submit(new_task(&f.ctx, TaskKind::Noop, None)).await.expect("submit");
    }
    wait_until("the short tasks to finish", Duration::from_secs(20), || async {
        let (queued, running) = f.store.unfinished_task_count().await.ok()?;
        (queued + running == 0).then_some(())
    })
    .await;
    let slow = h.submit(NewTask { prompt: "slow".into(), ..new_task(&f.ctx, TaskKind::Noop, None) }).await.expect("slow").task.id;
    wait_status(&f.store, &slow, TaskStatus::Running).await;
    let quick = h.submit(new_task(&f.ctx, TaskKind::Noop, None)).await.expect("quick").task.id;
    wait_status(&f.store, &quick, TaskStatus::Succeeded).await;
    wait_status(&f.store, &slow, TaskStatus::Succeeded).await;
    pool.drain(Duration::from_secs(5)).await;
    let events: Vec<String> = f.store.task_events(&quick).await.expect("events").into_iter().map(|e| e.event).collect();
    assert_eq!(events, ["created", "claimed", "released", "claimed", "succeeded"], "prefetched while the slow task ran, then given back");
    let task = f.store.get_task(&quick).await.expect("task");
    assert_eq!(task.attempts, 1, "a release does not count as an attempt");
    assert_eq!(exec.runs.lock().expect("runs").get(&quick), Some(&1), "ran exactly once");
}

/// Issue 18, item 5: while the kill switch is on the pool leaves tasks that
/// call the model in the queue (no claim, no attempt) and still runs the
/// others; `resume` and a wake start them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_paused_the_pool_claims_no_task_that_calls_the_model() {
    let f = fixture().await;
    let clock: SharedClock = Arc::new(SystemClock);
    let budget = agent_runtime::budget::Budget::load(
        f.store.clone(),
        clock.clone(),
        agent_runtime::config::BudgetConfig::default(),
        Arc::new(Vec::new()),
        Arc::new(Notify::new()),
    )
    .await
    .expect("budget");
    budget.set_paused(true, None, "test".into()).await.expect("pause");
    let exec = Arc::new(Counting::default());
    let h = handle(&f.store, clock, pool_config(2, LEASE, 3)).with_switch(budget.switch().clone());
    let sup = Supervisor::new();
    let executors = Executors::default().with(TaskKind::Noop, exec.clone()).with(TaskKind::General, exec.clone());
    let pool = spawn_pool(h.clone(), executors, &sup);
    let general = h.submit(new_task(&f.ctx, TaskKind::General, None)).await.expect("general").task.id;
    let noop = h.submit(new_task(&f.ctx, TaskKind::Noop, None)).await.expect("noop").task.id;
    // The noop task, queued after the general one, runs: the pool claimed past the general task.
    wait_status(&f.store, &noop, TaskStatus::Succeeded).await;
    let events: Vec<String> = f.store.task_events(&general).await.expect("events").into_iter().map(|e| e.event).collect();
    assert_eq!(events, ["created"], "never claimed while paused");
    budget.set_paused(false, None, "test".into()).await.expect("resume");
    h.wake();
    wait_status(&f.store, &general, TaskStatus::Succeeded).await;
    assert_eq!(f.store.get_task(&general).await.expect("task").attempts, 1);
    pool.drain(Duration::from_secs(5)).await;
}
