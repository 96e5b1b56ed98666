//! Users, verified identities and pairing requests. A platform identity is
//! linked to a user only by an approved pairing (or an admin action); tokens
//! are stored only as SHA-256 hashes with a short hint.

use super::audit::{AuditWho, Decision, insert_audit};
use super::filter::Filter;
use super::{Store, StoreError};
use crate::clock::UnixMillis;
use crate::domain::{PairingId, Role, User, UserId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

/// A pairing request as stored (never with its token).
#[derive(Debug, Clone, Serialize)]
pub struct Pairing {
    /// Request id.
    pub id: PairingId,
    /// First four and last four characters of the token.
    pub token_hint: String,
    /// Connector of the identity to link.
    pub connector: String,
    /// Platform user id to link.
    pub connector_user_id: String,
    /// Name the user gave.
    pub display_name: String,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    /// Expiry (unix ms).
    pub expires_at: UnixMillis,
    /// The user the identity was linked to.
    pub approved_user_id: Option<String>,
    /// Who approved or denied it (audit name).
    pub approver: Option<String>,
    /// The role granted.
    pub role: Option<String>,
    /// Why it was denied.
    pub reason: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
}

const PAIRING_COLUMNS: &str =
    "id, token_hint, connector, connector_user_id, display_name, status, expires_at, approved_user_id, approver, role, reason, created_at";

fn pairing_from_row(r: &Row<'_>) -> rusqlite::Result<Pairing> {
    Ok(Pairing {
        id: PairingId::from_string(r.get::<_, String>(0)?),
        token_hint: r.get(1)?,
        connector: r.get(2)?,
        connector_user_id: r.get(3)?,
        display_name: r.get(4)?,
        status: r.get(5)?,
        expires_at: r.get(6)?,
        approved_user_id: r.get(7)?,
        approver: r.get(8)?,
        role: r.get(9)?,
        reason: r.get(10)?,
        created_at: r.get(11)?,
    })
}

/// A new pairing request to store.
#[derive(Debug, Clone)]
pub struct NewPairing {
    /// SHA-256 (hex) of the normalised token.
    pub token_hash: String,
    /// Hint shown to admins.
    pub token_hint: String,
    /// Connector of the identity.
    pub connector: String,
    /// Platform user id.
    pub connector_user_id: String,
    /// Display name.
    pub display_name: String,
    /// Lifetime in milliseconds.
    pub ttl_ms: i64,
    /// Most requests one sender may open within one lifetime.
    pub max_per_window: u32,
}

/// How an approve or deny of a pairing went wrong (each → a chat reply / 4xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// → 404: no request has this token.
    #[error("Pairing token not found.")]
    NotFound,
    /// → 409: the request was already approved, denied or expired.
    #[error("This pairing request was already {0}.")]
    NotPending(String),
    /// → 410: the token's lifetime is over (the request is now `expired`).
    #[error("This pairing token has expired; ask the user to send `pair` again.")]
    Expired,
    /// → 403: the approver may not grant a role above their own.
    #[error("You cannot grant the role {wanted} (yours is {own}).")]
    RoleTooHigh {
        /// The role asked for.
        wanted: Role,
        /// The approver's role.
        own: Role,
    },
    /// → 409: the identity is linked already.
    #[error("This identity is already linked to a user.")]
    AlreadyLinked,
    /// → 429: the sender opened too many requests recently.
    #[error("Too many pairing requests; try again in a few minutes.")]
    TooMany,
}

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// The verified user behind a platform identity (inside any transaction).
pub(super) fn lookup_user(c: &Connection, connector: &str, platform_user_id: &str) -> Result<Option<User>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT u.id, u.display_name, u.role FROM identities i JOIN users u ON u.id = i.user_id \
             WHERE i.connector = ?1 AND i.connector_user_id = ?2 AND i.verified = 1",
        )?
        .query_row(params![connector, platform_user_id], user_from_row)
        .optional()?;
    Ok(row.map(|(id, name, role)| User {
        id: UserId::from_string(id),
        display_name: name,
        // A role name this binary does not know reads as the least privilege.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
    }))
}

