//! The database snapshot: a consistent copy of a live WAL database, taken
//! through a read-only connection of its own (no lock of `serve`'s), and the
//! checks run on a copy (integrity, schema version, row counts).
//!
//! Two methods, both one snapshot that never restarts (ARCHITECTURE.md,
//! decisions): `VACUUM INTO` from a read-only connection (the default: one
//! statement, a compacted copy), and SQLite's backup API stepped with pauses
//! inside one read transaction held open across the steps. Without that
//! transaction the backup restarts from the first page whenever another
//! connection writes the source between two steps, so a stepped backup of a
//! database written 500 times a second would never finish; with it, the
//! source's pager never sees the writes and every page comes from the same
//! instant. Neither blocks the writer (WAL readers do not block writers);
//! checkpoints cannot pass the pinned snapshot until the copy ends, so the
//! WAL grows by what is written meanwhile.

use super::BackupError;
use super::manifest::Manifest;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How the snapshot is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// SQLite's online backup API, `pages` at a time with `pause` between
    /// steps, all inside one read transaction (one snapshot, no restarts).
    BackupApi {
        /// Pages copied per step.
        pages: i32,
        /// Sleep between steps, so the daemon's writer gets the disk and a core.
        pause: Duration,
    },
    /// `VACUUM INTO` from a read-only connection: one statement, a compacted copy.
    VacuumInto,
}

impl Default for Method {
    /// `VACUUM INTO`: on a 1 GiB database under 500 tasks/s both methods
    /// kept the task rate (99–100 %), but the paced backup API (256 pages,
    /// 2 ms apart) took longer (9.0 s against 5.4 s for the snapshot) and
    /// raised the writers' p99 to 834 ms against 125 ms (docs/benchmarks.md,
    /// session 13).
    fn default() -> Self {
        Method::VacuumInto
    }
}

impl Method {
    /// The paced backup API as measured: 256 pages (1 MiB at 4 KiB pages) per step, 2 ms apart.
    pub fn paced() -> Self {
        Method::BackupApi { pages: 256, pause: Duration::from_millis(2) }
    }
}

impl Method {
    /// Its name in the manifest.
    pub fn name(&self) -> &'static str {
        match self {
            Method::BackupApi { .. } => "backup-api",
            Method::VacuumInto => "vacuum-into",
        }
    }
}

/// Copies the database at `db` into a new file `dest` (rollback-journal
/// mode, so the copy is one self-contained file).
pub fn take(db: &Path, dest: &Path, method: &Method) -> Result<(), BackupError> {
    let shown = db.display().to_string();
    let src = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(BackupError::sqlite(format!("cannot open {shown}")))?;
    src.busy_timeout(Duration::from_secs(30)).map_err(BackupError::sqlite("busy timeout"))?;
    match method {
        Method::VacuumInto => {
            let to = dest.to_str().ok_or_else(|| BackupError::Io {
                action: "cannot use",
                path: dest.to_path_buf(),
                source: std::io::Error::other("the path is not UTF-8"),
            })?;
            src.execute("VACUUM INTO ?1", [to]).map_err(BackupError::sqlite(format!("VACUUM INTO from {shown}")))?;
        }
        Method::BackupApi { pages, pause } => {
            stepped(&src, dest, *pages, *pause).map_err(BackupError::sqlite(format!("backup of {shown}")))?
        }
    }
    let copy = Connection::open(dest).map_err(BackupError::sqlite("cannot open the snapshot"))?;
    copy.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get::<_, String>(0))
        .map_err(BackupError::sqlite("cannot set the snapshot's journal mode"))?;
    Ok(())
}

fn stepped(src: &Connection, dest: &Path, pages: i32, pause: Duration) -> rusqlite::Result<()> {
    // Start the read transaction (a deferred BEGIN takes its snapshot at the
    // first read) and keep it until the copy is done.
    src.execute_batch("BEGIN")?;
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))?;
    let mut dst = Connection::open(dest)?;
    dst.pragma_update(None, "journal_mode", "OFF")?;
    dst.pragma_update(None, "synchronous", "OFF")?;
    {
        let backup = Backup::new(src, &mut dst)?;
        loop {
            match backup.step(pages.max(1))? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked => std::thread::sleep(pause),
                // StepResult is non-exhaustive: treat a new kind like "try again".
                _ => std::thread::sleep(pause),
            }
        }
    }
    src.execute_batch("COMMIT")?;
    drop(dst);
    Ok(())
}

/// The copy's schema version and rows per table.
pub fn describe(copy: &Path) -> Result<(i64, BTreeMap<String, i64>), BackupError> {
    let conn =
        Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(BackupError::sqlite("cannot open the snapshot"))?;
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(BackupError::sqlite("schema version"))?;
    Ok((version, row_counts(&conn).map_err(BackupError::sqlite("row counts"))?))
}

fn row_counts(conn: &Connection) -> rusqlite::Result<BTreeMap<String, i64>> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let tables: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut rows = BTreeMap::new();
    for t in tables {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM \"{}\"", t.replace('"', "\"\"")), [], |r| r.get(0))?;
        rows.insert(t, n);
    }
    Ok(rows)
}

/// Checks an unpacked database against its manifest: it opens, passes
/// `PRAGMA integrity_check`, its schema version is the manifest's and one
/// this binary knows, and its row counts are the manifest's.
pub fn check(archive: &Path, db: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let damaged = |why: String| BackupError::Damaged { path: archive.to_path_buf(), why };
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| damaged(format!("the database does not open: {e}")))?;
    let verdict: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| damaged(format!("the database is not readable: {e}")))?;
    if verdict != ["ok"] {
        return Err(damaged(format!("PRAGMA integrity_check: {}", verdict.join("; "))));
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| damaged(e.to_string()))?;
    let latest = crate::store::SCHEMA_VERSION;
    if version > latest {
        return Err(BackupError::SchemaUnknown { found: version, supported: latest });
    }
    if version != manifest.schema_version {
        return Err(damaged(format!("schema version {version}, the manifest says {}", manifest.schema_version)));
    }
    let rows = row_counts(&conn).map_err(|e| damaged(format!("cannot count rows: {e}")))?;
    if rows != manifest.rows {
        return Err(damaged(format!("row counts differ from the manifest's: {rows:?} vs {:?}", manifest.rows)));
    }
    Ok(())
}
