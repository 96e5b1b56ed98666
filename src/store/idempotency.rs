//! Idempotency keys for the admin API's create endpoints: the first request
//! with a key reserves it, its response (status and body) is kept for 24
//! hours, and a repeat with the same key and the same request gets that
//! response again. Keys belong to the caller (two admins cannot collide).

use super::{Store, StoreError};
use crate::clock::UnixMillis;
use rusqlite::{OptionalExtension, params};

/// How long a key is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// First use: run it, then `finish` (or `forget`).
    Run,
    /// Seen and finished: answer with this status and body.
    Replay {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: Vec<u8>,
    },
    /// The same key came with a different request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

impl Store {
    /// Reserves `key` for `caller`'s request (`fingerprint`: a hash of method, path and body).
    pub async fn idempotency_begin(
        &self,
        caller: String,
        key: String,
        fingerprint: String,
        now: UnixMillis,
    ) -> Result<IdempotencyStart, StoreError> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM idempotency_keys WHERE caller = ?1 AND key = ?2 AND created_at < ?3")?.execute(params![
                caller,
                key,
                now - IDEMPOTENCY_TTL_MS
            ])?;
            let inserted = c
                .prepare_cached(
                    "INSERT INTO idempotency_keys (caller, key, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (caller, key) DO NOTHING",
                )?
                .execute(params![caller, key, fingerprint, now])?;
            if inserted == 1 {
                return Ok(IdempotencyStart::Run);
            }
            let row: Option<(String, Option<u16>, Option<Vec<u8>>)> = c
                .prepare_cached("SELECT fingerprint, status, body FROM idempotency_keys WHERE caller = ?1 AND key = ?2")?
                .query_row(params![caller, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            Ok(match row {
                Some((f, _, _)) if f != fingerprint => IdempotencyStart::Mismatch,
                Some((_, Some(status), body)) => IdempotencyStart::Replay { status, body: body.unwrap_or_default() },
                Some((_, None, _)) => IdempotencyStart::InProgress,
                None => IdempotencyStart::Run,
            })
        })
        .await
    }

    /// Keeps the response of a request that ran.
    pub async fn idempotency_finish(&self, caller: String, key: String, status: u16, body: Vec<u8>) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached("UPDATE idempotency_keys SET status = ?3, body = ?4 WHERE caller = ?1 AND key = ?2")?
                .execute(params![caller, key, status, body])?;
            Ok(())
        })
        .await
    }

    /// Releases a key whose request failed on our side (so a retry runs again).
    pub async fn idempotency_forget(&self, caller: String, key: String) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached("DELETE FROM idempotency_keys WHERE caller = ?1 AND key = ?2 AND status IS NULL")?
                .execute(params![caller, key])?;
            Ok(())
        })
        .await
    }

    /// Drops keys older than the TTL; returns how many.
    pub async fn purge_idempotency_keys(&self, now: UnixMillis) -> Result<usize, StoreError> {
        self.write(move |c| {
            Ok(c.prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?.execute([now - IDEMPOTENCY_TTL_MS])?)
        })
        .await
    }
}
