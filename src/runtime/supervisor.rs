//! The supervisor: one cancellation token and one task tracker, so shutdown
//! reaches every background task and can wait for all of them — and no
//! task dies unseen. A panic is caught, logged at error with the task's
//! name, and handled by the policy the task was spawned with:
//!
//! - per-request work (`spawn` on a plain supervisor: an admin connection,
//!   an event stream, one task's runner) is logged and that is all — the
//!   daemon carries on;
//! - an essential loop (`essential(component).spawn`) degrades its health
//!   component and reports a [`Failure`], on which `runtime::serve` drains
//!   and exits non-zero: its in-memory state is gone, and a clean process
//!   started by the service manager rebuilds it from the store;
//! - a restartable loop (`spawn_restarting`) degrades its component and is
//!   started again after a backoff (connector loops: their state is the
//!   platform cursor, which is in the store).

use crate::health::Health;
use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Owns background tasks: `spawn` through it, `shutdown` to ask them to
/// stop, `drain` to wait until they have.
#[derive(Clone, Default)]
pub struct Supervisor {
    token: CancellationToken,
    tracker: TaskTracker,
    /// What a panic of a task spawned through this handle does.
    policy: Policy,
    /// Shared by a supervisor and all its children.
    shared: Arc<Shared>,
    /// Test hook: the task of this name panics as soon as it starts.
    #[cfg(test)]
    panic_in: Option<&'static str>,
}

#[derive(Clone, Copy, Default)]
enum Policy {
    /// Log the panic; nothing else stops.
    #[default]
    Log,
    /// Degrade `component` and fail the daemon.
    Fail { component: &'static str },
}

#[derive(Default)]
struct Shared {
    health: Option<Health>,
    failed: CancellationToken,
    failure: Mutex<Option<Failure>>,
}

/// An essential task that panicked: the daemon must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The task's name (`pool-coordinator`, `outbox`, …).
    pub task: &'static str,
    /// The health component it degraded.
    pub component: &'static str,
    /// The panic's message.
    pub message: String,
}

/// How long a restartable task waits before its next start: `base`,
/// doubled per panic in a row, at most `max`; a run longer than `max`
/// starts the count again.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Restart {
    fn wait(&self, panics_in_a_row: u32) -> Duration {
        self.base.saturating_mul(1u32 << panics_in_a_row.min(16)).min(self.max)
    }
}

impl Supervisor {
    /// A new supervisor.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new supervisor whose tasks report their panics to `health`.
    pub fn with_health(health: Health) -> Self {
        Self { shared: Arc::new(Shared { health: Some(health), ..Shared::default() }), ..Self::default() }
    }

    /// A supervisor whose token is cancelled with this one's, with its own
    /// tracker (so a subsystem can be drained on its own); it shares this
    /// one's panic policy, health and failure report.
    pub fn child(&self) -> Self {
        Self { token: self.token.child_token(), tracker: TaskTracker::new(), ..self.clone() }
    }

    /// The same token and tracker, for tasks the daemon cannot run
    /// without: a panic of a task spawned through the returned handle
    /// degrades `component` and reports a [`Failure`].
    pub fn essential(&self, component: &'static str) -> Self {
        Self { policy: Policy::Fail { component }, ..self.clone() }
    }

