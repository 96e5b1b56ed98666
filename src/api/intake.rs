//! Bounds on what the admin listener takes in, so that a flood of
//! connections can exhaust neither file descriptors nor memory, nor lock a
//! real client out:
//!
//! - connections still in their TLS handshake are capped
//!   (`AGENT_RUNTIME_ADMIN_MAX_HANDSHAKES`); past the cap the *oldest* of
//!   them is dropped. A real client finishes its handshake in milliseconds,
//!   so only a stalled or hostile connection grows old: a newcomer always
//!   gets its chance, whatever number of idle sockets came before it;
//! - authenticated connections are capped
//!   (`AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS`); past the cap a new one is
//!   answered 503 (JSON, `Connection: close`) and closed;
//! - event-stream subscribers are capped (`api::events`, 503).
//!
//! So the listener holds at most `max_connections + max_handshakes` sockets.
//! Every refusal is logged, at most once a second per kind, with the number
//! refused since the previous line (a flood makes one line a second, not
//! thousands).

use super::error::ApiError;
use crate::config::HttpConfig;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The admin listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct IntakeLimits {
    /// Authenticated connections served at once.
    pub max_connections: usize,
    /// Connections in their TLS handshake at once.
    pub max_handshakes: usize,
    /// How long a handshake (or a refusal's answer) may take.
    pub handshake_timeout: Duration,
}

impl From<&HttpConfig> for IntakeLimits {
    fn from(h: &HttpConfig) -> Self {
        Self { max_connections: h.max_connections, max_handshakes: h.max_handshakes, handshake_timeout: h.handshake_timeout }
    }
}

/// A log line at most once a second, counting what it stands for.
#[derive(Debug, Default)]
pub(super) struct Throttled {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    /// Counts one event; `Some(n)` (events since the last line, this one
    /// included) when a line is due now.
    pub(super) fn hit(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.1 += 1;
        let due = s.0.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if !due {
            return None;
        }
        let n = s.1;
        *s = (Some(Instant::now()), 0);
        Some(n)
    }
}

/// The listener's counters, shared by the accept loop and the connections.
#[derive(Debug)]
pub(super) struct Intake {
    pub(super) limits: IntakeLimits,
    handshakes: Mutex<Pending>,
    connections: Arc<Semaphore>,
    evicted: Throttled,
    over_cap: Throttled,
    accept_errors: Throttled,
}

#[derive(Debug, Default)]
struct Pending {
    next: u64,
    /// Admission number → the connection's stop token, oldest first.
    open: BTreeMap<u64, CancellationToken>,
}

/// A connection's place among those in their handshake; dropping it (or
/// being evicted) frees the place.
#[derive(Debug)]
pub(super) struct HandshakeSlot {
    id: u64,
    /// Cancelled when this connection is evicted to make room.
    pub(super) evicted: CancellationToken,
    intake: Arc<Intake>,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.intake.handshakes.lock().unwrap_or_else(PoisonError::into_inner).open.remove(&self.id);
    }
}

/// `EMFILE` and `ENFILE` (the same numbers on Linux, the BSDs and macOS):
/// the process or the system is out of file descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

