use super::*;
use crate::domain::{ChatRef, ContextId};
use crate::store::test_util::{inbound, temp_store};
use crate::store::{SpendQuery, UsageRecord};

const DAY: i64 = DAY_MS;

async fn count(store: &Store, sql: &'static str) -> i64 {
    store.read(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?)).await.expect("count")
}

fn usage(at: UnixMillis, model: &str, ctx: Option<&ContextId>, prompt: u64, outcome: &str, latency_ms: u64) -> UsageRecord {
    UsageRecord {
        at,
        provider: "openai".into(),
        model: model.into(),
        task_id: None,
        context_id: ctx.cloned(),
        prompt_tokens: Some(prompt),
        completion_tokens: Some(prompt / 10),
        latency_ms,
        outcome: outcome.into(),
        error: None,
    }
}

fn only(kind: Kind, days: u32) -> RetentionPolicy {
    let mut p = RetentionPolicy::forever();
    p.set(kind, Some(days));
    p
}

#[tokio::test]
async fn usage_reports_and_budgets_are_the_same_after_usage_rows_are_pruned() {
    let (_d, store) = temp_store();
    let ctx = store.ensure_context(&ChatRef::new("codex", "u1").expect("chat"), "U", 1).await.expect("ctx");
    // 1,200 calls over three days (more than two batches), some failed, two models.
    for i in 0..1_200i64 {
        let model = if i % 3 == 0 { "m-small" } else { "m-large" };
        let outcome = if i % 7 == 0 { "timeout" } else { "ok" };
        store
            .record_usage(usage(DAY * (10 + i % 3) + i, model, Some(&ctx.id), 100 + i as u64, outcome, 40 + (i % 50) as u64))
            .await
            .expect("usage");
    }
    let today = DAY * 12;
    let report_before = store.usage_totals(DAY * 10, DAY * 20).await.expect("report");
    let spend_q = || SpendQuery { since: today, global: true, context: Some(ctx.id.clone()), task: None };
    let spend_before = store.spend(spend_q()).await.expect("spend");

    // Now is day 13: keep one day, so days 10 and 11 go, day 12 stays.
    let pruned = store.prune(&only(Kind::Usage, 1), DAY * 13, Duration::ZERO).await.expect("prune");
    assert_eq!(pruned.of(Kind::Usage), 800, "two of the three days");
    assert_eq!(count(&store, "SELECT count(*) FROM llm_usage").await, 400);

    let report_after = store.usage_totals(DAY * 10, DAY * 20).await.expect("report");
    let show = |v: &[crate::store::UsageTotals]| format!("{v:?}");
    assert_eq!(show(&report_after), show(&report_before), "the report counts pruned calls through the daily totals");
    assert_eq!(store.spend(spend_q()).await.expect("spend"), spend_before, "today's budget spend is untouched");
    // A second pass finds nothing more and changes nothing.
    let again = store.prune(&only(Kind::Usage, 1), DAY * 13, Duration::ZERO).await.expect("prune");
    assert_eq!(again.total(), 0);
    assert_eq!(show(&store.usage_totals(DAY * 10, DAY * 20).await.expect("report")), show(&report_before));
}

#[tokio::test]
async fn a_batch_is_bounded_and_rows_still_in_use_are_kept() {
    let (_d, store) = temp_store();
    let chat = ChatRef::new("codex", "s1").expect("chat");
    for i in 0..1_100 {
        let rec = store.record_inbound(&inbound(&format!("m{i}")), DAY + i).await.expect("inbound");
        let reply = crate::store::NewOutbound {
            chat: chat.clone(),
            kind: crate::domain::MessageKind::Reply,
            body: format!("answer {i}"),
            task_id: None,
            trace_id: None,
            options: Default::default(),
            preview: None,
        };
        // Every tenth stays unprocessed, and its reply pending.
        if i % 10 != 0 {
            store.finish_inbound(rec.inbox_id, None, Some(reply), true, Vec::new(), DAY + i).await.expect("finish");
        } else {
            store.enqueue_outbound(reply, DAY + i).await.expect("pending reply");
        }
    }
    let cutoff = DAY * 5;
    assert_eq!(store.prune_batch(Kind::Outbox, cutoff, BATCH).await.expect("batch"), BATCH, "one batch, no more");
    let pruned = store.prune(&only(Kind::Inbox, 1), DAY * 5, Duration::ZERO).await.expect("prune");
    assert_eq!(pruned.of(Kind::Inbox), 990);
    assert_eq!(pruned.of(Kind::Outbox), 0, "not in the policy");
    assert_eq!(count(&store, "SELECT count(*) FROM inbox WHERE status = 'received'").await, 110, "unprocessed rows stay");
    assert_eq!(count(&store, "SELECT count(*) FROM inbox").await, 110);
    let pruned = store.prune(&only(Kind::Outbox, 1), DAY * 5, Duration::ZERO).await.expect("prune");
    assert_eq!(pruned.of(Kind::Outbox), 990 - BATCH as u64);
    assert_eq!(count(&store, "SELECT count(*) FROM outbox").await, 110, "pending replies stay");
    assert_eq!(count(&store, "SELECT count(*) FROM outbox WHERE status = 'pending'").await, 110);
    // Nothing younger than the cutoff goes.
    let pruned = store.prune(&RetentionPolicy::default(), DAY * 5, Duration::ZERO).await.expect("prune");
    assert_eq!(pruned.total(), 0);
}

