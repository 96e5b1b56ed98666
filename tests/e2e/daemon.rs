//! The real binary: a task through the scripted LLM end to end, a crash
//! (kill -9) in the middle of a task, a graceful SIGTERM, and one `serve`
//! per data directory.

use crate::support::daemon::{Daemon, command};
use crate::support::llm::{FakeLlm, Step};
use crate::support::wait_until;
use serde_json::Value;
use std::time::{Duration, Instant};

fn llm_env(llm: &FakeLlm) -> Vec<(&'static str, String)> {
    vec![("AGENT_RUNTIME_LLM_BASE_URL", llm.base_url.clone()), ("AGENT_RUNTIME_LLM_MODEL", "test-model".into())]
}

fn task_id_from(reply: &str) -> String {
    let id = reply.strip_prefix("Task queued: `").and_then(|r| r.strip_suffix('`'));
    id.unwrap_or_else(|| panic!("not a task-queued reply: {reply:?}")).to_string()
}

async fn notices(d: &Daemon) -> Vec<Value> {
    let (_, v) = d.get("/api/v1/chat/messages?after=0").await;
    v["items"].as_array().cloned().unwrap_or_default().into_iter().filter(|m| m["kind"] == "task_notice").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_through_the_llm_into_a_result_file_usage_row_and_notice() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Reply("An old silent pond\nA frog jumps into the pond\nSplash! Silence again.".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &llm_env(&llm)).await;

    let id = task_id_from(&d.chat("/task write a haiku").await);
    let task = d.wait_task(&id, "haiku task to succeed", |t| t["status"] == "succeeded").await;
    assert_eq!(task["attempts"], 1);
    let events: Vec<&str> = task["events"].as_array().expect("events").iter().map(|e| e["event"].as_str().unwrap_or("")).collect();
    assert_eq!(events, ["created", "claimed", "succeeded"]);

    let rel = task["result_path"].as_str().expect("result_path");
    assert!(rel.starts_with("tasks/") && rel.ends_with(&format!("{id}.md")), "{rel}");
    let ws = task["workspace_id"].as_str().expect("ws");
    let file = std::fs::read_to_string(d.data().join("workspaces").join(ws).join(rel)).expect("result file");
    assert!(file.contains(&format!("- ID: `{id}`")) && file.contains("## Final Output\n\nAn old silent pond"), "{file}");

    let req = &llm.requests()[0];
    assert_eq!(req.body["model"], "test-model");
    assert_eq!(req.body["messages"][1]["content"], "write a haiku");
    assert!(req.body["messages"][0]["content"].as_str().unwrap_or("").contains("community members"), "system prompt sent");

    let usage: (String, String, i64, i64, i64) = d
        .db()
        .query_row("SELECT provider, model, prompt_tokens, completion_tokens, total_tokens FROM llm_usage WHERE task_id = ?1", [&id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("llm_usage row");
    assert_eq!(usage, ("openai".into(), "test-model-fake".into(), 11, 7, 18));

    let n = wait_until("completion notice", Duration::from_secs(10), || async { Some(notices(&d).await).filter(|n| !n.is_empty()) }).await;
    assert_eq!(n.len(), 1);
    assert!(n[0]["body"].as_str().unwrap_or("").contains(&format!("Task `{id}` succeeded")), "{}", n[0]);
    assert_eq!(n[0]["status"], "sent");

    let log = std::fs::read_to_string(d.data().join("workspaces").join(ws).join("logs/chats/codex/codex-cli.md")).expect("chat log");
    assert!(log.contains("`INBOUND`") && log.contains("/task write a haiku") && log.contains("`OUTBOUND`"), "{log}");
}

// Regression (issue 14, item 8): after a kill -9 the task stayed `running`
// until its 30 s lease ran out. The restart holds the data directory's lock,
// which proves the old process is gone, so it requeues the task before any
// worker starts: the second attempt reaches the model at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_task_then_restart_resumes_it_at_once_and_completes_it_exactly_once() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Stall, Step::Reply("finished after the crash".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = llm_env(&llm); // the default 30 s lease
    let mut d = Daemon::start(dir.path(), &env).await;
    let id = task_id_from(&d.chat("/task survive a crash").await);
    llm.wait_for_requests(1, Duration::from_secs(10)).await;
    d.wait_task(&id, "task running", |t| t["status"] == "running").await;
    d.kill9();

    let d = Daemon::start(dir.path(), &env).await;
    let ready = Instant::now();
    llm.wait_for_requests(2, Duration::from_secs(2)).await;
    assert!(ready.elapsed() < Duration::from_secs(2), "second attempt {:?} after readiness", ready.elapsed());
    let task = d.wait_task(&id, "task to succeed after restart", |t| t["status"] == "succeeded").await;
    assert_eq!(task["attempts"], 2, "{task}");
    assert_eq!(task["result_summary"], "finished after the crash");
    assert_eq!(llm.requests().len(), 2, "the model was asked once per attempt");
    let events: Vec<&str> = task["events"].as_array().expect("events").iter().map(|e| e["event"].as_str().unwrap_or("")).collect();
    assert_eq!(events, ["created", "claimed", "recovered_at_start", "claimed", "succeeded"]);
    let n = wait_until("completion notice", Duration::from_secs(10), || async { Some(notices(&d).await).filter(|n| !n.is_empty()) }).await;
    assert_eq!(n.len(), 1, "one notice, not two: {n:?}");
    let ws = task["workspace_id"].as_str().expect("ws");
    let results: usize = walk_md(&d.data().join("workspaces").join(ws).join("tasks"));
    assert_eq!(results, 1, "exactly one result file");
}

// Regression (issue 14, item 7): nothing stopped a second daemon on the same
// data directory, and two deliver every outbox row twice. It is refused
// before it opens anything — with the first one's address too, so the lock
// is checked before the bind — exiting 2 and naming the holder's pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_data_dir_exits_2_naming_the_first_ones_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let addr = d.base.trim_start_matches("https://").to_string();
    let mut second = tokio::process::Command::from(command(dir.path(), &[("AGENT_RUNTIME_HTTP_ADDR", addr)]));
    second.arg("serve").kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), second.output()).await.expect("the second serve exits").expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", d.pid())) && stderr.contains("serve.lock"), "{stderr}");

    assert!(d.chat("/help").await.contains("/task"), "the first one keeps serving");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(d.data().join("agent-runtime/serve.json")).expect("state")).expect("json");
    assert_eq!(state["pid"], d.pid(), "the first one's state file is untouched");
}

