//! Operator niceties through the real binary (issue 19, parts 6 and 7):
//! output into a closed pipe, log format, version and man pages, file modes,
//! refused handshakes, certificate names and id prefixes.

use crate::support::daemon::{Daemon, command};
use std::process::Output;

/// Runs the binary with its stdout a pipe whose reader is already gone, so
/// every write fails with EPIPE (a `| head -1` that has finished reading).
fn run_into_closed_pipe(dir: &std::path::Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    command(dir, &[]).args(args).stdout(writer).stderr(std::process::Stdio::piped()).output().expect("run agent-runtime")
}

// Regression: `println!` panicked with "failed printing to stdout: Broken pipe"
// (`config check | head -1`, `completions bash | head`, `audit list | head`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_writing_into_a_closed_pipe_exit_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let offline: &[&[&str]] = &[&["config", "check"], &["completions", "bash"], &["--help"], &["task", "--help"], &["version"]];
    for args in offline {
        let o = run_into_closed_pipe(dir.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
    let _d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    for args in [&["audit", "list"][..], &["task", "list"], &["health"], &["events"]] {
        let o = run_into_closed_pipe(dir.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_writes_one_object_per_line_and_a_bad_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d =
        Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into()), ("AGENT_RUNTIME_LOG_FORMAT", "json".into())]).await;
    d.terminate().await;
    let log = d.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{log}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
    }

    let o = command(dir.path(), &[("AGENT_RUNTIME_LOG_FORMAT", "xml".into())]).arg("serve").output().expect("serve");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("AGENT_RUNTIME_LOG_FORMAT: must be text or json (got \"xml\")"), "{err}");
    let o = command(dir.path(), &[("AGENT_RUNTIME_LOG_FORMAT", "xml".into())]).args(["config", "check"]).output().expect("check");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("error: AGENT_RUNTIME_LOG_FORMAT: must be text or json"), "{out}");
}

#[test]
fn version_json_names_the_schema_and_man_writes_a_page_per_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = command(dir.path(), &[]).args(["version", "--json"]).output().expect("version");
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // The last migration step: what `PRAGMA user_version` says after a daemon migrates.
    assert_eq!(v["schema_version"], agent_runtime::store::SCHEMA_VERSION, "{v}");
    assert!(v["features"].as_array().is_some_and(|f| f.iter().any(|x| x == "telegram")), "{v}");
    assert!(v["git_commit"].is_string() || v["git_commit"].is_null(), "{v}");

    let man = dir.path().join("man/man1");
    let o = command(dir.path(), &[]).args(["man"]).arg(&man).output().expect("man");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let top = std::fs::read_to_string(man.join("agent-runtime.1")).expect("top page");
    assert!(top.starts_with(".ie") || top.contains(".TH"), "{top}");
    for sub in ["serve", "task", "approval", "config", "completions"] {
        assert!(top.contains(sub), "agent-runtime.1 does not mention {sub}");
    }
    for page in ["agent-runtime-task-list.1", "agent-runtime-approval-approve.1", "agent-runtime-config-check.1", "agent-runtime-man.1"] {
        assert!(man.join(page).is_file(), "{page} missing");
    }
    let list = std::fs::read_to_string(man.join("agent-runtime-task-list.1")).expect("page");
    assert!(list.contains("agent\\-runtime\\-task\\-list") || list.contains("agent-runtime-task-list"), "{list}");
    let written = std::fs::read_dir(&man).expect("dir").count();
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{written} man page(s)")), "{}", String::from_utf8_lossy(&o.stdout));

    // A path that cannot be a directory: a clear error, exit 1, nothing else touched.
    std::fs::write(dir.path().join("file"), "x").expect("write");
    let o = command(dir.path(), &[]).args(["man", "file/sub"]).output().expect("man");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot create file/sub"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_unknown_variables_with_a_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into()), ("AGENT_RUNTIME_LLM_MODLE", "x".into())]).await;
    d.terminate().await;
    let log = d.log();
    let line = log.lines().find(|l| l.contains("AGENT_RUNTIME_LLM_MODLE")).unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(line.contains("WARN") && line.contains("did you mean AGENT_RUNTIME_LLM_MODEL?"), "{line}");
    assert!(!log.contains("variable=AGENT_RUNTIME_LOG "), "AGENT_RUNTIME_LOG is read, not unknown:\n{log}");

    // `config check` shows what the operator typed, each variable once.
    let o = command(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "openai".into()), ("AGENT_RUNTIME_GATEWAY_GUEST_ROLE", "member".into())])
        .args(["config", "check"])
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&o.stdout);
    let value = |name: &str| {
        let lines: Vec<&str> = out.lines().filter(|l| l.split_whitespace().next() == Some(name)).collect();
        assert_eq!(lines.len(), 1, "{name}:\n{out}");
        lines[0].split(" = ").nth(1).and_then(|v| v.split("  [").next()).unwrap_or_default().to_string()
    };
    assert_eq!(value("AGENT_RUNTIME_LLM_PROVIDER"), "openai");
    assert_eq!(value("AGENT_RUNTIME_GATEWAY_GUEST_ROLE"), "member");
    assert_eq!(value("AGENT_RUNTIME_EMAIL_CA_FILE"), "(unset)");
    assert_eq!(value("AGENT_RUNTIME_SMTP_TLS"), "starttls");
}

