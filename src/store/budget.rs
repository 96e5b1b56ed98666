//! Budgets and the kill switch, as records: the model's spend (sums over
//! `llm_usage`), per-context daily limits, the pause switch (with its audit
//! row and event in the same transaction) and once-a-day admin notices.
//! The store records; `crate::budget` decides.

use super::audit::{Decision, NewAudit, insert_audit};
use super::{Store, StoreError};
use crate::clock::UnixMillis;
use crate::domain::{ContextId, TaskId};
use rusqlite::{Connection, OptionalExtension, params};

/// Tokens one model used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTokens {
    /// The model as recorded.
    pub model: String,
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
}

/// What to sum: one day's calls globally and of a context (from the
/// `llm_spend_daily` rollup, a few rows per model), and a task's calls of
/// all time (from `llm_usage` by task: a task has few rows).
#[derive(Debug, Clone, Default)]
pub struct SpendQuery {
    /// The start of the UTC day (midnight, unix ms).
    pub since: UnixMillis,
    /// Sum every call of the day.
    pub global: bool,
    /// Sum the day's calls of this context.
    pub context: Option<ContextId>,
    /// Sum this task's calls (every attempt).
    pub task: Option<TaskId>,
}

/// The sums asked for (empty when not asked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    /// The day's calls, by model.
    pub global: Vec<ModelTokens>,
    /// The day's calls of the context, by model.
    pub context: Vec<ModelTokens>,
    /// The task's calls, by model.
    pub task: Vec<ModelTokens>,
}

/// A context's daily limits.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContextBudget {
    /// The context.
    pub context_id: ContextId,
    /// Tokens per UTC day.
    pub daily_tokens: Option<u64>,
    /// USD per UTC day.
    pub daily_usd: Option<f64>,
    /// Who set them.
    pub set_by: String,
    /// When.
    pub updated_at: UnixMillis,
}

/// The kill switch as last set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwitchState {
    /// Whether model calls are stopped.
    pub paused: bool,
    /// Why (free text from whoever set it).
    pub reason: Option<String>,
    /// Who set it (`cert:<CN>`, `user:<id>`).
    pub set_by: String,
    /// When.
    pub updated_at: UnixMillis,
}

