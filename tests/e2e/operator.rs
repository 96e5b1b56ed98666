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
