//! What an admin API caller below admin cannot do (issue 14): make the
//! runtime talk to a chat it has never talked to (a task's outcome, mail
//! included, is delivered without any approval), claim the run keys the
//! runtime keeps for chat tasks, or act in a chat user's name.

use crate::support::daemon::{Daemon, command, tls_client};
use serde_json::{Value, json};

/// A daemon (no LLM needed) and an `operator` certificate for "otto".
async fn start(dir: &std::path::Path) -> (Daemon, reqwest::Client) {
    let d = Daemon::start(dir, &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let o = command(dir, &[]).args(["pki", "issue-client", "otto", "--role", "operator"]).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let otto = tls_client(&d.data(), "otto");
    (d, otto)
}

async fn post(c: &reqwest::Client, d: &Daemon, path: &str, body: Value) -> (u16, Value) {
    let r = c.post(format!("{}{path}", d.base)).json(&body).send().await.expect("post");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn count(d: &Daemon, sql: &str) -> i64 {
    d.db().query_row(sql, [], |r| r.get(0)).expect("count")
}

/// Regression (issue 14): an operator certificate could create a task (or
/// propose an action) for any chat id or email address; the context was
/// made on the spot and the outcome delivered there, mail included, with
/// no `send_email` approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_certificate_reaches_only_chats_the_runtime_already_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, otto) = start(dir.path()).await;
    let victim = json!({"prompt": "write to them", "kind": "noop", "connector": "email", "external_id": "victim@example.org"});
    let (s, v) = post(&otto, &d, "/api/v1/tasks", victim.clone()).await;
    assert_eq!(s, 403, "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.contains("no chat email/victim@example.org") && error.contains("only an admin may create one"), "{v}");
    let proposal = json!({"connector": "email", "external_id": "victim@example.org", "action_type": "webhook",
        "target": "http://127.0.0.1:9/hook", "summary": "buy now", "payload": {}});
    let (s, v) = post(&otto, &d, "/api/v1/approvals", proposal).await;
    assert_eq!(s, 403, "a proposal's notice would go there too: {v}");
    assert_eq!(count(&d, "SELECT COUNT(*) FROM contexts WHERE connector = 'email'"), 0, "no context made");
    assert_eq!(count(&d, "SELECT COUNT(*) FROM outbox WHERE connector = 'email'"), 0, "nothing to mail");
    assert_eq!(count(&d, "SELECT COUNT(*) FROM tasks") + count(&d, "SELECT COUNT(*) FROM approvals"), 0);

    // A chat the runtime talks to already is fine, by name or by id; so is the API's own mailbox.
    let (s, v) = d.post("/api/v1/chat", &json!({"connector": "telegram", "external_id": "42", "text": "/help"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) =
        post(&otto, &d, "/api/v1/tasks", json!({"prompt": "p", "kind": "noop", "connector": "telegram", "external_id": "42"})).await;
    assert_eq!((s, v["task"]["source_user_id"].as_str()), (202, Some("cert:otto")), "the task is the caller's: {v}");
    let by_id = json!({"prompt": "p", "kind": "noop", "context_id": v["task"]["context_id"]});
    assert_eq!(post(&otto, &d, "/api/v1/tasks", by_id).await.0, 202);
    assert_eq!(post(&otto, &d, "/api/v1/tasks", json!({"prompt": "p", "kind": "noop"})).await.0, 202, "the codex mailbox");
    let (s, v) = post(&otto, &d, "/api/v1/tasks", json!({"prompt": "p", "kind": "noop", "source_user_id": "42"})).await;
    assert_eq!(s, 400, "not in a chat user's name: {v}");

    // An admin may open a new chat, and it is audited.
    let (s, v) = d.post("/api/v1/tasks", &victim).await;
    assert_eq!(s, 202, "{v}");
    let (_, audit) = d.get("/api/v1/audit?event=api.context_created").await;
    let row = &audit["events"][0];
    assert_eq!(
        (row["actor"].as_str(), row["connector"].as_str(), row["external_id"].as_str(), row["subject"].as_str()),
        (Some("cert:local-admin"), Some("email"), Some("victim@example.org"), v["task"]["context_id"].as_str()),
        "{audit}"
    );
    assert_eq!(audit["events"].as_array().map(Vec::len), Some(2), "the codex mailbox and the admin's chat: {audit}");
}

/// Regression (issue 14): an API caller could create a task under
/// `inbox:<id>`, the run key of the task a chat message asks for, so the
/// message's `/task` got the caller's task and its outcome as the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keys_the_runtime_keeps_for_itself_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, otto) = start(dir.path()).await;
    for key in ["inbox:1", "INBOX:2", " inbox:3", "objective:o1", "schedule:s1", "action:a1", "untrusted:u1"] {
        let (s, v) = post(&otto, &d, "/api/v1/tasks", json!({"prompt": "p", "kind": "noop", "run_key": key})).await;
        assert_eq!(s, 400, "{key}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| e.contains("which the runtime keeps for its own tasks")), "{v}");
    }
    let (s, _) = d.post("/api/v1/tasks", &json!({"prompt": "p", "kind": "noop", "run_key": "inbox:1"})).await;
    assert_eq!(s, 400, "not even an overlord");
    assert_eq!(count(&d, "SELECT COUNT(*) FROM tasks"), 0);
    assert_eq!(post(&otto, &d, "/api/v1/tasks", json!({"prompt": "p", "kind": "noop", "run_key": "deploy:inbox:1"})).await.0, 202);
    let reply = d.chat("/task tidy the logs").await;
    assert!(reply.starts_with("Task queued"), "{reply}");
    let key: String =
        d.db().query_row("SELECT run_key FROM tasks WHERE title = 'tidy the logs'", [], |r| r.get(0)).expect("the chat's task");
    assert!(key.starts_with("inbox:"), "{key}");
}

/// Regression (issue 14): `POST /api/v1/approvals` took `from_user_id` from
/// the body, so an operator could request an action as any chat user (an
/// admin among them). The requester is now the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_proposed_through_the_api_is_the_certificates_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d, otto) = start(dir.path()).await;
    d.link("telegram", "42", "admin").await;
    let (s, _) = d.post("/api/v1/chat", &json!({"connector": "telegram", "external_id": "42", "text": "/help"})).await;
    assert_eq!(s, 200);
    let proposal = |extra: Value| {
        let mut p = json!({"connector": "telegram", "external_id": "42", "action_type": "webhook",
            "target": "http://127.0.0.1:9/hook", "summary": "ping the hook", "payload": {"n": 1}});
        p.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        p
    };
    let (s, v) = post(&otto, &d, "/api/v1/approvals", proposal(json!({"from_user_id": "42"}))).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("requested by the caller (cert:otto)")), "{v}");
    let held = json!({"action_type": "untrusted_task",
        "payload": {"context_id": "c", "workspace_id": "w", "from": "x", "reason": "r", "text": "t"}});
    let (s, v) = post(&otto, &d, "/api/v1/approvals", proposal(held)).await;
    assert_eq!(s, 400, "the runtime's own action type: {v}");

    let (s, a) = post(&otto, &d, "/api/v1/approvals", proposal(json!({}))).await;
    assert_eq!(s, 201, "{a}");
    assert_eq!((a["requester"].as_str(), a["requester_user_id"].as_str()), (Some("cert:otto"), None), "{a}");
    let (_, audit) = d.get("/api/v1/audit?event=approval.requested").await;
    assert_eq!(audit["events"][0]["actor"], "cert:otto", "{audit}");
    assert_eq!(count(&d, "SELECT COUNT(*) FROM approvals"), 1);
}
