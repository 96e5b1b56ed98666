//! Bounded growth and cheap metrics: the trigger-kept status counts stay
//! equal to a full scan through every kind of change, retention and a
//! restart; the daemon prunes old rows by itself and shows the database's
//! size on `/metrics`, `/api/v1/heartbeat` and `health`; a bad retention
//! setting is refused by `config check` and `serve`.

use crate::support::daemon::{Daemon, command};
use crate::support::wait_until;
use agent_runtime::clock::{Clock, ManualClock};
use agent_runtime::domain::{ChatRef, MessageKind, TaskKind};
use agent_runtime::store::retention::Kind;
use agent_runtime::store::{FinishOutcome, NewOutbound, RetentionPolicy, RetryPolicy, Store};
use std::path::Path;
use std::time::Duration;

const DAY: i64 = 86_400_000;
const LEASE: Duration = Duration::from_secs(30);

fn notice(body: &str) -> NewOutbound {
    NewOutbound {
        chat: ChatRef::new("codex", "retention").expect("chat"),
        kind: MessageKind::TaskNotice,
        body: body.into(),
        task_id: None,
        trace_id: None,
        options: Default::default(),
        preview: None,
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy { base: Duration::from_secs(1), max: Duration::from_secs(1) }
}

/// `state_counts` (trigger-kept) against `GROUP BY` scans of the file.
async fn assert_exact(store: &Store, db: &Path, when: &str) {
    let kept = store.state_counts(0).await.expect("counts");
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let scan = |sql: &str| -> Vec<(String, u64)> {
        c.prepare(sql).expect("prepare").query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").map(|r| r.expect("row")).collect()
    };
    let (tasks, outbox) =
        (scan("SELECT status, count(*) FROM tasks GROUP BY status"), scan("SELECT status, count(*) FROM outbox GROUP BY status"));
    let of = |v: &[(String, u64)], s: &str| v.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    for s in ["queued", "running", "succeeded", "failed", "canceled"] {
        assert_eq!(of(&kept.tasks, s), of(&tasks, s), "{when}: tasks {s}: kept {:?}, scanned {tasks:?}", kept.tasks);
    }
    for s in ["pending", "sent", "failed"] {
        assert_eq!(of(&kept.outbox, s), of(&outbox, s), "{when}: outbox {s}: kept {:?}, scanned {outbox:?}", kept.outbox);
    }
}

#[tokio::test]
async fn status_counts_stay_exact_through_every_change_retention_and_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("meta.sqlite");
    let clock = ManualClock::new(DAY * 100);
    let store = Store::open(&db).expect("open");
    let ctx = store.ensure_context(&ChatRef::new("codex", "retention").expect("chat"), "R", clock.now_ms()).await.expect("ctx");
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(store.enqueue_task(crate::queue::new_task(&ctx, TaskKind::Noop, None), 2, clock.now_ms()).await.expect("enqueue").task.id);
    }
    assert_exact(&store, &db, "after enqueues").await;
    let claimed = store.claim_tasks("w".into(), clock.now_ms(), LEASE, 20).await.expect("claim");
    assert_eq!(claimed.len(), 20);
    assert_exact(&store, &db, "after claims").await;
    for (i, t) in claimed.iter().enumerate() {
        let outcome = match i % 4 {
            0 => FinishOutcome::Succeeded { summary: "ok".into(), result_path: None },
            1 => FinishOutcome::Failed { error: "again".into(), retryable: true },
            2 => FinishOutcome::Failed { error: "no".into(), retryable: false },
            _ => FinishOutcome::Canceled,
        };
        store.finish_task(&t.id, "w".into(), outcome, retry(), crate::queue::notifier(), clock.now_ms()).await.expect("finish");
    }
    assert_exact(&store, &db, "after finishes and retries").await;
    let unclaimed = ids.iter().find(|id| !claimed.iter().any(|t| &t.id == *id)).expect("a task left queued");
    store.cancel_task(unclaimed, "stop".into(), clock.now_ms()).await.expect("cancel queued");
    store.retry_task(&claimed[2].id, "ops".into(), clock.now_ms()).await.expect("retry a failed task");
    // A worker whose lease ran out: recovered, requeued.
    let more = store.claim_tasks("w2".into(), clock.now_ms(), LEASE, 3).await.expect("claim");
    assert!(!more.is_empty());
    clock.advance(LEASE.as_millis() as i64 + 1);
    store.recover_expired_leases(clock.now_ms(), crate::queue::notifier()).await.expect("recover");
    for i in 0..12 {
        let id = store.enqueue_outbound(notice(&format!("n{i}")), clock.now_ms()).await.expect("outbound");
        match i % 3 {
            0 => store.mark_outbound_sent(id, None, clock.now_ms()).await.expect("sent"),
            1 => store.mark_outbound_attempt_failed(id, "gone".into(), 0, true, Duration::ZERO, clock.now_ms()).await.expect("failed"),
            _ => store.mark_outbound_attempt_failed(id, "later".into(), 0, false, Duration::ZERO, clock.now_ms()).await.expect("retry"),
        }
    }
    assert_exact(&store, &db, "after cancels, retries, recovery and deliveries").await;

    // Two days on, keep one: finished tasks and delivered messages go; the rest stays.
    clock.advance(2 * DAY);
    let recent = store.enqueue_outbound(notice("recent"), clock.now_ms()).await.expect("outbound");
    store.mark_outbound_sent(recent, None, clock.now_ms()).await.expect("sent");
    let mut policy = RetentionPolicy::forever();
    policy.set(Kind::Tasks, Some(1));
    policy.set(Kind::Outbox, Some(1));
    let pruned = store.prune(&policy, clock.now_ms(), Duration::ZERO).await.expect("prune");
    assert!(pruned.of(Kind::Tasks) > 0 && pruned.of(Kind::Outbox) > 0, "{pruned:?}");
    assert_exact(&store, &db, "after retention").await;
    let kept = store.state_counts(0).await.expect("counts");
    let of = |v: &[(String, u64)], s: &str| v.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    assert_eq!(of(&kept.tasks, "succeeded") + of(&kept.tasks, "failed") + of(&kept.tasks, "canceled"), 0, "{kept:?}");
    assert!(of(&kept.tasks, "queued") > 0, "queued tasks stay: {kept:?}");
    assert_eq!(of(&kept.outbox, "sent"), 1, "only the recent delivery: {kept:?}");
    assert!(of(&kept.outbox, "pending") > 0, "pending messages stay: {kept:?}");

    store.close();
    let store = Store::open(&db).expect("reopen");
    assert_exact(&store, &db, "after a restart").await;
    store.enqueue_task(crate::queue::new_task(&ctx, TaskKind::Noop, None), 2, clock.now_ms()).await.expect("enqueue after restart");
    assert_exact(&store, &db, "after a restart and an enqueue").await;
    store.close();
}

