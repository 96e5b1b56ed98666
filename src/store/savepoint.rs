//! A savepoint guard built from cached statements. Every write job runs in
//! one, so within a group-committed batch a failing job undoes only itself.
//! (rusqlite's own `Savepoint` re-parses its SQL on every use; this is the
//! writer's hottest path.)

use rusqlite::Connection;
use std::ops::Deref;

/// An open savepoint: rolled back on drop unless committed.
pub(super) struct Savepoint<'c> {
    conn: &'c Connection,
    open: bool,
}

fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

impl<'c> Savepoint<'c> {
    /// Opens a savepoint (a transaction of its own when none is open).
    pub(super) fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        run(conn, "SAVEPOINT job")?;
        Ok(Self { conn, open: true })
    }

    /// Keeps the savepoint's changes.
    pub(super) fn commit(mut self) -> rusqlite::Result<()> {
        self.open = false;
        run(self.conn, "RELEASE job")
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = run(self.conn, "ROLLBACK TO job");
            let _ = run(self.conn, "RELEASE job");
        }
    }
}

impl Deref for Savepoint<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}
