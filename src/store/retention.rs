//! Bounded growth: deleting old rows of each kind in small batches through
//! the writer, giving the freed pages back to the file system
//! (`PRAGMA incremental_vacuum`), and the database's size for `/metrics`
//! and `health`. See docs/retention.md.
//!
//! Invariants: a batch deletes at most [`BATCH`] rows of one kind in one
//! write job, so no other write waits behind more than that; usage rows are
//! added to `llm_usage_daily` in the transaction that deletes them, so usage
//! reports count every call ever made; rows that are still in use (queued or
//! running tasks, pending outbox rows, unprocessed inbox rows) are never
//! deleted.

use super::{Store, StoreError};
use crate::clock::UnixMillis;
use rusqlite::{Connection, params};
use std::time::Duration;

/// Most rows one retention write job deletes.
pub const BATCH: usize = 500;
/// Most pages one `incremental_vacuum` job gives back (8 MiB of 4 KiB pages).
const VACUUM_PAGES: i64 = 2_048;
const VACUUM_SQL: &str = "PRAGMA incremental_vacuum(2048)";
const DAY_MS: i64 = 86_400_000;
/// Rows a finished task is counted as (itself, its events, its steps).
const TASK_ROWS: i64 = 8;

/// What retention deletes; the names are the keys of `AGENT_RUNTIME_RETENTION_DAYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `outbox`: delivered (and finally failed) outbox rows.
    Outbox,
    /// `inbox`: processed (handled or failed) inbox rows.
    Inbox,
    /// `tasks`: finished tasks, with their events and agent steps (and
    /// agent steps of turns without a task), and objective runs that ended.
    Tasks,
    /// `usage`: per-call usage rows, folded into per-day totals first.
    Usage,
    /// `audit`: audit events.
    Audit,
}

impl Kind {
    /// Every kind, in the order a pass prunes them.
    pub const ALL: [Kind; 5] = [Kind::Outbox, Kind::Inbox, Kind::Tasks, Kind::Usage, Kind::Audit];

    /// The key in `AGENT_RUNTIME_RETENTION_DAYS`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Outbox => "outbox",
            Kind::Inbox => "inbox",
            Kind::Tasks => "tasks",
            Kind::Usage => "usage",
            Kind::Audit => "audit",
        }
    }

    /// The kind named `raw` (case-insensitive).
    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(raw.trim()))
    }
}

/// Days each kind is kept (`None`: forever).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    days: [Option<u32>; 5],
}

impl Default for RetentionPolicy {
    /// outbox, inbox and tasks 30 days; usage 90; audit 365 (docs/retention.md says why).
    fn default() -> Self {
        Self { days: [Some(30), Some(30), Some(30), Some(90), Some(365)] }
    }
}

impl RetentionPolicy {
    /// Keeps everything forever.
    pub fn forever() -> Self {
        Self { days: [None; 5] }
    }

    /// Days `kind` is kept.
    pub fn days(&self, kind: Kind) -> Option<u32> {
        self.days[kind as usize]
    }

    /// Keeps `kind` for `days` (`None` or 0: forever).
    pub fn set(&mut self, kind: Kind, days: Option<u32>) {
        self.days[kind as usize] = days.filter(|&d| d > 0);
    }

    /// Rows of `kind` last changed before this are deleted.
    pub fn cutoff(&self, kind: Kind, now: UnixMillis) -> Option<UnixMillis> {
        self.days(kind).map(|d| now.saturating_sub(i64::from(d) * DAY_MS))
    }
}

// Shown by `config check` as the operator writes it.
impl std::fmt::Debug for RetentionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = Kind::ALL
            .iter()
            .map(|k| format!("{}={}", k.name(), self.days(*k).map_or_else(|| "forever".into(), |d| d.to_string())))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Rows deleted by one retention pass, and pages given back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows deleted, by [`Kind`] (`Kind as usize`).
    pub rows: [u64; 5],
    /// Pages returned to the file system by incremental vacuum.
    pub pages_freed: u64,
}

impl Pruned {
    /// Rows deleted of `kind`.
    pub fn of(&self, kind: Kind) -> u64 {
        self.rows[kind as usize]
    }

    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.rows.iter().sum()
    }
}

/// The database's size, from SQLite's page counts and the WAL file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DbSize {
    /// `page_count * page_size`: the main file.
    pub file_bytes: u64,
    /// `freelist_count * page_size`: unused pages inside it.
    pub free_bytes: u64,
    /// The write-ahead log file.
    pub wal_bytes: u64,
}

