//! `agent-runtime backup`, `backup --verify` and `restore` through the real
//! binary: a backup taken while tasks and chat messages stream in restores
//! into a daemon that has everything committed before the backup started;
//! damage and foreign files are named; secrets only when asked; restore is
//! refused while a daemon holds the directory and into a non-empty one.

use crate::support::daemon::{Daemon, command};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Runs the binary in `dir` (data in `dir/data`) with `args`.
async fn run(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = command(dir, &[]);
    cmd.args(args);
    tokio::time::timeout(Duration::from_secs(120), tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .unwrap_or_else(|_| panic!("agent-runtime {args:?} did not finish in 120 s"))
        .expect("join")
        .expect("run agent-runtime")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The manifest, through `backup --verify --json`.
async fn manifest(dir: &Path, archive: &Path) -> Value {
    let out = run(dir, &["backup", "--verify", "--json", archive.to_str().expect("utf-8")]).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("manifest JSON")
}

/// Every file under `root` but the lock file, with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls").filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "serve.lock") {
                out.insert(p.strip_prefix(root).expect("under root").to_path_buf(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_a_stream_of_tasks_and_messages_restores_with_everything_committed_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Arc::new(Daemon::start(dir.path(), &[]).await);
    std::fs::create_dir_all(d.data().join("workspaces/notes")).expect("ws");
    std::fs::write(d.data().join("workspaces/notes/plan.md"), "# the plan\n").expect("workspace file");

    // A writer that keeps going until the backup is over: tasks and chat
    // messages, each recorded once the daemon acknowledged it (committed).
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let stream = {
        let (d, stop, acked) = (d.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (s, v) = d.post("/api/v1/tasks", &json!({"prompt": format!("stream task {n}"), "kind": "noop"})).await;
                assert_eq!(s, 202, "{v}");
                let id = v["task"]["id"].as_str().expect("task id").to_string();
                let said = format!("/help stream message {n}");
                let (s, v) = d.post("/api/v1/chat", &json!({"text": said})).await;
                assert_eq!(s, 200, "{v}");
                acked.lock().expect("acked").push((id, said));
            }
        })
    };
    crate::support::wait_until("20 tasks and messages before the backup", Duration::from_secs(30), || async {
        (acked.lock().expect("acked").len() >= 20).then_some(())
    })
    .await;
    let before: Vec<(String, String)> = acked.lock().expect("acked").clone();
    let archive = dir.path().join("during.tar.gz");
    let out = run(dir.path(), &["backup", archive.to_str().expect("utf-8")]).await;
    let after_backup = acked.lock().expect("acked").len();
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), stream).await.expect("stream stops").expect("stream");
    assert!(out.status.success(), "{}", text(&out));
    assert!(after_backup > before.len(), "the stream kept writing while the backup ran ({after_backup} vs {})", before.len());
    assert_eq!(std::fs::metadata(&archive).expect("archive").permissions().mode() & 0o777, 0o600);

    let m = manifest(dir.path(), &archive).await;
    assert_eq!(m["secrets_included"], false);
    assert!(m["rows"]["tasks"].as_i64().expect("tasks") >= before.len() as i64, "{m}");

    // Restore elsewhere and start a daemon on it.
    let other = tempfile::tempdir().expect("tempdir");
    let out = run(other.path(), &["restore", archive.to_str().expect("utf-8")]).await;
    assert!(out.status.success(), "{}", text(&out));
    let db = other.path().join("data/agent-runtime/meta.sqlite");
    assert_eq!(std::fs::metadata(&db).expect("restored db").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(other.path().join("data/workspaces/notes")).expect("ws dir").permissions().mode() & 0o777, 0o700);
    let r = Daemon::start(other.path(), &[]).await;
    let check: String = r.db().query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity_check");
    assert_eq!(check, "ok");
    for (id, said) in &before {
        let (s, v) = r.get(&format!("/api/v1/tasks/{id}")).await;
        assert_eq!(s, 200, "task {id}, committed before the backup, is in the restore: {v}");
        assert!(v["prompt"].as_str().unwrap_or_default().starts_with("stream task"), "{v}");
        let found: i64 = r.db().query_row("SELECT count(*) FROM inbox WHERE text = ?1", [said], |row| row.get(0)).expect("inbox");
        assert_eq!(found, 1, "message {said:?}, acknowledged before the backup, is in the restore");
    }
    assert_eq!(std::fs::read_to_string(r.data().join("workspaces/notes/plan.md")).expect("workspace file"), "# the plan\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_flipped_byte_a_truncated_archive_and_a_foreign_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[]).await;
    for n in 0..50 {
        let (s, _) = d.post("/api/v1/tasks", &json!({"prompt": format!("task {n}"), "kind": "noop"})).await;
        assert_eq!(s, 202);
    }
    let good = dir.path().join("good.tar.gz");
    let out = run(dir.path(), &["backup", good.to_str().expect("utf-8")]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(dir.path(), &["backup", "--verify", good.to_str().expect("utf-8")]).await;
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("is a good backup"), "{}", text(&out));
    let bytes = std::fs::read(&good).expect("archive");

    let bad = dir.path().join("bad.tar.gz");
    // In the compressed data and in the gzip trailer (CRC and length, checked only at the very end).
    for at in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 6, bytes.len() - 2] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x01;
        std::fs::write(&bad, &flipped).expect("write");
        let out = run(dir.path(), &["backup", "--verify", bad.to_str().expect("utf-8")]).await;
        assert_eq!(out.status.code(), Some(1), "byte {at} of {} flipped: {}", bytes.len(), text(&out));
        let e = stderr(&out);
        assert!(e.contains("bad.tar.gz is damaged") || e.contains("bad.tar.gz is truncated"), "byte {at}: {e}");
    }
    for keep in [bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&bad, &bytes[..keep]).expect("write");
        let out = run(dir.path(), &["backup", "--verify", bad.to_str().expect("utf-8")]).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(stderr(&out).contains("bad.tar.gz is truncated"), "{keep} of {} bytes: {}", bytes.len(), text(&out));
    }
    std::fs::write(&bad, "PRAGMA nothing; this is a text file\n").expect("write");
    let out = run(dir.path(), &["backup", "--verify", bad.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("is not an agent-runtime backup"), "{}", text(&out));
    let out = run(dir.path(), &["backup", "--verify", dir.path().join("missing.tar.gz").to_str().expect("utf-8")]).await;
    assert!(out.status.code() == Some(1) && stderr(&out).contains("missing.tar.gz"), "{}", text(&out));

    // The same damage stops a restore before it writes anything.
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x01;
    std::fs::write(&bad, &flipped).expect("write");
    let other = tempfile::tempdir().expect("tempdir");
    let out = run(other.path(), &["restore", bad.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(tree(&other.path().join("data")).is_empty(), "nothing restored from a damaged archive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_archived_only_with_include_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(".env"), "AGENT_RUNTIME_LOG=info\n").expect(".env");
    let _d = Daemon::start(dir.path(), &[]).await;
    let plain = dir.path().join("plain.tar.gz");
    let out = run(dir.path(), &["backup", plain.to_str().expect("utf-8")]).await;
    assert!(out.status.success(), "{}", text(&out));
    let m = manifest(dir.path(), &plain).await;
    assert_eq!(m["secrets_included"], false);
    let paths: Vec<&str> = m["files"].as_array().expect("files").iter().filter_map(|f| f["path"].as_str()).collect();
    assert!(paths.iter().all(|p| !p.starts_with("secrets/")), "{paths:?}");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(std::fs::File::open(&plain).expect("open")), &mut raw).expect("gunzip");
    assert!(!raw.windows(11).any(|w| w == b"PRIVATE KEY"), "no private key anywhere in the archive");

    let with = dir.path().join("with.tar.gz");
    let out = run(dir.path(), &["backup", "--include-secrets", with.to_str().expect("utf-8")]).await;
    assert!(out.status.success(), "{}", text(&out));
    let m = manifest(dir.path(), &with).await;
    assert_eq!(m["secrets_included"], true);
    let paths: Vec<&str> = m["files"].as_array().expect("files").iter().filter_map(|f| f["path"].as_str()).collect();
    for p in ["secrets/pki/ca-key.pem", "secrets/pki/ca.pem", "secrets/pki/clients/local-admin-key.pem", "secrets/env"] {
        assert!(paths.contains(&p), "{p} in {paths:?}");
    }

    let other = tempfile::tempdir().expect("tempdir");
    let out = run(
        other.path(),
        &["restore", with.to_str().expect("utf-8"), "--data-dir", other.path().join("restored").to_str().expect("utf-8")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let restored = other.path().join("restored");
    let key = restored.join("pki/ca-key.pem");
    assert_eq!(std::fs::read(&key).expect("key"), std::fs::read(dir.path().join("data/pki/ca-key.pem")).expect("original key"));
    assert_eq!(std::fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(restored.join(".env")).expect(".env"), "AGENT_RUNTIME_LOG=info\n");
    assert!(String::from_utf8_lossy(&out.stdout).contains(".env"), "the output says where the .env went: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_is_refused_while_a_daemon_runs_and_into_a_non_empty_directory_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &[]).await;
    let (s, v) = d.post("/api/v1/tasks", &json!({"prompt": "before", "kind": "noop"})).await;
    assert_eq!(s, 202, "{v}");
    let archive = dir.path().join("b.tar.gz");
    let out = run(dir.path(), &["backup", archive.to_str().expect("utf-8")]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(dir.path(), &["backup", archive.to_str().expect("utf-8")]).await;
    assert!(out.status.code() == Some(1) && stderr(&out).contains("already exists; pass --force"), "{}", text(&out));

    for force in [false, true] {
        let mut args = vec!["restore", archive.to_str().expect("utf-8")];
        if force {
            args.push("--force");
        }
        let out = run(dir.path(), &args).await;
        assert_eq!(out.status.code(), Some(2), "force {force}: {}", text(&out));
        assert!(
            stderr(&out).contains("refusing to restore while a daemon runs") && stderr(&out).contains(&format!("pid {}", d.pid())),
            "{}",
            text(&out)
        );
    }
    let (s, _) = d.get("/api/v1/tasks").await;
    assert_eq!(s, 200, "the daemon is untouched");
    d.terminate().await;

    // A task made after the backup tells the old database from the restored one.
    let data = dir.path().join("data");
    let before = tree(&data);
    let out = run(dir.path(), &["restore", archive.to_str().expect("utf-8")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("is not empty") && stderr(&out).contains("--force"), "{}", text(&out));
    assert_eq!(tree(&data), before, "a refused restore changes nothing");
    let siblings = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("pre-restore"))
        .count();
    assert_eq!(siblings, 0);

    let out = run(dir.path(), &["restore", "--force", archive.to_str().expect("utf-8")]).await;
    assert!(out.status.success(), "{}", text(&out));
    let aside = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("data.pre-restore-"))
        .expect("the old data dir's content moved aside")
        .path();
    assert!(String::from_utf8_lossy(&out.stdout).contains(aside.to_str().expect("utf-8")), "the output names where: {}", text(&out));
    let moved = tree(&aside);
    for (p, bytes) in &before {
        assert_eq!(moved.get(p), Some(bytes), "{} kept, byte for byte, in {}", p.display(), aside.display());
    }
}
