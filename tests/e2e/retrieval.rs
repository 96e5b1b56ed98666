//! Built-in markdown retrieval through the real binary: files written,
//! edited and deleted under a workspace are found (and no longer found) by
//! chat `/search` within the watcher's debounce; a restart catches changes
//! made while the daemon was down; two workspaces with the same file names
//! never see each other's documents through chat, API or CLI; paths that
//! leave the workspace are refused.

use crate::support::daemon::{Daemon, command, tls_client};
use crate::support::wait_until;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEBOUNCE_MS: u64 = 200;

fn env() -> Vec<(&'static str, String)> {
    vec![("AGENT_RUNTIME_LLM_PROVIDER", "none".into()), ("AGENT_RUNTIME_WATCH_DEBOUNCE_MS", DEBOUNCE_MS.to_string())]
}

/// Says `text` in the API chat `room` (its own workspace); returns the reply and the workspace id.
async fn say(d: &Daemon, room: &str, text: &str) -> (String, String) {
    let (s, v) = d.post("/api/v1/chat", &json!({"connector": "codex", "external_id": room, "text": text})).await;
    assert_eq!(s, 200, "{text}: {v}");
    (v["reply"].as_str().unwrap_or_default().to_string(), v["workspace_id"].as_str().unwrap_or_default().to_string())
}