/// Every path under `root` (itself included, as ""), relative to it, with its
/// permission bits; symbolic links are not followed.
fn walk(root: &std::path::Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        out.push((p.strip_prefix(root).unwrap_or(&p).display().to_string(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).expect("read_dir").map(|e| e.expect("entry").path()));
        }
    }
    out
}

// Issue 19: the database, chat logs and workspaces were created 0644/0755
// (the runner's umask); only the PKI was private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_the_daemon_creates_is_private_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into())]).await;
    assert!(d.chat("/help").await.contains("/task"));
    let data = d.data();
    let walked = walk(&data);
    let names: Vec<&String> = walked.iter().map(|(n, _)| n).collect();
    for must in ["meta.sqlite", "meta.sqlite-wal", "meta.sqlite-shm", "workspaces"] {
        assert!(names.iter().any(|n| n.ends_with(must)), "{must} not created: {names:?}");
    }
    assert!(names.iter().any(|n| n.contains("workspaces/") && n.ends_with(".md")), "no chat log: {names:?}");
    // Any group or other permission bit on a file or directory.
    let shared: Vec<String> = walked.iter().filter(|(_, mode)| mode & 0o077 != 0).map(|(n, mode)| format!("{n} {mode:o}")).collect();
    assert!(shared.is_empty(), "readable by others: {shared:?}");
}

