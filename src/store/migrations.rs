//! Forward-only, numbered schema migrations. Each step runs in its own
//! transaction together with the `user_version` bump; a step is never edited
//! once released — add a new one instead.
//!
//! Before a new step lands, `scripts/schema-fixture.sh` (with the binary of
//! the current version) writes `tests/fixtures/schema-<LATEST>.sqlite`; the
//! upgrade test (`tests/e2e/upgrade.rs`) starts a daemon on every fixture and
//! checks that it migrates and serves the data.

use super::StoreError;
use rusqlite::Connection;

/// The migration steps, in order; step `i` brings the schema to version `i + 1`.
pub(super) const STEPS: &[&str] = &[
    // 1: the foundation tables.
    r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE identities (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    connector TEXT NOT NULL,
    connector_user_id TEXT NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (connector, connector_user_id)
);
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE contexts (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    connector TEXT NOT NULL,
    external_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    system_prompt TEXT NOT NULL DEFAULT '',
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (connector, external_id)
);
CREATE INDEX contexts_admin ON contexts (workspace_id) WHERE is_admin = 1;
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    connector TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    context_id TEXT NOT NULL REFERENCES contexts(id) ON DELETE CASCADE,
    from_user_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    text TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('received', 'handled', 'failed')),
    error TEXT,
    trace_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    handled_at INTEGER,
    UNIQUE (connector, dedupe_key)
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    context_id TEXT NOT NULL REFERENCES contexts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    prompt TEXT NOT NULL,
    run_key TEXT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    not_before INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    source_connector TEXT,
    source_external_id TEXT,
    source_user_id TEXT,
    result_summary TEXT,
    result_path TEXT,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    trace_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX tasks_run_key ON tasks (run_key) WHERE run_key IS NOT NULL;
