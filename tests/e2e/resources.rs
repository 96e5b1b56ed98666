//! Objectives, workspaces and contexts, task paging, and the role each
//! endpoint needs, through the real binary over mutual TLS.

use crate::support::daemon::{Daemon, command, tls_client};
use serde_json::{Value, json};

/// A chat message creates its workspace and context; returns the context.
async fn context_of(d: &Daemon, chat: &str) -> Value {
    let r = d.http.post(format!("{}/api/v1/chat", d.base)).json(&json!({"text": "/help", "external_id": chat})).send().await.expect("chat");
    assert_eq!(r.status(), 200);
    let (s, list) = d.get("/api/v1/contexts?connector=codex&limit=500").await;
    assert_eq!(s, 200, "{list}");
    list["items"].as_array().expect("items").iter().find(|c| c["external_id"] == chat).cloned().expect("the chat's context")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objectives_are_created_validated_updated_paused_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let ctx = context_of(&d, "ops-room").await;
    let (cid, wid) = (ctx["id"].as_str().expect("id"), ctx["workspace_id"].as_str().expect("ws"));

    let (s, o) = d
        .post(
            "/api/v1/objectives",
            &json!({"context_id": cid, "title": "Morning report", "prompt": "Summarise overnight alerts", "cron_expr": "30 7 * * 1-5", "timezone": "Europe/Berlin"}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_str().expect("id").to_string();
    assert_eq!((o["workspace_id"].as_str(), o["trigger_type"].as_str(), o["active"].as_bool()), (Some(wid), Some("schedule"), Some(true)));
    assert_eq!(o["health_state"], "healthy");
    let next = o["next_run_unix"].as_i64().expect("next run");
    let runs: Vec<i64> = o["next_runs_unix"].as_array().expect("runs").iter().map(|v| v.as_i64().expect("n")).collect();
    assert_eq!(runs.len(), 5);
    assert_eq!(runs[0], next);
    for t in &runs {
        // 07:30 in Berlin is 06:30 UTC in winter, 05:30 in summer; never a weekend.
        let dt = chrono::DateTime::from_timestamp(*t, 0).expect("time");
        use chrono::{Datelike, Timelike};
        assert!(matches!(dt.hour(), 5 | 6) && dt.minute() == 30, "{dt}");
        assert!(dt.weekday().number_from_monday() <= 5, "{dt}");
    }

    // Every bad input is a 400 that names the problem, and nothing is stored.
    for (body, needle) in [
        (json!({"context_id": cid, "title": "x", "prompt": "y", "cron_expr": "every day"}), "must have 5 fields"),
        (json!({"context_id": cid, "title": "x", "prompt": "y", "cron_expr": "0 * * * *", "timezone": "Moon/Base"}), "IANA time zone"),
        (json!({"context_id": cid, "title": "x", "prompt": "y"}), "cron_expr is required"),
        (json!({"context_id": cid, "title": "x", "prompt": "y", "trigger_type": "event"}), "event_key is required"),
        (json!({"context_id": cid, "title": "x", "prompt": "y", "trigger_type": "sometimes"}), "trigger_type must be"),
        (json!({"context_id": cid, "title": " ", "prompt": "y", "cron_expr": "@daily"}), "title is required"),
        (json!({"context_id": "nope", "title": "x", "prompt": "y", "cron_expr": "@daily"}), "context_id: not a valid context id"),
        (
            json!({"context_id": "ffffffff-0000-4000-8000-000000000000", "title": "x", "prompt": "y", "cron_expr": "@daily"}),
            "no such context",
        ),
        (json!({"context_id": "ffffffff", "title": "x", "prompt": "y", "cron_expr": "@daily"}), "context_id: no context ffffffff"),
        (json!({"context_id": cid, "workspace_id": "other", "title": "x", "prompt": "y", "cron_expr": "@daily"}), "belongs to workspace"),
        (json!({"context_id": cid, "title": "x", "prompt": "y", "cron_expr": "@daily", "colour": 1}), "unknown field"),
        (json!({"title": "x", "prompt": "y", "cron_expr": "@daily"}), "missing field `context_id`"),
    ] {
        let (s, b) = d.post("/api/v1/objectives", &body).await;
        assert_eq!(s, 400, "{body} → {b}");
        assert!(b["error"].as_str().expect("error").contains(needle), "{body} → {b}");
    }
    let (s, b) = d.post_raw("/api/v1/objectives", "{not json").await;
    assert_eq!(s, 400, "{b}");

    let (s, ev) = d
        .post("/api/v1/objectives", &json!({"context_id": cid, "title": "On change", "prompt": "Re-read", "trigger_type": "event", "event_key": "Markdown.Updated"}))
        .await;
    assert_eq!(s, 201, "{ev}");
    assert_eq!((ev["event_key"].as_str(), ev["next_run_unix"].as_i64()), (Some("markdown.updated"), None));

    // Update: a new schedule recomputes the next run; pausing clears it; resuming restores it.
    let (s, u) = d.post("/api/v1/objectives/update", &json!({"id": id, "cron_expr": "@hourly", "title": "Hourly report"})).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["title"], "Hourly report");
    assert_eq!(u["next_run_unix"].as_i64().expect("next") % 3600, 0);
    let (s, p) = d.post("/api/v1/objectives/active", &json!({"id": id, "active": false})).await;
    assert_eq!((s, p["active"].as_bool(), p["health_state"].as_str()), (200, Some(false), Some("paused")), "{p}");
    assert!(p["next_run_unix"].is_null());
    let (_, list) = d.get(&format!("/api/v1/objectives?workspace_id={wid}")).await;
    assert_eq!(list["count"], 1, "active_only defaults to true, as in the Go runtime: {list}");
    let (_, list) = d.get(&format!("/api/v1/objectives?workspace_id={wid}&active_only=false")).await;
    assert_eq!(list["count"], 2);
    let (s, r) = d.post("/api/v1/objectives/active", &json!({"id": id, "active": true})).await;
    assert_eq!(s, 200);
    assert!(r["next_run_unix"].as_i64().is_some(), "{r}");
    let (s, b) = d.post("/api/v1/objectives/update", &json!({"id": id, "cron_expr": "99 * * * *"})).await;
    assert_eq!(s, 400, "{b}");
    let (_, still) = d.get(&format!("/api/v1/objectives/{id}")).await;
    assert_eq!(still["cron_expr"], "@hourly", "a refused update changes nothing");

    for (path, body) in [
        ("/api/v1/objectives/update", json!({"id": "obj_missing", "title": "x"})),
        ("/api/v1/objectives/active", json!({"id": "obj_missing", "active": true})),
        ("/api/v1/objectives/delete", json!({"id": "obj_missing"})),
    ] {
        let (s, b) = d.post(path, &body).await;
        assert_eq!(s, 404, "{path} {b}");
    }
    let (s, _) = d.get("/api/v1/objectives/obj_missing").await;
    assert_eq!(s, 404);
    let (s, b) = d.get("/api/v1/objectives?active_only=maybe").await;
    assert_eq!(s, 400, "{b}");

    let (s, del) = d.post("/api/v1/objectives/delete", &json!({"id": id})).await;
    assert_eq!((s, del), (200, json!({"id": id, "deleted": true})));
    let (s, _) = d.get(&format!("/api/v1/objectives/{id}")).await;
    assert_eq!(s, 404);
    let (_, audit) = d.get("/api/v1/audit?event=objective.").await;
    let events: Vec<&str> = audit["events"].as_array().expect("events").iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(events.contains(&"objective.updated") && events.contains(&"objective.deleted"), "{events:?}");
    assert!(audit["events"].as_array().expect("events").iter().all(|e| e["actor"] == "cert:local-admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_contexts_and_the_admin_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let a = context_of(&d, "alpha").await;
    context_of(&d, "beta").await;
    context_of(&d, "gamma").await;

    let (s, page1) = d.get("/api/v1/workspaces?limit=2").await;
    assert_eq!(s, 200, "{page1}");
    assert_eq!(page1["count"], 2);
    let after = page1["next_after"].as_str().expect("a next page");
    let (_, page2) = d.get(&format!("/api/v1/workspaces?limit=2&after={after}")).await;
    assert_eq!(page2["count"], 1);
    assert!(page2.get("next_after").is_none(), "{page2}");
    let mut all: Vec<&str> = page1["items"]
        .as_array()
        .expect("items")
        .iter()
        .chain(page2["items"].as_array().expect("items"))
        .map(|w| w["id"].as_str().expect("id"))
        .collect();
    all.dedup();
    assert_eq!(all.len(), 3, "three chats, three workspaces, no repeats");

    let wid = a["workspace_id"].as_str().expect("ws");
    let (s, ws) = d.get(&format!("/api/v1/workspaces/{wid}")).await;
    assert_eq!(s, 200, "{ws}");
    assert_eq!((ws["contexts"].as_u64(), ws["admin_contexts"].as_u64()), (Some(1), Some(0)));
    assert_eq!(ws["context_list"][0]["external_id"], "alpha");

    let cid = a["id"].as_str().expect("id");
    let (s, c) = d.post(&format!("/api/v1/contexts/{cid}/admin"), &json!({"admin": true})).await;
    assert_eq!((s, c["is_admin"].as_bool()), (200, Some(true)), "{c}");
    let (_, admins) = d.get("/api/v1/contexts?admin=true").await;
    assert_eq!(admins["count"], 1);
    let (_, ws) = d.get(&format!("/api/v1/workspaces/{wid}")).await;
    assert_eq!(ws["admin_contexts"], 1);
    let (_, audit) = d.get("/api/v1/audit?event=admin_channel.").await;
    assert_eq!(audit["events"][0]["subject"], cid, "{audit}");

    for (path, status) in [
        ("/api/v1/workspaces/nope", 404),
        ("/api/v1/contexts/nope", 404),
        ("/api/v1/workspaces?limit=0", 400),
        ("/api/v1/contexts?admin=perhaps", 400),
        ("/api/v1/contexts?colour=red", 400),
    ] {
        let (s, b) = d.get(path).await;
        assert_eq!(s, status, "{path} {b}");
        assert!(b["error"].is_string(), "{b}");
    }
    let (s, b) = d.post("/api/v1/contexts/nope/admin", &json!({"admin": true})).await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = d.post(&format!("/api/v1/contexts/{cid}/admin"), &json!({"admin": "yes"})).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = d.post(&format!("/api/v1/contexts/{cid}/admin"), &json!({})).await;
    assert!(s == 400 && b["error"].as_str().expect("e").contains("missing field `admin`"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_lists_page_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into()), ("AGENT_RUNTIME_DEFAULT_CONCURRENCY", "1".into())])
        .await;
    let ctx = context_of(&d, "pager").await;
    let cid = ctx["id"].as_str().expect("id").to_string();
    let mut created = Vec::new();
    for i in 0..7 {
        let (s, b) = d.post("/api/v1/tasks", &json!({"prompt": format!("task {i}"), "kind": "noop", "context_id": cid})).await;
        assert_eq!(s, 202, "{b}");
        created.push(b["task"]["id"].as_str().expect("id").to_string());
    }
    created.reverse();
    for scope in ["", &format!("&context_id={cid}")] {
        let mut seen = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let cursor = before.as_ref().map(|b| format!("&before={b}")).unwrap_or_default();
            let (s, page) = d.get(&format!("/api/v1/tasks?limit=3{scope}{cursor}")).await;
            assert_eq!(s, 200, "{page}");
            seen.extend(page["items"].as_array().expect("items").iter().map(|t| t["id"].as_str().expect("id").to_string()));
            match page["next_before"].as_str() {
                Some(n) => before = Some(n.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, created, "newest first, each once ({scope:?})");
    }
    let (s, b) = d.get("/api/v1/tasks?before=no-such-task").await;
    assert!(s == 400 && b["error"].as_str().expect("e").contains("before"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_checks_the_callers_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    for (name, role) in [("vera", "viewer"), ("otto", "operator")] {
        let o = command(dir.path(), &[]).args(["pki", "issue-client", name, "--role", role]).output().expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (viewer, operator) = (tls_client(&d.data(), "vera"), tls_client(&d.data(), "otto"));
    let status = |c: &reqwest::Client, method: &str, path: &str, body: Value| {
        let req = match method {
            "GET" => c.get(format!("{}{path}", d.base)),
            _ => c.post(format!("{}{path}", d.base)).json(&body),
        };
        async move { req.send().await.expect("send").status().as_u16() }
    };
    let task = json!({"prompt": "p", "kind": "noop"});
    assert_eq!(status(&viewer, "GET", "/api/v1/tasks", json!(null)).await, 200);
    assert_eq!(status(&viewer, "GET", "/metrics", json!(null)).await, 200);
    assert_eq!(status(&viewer, "POST", "/api/v1/tasks", task.clone()).await, 403);
    assert_eq!(status(&viewer, "GET", "/api/v1/events/log", json!(null)).await, 403);
    assert_eq!(status(&operator, "POST", "/api/v1/tasks", task).await, 202);
    assert_eq!(status(&operator, "GET", "/api/v1/events/log", json!(null)).await, 200);
    assert_eq!(status(&operator, "POST", "/api/v1/chat", json!({"text": "/help"})).await, 403, "chat speaks as any user");
    assert_eq!(status(&operator, "GET", "/api/v1/audit", json!(null)).await, 403);
    assert_eq!(status(&operator, "POST", "/api/v1/contexts/x/admin", json!({"admin": true})).await, 403);
    assert_eq!(status(&d.http, "POST", "/api/v1/chat", json!({"text": "/help"})).await, 200, "the local admin is overlord");
    // The refused change is in the audit log, under the certificate that tried.
    let (_, audit) = d.get("/api/v1/audit?event=api.request&actor=cert:vera").await;
    assert_eq!(audit["events"][0]["reason"], "POST /api/v1/tasks → 403", "{audit}");
}
