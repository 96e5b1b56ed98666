//! Issue 18, item 5: budgets and the kill switch, enforced before each
//! model call, through the real binary and the scripted LLM. A refused call
//! never reaches the LLM server; the chat hears why; admins hear once a day;
//! a paused task waits in the queue and finishes after `resume`.

use crate::support::daemon::{Daemon, command, tls_client};
use crate::support::llm::{FakeLlm, Step, llm_env};
use crate::support::wait_until;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Says `text` in the API chat `chat` as `user` (linked or not); returns the reply.
async fn say(d: &Daemon, chat: &str, user: &str, text: &str) -> String {
    let (s, v) = d.post("/api/v1/chat", &json!({"connector": "codex", "external_id": chat, "from_user_id": user, "text": text})).await;
    assert_eq!(s, 200, "{text}: {v}");
    v["reply"].as_str().unwrap_or_default().to_string()
}

/// Bodies queued to the API chat `chat`.
fn bodies_to(d: &Daemon, chat: &str) -> Vec<String> {
    let db = d.db();
    let mut stmt = db.prepare("SELECT body FROM outbox WHERE connector = 'codex' AND external_id = ?1 ORDER BY id").expect("prepare");
    stmt.query_map([chat], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
}

fn usage_outcomes(d: &Daemon) -> Vec<String> {
    let db = d.db();
    let mut stmt = db.prepare("SELECT outcome FROM llm_usage ORDER BY id").expect("prepare");
    stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
}

/// An admin channel `ops` with the admin `boss` in it.
async fn admin_channel(d: &Daemon) {
    d.link("codex", "boss", "admin").await;
    assert!(say(d, "ops", "boss", "/admin-channel enable").await.contains("Admin channel enabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_a_tiny_daily_limit_no_request_is_made_the_chat_hears_why_and_admins_hear_once() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Reply("first answer".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = llm_env(Some(&llm));
    // One answer of the fake costs 18 tokens.
    env.push(("AGENT_RUNTIME_LLM_DAILY_TOKENS", "10".into()));
    let d = Daemon::start(dir.path(), &env).await;
    admin_channel(&d).await;
    d.link("codex", "mia", "member").await;
    assert_eq!(say(&d, "team", "mia", "hello?").await, "first answer", "the day's first call starts under the limit");
    assert_eq!(llm.requests().len(), 1);

    let reply = say(&d, "team", "mia", "and again?").await;
    assert!(reply.contains("budget reached") && reply.contains("AGENT_RUNTIME_LLM_DAILY_TOKENS"), "{reply}");
    assert!(reply.contains("18 tokens of 10 tokens used") && reply.contains("resets at"), "{reply}");
    assert_eq!(llm.requests().len(), 1, "the refused call never reached the LLM server");

    // A task fails at once with the reason (not retried), and its chat is told.
    let queued = say(&d, "team", "mia", "/task summarize the notes").await;
    let id = queued.strip_prefix("Task queued: `").and_then(|r| r.strip_suffix('`')).expect("task id").to_string();
    let task = d.wait_task(&id, "the task fails", |t| t["status"] == "failed").await;
    assert_eq!(task["attempts"], 1, "a budget error is not retried: {task}");
    assert!(task["error_message"].as_str().unwrap_or("").contains("budget reached"), "{task}");
    let notice = wait_until("the failure notice", Duration::from_secs(10), || async {
        bodies_to(&d, "team").into_iter().find(|b| b.contains(&format!("Task `{id}` failed")))
    })
    .await;
    assert!(notice.contains("budget reached"), "{notice}");
    assert_eq!(llm.requests().len(), 1);

    // Two refusals of the same limit, one notice to the admin channel.
    let notices: Vec<String> = bodies_to(&d, "ops").into_iter().filter(|b| b.starts_with("Model calls stopped")).collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("AGENT_RUNTIME_LLM_DAILY_TOKENS"), "{}", notices[0]);
    assert_eq!(usage_outcomes(&d), ["ok", "budget", "budget"], "every refused call is a usage row");

    // Usage shows the spend against the limit, in the API and the CLI.
    let (s, u) = d.get("/api/v1/usage").await;
    assert_eq!(s, 200, "{u}");
    assert_eq!((u["budget"]["global"]["tokens"].as_u64(), u["budget"]["global"]["limits"]["tokens"].as_u64()), (Some(18), Some(10)), "{u}");
    let out = command(dir.path(), &[]).args(["usage"]).output().expect("usage");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("18 of 10 tokens") && text.contains("agent: running"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_context_limit_stops_that_chat_only() {
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &llm_env(Some(&llm))).await;
    d.link("codex", "mia", "member").await;
    say(&d, "team", "mia", "hello?").await;
    let ctx: String = d.db().query_row("SELECT id FROM contexts WHERE external_id = 'team'", [], |r| r.get(0)).expect("context");
    let out = command(dir.path(), &[]).args(["context", "budget", &ctx, "--daily-tokens", "5"]).output().expect("context budget");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&format!("context {ctx}: 18 of 5 tokens")), "{text}");
    let reply = say(&d, "team", "mia", "more?").await;
    assert!(reply.contains("this chat's daily token budget"), "{reply}");
    assert_eq!(say(&d, "elsewhere", "mia", "hi?").await, "default fake answer", "another chat is not limited");
    assert_eq!(llm.requests().len(), 2);
    // A viewer or operator may not set a budget.
    let o = command(dir.path(), &[]).args(["pki", "issue-client", "otto", "--role", "operator"]).output().expect("issue");
    assert!(o.status.success());
    let r = tls_client(&d.data(), "otto")
        .post(format!("{}/api/v1/contexts/{ctx}/budget", d.base))
        .json(&json!({"daily_tokens": null}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    let (s, _) = d.post("/api/v1/contexts/no-such-context/budget", &json!({"daily_tokens": 5})).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_a_running_task_within_one_step_and_resume_finishes_it() {
    let llm = FakeLlm::start().await;
    let gate = Arc::new(Notify::new());
    let list = || Step::Tools(vec![("list_files".into(), json!({}))]);
    llm.push([Step::Held(gate.clone(), Box::new(list())), list(), Step::Reply("listed".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &llm_env(Some(&llm))).await;
    let queued = d.chat("/task look around").await;
    let id = queued.strip_prefix("Task queued: `").and_then(|r| r.strip_suffix('`')).expect("task id").to_string();
    llm.wait_for_requests(1, Duration::from_secs(10)).await;

    // Paused while the first model call is in flight: the turn runs that step's tool, and makes no second call.
    let (s, v) = d.post("/api/v1/agent/pause", &json!({"reason": "spend spike"})).await;
    assert_eq!((s, v["paused"].as_bool()), (200, Some(true)), "{v}");
    gate.notify_one();
    let task = d
        .wait_task(&id, "the task is given back to the queue", |t| {
            t["status"] == "queued" && t["events"].as_array().is_some_and(|e| e.iter().any(|e| e["event"] == "released"))
        })
        .await;
    assert_eq!(task["attempts"], 0, "the paused attempt does not count: {task}");
    assert_eq!(llm.requests().len(), 1, "no call after the pause");
    let steps: Vec<String> = {
        let db = d.db();
        let mut stmt = db.prepare("SELECT kind || ':' || outcome FROM agent_steps WHERE task_id = ?1 ORDER BY id").expect("prepare");
        stmt.query_map([&id], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
    };
    assert_eq!(steps, ["model:tools", "tool:ok", "model:paused"]);

    // Free text is answered without the model; the status says who paused.
    assert!(d.chat("anyone there?").await.contains("paused by an admin"));
    let out = command(dir.path(), &[]).args(["agent", "status"]).output().expect("agent status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("agent: PAUSED by cert:local-admin") && text.contains("spend spike"), "{text}");
    let (_, t) = d.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!((t["status"].as_str(), llm.requests().len()), (Some("queued"), 1), "still waiting, nothing asked");

    // Resumed through the CLI: the task runs again from its prompt and succeeds; nothing was lost.
    let out = command(dir.path(), &[]).args(["agent", "resume"]).output().expect("agent resume");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let task = d.wait_task(&id, "the task succeeds after resume", |t| t["status"] == "succeeded").await;
    assert_eq!(task["attempts"], 1, "{task}");
    assert_eq!(llm.requests().len(), 3);
    assert_eq!(usage_outcomes(&d).iter().filter(|o| *o == "paused").count(), 1, "one refused call, recorded");
    let (_, audit) = d.get("/api/v1/audit?event=agent.").await;
    let events: Vec<&str> = audit["events"].as_array().expect("events").iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events, ["agent.resumed", "agent.paused"], "{audit}");
    let (_, log) = d.get("/api/v1/events/log?after=0&types=agent.paused,agent.resumed").await;
    let kinds: Vec<&str> = log["items"].as_array().expect("items").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["agent.paused", "agent.resumed"], "{log}");
    assert_eq!(log["items"][0]["data"]["by"], "cert:local-admin", "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_pause_from_chat_or_api_and_the_pause_survives_a_restart() {
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &llm_env(Some(&llm))).await;
    d.link("codex", "mia", "member").await;
    d.link("codex", "boss", "admin").await;
    let refused = say(&d, "team", "mia", "/agent pause").await;
    assert!(refused.starts_with("Access denied") && refused.contains("admin"), "{refused}");
    assert!(say(&d, "stranger-chat", "stranger", "/agent pause").await.starts_with("Access denied"));
    let (_, v) = d.get("/api/v1/agent").await;
    assert_eq!(v["paused"], false, "{v}");
    for (name, role) in [("vera", "viewer"), ("otto", "operator")] {
        let o = command(dir.path(), &[]).args(["pki", "issue-client", name, "--role", role]).output().expect("issue");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let c = tls_client(&d.data(), name);
        for path in ["/api/v1/agent/pause", "/api/v1/agent/resume"] {
            let r = c.post(format!("{}{path}", d.base)).json(&json!({})).send().await.expect("send");
            assert_eq!(r.status(), 403, "{name} {path}");
        }
    }
    let operator = tls_client(&d.data(), "otto");
    let r = operator.get(format!("{}/api/v1/agent", d.base)).send().await.expect("send");
    assert_eq!(r.status(), 200, "an operator reads the spend, like usage");

    assert!(say(&d, "team", "boss", "/agent pause").await.starts_with("Paused"));
    assert!(say(&d, "team", "mia", "hello?").await.contains("paused by an admin"));
    assert!(llm.requests().is_empty());
    let status = say(&d, "team", "boss", "/agent status").await;
    assert!(status.contains("PAUSED (by user:"), "{status}");
    assert!(say(&d, "team", "mia", "/status").await.contains("PAUSED by an admin"), "members see it in /status");

    assert!(d.terminate().await.success(), "{}", d.log());
    let d = Daemon::start(dir.path(), &llm_env(Some(&llm))).await;
    let (_, v) = d.get("/api/v1/agent").await;
    assert_eq!(v["paused"], true, "the switch survives a restart: {v}");
    assert!(say(&d, "team", "boss", "/agent resume").await.starts_with("Resumed"));
    assert_eq!(say(&d, "team", "mia", "hello?").await, "default fake answer");
}
