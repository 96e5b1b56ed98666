//! The admin API over real HTTP: every bad input gets a clear JSON error and
//! leaves nothing half-written.

use crate::support::daemon::Daemon;
use serde_json::{Value, json};

fn count(d: &Daemon, table: &str) -> i64 {
    d.db().query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).expect("count")
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_else(|| panic!("no error field in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chat_input_gets_clear_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;

    let (s, v) = d.post_raw("/api/v1/chat", "{\"text\": ").await;
    assert_eq!(s, 400);
    assert!(error_of(&v).starts_with("invalid request body"), "{v}");

    let (s, v) = d.post("/api/v1/chat", &json!({"connector": "codex"})).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("missing field `text`"), "{v}");

    let (s, v) = d.post("/api/v1/chat", &json!({"text": "hi", "txet": "typo"})).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("unknown field `txet`"), "{v}");

    let (s, v) = d.post("/api/v1/chat", &json!({"text": "   "})).await;
    assert_eq!((s, error_of(&v)), (400, "text is required"));

    let (s, v) = d.post("/api/v1/chat", &json!({"text": "hi", "connector": "Bad Name!"})).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).starts_with("connector must be"), "{v}");

    let (s, v) = d.post("/api/v1/chat", &json!({"text": "x".repeat(64 * 1024)})).await;
    assert_eq!(s, 413);
    assert!(error_of(&v).contains("65536 bytes; the limit is 32768"), "{v}");

    for table in ["inbox", "contexts", "workspaces", "outbox", "tasks"] {
        assert_eq!(count(&d, table), 0, "{table} must stay empty after bad input");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_get_usage_replies_and_unknown_ones_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    assert_eq!(d.chat("/frobnicate now").await, "Unknown command /frobnicate. Try /help.");
    assert_eq!(d.chat("/task").await, "Usage: /task <what should be done>");
    assert_eq!(d.chat("/cancel").await, "Usage: /cancel <task-id>");
    assert_eq!(d.chat("/cancel 0000dead").await, "No task `0000dead` in this workspace. See /tasks.");
    assert!(d.chat("/help").await.contains("/task <what should be done>"));
    assert_eq!(count(&d, "tasks"), 0, "usage errors create no task");
    assert_eq!(count(&d, "inbox"), 5, "every message is in the inbox");
    let status = d.chat("/status").await;
    assert!(status.contains("- tasks: 0 queued") && status.contains("language model: no LLM provider configured"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_endpoints_validate_filter_and_refuse_stale_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;

    let (s, v) = d.post("/api/v1/tasks", &json!({"title": "no prompt"})).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("missing field `prompt`"), "{v}");
    let (s, v) = d.post("/api/v1/tasks", &json!({"prompt": "x", "kind": "bogus"})).await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("unknown task kind \"bogus\""), "{v}");
    let (s, _) = d.post("/api/v1/tasks", &json!({"prompt": "x", "context_id": "no-such-context"})).await;
    assert_eq!(s, 404);

    let (s, first) = d.post("/api/v1/tasks", &json!({"prompt": "say hi", "run_key": "k1"})).await;
    assert_eq!((s, first["created"].as_bool()), (202, Some(true)), "{first}");
    let (s, again) = d.post("/api/v1/tasks", &json!({"prompt": "say hi", "run_key": "k1"})).await;
    assert_eq!((s, again["created"].as_bool()), (200, Some(false)));
    assert_eq!(first["task"]["id"], again["task"]["id"]);
    let id = first["task"]["id"].as_str().expect("id").to_string();

    let (s, v) = d.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(v["events"][0]["event"], "created");
    let (s, _) = d.get("/api/v1/tasks/does-not-exist").await;
    assert_eq!(s, 404);
    let (s, v) = d.get("/api/v1/tasks?limit=0").await;
    assert_eq!((s, error_of(&v)), (400, "limit must be between 1 and 500"));
    let (s, v) = d.get("/api/v1/tasks?status=done").await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = d.get("/api/v1/tasks?limit=abc").await;
    assert_eq!(s, 400, "{v}");

    let t = d.wait_task(&id, "task to fail without a provider", |t| t["status"] == "failed").await;
    let (s, v) = d.get("/api/v1/tasks?status=failed").await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(1)));
    let (s, v) = d.get("/api/v1/tasks?status=succeeded").await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(0)));

    let version = t["version"].as_i64().expect("version");
    let path = format!("/api/v1/tasks/{id}");
    let (s, v) = d.patch(&path, &json!({"if_version": version, "title": "renamed"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.patch(&path, &json!({"if_version": version, "title": "stale"})).await;
    assert_eq!(s, 409);
    assert!(error_of(&v).contains("version conflict"), "{v}");
    let (_, v) = d.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(v["title"], "renamed");

    let (s, v) = d.post(&format!("/api/v1/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 409, "a failed task cannot be canceled: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_paths_get_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    let (s, v) = d.get("/api/v1/chat").await;
    assert_eq!((s, error_of(&v)), (405, "method not allowed"));
    let (s, v) = d.get("/api/v1/nope").await;
    assert_eq!((s, error_of(&v)), (404, "no such endpoint"));
    let (s, v) = d.get("/healthz").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = d.get("/readyz").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ready")));
    let (s, v) = d.get("/api/v1/info").await;
    assert_eq!((s, v["name"].as_str()), (200, Some("agent-runtime")));
    assert_eq!((v["caller"]["subject"].as_str(), v["caller"]["role"].as_str()), (Some("cert:local-admin"), Some("overlord")), "{v}");
    let (s, v) = d.get("/api/v1/chat/messages?limit=9999").await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_message_id_is_handled_once_and_gets_the_first_reply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let body = json!({"text": "/task only once", "message_id": "client-42"});
    let (s1, first) = d.post("/api/v1/chat", &body).await;
    let (s2, second) = d.post("/api/v1/chat", &body).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["reply"], second["reply"], "the retry gets the first reply");
    assert!(first["reply"].as_str().unwrap_or("").starts_with("Task queued"), "{first}");
    assert_eq!(count(&d, "tasks"), 1);
    assert_eq!(count(&d, "inbox"), 1);
    let (s, v) = d.post("/api/v1/chat", &json!({"text": "x", "message_id": "a\u{7}b"})).await;
    assert_eq!(s, 400, "{v}");
}