    /// The shutdown token.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns a tracked task named `name`; a panic is handled by this
    /// handle's policy (see the module doc).
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        #[cfg(test)]
        let fut = {
            let inject = self.panic_in == Some(name);
            async move {
                assert!(!inject, "panic injected into `{name}` (test hook)");
                fut.await
            }
        };
        let (policy, shared) = (self.policy, self.shared.clone());
        let guarded = async move {
            if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
                shared.panicked(name, policy, panic_message(&*panic));
            }
        };
        self.tracker.spawn(guarded.instrument(tracing::info_span!("task", name)));
    }

    /// Spawns a task that is started again after a panic (after a
    /// [`Restart`] backoff, degrading `component` meanwhile); it ends when
    /// a run returns or the token is cancelled during a wait.
    pub fn spawn_restarting<M, F>(&self, name: &'static str, component: &'static str, restart: Restart, mut make: M)
    where
        M: FnMut() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let (token, shared) = (self.token.clone(), self.shared.clone());
        let looped = async move {
            let mut in_a_row = 0u32;
            loop {
                let started = tokio::time::Instant::now();
                let run = AssertUnwindSafe(async { make().await }).catch_unwind().await;
                let Err(panic) = run else { return };
                if started.elapsed() > restart.max {
                    in_a_row = 0;
                }
                let wait = restart.wait(in_a_row);
                in_a_row = in_a_row.saturating_add(1);
                let message = panic_message(&*panic);
                tracing::error!(task = name, component, panic = %message, restart_in_ms = wait.as_millis() as u64, "a supervised task panicked; restarting it");
                if let Some(h) = &shared.health {
                    h.degrade(component, format!("task `{name}` panicked: {message}; restarting in {} s", wait.as_secs_f32()));
                }
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        };
        self.tracker.spawn(looped.instrument(tracing::info_span!("task", name)));
    }

    /// Resolves when an essential task has panicked (see [`Failure`]).
    pub async fn failed(&self) {
        self.shared.failed.cancelled().await;
    }

    /// The first essential task that panicked, if any did.
    pub fn failure(&self) -> Option<Failure> {
        self.shared.failure.lock().ok().and_then(|f| f.clone())
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

    /// Test hook: the task named `name` panics as soon as it starts.
    #[cfg(test)]
    pub(crate) fn panic_in(mut self, name: &'static str) -> Self {
        self.panic_in = Some(name);
        self
    }
}