/// Converts a database created before incremental vacuum existed: the
/// setting takes effect only through a full `VACUUM`, run once here (it
/// rewrites the file, so it takes time on a large database; logged).
pub(super) fn enable_incremental_vacuum(conn: &Connection) -> Result<(), StoreError> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == 2 {
        return Ok(());
    }
    let size = page_bytes(conn)?;
    tracing::info!(bytes = size.0, "converting the database to incremental vacuum (a one-time VACUUM; this may take a while)");
    let started = std::time::Instant::now();
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.execute_batch("VACUUM")?;
    let after = page_bytes(conn)?;
    tracing::info!(before = size.0, after = after.0, ms = started.elapsed().as_millis() as u64, "database converted to incremental vacuum");
    Ok(())
}

/// (file bytes, free bytes) from the page counts.
fn page_bytes(c: &Connection) -> rusqlite::Result<(u64, u64)> {
    let page: u64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let count: u64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: u64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok((count * page, free * page))
}

/// Deletes up to `limit` rows of `kind` last changed before `cutoff`; returns how many.
fn prune_batch(c: &Connection, kind: Kind, cutoff: UnixMillis, limit: usize) -> rusqlite::Result<usize> {
    let limit = limit as i64;
    match kind {
        Kind::Outbox => c
            .prepare_cached(
                "DELETE FROM outbox WHERE id IN \
             (SELECT id FROM outbox WHERE status != 'pending' AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)",
            )?
            .execute(params![cutoff, limit]),
        Kind::Inbox => c
            .prepare_cached(
                "DELETE FROM inbox WHERE id IN \
             (SELECT id FROM inbox WHERE status != 'received' AND received_at < ?1 ORDER BY received_at LIMIT ?2)",
            )?
            .execute(params![cutoff, limit]),
        Kind::Tasks => prune_tasks(c, cutoff, limit),
        Kind::Usage => prune_usage(c, cutoff, limit),
        Kind::Audit => c
            .prepare_cached("DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < ?1 ORDER BY at LIMIT ?2)")?
            .execute(params![cutoff, limit]),
    }
}

/// Finished tasks (their events go by cascade, notices keep their row with
/// `task_id` cleared) and their agent steps; then steps of task-less turns.
fn prune_tasks(c: &Connection, cutoff: UnixMillis, limit: i64) -> rusqlite::Result<usize> {
    // A task takes its events (four or five) and steps with it: ask for
    // fewer tasks so the job stays near `limit` rows.
    let tasks = (limit / TASK_ROWS).max(1);
    let ids: Vec<String> = c
        .prepare_cached(
            "SELECT id FROM tasks WHERE status IN ('succeeded', 'failed', 'canceled') AND updated_at < ?1 ORDER BY updated_at LIMIT ?2",
        )?
        .query_map(params![cutoff, tasks], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut deleted = 0;
    for id in &ids {
        let steps = c.prepare_cached("DELETE FROM agent_steps WHERE task_id = ?1")?.execute([id])?;
        deleted += steps + c.prepare_cached("DELETE FROM tasks WHERE id = ?1")?.execute([id])?;
    }
    let room = limit - ids.len() as i64 * TASK_ROWS;
    if room > 0 {
        deleted += c
            .prepare_cached(
                "DELETE FROM agent_steps WHERE id IN (SELECT id FROM agent_steps WHERE task_id IS NULL AND at < ?1 ORDER BY at LIMIT ?2)",
            )?
            .execute(params![cutoff, room])?;
    }
    let room = limit - deleted as i64;
    if room > 0 {
        deleted += prune_runs(c, cutoff, room)?;
    }
    Ok(deleted)
}

/// Objective runs that ended (or were skipped) before `cutoff`, oldest
/// first, except each objective's newest run (`objective list` shows its
/// outcome). Runs are written in time order, so the oldest ids come first
/// and a pass stops at the first young one instead of reading the table.
fn prune_runs(c: &Connection, cutoff: UnixMillis, limit: i64) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = {
        let mut stmt = c.prepare_cached(
            "SELECT r.id, COALESCE(r.finished_at, r.fired_at, r.scheduled_at) < ?1 AS old, \
                    r.outcome IN ('succeeded', 'failed', 'canceled', 'skipped') \
                    AND r.id < (SELECT max(n.id) FROM objective_runs n WHERE n.objective_id = r.objective_id) AS done \
             FROM objective_runs r ORDER BY r.id",
        )?;
        let mut rows = stmt.query([cutoff])?;
        let mut ids = Vec::new();
        while let Some(row) = rows.next()? {
            if !row.get::<_, bool>(1)? || ids.len() as i64 >= limit {
                break;
            }
            if row.get::<_, bool>(2)? {
                ids.push(row.get(0)?);
            }
        }
        ids
    };
    let mut deleted = 0;
    for id in ids {
        deleted += c.prepare_cached("DELETE FROM objective_runs WHERE id = ?1")?.execute([id])?;
    }
    Ok(deleted)
}