// Issue 19: every TLS failure read "cannot reach agent-runtime ... (is `agent-runtime serve` running?)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_names_tls_failures_instead_of_calling_the_daemon_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every address: the local CLI still finds it over loopback (serve.json), 127.0.0.2 is not in the certificate.
    let d =
        Daemon::start(dir.path(), &[("AGENT_RUNTIME_LLM_PROVIDER", "none".into()), ("AGENT_RUNTIME_HTTP_ADDR", "0.0.0.0:0".into())]).await;
    let port = d.base.rsplit(':').next().expect("port").to_string();
    assert!(d.base.starts_with("https://127.0.0.1:"), "{}", d.base);
    let other = tempfile::tempdir().expect("tempdir");
    let o = command(other.path(), &[]).args(["pki", "init"]).output().expect("pki init");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let opki = other.path().join("data/pki");
    let run = |args: &[&str]| {
        let o = command(dir.path(), &[]).args(args).output().expect("run");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let ok = command(dir.path(), &[]).args(["task", "list"]).output().expect("run");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    let err = run(&["--ca", opki.join("ca.pem").to_str().expect("utf-8"), "task", "list"]);
    assert!(err.contains("TLS with agent-runtime") && err.contains("unknown CA") && !err.contains("serve` running"), "{err}");
    let err = run(&["--api-url", &format!("https://127.0.0.2:{port}"), "task", "list"]);
    assert!(err.contains("not valid for 127.0.0.2") && err.contains("name mismatch") && !err.contains("serve` running"), "{err}");
    let (cert, key) = (opki.join("clients/local-admin.pem"), opki.join("clients/local-admin-key.pem"));
    let err = run(&["--cert", cert.to_str().expect("utf-8"), "--key", key.to_str().expect("utf-8"), "task", "list"]);
    assert!(err.contains("refused this client's certificate") && !err.contains("serve` running"), "{err}");
    // Bound to every address with a loopback-only certificate: said at start.
    assert!(d.log().contains("listening on every address, but the server certificate names only loopback"), "{}", d.log());
    // Nobody listening is still "cannot reach".
    let err = run(&["--api-url", "https://127.0.0.1:9", "task", "list"]);
    assert!(err.contains("cannot reach agent-runtime"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_added_to_the_server_certificate_let_clients_connect_off_loopback() {
    // `pki init --san`: a bad name changes nothing; good ones are in the certificate.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = command(dir.path(), &[]).args(["pki", "init", "--san", "agent.example.com", "--san", "not a name"]).output().expect("init");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--san: \"not a name\" is neither an IP address nor a DNS name; nothing changed"));
    assert!(!dir.path().join("data/pki").exists(), "nothing created");
    let o = command(dir.path(), &[]).args(["pki", "init", "--san", "agent.example.com", "--san", "192.0.2.7"]).output().expect("init");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cert = dir.path().join("data/pki/server.pem");
    let names = agent_runtime::pki::server_names(&cert).expect("names");
    for n in ["localhost", "127.0.0.1", "::1", "agent.example.com", "192.0.2.7"] {
        assert!(names.iter().any(|x| x == n), "{n} missing: {names:?}");
    }
    let ca = std::fs::read(dir.path().join("data/pki/ca.pem")).expect("ca");

    // AGENT_RUNTIME_TLS_SANS at start: the server certificate is reissued by the same CA; a client reaching
    // the daemon by the added address passes the name check.
    let d = Daemon::start(
        dir.path(),
        &[
            ("AGENT_RUNTIME_LLM_PROVIDER", "none".into()),
            ("AGENT_RUNTIME_HTTP_ADDR", "0.0.0.0:0".into()),
            ("AGENT_RUNTIME_TLS_SANS", "127.0.0.2, agent.example.com".into()),
        ],
    )
    .await;
    assert_eq!(std::fs::read(dir.path().join("data/pki/ca.pem")).expect("ca"), ca, "same CA");
    let names = agent_runtime::pki::server_names(&cert).expect("names");
    assert!(names.iter().any(|x| x == "127.0.0.2") && names.iter().any(|x| x == "192.0.2.7"), "{names:?}");
    let log = d.log();
    assert!(log.contains("reissued the server certificate") && !log.contains("names only loopback"), "{log}");
    let port = d.base.rsplit(':').next().expect("port").to_string();
    let o = command(dir.path(), &[]).args(["--api-url", &format!("https://127.0.0.2:{port}"), "task", "list"]).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A bad name in the variable: serve refuses to start, naming it.
    let o = command(dir.path(), &[("AGENT_RUNTIME_TLS_SANS", "ok.example,bad name".into())])
        .arg("config")
        .arg("check")
        .output()
        .expect("check");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("error: AGENT_RUNTIME_TLS_SANS: \"bad name\" is neither"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

// Issue 19: `task show 01a2` was a 404 while `/cancel 01a2` worked, and a malformed id read "no such endpoint".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_verb_takes_a_unique_prefix_and_a_malformed_id_is_named() {
    // One worker held by a model call that never answers: the second task stays queued.
    let llm = crate::support::llm::FakeLlm::start().await;
    llm.push([crate::support::llm::Step::Stall]);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("AGENT_RUNTIME_LLM_BASE_URL", llm.base_url.clone()), ("AGENT_RUNTIME_DEFAULT_CONCURRENCY", "1".into())];
    let d = Daemon::start(dir.path(), &env).await;
    let cli = |args: &[&str]| command(dir.path(), &[]).args(args).output().expect("run");
    let out = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let create = |title: &str| {
        let o = cli(&["task", "create", title, "--json"]);
        assert!(o.status.success(), "{}", out(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["task"]["id"].as_str().expect("id").to_string()
    };
    let a = create("first");
    llm.wait_for_requests(1, std::time::Duration::from_secs(10)).await;
    let b = create("second");
    // UUID v7: tasks made in the same second share their first hex digits.
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    assert!(common >= 4, "{a} {b}");

    let unique = &b[..common + 1];
    let o = cli(&["task", "show", unique]);
    assert!(o.status.success() && out(&o).contains(&b) && out(&o).contains("queued"), "{}", out(&o));
    let o = cli(&["task", "cancel", unique]);
    assert!(o.status.success() && out(&o).contains("canceled"), "{}", out(&o));
    let o = cli(&["task", "retry", unique]);
    assert!(o.status.success(), "{}", out(&o));

    let o = cli(&["task", "show", &a[..common]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains(&format!("{} matches 2 tasks; give more of the id (HTTP 409)", &a[..common])), "{}", out(&o));
    for bad in ["abc", "a/b", "zzzz-not-hex", "../../metrics"] {
        let o = cli(&["task", "show", bad]);
        assert!(out(&o).contains("not a valid task id") && !out(&o).contains("no such endpoint"), "{bad}: {}", out(&o));
    }
    let o = cli(&["task", "show", "ffffffff"]);
    assert!(out(&o).contains("no task ffffffff (HTTP 404)"), "{}", out(&o));

    // `approval propose`: the certificate's own request; then show and approve by prefix.
    let o = cli(&["approval", "propose", "webhook", "http://127.0.0.1:9/hook", "--summary", "ping", "--payload", "[1]"]);
    assert!(!o.status.success() && out(&o).contains("--payload must be a JSON object; nothing proposed"), "{}", out(&o));
    let o = cli(&[
        "approval",
        "propose",
        "webhook",
        "http://127.0.0.1:9/hook",
        "--summary",
        "ping the hook",
        "--payload",
        r#"{"n": 1}"#,
        "--json",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!((v["status"].as_str(), v["requester"].as_str()), (Some("pending"), Some("cert:local-admin")), "{v}");
    let o = cli(&["approval", "show", &id[..10]]);
    assert!(o.status.success() && out(&o).contains(&id) && out(&o).contains("ping the hook"), "{}", out(&o));
    let o = cli(&["approval", "show", "act_xyz!"]);
    assert!(out(&o).contains("not a valid approval id"), "{}", out(&o));
    let o = cli(&["approval", "deny", &id[4..12], "--reason", "not now"]);
    assert!(o.status.success() && out(&o).contains(&format!("Denied {id}")), "{}", out(&o));

    // Contexts, workspaces and objectives by prefix too.
    d.chat("/status").await;
    let o = cli(&["workspace", "contexts", "--json"]);
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ctx = v["items"][0]["id"].as_str().or(v[0]["id"].as_str()).expect("a context id").to_string();
    let ws = v["items"][0]["workspace_id"].as_str().or(v[0]["workspace_id"].as_str()).expect("a workspace id").to_string();
    let o = cli(&["context", "show", &ctx[..8]]);
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(&["workspace", "show", &ws[..8]]);
    assert!(o.status.success() && out(&o).contains(&ctx), "{}", out(&o));
    let o = cli(&["workspace", "show", "not/a/workspace"]);
    assert!(out(&o).contains("not a valid workspace id") && !out(&o).contains("no such endpoint"), "{}", out(&o));
    let o = cli(&["objective", "create", "--context-id", &ctx[..8], "--title", "t", "--prompt", "p", "--cron", "@daily", "--json"]);
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let obj = v["id"].as_str().expect("objective id").to_string();
    assert_eq!(v["context_id"].as_str(), Some(ctx.as_str()), "{v}");
    let o = cli(&["objective", "show", &obj[4..12]]);
    assert!(o.status.success() && out(&o).contains(&obj), "{}", out(&o));
    let o = cli(&["objective", "pause", &obj[..12]]);
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(&["objective", "runs", &obj[4..12]]);
    assert!(o.status.success(), "{}", out(&o));
    let o = cli(&["objective", "show", "obj_xyz!"]);
    assert!(out(&o).contains("not a valid objective id"), "{}", out(&o));
    drop(d);
}
