//! The injected time source. Leases, backoff, expiry and the scheduler read
//! time only from a [`Clock`], and the scheduler also *waits* on it
//! ([`Clock::sleep_until`]), so tests move time by hand instead of sleeping.

use crate::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> UnixMillis;

    /// Resolves once [`Clock::now_ms`] reads `at` or later. The system
    /// clock sleeps (at most [`MAX_SLEEP`] at a time, then reads the wall
    /// clock again, so a clock step or a suspended machine is noticed); a
    /// manual clock resolves when a test advances it far enough.
    fn sleep_until(&self, at: UnixMillis) -> BoxFuture<'static, ()> {
        let wait = at.saturating_sub(self.now_ms()).clamp(0, MAX_SLEEP.as_millis() as i64);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait as u64)))
    }
}

/// The longest a real-clock sleep lasts before the wall clock is read again.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The real system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> UnixMillis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<ManualInner>);

#[derive(Debug)]
struct ManualInner {
    now: AtomicI64,
    moved: Notify,
}

impl ManualClock {
    /// A manual clock starting at `start_ms`.
    pub fn new(start_ms: UnixMillis) -> Self {
        Self(Arc::new(ManualInner { now: AtomicI64::new(start_ms), moved: Notify::new() }))
    }

    /// Moves the clock forward by `ms` milliseconds, waking sleepers whose time came.
    pub fn advance(&self, ms: i64) {
        self.0.now.fetch_add(ms, Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }

    /// Sets the clock to `ms` (forward or back), waking sleepers.
    pub fn set(&self, ms: UnixMillis) {
        self.0.now.store(ms, Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> UnixMillis {
        self.0.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at: UnixMillis) -> BoxFuture<'static, ()> {
        let inner = self.0.clone();
        Box::pin(async move {
            loop {
                // Registered before the check, so an advance in between is not missed.
                let moved = inner.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                if inner.now.load(Ordering::SeqCst) >= at {
                    return;
                }
                moved.await;
            }
        })
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Formats unix milliseconds as RFC 3339 UTC with second precision.
pub fn rfc3339(ms: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