/// Objective runs went on for ever (one row per scheduled time). Ended runs
/// past the tasks' days go with the tasks; runs still going, young runs and
/// each objective's newest run stay.
#[tokio::test]
async fn ended_objective_runs_go_with_the_tasks_and_each_objectives_newest_stays() {
    let (_d, store) = temp_store();
    let ctx = store.ensure_context(&ChatRef::new("codex", "runs").expect("chat"), "runs", 0).await.expect("context");
    let objective = |title: &str| crate::store::NewObjective {
        workspace_id: ctx.workspace_id.clone(),
        context_id: ctx.id.clone(),
        title: title.into(),
        prompt: "p".into(),
        trigger_type: "schedule".into(),
        event_key: None,
        event_filter: None,
        cron_expr: Some("* * * * *".into()),
        timezone: "UTC".into(),
        run_at: None,
        catch_up: crate::domain::CatchUp::Latest,
        active: true,
        next_run_at: Some(DAY),
        created_by: "test".into(),
    };
    let busy = store.create_objective(objective("every minute"), Vec::new(), 0).await.expect("objective").id;
    let quiet = store.create_objective(objective("ran once, long ago"), Vec::new(), 0).await.expect("objective").id;
    let (busy_id, quiet_id) = (busy.as_str().to_string(), quiet.as_str().to_string());
    store
        .write(move |c| {
            let add = |o: &str, at: i64, outcome: &str| {
                c.execute(
                    "INSERT INTO objective_runs (objective_id, scheduled_at, fired_at, trigger, outcome, finished_at) \
                     VALUES (?1, ?2, ?2, 'schedule', ?3, CASE WHEN ?3 IN ('queued', 'running') THEN NULL ELSE ?2 END)",
                    params![o, at, outcome],
                )
            };
            add(&quiet_id, DAY, "succeeded")?;
            // Two days of one run a minute, a few still going.
            for m in 0..2 * 1440 {
                let outcome = match m % 500 {
                    0 => "running",
                    1 => "skipped",
                    2 => "failed",
                    _ => "succeeded",
                };
                add(&busy_id, DAY + m * 60_000, outcome)?;
            }
            Ok(())
        })
        .await
        .expect("runs");
    // Tasks kept 1 day, now = day 3: the first day's ended runs go.
    let pruned = store.prune(&only(Kind::Tasks, 1), DAY * 3, Duration::ZERO).await.expect("prune");
    let old_running = count(&store, "SELECT count(*) FROM objective_runs WHERE outcome = 'running' AND scheduled_at < 172800000").await;
    assert_eq!(old_running, 3, "runs still going stay, however old");
    assert_eq!(pruned.of(Kind::Tasks), 1440 - 3, "the first day's ended runs, in batches");
    assert_eq!(count(&store, "SELECT count(*) FROM objective_runs").await, 1 + 3 + 1440);
    let quiet_runs = store.objective_runs(&quiet, None, 10).await.expect("runs");
    assert_eq!(quiet_runs.len(), 1, "an objective's newest run stays, however old");
    // A second pass finds nothing more.
    assert_eq!(store.prune(&only(Kind::Tasks, 1), DAY * 3, Duration::ZERO).await.expect("prune").total(), 0);
}

#[tokio::test]
async fn audit_rows_go_oldest_first_and_only_past_their_days() {
    let (_d, store) = temp_store();
    let rows = |at: i64| {
        vec![crate::store::NewAudit {
            actor: "cert:ops".into(),
            chat: None,
            event: "test.event",
            decision: crate::store::Decision::Info,
            reason: None,
            subject: Some(format!("{at}")),
        }]
    };
    for d in 0..10 {
        store.audit(rows(d), DAY * d).await.expect("audit");
    }
    let pruned = store.prune(&only(Kind::Audit, 3), DAY * 10, Duration::ZERO).await.expect("prune");
    assert_eq!(pruned.of(Kind::Audit), 7, "days 0..=6 are older than three days");
    assert_eq!(count(&store, "SELECT min(at) FROM audit_events").await, DAY * 7);
}