impl Intake {
    pub(super) fn new(limits: IntakeLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            handshakes: Mutex::new(Pending::default()),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            evicted: Throttled::default(),
            over_cap: Throttled::default(),
            accept_errors: Throttled::default(),
        })
    }

    /// Admits a freshly accepted connection to the handshake phase, dropping
    /// the oldest connection still in it when the cap is reached.
    pub(super) fn admit(self: &Arc<Self>) -> HandshakeSlot {
        let evicted = CancellationToken::new();
        let dropped = {
            let mut p = self.handshakes.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped = if p.open.len() >= self.limits.max_handshakes { p.open.pop_first() } else { None };
            p.next += 1;
            let id = p.next;
            p.open.insert(id, evicted.clone());
            (id, dropped)
        };
        let (id, dropped) = dropped;
        if let Some((_, oldest)) = dropped {
            oldest.cancel();
            if let Some(n) = self.evicted.hit() {
                tracing::warn!(
                    dropped = n,
                    cap = self.limits.max_handshakes,
                    "TLS handshake cap reached (AGENT_RUNTIME_ADMIN_MAX_HANDSHAKES): dropped the oldest connections still in their handshake"
                );
            }
        }
        HandshakeSlot { id, evicted, intake: self.clone() }
    }

    /// A place among the served connections, if one is free.
    pub(super) fn connection(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.connections.clone().try_acquire_owned().ok();
        if permit.is_none()
            && let Some(n) = self.over_cap.hit()
        {
            tracing::warn!(
                refused = n,
                cap = self.limits.max_connections,
                "admin connection cap reached (AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS): answered 503 and closed"
            );
        }
        permit
    }

    /// After a failed `accept`: logs it, and when file descriptors ran out,
    /// frees one by dropping the oldest connection still in its handshake.
    /// Never ends the accept loop; the caller backs off for the returned time.
    pub(super) fn accept_failed(&self, e: &std::io::Error) -> Duration {
        let freed = out_of_descriptors(e) && {
            let oldest = self.handshakes.lock().unwrap_or_else(PoisonError::into_inner).open.pop_first();
            oldest.map(|(_, t)| t.cancel()).is_some()
        };
        if let Some(n) = self.accept_errors.hit() {
            tracing::warn!(error = %e, failures = n, freed_a_handshake = freed, "accept failed on the admin listener; backing off");
        }
        // With a descriptor being freed, retry soon; otherwise wait for one.
        if freed { Duration::from_millis(5) } else { Duration::from_millis(50) }
    }
}

/// The router answering every request on a connection past the cap.
pub(super) fn over_capacity(max: usize) -> Router {
    Router::new().fallback(move || async move {
        let message =
            format!("the admin API is serving its maximum of {max} connections (AGENT_RUNTIME_ADMIN_MAX_CONNECTIONS); retry shortly");
        let mut resp = ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message }.into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake(handshakes: usize, connections: usize) -> Arc<Intake> {
        Intake::new(IntakeLimits { max_connections: connections, max_handshakes: handshakes, handshake_timeout: Duration::from_secs(1) })
    }

    #[test]
    fn past_the_handshake_cap_the_oldest_is_dropped_and_a_finished_one_frees_its_place() {
        let i = intake(2, 1);
        let (a, b) = (i.admit(), i.admit());
        assert!(!a.evicted.is_cancelled() && !b.evicted.is_cancelled());
        let c = i.admit();
        assert!(a.evicted.is_cancelled(), "the oldest makes room");
        assert!(!b.evicted.is_cancelled() && !c.evicted.is_cancelled());
        drop(b);
        let d = i.admit();
        assert!(!c.evicted.is_cancelled() && !d.evicted.is_cancelled(), "a finished handshake freed its place");
        drop(a);
        assert_eq!(i.handshakes.lock().expect("lock").open.len(), 2);
    }

    #[test]
    fn connections_past_the_cap_get_no_permit_until_one_closes() {
        let i = intake(1, 2);
        let (a, _b) = (i.connection().expect("one"), i.connection().expect("two"));
        assert!(i.connection().is_none());
        drop(a);
        assert!(i.connection().is_some());
    }

    #[test]
    fn running_out_of_descriptors_frees_the_oldest_handshake() {
        let i = intake(4, 1);
        let old = i.admit();
        let emfile = std::io::Error::from_raw_os_error(24);
        assert_eq!(i.accept_failed(&emfile), Duration::from_millis(5));
        assert!(old.evicted.is_cancelled());
        assert_eq!(i.accept_failed(&emfile), Duration::from_millis(50), "nothing left to free");
        let other = std::io::Error::from_raw_os_error(104);
        let young = i.admit();
        i.accept_failed(&other);
        assert!(!young.evicted.is_cancelled(), "only running out of descriptors drops anyone");
    }

    #[test]
    fn a_flood_makes_one_line_a_second_that_counts_it() {
        let t = Throttled::default();
        assert_eq!(t.hit(), Some(1));
        for _ in 0..99 {
            assert_eq!(t.hit(), None);
        }
        t.state.lock().expect("lock").0 = Instant::now().checked_sub(Duration::from_secs(2));
        assert_eq!(t.hit(), Some(100));
    }
}
