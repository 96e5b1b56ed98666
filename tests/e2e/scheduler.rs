//! The scheduler: in-process over a real store with a manual clock (so
//! schedules run without sleeping), and through the real binary (a scripted
//! LLM, `kill -9`, the workspace watcher).

use crate::support::daemon::Daemon;
use crate::support::llm::{FakeLlm, Step, llm_env};
use agent_runtime::clock::{Clock, ManualClock, SharedClock, rfc3339};
use agent_runtime::config::{Config, EnvSource};
use agent_runtime::domain::{CatchUp, ChatRef, Context, ObjectiveId, TaskStatus};
use agent_runtime::orchestrator::OrchestratorHandle;
use agent_runtime::scheduler::Scheduler;
use agent_runtime::store::{FinishOutcome, NewAudit, NewObjective, Objective, RetryPolicy, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn at(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).expect("time").timestamp_millis()
}

/// A store, a manual clock and a scheduler over them (no worker pool: tasks stay queued unless a test runs them).
struct Fx {
    _dir: tempfile::TempDir,
    store: Store,
    clock: ManualClock,
    scheduler: Scheduler,
    ctx: Context,
    config: Config,
}

impl Fx {
    async fn new(start: i64, env: &[(&str, &str)]) -> Fx {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pairs: Vec<(String, String)> = vec![("AGENT_RUNTIME_DATA_DIR".into(), dir.path().display().to_string())];
        pairs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::read(&EnvSource::from_pairs(pairs)).config;
        let store = Store::open(&config.paths.db_path).expect("store");
        store.set_objective_pause_after(config.scheduler.max_consecutive_failures).await.expect("policy");
        let clock = ManualClock::new(start);
        let shared: SharedClock = Arc::new(clock.clone());
        let orch =
            OrchestratorHandle::new(store.clone(), shared.clone(), config.orchestrator.clone(), config.notify, Arc::new(Notify::new()));
        let scheduler = Scheduler::new(store.clone(), orch, shared, config.scheduler.clone());
        let ctx = store.ensure_context(&ChatRef::new("test", "room").expect("chat"), "room", start).await.expect("context");
        Fx { _dir: dir, store, clock, scheduler, ctx, config }
    }

    async fn objective(&self, trigger: &str, cron: Option<&str>, tz: &str, next: Option<i64>, catch_up: CatchUp) -> Objective {
        let new = NewObjective {
            workspace_id: self.ctx.workspace_id.clone(),
            context_id: self.ctx.id.clone(),
            title: format!("{trigger} {}", cron.unwrap_or("")),
            prompt: "Report".into(),
            trigger_type: trigger.into(),
            event_key: None,
            event_filter: None,
            cron_expr: cron.map(str::to_string),
            timezone: tz.into(),
            run_at: (trigger == "once").then_some(next).flatten(),
            catch_up,
            active: true,
            next_run_at: next,
            created_by: "test".into(),
        };
        self.store.create_objective(new, Vec::<NewAudit>::new(), self.clock.now_ms()).await.expect("objective")
    }

    /// (trigger, outcome, scheduled_at) of every run, oldest first.
    async fn runs(&self, id: &ObjectiveId) -> Vec<(String, String, i64)> {
        let mut r: Vec<_> = self
            .store
            .objective_runs(id, None, 500)
            .await
            .expect("runs")
            .into_iter()
            .map(|r| (r.trigger.as_str().to_string(), r.outcome.as_str().to_string(), r.scheduled_at))
            .collect();
        r.reverse();
        r
    }

