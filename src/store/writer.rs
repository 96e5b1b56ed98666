//! The writer thread: the one writable connection, with group commit. Jobs
//! waiting in the queue are run back to back inside one transaction (each in
//! its own savepoint, so a failing job undoes only itself); their callers
//! hear the result only after the shared COMMIT succeeded, so nobody is told
//! "done" about work that did not reach the database.

use rusqlite::Connection;
use std::sync::mpsc::Receiver;

/// Delivers a job's result once the batch's fate is known (`Some(error)` if
/// the commit failed).
pub(super) type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
/// A unit of write work.
pub(super) type Job = Box<dyn FnOnce(&mut Connection) -> Reply + Send>;

/// Most jobs in one transaction: bounds the latency a batch adds.
const MAX_BATCH: usize = 128;

pub(super) fn run(mut conn: Connection, rx: Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, &mut batch);
    }
    // Fold the WAL back into the main file on a clean close.
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>) {
    if batch.len() == 1 || conn.execute_batch("BEGIN IMMEDIATE").is_err() {
        // One job (or the write lock is unavailable): each job's savepoint is its own transaction.
        for job in batch.drain(..) {
            job(conn)(None);
        }
        return;
    }
    let replies: Vec<Reply> = batch.drain(..).map(|job| job(conn)).collect();
    match conn.execute_batch("COMMIT") {
        Ok(()) => replies.into_iter().for_each(|r| r(None)),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let msg = format!("commit failed: {e}");
            tracing::error!(error = %msg, jobs = replies.len(), "store batch rolled back");
            replies.into_iter().for_each(|r| r(Some(&msg)));
        }
    }
}
