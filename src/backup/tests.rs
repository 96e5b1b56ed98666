use super::archive::{DB_ENTRY, MANIFEST_ENTRY};
use super::*;
use rusqlite::Connection;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A WAL database with `rows` rows of 200 bytes in `a` and none in `b`.
fn database(path: &Path, rows: i64) {
    let c = Connection::open(path).expect("open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.execute_batch("CREATE TABLE a (x BLOB); CREATE TABLE b (x INTEGER); PRAGMA user_version = 1;").expect("schema");
    c.execute(
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?1) INSERT INTO a SELECT randomblob(200) FROM s",
        [rows],
    )
    .expect("fill");
}

fn sources(dir: &Path) -> Sources {
    Sources { db: dir.join("meta.sqlite"), workspaces: dir.join("ws"), pki: dir.join("pki"), env_file: Some(dir.join(".env")) }
}

#[test]
fn a_paced_snapshot_under_constant_writes_finishes_with_one_instant_of_the_database() {
    // Without the read transaction held across steps, SQLite restarts the
    // backup after every write by another connection: with a write every
    // few microseconds this copy of ~1,500 pages, 8 at a time, never ends.
    for method in [Method::BackupApi { pages: 8, pause: Duration::from_millis(1) }, Method::VacuumInto] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("live.sqlite");
        database(&db, 20_000);
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let (db, stop, written) = (db.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let c = Connection::open(&db).expect("writer");
                c.busy_timeout(Duration::from_secs(5)).expect("timeout");
                while !stop.load(Ordering::Relaxed) {
                    // One row in each table per transaction: a consistent copy has as many new rows in a as in b.
                    c.execute_batch("BEGIN; INSERT INTO a VALUES (randomblob(200)); INSERT INTO b VALUES (1); COMMIT;").expect("write");
                    written.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        while written.load(Ordering::Relaxed) < 100 {
            std::thread::yield_now();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (src, dest, m) = (db.clone(), dir.path().join("copy.sqlite"), method.clone());
        std::thread::spawn(move || tx.send(snapshot::take(&src, &dest, &m)));
        let before = written.load(Ordering::Relaxed);
        let outcome =
            rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{method:?}: the snapshot did not finish in 60 s"));
        let during = written.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer thread");
        outcome.expect("snapshot");
        assert!(during > 0, "{method:?}: the writer must have written during the snapshot for this test to mean anything");
        let (version, rows) = snapshot::describe(&dir.path().join("copy.sqlite")).expect("describe");
        assert_eq!(version, 1);
        assert_eq!(rows["a"] - 20_000, rows["b"], "{method:?}: a copy from one instant has as many new rows in a as in b: {rows:?}");
        assert!(rows["b"] >= 100, "{method:?}: rows committed before the snapshot started are in it: {rows:?}");
        let mode: String = Connection::open(dir.path().join("copy.sqlite"))
            .and_then(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .expect("mode");
        assert_eq!(mode, "delete", "{method:?}: the archived copy is one self-contained file");
    }
}

#[test]
fn a_backup_round_trips_and_never_overwrites_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = sources(dir.path());
    database(&src.db, 10);
    std::fs::create_dir_all(src.workspaces.join("w/notes")).expect("ws");
    std::fs::write(src.workspaces.join("w/notes/a.md"), "# notes\n").expect("file");
    std::fs::create_dir_all(&src.pki).expect("pki");
    std::fs::write(src.pki.join("ca-key.pem"), "secret key").expect("key");
    let out = dir.path().join("b.tar.gz");
    let m = create(&src, &out, &Options::default()).expect("backup");
    let names: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, [DB_ENTRY, "workspaces/w/notes/a.md"], "no secrets without include_secrets");
    assert_eq!(m.rows["a"], 10);
    assert!(!m.secrets_included);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).expect("archive").permissions().mode() & 0o777, 0o600);
    assert_eq!(verify(&out).expect("verify"), m);

    let before = std::fs::read(&out).expect("read");
    let err = create(&src, &out, &Options::default()).expect_err("exists");
    assert!(matches!(err, BackupError::Exists(_)), "{err}");
    assert_eq!(std::fs::read(&out).expect("read"), before, "the refused backup left the old archive alone");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left behind: {leftovers:?}");

    // An archive written inside the workspaces does not archive its own temporary files.
    let inside = src.workspaces.join("w/inside.tar.gz");
    let m_in = create(&src, &inside, &Options::default()).expect("backup into the tree");
    assert_eq!(m_in.files.len(), 2, "{:?}", m_in.files);
    verify(&inside).expect("verify");
    std::fs::remove_file(&inside).expect("rm");

    let m2 = create(&src, &out, &Options { include_secrets: true, force: true, ..Options::default() }).expect("forced");
    assert!(m2.secrets_included);
    assert!(m2.files.iter().any(|f| f.path == "secrets/pki/ca-key.pem"));
    assert!(!m2.files.iter().any(|f| f.path == "secrets/env"), "no .env to archive");
}