/// Writes rows dated `days_ago` days back into a fresh database at `db`.
async fn seed_old_rows(db: &Path, days_ago: i64, n: usize) {
    let store = Store::open(db).expect("open");
    let then = agent_runtime::clock::SystemClock.now_ms() - days_ago * DAY;
    for i in 0..n {
        let id = store.enqueue_outbound(notice(&format!("old {i} {}", "x".repeat(500))), then).await.expect("outbound");
        store.mark_outbound_sent(id, None, then).await.expect("sent");
    }
    store.close();
}

#[tokio::test]
async fn the_daemon_prunes_old_rows_and_shows_the_database_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("data/agent-runtime/meta.sqlite");
    seed_old_rows(&db, 40, 1_200).await;
    let env = [("AGENT_RUNTIME_RETENTION_DAYS", "outbox=30".to_string()), ("AGENT_RUNTIME_LLM_PROVIDER", "none".to_string())];
    let d = Daemon::start(dir.path(), &env).await;
    let conn = d.db();
    wait_until("the old outbox rows pruned", Duration::from_secs(30), || {
        let n: i64 = conn.query_row("SELECT count(*) FROM outbox WHERE status = 'sent'", [], |r| r.get(0)).expect("count");
        async move { (n == 0).then_some(()) }
    })
    .await;
    // The pass counts its rows once it is over (vacuum included).
    let (http, url) = (d.http.clone(), format!("{}/metrics", d.base));
    let metrics = wait_until("the pass counted on /metrics", Duration::from_secs(30), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = http.get(&url).send().await.ok()?.text().await.ok()?;
            body.contains("agent_runtime_retention_deleted_rows_total{kind=\"outbox\"} 1200").then_some(body)
        }
    })
    .await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(value("agent_runtime_retention_deleted_rows_total{kind=\"outbox\"}"), 1_200.0);
    assert_eq!(value("agent_runtime_outbox_messages{status=\"sent\"}"), 0.0, "the counts follow retention");
    let (page_count, page_size): (i64, i64) = (
        conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("pages"),
        conn.query_row("PRAGMA page_size", [], |r| r.get(0)).expect("page size"),
    );
    let bytes = value("agent_runtime_database_bytes");
    assert!(bytes > 0.0 && bytes <= (page_count * page_size) as f64 * 1.5, "{bytes} vs {page_count} pages of {page_size}");
    assert!(value("agent_runtime_database_free_bytes") < bytes);
    let (status, beat) = d.get("/api/v1/heartbeat").await;
    assert_eq!(status, 200, "{beat}");
    assert!(beat["database"]["file_bytes"].as_u64().expect("file_bytes") > 0, "{beat}");
    assert!(beat["database"]["free_bytes"].is_u64() && beat["database"]["wal_bytes"].is_u64(), "{beat}");
    let out = command(dir.path(), &[]).arg("health").output().expect("health");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("database: ") && text.contains("MiB free inside"), "{text}");
    assert!(d.log().contains("retention pass"), "{}", d.log());
}

#[test]
fn an_unknown_retention_kind_is_refused_by_config_check_and_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("AGENT_RUNTIME_RETENTION_DAYS", "outbox=30,events=7".to_string())];
    let o = command(dir.path(), &env).args(["config", "check"]).output().expect("config check");
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("error: AGENT_RUNTIME_RETENTION_DAYS:") && out.contains("unknown kind \"events\""), "{out}");
    assert!(out.contains("outbox, inbox, tasks, usage, audit"), "names the kinds: {out}");
    for bad in ["outbox", "outbox=-1", "outbox=lots", "usage=99999"] {
        let o =
            command(dir.path(), &[("AGENT_RUNTIME_RETENTION_DAYS", bad.to_string())]).args(["config", "check"]).output().expect("check");
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&o.stdout));
    }
    let o = command(dir.path(), &env).arg("serve").output().expect("serve");
    let out = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && out.contains("AGENT_RUNTIME_RETENTION_DAYS"), "{out}");
    assert!(!dir.path().join("data/agent-runtime/meta.sqlite").exists(), "nothing was created");
    let ok = command(dir.path(), &[("AGENT_RUNTIME_RETENTION_DAYS", "usage=forever, audit=0".to_string())])
        .args(["config", "check"])
        .output()
        .expect("check");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("= usage=forever, audit=0  [env]"), "shown as typed: {out}");
}
