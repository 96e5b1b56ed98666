//! The writer thread: the one writable connection, with group commit. Jobs
//! waiting in the queue run back to back inside one transaction, and their
//! callers hear the result only after the shared COMMIT succeeded, so nobody
//! is told "done" about work that did not reach the database.
//!
//! Every job checks its preconditions before it writes, so a domain error
//! (not found, conflict, stale lease) leaves nothing behind. An SQLite error
//! can leave a job half-done: then the whole batch is rolled back and every
//! job in it gets the error (rare: disk full, I/O errors), which is why jobs
//! need no savepoints of their own (their page copies cost a third of the
//! writer's time).

use super::events::EventBus;
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;

/// Delivers a job's result once the batch's fate is known (`Some(error)` if
/// the batch was rolled back).
pub(super) type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
/// A unit of write work: returns its reply and whether it failed after
/// possibly writing (which aborts the batch).
pub(super) type Job = Box<dyn FnOnce(&mut Connection) -> (Reply, bool) + Send>;

/// Most jobs in one transaction: bounds the latency a batch adds.
const MAX_BATCH: usize = 128;

/// `changes` gets SQLite's count of rows changed by this connection after
/// every batch: it moves only when something was written (a pass that finds
/// nothing to expire leaves it alone), which is how the runtime tells a quiet
/// daemon from a busy one.
pub(super) fn run(mut conn: Connection, rx: Receiver<Job>, events: Arc<EventBus>, changes: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = run_batch(&mut conn, &mut batch, &changes);
        events.after_batch(&conn, committed);
    }
    // Fold the WAL back into the main file on a clean close.
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

/// Runs and commits one batch; false when nothing of it was applied.
fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>, changes: &AtomicU64) -> bool {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = format!("cannot start a write transaction: {e}");
        tracing::error!(error = %msg, "store write refused");
        // Dropping a job drops its reply channel: its caller gets `StoreError::Closed` (→ 503).
        batch.clear();
        return false;
    }
    let mut replies = Vec::with_capacity(batch.len());
    let mut aborted = false;
    for job in batch.drain(..) {
        let (reply, dirty) = job(conn);
        aborted |= dirty;
        replies.push(reply);
    }
    let outcome = if aborted {
        Err("a write in the same batch failed; nothing in the batch was applied".to_string())
    } else {
        conn.execute_batch("COMMIT").map_err(|e| format!("commit failed: {e}"))
    };
    // Before any caller hears back, so one that wrote sees the count moved.
    changes.store(conn.total_changes(), Ordering::Release);
    match outcome {
        Ok(()) => {
            replies.into_iter().for_each(|r| r(None));
            true
        }
        Err(msg) => {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %msg, jobs = replies.len(), "store batch rolled back");
            replies.into_iter().for_each(|r| r(Some(&msg)));
            false
        }
    }
}