CREATE INDEX tasks_claimable ON tasks (not_before, created_at) WHERE status = 'queued';
CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_by_context ON tasks (context_id, created_at);
CREATE INDEX tasks_by_workspace ON tasks (workspace_id, created_at);
CREATE TABLE task_events (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    event TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    attempt INTEGER NOT NULL,
    worker TEXT,
    detail TEXT,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    connector TEXT NOT NULL,
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    platform_message_id TEXT,
    task_id TEXT REFERENCES tasks(id) ON DELETE SET NULL,
    trace_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    sent_at INTEGER
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_by_chat ON outbox (connector, external_id, id);
CREATE TABLE llm_usage (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    task_id TEXT REFERENCES tasks(id) ON DELETE SET NULL,
    context_id TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    latency_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE INDEX llm_usage_by_time ON llm_usage (at);
"#,
    // 2: the gateway: pairing, approvals, objectives, audit, routing fields.
    r#"
CREATE INDEX contexts_admin_all ON contexts (created_at) WHERE is_admin = 1;
CREATE TABLE pairing_requests (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    token_hint TEXT NOT NULL,
    connector TEXT NOT NULL,
    connector_user_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    attempts INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    approved_user_id TEXT,
    approver TEXT,
    role TEXT,
    reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX pairing_by_sender ON pairing_requests (connector, connector_user_id) WHERE status = 'pending';
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    context_id TEXT NOT NULL REFERENCES contexts(id) ON DELETE CASCADE,
    connector TEXT NOT NULL,
    external_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    requester_user_id TEXT,
    action_type TEXT NOT NULL,
    target TEXT NOT NULL,
    summary TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    approver TEXT,
    reason TEXT,
    expires_at INTEGER NOT NULL,
    execution_status TEXT NOT NULL DEFAULT 'not_executed'
        CHECK (execution_status IN ('not_executed', 'running', 'succeeded', 'failed', 'refused', 'interrupted')),
    execution_result TEXT,
    executed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX approvals_pending ON approvals (expires_at) WHERE status = 'pending';
CREATE INDEX approvals_by_chat ON approvals (connector, external_id, created_at);
CREATE INDEX approvals_by_time ON approvals (created_at);
CREATE TABLE objectives (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    context_id TEXT NOT NULL REFERENCES contexts(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    prompt TEXT NOT NULL,
    trigger_type TEXT NOT NULL CHECK (trigger_type IN ('schedule', 'event')),
    event_key TEXT,
    cron_expr TEXT,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    active INTEGER NOT NULL DEFAULT 1,
    next_run_at INTEGER,
    last_run_at INTEGER,
    last_error TEXT,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX objectives_by_context ON objectives (context_id, created_at);
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    connector TEXT,
    external_id TEXT,
    event TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'info')),
    reason TEXT,
    subject TEXT
);
CREATE INDEX audit_by_time ON audit_events (at);
CREATE INDEX audit_by_actor ON audit_events (actor, at);
CREATE INDEX audit_by_chat ON audit_events (connector, external_id, at);
ALTER TABLE tasks ADD COLUMN route_class TEXT;
ALTER TABLE tasks ADD COLUMN priority TEXT;
ALTER TABLE tasks ADD COLUMN due_at INTEGER;
ALTER TABLE tasks ADD COLUMN lane TEXT;
"#,
    // 3: `/status` counts a chat's tasks by status from the index alone.
    r#"
DROP INDEX tasks_by_context;
CREATE INDEX tasks_by_context ON tasks (context_id, created_at, status);
"#,
    // 4: idempotency keys of the admin API's create endpoints.
    r#"
CREATE TABLE idempotency_keys (
    caller TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER,
    body BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (caller, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_time ON idempotency_keys (created_at);
"#,
    // 5: the event log behind `GET /api/v1/events` (live stream and resume).
    r#"
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
"#,
    // 6: connectors. Inbox rows keep what the gateway needs to process them
    // again after a crash (chat kind, mention flag, platform details); each
    // connector's cursor (Telegram update offset, IMAP UIDVALIDITY/UID,
    // Discord last message id per channel) advances in the transaction that
    // stores the messages; outbox rows carry delivery options (buttons, the
    // message to edit or answer) and how many parts of a split message went out.
    r#"
ALTER TABLE inbox ADD COLUMN chat_kind TEXT NOT NULL DEFAULT 'private';
ALTER TABLE inbox ADD COLUMN mentioned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN meta TEXT;
CREATE INDEX inbox_unhandled ON inbox (id) WHERE status = 'received';
CREATE TABLE connector_cursors (
    connector TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (connector, key)
) WITHOUT ROWID;
ALTER TABLE outbox ADD COLUMN options TEXT;
ALTER TABLE outbox ADD COLUMN parts_sent INTEGER NOT NULL DEFAULT 0;
"#,
    // 7: who may be told. A request from an unverified sender (a held
    // email) records that its requester hears nothing — no decision, expiry
    // or outcome notice — and the task an approved one becomes tells only
    // the admin chats. Rows written before this step are classified by the
    // marks they already carry.
    r#"
ALTER TABLE approvals ADD COLUMN tell_requester INTEGER NOT NULL DEFAULT 1;
UPDATE approvals SET tell_requester = 0 WHERE requester LIKE 'unverified:%';
ALTER TABLE tasks ADD COLUMN tell_origin INTEGER NOT NULL DEFAULT 1;
UPDATE tasks SET tell_origin = 0 WHERE title LIKE 'Review untrusted message from %';
"#,
    // 8: the scheduler. Objectives gain `once` triggers (`run_at`), a
    // catch-up policy, an event filter and statistics kept from their runs'
    // real outcomes; `objective_runs` holds one row per scheduled time,
    // event or manual run (skipped times included). The CHECK on
    // trigger_type changes, so the table is rebuilt (nothing references it).
    r#"
CREATE TABLE objectives_v8 (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    context_id TEXT NOT NULL REFERENCES contexts(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    prompt TEXT NOT NULL,
    trigger_type TEXT NOT NULL CHECK (trigger_type IN ('schedule', 'event', 'once')),
    event_key TEXT,
    event_filter TEXT,
    cron_expr TEXT,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    run_at INTEGER,
    catch_up TEXT NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'all', 'none')),
    active INTEGER NOT NULL DEFAULT 1,
    next_run_at INTEGER,
    last_run_at INTEGER,
    last_error TEXT,
    paused_reason TEXT,
    run_count INTEGER NOT NULL DEFAULT 0,
    success_count INTEGER NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    consecutive_successes INTEGER NOT NULL DEFAULT 0,
    total_run_ms INTEGER NOT NULL DEFAULT 0,
    last_success_at INTEGER,
    last_failure_at INTEGER,
    recent_errors TEXT NOT NULL DEFAULT '[]',
    created_by TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO objectives_v8 (id, workspace_id, context_id, title, prompt, trigger_type, event_key, cron_expr, timezone, active,
    next_run_at, last_run_at, last_error, created_by, created_at, updated_at)
    SELECT id, workspace_id, context_id, title, prompt, trigger_type, event_key, cron_expr, timezone, active,
    next_run_at, last_run_at, last_error, created_by, created_at, updated_at FROM objectives;
DROP TABLE objectives;
ALTER TABLE objectives_v8 RENAME TO objectives;
CREATE INDEX objectives_by_context ON objectives (context_id, created_at);
CREATE INDEX objectives_due ON objectives (next_run_at) WHERE active = 1 AND next_run_at IS NOT NULL;
CREATE INDEX objectives_on_events ON objectives (workspace_id, event_key) WHERE active = 1 AND trigger_type = 'event';
CREATE TABLE objective_runs (
    id INTEGER PRIMARY KEY,
    objective_id TEXT NOT NULL REFERENCES objectives(id) ON DELETE CASCADE,
    scheduled_at INTEGER NOT NULL,
    fired_at INTEGER,
    task_id TEXT,
    trigger TEXT NOT NULL CHECK (trigger IN ('schedule', 'event', 'manual', 'catch_up')),
    outcome TEXT NOT NULL CHECK (outcome IN ('queued', 'running', 'succeeded', 'failed', 'canceled', 'skipped')),
    duration_ms INTEGER,
    error TEXT,
    detail TEXT,
    finished_at INTEGER
);
CREATE INDEX objective_runs_by_objective ON objective_runs (objective_id, id);
CREATE UNIQUE INDEX objective_runs_by_time ON objective_runs (objective_id, scheduled_at) WHERE trigger IN ('schedule', 'catch_up');
CREATE UNIQUE INDEX objective_runs_by_task ON objective_runs (task_id) WHERE task_id IS NOT NULL;
"#,
    // 9: the agent's steps (model calls and tool calls of a turn).
    r#"
CREATE TABLE agent_steps (
    id INTEGER PRIMARY KEY,
    task_id TEXT,
    context_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('model', 'tool')),
    tool TEXT,
    arguments TEXT,
    outcome TEXT NOT NULL,
    detail TEXT,
    duration_ms INTEGER NOT NULL,
    output_bytes INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX agent_steps_by_task ON agent_steps (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX agent_steps_by_trace ON agent_steps (trace_id, id);
CREATE INDEX inbox_by_context ON inbox (context_id, id);
"#,
    // 10: approvals that resume an agent turn: the turn's saved state and the follow-up task.
    r#"
ALTER TABLE approvals ADD COLUMN resume_json TEXT;
ALTER TABLE approvals ADD COLUMN resume_task_id TEXT;
CREATE UNIQUE INDEX approvals_by_resume_task ON approvals (resume_task_id) WHERE resume_task_id IS NOT NULL;
"#,
    // 11: budgets and the kill switch: per-context daily limits, the pause
    // switch, once-a-day admin notices, the daily spend rollup (context ''
    // holds every call; backfilled from llm_usage) and the task index.
    r#"
CREATE TABLE llm_spend_daily (
    day INTEGER NOT NULL,
    context_id TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (day, context_id, model)
) WITHOUT ROWID;
INSERT INTO llm_spend_daily (day, context_id, model, prompt_tokens, completion_tokens)
    SELECT at - (at % 86400000), '', model, COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)
    FROM llm_usage GROUP BY at - (at % 86400000), model;
INSERT INTO llm_spend_daily (day, context_id, model, prompt_tokens, completion_tokens)
    SELECT at - (at % 86400000), context_id, model, COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)
    FROM llm_usage WHERE context_id IS NOT NULL AND context_id != '' GROUP BY at - (at % 86400000), context_id, model;
CREATE TABLE context_budgets (
    context_id TEXT PRIMARY KEY REFERENCES contexts(id) ON DELETE CASCADE,
    daily_tokens INTEGER CHECK (daily_tokens IS NULL OR daily_tokens > 0),
    daily_usd REAL CHECK (daily_usd IS NULL OR daily_usd > 0),
    set_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE agent_switch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    paused INTEGER NOT NULL,
    reason TEXT,
    set_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE budget_notices (
    key TEXT PRIMARY KEY,
    at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX llm_usage_by_task ON llm_usage (task_id) WHERE task_id IS NOT NULL;
"#,
    // 12: bounded growth and cheap metrics. `state_counts` holds the number
    // of tasks and outbox rows in each status, kept exact by triggers in the
    // transaction that changes a row (so `/metrics` reads a few rows instead
    // of scanning both tables); backfilled here. `llm_usage_daily` keeps the
    // per-day totals of usage rows that retention deleted, so usage reports
    // stay whole. The partial indexes find what retention may delete (final
    // rows, oldest first) without a scan, and `outbox_by_task` lets deleting
    // a task null its notices' `task_id` without scanning the outbox.
    r#"
CREATE TABLE state_counts (
    tbl TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tbl, status)
) WITHOUT ROWID;
INSERT INTO state_counts (tbl, status, n)
    SELECT 'tasks', s.status, (SELECT count(*) FROM tasks t WHERE t.status = s.status)
    FROM (SELECT 'queued' AS status UNION ALL SELECT 'running' UNION ALL SELECT 'succeeded' UNION ALL SELECT 'failed' UNION ALL SELECT 'canceled') s;
INSERT INTO state_counts (tbl, status, n)
    SELECT 'outbox', s.status, (SELECT count(*) FROM outbox o WHERE o.status = s.status)
    FROM (SELECT 'pending' AS status UNION ALL SELECT 'sent' UNION ALL SELECT 'failed') s;
CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    UPDATE state_counts SET n = n + 1 WHERE tbl = 'tasks' AND status = NEW.status;
END;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE state_counts SET n = n - 1 WHERE tbl = 'tasks' AND status = OLD.status;
END;
CREATE TRIGGER tasks_count_update AFTER UPDATE OF status ON tasks WHEN OLD.status != NEW.status BEGIN
    UPDATE state_counts SET n = n - 1 WHERE tbl = 'tasks' AND status = OLD.status;
    UPDATE state_counts SET n = n + 1 WHERE tbl = 'tasks' AND status = NEW.status;
END;
CREATE TRIGGER outbox_count_insert AFTER INSERT ON outbox BEGIN
    UPDATE state_counts SET n = n + 1 WHERE tbl = 'outbox' AND status = NEW.status;
END;
CREATE TRIGGER outbox_count_delete AFTER DELETE ON outbox BEGIN
    UPDATE state_counts SET n = n - 1 WHERE tbl = 'outbox' AND status = OLD.status;
END;
CREATE TRIGGER outbox_count_update AFTER UPDATE OF status ON outbox WHEN OLD.status != NEW.status BEGIN
    UPDATE state_counts SET n = n - 1 WHERE tbl = 'outbox' AND status = OLD.status;
    UPDATE state_counts SET n = n + 1 WHERE tbl = 'outbox' AND status = NEW.status;
END;
CREATE TABLE llm_usage_daily (
    day INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms_sum INTEGER NOT NULL,
    PRIMARY KEY (day, provider, model)
) WITHOUT ROWID;
CREATE INDEX outbox_done ON outbox (updated_at) WHERE status != 'pending';
CREATE INDEX outbox_by_task ON outbox (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX inbox_done ON inbox (received_at) WHERE status != 'received';
CREATE INDEX tasks_done ON tasks (updated_at) WHERE status IN ('succeeded', 'failed', 'canceled');
CREATE INDEX agent_steps_untasked ON agent_steps (at) WHERE task_id IS NULL;
"#,
];

/// The schema version this binary brings a database to.
pub const LATEST: i64 = STEPS.len() as i64;

/// Applies every step above the file's `user_version`, each in a transaction.
pub fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::SchemaTooNew { found: current, supported: LATEST });
    }
    for (i, sql) in STEPS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_refuse_newer_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.sqlite");
        let mut c = Connection::open(&path).expect("open");
        apply(&mut c).expect("first");
        apply(&mut c).expect("second run is a no-op");
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(v, LATEST);
        c.pragma_update(None, "user_version", LATEST + 1).expect("bump");
        assert!(matches!(apply(&mut c), Err(StoreError::SchemaTooNew { .. })));
    }

    #[test]
    fn step_11_backfills_the_daily_spend_from_earlier_usage() {
        let mut c = Connection::open_in_memory().expect("open");
        for (i, sql) in STEPS.iter().enumerate().take(10) {
            c.execute_batch(sql).expect("step");
            c.pragma_update(None, "user_version", (i + 1) as i64).expect("version");
        }
        let day = 86_400_000i64;
        for (at, ctx, p) in [(day + 5, Some("a"), 10), (day + 6, None, 3), (2 * day, Some("a"), 100)] {
            c.execute(
                "INSERT INTO llm_usage (at, provider, model, context_id, prompt_tokens, completion_tokens, latency_ms, outcome) \
                 VALUES (?1, 'p', 'm', ?2, ?3, 1, 1, 'ok')",
                rusqlite::params![at, ctx, p],
            )
            .expect("usage");
        }
        apply(&mut c).expect("to latest");
        let row = |d: i64, ctx: &str| -> (i64, i64) {
            c.query_row(
                "SELECT prompt_tokens, completion_tokens FROM llm_spend_daily WHERE day = ?1 AND context_id = ?2 AND model = 'm'",
                rusqlite::params![d, ctx],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row")
        };
        assert_eq!(row(day, ""), (13, 2), "every call of the day");
        assert_eq!(row(day, "a"), (10, 1), "the context's");
        assert_eq!(row(2 * day, ""), (100, 1));
    }
}
