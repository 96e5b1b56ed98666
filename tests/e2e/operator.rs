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