fn walk_md(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.flatten()
            .map(|e| if e.path().is_dir() { walk_md(&e.path()) } else { usize::from(e.path().extension().is_some_and(|x| x == "md")) })
            .sum()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_task_finish_flushes_the_outbox_and_exits_0() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Delayed(Duration::from_millis(1500), "done before exit".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &llm_env(&llm)).await;
    let id = task_id_from(&d.chat("/task finish during shutdown").await);
    llm.wait_for_requests(1, Duration::from_secs(10)).await;
    let status = d.terminate().await;
    assert!(status.success(), "exit status {status:?}\n{}", d.log());
    let db = d.db();
    let (st, attempts): (String, i64) =
        db.query_row("SELECT status, attempts FROM tasks WHERE id = ?1", [&id], |r| Ok((r.get(0)?, r.get(1)?))).expect("task");
    assert_eq!((st.as_str(), attempts), ("succeeded", 1));
    let pending: i64 = db.query_row("SELECT COUNT(*) FROM outbox WHERE status != 'sent'", [], |r| r.get(0)).expect("outbox");
    assert_eq!(pending, 0, "the outbox was flushed");
    let notices: i64 =
        db.query_row("SELECT COUNT(*) FROM outbox WHERE kind = 'task_notice' AND task_id = ?1", [&id], |r| r.get(0)).expect("notice");
    assert_eq!(notices, 1);
    let unhandled: i64 = db.query_row("SELECT COUNT(*) FROM inbox WHERE status != 'handled'", [], |r| r.get(0)).expect("inbox");
    assert_eq!(unhandled, 0);
    assert!(!d.data().join("agent-runtime/serve.json").exists(), "state file removed on clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_a_task_that_outlives_the_grace_period() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Stall, Step::Reply("second life".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = llm_env(&llm);
    env.push(("AGENT_RUNTIME_SHUTDOWN_GRACE_SECONDS", "1".into()));
    let mut d = Daemon::start(dir.path(), &env).await;
    let id = task_id_from(&d.chat("/task too slow to finish").await);
    llm.wait_for_requests(1, Duration::from_secs(10)).await;
    assert!(d.terminate().await.success(), "{}", d.log());
    let (st, attempts): (String, i64) =
        d.db().query_row("SELECT status, attempts FROM tasks WHERE id = ?1", [&id], |r| Ok((r.get(0)?, r.get(1)?))).expect("task");
    assert_eq!((st.as_str(), attempts), ("queued", 0), "released back to the queue, attempt not counted");
    let d = Daemon::start(dir.path(), &env).await;
    let t = d.wait_task(&id, "released task to run after restart", |t| t["status"] == "succeeded").await;
    assert_eq!((t["attempts"].as_i64(), t["result_summary"].as_str()), (Some(1), Some("second life")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_errors_are_retried_when_transient_and_failed_when_not() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Status(503, "overloaded".into()), Step::Reply("worked on retry".into()), Step::Status(400, "bad request".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = llm_env(&llm);
    env.push(("AGENT_RUNTIME_TASK_RETRY_BASE_SECONDS", "1".into()));
    env.push(("AGENT_RUNTIME_DEFAULT_CONCURRENCY", "1".into()));
    let d = Daemon::start(dir.path(), &env).await;
    let retried = task_id_from(&d.chat("/task flaky").await);
    let t = d.wait_task(&retried, "retried task to succeed", |t| t["status"] == "succeeded").await;
    assert_eq!(t["attempts"], 2);
    let refused = task_id_from(&d.chat("/task refused").await);
    let t = d.wait_task(&refused, "4xx task to fail", |t| t["status"] == "failed").await;
    assert_eq!(t["attempts"], 1, "a 4xx is not retried");
    assert!(t["error_message"].as_str().unwrap_or("").contains("HTTP 400"), "{t}");
    let outcomes: Vec<String> = d
        .db()
        .prepare("SELECT outcome FROM llm_usage ORDER BY id")
        .expect("prep")
        .query_map([], |r| r.get(0))
        .expect("q")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(outcomes, ["http_error", "ok", "http_error"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_provider_tasks_fail_at_once_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let id = task_id_from(&d.chat("/task anything").await);
    let t = d.wait_task(&id, "task to fail", |t| t["status"] == "failed").await;
    assert_eq!(t["attempts"], 1);
    assert!(t["error_message"].as_str().unwrap_or("").contains("AGENT_RUNTIME_LLM_API_KEY"), "{t}");
    let reply = d.chat("what's up?").await;
    assert!(reply.contains("/help"), "free text without a model gets a short help: {reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_text_is_answered_by_the_llm_with_the_context_prompt() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Reply("Queues decouple producers from consumers.".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("context")).expect("mkdir");
    std::fs::write(dir.path().join("context/SYSTEM_PROMPT.md"), "Always answer in one sentence.").expect("write");
    let d = Daemon::start(dir.path(), &llm_env(&llm)).await;
    let reply = d.chat("why use a queue?").await;
    assert_eq!(reply, "Queues decouple producers from consumers.");
    let sent = &llm.requests()[0].body;
    assert_eq!(sent["messages"][1]["content"], "why use a queue?");
    let system = sent["messages"][0]["content"].as_str().unwrap_or("");
    assert!(system.contains("Global prompt:\nAlways answer in one sentence."), "{system}");
    let (task_id, ctx): (Option<String>, Option<String>) =
        d.db().query_row("SELECT task_id, context_id FROM llm_usage", [], |r| Ok((r.get(0)?, r.get(1)?))).expect("usage row");
    assert!(task_id.is_none() && ctx.is_some(), "a chat reply is usage of the context, not of a task");
    let tasks: i64 = d.db().query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0)).expect("count");
    assert_eq!(tasks, 0, "free text creates no task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_also_drains_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &[]).await;
    assert!(d.chat("/help").await.contains("/task"));
    let status = d.signal("-INT").await;
    assert!(status.success(), "exit status {status:?}\n{}", d.log());
    assert!(d.log().contains("stopped cleanly"), "{}", d.log());
}

// Regression: two first messages of a new chat could both see an empty log
// file and both write its header (fixed with the chat-log lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_messages_write_one_chat_log_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let bodies: Vec<serde_json::Value> =
        (0..16).map(|i| serde_json::json!({"external_id": "crowd", "text": format!("/help {i}")})).collect();
    let results = futures_util::future::join_all(bodies.iter().map(|b| d.post("/api/v1/chat", b))).await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    let ws = results[0].1["workspace_id"].as_str().expect("ws").to_string();
    let log = std::fs::read_to_string(d.data().join("workspaces").join(ws).join("logs/chats/codex/crowd.md")).expect("log");
    assert_eq!(log.matches("# Chat Log").count(), 1, "{log}");
    assert_eq!(log.matches("`INBOUND`").count(), 16);
}

/// Issue 14, item 11: a notice to a chat whose connector is not running
/// (Telegram turned off) went to the mailbox fallback and was recorded
/// `sent`. It now fails for good, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_to_a_connector_that_is_off_is_failed_with_the_reason_not_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    d.link("telegram", "42", "member").await;
    let (s, v) = d
        .post(
            "/api/v1/chat",
            &serde_json::json!({"connector": "telegram", "external_id": "42", "from_user_id": "42", "text": "/task water the plants"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["reply"].as_str().is_some_and(|r| r.starts_with("Task queued")), "{v}");
    let row = wait_until("the task's notice to settle", Duration::from_secs(15), || async {
        d.db()
            .query_row(
                "SELECT status, COALESCE(last_error, '') FROM outbox WHERE connector = 'telegram' AND kind = 'task_notice' AND status != 'pending'",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .ok()
    })
    .await;
    assert_eq!(row.0, "failed", "{row:?}");
    assert!(row.1.contains("the telegram connector is not running (AGENT_RUNTIME_TELEGRAM_TOKEN is not set)"), "{row:?}");
}
