//! Counts of durable state for `/metrics` (read per scrape, without
//! scanning a table: see migration 12's `state_counts`).

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
                // Kept by triggers in the transactions that change a status
                // (migration 12): a few rows, however large the tables.
                tasks: grouped(c, "SELECT status, n FROM state_counts WHERE tbl = 'tasks'")?,
                // From the `tasks_claimable` partial index: queued tasks only.
                queue_depth: one("SELECT count(*) FROM tasks WHERE status = 'queued' AND not_before <= ?1")?,
                outbox: grouped(c, "SELECT status, n FROM state_counts WHERE tbl = 'outbox'")?,
                approvals_pending: one("SELECT count(*) FROM approvals WHERE status = 'pending' AND expires_at > ?1")?,
                pairings_pending: one("SELECT count(*) FROM pairing_requests WHERE status = 'pending' AND expires_at > ?1")?,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_store;

    #[tokio::test]
    async fn every_status_is_counted_from_the_start() {
        let (_d, store) = temp_store();
        let c = store.state_counts(0).await.expect("counts");
        assert_eq!(c.tasks.len(), 5, "{:?}", c.tasks);
        assert!(c.tasks.iter().all(|(_, n)| *n == 0));
        assert_eq!(c.outbox.len(), 3, "{:?}", c.outbox);
    }
}