    /// Tasks whose run key belongs to `id`, and how many distinct keys they have.
    fn task_keys(&self, id: &ObjectiveId) -> (usize, usize) {
        let c = rusqlite::Connection::open(&self.config.paths.db_path).expect("db");
        let pat = format!("objective:{id}:%");
        let n: i64 = c.query_row("SELECT COUNT(*) FROM tasks WHERE run_key LIKE ?1", [&pat], |r| r.get(0)).expect("count");
        let d: i64 = c.query_row("SELECT COUNT(DISTINCT run_key) FROM tasks WHERE run_key LIKE ?1", [&pat], |r| r.get(0)).expect("count");
        (n as usize, d as usize)
    }
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    for _ in 0..400 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_minute_objective_fires_ten_times_in_ten_simulated_minutes_without_sleeping() {
    let start = at("2026-12-05T10:00:30Z");
    let f = Fx::new(start, &[]).await;
    let o = f.objective("schedule", Some("* * * * *"), "UTC", Some(at("2026-12-05T10:01:00Z")), CatchUp::Latest).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(f.scheduler.clone().run(stop.clone()));
    for minute in 1..=10 {
        // The loop sleeps on the manual clock; moving it wakes the loop at once.
        f.clock.set(start + minute * MIN);
        eventually(&format!("run {minute}"), || async { f.runs(&o.id).await.len() == minute as usize }).await;
    }
    let runs = f.runs(&o.id).await;
    assert!(runs.iter().all(|(t, out, _)| t == "schedule" && out == "queued"), "{runs:?}");
    let times: Vec<i64> = runs.iter().map(|r| r.2).collect();
    assert_eq!(times, (1..=10).map(|m| at("2026-12-05T10:00:00Z") + m * MIN).collect::<Vec<_>>());
    assert_eq!(f.task_keys(&o.id), (10, 10), "one task per scheduled time");
    let o = f.store.get_objective(&o.id).await.expect("objective");
    assert_eq!(o.next_run_at, Some(at("2026-12-05T10:11:00Z")));

    // A new objective wakes the sleeping loop at once: it is due now and fires with no clock move.
    let soon = f.objective("schedule", Some("@hourly"), "UTC", Some(f.clock.now_ms()), CatchUp::Latest).await;
    eventually("a new due objective fires without a clock move", || async { f.runs(&soon.id).await.len() == 1 }).await;
    stop.cancel();
    run.await.expect("scheduler loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_hour_gap_yields_exactly_the_documented_rows_for_each_catch_up_policy() {
    // Due at 10:00; the runtime comes back at 12:30: 10:00, 11:00 and 12:00 were missed.
    let f = Fx::new(at("2026-12-05T09:30:00Z"), &[("AGENT_RUNTIME_OBJECTIVE_CATCH_UP_MAX", "2")]).await;
    let ten = at("2026-12-05T10:00:00Z");
    let latest = f.objective("schedule", Some("0 * * * *"), "UTC", Some(ten), CatchUp::Latest).await;
    let all = f.objective("schedule", Some("0 * * * *"), "UTC", Some(ten), CatchUp::All).await;
    let none = f.objective("schedule", Some("0 * * * *"), "UTC", Some(ten), CatchUp::None).await;
    f.clock.set(at("2026-12-05T12:30:00Z"));
    assert_eq!(f.scheduler.fire_due().await.expect("fire"), 1 + 2);
    let h = |n: i64| ten + n * HOUR;
    let row = |o: &str, t| ("catch_up".to_string(), o.to_string(), t);
    assert_eq!(f.runs(&latest.id).await, [row("skipped", h(0)), row("skipped", h(1)), row("queued", h(2))]);
    assert_eq!(f.runs(&all.id).await, [row("skipped", h(0)), row("queued", h(1)), row("queued", h(2))], "the newest two (limit 2)");
    assert_eq!(f.runs(&none.id).await, [row("skipped", h(0)), row("skipped", h(1)), row("skipped", h(2))]);
    let skipped = f.store.objective_runs(&all.id, None, 10).await.expect("runs");
    let reason = skipped.iter().find(|r| r.scheduled_at == h(0)).and_then(|r| r.error.clone()).expect("a reason");
    assert!(reason.contains("catch-up limit"), "{reason}");
    for o in [&latest, &all, &none] {
        assert_eq!(f.store.get_objective(&o.id).await.expect("o").next_run_at, Some(h(3)));
    }
    // Firing again at the same time does nothing: every time is accounted for, once.
    assert_eq!(f.scheduler.fire_due().await.expect("again"), 0);
    assert_eq!(f.runs(&latest.id).await.len(), 3);
    assert_eq!(f.task_keys(&all.id), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daylight_saving_changes_in_berlin_fire_a_daily_time_exactly_once_and_once_objectives_once() {
    for (from, to, expected) in [
        // Spring forward (29 March, 02:00 → 03:00): the skipped 02:30 fires at 03:00 CEST.
        ("2026-03-27T23:00:00Z", "2026-03-30T23:00:00Z", ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
        // Fall back (25 October, 03:00 → 02:00): the repeated 02:30 fires once.
        ("2026-10-23T23:00:00Z", "2026-10-26T23:00:00Z", ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
    ] {
        let f = Fx::new(at(from), &[]).await;
        let s = agent_runtime::domain::Schedule::parse("30 2 * * *", "Europe/Berlin").expect("schedule");
        let o = f.objective("schedule", Some("30 2 * * *"), "Europe/Berlin", s.next_after(at(from)), CatchUp::Latest).await;
        // Ten-minute steps through three days, firing what is due at each.
        let mut t = at(from);
        while t < at(to) {
            t += 10 * MIN;
            f.clock.set(t);
            f.scheduler.fire_due().await.expect("fire");
        }
        let runs = f.runs(&o.id).await;
        let fired: Vec<String> = runs.iter().map(|r| rfc3339(r.2)).collect();
        assert_eq!(fired, expected, "{runs:?}");
        assert!(runs.iter().all(|r| r.0 == "schedule"), "each on time: {runs:?}");
    }

    let f = Fx::new(at("2026-12-05T09:00:00Z"), &[]).await;
    let once = f.objective("once", None, "UTC", Some(at("2026-12-05T09:30:00Z")), CatchUp::Latest).await;
    for step in 1..=6 {
        f.clock.set(at("2026-12-05T09:00:00Z") + step * 15 * MIN);
        f.scheduler.fire_due().await.expect("fire");
    }
    assert_eq!(f.runs(&once.id).await, [("schedule".to_string(), "queued".to_string(), at("2026-12-05T09:30:00Z"))]);
    let after = f.store.get_objective(&once.id).await.expect("once");
    assert!(!after.active && after.next_run_at.is_none(), "a once objective deactivates after its run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_follow_their_tasks_real_end_and_five_real_failures_pause_the_objective_with_an_admin_notice() {
    let f = Fx::new(at("2026-12-05T09:00:00Z"), &[]).await;
    let admin = f.store.ensure_context(&ChatRef::new("test", "admins").expect("chat"), "admins", f.clock.now_ms()).await.expect("ctx");
    f.store.set_context_admin(&admin.id, true, Vec::new(), f.clock.now_ms()).await.expect("admin");
    let o = f.objective("schedule", Some("@daily"), "UTC", Some(at("2026-12-06T00:00:00Z")), CatchUp::Latest).await;
    let retry = RetryPolicy { base: Duration::ZERO, max: Duration::ZERO };
    let notifier = agent_runtime::store::Notifier { config: f.config.notify, render: agent_runtime::orchestrator::render_notice };

    // One success: queued → running → succeeded, with its duration.
    f.scheduler.run_now(&o.id).await.expect("run now");
    let t = f.store.claim_tasks("w".into(), f.clock.now_ms(), Duration::from_secs(30), 10).await.expect("claim");
    assert_eq!(f.runs(&o.id).await[0].1, "running");
    f.clock.advance(1500);
    let done = f
        .store
        .finish_task(
            &t[0].id,
            "w".into(),
            FinishOutcome::Succeeded { summary: "ok".into(), result_path: None },
            retry,
            notifier,
            f.clock.now_ms(),
        )
        .await
        .expect("finish");
    assert_eq!(done.status, TaskStatus::Succeeded);
    let run = f.store.objective_runs(&o.id, None, 1).await.expect("runs").remove(0);
    assert_eq!((run.trigger.as_str(), run.outcome.as_str(), run.duration_ms), ("manual", "succeeded", Some(1500)));

    // Five real failures in a row.
    for i in 0..5 {
        f.clock.advance(1000);
        f.scheduler.run_now(&o.id).await.expect("run now");
        let t = f.store.claim_tasks("w".into(), f.clock.now_ms(), Duration::from_secs(30), 10).await.expect("claim");
        assert_eq!(t.len(), 1);
        let failed = FinishOutcome::Failed { error: format!("model said no {i}"), retryable: false };
        f.store.finish_task(&t[0].id, "w".into(), failed, retry, notifier, f.clock.now_ms()).await.expect("finish");
        let now = f.store.get_objective(&o.id).await.expect("o");
        assert_eq!(now.active, i < 4, "active after {} failures", i + 1);
    }
    let o = f.store.get_objective(&o.id).await.expect("o");
    assert_eq!((o.run_count, o.success_count, o.failure_count, o.consecutive_failures), (6, 1, 5, 5));
    assert_eq!(o.recent_errors.len(), 5);
    assert_eq!(o.last_error.as_deref(), Some("model said no 4"));
    assert!(o.paused_reason.as_deref().is_some_and(|r| r.contains("5 failed runs in a row")), "{:?}", o.paused_reason);
    assert!(o.next_run_at.is_none());
    let notices = f.store.chat_messages(&admin.chat, 0, 50).await.expect("notices");
    assert!(notices.iter().any(|m| m.body.contains("paused itself") && m.body.contains(o.id.as_str())), "{notices:?}");
    let events = f.store.events_after(0, 1000, vec!["objective.".into()]).await.expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"objective.fired") && kinds.contains(&"objective.run_finished") && kinds.contains(&"objective.paused"),
        "{kinds:?}"
    );
}

// ---- through the real binary ----

async fn context_id(d: &Daemon) -> (String, String) {
    d.chat("/help").await;
    let (_, list) = d.get("/api/v1/contexts?limit=10").await;
    let c = &list["items"][0];
    (c["id"].as_str().expect("id").to_string(), c["workspace_id"].as_str().expect("ws").to_string())
}

async fn runs_of(d: &Daemon, id: &str) -> Vec<Value> {
    let (s, v) = d.get(&format!("/api/v1/objectives/{id}/runs")).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().expect("items").clone()
}

async fn wait_runs(d: &Daemon, id: &str, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..300 {
        let runs = runs_of(d, id).await;
        if pred(&runs) {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}: {:?}", runs_of(d, id).await);
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_objective_fires_succeeds_through_the_llm_and_five_real_failures_pause_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let llm = FakeLlm::start().await;
    let mut env = llm_env(Some(&llm));
    env.push(("AGENT_RUNTIME_TASK_MAX_ATTEMPTS", "1".into()));
    let d = Daemon::start(dir.path(), &env).await;
    let (cid, _) = context_id(&d).await;
    let (s, c) = d.post(&format!("/api/v1/contexts/{cid}/admin"), &json!({"admin": true})).await;
    assert_eq!(s, 200, "{c}");
    llm.push([Step::Reply("Nothing changed overnight.".into())]);
    let (s, o) = d
        .post(
            "/api/v1/objectives",
            &json!({"context_id": cid, "title": "Digest", "prompt": "Summarise", "cron_expr": "@daily", "next_run_unix": now_unix() + 2}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_str().expect("id").to_string();
    let runs = wait_runs(&d, &id, "the first run to succeed", |r| r.first().is_some_and(|r| r["outcome"] == "succeeded")).await;
    assert_eq!((runs.len(), runs[0]["trigger"].as_str()), (1, Some("schedule")));
    let task = d.wait_task(runs[0]["task_id"].as_str().expect("task"), "succeeded", |t| t["status"] == "succeeded").await;
    assert_eq!(task["kind"], "objective");
    let (_, o) = d.get(&format!("/api/v1/objectives/{id}")).await;
    assert_eq!((o["run_count"].as_i64(), o["success_count"].as_i64(), o["last_outcome"].as_str()), (Some(1), Some(1), Some("succeeded")));
    assert!(o["next_run_unix"].as_i64().expect("next") > now_unix(), "the schedule moved on: {o}");

    // The model fails (500, no retries here): each run ends `failed`; the fifth pauses the objective.
    llm.push((0..5).map(|_| Step::Status(500, "{\"error\":{\"message\":\"overloaded\"}}".into())));
    for n in 1..=5 {
        let (s, r) = d.post(&format!("/api/v1/objectives/{id}/run"), &json!({})).await;
        assert_eq!(s, 202, "{r}");
        wait_runs(&d, &id, "a failed run", |r| r.iter().filter(|r| r["outcome"] == "failed").count() == n).await;
    }
    let (_, o) = d.get(&format!("/api/v1/objectives/{id}")).await;
    assert_eq!(
        (o["active"].as_bool(), o["health_state"].as_str(), o["failure_streak"].as_i64()),
        (Some(false), Some("auto_paused"), Some(5)),
        "{o}"
    );
    assert!(o["auto_paused_reason"].as_str().expect("reason").contains("5 failed runs in a row"), "{o}");
    let db = d.db();
    let notices: i64 = db
        .query_row("SELECT COUNT(*) FROM outbox WHERE external_id = (SELECT external_id FROM contexts WHERE id = ?1) AND body LIKE '%paused itself%'", [&cid], |r| r.get(0))
        .expect("outbox");
    assert_eq!(notices, 1, "the admin chat gets one notice");
    // Resuming clears the reason.
    let (s, r) = d.post("/api/v1/objectives/active", &json!({"id": id, "active": true})).await;
    assert_eq!((s, r["health_state"].as_str(), r["auto_paused_reason"].as_str()), (200, Some("degraded"), Some("")), "{r}");
    // Unknown ids on run-now are a 404 naming the objective.
    let (s, b) = d.post("/api/v1/objectives/obj_missing/run", &json!({})).await;
    assert_eq!(s, 404, "{b}");
    assert!(b["error"].as_str().expect("error").contains("objective"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_run_and_across_a_due_time_loses_no_time_and_duplicates_no_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let llm = FakeLlm::start().await;
    let mut env = llm_env(Some(&llm));
    env.push(("AGENT_RUNTIME_OBJECTIVE_MISFIRE_GRACE_SECONDS", "1".into()));
    let mut d = Daemon::start(dir.path(), &env).await;
    let (cid, _) = context_id(&d).await;
    // The first run's model call never answers: the task is running when the daemon dies.
    llm.push([Step::Stall]);
    let first = now_unix() + 2;
    let (s, o) = d
        .post(
            "/api/v1/objectives",
            &json!({"context_id": cid, "title": "Watch", "prompt": "Check", "cron_expr": "@hourly", "next_run_unix": first}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_str().expect("id").to_string();
    wait_runs(&d, &id, "the first run to be running", |r| r.first().is_some_and(|r| r["outcome"] == "running")).await;
    // The next time is set to come while the daemon is down.
    let second = now_unix() + 3;
    let (s, u) = d.post("/api/v1/objectives/update", &json!({"id": id, "next_run_unix": second})).await;
    assert_eq!(s, 200, "{u}");
    d.kill9();
    tokio::time::sleep(Duration::from_secs((second - now_unix()).max(0) as u64 + 2)).await;

    let d = Daemon::start(dir.path(), &env).await;
    let runs = wait_runs(&d, &id, "both runs to succeed", |r| r.len() == 2 && r.iter().all(|r| r["outcome"] == "succeeded")).await;
    let mut seen: Vec<(i64, &str)> =
        runs.iter().map(|r| (r["scheduled_at_unix"].as_i64().expect("t"), r["trigger"].as_str().expect("trigger"))).collect();
    seen.sort();
    assert_eq!(seen, [(first, "schedule"), (second, "catch_up")], "the missed time fired once, by catch_up=latest: {runs:?}");
    let db = d.db();
    let (n, distinct): (i64, i64) = db
        .query_row("SELECT COUNT(*), COUNT(DISTINCT run_key) FROM tasks WHERE run_key LIKE ?1", [format!("objective:{id}:%")], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("tasks");
    assert_eq!((n, distinct), (2, 2), "one task per scheduled time across the crash");
    let recovered: i64 =
        db.query_row("SELECT COUNT(*) FROM task_events WHERE event = 'recovered_at_start'", [], |r| r.get(0)).expect("events");
    assert_eq!(recovered, 1, "the run that was running was requeued at start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_a_note_fires_its_event_objective_once_and_the_runtimes_own_files_fire_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let (cid, _) = context_id(&d).await;
    let (s, o) = d
        .post(
            "/api/v1/objectives",
            &json!({"context_id": cid, "title": "Notes", "prompt": "Summarise the change", "trigger_type": "event", "event_key": "markdown.updated", "event_filter": "notes/**/*.md"}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_str().expect("id").to_string();
    let ws_root = d.data().join("workspaces");
    let ws = std::fs::read_dir(&ws_root)
        .expect("workspaces")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a workspace");
    // The watcher is up (it reports healthy once it watches).
    for _ in 0..100 {
        let (_, hb) = d.get("/api/v1/heartbeat").await;
        if hb["components"].as_array().is_some_and(|c| c.iter().any(|c| c["name"] == "watcher" && c["state"] == "healthy")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An editor's save: several writes and a rename onto the name.
    std::fs::create_dir_all(ws.join("notes/sub")).expect("mkdir");
    std::fs::write(ws.join("notes/sub/x.md"), "# One\n").expect("write");
    std::fs::write(ws.join("notes/sub/x.md"), "# One\nmore\n").expect("write");
    std::fs::write(ws.join("notes/sub/.x.md.tmp"), "# One\nmore\nagain\n").expect("write");
    std::fs::rename(ws.join("notes/sub/.x.md.tmp"), ws.join("notes/sub/x.md")).expect("rename");
    // Not matching, or the runtime's own: nothing.
    std::fs::write(ws.join("elsewhere.md"), "x").expect("write");
    std::fs::create_dir_all(ws.join("logs/chats/x")).expect("mkdir");
    std::fs::write(ws.join("logs/chats/x/notes.md"), "x").expect("write");
    let runs = wait_runs(&d, &id, "the event run", |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs_after = runs_of(&d, &id).await;
    assert_eq!(runs_after.len(), 1, "one run for the save, not one per write: {runs_after:?}");
    assert_eq!((runs[0]["trigger"].as_str(), runs[0]["path"].as_str()), (Some("event"), Some("notes/sub/x.md")));
    let task = d.wait_task(runs[0]["task_id"].as_str().expect("task"), "queued", |_| true).await;
    let prompt = task["prompt"].as_str().expect("prompt");
    assert!(prompt.contains("`notes/sub/x.md`") && !prompt.contains(&ws_root.display().to_string()), "relative path only: {prompt}");
    // A chat message writes the chat log: still nothing more.
    d.chat("/help").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs_of(&d, &id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objective_input_errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let (cid, _) = context_id(&d).await;
    let past = rfc3339((now_unix() - 60) * 1000);
    for (body, needle) in [
        (json!({"cron_expr": "61 * * * *"}), "the minute field \"61\""),
        (json!({"cron_expr": "@daily", "catch_up": "sometimes"}), "catch_up must be latest, all or none"),
        (json!({"trigger_type": "once", "run_at": past}), "run_at"),
        (json!({"trigger_type": "once", "run_at": "tomorrow"}), "run_at \"tomorrow\" is not an RFC 3339 time"),
        (json!({"trigger_type": "once"}), "run_at (RFC 3339) is required"),
        (json!({"trigger_type": "event", "event_key": "markdown.updated", "event_filter": "../other/*.md"}), "event_filter"),
        (json!({"trigger_type": "event", "event_key": "markdown.updated", "event_filter": "/etc/*.md"}), "event_filter"),
        (json!({"trigger_type": "event", "event_key": "file.deleted"}), "markdown.updated"),
        (json!({"cron_expr": "@daily", "event_filter": "*.md"}), "event_filter applies to event objectives only"),
    ] {
        let mut b = json!({"context_id": cid, "title": "x", "prompt": "y"});
        for (k, v) in body.as_object().expect("obj") {
            b[k] = v.clone();
        }
        let (s, r) = d.post("/api/v1/objectives", &b).await;
        assert_eq!(s, 400, "{b} → {r}");
        assert!(r["error"].as_str().expect("error").contains(needle), "{b} → {r}");
    }
    let (_, list) = d.get("/api/v1/objectives?active_only=false").await;
    assert_eq!(list["count"], 0, "nothing stored");
    // `@every` lists its first run: next_runs_unix starts at next_run_unix.
    let first = now_unix() + 3600;
    let (s, o) = d
        .post(
            "/api/v1/objectives",
            &json!({"context_id": cid, "title": "x", "prompt": "y", "cron_expr": "@every 2h", "next_run_unix": first}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    let runs: Vec<i64> = o["next_runs_unix"].as_array().expect("runs").iter().filter_map(Value::as_i64).collect();
    assert_eq!(runs, (0..5).map(|i| first + i * 7200).collect::<Vec<_>>());
    // A once objective in the future; its view shows the time; runs page empty.
    let when = rfc3339((now_unix() + 7200) * 1000);
    let (s, once) = d
        .post(
            "/api/v1/objectives",
            &json!({"context_id": cid, "title": "x", "prompt": "y", "trigger_type": "once", "run_at": when, "catch_up": "none"}),
        )
        .await;
    assert_eq!(s, 201, "{once}");
    assert_eq!((once["catch_up"].as_str(), once["next_runs_unix"].as_array().map(Vec::len)), (Some("none"), Some(1)));
    assert_eq!(runs_of(&d, once["id"].as_str().expect("id")).await.len(), 0);
    let (s, b) = d.get("/api/v1/objectives/obj_missing/runs").await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = d.get(&format!("/api/v1/objectives/{}/runs?before=0", once["id"].as_str().expect("id"))).await;
    assert_eq!(s, 400, "{b}");
}