#[tokio::test]
async fn pruning_gives_the_pages_back_to_the_file_system() {
    let (_d, store) = temp_store();
    let chat = ChatRef::new("codex", "s1").expect("chat");
    let body = "x".repeat(2_000);
    for i in 0..3_000 {
        let m = crate::store::NewOutbound {
            chat: chat.clone(),
            kind: crate::domain::MessageKind::TaskNotice,
            body: body.clone(),
            task_id: None,
            trace_id: None,
            options: Default::default(),
            preview: None,
        };
        let id = store.enqueue_outbound(m, DAY + i).await.expect("enqueue");
        store.mark_outbound_sent(id, None, DAY + i).await.expect("sent");
    }
    let before = store.db_size().await.expect("size");
    assert!(before.file_bytes > 6_000_000, "{before:?}");
    let pruned = store.prune(&only(Kind::Outbox, 1), DAY * 3, Duration::ZERO).await.expect("prune");
    assert_eq!(pruned.of(Kind::Outbox), 3_000);
    assert!(pruned.pages_freed > 1_000, "{pruned:?}");
    let after = store.db_size().await.expect("size");
    assert!(after.file_bytes < before.file_bytes / 3, "{before:?} → {after:?}");
    assert!(after.free_bytes < 64 * 1024, "free pages went back: {after:?}");
}

#[test]
fn an_older_database_with_rows_is_converted_to_incremental_vacuum_and_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.sqlite");
    {
        // A version-11 file as earlier binaries made it: no auto_vacuum, rows in it.
        let mut c = Connection::open(&path).expect("open");
        c.pragma_update(None, "journal_mode", "WAL").expect("wal");
        let tx = c.transaction().expect("tx");
        for (i, sql) in super::super::migrations::STEPS.iter().enumerate().take(11) {
            tx.execute_batch(sql).expect("step");
            tx.pragma_update(None, "user_version", (i + 1) as i64).expect("version");
        }
        tx.execute_batch(
            "INSERT INTO workspaces (id, slug, name, kind, created_at) VALUES ('w', 'w', 'W', 'chat', 1);
             INSERT INTO contexts (id, workspace_id, connector, external_id, display_name, created_at) VALUES ('c', 'w', 'codex', 's', 'S', 1);
             INSERT INTO tasks (id, workspace_id, context_id, kind, title, prompt, status, max_attempts, not_before, trace_id, created_at, updated_at)
                 VALUES ('t1', 'w', 'c', 'noop', 't', 'p', 'queued', 3, 0, 'x', 1, 1), ('t2', 'w', 'c', 'noop', 't', 'p', 'succeeded', 3, 0, 'x', 1, 1);
             INSERT INTO outbox (connector, external_id, kind, body, status, next_attempt_at, created_at, updated_at)
                 VALUES ('codex', 's', 'reply', 'b', 'sent', 0, 1, 1), ('codex', 's', 'reply', 'b', 'pending', 0, 1, 1);",
        )
        .expect("rows");
        tx.commit().expect("commit");
        let mode: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).expect("mode");
        assert_eq!(mode, 0, "made without auto_vacuum");
    }
    let store = Store::open(&path).expect("open and migrate");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async {
        let mode = store.read(|c| Ok(c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))?)).await.expect("mode");
        assert_eq!(mode, 2, "incremental");
        let counts = store.state_counts(0).await.expect("counts");
        let of = |v: &[(String, u64)], s: &str| v.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        assert_eq!((of(&counts.tasks, "queued"), of(&counts.tasks, "succeeded")), (1, 1), "backfilled: {counts:?}");
        assert_eq!((of(&counts.outbox, "sent"), of(&counts.outbox, "pending")), (1, 1), "backfilled: {counts:?}");
    });
    store.close();
}

#[test]
fn the_policy_shows_as_the_operator_writes_it() {
    let mut p = RetentionPolicy::default();
    p.set(Kind::Audit, None);
    p.set(Kind::Inbox, Some(0));
    assert_eq!(format!("{p:?}"), "outbox=30,inbox=forever,tasks=30,usage=90,audit=forever");
    assert_eq!(Kind::parse(" Usage "), Some(Kind::Usage));
    assert_eq!(Kind::parse("events"), None);
}