fn by_model(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<ModelTokens>, StoreError> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(p, |r| Ok(ModelTokens { model: r.get(0)?, prompt: r.get(1)?, completion: r.get(2)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const SUMS: &str = "SELECT model, COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) FROM llm_usage";
const DAILY: &str = "SELECT model, prompt_tokens, completion_tokens FROM llm_spend_daily WHERE day = ?1 AND context_id = ?2 ORDER BY model";

impl Store {
    /// The sums `q` asks for, in one read (each on its index).
    pub async fn spend(&self, q: SpendQuery) -> Result<Spend, StoreError> {
        self.read(move |c| {
            let mut out = Spend::default();
            if q.global {
                out.global = by_model(c, DAILY, params![q.since, ""])?;
            }
            if let Some(ctx) = &q.context {
                out.context = by_model(c, DAILY, params![q.since, ctx.as_str()])?;
            }
            if let Some(task) = &q.task {
                out.task = by_model(c, &format!("{SUMS} WHERE task_id = ?1 GROUP BY model"), params![task.as_str()])?;
            }
            Ok(out)
        })
        .await
    }

    /// Every context's limits.
    pub async fn context_budgets(&self) -> Result<Vec<ContextBudget>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT context_id, daily_tokens, daily_usd, set_by, updated_at FROM context_budgets ORDER BY context_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ContextBudget {
                    context_id: ContextId::from_string(r.get::<_, String>(0)?),
                    daily_tokens: r.get(1)?,
                    daily_usd: r.get(2)?,
                    set_by: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Sets a context's daily limits (both `None`: removes them), audited
    /// as `budget.context` under `by`. `NotFound` for an unknown context.
    pub async fn set_context_budget(
        &self,
        context: ContextId,
        daily_tokens: Option<u64>,
        daily_usd: Option<f64>,
        by: String,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            let known: Option<i64> =
                c.prepare_cached("SELECT 1 FROM contexts WHERE id = ?1")?.query_row([context.as_str()], |r| r.get(0)).optional()?;
            if known.is_none() {
                return Err(StoreError::NotFound("context"));
            }
            if daily_tokens.is_none() && daily_usd.is_none() {
                c.prepare_cached("DELETE FROM context_budgets WHERE context_id = ?1")?.execute([context.as_str()])?;
            } else {
                c.prepare_cached(
                    "INSERT INTO context_budgets (context_id, daily_tokens, daily_usd, set_by, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (context_id) DO UPDATE SET daily_tokens = ?2, daily_usd = ?3, set_by = ?4, updated_at = ?5",
                )?
                .execute(params![context.as_str(), daily_tokens, daily_usd, by, now])?;
            }
            let reason = format!("daily_tokens={daily_tokens:?} daily_usd={daily_usd:?}");
            let row = NewAudit {
                actor: by,
                chat: None,
                event: "budget.context",
                decision: Decision::Info,
                reason: Some(reason),
                subject: Some(context.to_string()),
            };
            insert_audit(c, &[row], now)
        })
        .await
    }

    /// The kill switch as last set (`None`: never set, so running).
    pub async fn switch_state(&self) -> Result<Option<SwitchState>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT paused, reason, set_by, updated_at FROM agent_switch WHERE id = 1")?
                .query_row([], |r| Ok(SwitchState { paused: r.get(0)?, reason: r.get(1)?, set_by: r.get(2)?, updated_at: r.get(3)? }))
                .optional()?)
        })
        .await
    }

    /// Sets the kill switch, with its audit row (`agent.paused` /
    /// `agent.resumed`, under `by`) and its event in the same transaction.
    pub async fn set_switch(&self, paused: bool, reason: Option<String>, by: String, now: UnixMillis) -> Result<SwitchState, StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO agent_switch (id, paused, reason, set_by, updated_at) VALUES (1, ?1, ?2, ?3, ?4) \
                 ON CONFLICT (id) DO UPDATE SET paused = ?1, reason = ?2, set_by = ?3, updated_at = ?4",
            )?
            .execute(params![paused, reason, by, now])?;
            let event = if paused { "agent.paused" } else { "agent.resumed" };
            let row = NewAudit { actor: by.clone(), chat: None, event, decision: Decision::Allow, reason: reason.clone(), subject: None };
            insert_audit(c, &[row], now)?;
            super::events::append(c, now, event, &serde_json::json!({ "paused": paused, "by": by, "reason": reason }))?;
            Ok(SwitchState { paused, reason, set_by: by, updated_at: now })
        })
        .await
    }

    /// Queues `body` to every admin chat unless a notice with `key` was
    /// queued before (the key names the limit and the day), in one write.
    /// Returns whether it was queued now.
    pub async fn notify_admins_once(&self, key: String, body: String, now: UnixMillis) -> Result<bool, StoreError> {
        self.write(move |c| {
            let fresh = c
                .prepare_cached("INSERT INTO budget_notices (key, at) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING")?
                .execute(params![key, now])?
                > 0;
            if fresh {
                for chat in super::chats::admin_chats(c)? {
                    super::outbox::insert(c, &super::approvals::notice(&chat, body.clone()), crate::domain::OutboxStatus::Pending, now)?;
                }
            }
            Ok(fresh)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UsageRecord;

    fn usage(at: UnixMillis, model: &str, ctx: Option<&ContextId>, tokens: (u64, u64)) -> UsageRecord {
        UsageRecord {
            at,
            provider: "p".into(),
            model: model.into(),
            task_id: None,
            context_id: ctx.cloned(),
            prompt_tokens: Some(tokens.0),
            completion_tokens: Some(tokens.1),
            latency_ms: 1,
            outcome: "ok".into(),
            error: None,
        }
    }

    #[tokio::test]
    async fn spend_sums_the_day_by_model_and_by_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("m.sqlite")).expect("store");
        let (a, b) = (ContextId::from_string("a"), ContextId::from_string("b"));
        const DAY: UnixMillis = 86_400_000;
        store.record_usage(usage(DAY - 1, "m1", Some(&a), (1000, 1000))).await.expect("yesterday");
        store.record_usage(usage(DAY, "m1", Some(&a), (10, 5))).await.expect("u");
        store.record_usage(usage(DAY + 1, "m1", Some(&b), (1, 1))).await.expect("u");
        store.record_usage(usage(2 * DAY - 1, "m2", Some(&a), (7, 0))).await.expect("u");
        store.record_usage(usage(2 * DAY, "m2", Some(&a), (100, 0))).await.expect("tomorrow");
        let s = store.spend(SpendQuery { since: DAY, global: true, context: Some(a), task: None }).await.expect("spend");
        let t = |m: &str, p, c| ModelTokens { model: m.into(), prompt: p, completion: c };
        assert_eq!(s.global, vec![t("m1", 11, 6), t("m2", 7, 0)], "the UTC day that starts at `since`");
        assert_eq!(s.context, vec![t("m1", 10, 5), t("m2", 7, 0)]);
        assert!(s.task.is_empty(), "not asked");
    }

    #[tokio::test]
    async fn an_admin_notice_is_queued_once_per_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("m.sqlite")).expect("store");
        assert!(store.notify_admins_once("k:2026-01-01".into(), "x".into(), 1).await.expect("first"));
        assert!(!store.notify_admins_once("k:2026-01-01".into(), "x".into(), 2).await.expect("again"));
        assert!(store.notify_admins_once("k:2026-01-02".into(), "x".into(), 3).await.expect("next day"));
    }

    #[tokio::test]
    async fn the_switch_persists_and_unknown_contexts_get_no_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("m.sqlite")).expect("store");
        assert_eq!(store.switch_state().await.expect("read"), None);
        store.set_switch(true, Some("spend".into()), "cert:admin".into(), 5).await.expect("pause");
        let s = store.switch_state().await.expect("read").expect("set");
        assert!(s.paused && s.set_by == "cert:admin" && s.reason.as_deref() == Some("spend"));
        let err = store.set_context_budget(ContextId::from_string("nope"), Some(1), None, "x".into(), 1).await;
        assert!(matches!(err, Err(StoreError::NotFound("context"))));
    }
}
