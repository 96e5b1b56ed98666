//! The real binary's command line: version, completions, config check, and
//! the client verbs against a running daemon.

use crate::support::daemon::{Daemon, command};
use crate::support::llm::{FakeLlm, Step};
use std::process::Output;
use std::time::Duration;

fn run(dir: &std::path::Path, env: &[(&str, String)], args: &[&str]) -> Output {
    command(dir, env).args(args).output().expect("run agent-runtime")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn version_and_completions_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(dir.path(), &[], &["version"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("agent-runtime {}", env!("CARGO_PKG_VERSION")));
    let o = run(dir.path(), &[], &["completions", "bash"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("agent-runtime"));
    let o = run(dir.path(), &[], &["--help"]);
    assert!(text(&o).contains("serve") && text(&o).contains("config"));
}

#[test]
fn config_check_reports_every_problem_and_redacts_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = [
        ("AGENT_RUNTIME_DEFAULT_CONCURRENCY", "lots".to_string()),
        ("AGENT_RUNTIME_LLM_ENABLED", "perhaps".to_string()),
        ("AGENT_RUNTIME_TASK_NOTIFY_POLICY", "everyone".to_string()),
        ("AGENT_RUNTIME_LLM_API_KEY", "sk-do-not-print".to_string()),
    ];
    let o = run(dir.path(), &bad, &["config", "check"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    for var in ["AGENT_RUNTIME_DEFAULT_CONCURRENCY", "AGENT_RUNTIME_LLM_ENABLED", "AGENT_RUNTIME_TASK_NOTIFY_POLICY"] {
        assert!(out.contains(&format!("error: {var}:")), "{var} not reported:\n{out}");
    }
    assert!(!out.contains("sk-do-not-print") && out.contains("(set, redacted)"), "{out}");
    assert!(out.contains("3 error(s)"), "{out}");

    let o = run(dir.path(), &[("AGENT_RUNTIME_LLM_BASE_URL", "http://127.0.0.1:9/v1".into())], &["config", "check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 error(s)"));
}

#[test]
fn serve_refuses_invalid_config_and_plain_http_off_loopback_before_touching_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(
        dir.path(),
        &[
            ("AGENT_RUNTIME_HTTP_ADDR", "0.0.0.0:8080".into()),
            ("AGENT_RUNTIME_ADMIN_PLAIN_HTTP", "true".into()),
            ("AGENT_RUNTIME_LLM_TIMEOUT_SECONDS", "-1".into()),
        ],
        &["serve"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("AGENT_RUNTIME_HTTP_ADDR") && out.contains("without TLS on non-loopback"), "{out}");
    assert!(out.contains("AGENT_RUNTIME_LLM_TIMEOUT_SECONDS"), "{out}");
    assert!(!dir.path().join("data").exists(), "nothing created on a config error");
}

#[test]
fn a_dotenv_file_is_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env"), "AGENT_RUNTIME_LLM_MODEL=from-dotenv\nAGENT_RUNTIME_ENV=dotenv\n").expect("write");
    let o = run(dir.path(), &[("AGENT_RUNTIME_ENV", "from-env".into())], &["config", "check"]);
    let out = text(&o);
    assert!(out.contains("AGENT_RUNTIME_LLM_MODEL") && out.contains("\"from-dotenv\"  [.env]"), "{out}");
    assert!(out.contains("\"from-env\"  [env]"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_and_chat_verbs_drive_a_running_daemon() {
    let llm = FakeLlm::start().await;
    llm.push([Step::Stall]);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("AGENT_RUNTIME_LLM_BASE_URL", llm.base_url.clone()), ("AGENT_RUNTIME_DEFAULT_CONCURRENCY", "1".into())];
    let d = Daemon::start(dir.path(), &env).await;
    let cli = |args: &[&str]| {
        let o = run(dir.path(), &[], args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Found through the data dir's serve.json, no --api-url needed.
    let first = cli(&["task", "create", "block", "the", "worker", "--json"]);
    let first: serde_json::Value = serde_json::from_str(&first).expect("json");
    llm.wait_for_requests(1, Duration::from_secs(10)).await;
    let second = cli(&["task", "create", "wait in line", "--run-key", "cli-1"]);
    assert!(second.starts_with("Task ") && second.contains(" queued"), "{second}");
    let id = second.split_whitespace().nth(1).expect("id").to_string();
    assert!(cli(&["task", "create", "wait in line", "--run-key", "cli-1"]).contains("already exists"));
    let list = cli(&["task", "list"]);
    assert!(list.contains(&id) && list.contains("queued") && list.contains("2 task(s)"), "{list}");
    assert!(cli(&["task", "cancel", &id]).contains("canceled"));
    let show = cli(&["task", "show", &id]);
    assert!(show.contains("status:   canceled") && show.contains("canceled"), "{show}");
    let running = first["task"]["id"].as_str().expect("id");
    assert!(cli(&["task", "cancel", running]).contains("asked it to stop"));
    d.wait_task(running, "running task canceled", |t| t["status"] == "canceled").await;

    let reply = cli(&["chat", "-m", "/tasks"]);
    assert!(reply.contains("No tasks in this chat yet") || reply.contains("Recent tasks"), "{reply}");
    let o = run(dir.path(), &[], &["--api-url", "http://127.0.0.1:9", "task", "list"]);
    assert!(!o.status.success() && text(&o).contains("cannot reach agent-runtime"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_chat_prints_replies_and_later_notices() {
    use std::io::{BufRead, Write};
    let llm = FakeLlm::start().await;
    llm.push([Step::Reply("the answer".into())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let _d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_BASE_URL", llm.base_url.clone())]).await;
    let mut child = command(dir.path(), &[])
        .arg("chat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("chat");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    writeln!(stdin, "/task answer me").expect("write");
    // Read the session's output line by line until the task notice shows up.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while !out.iter().any(|l: &String| l.contains("succeeded: answer me")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => out.push(line),
            Err(_) => panic!("no task notice within 20 s; output so far:\n{}", out.join("\n")),
        }
    }
    writeln!(stdin, "/exit").expect("write");
    drop(stdin);
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    out.extend(rx.try_iter());
    let out = out.join("\n");
    assert!(status.success());
    assert!(out.contains("agent> Task queued: `"), "{out}");
    assert!(out.contains("the answer"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objective_workspace_events_and_health_verbs_work_against_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    let cli = |args: &[&str]| {
        let o = run(dir.path(), &[], args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(d.chat("/help").await.contains("/task"));

    // Workspaces and contexts.
    let list = cli(&["workspace", "list"]);
    assert!(list.contains("1 workspace(s)"), "{list}");
    let contexts: serde_json::Value = serde_json::from_str(&cli(&["workspace", "contexts", "--json"])).expect("json");
    let cid = contexts["items"][0]["id"].as_str().expect("context").to_string();
    let wid = contexts["items"][0]["workspace_id"].as_str().expect("ws").to_string();
    assert!(cli(&["workspace", "admin", &cid, "on"]).contains("is now an admin channel"));
    assert!(cli(&["workspace", "show", &wid]).contains(&cid));
    assert!(cli(&["workspace", "contexts", "--admin"]).contains("yes"));

    // Objectives.
    let created: serde_json::Value = serde_json::from_str(&cli(&[
        "objective",
        "create",
        "--context-id",
        &cid,
        "--title",
        "Nightly digest",
        "--prompt",
        "Digest the day",
        "--cron",
        "0 22 * * *",
        "--timezone",
        "America/New_York",
        "--json",
    ]))
    .expect("json");
    let oid = created["id"].as_str().expect("id").to_string();
    assert!(cli(&["objective", "list"]).contains("Nightly digest"));
    assert!(cli(&["objective", "pause", &oid]).contains("paused"));
    assert!(cli(&["objective", "list", "--active-only"]).contains("0 objective(s)"));
    assert!(cli(&["objective", "resume", &oid]).contains("resumed; next run"));
    let shown = cli(&["objective", "update", &oid, "--cron", "@weekly"]);
    assert!(shown.contains("@weekly (America/New_York)"), "{shown}");
    let bad = run(dir.path(), &[], &["objective", "update", &oid, "--cron", "nope"]);
    assert!(!bad.status.success() && text(&bad).contains("must have 5 fields"), "{}", text(&bad));
    // Run it now, then its runs: one manual run, its task queued (no model here, so it fails soon).
    let fired = cli(&["objective", "run", &oid]);
    assert!(fired.contains("fired now: task "), "{fired}");
    let runs = cli(&["objective", "runs", &oid]);
    assert!(runs.contains("manual") && runs.contains("1 run(s)"), "{runs}");
    let once = cli(&[
        "objective",
        "create",
        "--context-id",
        &cid,
        "--title",
        "Once",
        "--prompt",
        "p",
        "--at",
        "2099-01-01T09:00:00+01:00",
        "--catch-up",
        "none",
    ]);
    assert!(once.contains("once at 2099-01-01T08:00:00Z") && once.contains("catch-up:  none"), "{once}");
    assert!(cli(&["objective", "delete", &oid]).contains("deleted"));
    let gone = run(dir.path(), &[], &["objective", "show", &oid]);
    assert!(!gone.status.success() && text(&gone).contains("objective not found"), "{}", text(&gone));

    // The event log, and a live follower that sees a new task finish.
    let past = cli(&["events", "--types", "objective."]);
    assert!(past.contains("objective.deleted"), "{past}");
    let mut follower = command(dir.path(), &[])
        .args(["events", "--follow", "--json", "--types", "task."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn follower");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // No wait for the follower to connect: it replays the log from before
    // its start, so it sees the task whenever it gets there.
    let task = cli(&["task", "create", "--kind", "noop", "followed task"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("\"task.succeeded\"")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        seen.push(rx.recv_timeout(left).unwrap_or_else(|_| panic!("the follower printed {seen:?} after {task}")));
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(
        seen.iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line")["type"].as_str().expect("type").starts_with("task."))
    );

    let health = cli(&["health"]);
    assert!(health.contains("overall: healthy") && health.contains("orchestrator"), "{health}");
}
