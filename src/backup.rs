//! Online backup and restore: one `.tar.gz` archive holding a consistent
//! snapshot of the database (taken while `serve` runs, without its lock),
//! the workspaces tree and, only when asked, the PKI and `.env`, with a
//! manifest (schema version, row counts, a SHA-256 per file) as its last
//! entry. `docs/backup.md` describes the format.
//!
//! Invariants: an archive is written under a temporary name and renamed into
//! place complete (0600), never over an existing file unless forced; an
//! archive is checked in full (every checksum, the database's
//! `integrity_check`, its schema version and row counts) before restore
//! writes anything where the data lives, and restore holds the data
//! directory's `serve` lock while it works; nothing restore replaces is
//! deleted: it is moved aside.

mod archive;
mod manifest;
mod restore;
mod snapshot;

pub use manifest::{FileEntry, MANIFEST_FORMAT, Manifest};
pub use restore::{Restored, Target, restore};
pub use snapshot::Method;

use crate::runtime::LockError;
use std::path::{Path, PathBuf};

/// What a backup reads.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The store's database (`AGENT_RUNTIME_DB_PATH`).
    pub db: PathBuf,
    /// The workspaces tree (`AGENT_RUNTIME_WORKSPACE_ROOT`).
    pub workspaces: PathBuf,
    /// The local PKI (`<data>/pki`); archived only with secrets.
    pub pki: PathBuf,
    /// The `.env` file the configuration was read from, if any; archived only with secrets.
    pub env_file: Option<PathBuf>,
}

/// How to write a backup.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Archive the PKI (CA and client keys) and `.env`.
    pub include_secrets: bool,
    /// Replace an existing file at the archive's path.
    pub force: bool,
    /// How the database snapshot is taken.
    pub method: Method,
}

/// Why a backup, a check or a restore failed. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// → exit 1: the archive's path is taken and `--force` was not given.
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    /// → exit 1: there is no database to back up.
    #[error("no database at {0}: nothing to back up (is AGENT_RUNTIME_DATA_DIR or AGENT_RUNTIME_DB_PATH right?)")]
    NoDatabase(PathBuf),
    /// → exit 1: a filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot read", "cannot create").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// → exit 1: SQLite failed while snapshotting or checking a database.
    #[error("{what}: {source}")]
    Sqlite {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// → exit 1: the file is not an agent-runtime backup archive.
    #[error("{path} is not an agent-runtime backup: {why}")]
    Foreign {
        /// The archive.
        path: PathBuf,
        /// What gave it away.
        why: String,
    },
    /// → exit 1: the archive ends early (an interrupted copy or a full disk).
    #[error("{path} is truncated: {why}")]
    Truncated {
        /// The archive.
        path: PathBuf,
        /// What was missing.
        why: String,
    },
    /// → exit 1: the archive's content does not match its manifest, or does not decompress.
    #[error("{path} is damaged: {why}")]
    Damaged {
        /// The archive.
        path: PathBuf,
        /// What did not match.
        why: String,
    },
    /// → exit 1: the archived database is newer than this binary.
    #[error("the archived database has schema version {found}; this binary knows up to {supported}: restore it with a newer agent-runtime")]
    SchemaUnknown {
        /// The database's `user_version`.
        found: i64,
        /// The newest this binary knows.
        supported: i64,
    },
    /// → exit 2: a running `serve` holds the data directory.
    #[error("refusing to restore while a daemon runs: {0}")]
    DaemonRunning(#[source] LockError),
    /// → exit 1: the data directory is not empty and `--force` was not given.
    #[error("{dir} is not empty ({found}); restore into an empty data directory, or pass --force to move what is there aside")]
    NotEmpty {
        /// The data directory.
        dir: PathBuf,
        /// What was found there.
        found: String,
    },
}

impl BackupError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + use<> {
        let path = path.to_path_buf();
        move |source| BackupError::Io { action, path, source }
    }

    fn sqlite(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> BackupError {
        let what = what.into();
        move |source| BackupError::Sqlite { what, source }
    }
}

/// Writes a backup of `src` to `out`; returns its manifest. Blocking: call
/// it on a blocking thread. The database is read through its own read-only
/// connection, so a running `serve` keeps writing (see [`Method`]).
pub fn create(src: &Sources, out: &Path, opts: &Options) -> Result<Manifest, BackupError> {
    if !opts.force && out.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    if !src.db.is_file() {
        return Err(BackupError::NoDatabase(src.db.clone()));
    }
    let work = archive::Scratch::beside(out)?;
    let db_copy = work.path().join("meta.sqlite");
    let started = std::time::Instant::now();
    let started_ms = chrono::Utc::now().timestamp_millis();
    snapshot::take(&src.db, &db_copy, &opts.method)?;
    let (schema_version, rows) = snapshot::describe(&db_copy)?;
    let snapshot_ms = started.elapsed().as_millis() as u64;
    let mut manifest = Manifest::new(started_ms, schema_version, rows, opts.include_secrets, opts.method.name(), snapshot_ms);
    archive::write(src, &db_copy, out, opts, &mut manifest, &work)?;
    Ok(manifest)
}

/// Checks the archive at `path` in full: it decompresses, its manifest is
/// present and parses, every file matches its checksum and size, nothing is
/// there the manifest does not list, and the database opens, passes
/// `PRAGMA integrity_check`, has a schema version this binary knows and the
/// row counts the manifest recorded. Blocking. The database is unpacked into
/// a private directory under the system temp dir (`TMPDIR`) and removed.
pub fn verify(path: &Path) -> Result<Manifest, BackupError> {
    let work = archive::Scratch::in_temp()?;
    let manifest = archive::unpack(path, work.path(), archive::Keep::DatabaseOnly)?;
    snapshot::check(path, &work.path().join(archive::DB_ENTRY), &manifest)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests;
