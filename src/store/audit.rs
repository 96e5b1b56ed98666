//! The audit log: every permission denial, pairing and approval event and
//! rate-limit decision, with actor, chat, decision and reason. Rows are
//! written in the same transaction as the change they describe.

use super::filter::Filter;
use super::{Store, StoreError};
use crate::clock::UnixMillis;
use rusqlite::{Connection, Row, params};
use serde::Serialize;

/// The decision an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed (or done).
    Allow,
    /// Refused.
    Deny,
    /// A fact (requested, expired, executed).
    Info,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Info => "info",
        }
    }
}

/// One audit row to write.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// `user:<id>`, `unlinked:<connector>:<platform id>`, `api` or `system`.
    pub actor: String,
    /// The chat, when there is one.
    pub chat: Option<(String, String)>,
    /// Dotted event name (`permission.denied`, `approval.approved`, ...).
    pub event: &'static str,
    /// The decision.
    pub decision: Decision,
    /// Why (command name, denial reason, outcome).
    pub reason: Option<String>,
    /// What it is about (approval id, pairing id, task id).
    pub subject: Option<String>,
}

/// Who acts, for the audit rows a store call writes itself in the same
/// transaction as its change.
#[derive(Debug, Clone)]
pub struct AuditWho {
    /// As in [`NewAudit::actor`].
    pub actor: String,
    /// The chat, when there is one.
    pub chat: Option<(String, String)>,
}

impl AuditWho {
    /// A row by this actor.
    pub fn row(&self, event: &'static str, decision: Decision, reason: Option<String>, subject: Option<String>) -> NewAudit {
        NewAudit { actor: self.actor.clone(), chat: self.chat.clone(), event, decision, reason, subject }
    }
}

/// One stored audit row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// Row id (monotonic).
    pub id: i64,
    /// When (unix ms).
    pub at: UnixMillis,
    /// Who.
    pub actor: String,
    /// Connector of the chat.
    pub connector: Option<String>,
    /// Chat id.
    pub external_id: Option<String>,
    /// Event name.
    pub event: String,
    /// `allow`, `deny` or `info`.
    pub decision: String,
    /// Why.
    pub reason: Option<String>,
    /// About what.
    pub subject: Option<String>,
}

/// Filters for [`Store::list_audit`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Connector of the chat.
    pub connector: Option<String>,
    /// Chat id.
    pub external_id: Option<String>,
    /// Event name, or a prefix ending in `.` (`approval.`).
    pub event: Option<String>,
    /// Only rows at or after (unix ms).
    pub since: Option<UnixMillis>,
    /// Only rows before (unix ms).
    pub until: Option<UnixMillis>,
    /// Only rows with a larger id (paging).
    pub after_id: Option<i64>,
    /// At most this many (newest first).
    pub limit: u32,
}

/// Writes audit rows inside the caller's transaction.
pub(super) fn insert_audit(c: &Connection, rows: &[NewAudit], now: UnixMillis) -> Result<(), StoreError> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO audit_events (at, actor, connector, external_id, event, decision, reason, subject) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for a in rows {
        let (connector, external) = a.chat.clone().unzip();
        stmt.execute(params![now, a.actor, connector, external, a.event, a.decision.as_str(), a.reason, a.subject])?;
        // Approval, pairing and objective changes are also live events
        // (their audit row is the record of the change).
        if a.event.starts_with("approval.") || a.event.starts_with("pairing.") || a.event.starts_with("objective.") {
            let data = serde_json::json!({
                "id": a.subject, "actor": a.actor, "decision": a.decision.as_str(), "reason": a.reason,
                "connector": connector, "external_id": external,
            });
            super::events::append(c, now, a.event, &data)?;
        }
    }
    Ok(())
}

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        connector: r.get(3)?,
        external_id: r.get(4)?,
        event: r.get(5)?,
        decision: r.get(6)?,
        reason: r.get(7)?,
        subject: r.get(8)?,
    })
}

impl Store {
    /// Writes audit rows on their own.
    pub async fn audit(&self, rows: Vec<NewAudit>, now: UnixMillis) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(move |c| insert_audit(c, &rows, now)).await
    }

    /// Audit rows matching `f`, newest first.
    pub async fn list_audit(&self, f: AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(move |c| {
            let (event_exact, event_prefix) = match &f.event {
                Some(e) if e.ends_with('.') => (None, Some(format!("{e}%"))),
                Some(e) => (Some(e.clone()), None),
                None => (None, None),
            };
            let mut w = Filter::default();
            w.eq("actor", f.actor)
                .eq("connector", f.connector)
                .eq("external_id", f.external_id)
                .eq("event", event_exact)
                .cmp("event", "LIKE", event_prefix)
                .cmp("at", ">=", f.since)
                .cmp("at", "<", f.until)
                .cmp("id", ">", f.after_id);
            // With `after_id` (polling for what is new) the rows come oldest
            // first, so a page ends where the next one starts; otherwise newest first.
            let order = if f.after_id.is_some() { "ASC" } else { "DESC" };
            let sql = format!(
                "SELECT id, at, actor, connector, external_id, event, decision, reason, subject FROM audit_events{} ORDER BY id {order} LIMIT ?{}",
                w.clause(),
                w.next()
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(w.values([i64::from(f.limit).into()])), audit_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
