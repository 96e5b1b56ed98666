//! The event log: one numbered, append-only stream of what changed (task
//! transitions, approvals, inbound and outbound messages, health). Every row
//! is written in the transaction that made the change, so the log never
//! claims something that did not commit, and never misses something that
//! did. After each commit the writer thread publishes the new rows on a
//! broadcast channel for live subscribers (`GET /api/v1/events`); a
//! subscriber that falls behind, or reconnects with `Last-Event-ID`, reads
//! the rows it missed from this table.
//!
//! Ids are SQLite rowids: committed ids are contiguous and increasing (a
//! rolled-back batch's ids are reused by the next one). Pruning removes the
//! oldest rows but always keeps the newest, so ids never go back.

use super::{Store, StoreError};
use crate::clock::UnixMillis;
use rusqlite::{Connection, Row, params};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::broadcast;

/// Events kept in the live ring shared by every subscriber; one further
/// behind reads the log instead.
const LIVE_RING: usize = 4096;

/// One logged event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the log (the SSE `id`).
    pub id: i64,
    /// When it happened.
    pub at: UnixMillis,
    /// `task.succeeded`, `approval.requested`, `message.inbound`, ….
    pub kind: String,
    /// The event's fields, a JSON object.
    pub data: String,
}

impl Event {
    /// The event as one JSON object: `{"id","at","type","data"}`.
    pub fn to_json(&self) -> String {
        let kind = serde_json::to_string(&self.kind).unwrap_or_else(|_| "\"\"".into());
        format!("{{\"id\":{},\"at\":{},\"type\":{},\"data\":{}}}", self.id, self.at, kind, self.data)
    }

    /// Whether the event's type starts with one of `prefixes` (all when empty).
    pub fn matches(&self, prefixes: &[String]) -> bool {
        prefixes.is_empty() || prefixes.iter().any(|p| self.kind.starts_with(p.as_str()))
    }
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event { id: r.get(0)?, at: r.get(1)?, kind: r.get(2)?, data: r.get(3)? })
}

thread_local! {
    /// Set by [`append`] on the writer thread: the id of the last event the
    /// batch being built added (0: none).
    static APPENDED: Cell<i64> = const { Cell::new(0) };
}

/// Appends one event inside the current write transaction.
pub(super) fn append(c: &Connection, at: UnixMillis, kind: &str, data: &serde_json::Value) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO events (at, kind, data) VALUES (?1, ?2, ?3)")?.execute(params![at, kind, data.to_string()])?;
    let id = c.last_insert_rowid();
    APPENDED.with(|a| a.set(id));
    Ok(())
}

/// The first 200 characters of a message body, for event previews.
pub(super) fn preview(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The live side of the log: the broadcast channel and the newest id
/// published on it.
#[derive(Debug)]
pub(super) struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    head: AtomicI64,
}

impl EventBus {
    pub(super) fn new(conn: &Connection) -> rusqlite::Result<Arc<EventBus>> {
        let head: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))?;
        let (tx, _) = broadcast::channel(LIVE_RING);
        Ok(Arc::new(EventBus { tx, head: AtomicI64::new(head) }))
    }

    /// Called by the writer after every batch: publishes what it committed
    /// (or forgets what it rolled back).
    pub(super) fn after_batch(&self, conn: &Connection, committed: bool) {
        let last = APPENDED.with(|a| a.replace(0));
        if last == 0 || !committed {
            return;
        }
        let head = self.head.load(Ordering::Acquire);
        if self.tx.receiver_count() == 0 {
            // Nobody listens: only move the head (subscribers start from it).
            self.head.store(last, Ordering::Release);
            return;
        }
        let rows = conn
            .prepare_cached("SELECT id, at, kind, data FROM events WHERE id > ?1 ORDER BY id")
            .and_then(|mut s| s.query_map([head], from_row)?.collect::<Result<Vec<_>, _>>());
        match rows {
            Ok(rows) => {
                for e in rows {
                    self.head.store(e.id, Ordering::Release);
                    // An error only means every receiver has gone.
                    let _ = self.tx.send(Arc::new(e));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read new events to publish; subscribers will catch up from the log"),
        }
    }
}

impl Store {
    /// A live feed of events committed from now on. Combine with
    /// [`Store::events_after`] to resume: subscribe first, then read the log.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.tx.subscribe()
    }

    /// The id of the newest published event (0 when the log is empty).
    pub fn event_head(&self) -> i64 {
        self.inner.events.head.load(Ordering::Acquire)
    }

    /// Up to `limit` (1..=1000) events with ids above `after`, oldest first,
    /// optionally only those whose type starts with one of `prefixes`.
    pub async fn events_after(&self, after: i64, limit: u32, prefixes: Vec<String>) -> Result<Vec<Event>, StoreError> {
        let limit = limit.clamp(1, 1000);
        self.read(move |c| {
            let mut out = Vec::new();
            let mut cursor = after;
            // Filtering happens here rather than in SQL (the types are a handful
            // of prefixes); keep paging until the page is full or the log ends.
            loop {
                let page: Vec<Event> = c
                    .prepare_cached("SELECT id, at, kind, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?
                    .query_map(params![cursor, limit], from_row)?
                    .collect::<Result<_, _>>()?;
                let done = page.len() < limit as usize;
                if let Some(last) = page.last() {
                    cursor = last.id;
                }
                out.extend(page.into_iter().filter(|e| e.matches(&prefixes)));
                if done || out.len() >= limit as usize {
                    out.truncate(limit as usize);
                    return Ok(out);
                }
            }
        })
        .await
    }

    /// The oldest id still in the log (None when empty): a resume from
    /// before it has missed pruned events.
    pub async fn first_event_id(&self) -> Result<Option<i64>, StoreError> {
        self.read(|c| Ok(c.query_row("SELECT min(id) FROM events", [], |r| r.get(0))?)).await
    }

    /// Drops events older than `before`, always keeping the newest row so
    /// ids never restart. Returns how many were removed.
    pub async fn prune_events(&self, before: UnixMillis) -> Result<usize, StoreError> {
        self.write(move |c| {
            let keep_from: Option<i64> = c.query_row(
                "SELECT coalesce((SELECT id FROM events WHERE at >= ?1 ORDER BY id LIMIT 1), (SELECT max(id) FROM events))",
                [before],
                |r| r.get(0),
            )?;
            Ok(match keep_from {
                Some(id) => c.execute("DELETE FROM events WHERE id < ?1", [id])?,
                None => 0,
            })
        })
        .await
    }

    /// Appends an event on its own (for changes that live outside the
    /// store, such as component health).
    pub async fn log_event(&self, kind: &'static str, data: serde_json::Value, now: UnixMillis) -> Result<(), StoreError> {
        self.write(move |c| Ok(append(c, now, kind, &data)?)).await
    }
}
