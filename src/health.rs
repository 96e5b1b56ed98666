//! Component health (the heartbeat): each long-running part of the runtime
//! reports `starting`, `healthy` (a beat), `degraded` (with the error),
//! `disabled` or `stopped`; a snapshot derives `stale` for a component that
//! promised periodic beats and missed them.
//!
//! Unlike the Go runtime, staleness applies only to components registered
//! with a beat interval ([`Health::register_periodic`]); a component that
//! reports once (the API listener, start-up recovery) stays as reported, so
//! it never raises a false "stale" alarm. The threshold is the larger of
//! `AGENT_RUNTIME_HEARTBEAT_STALE_SECONDS` and three of its intervals.
//!
//! Every change of a component's (derived) state is handed to a watcher
//! ([`Health::changes`]), which the runtime turns into `health.changed`
//! events and admin notices.

use crate::clock::{SharedClock, UnixMillis};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A component's reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not ready yet.
    Starting,
    /// Working (last beat recent).
    Healthy,
    /// Working badly or failing; `error` says why.
    Degraded,
    /// Turned off by configuration.
    Disabled,
    /// Stopped (shutdown).
    Stopped,
    /// Derived: promised periodic beats and missed them.
    Stale,
}

impl State {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Disabled => "disabled",
            State::Stopped => "stopped",
            State::Stale => "stale",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    message: Option<String>,
    error: Option<String>,
    last_beat_at: Option<UnixMillis>,
    updated_at: UnixMillis,
    /// Beats are promised this often (None: reports only on change).
    interval: Option<Duration>,
    /// Set by [`Health::fail`]: no later report changes the entry.
    failed: bool,
}

/// One component in a snapshot (the Go runtime's fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentView {
    /// Lower-case name (`store`, `orchestrator`, `connector:telegram`, …).
    pub name: String,
    /// The state, with `stale` derived.
    pub state: State,
    /// The state as reported.
    pub base_state: State,
    /// What it said last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why it is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Last beat (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_beat_at_unix: Option<i64>,
    /// Last change or beat (seconds).
    pub updated_at_unix: i64,
    /// Whether `stale` was derived.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// The promised beat interval, for periodic components (seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beat_interval_seconds: Option<u64>,
}

/// A snapshot of every component.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// When it was taken (seconds).
    pub generated_at_unix: i64,
    /// `degraded` if any is degraded or stale; else `starting` if any is
    /// starting; else `healthy` if any is healthy; else `idle`; `unknown` when empty.
    pub overall: &'static str,
    /// Components by name.
    pub components: Vec<ComponentView>,
    /// The database's size (filled in by `/api/v1/heartbeat`; absent if it
    /// could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<crate::store::DbSize>,
}

/// The registry; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<String, Entry>>>,
    clock: SharedClock,
    stale_after: Duration,
    changed: Arc<Notify>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("stale_after", &self.stale_after).finish()
    }
}

impl Health {
    /// An empty registry; periodic components go stale after missing beats
    /// for `stale_after` (or three intervals, if longer).
    pub fn new(clock: SharedClock, stale_after: Duration) -> Self {
        Self { inner: Arc::default(), clock, stale_after, changed: Arc::new(Notify::new()) }
    }

    fn set(&self, name: &str, state: State, message: Option<String>, error: Option<String>, interval: Option<Option<Duration>>) {
        let now = self.clock.now_ms();
        let changed = {
            let Ok(mut m) = self.inner.lock() else { return };
            let e = m.entry(name.to_ascii_lowercase()).or_insert(Entry {
                state,
                message: None,
                error: None,
                last_beat_at: None,
                updated_at: now,
                interval: None,
                failed: false,
            });
            if e.failed {
                return;
            }
            let changed = e.state != state || (state == State::Degraded && e.error != error);
            e.state = state;
            // A plain beat keeps the last note; any other report replaces it.
            if message.is_some() || state != State::Healthy {
                e.message = message;
            }
            e.error = error;
            e.updated_at = now;
            if state == State::Healthy {
                e.last_beat_at = Some(now);
            }
            if let Some(i) = interval {
                e.interval = i;
            }
            changed
        };
        if changed {
            self.changed.notify_one();
        }
    }

    /// Registers a component that will beat at least every `interval`
    /// (it goes stale when it stops).
    pub fn register_periodic(&self, name: &str, interval: Duration) {
        self.set(name, State::Starting, None, None, Some(Some(interval)));
    }

    /// Registers a component that reports only on change (never stale).
    pub fn register(&self, name: &str) {
        self.set(name, State::Starting, None, None, Some(None));
    }

    /// A beat: healthy now.
    pub fn beat(&self, name: &str) {
        self.set(name, State::Healthy, None, None, None);
    }

    /// Healthy, with a note (`listening on …`).
    pub fn healthy(&self, name: &str, message: impl Into<String>) {
        self.set(name, State::Healthy, Some(message.into()), None, None);
    }

    /// Degraded, with the error.
    pub fn degrade(&self, name: &str, error: impl Into<String>) {
        self.set(name, State::Degraded, None, Some(error.into()), None);
    }

    /// Degraded for good: the component's task died and the daemon is
    /// stopping (`Supervisor`); later reports — a beat from a sibling loop
    /// that shares the component — are ignored, so the failure stays
    /// visible until the process ends.
    pub fn fail(&self, name: &str, error: impl Into<String>) {
        self.set(name, State::Degraded, None, Some(error.into()), None);
        if let Ok(mut m) = self.inner.lock()
            && let Some(e) = m.get_mut(&name.to_ascii_lowercase())
        {
            e.failed = true;
        }
    }

