//! Upgrades: a daemon opens a database of every earlier schema version
//! (`tests/fixtures/schema-<n>.sqlite`, written by `scripts/schema-fixture.sh`
//! with the binary of that version), migrates it and serves what was in it.

use crate::support::daemon::Daemon;
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> Vec<(i64, PathBuf)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(&dir)
        .expect("tests/fixtures")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let v = p.file_name()?.to_str()?.strip_prefix("schema-")?.strip_suffix(".sqlite")?.parse().ok()?;
            Some((v, p))
        })
        .collect();
    out.sort();
    out
}

fn items(v: &Value) -> Vec<Value> {
    v.get("items").unwrap_or(v).as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_migrates_and_serves_every_earlier_schema_version() {
    let all = fixtures();
    assert!(all.iter().any(|(v, _)| *v == 11), "the schema-11 fixture is missing: {all:?}");
    for (version, path) in all {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = tmp.path().join("data/agent-runtime/meta.sqlite");
        std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&path, &db).expect("copy fixture");
        let d = Daemon::start(tmp.path(), &[]).await;
        let what = format!("schema {version} fixture");

        let v: i64 = d.db().query_row("PRAGMA user_version", [], |r| r.get(0)).expect("user_version");
        assert!(v >= version, "{what}: user_version went from {version} to {v}");
        let ok: String = d.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
        assert_eq!(ok, "ok", "{what}");

        // The kill switch the fixture set is still on: nothing ran.
        let (s, agent) = d.get("/api/v1/agent").await;
        assert_eq!(s, 200, "{what}: {agent}");
        assert_eq!(agent["paused"], true, "{what}: {agent}");

        let (s, tasks) = d.get("/api/v1/tasks?limit=100").await;
        assert_eq!(s, 200, "{what}: {tasks}");
        let tasks = items(&tasks);
        let titles: Vec<&str> = tasks.iter().filter_map(|t| t["title"].as_str()).collect();
        assert!(titles.contains(&"fixture task one") && titles.contains(&"fixture task two"), "{what}: {titles:?}");
        let one = tasks.iter().find(|t| t["title"] == "fixture task one").expect("task one");
        let (s, shown) = d.get(&format!("/api/v1/tasks/{}", one["id"].as_str().expect("id"))).await;
        assert_eq!(s, 200, "{what}: {shown}");
        assert_eq!(shown["status"], "queued", "{what}: {shown}");
        assert!(shown.to_string().contains("summarise the notes folder"), "{what}: {shown}");

        // The same run key still finds the same task (no second one).
        let (s, again) = d
            .post(
                "/api/v1/tasks",
                &serde_json::json!({"title": "fixture task one", "prompt": "summarise the notes folder", "run_key": "fixture-1"}),
            )
            .await;
        assert!(s == 200 || s == 201, "{what}: {again}");
        assert_eq!((&again["created"], &again["task"]["id"]), (&Value::Bool(false), &one["id"]), "{what}: {again}");

        let (s, objectives) = d.get("/api/v1/objectives?active_only=false").await;
        assert_eq!(s, 200, "{what}: {objectives}");
        let objective = items(&objectives).into_iter().find(|o| o["title"] == "fixture weekly digest");
        let objective = objective.unwrap_or_else(|| panic!("{what}: no objective in {objectives}"));
        assert_eq!(objective["active"], false, "{what}: {objective}");

        let (s, contexts) = d.get("/api/v1/contexts").await;
        assert_eq!(s, 200, "{what}: {contexts}");
        let ctx = items(&contexts).into_iter().find(|c| c["external_id"] == "fixture-chat");
        let ctx = ctx.unwrap_or_else(|| panic!("{what}: no fixture chat in {contexts}"));
        let (s, messages) = d.get("/api/v1/chat/messages?external_id=fixture-chat").await;
        assert_eq!(s, 200, "{what}: {messages}");
        assert!(messages.to_string().contains("The agent is paused"), "{what}: the reply the fixture got is gone: {messages}");
        let budget: i64 = d
            .db()
            .query_row("SELECT daily_tokens FROM context_budgets WHERE context_id = ?1", [ctx["id"].as_str().expect("id")], |r| r.get(0))
            .expect("the context's budget");
        assert_eq!(budget, 12345, "{what}");

        let (s, pairings) = d.get("/api/v1/pairings").await;
        assert_eq!(s, 200, "{what}: {pairings}");
        assert!(pairings.to_string().contains("Fixture Person"), "{what}: {pairings}");
        let (s, audit) = d.get("/api/v1/audit?limit=100").await;
        assert_eq!(s, 200, "{what}: {audit}");
        assert!(audit.to_string().contains("agent"), "{what}: the pause is not in the audit: {audit}");

        // And it still takes new work.
        let (s, created) = d.post("/api/v1/tasks", &serde_json::json!({"title": "after the upgrade", "prompt": "new"})).await;
        assert_eq!((s, &created["created"]), (202, &Value::Bool(true)), "{what}: {created}");
    }
}
