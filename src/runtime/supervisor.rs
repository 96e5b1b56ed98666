//! The supervisor: one cancellation token and one task tracker, so shutdown
//! reaches every background task and can wait for all of them.

use std::future::Future;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Owns background tasks: `spawn` through it, `shutdown` to ask them to
/// stop, `drain` to wait until they have.
#[derive(Clone, Default)]
pub struct Supervisor {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Supervisor {
    /// A new supervisor.
    pub fn new() -> Self {
        Self::default()
    }

    /// A supervisor whose token is cancelled with this one's, with its own
    /// tracker (so a subsystem can be drained on its own).
    pub fn child(&self) -> Self {
        Self { token: self.token.child_token(), tracker: TaskTracker::new() }
    }

    /// The shutdown token.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns a tracked task named `name`.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(fut.instrument(tracing::info_span!("task", name)));
    }

    /// Asks every task to stop.
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// Waits until every spawned task has finished (spawning stays possible).
    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }
}
