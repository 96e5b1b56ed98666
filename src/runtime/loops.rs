//! The daemon's own background loops: the heartbeat watcher, the expiry
//! pass (which doubles as the store's beat), certificate reload on SIGHUP,
//! and the serve state file the CLI finds the daemon by.

use crate::api::TlsState;
use crate::clock::SharedClock;
use crate::config::HeartbeatConfig;
use crate::gateway::Gateway;
use crate::health::{Health, State};
use crate::store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Expires action requests past their time, every second; drops
/// idempotency keys past their 24 hours and events past their retention,
/// every minute.
pub(super) async fn expire_loop(
    gateway: Gateway,
    store: Store,
    clock: SharedClock,
    retention: Duration,
    health: Health,
    stop: CancellationToken,
) {
    let mut ticks: u64 = 0;
    loop {
        // This pass writes every second, so it doubles as the store's beat.
        match gateway.expire_actions().await {
            Ok(_) => health.beat("store"),
            Err(e) => {
                tracing::warn!(error = %e, "expiring action requests failed");
                health.degrade("store", format!("a write failed: {e}"));
            }
        }
        if ticks.is_multiple_of(60)
            && let Err(e) = store.purge_idempotency_keys(clock.now_ms()).await
        {
            tracing::warn!(error = %e, "purging idempotency keys failed");
        }
        if ticks.is_multiple_of(60)
            && let Err(e) = store.prune_events(clock.now_ms() - retention.as_millis() as i64).await
        {
            tracing::warn!(error = %e, "pruning the event log failed");
        }
        ticks += 1;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Deletes rows past their retention (`AGENT_RUNTIME_RETENTION_DAYS`) a
/// few seconds after start and then every `config.interval`, in batches
/// through the writer with a pause between them (docs/retention.md).
pub(super) async fn retention_loop(store: Store, clock: SharedClock, config: crate::config::RetentionConfig, stop: CancellationToken) {
    let mut wait = Duration::from_secs(5).min(config.interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = config.interval;
        let started = std::time::Instant::now();
        let pass = tokio::select! {
            _ = stop.cancelled() => return,
            p = store.prune(&config.policy, clock.now_ms(), RETENTION_PAUSE) => p,
        };
        match pass {
            Ok(p) if p.total() > 0 => {
                crate::metrics::metrics().retention_pruned(&p);
                let [outbox, inbox, tasks, usage, audit] = p.rows;
                tracing::info!(
                    outbox,
                    inbox,
                    tasks,
                    usage,
                    audit,
                    pages_freed = p.pages_freed,
                    ms = started.elapsed().as_millis() as u64,
                    "retention pass"
                );
            }
            Ok(_) => tracing::debug!("retention pass: nothing old enough"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed; trying again next time"),
        }
    }
}

/// Between two retention batches: writes queued meanwhile go first.
const RETENTION_PAUSE: Duration = Duration::from_millis(5);

/// Re-reads the TLS files on every SIGHUP (certificate rotation without a
/// restart); a bad file is reported and the settings in force stay.
pub(super) async fn reload_on_sighup(tls: Arc<TlsState>, health: Health, stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; certificate files are read only at start");
            return;
        };
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.files().cert.display(), ca = %tls.files().ca.display(), "SIGHUP: reloaded the admin TLS certificates");
                    health.healthy("api", "certificates reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: could not reload the admin TLS certificates; keeping the ones in use");
                    health.degrade("api", format!("certificate reload failed (the previous certificates stay in use): {e}"));
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (tls, health, stop);
    }
}

pub(super) fn write_state_file(path: &Path, addr: std::net::SocketAddr, scheme: &str) {
    // Bound to every address (0.0.0.0 / [::]): the local CLI connects over
    // loopback, a name the local PKI's server certificate has (0.0.0.0 is not).
    let mut reach = addr;
    if addr.ip().is_unspecified() {
        reach.set_ip(if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let body = serde_json::json!({"pid": std::process::id(), "http_addr": addr.to_string(), "url": format!("{scheme}://{reach}"), "version": crate::VERSION});
    let tmp = path.with_extension("json.tmp");
    let res = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, body.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        tracing::warn!(error = %e, path = %path.display(), "could not record the serve state file; the CLI will need --api-url");
    }
}

/// Watches component health: every change (and, each interval, derived
/// staleness) becomes a `health.changed` event; degradations and recoveries
/// are told to the admin chats when so configured. At shutdown it makes one
/// last pass, so a component that failed on the way out (an essential task
/// that panicked, `Supervisor`) is in the event log before the store closes.
pub(super) async fn heartbeat_loop(
    health: Health,
    store: Store,
    clock: SharedClock,
    config: HeartbeatConfig,
    mut before: crate::health::Snapshot,
    stop: CancellationToken,
) {
    let changes = health.changes();
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = changes.notified() => false,
            _ = tokio::time::sleep(config.interval) => false,
        };
        before = record_transitions(&health, &store, &clock, &config, before).await;
        if stopping {
            return;
        }
    }
}

/// Logs and tells the changes since `before`; returns the snapshot now.
async fn record_transitions(
    health: &Health,
    store: &Store,
    clock: &SharedClock,
    config: &HeartbeatConfig,
    before: crate::health::Snapshot,
) -> crate::health::Snapshot {
    let now = health.snapshot();
    for t in crate::health::transitions(&before, &now) {
        let data = serde_json::json!({
            "component": t.component, "from": t.from.map(|s| s.as_str()), "to": t.to.as_str(),
            "error": t.error, "overall": t.overall,
        });
        if let Err(e) = store.log_event("health.changed", data, clock.now_ms()).await {
            tracing::warn!(error = %e, "could not log a health change");
        }
        let bad = |s: State| matches!(s, State::Degraded | State::Stale);
        let word = match t.from {
            Some(from) if !bad(from) && bad(t.to) => "degraded",
            Some(from) if bad(from) && t.to == State::Healthy => "recovered",
            _ => continue,
        };
        tracing::warn!(component = %t.component, to = t.to.as_str(), error = ?t.error, "component {word}");
        if config.notify_admin {
            let mut body = format!(
                "Heartbeat {word}\n- component: `{}`\n- state: `{}` -> `{}`\n- overall: `{}`",
                t.component,
                t.from.map_or("new", State::as_str),
                t.to.as_str(),
                t.overall
            );
            if let Some(e) = &t.error {
                body.push_str(&format!("\n- error: {e}"));
            }
            if let Err(e) = store.notify_admin_chats(body, clock.now_ms()).await {
                tracing::warn!(error = %e, "could not notify admin chats of a health change");
            }
        }
    }
    now
}
