//! Counts of durable state for `/metrics` (read per scrape).

use super::{Store, StoreError};
use crate::clock::UnixMillis;
use rusqlite::Connection;

/// How many rows are in each state.
#[derive(Debug, Clone, Default)]
pub struct StateCounts {
    /// Tasks by status.
    pub tasks: Vec<(String, u64)>,
    /// Queued tasks due now.
    pub queue_depth: u64,
    /// Outbox rows by status.
    pub outbox: Vec<(String, u64)>,
    /// Pending approval requests.
    pub approvals_pending: u64,
    /// Pending pairing requests.
    pub pairings_pending: u64,
}

fn grouped(c: &Connection, sql: &str) -> rusqlite::Result<Vec<(String, u64)>> {
    c.prepare_cached(sql)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

impl Store {
    /// Counts for the metrics gauges, in one read transaction.
    pub async fn state_counts(&self, now: UnixMillis) -> Result<StateCounts, StoreError> {
        self.read(move |c| {
            let one = |sql: &str| c.prepare_cached(sql)?.query_row([now], |r| r.get::<_, u64>(0));
            Ok(StateCounts {
                // Covered by `tasks_by_context (context_id, created_at, status)`:
                // the scan reads the index, not the rows.
                tasks: grouped(c, "SELECT status, count(*) FROM tasks GROUP BY status")?,
                queue_depth: one("SELECT count(*) FROM tasks WHERE status = 'queued' AND not_before <= ?1")?,
                outbox: grouped(c, "SELECT status, count(*) FROM outbox GROUP BY status")?,
                approvals_pending: one("SELECT count(*) FROM approvals WHERE status = 'pending' AND expires_at > ?1")?,
                pairings_pending: one("SELECT count(*) FROM pairing_requests WHERE status = 'pending' AND expires_at > ?1")?,
            })
        })
        .await
    }
}