/// A gzip-compressed tar of `entries` (name, bytes, type), with names written raw.
fn raw_archive(path: &Path, entries: &[(&str, &[u8], tar::EntryType)]) {
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).expect("create"), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data, kind) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_entry_type(*kind);
        h.set_mode(0o600);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar").finish().expect("gz").flush().expect("flush");
}

#[test]
fn restore_refuses_entries_that_leave_the_archive_or_are_not_files_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, kind) in [
        ("../evil", tar::EntryType::Regular),
        ("workspaces/../../evil", tar::EntryType::Regular),
        ("/tmp/evil", tar::EntryType::Regular),
        ("workspaces/w/link", tar::EntryType::Symlink),
        ("etc/passwd", tar::EntryType::Regular),
    ] {
        let archive = dir.path().join("bad.tar.gz");
        raw_archive(&archive, &[(name, b"x", kind)]);
        let data = dir.path().join("data");
        let err = restore(&archive, &Target::under(&data), false).expect_err(name);
        assert!(matches!(err, BackupError::Foreign { .. }), "{name}: {err}");
        assert!(!dir.path().join("evil").exists() && !data.join("workspaces").exists(), "{name}: nothing written");
        let left: Vec<_> = std::fs::read_dir(&data).expect("ls").filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert_eq!(left, ["agent-runtime"], "{name}: only the lock's directory, no staging left: {left:?}");
    }
}

#[test]
fn an_archive_whose_files_do_not_match_the_manifest_is_damaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("meta.sqlite");
    database(&db, 3);
    let bytes = std::fs::read(&db).expect("db");
    let (version, rows) = snapshot::describe(&db).expect("describe");
    let mut m = Manifest::new(0, version, rows, false, "backup-api", 1);
    m.files.push(FileEntry { path: DB_ENTRY.into(), size: bytes.len() as u64, sha256: "00".repeat(32) });
    let json = serde_json::to_vec(&m).expect("json");
    let archive = dir.path().join("lying.tar.gz");
    raw_archive(&archive, &[(DB_ENTRY, &bytes, tar::EntryType::Regular), (MANIFEST_ENTRY, &json, tar::EntryType::Regular)]);
    let err = verify(&archive).expect_err("checksum");
    assert!(matches!(err, BackupError::Damaged { .. }) && err.to_string().contains("SHA-256"), "{err}");

    // A tarball of something else entirely.
    raw_archive(&archive, &[("workspaces/x.md", b"x", tar::EntryType::Regular)]);
    let err = verify(&archive).expect_err("no manifest");
    assert!(matches!(err, BackupError::Truncated { .. }), "{err}");
    std::fs::write(&archive, "just text\n").expect("text");
    let err = verify(&archive).expect_err("text");
    assert!(matches!(err, BackupError::Foreign { .. }), "{err}");
}

#[test]
fn a_forced_restore_moves_what_was_there_aside_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = sources(&dir.path().join("src"));
    std::fs::create_dir_all(dir.path().join("src")).expect("src");
    database(&src.db, 5);
    let archive = dir.path().join("b.tar.gz");
    create(&src, &archive, &Options::default()).expect("backup");

    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("agent-runtime")).expect("data");
    std::fs::write(data.join("agent-runtime/meta.sqlite"), "old database").expect("old db");
    std::fs::create_dir_all(data.join("workspaces/w")).expect("old ws");
    std::fs::write(data.join("workspaces/w/old.md"), "old notes").expect("old file");

    let done = restore(&archive, &Target::under(&data), true).expect("forced restore");
    let aside = done.moved_aside.expect("moved aside");
    assert_eq!(std::fs::read_to_string(aside.join("agent-runtime/meta.sqlite")).expect("kept"), "old database");
    assert_eq!(std::fs::read_to_string(aside.join("workspaces/w/old.md")).expect("kept"), "old notes");
    assert!(!data.join("workspaces/w/old.md").exists());
    let (_, rows) = snapshot::describe(&data.join("agent-runtime/meta.sqlite")).expect("restored db");
    assert_eq!(rows["a"], 5);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(data.join("agent-runtime/meta.sqlite")).expect("db").permissions().mode() & 0o777, 0o600);
}