impl Shared {
    fn panicked(&self, task: &'static str, policy: Policy, message: String) {
        match policy {
            Policy::Log => tracing::error!(task, panic = %message, "a supervised task panicked; the rest carry on"),
            Policy::Fail { component } => {
                tracing::error!(task, component, panic = %message, "an essential task panicked; the daemon is stopping");
                if let Some(h) = &self.health {
                    h.fail(component, format!("task `{task}` panicked: {message}; the daemon is stopping"));
                }
                if let Ok(mut first) = self.failure.lock() {
                    first.get_or_insert(Failure { task, component, message });
                }
                self.failed.cancel();
            }
        }
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::health::State;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Log lines written while the returned guard lives (this thread only:
    /// the tests run on the current-thread runtime).
    fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .with_max_level(tracing::Level::INFO)
            .finish();
        (buf, tracing::subscriber::set_default(subscriber))
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
        String::from_utf8_lossy(&buf.lock().expect("log buffer")).into_owned()
    }

    fn health() -> Health {
        let h = Health::new(Arc::new(SystemClock), Duration::from_secs(60));
        h.register_periodic("orchestrator", Duration::from_secs(1));
        h.beat("orchestrator");
        h
    }

    fn state(h: &Health, name: &str) -> (State, Option<String>) {
        let s = h.snapshot();
        let c = s.components.iter().find(|c| c.name == name).expect("component");
        (c.state, c.error.clone())
    }

    // Regression (issue 14, item 10): the tracker dropped a task's panic, so a
    // panicked pool coordinator left the daemon running with a green
    // orchestrator and no worker claiming.
    #[tokio::test]
    async fn an_essential_task_that_panics_is_logged_degrades_its_component_and_fails_the_daemon() {
        let (logs, _guard) = capture_logs();
        let h = health();
        let root = Supervisor::with_health(h.clone());
        let pool = root.child();
        pool.essential("orchestrator").spawn("pool-coordinator", async { panic!("slot bookkeeping broke") });
        tokio::time::timeout(Duration::from_secs(5), root.failed()).await.expect("the failure reaches the root");
        pool.drain().await;
        let failure = root.failure().expect("failure");
        assert_eq!(
            (failure.task, failure.component, failure.message.as_str()),
            ("pool-coordinator", "orchestrator", "slot bookkeeping broke")
        );
        h.beat("orchestrator"); // the lease-recovery loop, still alive
        let (st, error) = state(&h, "orchestrator");
        assert_eq!(st, State::Degraded);
        assert!(error.as_deref().unwrap_or("").contains("`pool-coordinator` panicked: slot bookkeeping broke"), "{error:?}");
        let log = text(&logs);
        assert!(log.contains("ERROR") && log.contains("task=\"pool-coordinator\"") && log.contains("slot bookkeeping broke"), "{log}");
    }

    #[tokio::test]
    async fn a_per_request_task_that_panics_is_logged_and_nothing_else_happens() {
        let (logs, _guard) = capture_logs();
        let h = health();
        let root = Supervisor::with_health(h.clone());
        let connections = root.child();
        connections.spawn("admin-connection", async { panic!("bad request state") });
        let ran = Arc::new(AtomicU32::new(0));
        let r = ran.clone();
        connections.spawn("admin-connection", async move {
            r.fetch_add(1, Ordering::SeqCst);
        });
        tokio::time::timeout(Duration::from_secs(5), connections.drain()).await.expect("drained");
        assert_eq!(ran.load(Ordering::SeqCst), 1, "the other task ran");
        assert!(root.failure().is_none() && !root.shared.failed.is_cancelled(), "a request's panic does not stop the daemon");
        assert_eq!(state(&h, "orchestrator").0, State::Healthy);
        let log = text(&logs);
        assert!(log.contains("ERROR") && log.contains("task=\"admin-connection\"") && log.contains("bad request state"), "{log}");
    }

    #[tokio::test]
    async fn a_restartable_task_is_started_again_after_a_growing_backoff() {
        let (logs, _guard) = capture_logs();
        let h = health();
        h.register("telegram");
        h.healthy("telegram", "polling");
        let root = Supervisor::with_health(h.clone());
        let connectors = root.child();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let (s, t0) = (starts.clone(), tokio::time::Instant::now());
        let restart = Restart { base: Duration::from_millis(50), max: Duration::from_secs(60) };
        connectors.spawn_restarting("telegram", "telegram", restart, move || {
            let n = {
                let mut s = s.lock().expect("starts");
                s.push(t0.elapsed());
                s.len()
            };
            async move {
                if n <= 2 {
                    panic!("poll loop broke ({n})");
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connectors.drain()).await.expect("the third run returns");
        let starts = starts.lock().expect("starts").clone();
        assert_eq!(starts.len(), 3, "two panics, two restarts: {starts:?}");
        assert!(starts[1] - starts[0] >= Duration::from_millis(50), "first wait: base: {starts:?}");
        assert!(starts[2] - starts[1] >= Duration::from_millis(100), "second wait: doubled: {starts:?}");
        let (st, error) = state(&h, "telegram");
        assert_eq!(st, State::Degraded, "degraded until the component reports again");
        assert!(error.as_deref().unwrap_or("").contains("`telegram` panicked: poll loop broke (2); restarting in 0.1 s"), "{error:?}");
        assert!(root.failure().is_none(), "a restartable task never fails the daemon");
        assert!(text(&logs).contains("poll loop broke (1)"));
    }

    #[tokio::test]
    async fn a_restartable_task_stops_waiting_at_shutdown() {
        let root = Supervisor::new();
        let restart = Restart { base: Duration::from_secs(3600), max: Duration::from_secs(3600) };
        root.spawn_restarting("email", "email", restart, || async { panic!("always") });
        tokio::task::yield_now().await;
        root.shutdown();
        tokio::time::timeout(Duration::from_secs(1), root.drain()).await.expect("no hour-long wait after shutdown");
    }
}