fn find_by_hash(c: &Connection, hash: &str) -> Result<Option<Pairing>, StoreError> {
    let sql = format!("SELECT {PAIRING_COLUMNS} FROM pairing_requests WHERE token_hash = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([hash], pairing_from_row).optional()?)
}

/// Loads a pending request by token hash, expiring it if its time is up.
fn pending_by_hash(c: &Connection, hash: &str, now: UnixMillis) -> Result<Result<Pairing, PairingError>, StoreError> {
    let Some(p) = find_by_hash(c, hash)? else { return Ok(Err(PairingError::NotFound)) };
    if p.status != "pending" {
        return Ok(Err(PairingError::NotPending(p.status)));
    }
    if p.expires_at <= now {
        c.execute("UPDATE pairing_requests SET status = 'expired', updated_at = ?2 WHERE id = ?1", params![p.id.as_str(), now])?;
        return Ok(Err(PairingError::Expired));
    }
    Ok(Ok(p))
}

fn start_pairing(tx: &Connection, new: &NewPairing, now: UnixMillis) -> Result<Result<Pairing, PairingError>, StoreError> {
    if lookup_user(tx, &new.connector, &new.connector_user_id)?.is_some() {
        return Ok(Err(PairingError::AlreadyLinked));
    }
    let recent: u32 = tx.query_row(
        "SELECT COUNT(*) FROM pairing_requests WHERE connector = ?1 AND connector_user_id = ?2 AND created_at > ?3",
        params![new.connector, new.connector_user_id, now - new.ttl_ms],
        |r| r.get(0),
    )?;
    if recent >= new.max_per_window {
        return Ok(Err(PairingError::TooMany));
    }
    tx.execute(
        "UPDATE pairing_requests SET status = 'expired', reason = 'replaced by a newer request', updated_at = ?3 \
         WHERE connector = ?1 AND connector_user_id = ?2 AND status = 'pending'",
        params![new.connector, new.connector_user_id, now],
    )?;
    let id = PairingId::random();
    tx.execute(
        "INSERT INTO pairing_requests (id, token_hash, token_hint, connector, connector_user_id, display_name, status, \
         expires_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?8)",
        params![id.as_str(), new.token_hash, new.token_hint, new.connector, new.connector_user_id, new.display_name, now + new.ttl_ms, now],
    )?;
    let sql = format!("SELECT {PAIRING_COLUMNS} FROM pairing_requests WHERE id = ?1");
    Ok(Ok(tx.query_row(&sql, [id.as_str()], pairing_from_row)?))
}

fn approve_pairing(
    tx: &Connection,
    token_hash: &str,
    approver: &str,
    approver_role: Role,
    role: Role,
    now: UnixMillis,
) -> Result<Result<(Pairing, User), PairingError>, StoreError> {
    if role > approver_role {
        return Ok(Err(PairingError::RoleTooHigh { wanted: role, own: approver_role }));
    }
    let p = match pending_by_hash(tx, token_hash, now)? {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    if lookup_user(tx, &p.connector, &p.connector_user_id)?.is_some() {
        return Ok(Err(PairingError::AlreadyLinked));
    }
    let user = User { id: UserId::random(), display_name: p.display_name.clone(), role };
    tx.execute(
        "INSERT INTO users (id, display_name, role, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![user.id.as_str(), user.display_name, role.as_str(), now],
    )?;
    tx.execute(
        "INSERT INTO identities (id, user_id, connector, connector_user_id, verified, created_at) VALUES (?1, ?2, ?3, ?4, 1, ?5) \
         ON CONFLICT (connector, connector_user_id) DO UPDATE SET user_id = excluded.user_id, verified = 1",
        params![uuid::Uuid::new_v4().to_string(), user.id.as_str(), p.connector, p.connector_user_id, now],
    )?;
    tx.execute(
        "UPDATE pairing_requests SET status = 'approved', approved_user_id = ?2, approver = ?3, role = ?4, updated_at = ?5 WHERE id = ?1",
        params![p.id.as_str(), user.id.as_str(), approver, role.as_str(), now],
    )?;
    let p = Pairing {
        status: "approved".into(),
        approved_user_id: Some(user.id.to_string()),
        approver: Some(approver.to_string()),
        role: Some(role.to_string()),
        ..p
    };
    Ok(Ok((p, user)))
}

impl Store {
    /// The verified user behind a platform identity.
    pub async fn lookup_user(&self, connector: &str, platform_user_id: &str) -> Result<Option<User>, StoreError> {
        let (connector, id) = (connector.to_string(), platform_user_id.to_string());
        self.read(move |c| lookup_user(c, &connector, &id)).await
    }

    /// Opens a pairing request; the sender's older pending requests expire.
    /// The request (or its refusal) is audited as `who` in the same write.
    pub async fn start_pairing(
        &self,
        new: NewPairing,
        who: AuditWho,
        now: UnixMillis,
    ) -> Result<Result<Pairing, PairingError>, StoreError> {
        self.write(move |c| {
            let tx: &Connection = c;
            let out = start_pairing(tx, &new, now)?;
            let row = match &out {
                Ok(p) => who.row("pairing.requested", Decision::Info, Some(format!("hint {}", p.token_hint)), Some(p.id.to_string())),
                Err(e) => who.row("pairing.refused", Decision::Deny, Some(e.to_string()), None),
            };
            insert_audit(tx, &[row], now)?;
            Ok(out)
        })
        .await
    }

    /// Approves a pending request: creates the user with `role` and links
    /// the identity, verified. `approver_role` bounds the role granted.
    /// Audited as `who` in the same write, refusals included.
    pub async fn approve_pairing(
        &self,
        token_hash: String,
        who: AuditWho,
        approver_role: Role,
        role: Role,
        now: UnixMillis,
    ) -> Result<Result<(Pairing, User), PairingError>, StoreError> {
        self.write(move |c| {
            let tx: &Connection = c;
            let out = approve_pairing(tx, &token_hash, &who.actor, approver_role, role, now)?;
            let row = match &out {
                Ok((p, _)) => who.row("pairing.approved", Decision::Allow, Some(format!("role {role}")), Some(p.id.to_string())),
                Err(e) => who.row("pairing.approve_refused", Decision::Deny, Some(e.to_string()), None),
            };
            insert_audit(tx, &[row], now)?;
            Ok(out)
        })
        .await
    }

    /// Denies a pending request with a reason (audited as `who`).
    pub async fn deny_pairing(
        &self,
        token_hash: String,
        who: AuditWho,
        reason: String,
        now: UnixMillis,
    ) -> Result<Result<Pairing, PairingError>, StoreError> {
        self.write(move |c| {
            let tx: &Connection = c;
            let out = match pending_by_hash(tx, &token_hash, now)? {
                Ok(p) => {
                    tx.execute(
                        "UPDATE pairing_requests SET status = 'denied', approver = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
                        params![p.id.as_str(), who.actor, reason, now],
                    )?;
                    Ok(Pairing { status: "denied".into(), approver: Some(who.actor.clone()), reason: Some(reason.clone()), ..p })
                }
                Err(e) => Err(e),
            };
            let row = match &out {
                Ok(p) => who.row("pairing.denied", Decision::Deny, Some(reason), Some(p.id.to_string())),
                Err(e) => who.row("pairing.deny_refused", Decision::Deny, Some(e.to_string()), None),
            };
            insert_audit(tx, &[row], now)?;
            Ok(out)
        })
        .await
    }

    /// The request a token belongs to, whatever its status (read only: an
    /// overdue pending request reads as `expired`).
    pub async fn lookup_pairing(&self, token_hash: String, now: UnixMillis) -> Result<Option<Pairing>, StoreError> {
        self.read(move |c| {
            Ok(find_by_hash(c, &token_hash)?
                .map(|p| if p.status == "pending" && p.expires_at <= now { Pairing { status: "expired".into(), ..p } } else { p }))
        })
        .await
    }

    /// Pairing requests, newest first (`status` filters).
    pub async fn list_pairings(&self, status: Option<String>, limit: u32) -> Result<Vec<Pairing>, StoreError> {
        self.read(move |c| {
            let mut f = Filter::default();
            f.eq("status", status);
            let sql = format!("SELECT {PAIRING_COLUMNS} FROM pairing_requests{} ORDER BY created_at DESC LIMIT ?{}", f.clause(), f.next());
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(f.values([i64::from(limit).into()])), pairing_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Sets a linked user's role (an admin action).
    pub async fn set_user_role(&self, id: &UserId, role: Role) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(move |c| {
            let n = c.execute("UPDATE users SET role = ?2 WHERE id = ?1", params![id.as_str(), role.as_str()])?;
            if n == 0 { Err(StoreError::NotFound("user")) } else { Ok(()) }
        })
        .await
    }
}
