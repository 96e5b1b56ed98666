//! One `serve` per data directory: an exclusive lock on
//! `<data>/agent-runtime/serve.lock` (and on a `serve.lock` beside the
//! database when `AGENT_RUNTIME_DB_PATH` puts it elsewhere), taken before
//! the store is opened and held until the process ends. Two daemons on one
//! directory would deliver outbox rows twice and fight over Telegram; and
//! only a lock holder may assume that every `running` task belongs to a
//! dead process (start-up recovery, `Store::recover_abandoned_tasks`).
//!
//! The lock is the operating system's (`flock` on Unix, through std's
//! `File::try_lock`): it goes away with the process, however it ends, so a
//! kill -9 never leaves a stale lock behind. The file also holds the
//! holder's pid, for the refusal message; it is never deleted (deleting a
//! lock file lets a third process lock a new inode beside a holder).
//!
//! It is taken in `runtime::run`, after `memory::tune_allocator`'s re-exec
//! in `main`: std opens files close-on-exec, so a lock taken before that
//! `execve` would be dropped by it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name, in `<data>/agent-runtime/` and beside the database.
pub const LOCK_FILE: &str = "serve.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it (→ exit 2, naming that process).
    #[error(
        "another agent-runtime serve ({}) is using this data directory: {path} is locked; one serve per data directory",
        describe(*holder)
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, as it recorded it (None: not recorded yet or unreadable).
        holder: Option<u32>,
    },
    /// The lock file could not be created, read or locked (→ exit 1).
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn describe(holder: Option<u32>) -> String {
    holder.map_or_else(|| "whose pid is not recorded yet".to_string(), |pid| format!("pid {pid}"))
}

/// Held locks; dropping this (or the process ending) releases them.
#[derive(Debug)]
pub struct DataLock {
    files: Vec<(PathBuf, File)>,
}

impl DataLock {
    /// Locks `<data_dir>/agent-runtime/serve.lock` and, when the database
    /// lives in another directory, a `serve.lock` there too; records this
    /// process's pid in each. Creates the directories.
    pub fn acquire(data_dir: &Path, db_path: &Path) -> Result<Self, LockError> {
        let mut dirs = vec![data_dir.join("agent-runtime")];
        if let Some(db_dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(db_dir.to_path_buf());
        }
        let mut files: Vec<(PathBuf, File)> = Vec::with_capacity(dirs.len());
        let mut seen: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let path = dir.join(LOCK_FILE);
            std::fs::create_dir_all(&dir).map_err(|source| LockError::Io { path: path.clone(), source })?;
            // The same directory spelled twice (`./data/agent-runtime` and an
            // absolute path) would conflict with itself: lock it once.
            let real = dir.canonicalize().map_err(|source| LockError::Io { path: path.clone(), source })?;
            if seen.contains(&real) {
                continue;
            }
            seen.push(real);
            let file = lock_one(&path)?;
            files.push((path, file));
        }
        Ok(Self { files })
    }

    /// The lock files held.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }
}

/// Opens (without truncating: the holder's pid is in it) and locks `path`,
/// then writes this process's pid into it.
fn lock_one(path: &Path) -> Result<File, LockError> {
    let io = |source| LockError::Io { path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(LockError::Held { path: path.to_path_buf(), holder: read_pid(&mut file) }),
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(io)?;
    Ok(file)
}

/// The pid the holder wrote (an advisory lock does not stop reading).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let db = data.join("agent-runtime/meta.sqlite");
        let held = DataLock::acquire(&data, &db).expect("first lock");
        assert_eq!(held.paths().count(), 1, "the database's directory is the data dir's: one lock file");
        let text = std::fs::read_to_string(data.join("agent-runtime/serve.lock")).expect("lock file");
        assert_eq!(text.trim(), std::process::id().to_string());

        // flock locks belong to open files, so a second open in this process conflicts like another process would.
        let err = DataLock::acquire(&data, &db).expect_err("second lock");
        assert!(matches!(err, LockError::Held { holder: Some(p), .. } if p == std::process::id()), "{err:?}");
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");

        drop(held);
        DataLock::acquire(&data, &db).expect("free again once the holder is gone");
    }

    #[test]
    fn a_database_outside_the_data_dir_is_locked_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data_a, data_b, db) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("shared/meta.sqlite"));
        let held = DataLock::acquire(&data_a, &db).expect("first lock");
        assert_eq!(held.paths().count(), 2);
        let err = DataLock::acquire(&data_b, &db).expect_err("same database, other data dir");
        assert!(matches!(&err, LockError::Held { path, .. } if path.starts_with(dir.path().join("shared"))), "{err:?}");
        // The refused attempt must not keep the first directory's lock it took on the way.
        DataLock::acquire(&data_b, &dir.path().join("b/meta.sqlite")).expect("data dir b alone is free");
    }
}
