//! The only module that contains SQL. SQLite in WAL mode with foreign keys on;
//! one writer thread owns the only writable connection and runs every change
//! in order (group-committing jobs that queue up together); reads run on `spawn_blocking` on one of at most
//! [`MAX_READERS`] pooled read-only connections (a semaphore bounds them, so a
//! burst of reads waits for a warm connection instead of opening, and
//! re-reading the schema into, a fresh one). No method blocks an async worker
//! thread.
//!
//! Invariants: every state change and its history row (task events, outbox
//! rows for notices) commit in one transaction; migrations are forward-only.

mod approvals;
mod audit;
mod budget;
mod chats;
mod events;
mod filter;
mod idempotency;
mod migrations;
mod objectives;
mod outbox;
mod people;
pub mod retention;
mod stats;
mod steps;
mod tasks;
mod usage;
mod workspaces;
mod writer;

pub use approvals::{Approval, ApprovalError, NewApproval, Resume, notice as approval_notice, resume_state};
pub use audit::{AuditEvent, AuditFilter, AuditWho, Decision, NewAudit};
pub use budget::{ContextBudget, ModelTokens, Spend, SpendQuery, SwitchState};
pub use chats::{Cursor, InboundRecord};
pub use events::Event;
pub use idempotency::{IDEMPOTENCY_TTL_MS, IdempotencyStart};
/// The schema version (the last migration step) this binary brings a database to.
pub use objectives::{
    FirePlan, FireResult, NewObjective, Objective, ObjectiveFilter, ObjectiveRun, PlannedRun, RecentError, event_prompt, run_key,
};
pub use outbox::{NewOutbound, Notifier};
pub use people::{NewPairing, Pairing, PairingError};
pub use retention::{DbSize, Pruned, RetentionPolicy};
pub use stats::StateCounts;
pub use steps::{MAX_STEPS_SHOWN, NewStep, StepRow};
pub use tasks::{CancelOutcome, Claim, Enqueued, FinishOutcome, Finished, IdTable, LeaseState, RetryPolicy, Route, TaskFilter, TaskPatch};
pub use usage::{UsageRecord, UsageTotals};
pub use workspaces::{ContextFilter, Workspace};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

/// Errors from the store; each variant's doc says what callers show.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// → 404: no such row.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// → 409: an optimistic update named an old version.
    #[error("version conflict: the task is at version {current}")]
    VersionConflict {
        /// The version the row is at now.
        current: i64,
    },
    /// → 409: the change is not allowed in the row's current state.
    #[error("{0}")]
    Conflict(String),
    /// → 409: a worker reported on a task it no longer holds (its lease expired).
    #[error("task {0} is no longer leased to this worker")]
    StaleLease(String),
    /// → 500: the database file was written by a newer version of the runtime.
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// → 503: the store has been closed (shutdown in progress).
    #[error("store is closed")]
    Closed,
    /// → 500: a filesystem problem opening the database.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// → 500: a batch of writes could not be committed; none of it was applied.
    #[error("database error: {0}")]
    Commit(String),
    /// → 500: SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<writer::Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    read_permits: Arc<tokio::sync::Semaphore>,
    events: Arc<events::EventBus>,
    /// Rows changed by the writer so far (see [`Store::changes`]).
    changes: Arc<std::sync::atomic::AtomicU64>,
    /// Poked after an objective is created, changed or deleted (the scheduler waits on it).
    objective_changes: tokio::sync::Notify,
}

/// A cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish()
    }
}

/// Read-only connections (and concurrent reads). Each keeps its schema and
/// its prepared statements (a few hundred KiB to a MiB once warm), so the
/// pool is sized for two cores, not for peak concurrency.
pub const MAX_READERS: usize = 4;

/// The schema version (`PRAGMA user_version`) this binary migrates a database to.
pub const SCHEMA_VERSION: i64 = migrations::LATEST;