/// Folds the oldest usage rows into `llm_usage_daily`, then deletes them,
/// in the same transaction. Both statements select the rows by the same
/// time bound, so exactly the rows counted are deleted.
fn prune_usage(c: &Connection, cutoff: UnixMillis, limit: i64) -> rusqlite::Result<usize> {
    let first: Option<i64> = c
        .prepare_cached("SELECT at FROM llm_usage WHERE at < ?1 ORDER BY at LIMIT 1")?
        .query_row([cutoff], |r| r.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })?;
    let Some(first) = first else { return Ok(0) };
    let next: Option<i64> = c
        .prepare_cached("SELECT at FROM llm_usage WHERE at < ?1 ORDER BY at LIMIT 1 OFFSET ?2")?
        .query_row(params![cutoff, limit], |r| r.get(0))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })?;
    // Rows strictly before `bound`: at most `limit`, unless more than that
    // share the first time (then they all go, so a pass always moves on).
    let bound = next.map_or(cutoff, |n| n.max(first + 1));
    c.prepare_cached(
        "INSERT INTO llm_usage_daily (day, provider, model, calls, errors, prompt_tokens, completion_tokens, latency_ms_sum) \
         SELECT at - (at % 86400000), provider, model, count(*), SUM(outcome != 'ok'), COALESCE(SUM(prompt_tokens), 0), \
         COALESCE(SUM(completion_tokens), 0), SUM(latency_ms) FROM llm_usage WHERE at < ?1 GROUP BY 1, 2, 3 \
         ON CONFLICT (day, provider, model) DO UPDATE SET calls = calls + excluded.calls, errors = errors + excluded.errors, \
         prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, \
         latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum",
    )?
    .execute([bound])?;
    c.prepare_cached("DELETE FROM llm_usage WHERE at < ?1")?.execute([bound])
}

impl Store {
    /// One write job: deletes up to `limit` rows of `kind` older than `cutoff`.
    pub async fn prune_batch(&self, kind: Kind, cutoff: UnixMillis, limit: usize) -> Result<usize, StoreError> {
        self.write(move |c| Ok(prune_batch(c, kind, cutoff, limit)?)).await
    }

    /// One retention pass: every kind the policy bounds, in batches of
    /// about [`BATCH`] rows with a pause of `pause` between them (writes
    /// queued meanwhile go first), until a batch finds nothing; then the
    /// freed pages go back to the file system.
    pub async fn prune(&self, policy: &RetentionPolicy, now: UnixMillis, pause: Duration) -> Result<Pruned, StoreError> {
        let mut out = Pruned::default();
        for kind in Kind::ALL {
            let Some(cutoff) = policy.cutoff(kind, now) else { continue };
            loop {
                let n = self.prune_batch(kind, cutoff, BATCH).await?;
                out.rows[kind as usize] += n as u64;
                if n == 0 {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
        }
        if out.total() > 0 {
            out.pages_freed = self.vacuum_free_pages(pause).await?;
        }
        Ok(out)
    }

    /// Gives the free pages back to the file system, [`VACUUM_PAGES`] per
    /// write job; returns how many.
    pub async fn vacuum_free_pages(&self, pause: Duration) -> Result<u64, StoreError> {
        let mut freed = 0;
        loop {
            let n = self
                .write(|c| {
                    let before: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                    // One page per step: step it to the end.
                    // (A pragma takes no bound parameters.)
                    let mut stmt = c.prepare_cached(VACUUM_SQL)?;
                    let mut rows = stmt.query([])?;
                    while rows.next()?.is_some() {}
                    drop(rows);
                    let after: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                    Ok((before - after).max(0) as u64)
                })
                .await?;
            freed += n;
            if n < VACUUM_PAGES as u64 {
                return Ok(freed);
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// The database's size (three pragmas and a `stat` of the WAL: no scan).
    pub async fn db_size(&self) -> Result<DbSize, StoreError> {
        let wal = {
            let mut p = self.path().as_os_str().to_owned();
            p.push("-wal");
            std::path::PathBuf::from(p)
        };
        self.read(move |c| {
            let (file_bytes, free_bytes) = page_bytes(c)?;
            let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
            Ok(DbSize { file_bytes, free_bytes, wal_bytes })
        })
        .await
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