/// The workspace directory of `ws` (one per chat; named by the id).
fn dir_of(d: &Daemon, ws: &str) -> PathBuf {
    d.data().join("workspaces").join(ws)
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// Waits until the index has compared itself with the disk and nothing waits.
async fn settled(d: &Daemon) -> Value {
    wait_until("the index settles", Duration::from_secs(20), || async {
        let (s, v) = d.get("/api/v1/retrieval/status").await;
        (s == 200 && !v["last_reconcile"].is_null() && v["pending_changes"] == 0 && v["reconciling"] == false).then_some(v)
    })
    .await
}

/// Polls chat `/search` until `pred` holds for the reply; returns it and how long it took.
async fn search_until(d: &Daemon, room: &str, q: &str, what: &str, pred: impl Fn(&str) -> bool) -> (String, Duration) {
    let started = Instant::now();
    let reply = wait_until(what, Duration::from_secs(15), || async {
        let (r, _) = say(d, room, &format!("/search {q}")).await;
        pred(&r).then_some(r)
    })
    .await;
    (reply, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_search_follows_files_as_they_are_written_edited_and_deleted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(tmp.path(), &env()).await;
    let (status, ws) = say(&d, "room", "/status").await;
    assert!(status.contains("search: 0 documents"), "{status}");
    let dir = dir_of(&d, &ws);
    settled(&d).await;
    // The watcher is up before files are written.
    wait_until("watcher healthy", Duration::from_secs(10), || async {
        let (_, hb) = d.get("/api/v1/heartbeat").await;
        hb["components"].as_array()?.iter().any(|c| c["name"] == "watcher" && c["state"] == "healthy").then_some(())
    })
    .await;

    write(&dir, "notes/guide.md", "# Guide\n\n## Animals\n\nThe quokka is a small marsupial.\n");
    let (found, took) = search_until(&d, "room", "quokka", "the new file is found", |r| r.contains("notes/guide.md")).await;
    assert!(found.contains("Guide > Animals") && found.contains("**quokka**"), "heading path and highlighted snippet: {found}");
    assert!(took < Duration::from_secs(5), "found {took:?} after the write");

    let (opened, _) = say(&d, "room", "/open 1").await;
    assert!(opened.contains("`notes/guide.md` — Guide > Animals (lines 3–5)") && opened.contains("small marsupial"), "{opened}");
    let (whole, _) = say(&d, "room", "/open notes/guide.md").await;
    assert!(whole.contains("# Guide") && whole.contains("## Animals"), "{whole}");

    write(&dir, "notes/guide.md", "# Guide\n\n## Animals\n\nThe wombat digs burrows.\n");
    search_until(&d, "room", "quokka", "the old text no longer matches", |r| r.starts_with("No matches")).await;
    let (r, _) = say(&d, "room", "/search wombat").await;
    assert!(r.contains("notes/guide.md"), "{r}");

    std::fs::remove_file(dir.join("notes/guide.md")).expect("rm");
    search_until(&d, "room", "wombat", "a deleted file is gone", |r| r.starts_with("No matches")).await;

    // Queries with FTS5 syntax are words, never errors.
    write(&dir, "syntax.md", "# Near\n\ncolumn filter and or not words\n");
    search_until(&d, "room", "column", "indexed", |r| r.contains("syntax.md")).await;
    for q in ["NEAR(column words)", "title:column", "\"unterminated", "column*", "-column", "(", "AND OR NOT"] {
        let (r, _) = say(&d, "room", &format!("/search {q}")).await;
        assert!(r.starts_with("Results for") || r.starts_with("No matches"), "{q}: {r}");
    }
    let (r, _) = say(&d, "room", "/open 7").await;
    assert!(r.contains("no result 7"), "{r}");

    // The metrics show the index and the searches.
    let m = d.http.get(format!("{}/metrics", d.base)).send().await.expect("metrics").text().await.expect("text");
    for name in [
        "agent_runtime_retrieval_documents 1",
        "agent_runtime_retrieval_query_duration_seconds_count",
        "agent_runtime_retrieval_index_bytes",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    let (_, hb) = d.get("/api/v1/heartbeat").await;
    let comp = hb["components"].as_array().expect("components").iter().find(|c| c["name"] == "retrieval").cloned().expect("retrieval");
    assert_eq!(comp["state"], "healthy", "{comp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_catches_changes_made_while_the_daemon_was_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(tmp.path(), &env()).await;
    let (_, ws) = say(&d, "room", "/status").await;
    let dir = dir_of(&d, &ws);
    write(&dir, "keep.md", "# Keep\n\nunchanged pelican\n");
    write(&dir, "edit.md", "# Edit\n\nold heron\n");
    write(&dir, "drop.md", "# Drop\n\ndoomed egret\n");
    search_until(&d, "room", "egret", "indexed", |r| r.contains("drop.md")).await;
    search_until(&d, "room", "heron", "indexed", |r| r.contains("edit.md")).await;
    assert!(d.terminate().await.success());

    write(&dir, "edit.md", "# Edit\n\nnew ibis\n");
    std::fs::remove_file(dir.join("drop.md")).expect("rm");
    write(&dir, "added/new.md", "# New\n\nfresh stork\n");

    let d = Daemon::start(tmp.path(), &env()).await;
    let st = settled(&d).await;
    let last = &st["last_reconcile"];
    assert_eq!((last["indexed"].as_u64(), last["removed"].as_u64(), last["unchanged"].as_u64()), (Some(2), Some(1), Some(1)), "{st}");
    for (q, expect) in
        [("heron", None), ("egret", None), ("ibis", Some("edit.md")), ("stork", Some("added/new.md")), ("pelican", Some("keep.md"))]
    {
        let (r, _) = say(&d, "room", &format!("/search {q}")).await;
        match expect {
            Some(p) => assert!(r.contains(p), "{q}: {r}"),
            None => assert!(r.starts_with("No matches"), "{q}: {r}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_with_the_same_file_names_stay_apart_through_chat_api_and_cli() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(tmp.path(), &env()).await;
    let (_, a) = say(&d, "alpha", "/status").await;
    let (_, b) = say(&d, "beta", "/status").await;
    assert_ne!(a, b);
    let (da, db) = (dir_of(&d, &a), dir_of(&d, &b));
    write(&da, "notes/x.md", "# Plan\n\nalpha launch codes\n");
    write(&db, "notes/x.md", "# Plan\n\nbeta picnic list\n");
    search_until(&d, "alpha", "launch", "alpha indexed", |r| r.contains("notes/x.md")).await;
    search_until(&d, "beta", "picnic", "beta indexed", |r| r.contains("notes/x.md")).await;

    // Chat.
    let (r, _) = say(&d, "beta", "/search launch codes").await;
    assert!(r.starts_with("No matches"), "beta cannot find alpha's text: {r}");
    let (r, _) = say(&d, "beta", "/open notes/x.md").await;
    assert!(r.contains("picnic") && !r.contains("launch"), "{r}");
    let alpha_dir = format!("../{a}/notes/x.md");
    for target in [alpha_dir.as_str(), "/etc/passwd", "notes/../../x.md"] {
        let (r, _) = say(&d, "beta", &format!("/open {target}")).await;
        assert!(r.starts_with("Cannot open that: refused"), "{target}: {r}");
    }
    std::os::unix::fs::symlink("/etc/passwd", db.join("passwd.md")).expect("symlink");
    std::os::unix::fs::symlink(da.join("notes/x.md"), db.join("alpha.md")).expect("symlink");
    for target in ["passwd.md", "alpha.md"] {
        let (r, _) = say(&d, "beta", &format!("/open {target}")).await;
        assert!(r.contains("refused") && r.contains("outside the workspace") && !r.contains("root:"), "{target}: {r}");
    }
    let (r, _) = say(&d, "beta", "/search root").await;
    assert!(r.starts_with("No matches"), "links are not indexed: {r}");
    let (r, _) = say(&d, "beta", "/open logs/chats/codex/beta.md").await;
    assert!(r.contains("not a workspace document"), "chat logs are not documents: {r}");

    // A stranger in the same chat (an unlinked sender, guest role none) can neither search nor open.
    for text in ["/search picnic", "/open notes/x.md", "/open 1"] {
        let (st, v) =
            d.post("/api/v1/chat", &json!({"connector": "codex", "external_id": "beta", "from_user_id": "stranger", "text": text})).await;
        let reply = v["reply"].as_str().unwrap_or_default();
        assert!(st == 200 && reply.starts_with("Access denied: link your account first") && !reply.contains("picnic"), "{text}: {v}");
    }

    // API.
    let (s, v) = d.get(&format!("/api/v1/search?workspace_id={b}&q=launch")).await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(0)), "{v}");
    let (s, v) = d.get(&format!("/api/v1/search?workspace_id={a}&q=launch")).await;
    assert_eq!((s, v["results"][0]["chunk_id"].as_str()), (200, Some("notes/x.md#1")), "{v}");
    let (s, v) = d.get(&format!("/api/v1/documents?workspace_id={b}&path=notes/x.md%231")).await;
    assert!(s == 200 && v["content"].as_str().expect("content").contains("picnic"), "{v}");
    let (s, v) = d.get(&format!("/api/v1/documents?workspace_id={b}&path=..%2F{a}%2Fnotes%2Fx.md")).await;
    assert!(s == 400 && v["error"].as_str().expect("error").contains("leaves the workspace"), "{s} {v}");
    let (s, _) = d.get(&format!("/api/v1/documents?workspace_id={b}&path=passwd.md")).await;
    assert_eq!(s, 400);
    for (path, status, needle) in [
        (format!("/api/v1/search?workspace_id={b}"), 400, "query is empty"),
        (format!("/api/v1/search?workspace_id={b}&q=x&limit=0"), 400, "limit"),
        ("/api/v1/search?workspace_id=nope&q=x".to_string(), 404, ""),
        ("/api/v1/search?q=x".to_string(), 400, "workspace_id"),
        (format!("/api/v1/search?workspace_id={b}&q=x&sql=1"), 400, "unknown field"),
        (format!("/api/v1/documents?workspace_id={b}&path=missing.md"), 404, "not found"),
        (format!("/api/v1/documents?workspace_id={b}&path=notes/x.md&max_bytes=0"), 400, "max_bytes"),
    ] {
        let (s, v) = d.get(&path).await;
        assert_eq!(s, status, "{path}: {v}");
        assert!(v["error"].as_str().unwrap_or_default().contains(needle), "{path}: {v}");
    }

    // CLI.
    let cli = |args: &[&str]| {
        let o = command(tmp.path(), &[]).args(args).output().expect("run");
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let (ok, out) = cli(&["search", "--workspace", &b, "launch"]);
    assert!(ok && out.contains("0 result(s)"), "{out}");
    let (ok, out) = cli(&["search", "--workspace", &a, "launch", "codes"]);
    assert!(ok && out.contains("notes/x.md") && out.contains("1 result(s)"), "{out}");
    let (ok, out) = cli(&["search", "launch"]);
    assert!(!ok && out.contains("several workspaces"), "{out}");
    let (ok, out) = cli(&["open", "--workspace", &b, &alpha_dir]);
    assert!(!ok && out.contains("leaves the workspace"), "{out}");
    let (ok, out) = cli(&["open", "--workspace", &b, "notes/x.md"]);
    assert!(ok && out.contains("picnic") && !out.contains("launch"), "{out}");
    let (ok, out) = cli(&["index", "status"]);
    assert!(ok && out.contains(&a) && out.contains(&b), "{out}");
    let (ok, out) = cli(&["index", "rebuild", "--workspace", &b]);
    assert!(ok && out.contains("1 files indexed"), "{out}");

    // Roles: a viewer searches; only an operator rebuilds.
    let o = command(tmp.path(), &[]).args(["pki", "issue-client", "vera", "--role", "viewer"]).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let viewer = tls_client(&d.data(), "vera");
    let r = viewer.get(format!("{}/api/v1/search?workspace_id={b}&q=picnic", d.base)).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let r = viewer.post(format!("{}/api/v1/retrieval/rebuild", d.base)).json(&json!({})).send().await.expect("send");
    assert_eq!(r.status(), 403);
    let (s, v) = d.post("/api/v1/retrieval/rebuild", &json!({"workspace_id": b, "all": true})).await;
    assert_eq!(s, 400, "unknown fields are refused: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_can_be_turned_off_and_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut e = env();
    e.push(("AGENT_RUNTIME_RETRIEVAL_ENABLED", "false".into()));
    let d = Daemon::start(tmp.path(), &e).await;
    let (r, ws) = say(&d, "room", "/search anything").await;
    assert!(r.contains("turned off"), "{r}");
    let (s, v) = d.get(&format!("/api/v1/search?workspace_id={ws}&q=x")).await;
    assert_eq!(s, 503, "{v}");
    let (s, v) = d.get("/api/v1/retrieval/status").await;
    assert_eq!((s, v["enabled"].as_bool()), (200, Some(false)));
    assert!(!d.data().join("agent-runtime/retrieval.sqlite").exists(), "no index file when off");
}