/// Settings for every connection; the writer also gets a larger page cache.
fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(if writer { 128 } else { 48 });
    // Query-planner stability: without it, SQLite (built with STAT4) re-prepares
    // statements whose bound parameters meet a partial index on every rebind,
    // which cost most of the writer's time.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // NORMAL in WAL mode survives a process crash (kill -9); only an OS crash
    // or power loss can lose the last transactions.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    if writer {
        // 2 MiB (SQLite's default), allocated as pages are used: the hot
        // pages (queue and inbox indexes, recent rows) fit, and a bigger cache
        // only grew the daemon's memory with the database (16 MiB cost
        // +14 MiB of RSS after a few thousand messages; docs/benchmarks.md).
        conn.pragma_update(None, "cache_size", -2_048)?;
        // Checkpoint every ~16 MiB of WAL instead of 4 MiB: a page changed
        // many times in between is copied back once, and the two fsyncs of
        // a checkpoint come a quarter as often. The WAL file is truncated
        // back to 16 MiB after a checkpoint resets it.
        conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
    } else {
        // A reader's page cache is emptied whenever another connection has
        // committed, which under load is always; mapping the file lets it
        // read pages without copying them in again (pages still in the WAL
        // are read from it as before).
        conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
        // And since that cache is emptied so often, a small one loses
        // nothing; eight pooled readers at the 2 MiB default held ~10 MiB.
        conn.pragma_update(None, "cache_size", -256)?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies pending
    /// migrations in a transaction, and starts the writer thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        }
        let mut conn = Connection::open(path)?;
        // Before the first table exists this is all a new file needs;
        // an older file is converted by `retention::enable_incremental_vacuum`.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        configure(&conn, true)?;
        migrations::apply(&mut conn)?;
        retention::enable_incremental_vacuum(&conn)?;
        let events = events::EventBus::new(&conn)?;
        let bus = events.clone();
        // From what opening wrote (migrations), so only later writes move it.
        let changes = Arc::new(std::sync::atomic::AtomicU64::new(conn.total_changes()));
        let counter = changes.clone();
        let (tx, rx) = mpsc::channel::<writer::Job>();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(conn, rx, bus, counter))
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                readers: Mutex::new(Vec::new()),
                read_permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
                events,
                changes,
                objective_changes: tokio::sync::Notify::new(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the writer thread, in order with every other write.
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: writer::Job = Box::new(move |conn| {
            let result = f(conn);
            // A domain error (not found, conflict, stale lease) is returned
            // before the job writes anything; an SQLite error may leave the
            // job half-done, so it aborts the whole batch.
            let dirty = matches!(result, Err(StoreError::Sqlite(_) | StoreError::Commit(_)));
            if let (true, Err(e)) = (dirty, &result) {
                tracing::error!(error = %e, "store write failed; rolling back its batch");
            }
            let reply: writer::Reply = Box::new(move |commit_error: Option<&str>| {
                let _ = tx.send(match commit_error {
                    None => result,
                    Some(e) => Err(StoreError::Commit(e.to_string())),
                });
            });
            (reply, dirty)
        });
        {
            let guard = self.inner.writer.lock().map_err(|_| StoreError::Closed)?;
            guard.as_ref().ok_or(StoreError::Closed)?.send(job).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        if self.inner.writer.lock().map_err(|_| StoreError::Closed)?.is_none() {
            return Err(StoreError::Closed);
        }
        let inner = self.inner.clone();
        let permit = inner.read_permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = inner.readers.lock().ok().and_then(|mut v| v.pop());
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                    )?;
                    configure(&c, false)?;
                    c
                }
            };
            let out = f(&conn);
            if let Ok(mut v) = inner.readers.lock()
                && v.len() < MAX_READERS
            {
                v.push(conn);
            }
            out
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)).await.map(|_| ())
    }

    /// A write round trip that changes nothing (benchmarks the writer itself).
    pub async fn write_noop(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    /// Rows inserted, updated or deleted through the store since it opened.
    /// Writes that change nothing (an expiry pass with nothing to expire) do
    /// not move it, so an unchanged value means nothing happened.
    pub fn changes(&self) -> u64 {
        self.inner.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves after the next objective create, change or delete committed
    /// (or at once if one committed since the last wait ended).
    pub async fn objective_changed(&self) {
        self.inner.objective_changes.notified().await
    }

    pub(crate) fn poke_objectives(&self) {
        self.inner.objective_changes.notify_one();
    }

    /// Gives back the memory SQLite holds for speed, for when the daemon has
    /// gone quiet. The writer frees its page cache (`PRAGMA shrink_memory`)
    /// and its cached statements (prepared again on first use; the burst left
    /// them scattered over the heap, pinning pages that are otherwise free).
    /// The pooled readers are closed, their caches, statements and schema
    /// copies with them (the next read opens one again, in about a
    /// millisecond); readers in use are kept. Returns how many were closed.
    pub async fn release_memory(&self) -> Result<usize, StoreError> {
        let idle: Vec<Connection> = match self.inner.readers.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => Vec::new(),
        };
        let closed = idle.len();
        drop(idle);
        self.write(|c| {
            c.execute_batch("PRAGMA shrink_memory")?;
            c.flush_prepared_statement_cache();
            Ok(())
        })
        .await?;
        Ok(closed)
    }

    /// Finishes queued writes, checkpoints the WAL and stops the writer
    /// thread. Later calls fail with [`StoreError::Closed`].
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        self.inner.read_permits.close();
        if let Ok(mut r) = self.inner.readers.lock() {
            r.clear();
        }
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Converts an optional row into a `NotFound` error.
fn found<T>(row: Option<T>, what: &'static str) -> Result<T, StoreError> {
    row.ok_or(StoreError::NotFound(what))
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::Store;
    use crate::domain::{ChatRef, Inbound, TraceId};

    /// A private message from `u1` in `codex:s1` with `dedupe` as its key.
    pub fn inbound(dedupe: &str) -> Inbound {
        Inbound {
            chat: ChatRef::new("codex", "s1").expect("chat"),
            from_user_id: "u1".into(),
            display_name: "U1".into(),
            text: "hello".into(),
            dedupe_key: dedupe.into(),
            kind: crate::domain::ChatKind::Private,
            mentioned: false,
            trace_id: TraceId::random(),
            meta: Default::default(),
        }
    }

    /// A store on a fresh temp file (kept alive by the returned dir).
    pub fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("meta.sqlite")).expect("open store");
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{inbound, temp_store};

    #[tokio::test]
    async fn changes_move_with_rows_written_only() {
        let (_d, store) = temp_store();
        let c0 = store.changes();
        store.write_noop().await.expect("noop");
        store.purge_idempotency_keys(0).await.expect("purge nothing");
        assert_eq!(store.changes(), c0, "writes that change no row");
        store.record_inbound(&inbound("m1"), 1).await.expect("store");
        let c1 = store.changes();
        assert!(c1 > c0, "{c1} after {c0}");
        store.ping().await.expect("read");
        assert_eq!(store.changes(), c1, "reads change nothing");
    }

    #[tokio::test]
    async fn release_memory_closes_pooled_readers_and_the_store_works_on() {
        let (_d, store) = temp_store();
        store.record_inbound(&inbound("m1"), 1).await.expect("store");
        store.ping().await.expect("read");
        assert_eq!(store.release_memory().await.expect("release"), 1, "the one pooled reader");
        assert_eq!(store.release_memory().await.expect("release again"), 0, "nothing pooled any more");
        assert_eq!(store.inbox_count().await.expect("read after release"), 1);
        store.record_inbound(&inbound("m2"), 2).await.expect("write after release");
        assert_eq!(store.inbox_count().await.expect("count"), 2);
        assert_eq!(store.release_memory().await.expect("release"), 1, "the reader opened again by the reads");
    }
}