    /// Turned off by configuration.
    pub fn disabled(&self, name: &str, why: impl Into<String>) {
        self.set(name, State::Disabled, Some(why.into()), None, Some(None));
    }

    /// Woken when a reported state changes (derived staleness is found by
    /// the watcher's own periodic snapshot).
    pub fn changes(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Every component now, with `stale` derived.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.clock.now_ms();
        let components: Vec<ComponentView> = match self.inner.lock() {
            Ok(m) => m.iter().map(|(name, e)| self.view(name, e, now)).collect(),
            Err(_) => Vec::new(),
        };
        let any = |s: State| components.iter().any(|c| c.state == s);
        let overall = if components.is_empty() {
            "unknown"
        } else if any(State::Degraded) || any(State::Stale) {
            "degraded"
        } else if any(State::Starting) {
            "starting"
        } else if any(State::Healthy) {
            "healthy"
        } else {
            "idle"
        };
        Snapshot { generated_at_unix: now.div_euclid(1000), overall, components, database: None }
    }

    fn view(&self, name: &str, e: &Entry, now: UnixMillis) -> ComponentView {
        let stale = match (e.interval, e.state) {
            (Some(interval), State::Healthy | State::Starting) => {
                let limit = self.stale_after.max(interval * 3).as_millis() as i64;
                now - e.last_beat_at.unwrap_or(e.updated_at) > limit
            }
            _ => false,
        };
        ComponentView {
            name: name.to_string(),
            state: if stale { State::Stale } else { e.state },
            base_state: e.state,
            message: e.message.clone(),
            error: e.error.clone(),
            last_beat_at_unix: e.last_beat_at.map(|t| t.div_euclid(1000)),
            updated_at_unix: e.updated_at.div_euclid(1000),
            stale,
            beat_interval_seconds: e.interval.map(|i| i.as_secs()),
        }
    }
}

/// A change between two snapshots, for events and notices.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Component name.
    pub component: String,
    /// State before (None: first seen).
    pub from: Option<State>,
    /// State now.
    pub to: State,
    /// The component's error, if degraded.
    pub error: Option<String>,
    /// The overall state now.
    pub overall: &'static str,
}

/// The changes from `before` to `after`.
pub fn transitions(before: &Snapshot, after: &Snapshot) -> Vec<Transition> {
    after
        .components
        .iter()
        .filter_map(|c| {
            let from = before.components.iter().find(|b| b.name == c.name).map(|b| b.state);
            (from != Some(c.state)).then(|| Transition {
                component: c.name.clone(),
                from,
                to: c.state,
                error: c.error.clone(),
                overall: after.overall,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn only_components_that_promised_beats_go_stale() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let h = Health::new(clock.clone(), Duration::from_secs(120));
        h.register("api");
        h.healthy("api", "listening");
        h.register_periodic("store", Duration::from_secs(1));
        h.beat("store");
        h.register_periodic("outbox", Duration::from_secs(60));
        h.beat("outbox");
        assert_eq!(h.snapshot().overall, "healthy");

        clock.advance(121_000);
        h.beat("store");
        let s = h.snapshot();
        let state = |n: &str| s.components.iter().find(|c| c.name == n).map(|c| (c.state, c.base_state)).expect("component");
        assert_eq!(state("api"), (State::Healthy, State::Healthy), "a one-time report never goes stale");
        assert_eq!(state("store"), (State::Healthy, State::Healthy));
        assert_eq!(state("outbox"), (State::Healthy, State::Healthy), "three 60 s intervals have not passed");
        clock.advance(60_000);
        let s2 = h.snapshot();
        let outbox = s2.components.iter().find(|c| c.name == "outbox").expect("outbox");
        assert_eq!((outbox.state, outbox.base_state, outbox.stale), (State::Stale, State::Healthy, true));
        assert_eq!(s2.overall, "degraded");
        let t = transitions(&s, &s2);
        assert_eq!(t.len(), 1, "only outbox changed (store beat 60 s ago): {t:?}");
        assert_eq!((t[0].component.as_str(), t[0].from, t[0].to), ("outbox", Some(State::Healthy), State::Stale));

        h.degrade("api", "certificate reload failed");
        h.beat("outbox");
        let s3 = h.snapshot();
        let api = s3.components.iter().find(|c| c.name == "api").expect("api");
        assert_eq!((api.state, api.error.as_deref()), (State::Degraded, Some("certificate reload failed")));
        h.disabled("store", "off");
        h.disabled("api", "off");
        h.disabled("outbox", "off");
        assert_eq!(h.snapshot().overall, "idle");
    }

    // The lease-recovery loop beats `orchestrator` every few seconds; after
    // the pool coordinator died, one such beat turned the component green
    // again while the daemon was stopping because of it.
    #[test]
    fn a_failed_component_stays_degraded_whatever_else_reports() {
        let h = Health::new(Arc::new(ManualClock::new(0)), Duration::from_secs(120));
        h.register_periodic("orchestrator", Duration::from_secs(1));
        h.beat("orchestrator");
        h.fail("orchestrator", "task `pool-coordinator` panicked");
        h.beat("orchestrator");
        h.healthy("orchestrator", "fine");
        let s = h.snapshot();
        let c = s.components.iter().find(|c| c.name == "orchestrator").expect("orchestrator");
        assert_eq!((c.state, c.error.as_deref()), (State::Degraded, Some("task `pool-coordinator` panicked")));
        assert_eq!(s.overall, "degraded");
    }
}
